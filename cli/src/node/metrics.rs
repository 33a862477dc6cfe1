//! The node's `/metrics`, in the Prometheus text exposition format.

use std::sync::atomic::{AtomicU64, Ordering};

use fencekit::node::{Role, Status};
use fencekit::transport::tcp::TcpMonitor;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The gauges, set from the node's status at each scrape.
pub(crate) struct NodeMetrics {
    registry: Registry,
    term: Gauge,
    leader: Gauge,
    role: Family<Labels, Gauge>,
    leading_generation: Gauge,
    lease_remaining: Gauge<f64, AtomicU64>,
    commit: Gauge,
    applied: Gauge,
    events_dropped: Gauge,
    failed: Gauge,
    refused_messages: Gauge,
    insecure: Gauge,
    connections: Family<Labels, Gauge>,
    /// Always 1, labelled with the node's cluster and id: alert rules join it on the scrape
    /// target to group the other series by cluster (two leaders in *one* cluster), since the
    /// Prometheus configuration may not label targets by cluster.
    info: Family<Vec<(&'static str, String)>, Gauge>,
    /// The scheduler's completions, by the store's answer: the fence verdicts this node met.
    pub(crate) writes: Family<Labels, Counter>,
}

const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

impl NodeMetrics {
    pub(crate) fn new(cluster: u64, node: u64) -> NodeMetrics {
        let mut m = NodeMetrics {
            term: Gauge::default(),
            leader: Gauge::default(),
            role: Family::default(),
            leading_generation: Gauge::default(),
            lease_remaining: Gauge::default(),
            commit: Gauge::default(),
            applied: Gauge::default(),
            events_dropped: Gauge::default(),
            failed: Gauge::default(),
            refused_messages: Gauge::default(),
            insecure: Gauge::default(),
            connections: Family::default(),
            writes: Family::default(),
            info: Family::default(),
            registry: Registry::with_prefix("fencekit"),
        };
        m.info
            .get_or_create(&vec![
                ("cluster", cluster.to_string()),
                ("node", node.to_string()),
            ])
            .set(1);
        let registry = &mut m.registry;
        registry.register(
            "node_info",
            "1, labelled with the node's --cluster and --id",
            m.info.clone(),
        );
        registry.register("term", "The node's current Raft term", m.term.clone());
        registry.register(
            "leader_id",
            "The leader this node knows of (0: none)",
            m.leader.clone(),
        );
        registry.register(
            "role",
            "1 for the node's Raft role, 0 for the others",
            m.role.clone(),
        );
        registry.register(
            "leading_generation",
            "The generation this node leads with a live lease (0: it does not)",
            m.leading_generation.clone(),
        );
        registry.register(
            "lease_remaining_seconds",
            "Time left on this node's lease (0 without one)",
            m.lease_remaining.clone(),
        );
        registry.register("commit_index", "Highest committed index", m.commit.clone());
        registry.register(
            "applied_index",
            "Highest index delivered to the host",
            m.applied.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped because the host did not read them",
            m.events_dropped.clone(),
        );
        registry.register(
            "failed",
            "1 if the node failed (a panic on its thread, a log it could not write): it reports \
             no leadership until restarted",
            m.failed.clone(),
        );
        registry.register(
            "refused_messages",
            "Peer messages refused at the step boundary: messages no honest member sends",
            m.refused_messages.clone(),
        );
        registry.register(
            "insecure",
            "1 if the node runs without TLS (--insecure)",
            m.insecure.clone(),
        );
        registry.register(
            "peer_connections",
            "Peer connections by outcome: refused (TLS or handshake), shed (too many \
             handshakes at once), broken (protocol violation), idle_closed, tls_reloads, \
             tls_reload_failures; open (authenticated inbound, now)",
            m.connections.clone(),
        );
        registry.register(
            "scheduler_writes",
            "Job completions this node's scheduler wrote, by the store's verdict (accepted, \
             unfenced, stale, conflict)",
            m.writes.clone(),
        );
        m
    }

    /// The exposition text for `status` and the transport's counters.
    pub(crate) fn render(&self, status: &Status, transport: Option<&TcpMonitor>) -> String {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.term.set(to_i64(status.term.get()));
        self.leader
            .set(status.leader.map_or(0, |l| to_i64(l.get())));
        for role in ROLES {
            self.role
                .get_or_create(&vec![("role", role.as_str())])
                .set(i64::from(role == status.role));
        }
        self.leading_generation.set(
            status
                .leadership
                .map_or(0, |l| to_i64(l.token.generation.get())),
        );
        self.lease_remaining
            .set(status.lease_remaining.map_or(0.0, |d| d.as_secs_f64()));
        self.commit.set(to_i64(status.commit.get()));
        self.applied.set(to_i64(status.applied.get()));
        self.events_dropped.set(to_i64(status.events_dropped));
        self.failed.set(i64::from(status.failure.is_some()));
        self.refused_messages.set(to_i64(status.refused_messages));
        if let Some(monitor) = transport {
            self.insecure.set(i64::from(monitor.is_insecure()));
            let stats = monitor.stats();
            for (kind, counter) in [
                ("refused", &stats.refused),
                ("shed", &stats.shed),
                ("broken", &stats.broken),
                ("idle_closed", &stats.idle_closed),
                ("tls_reloads", &stats.tls_reloads),
                ("tls_reload_failures", &stats.tls_reload_failures),
            ] {
                self.connections
                    .get_or_create(&vec![("outcome", kind)])
                    .set(to_i64(counter.load(Ordering::Relaxed)));
            }
            self.connections
                .get_or_create(&vec![("outcome", "open")])
                .set(i64::try_from(monitor.inbound_connections()).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
