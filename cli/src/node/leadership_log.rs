//! Every leadership change of the node as one log line, for operators who grep a node's log
//! for `became leader` (two in one term across a group is split brain):
//!
//! | line                                        | level | on                       |
//! |---------------------------------------------|-------|--------------------------|
//! | `became leader term=T`                      | info  | the node that now leads  |
//! | `lost leadership term=T reason=R`           | warn  | the node that led        |
//! | `leader changed from=A to=B term=T`         | info  | the others (`none`: no leader known) |
//!
//! `R` is `lease_expired`, `higher_term` (a newer term was seen), `check_quorum` (Raft stepped
//! down in its own term, having lost touch with a majority), `transferring`, `removed`,
//! `stopped` or `failed cause="..."`.
//!
//! The lines come from [`Node::events`], the node's news, read on a thread of their own: the
//! run loop's 100 ms poll would miss a leadership that lasted less. "Became leader" is usable
//! leadership (committed in its term, lease held), not Raft's bare leader role.

use std::sync::Arc;
use std::thread::JoinHandle;

use fencekit::NodeId;
use fencekit::node::{Event, LostReason, Node};
use log::Level;

/// The log target of these lines (shown at `info` by default, see `crate::logging`).
pub(crate) const TARGET: &str = "fencekit::cli::leadership";

/// Logs the node's leadership changes until its events end (the node stopped or failed).
pub(crate) struct LeadershipLog {
    thread: Option<JoinHandle<()>>,
}

impl LeadershipLog {
    /// Starts watching `node`.
    pub(crate) fn start(node: &Arc<Node>) -> std::io::Result<LeadershipLog> {
        let me = node.id();
        let events = node.events().clone();
        // A weak handle: this thread must not keep a node alive that its owner dropped.
        let weak = Arc::downgrade(node);
        let mut known = node.status().ok().and_then(|s| s.leader);
        let thread = std::thread::Builder::new()
            .name(format!("fencekit-leadership-log-{me}"))
            .spawn(move || {
                for event in events.iter() {
                    let term_now = || {
                        weak.upgrade()
                            .and_then(|n| n.status().ok())
                            .map(|s| s.term.get())
                    };
                    if let Some((level, line)) = describe(me, &mut known, &event, term_now) {
                        log::log!(target: TARGET, level, "{line}");
                    }
                }
            })?;
        Ok(LeadershipLog {
            thread: Some(thread),
        })
    }

    /// Waits for the last lines of a node that was stopped (its `reason=stopped`, say).
    pub(crate) fn finish(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The line for `event`, if it is one an operator sees. `known` is the leader this node knew
/// of before it; `term_now` the node's term now (read only to tell why Raft stepped down).
pub(crate) fn describe(
    me: NodeId,
    known: &mut Option<NodeId>,
    event: &Event,
    term_now: impl FnOnce() -> Option<u64>,
) -> Option<(Level, String)> {
    match event {
        Event::Elected { token, .. } => Some((
            Level::Info,
            format!("became leader term={}", token.generation.get()),
        )),
        Event::Lost { token, reason } => {
            let term = token.generation.get();
            let reason = match reason {
                LostReason::LeaseExpired => "lease_expired".to_owned(),
                // The lease ends in the step-down's own processing round, so the term read
                // just after it is the one that made Raft step down (or a later one, which
                // only happens after a higher term too).
                LostReason::SteppedDown if term_now().is_some_and(|t| t > term) => {
                    "higher_term".to_owned()
                }
                LostReason::SteppedDown => "check_quorum".to_owned(),
                LostReason::Transferring => "transferring".to_owned(),
                LostReason::Removed => "removed".to_owned(),
                LostReason::Stopped => "stopped".to_owned(),
                LostReason::Failed(cause) => format!("failed cause={cause:?}"),
            };
            Some((
                Level::Warn,
                format!("lost leadership term={term} reason={reason}"),
            ))
        }
        Event::LeaderChanged { leader, term } => {
            let from = std::mem::replace(known, *leader);
            // The new leader says "became leader" itself, once its leadership is usable.
            if from == *leader || *leader == Some(me) {
                return None;
            }
            let name = |id: Option<NodeId>| id.map_or_else(|| "none".to_owned(), |i| i.to_string());
            Some((
                Level::Info,
                format!(
                    "leader changed from={} to={} term={term}",
                    name(from),
                    name(*leader)
                ),
            ))
        }
        Event::MembershipChanged { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencekit::time::Instant;
    use fencekit::{Term, Token};

    fn id(n: u64) -> NodeId {
        NodeId::new(n).expect("a node id")
    }

    fn token(generation: u64, holder: u64) -> Token {
        Token::from_parts(generation, holder).expect("a token")
    }

    fn line(known: &mut Option<NodeId>, event: Event, term_now: Option<u64>) -> Option<String> {
        describe(id(1), known, &event, || term_now).map(|(_, l)| l)
    }

    #[test]
    fn each_event_an_operator_needs_is_one_line() {
        let mut known = Some(id(2));
        let cases: Vec<(Event, Option<u64>, Option<&str>)> = vec![
            (
                Event::LeaderChanged {
                    leader: None,
                    term: Term::new(4),
                },
                None,
                Some("leader changed from=2 to=none term=4"),
            ),
            (
                Event::LeaderChanged {
                    leader: Some(id(3)),
                    term: Term::new(5),
                },
                None,
                Some("leader changed from=none to=3 term=5"),
            ),
            // Same leader again: no news.
            (
                Event::LeaderChanged {
                    leader: Some(id(3)),
                    term: Term::new(5),
                },
                None,
                None,
            ),
            // This node becomes Raft leader: its "became leader" follows, not a change line.
            (
                Event::LeaderChanged {
                    leader: Some(id(1)),
                    term: Term::new(6),
                },
                None,
                None,
            ),
            (
                Event::Elected {
                    token: token(6, 1),
                    lease_deadline: Instant::from_nanos(0),
                },
                None,
                Some("became leader term=6"),
            ),
            (
                Event::Lost {
                    token: token(6, 1),
                    reason: LostReason::SteppedDown,
                },
                Some(7),
                Some("lost leadership term=6 reason=higher_term"),
            ),
            (
                Event::Lost {
                    token: token(6, 1),
                    reason: LostReason::SteppedDown,
                },
                Some(6),
                Some("lost leadership term=6 reason=check_quorum"),
            ),
            (
                Event::Lost {
                    token: token(6, 1),
                    reason: LostReason::LeaseExpired,
                },
                None,
                Some("lost leadership term=6 reason=lease_expired"),
            ),
            (
                Event::Lost {
                    token: token(6, 1),
                    reason: LostReason::Failed("log \"full\"".into()),
                },
                None,
                Some(r#"lost leadership term=6 reason=failed cause="log \"full\"""#),
            ),
        ];
        for (event, term_now, want) in cases {
            let got = line(&mut known, event.clone(), term_now);
            assert_eq!(got.as_deref(), want, "{event:?}");
        }
    }

    #[test]
    fn a_lost_line_parses_into_the_fields_a_json_log_promises() {
        let event = Event::Lost {
            token: token(9, 1),
            reason: LostReason::Failed("disk full".into()),
        };
        let got = line(&mut None, event, None).expect("a line");
        let fields = crate::logging::fields(&got);
        assert_eq!(
            fields,
            vec![
                ("term".to_owned(), 9.into()),
                ("reason".to_owned(), "failed".into()),
                ("cause".to_owned(), "disk full".into()),
            ]
        );
    }
}
