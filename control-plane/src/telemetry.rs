//! The control plane's own metrics, exposed at `GET /metrics` in the
//! Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template (`/hosts/{id}`), never the raw path, to bound
    /// cardinality.
    pub route: String,
    pub status: u16,
}

/// Why a new agent stream was refused: `limit` (`replicas.max_streams`) or `lag`
/// (`replicas.max_lag_ms`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

pub struct Telemetry {
    registry: Registry,
    pub ingest_messages: Counter,
    pub ingest_rows: Counter,
    pub ingest_duplicates: Counter,
    pub ingest_rejected: Counter,
    pub ingest_groups: Counter,
    pub agents_connected: Gauge,
    pub anomalies_opened: Counter,
    pub rollups_purged: Counter,
    /// The runtime's scheduling lag (`load.rs`), in milliseconds.
    pub runtime_lag_ms: Gauge,
    /// 1 while new agent streams are refused because the runtime is late.
    pub shedding: Gauge,
    pub streams_refused: Family<RefusedLabels, Counter>,
    pub http_requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sco");
        let ingest_messages = Counter::default();
        let ingest_rows = Counter::default();
        let ingest_duplicates = Counter::default();
        let ingest_rejected = Counter::default();
        let ingest_groups = Counter::default();
        let agents_connected = Gauge::default();
        let anomalies_opened = Counter::default();
        let rollups_purged = Counter::default();
        let runtime_lag_ms = Gauge::default();
        let shedding = Gauge::default();
        let streams_refused = Family::<RefusedLabels, Counter>::default();
        let http_requests =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "ingest_messages",
            "Durable agent messages stored",
            ingest_messages.clone(),
        );
        registry.register("ingest_rows", "Rollup rows stored", ingest_rows.clone());
        registry.register(
            "ingest_duplicates",
            "Replayed agent messages acknowledged without storing",
            ingest_duplicates.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Invalid agent messages acknowledged and dropped",
            ingest_rejected.clone(),
        );
        registry.register(
            "ingest_groups",
            "Transactions that stored rollups (group commits: rollups stored over this is the mean group)",
            ingest_groups.clone(),
        );
        registry.register(
            "agents_connected",
            "Agents with an open stream to this replica",
            agents_connected.clone(),
        );
        registry.register(
            "anomalies_opened",
            "Anomaly events opened by agents",
            anomalies_opened.clone(),
        );
        registry.register(
            "rollups_purged",
            "Stored rollup windows deleted by the retention sweep",
            rollups_purged.clone(),
        );
        registry.register(
            "runtime_lag_milliseconds",
            "How late the async runtime runs its tasks: the largest lateness of a 100 ms timer over about the last 2 s",
            runtime_lag_ms.clone(),
        );
        registry.register(
            "admission_shedding",
            "1 while new agent streams are refused because the runtime lags over replicas.max_lag_ms",
            shedding.clone(),
        );
        registry.register(
            "streams_refused",
            "New agent streams refused, by reason: limit (replicas.max_streams) or lag (replicas.max_lag_ms)",
            streams_refused.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "REST request latency",
            http_requests.clone(),
        );
        Self {
            registry,
            ingest_messages,
            ingest_rows,
            ingest_duplicates,
            ingest_rejected,
            ingest_groups,
            agents_connected,
            anomalies_opened,
            rollups_purged,
            runtime_lag_ms,
            shedding,
            streams_refused,
            http_requests,
        }
    }
}

impl Telemetry {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
