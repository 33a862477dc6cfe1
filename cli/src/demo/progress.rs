//! The live progress line on stderr: the run, its clock, who leads, what the ledger holds so
//! far, and what the nemesis is doing. Redrawn in place on a terminal; elsewhere (a log, a
//! test) one line each time the nemesis moves on.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::observer::Observer;
use crate::node::scheduler::Mode;

pub(crate) struct Progress {
    mode: Mode,
    terminal: bool,
    last_what: String,
    last_drawn: Option<Instant>,
}

const REDRAW: Duration = Duration::from_millis(250);

impl Progress {
    pub(crate) fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            terminal: std::io::stderr().is_terminal(),
            last_what: String::new(),
            last_drawn: None,
        }
    }

    pub(crate) fn tick(&mut self, cluster: &Cluster, observer: &Observer, what: &str) {
        let moved_on = what != self.last_what;
        let due = self.last_drawn.is_none_or(|at| at.elapsed() >= REDRAW);
        if !(moved_on || self.terminal && due) {
            return;
        }
        self.last_what = what.to_owned();
        self.last_drawn = Some(Instant::now());
        let line = self.line(cluster, observer, what);
        if self.terminal {
            // Cut to the terminal's width: a wrapped line could not be redrawn in place.
            let line: String = line
                .chars()
                .take(terminal_width().saturating_sub(1))
                .collect();
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn line(&self, cluster: &Cluster, observer: &Observer, what: &str) -> String {
        let leader = observer.acting().map_or_else(
            || "none".to_owned(),
            |a| match a.generation {
                Some(g) => format!("node {} (g{g})", a.node),
                None => format!("node {}", a.node),
            },
        );
        let ledger = match cluster.ledger() {
            Ok(entries) => {
                let landed = entries.iter().filter(|e| e.outcome.landed()).count();
                let rejected = entries.len() - landed;
                let mut runs: Vec<(&str, u64)> = entries
                    .iter()
                    .filter(|e| e.outcome.landed())
                    .map(|e| (e.job.as_str(), e.run))
                    .collect();
                runs.sort_unstable();
                runs.dedup();
                format!(
                    "landed {landed}, twice {}, rejected {rejected}",
                    landed - runs.len()
                )
            }
            Err(_) => "ledger unavailable".to_owned(),
        };
        let mode = match self.mode {
            Mode::Naive => "naive ",
            Mode::Fenced => "fenced",
        };
        format!(
            "{mode} {:>5.1} s | leader {leader:<14} | {ledger} | {what}",
            observer.now_ms() as f64 / 1e3
        )
    }

    /// Ends the line on a terminal.
    pub(crate) fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// The width of the terminal on stderr (80 if it cannot be told).
fn terminal_width() -> usize {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; stderr is a valid descriptor.
    let known = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &raw mut size) } == 0;
    if known && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}
