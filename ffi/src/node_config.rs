//! The node's configuration as JSON: what `fk_node_start` reads.
//!
//! ```json
//! {
//!   "id": 1, "cluster": 7, "data_dir": "/var/lib/app/fk-1", "listen": "127.0.0.1:7001",
//!   "peers": [{"id": 2, "addr": "127.0.0.1:7002"}, {"id": 3, "addr": "127.0.0.1:7003"}],
//!   "voters": [1, 2, 3],
//!   "join": false, "segment_size": 16777216,
//!   "tls": {"dir": "/etc/app/fencekit/node-1"},
//!   "timing": {"tick_ms": 10, "election_tick": 20, "heartbeat_tick": 3,
//!              "max_drift": 0.05, "margin_ms": 10}
//! }
//! ```
//!
//! Peers authenticate with mutual TLS: `"tls": {"dir": D}` reads `D/node.crt`, `D/node.key` and
//! `D/ca.crt` (the layout `fencekit certs` and `fk_dev_certs_init` make), or name the files:
//! `"tls": {"cert": C, "key": K, "ca": A}`. Without TLS the configuration must say
//! `"insecure": true` (anyone who reaches the port can then join); giving neither is an error.
//!
//! `voters` defaults to this node and every peer; `"join": true` starts with no voters, to be
//! added to a running group. Every field of `timing` is optional. `"descriptor"` (on the node
//! and on each peer, optional) describes a node to a tie-breaker policy, for example
//! `"zone=a"`. Unknown fields are refused.
//!
//! Every error names the field at fault as the JSON names it (`cluster`, `timing.tick_ms`,
//! `peers[1].id`, `voters[0]`): a value of the wrong type or out of its type's range (a
//! negative number for a count, an id or a duration) by serde's path to it, and a value the
//! node cannot use by the check that refuses it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use kernel::lease::Timing;
use kernel::node::NodeConfig;
use kernel::transport::tcp::tls::TlsFiles;
use kernel::transport::tcp::{Security, TcpConfig};
use kernel::{ClusterId, LogError, NodeError, NodeId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    id: u64,
    cluster: u64,
    data_dir: String,
    listen: String,
    #[serde(default)]
    peers: Vec<Peer>,
    voters: Option<Vec<u64>>,
    #[serde(default)]
    join: bool,
    /// Bytes per log segment file (optional; the kernel's default otherwise).
    segment_size: Option<u64>,
    #[serde(default)]
    timing: TimingConfig,
    descriptor: Option<String>,
    tls: Option<TlsConfig>,
    #[serde(default)]
    insecure: bool,
    /// Test-only: lets `fk_node_panic_for_testing` fail the node on purpose.
    #[serde(default)]
    test_hooks: bool,
}

/// Where the node's certificate, key and CA are: a directory, or each file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsConfig {
    dir: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
}

impl TlsConfig {
    fn files(self) -> Result<TlsFiles, NodeError> {
        match (self.dir, self.cert, self.key, self.ca) {
            (Some(dir), None, None, None) if !dir.is_empty() => Ok(TlsFiles::in_dir(dir)),
            (None, Some(cert), Some(key), Some(ca))
                if !cert.is_empty() && !key.is_empty() && !ca.is_empty() =>
            {
                Ok(TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    ca: ca.into(),
                })
            }
            _ => Err(invalid(
                "tls: give {\"dir\": D} (D/node.crt, D/node.key, D/ca.crt) or all of \
                 {\"cert\", \"key\", \"ca\"}, each a non-empty path"
                    .into(),
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Peer {
    id: u64,
    addr: String,
    descriptor: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimingConfig {
    tick_ms: Option<u64>,
    election_tick: Option<usize>,
    heartbeat_tick: Option<usize>,
    max_drift: Option<f64>,
    margin_ms: Option<u64>,
}

fn invalid(reason: String) -> NodeError {
    NodeError::InvalidConfig(reason)
}

/// The JSON field of each `Timing` field, by the name `Timing::validate` starts its message
/// with (a test below checks that each is found).
const TIMING_FIELDS: [(&str, &str); 5] = [
    ("tick", "timing.tick_ms"),
    ("election_tick", "timing.election_tick"),
    ("heartbeat_tick", "timing.heartbeat_tick"),
    ("max_drift", "timing.max_drift"),
    ("margin", "timing.margin_ms"),
];

/// `Timing::validate`'s error, naming the JSON field it is about (`timing` for a rule that
/// relates several).
fn timing_error(error: NodeError) -> NodeError {
    let reason = match error {
        NodeError::InvalidConfig(reason) => reason,
        NodeError::ConfigOutOfRange(range) => range.to_string(),
        other => return other,
    };
    let first = reason.split([' ', '=', ':']).next().unwrap_or_default();
    let field = TIMING_FIELDS
        .iter()
        .find(|(name, _)| *name == first)
        .map_or("timing", |(_, json)| json);
    invalid(format!("{field}: {reason}"))
}

/// Reads the JSON into a `Config`. An error names the field at fault by its path from the
/// top (`timing.tick_ms: invalid value: integer `-1`, expected u64`); text that is not JSON
/// "does not parse".
fn read(json: &str) -> Result<Config, NodeError> {
    refuse_arrays(json)?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let config: Config = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            invalid(format!("the JSON does not parse: {inner}"))
        } else if path == "." {
            // A missing or unknown field of the top object: serde names it.
            invalid(inner.to_string())
        } else {
            invalid(format!("{path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| invalid(format!("the JSON does not parse: {e}")))?;
    Ok(config)
}

/// serde's derived structs also read a JSON array, by position: `[1, 7, "/d", ...]` would
/// configure a node without naming a field, and unknown fields could not be refused. Only
/// objects are configurations (a JSON that does not parse is left to the typed read's error).
fn refuse_arrays(json: &str) -> Result<(), NodeError> {
    use serde_json::Value;
    let Ok(value) = serde_json::from_str::<Value>(json) else {
        return Ok(());
    };
    let refuse = |path: &str| {
        Err(invalid(format!(
            "{path}: an array where an object with named fields is expected"
        )))
    };
    if value.is_array() {
        return refuse("the configuration");
    }
    for field in ["timing", "tls"] {
        if value.get(field).is_some_and(Value::is_array) {
            return refuse(field);
        }
    }
    if let Some(Value::Array(peers)) = value.get("peers") {
        for (i, peer) in peers.iter().enumerate() {
            if peer.is_array() {
                return refuse(&format!("peers[{i}]"));
            }
        }
    }
    Ok(())
}

fn node_id(value: u64, field: &str) -> Result<NodeId, NodeError> {
    NodeId::new(value).map_err(|_| invalid(format!("{field} = {value}: must be 1 to 2^64 - 1")))
}

/// A parsed configuration.
pub(crate) struct Parsed {
    pub(crate) node: NodeConfig,
    pub(crate) tcp: TcpConfig,
    /// Each node's descriptor, for a tie-breaker policy.
    pub(crate) descriptors: HashMap<NodeId, Vec<u8>>,
}

/// Parses and validates `json` into the node's and the transport's configuration.
pub(crate) fn parse(json: &str) -> Result<Parsed, NodeError> {
    let config = read(json)?;
    let id = node_id(config.id, "id")?;
    if config.data_dir.is_empty() {
        return Err(invalid(
            "data_dir is empty: name the node's own directory".into(),
        ));
    }
    let listen: SocketAddr = config.listen.parse().map_err(|e| {
        invalid(format!(
            "listen = {:?}: {e}; give an IP address and port like \"127.0.0.1:7001\"",
            config.listen
        ))
    })?;
    let mut peers = Vec::with_capacity(config.peers.len());
    let mut descriptors = HashMap::new();
    if let Some(descriptor) = &config.descriptor {
        descriptors.insert(id, descriptor.clone().into_bytes());
    }
    for (i, peer) in config.peers.iter().enumerate() {
        let peer_id = node_id(peer.id, &format!("peers[{i}].id"))?;
        if peer_id == id {
            return Err(invalid(format!(
                "peers[{i}].id = {peer_id}: peers lists this node ({id}) itself"
            )));
        }
        if peers.iter().any(|(p, _)| *p == peer_id) {
            return Err(invalid(format!(
                "peers[{i}].id = {peer_id}: peers lists node {peer_id} twice"
            )));
        }
        if peer.addr.is_empty() {
            return Err(invalid(format!(
                "peers[{i}].addr is empty: give node {peer_id}'s address, like \"10.0.0.2:7001\""
            )));
        }
        peers.push((peer_id, peer.addr.clone()));
        if let Some(descriptor) = &peer.descriptor {
            descriptors.insert(peer_id, descriptor.clone().into_bytes());
        }
    }
    let voters = match (config.join, config.voters) {
        (true, Some(_)) => {
            return Err(invalid(
                "give either voters (a new group) or \"join\": true (an existing group), not both"
                    .into(),
            ));
        }
        (true, None) => Vec::new(),
        (false, Some(voters)) => voters
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let voter = node_id(v, &format!("voters[{i}]"))?;
                // A voter no one can reach counts towards every quorum and answers none.
                if voter != id && !peers.iter().any(|(p, _)| *p == voter) {
                    return Err(invalid(format!(
                        "voters[{i}] = {voter}: neither this node nor one of its peers, so no \
                         one could reach it; list its address in peers"
                    )));
                }
                Ok(voter)
            })
            .collect::<Result<_, _>>()?,
        (false, None) => std::iter::once(id)
            .chain(peers.iter().map(|(p, _)| *p))
            .collect(),
    };
    let defaults = Timing::default();
    let t = config.timing;
    let timing = Timing {
        tick: t.tick_ms.map_or(defaults.tick, Duration::from_millis),
        election_tick: t.election_tick.unwrap_or(defaults.election_tick),
        heartbeat_tick: t.heartbeat_tick.unwrap_or(defaults.heartbeat_tick),
        max_drift: t.max_drift.unwrap_or(defaults.max_drift),
        margin: t.margin_ms.map_or(defaults.margin, Duration::from_millis),
    };
    // Checked here first, so that the error names the JSON field.
    timing.validate().map_err(timing_error)?;
    let mut node = NodeConfig::new(id, ClusterId::new(config.cluster), config.data_dir, voters);
    node.timing = timing;
    node.test_hooks = config.test_hooks;
    if let Some(size) = config.segment_size {
        node.wal.segment_size = size;
    }
    node.wal.validate().map_err(|e| match e {
        LogError::Option(range) => invalid(format!(
            "segment_size = {}: must be {}",
            range.given,
            range.expected()
        )),
        other => other.into(),
    })?;
    node.validate()?;
    let security = match (config.tls, config.insecure) {
        (Some(tls), false) => Security::Tls(tls.files()?),
        (None, true) => Security::Insecure,
        (Some(_), true) => {
            return Err(invalid(
                "give either \"tls\" or \"insecure\": true, not both".into(),
            ));
        }
        (None, false) => {
            return Err(invalid(
                "no \"tls\": peers must authenticate. Give \"tls\": {\"dir\": D} with the \
                 node's certificates (fencekit certs init, or fk_dev_certs_init, makes them), \
                 or \"insecure\": true to let anyone who reaches the port join the group"
                    .into(),
            ));
        }
    };
    let tcp = TcpConfig {
        cluster: ClusterId::new(config.cluster),
        node: id,
        listen,
        peers,
        security,
    };
    Ok(Parsed {
        node,
        tcp,
        descriptors,
    })
}

#[cfg(test)]
#[path = "node_config_schema_tests.rs"]
mod schema_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        match parse(json) {
            Ok(_) => panic!("{json} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = r#"{"id": 1, "cluster": 7, "data_dir": "/tmp/x", "listen": "127.0.0.1:0",
        "peers": [{"id": 2, "addr": "127.0.0.1:7002"}], "tls": {"dir": "/etc/fk/node-1"}}"#;

    #[test]
    fn voters_default_to_this_node_and_its_peers() {
        let Parsed { node, tcp, .. } = parse(GOOD).unwrap();
        let voters: Vec<u64> = node.voters.iter().map(|v| v.get()).collect();
        assert_eq!(voters, [1, 2]);
        assert_eq!(tcp.peers.len(), 1);
        assert_eq!(node.timing, Timing::default());
        assert_eq!(
            tcp.security,
            Security::Tls(TlsFiles::in_dir("/etc/fk/node-1"))
        );
    }

    #[test]
    fn every_bad_config_is_refused_with_the_field_named() {
        let cases = [
            ("{", "does not parse"),
            (r#"{"id": 1}"#, "missing field `cluster`"),
            (&GOOD.replace("\"id\": 1,", "\"id\": 0,"), "id = 0"),
            (&GOOD.replace("127.0.0.1:0", "localhost"), "listen"),
            (
                &GOOD.replace("\"cluster\"", "\"clustr\""),
                "unknown field `clustr`",
            ),
            (&GOOD.replace("\"id\": 2", "\"id\": 1"), "itself"),
            (&GOOD.replace("/tmp/x", ""), "data_dir"),
            (
                &GOOD.replace(
                    "\"cluster\": 7,",
                    "\"cluster\": 7, \"join\": true, \"voters\": [1],",
                ),
                "not both",
            ),
            (
                &GOOD.replace("\"cluster\": 7,", "\"cluster\": 7, \"voters\": [2],"),
                "do not include this node",
            ),
            (
                &GOOD.replace("\"cluster\": 7,", "\"cluster\": 7, \"voters\": [1, 2, 99],"),
                "voters[2] = 99: neither this node nor one of its peers",
            ),
            (
                r#"[1, 7, "/d", "127.0.0.1:1"]"#,
                "the configuration: an array",
            ),
            (
                &GOOD.replace(
                    "\"cluster\": 7,",
                    "\"cluster\": 7, \"timing\": [10, 20, 3, 0.05, 10],",
                ),
                "timing: an array",
            ),
            (
                &GOOD.replace(
                    "{\"id\": 2, \"addr\": \"127.0.0.1:7002\"}",
                    "[2, \"127.0.0.1:7002\", null]",
                ),
                "peers[0]: an array",
            ),
            (
                &GOOD.replace("{\"dir\": \"/etc/fk/node-1\"}", "[\"/etc/fk/node-1\"]"),
                "tls: an array",
            ),
            (
                &GOOD.replace(
                    "\"cluster\": 7,",
                    "\"cluster\": 7, \"timing\": {\"margin_ms\": 0},",
                ),
                "timing.margin_ms: margin",
            ),
            (
                &GOOD.replace(", \"tls\": {\"dir\": \"/etc/fk/node-1\"}", ""),
                "no \"tls\"",
            ),
            (
                &GOOD.replace("\"tls\"", "\"insecure\": true, \"tls\""),
                "not both",
            ),
            (
                &GOOD.replace("{\"dir\": \"/etc/fk/node-1\"}", "{\"cert\": \"/a\"}"),
                "tls: give",
            ),
            (
                &GOOD.replace("{\"dir\": \"/etc/fk/node-1\"}", "{\"dir\": \"\"}"),
                "tls: give",
            ),
            (
                &GOOD.replace("\"dir\"", "\"directory\""),
                "unknown field `directory`",
            ),
        ];
        for (json, expected) in cases {
            let message = err(json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }

    /// A negative number (or any value its field's type cannot hold) is refused naming the
    /// field by its path, as is every value the node cannot use.
    #[test]
    fn every_config_error_names_its_field_by_its_json_path() {
        let with =
            |extra: &str| GOOD.replace("\"cluster\": 7,", &format!("\"cluster\": 7, {extra},"));
        let cases = [
            (
                GOOD.replace("\"cluster\": 7", "\"cluster\": -7"),
                "cluster: invalid value: integer `-7`",
            ),
            (
                GOOD.replace("\"id\": 1,", "\"id\": -1,"),
                "id: invalid value: integer `-1`",
            ),
            (
                with("\"timing\": {\"tick_ms\": -1}"),
                "timing.tick_ms: invalid value",
            ),
            (
                with("\"timing\": {\"margin_ms\": -1}"),
                "timing.margin_ms: invalid value",
            ),
            (
                with("\"timing\": {\"election_tick\": -1}"),
                "timing.election_tick: invalid value",
            ),
            (
                with("\"timing\": {\"heartbeat_tick\": -1}"),
                "timing.heartbeat_tick: invalid value",
            ),
            (
                with("\"timing\": {\"max_drift\": \"high\"}"),
                "timing.max_drift: invalid type",
            ),
            (
                with("\"segment_size\": -4096"),
                "segment_size: invalid value",
            ),
            (with("\"voters\": [1, -2]"), "voters[1]: invalid value"),
            (with("\"voters\": [1, 0]"), "voters[1] = 0"),
            (
                GOOD.replace("\"id\": 2", "\"id\": -2"),
                "peers[0].id: invalid value",
            ),
            (GOOD.replace("\"id\": 2", "\"id\": 0"), "peers[0].id = 0"),
            (
                GOOD.replace("\"127.0.0.1:0\"", "7001"),
                "listen: invalid type",
            ),
            (with("\"tls\": 5"), "tls: invalid type"),
            // Each rule of Timing::validate, under the JSON field it is about.
            (
                with("\"timing\": {\"tick_ms\": 0}"),
                "timing.tick_ms: tick (ns) = 0 is out of range",
            ),
            (
                with("\"timing\": {\"tick_ms\": 20000}"),
                "timing.tick_ms: tick (ns) = 20000000000 is out of range",
            ),
            (
                with("\"timing\": {\"election_tick\": 2}"),
                "timing.election_tick: election_tick = 2",
            ),
            (
                with("\"timing\": {\"heartbeat_tick\": 0}"),
                "timing.heartbeat_tick: heartbeat_tick = 0",
            ),
            (
                with("\"timing\": {\"heartbeat_tick\": 30}"),
                "timing.heartbeat_tick: heartbeat_tick = 30 must be less than election_tick",
            ),
            (
                with("\"timing\": {\"max_drift\": -0.25}"),
                "timing.max_drift: max_drift = -0.25",
            ),
            (
                with("\"timing\": {\"max_drift\": 0.5}"),
                "timing.max_drift: max_drift = 0.5",
            ),
            (
                with("\"timing\": {\"margin_ms\": 1}"),
                "timing.margin_ms: margin = 1ms",
            ),
            (
                with("\"segment_size\": 1000"),
                "segment_size = 1000: must be a multiple of 4096",
            ),
        ];
        for (json, expected) in cases {
            let message = err(&json);
            assert!(message.contains(expected), "{json}: {message}");
        }
        // Trailing text is not JSON either.
        assert!(err(&format!("{GOOD} x")).contains("does not parse"));
    }
}
