//! How serious an anomaly event is: the detector rates it, policies filter on it.

use serde::{Deserialize, Serialize};

/// How far over the threshold the event's peak went (`r_eff` = score / threshold):
/// low < 1.5, medium < 3, high < 6, critical >= 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Severity for a score ratio `r_eff` (1.0 = at threshold).
    pub fn from_ratio(r: f64) -> Self {
        if r >= 6.0 {
            Severity::Critical
        } else if r >= 3.0 {
            Severity::High
        } else if r >= 1.5 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}
