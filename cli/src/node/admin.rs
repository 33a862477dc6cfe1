//! The node's admin endpoints, the demo's nemesis: `/admin/partition` cuts the node off from
//! chosen peers, `/admin/clock` runs its clock at another rate. Either can make the group
//! unsafe (a clock outside the drift bound lets two leases overlap), so they are off unless
//! `--admin` is given, and then served on their own listener (`--admin-addr`, loopback by
//! default) to requests bearing the token of `--admin-token-file`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use fencekit::NodeId;

use super::partition::DropRules;
use super::skew::SkewedClock;
use crate::http::{Reply, Request};

#[derive(Args, Debug, Clone)]
pub(crate) struct AdminArgs {
    /// Serve the admin endpoints (partitions and clock rates, for drills and the demo): they
    /// can make the group unsafe, and are off by default.
    #[arg(long, requires = "admin_token_file")]
    pub(crate) admin: bool,
    /// Where to serve them: a listener of their own, loopback unless you choose otherwise.
    #[arg(long, default_value = "127.0.0.1:0", requires = "admin")]
    pub(crate) admin_addr: SocketAddr,
    /// A file holding the token admin requests must bear (`Authorization: Bearer TOKEN`): 16
    /// to 256 printable characters, readable by this user only.
    #[arg(long, requires = "admin")]
    pub(crate) admin_token_file: Option<PathBuf>,
}

/// Shortest token accepted: guessing one must be hopeless.
const TOKEN_MIN: usize = 16;
const TOKEN_MAX: usize = 256;

impl AdminArgs {
    /// The token, if the endpoints are on.
    pub(crate) fn token(&self) -> Result<Option<String>> {
        let Some(path) = self.admin_token_file.as_ref().filter(|_| self.admin) else {
            return Ok(None);
        };
        read_token_file("--admin-token-file", path).map(Some)
    }
}

/// The bearer token in `path` (named by `flag`): 16 to 256 printable ASCII characters, in a
/// file readable by this user only.
pub(crate) fn read_token_file(flag: &str, path: &std::path::Path) -> Result<String> {
    let bytes = fencekit::transport::tcp::tls::read_secret_file(path)
        .map_err(|reason| anyhow!("{flag} {reason}"))?;
    let token =
        String::from_utf8(bytes).map_err(|_| anyhow!("{flag} {}: not text", path.display()))?;
    let token = token.trim();
    if !(TOKEN_MIN..=TOKEN_MAX).contains(&token.len())
        || !token.chars().all(|c| c.is_ascii_graphic())
    {
        bail!(
            "{flag} {}: the token must be {TOKEN_MIN} to {TOKEN_MAX} printable ASCII characters \
             without spaces (`head -c 32 /dev/urandom | base64` makes one)",
            path.display()
        );
    }
    Ok(token.to_owned())
}

/// True when `request` bears `token` (`Authorization: Bearer TOKEN`).
pub(crate) fn bears(request: &Request, token: &str) -> bool {
    request
        .bearer
        .as_deref()
        .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
}

/// What the admin endpoints act on.
pub(crate) struct Admin {
    pub(crate) token: String,
    pub(crate) rules: DropRules,
    pub(crate) clock: std::sync::Arc<SkewedClock>,
    /// The lease arithmetic's bound on two members' clock rates.
    pub(crate) max_drift: f64,
}

impl Admin {
    pub(crate) fn handle(&self, request: &Request) -> Reply {
        if !bears(request, &self.token) {
            return Reply::error(
                401,
                "admin requests need `Authorization: Bearer TOKEN`, the token of the node's \
                 --admin-token-file",
            );
        }
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/admin/partition") => self.partition(request),
            ("POST", "/admin/clock") => self.set_clock(request),
            (_, path) => Reply::error(
                404,
                format!("no {path}: POST /admin/partition?drop=IDS, /admin/clock?rate=R"),
            ),
        }
    }

    fn partition(&self, request: &Request) -> Reply {
        let ids = request.param("drop").unwrap_or("");
        let parsed: Option<Vec<NodeId>> = ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().ok().and_then(|id| NodeId::new(id).ok()))
            .collect();
        match parsed {
            Some(peers) => {
                self.rules.set(peers);
                Reply::json(
                    200,
                    serde_json::json!({ "partitioned_from": self.rules.peers() }).to_string(),
                )
            }
            None => Reply::error(400, format!("drop={ids:?}: give node ids, comma-separated")),
        }
    }

    /// Sets the clock's rate, and says which rates the other members may run at for the lease
    /// arithmetic to hold: a lease of `L` leader-ticks ends before a follower's window of
    /// `L / (1 - max_drift)` follower-ticks only while the slower of two clocks runs at least
    /// `1 - max_drift` times the faster. Each node alone within `max_drift` of true time is
    /// not enough (1.04 and 0.96 are not within 5% of each other).
    fn set_clock(&self, request: &Request) -> Reply {
        let rate = request.param("rate").and_then(|r| r.parse::<f64>().ok());
        match rate {
            Some(rate) if (0.01..=10.0).contains(&rate) => {
                self.clock.set_rate(rate);
                let floor = 1.0 - self.max_drift;
                Reply::json(
                    200,
                    serde_json::json!({
                        "clock_rate": rate,
                        "max_drift": self.max_drift,
                        "pairwise_bound": format!(
                            "the slower of any two members' clocks runs at least {floor} times \
                             the faster"
                        ),
                        "peer_rates_allowed": [rate * floor, rate / floor],
                    })
                    .to_string(),
                )
            }
            _ => Reply::error(400, "rate: give a number from 0.01 to 10, such as 1.03"),
        }
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
