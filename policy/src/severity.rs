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
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Low 0 .. critical 3: stored beside the name so queries can filter by order.
    pub fn rank(self) -> i64 {
        self as i64
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_order() {
        for (i, s) in Severity::ALL.into_iter().enumerate() {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.rank(), i as i64);
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(Severity::parse("Critical"), None);
        assert!(Severity::Low < Severity::Critical);
    }
}
