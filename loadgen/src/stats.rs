//! What the simulated agents count while they run: a latency histogram,
//! message counters by kind, connections, reconnects and errors by kind.
//! Shared by every agent task; counters are atomics, the histogram and the
//! error table sit behind short-held locks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Sub-buckets per power of two: values are kept within 1/64 (1.6 %).
const SUB: u32 = 64;

/// A log-linear histogram of microseconds (HDR-style, without the crate):
/// constant memory whatever the number of samples, so a long run at
/// thousands of agents costs nothing to summarise.
#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; 64 * SUB as usize],
            count: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < u64::from(SUB) {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= 6
    let shift = exp - SUB.trailing_zeros();
    let sub = (us >> shift) - u64::from(SUB); // 0..SUB
    ((exp - SUB.trailing_zeros() + 1) * SUB) as usize + sub as usize
}

/// The upper edge of a bucket, in microseconds.
fn bucket_value(index: usize) -> u64 {
    let sub_count = SUB as usize;
    if index < sub_count {
        return index as u64;
    }
    let group = (index / sub_count) as u32; // >= 1
    let sub = (index % sub_count) as u64;
    let shift = group - 1;
    ((u64::from(SUB) + sub + 1) << shift).saturating_sub(1)
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = bucket_of(us).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1), in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_value(i).min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn summary(&self) -> Latency {
        Latency {
            count: self.count,
            p50_ms: round(self.quantile_ms(0.50)),
            p90_ms: round(self.quantile_ms(0.90)),
            p99_ms: round(self.quantile_ms(0.99)),
            max_ms: round(self.max_us as f64 / 1000.0),
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Acknowledgement latency: from the moment a durable message is handed to
/// the stream to the moment its ack arrives.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The durable message kinds the agent sends (the ones that are acked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rollup = 0,
    Anomaly = 1,
    PolicyStatus = 2,
    ActionReport = 3,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Rollup,
        Kind::Anomaly,
        Kind::PolicyStatus,
        Kind::ActionReport,
    ];

    /// The name the control plane stores in `agent_messages.kind`.
    pub fn stored_as(self) -> &'static str {
        match self {
            Kind::Rollup => "rollup",
            Kind::Anomaly => "anomaly",
            Kind::PolicyStatus => "policy_status",
            Kind::ActionReport => "action_report",
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub connected: AtomicI64,
    pub produced: [AtomicU64; 4],
    pub acked: [AtomicU64; 4],
    /// Durable messages written to a stream, resends included.
    pub sent: AtomicU64,
    pub resent: AtomicU64,
    pub heartbeats: AtomicU64,
    pub server_heartbeats: AtomicU64,
    pub policies_received: AtomicU64,
    pub commands_received: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    /// Refusals followed at once to a replica the refusal named.
    pub redirects: AtomicU64,
    errors: Mutex<BTreeMap<String, ErrorCount>>,
    /// New streams refused (`RESOURCE_EXHAUSTED`), by reason: full, overloaded, other.
    refused: Mutex<BTreeMap<String, ErrorCount>>,
    step: Mutex<Histogram>,
    policies: Mutex<BTreeMap<(String, u64), PolicyReceipt>>,
}

/// Who was sent one policy revision, and when: the fan-out of a rollout to the connected
/// agents. Each agent counts once (its first receipt), however often a reconnect brings the
/// revision again.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct PolicyReceipt {
    pub name: String,
    pub revision: u64,
    pub agents: u64,
    /// Unix milliseconds of the first and the last agent's first receipt.
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ErrorCount {
    pub count: u64,
    /// The first message of this kind, to say what it was.
    pub example: String,
}

/// Counters at one moment, to subtract from a later one.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub produced: [u64; 4],
    pub acked: [u64; 4],
    pub sent: u64,
    pub resent: u64,
    pub heartbeats: u64,
    pub reconnects: u64,
    pub connects: u64,
    pub redirects: u64,
    pub errors: BTreeMap<String, ErrorCount>,
    pub refused: BTreeMap<String, ErrorCount>,
}

impl Snapshot {
    pub fn acked_total(&self) -> u64 {
        self.acked.iter().sum()
    }
    pub fn produced_total(&self) -> u64 {
        self.produced.iter().sum()
    }
    pub fn error_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
    pub fn refused_total(&self) -> u64 {
        self.refused.values().map(|e| e.count).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a task panicked while counting; the counts stay usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn count(table: &Mutex<BTreeMap<String, ErrorCount>>, kind: &str, message: &str) {
    let mut table = lock(table);
    let e = table.entry(kind.to_string()).or_default();
    if e.count == 0 {
        e.example = message.chars().take(300).collect();
    }
    e.count += 1;
}

impl Stats {
    pub fn error(&self, kind: &str, message: &str) {
        count(&self.errors, kind, message);
    }

    /// A new stream refused by a full or overloaded control plane (not an error: the agent
    /// goes elsewhere or tries again, as `sco-agent` does).
    pub fn refusal(&self, reason: &str, message: &str) {
        count(&self.refused, reason, message);
    }

    /// An agent's first receipt of revision `revision` of policy `name`, at `at_ms`.
    pub fn policy_received(&self, name: &str, revision: u64, at_ms: i64) {
        let mut policies = lock(&self.policies);
        let r = policies
            .entry((name.to_string(), revision))
            .or_insert_with(|| PolicyReceipt {
                name: name.to_string(),
                revision,
                agents: 0,
                first_ms: at_ms,
                last_ms: at_ms,
            });
        r.agents += 1;
        r.first_ms = r.first_ms.min(at_ms);
        r.last_ms = r.last_ms.max(at_ms);
    }

    /// Every revision received so far, by policy name and revision.
    pub fn policy_receipts(&self) -> Vec<PolicyReceipt> {
        lock(&self.policies).values().cloned().collect()
    }

    pub fn ack_latency(&self, d: Duration) {
        lock(&self.step).record(d);
    }

    /// The histogram of the step so far.
    pub fn step_histogram(&self) -> Histogram {
        lock(&self.step).clone()
    }

    /// Ends a step: returns its histogram and starts an empty one.
    pub fn take_step_histogram(&self) -> Histogram {
        std::mem::take(&mut *lock(&self.step))
    }

    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &[AtomicU64; 4]| std::array::from_fn(|i| a[i].load(Ordering::Relaxed));
        Snapshot {
            produced: load(&self.produced),
            acked: load(&self.acked),
            sent: self.sent.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            heartbeats: self.heartbeats.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            redirects: self.redirects.load(Ordering::Relaxed),
            errors: lock(&self.errors).clone(),
            refused: lock(&self.refused).clone(),
        }
    }
}

/// The counts of a table as text: `full 3, overloaded 1`.
pub fn counts_text(e: &BTreeMap<String, ErrorCount>) -> String {
    e.iter()
        .map(|(k, v)| format!("{k} {}", v.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `later - earlier` for error (and refusal) tables.
pub fn error_delta(
    later: &BTreeMap<String, ErrorCount>,
    earlier: &BTreeMap<String, ErrorCount>,
) -> BTreeMap<String, ErrorCount> {
    later
        .iter()
        .filter_map(|(k, v)| {
            let before = earlier.get(k).map_or(0, |e| e.count);
            (v.count > before).then(|| {
                (
                    k.clone(),
                    ErrorCount {
                        count: v.count - before,
                        example: v.example.clone(),
                    },
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_precision() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        for (q, want) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = h.quantile_ms(q);
            assert!(
                (got - want).abs() / want < 0.02,
                "q{q}: got {got}, want {want}"
            );
        }
        assert_eq!(h.summary().max_ms, 1000.0);
        assert_eq!(Histogram::default().quantile_ms(0.99), 0.0);
    }

    #[test]
    fn buckets_grow_monotonically() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            1_000,
            1_000_000,
            u64::MAX / 4,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            assert!(bucket_value(b) >= us, "{us} -> {}", bucket_value(b));
            last = b;
        }
    }
}
