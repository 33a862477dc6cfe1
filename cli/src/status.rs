//! `fencekit status`: asks every node for its view, prints a table, and runs the split-brain
//! audit over the views; fails on an anomaly or a node that does not answer.

mod checks;

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use fencekit::detect::audit;
use fencekit::node::{Leadership, Role, Status};
use fencekit::time::Instant;
use fencekit::{LogIndex, NodeId, Term, Token};
use serde::Deserialize;

use crate::client::Client;

/// Asks nodes for their status and audits the group for split brain.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The nodes' status addresses (their --status-addr), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// How long to wait for each node, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Fail unless every node reports this many voters (a node left out of, or added to, the
    /// group's membership by mistake).
    #[arg(long)]
    expect_voters: Option<usize>,
}

/// What a node's `/status` says (the fields the table and the audit need).
#[derive(Deserialize, Debug)]
pub(crate) struct Reported {
    pub(crate) id: u64,
    pub(crate) term: u64,
    pub(crate) role: String,
    pub(crate) leader: Option<u64>,
    pub(crate) leading_generation: Option<u64>,
    pub(crate) lease_deadline_ns: Option<u64>,
    pub(crate) lease_remaining_ms: Option<f64>,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
    pub(crate) voters: Vec<u64>,
    #[serde(default)]
    pub(crate) learners: Vec<u64>,
    /// Peer messages the node refused at its step boundary.
    #[serde(default)]
    pub(crate) refused_messages: u64,
    /// Why the node failed, if it did.
    #[serde(default)]
    pub(crate) failure: Option<String>,
    /// Whether the node was stopped.
    #[serde(default)]
    pub(crate) stopped: bool,
    pub(crate) at_ns: u64,
    /// The node's clock rate relative to real time (1.0 unless the demo's nemesis skewed it).
    #[serde(default)]
    pub(crate) clock_rate: Option<f64>,
    /// The drift bound the node's leases assume.
    #[serde(default)]
    pub(crate) max_drift: Option<f64>,
}

impl Reported {
    /// The status as the audit takes it.
    pub(crate) fn to_status(&self) -> Result<Status> {
        let node = |id: u64| NodeId::new(id).map_err(|_| anyhow!("node id {id} is not valid"));
        let role = match self.role.as_str() {
            "follower" => Role::Follower,
            "pre-candidate" => Role::PreCandidate,
            "candidate" => Role::Candidate,
            "leader" => Role::Leader,
            other => bail!("unknown role {other:?}"),
        };
        let leadership = match (self.leading_generation, self.lease_deadline_ns) {
            (Some(generation), Some(deadline)) => Some(Leadership {
                token: Token::from_parts(generation, self.id)?,
                lease_deadline: Instant::from_nanos(deadline),
            }),
            _ => None,
        };
        Ok(Status {
            id: node(self.id)?,
            term: Term::new(self.term),
            role,
            leader: self.leader.map(node).transpose()?,
            leadership,
            lease_remaining: self
                .lease_remaining_ms
                .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3)),
            commit: LogIndex::new(self.commit),
            applied: LogIndex::new(self.applied),
            last_quorum_contact: None,
            voters: self
                .voters
                .iter()
                .map(|&v| node(v))
                .collect::<Result<_>>()?,
            learners: self
                .learners
                .iter()
                .map(|&v| node(v))
                .collect::<Result<_>>()?,
            events_dropped: 0,
            refused_messages: self.refused_messages,
            last_refusal: None,
            failure: self.failure.clone(),
            stopped: self.stopped,
            at: Instant::from_nanos(self.at_ns),
        })
    }
}

/// Asks the node at `addr` for its status.
pub(crate) fn ask(client: &Client, addr: &str) -> Result<Reported> {
    let (code, body) = client.get(addr, "/status")?;
    if code != 200 {
        bail!("{addr} answered {code}: {}", body.trim());
    }
    serde_json::from_str(&body)
        .with_context(|| format!("{addr}/status is not a fencekit node's status"))
}

pub(crate) fn run(args: &StatusArgs) -> Result<()> {
    let client = Client::new(Duration::from_millis(args.timeout_ms));
    let mut statuses = Vec::new();
    let mut reports = Vec::new();
    let mut unreachable = Vec::new();
    println!(
        "{:<22} {:>4} {:>6} {:<13} {:>6} {:>10} {:>11} {:>7} {:>7}  voters",
        "node", "id", "term", "role", "leader", "generation", "lease left", "commit", "applied"
    );
    for addr in &args.nodes {
        match ask(&client, addr).and_then(|r| r.to_status().map(|s| (r, s))) {
            Ok((r, status)) => {
                let dash = || "-".to_owned();
                println!(
                    "{:<22} {:>4} {:>6} {:<13} {:>6} {:>10} {:>11} {:>7} {:>7}  {:?}",
                    addr,
                    r.id,
                    r.term,
                    r.role,
                    r.leader.map_or_else(dash, |l| l.to_string()),
                    r.leading_generation.map_or_else(dash, |g| g.to_string()),
                    r.lease_remaining_ms
                        .map_or_else(dash, |ms| format!("{ms:.0} ms")),
                    r.commit,
                    r.applied,
                    r.voters
                );
                statuses.push(status);
                reports.push((addr.clone(), r));
            }
            Err(e) => {
                println!("{addr:<22} unreachable: {e:#}");
                unreachable.push(addr.clone());
            }
        }
    }
    let mut anomalies: Vec<String> = audit(&statuses).iter().map(|a| a.to_string()).collect();
    anomalies.extend(checks::clock_rate_anomalies(&reports));
    for anomaly in &anomalies {
        println!("ANOMALY: {anomaly}");
    }
    if let Some(expected) = args.expect_voters {
        let mismatches = checks::voter_mismatches(&reports, expected);
        if !mismatches.is_empty() {
            bail!("--expect-voters {expected}: {}", mismatches.join("; "));
        }
    }
    if !anomalies.is_empty() {
        bail!("{} anomalies found: see above", anomalies.len());
    }
    if !unreachable.is_empty() {
        bail!(
            "{} of {} nodes did not answer ({}): are they running, and is --nodes their \
             --status-addr?",
            unreachable.len(),
            args.nodes.len(),
            unreachable.join(", ")
        );
    }
    println!("audit: no anomaly among {} nodes", statuses.len());
    Ok(())
}
