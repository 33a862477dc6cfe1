//! The store's `/metrics`, in the Prometheus text exposition format: the fence's verdicts on
//! every request, refused generation jumps, and the ledger's size and duplicates.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ledger::LedgerCounts;
use crate::store_api::{Call, Outcome};

type Labels = Vec<(&'static str, &'static str)>;

pub(crate) struct StoreMetrics {
    registry: Registry,
    decisions: Family<Labels, Counter>,
    jumps_refused: Counter,
    entries: Gauge,
    rejections: Gauge,
    duplicates: Gauge,
}

impl StoreMetrics {
    pub(crate) fn new() -> StoreMetrics {
        let mut m = StoreMetrics {
            registry: Registry::with_prefix("fencekit_store"),
            decisions: Family::default(),
            jumps_refused: Counter::default(),
            entries: Gauge::default(),
            rejections: Gauge::default(),
            duplicates: Gauge::default(),
        };
        m.registry.register(
            "decisions",
            "Requests decided, by request (begin, complete) and outcome (accepted, unfenced, \
             stale, conflict)",
            m.decisions.clone(),
        );
        m.registry.register(
            "generation_jumps_refused",
            "Tokens refused for a generation further above the mark than \
             --max-generation-jump: a bug or an attack (alarm)",
            m.jumps_refused.clone(),
        );
        m.registry.register(
            "ledger_entries",
            "Completions that landed, in the ledger",
            m.entries.clone(),
        );
        m.registry.register(
            "ledger_rejections_kept",
            "Refused completions the ledger keeps (bounded by --rejections-kept)",
            m.rejections.clone(),
        );
        m.registry.register(
            "duplicate_runs",
            "Job runs that landed more than once",
            m.duplicates.clone(),
        );
        m
    }

    pub(crate) fn decided(&self, call: Call, outcome: Outcome) {
        let request = call.name();
        self.decisions
            .get_or_create(&vec![("request", request), ("outcome", outcome.as_str())])
            .inc();
    }

    /// One more token refused for its generation jump.
    pub(crate) fn jump_refused(&self) {
        self.jumps_refused.inc();
    }

    /// The exposition text, with the ledger's figures as of its last commit.
    pub(crate) fn render(&self, counts: &LedgerCounts) -> String {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.entries.set(gauge(counts.completions));
        self.rejections.set(gauge(counts.rejections_retained));
        self.duplicates.set(gauge(counts.duplicate_runs));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
