//! One metric's part in an anomaly event, as the detector explains it (the agent's events, the
//! control plane's records, notifications and runbook matching all carry this).

use serde::{Deserialize, Serialize};

/// A metric that contributed to an event, at the event's peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    pub metric: String,
    /// The metric's value at that tick, in its own units.
    pub value: f64,
    /// `median - 3 * scale` (not below 0 for a metric whose recent values are all >= 0).
    pub expected_low: f64,
    /// `median + 3 * scale` (never above 100 for a percentage).
    pub expected_high: f64,
    /// Share of the score, 0..1 (`c^2 / sum c^2` over the scored metrics).
    pub contribution: f64,
}
