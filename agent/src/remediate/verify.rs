//! Verification of an executed action: a metric must fall below a threshold
//! within a time limit. [`Verification`] is the pure state machine; the
//! remediator drives it with a metric source and feeds the result to the
//! rule's circuit breaker.

use serde::{Deserialize, Serialize};

pub use sco_policy::VerifySpec;

/// Where a verification stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VerifyState {
    /// Still waiting; `last_value` is the latest reading, if any.
    Pending { last_value: Option<f64> },
    /// The metric went below the threshold.
    Passed { value: f64, at_ms: i64 },
    /// The deadline passed without a reading below the threshold.
    Failed { last_value: Option<f64> },
    /// Nothing to verify: the action did not run (dry run, refused).
    Skipped,
}

impl VerifyState {
    pub fn is_final(&self) -> bool {
        !matches!(self, VerifyState::Pending { .. })
    }
}

/// One verification in progress.
#[derive(Debug, Clone)]
pub struct Verification {
    spec: VerifySpec,
    deadline_ms: i64,
    state: VerifyState,
}

impl Verification {
    /// Starts waiting at `started_ms` (normally the end of the action).
    pub fn start(spec: VerifySpec, started_ms: i64) -> Self {
        let window = i64::try_from(spec.within_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            deadline_ms: started_ms.saturating_add(window),
            spec,
            state: VerifyState::Pending { last_value: None },
        }
    }

    pub fn spec(&self) -> &VerifySpec {
        &self.spec
    }

    pub fn deadline_ms(&self) -> i64 {
        self.deadline_ms
    }

    pub fn state(&self) -> &VerifyState {
        &self.state
    }

    /// Feeds one reading (`None` when the metric is unavailable). A final
    /// state never changes again. A reading at the deadline still counts.
    pub fn observe(&mut self, now_ms: i64, value: Option<f64>) -> &VerifyState {
        let VerifyState::Pending { last_value } = &self.state else {
            return &self.state;
        };
        let last_value = value.filter(|v| v.is_finite()).or(*last_value);
        self.state = match value.filter(|v| v.is_finite()) {
            Some(v) if v < self.spec.below && now_ms <= self.deadline_ms => VerifyState::Passed {
                value: v,
                at_ms: now_ms,
            },
            _ if now_ms >= self.deadline_ms => VerifyState::Failed { last_value },
            _ => VerifyState::Pending { last_value },
        };
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VerifySpec {
        VerifySpec {
            metric: "cpu.busy_pct".into(),
            below: 50.0,
            within_secs: 10,
            poll_ms: 1000,
        }
    }

    #[test]
    fn state_machine_table() {
        // (readings as (ms after start, value), final state kind)
        type Case = (&'static [(i64, Option<f64>)], &'static str);
        let cases: [Case; 6] = [
            (&[(1000, Some(90.0)), (2000, Some(40.0))], "passed"),
            (&[(1000, Some(90.0)), (10_000, Some(49.9))], "passed"),
            (&[(1000, Some(90.0)), (10_001, Some(10.0))], "failed"),
            (&[(1000, None), (5000, None), (11_000, None)], "failed"),
            (&[(1000, Some(50.0))], "pending"),
            (&[(1000, Some(f64::NAN)), (12_000, Some(1.0))], "failed"),
        ];
        for (readings, want) in cases {
            let mut v = Verification::start(spec(), 0);
            for (t, x) in readings {
                v.observe(*t, *x);
            }
            let got = match v.state() {
                VerifyState::Passed { .. } => "passed",
                VerifyState::Failed { .. } => "failed",
                VerifyState::Pending { .. } => "pending",
                VerifyState::Skipped => "skipped",
            };
            assert_eq!(got, want, "{readings:?}");
        }
    }

    #[test]
    fn final_states_stick() {
        let mut v = Verification::start(spec(), 0);
        v.observe(1000, Some(1.0));
        v.observe(20_000, Some(99.0));
        assert!(matches!(v.state(), VerifyState::Passed { at_ms: 1000, .. }));
    }
}
