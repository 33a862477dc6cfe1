//! The store's `/metrics`, in the Prometheus text exposition format: the fence's verdicts on
//! every request, and the ledger's size and duplicates.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store_api::{Call, Outcome};

type Labels = Vec<(&'static str, &'static str)>;

pub(crate) struct StoreMetrics {
    registry: Registry,
    decisions: Family<Labels, Counter>,
    entries: Gauge,
    duplicates: Gauge,
}

impl StoreMetrics {
    pub(crate) fn new() -> StoreMetrics {
        let mut m = StoreMetrics {
            registry: Registry::with_prefix("fencekit_store"),
            decisions: Family::default(),
            entries: Gauge::default(),
            duplicates: Gauge::default(),
        };
        m.registry.register(
            "decisions",
            "Requests decided, by request (begin, complete) and outcome (accepted, unfenced, \
             stale, conflict)",
            m.decisions.clone(),
        );
        m.registry.register(
            "ledger_entries",
            "Completions in the ledger, rejected ones included",
            m.entries.clone(),
        );
        m.registry.register(
            "duplicate_runs",
            "Job runs that landed more than once",
            m.duplicates.clone(),
        );
        m
    }

    pub(crate) fn decided(&self, call: Call, outcome: Outcome) {
        let request = call.path().trim_start_matches('/');
        self.decisions
            .get_or_create(&vec![("request", request), ("outcome", outcome.as_str())])
            .inc();
    }

    /// The exposition text, with the ledger's current figures.
    pub(crate) fn render(&self, entries: usize, duplicates: usize) -> String {
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.duplicates
            .set(i64::try_from(duplicates).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
