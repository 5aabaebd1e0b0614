//! Whether this process is overloaded, so that it refuses new agent streams (admission by load)
//! before a surge degrades the streams it already holds.
//!
//! The signal is the Tokio runtime's scheduling lag: a task sleeps [`PROBE_EVERY`] and measures
//! how late it wakes. Every stream, handshake, ack and REST request of this process is a task on
//! that runtime, so when it is late they are all late by as much: it is what agents feel as slow
//! acks and missed heartbeats, and on 2 cores a surge of 12,000–15,000 agents connecting at 400 a
//! second made it late before the open-file limit (`replicas.max_streams`) was anywhere near.
//! It costs one timer every 100 ms, and it is there with no traffic at all, so the first
//! handshakes of a surge already move it.
//!
//! Ack latency was the other candidate, and is not used: the control plane does not measure it
//! (agents and the load generator do; `telemetry` has REST latency only), it exists only while
//! messages flow on streams already admitted, and it is mostly the database's commit time and
//! the group commit's pacing. A slow database (PostgreSQL, shared by every replica) makes every
//! replica slow alike: refusing agents here would only send them to a replica just as slow,
//! while the streams' own backpressure (a stream that waits reads no more of its agent's
//! messages) already holds that case. The runtime's lag is this process's own CPU, the one
//! thing another replica with room does not share.
//!
//! The decision ([`Lag`]) is a pure function of the samples: the lag is the largest of the
//! last [`WINDOW`] samples (about 2 s of a healthy runtime), new streams are refused once it is
//! over the limit and admitted again once it is under half the limit, so admission does not
//! flap at the threshold; a single stall keeps new streams away for the window's length.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::telemetry::Telemetry;

/// How long the probe sleeps between two measurements.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Samples the lag is the largest of: 2 s at [`PROBE_EVERY`] on a runtime that is on time
/// (longer on a late one, whose samples come further apart).
pub const WINDOW: usize = 20;

/// A change of the admission decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The lag went over the limit: new streams are refused from now on.
    Started,
    /// The lag fell under half the limit: new streams are admitted again.
    Stopped,
}

/// The decision: the recent samples and whether new streams are refused.
#[derive(Debug, Clone)]
pub struct Lag {
    /// Over this, refuse new streams; zero: never (the lag is still measured).
    limit: Duration,
    recent: VecDeque<Duration>,
    shedding: bool,
}

impl Lag {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            recent: VecDeque::with_capacity(WINDOW),
            shedding: false,
        }
    }

    /// Takes one sample (how late the probe woke) and says whether the decision changed.
    pub fn observe(&mut self, late: Duration) -> Option<Change> {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(late);
        if self.limit.is_zero() {
            return None;
        }
        let lag = self.lag();
        if !self.shedding && lag > self.limit {
            self.shedding = true;
            Some(Change::Started)
        } else if self.shedding && lag < self.limit / 2 {
            self.shedding = false;
            Some(Change::Stopped)
        } else {
            None
        }
    }

    /// The lag: the largest of the recent samples.
    pub fn lag(&self) -> Duration {
        self.recent.iter().copied().max().unwrap_or_default()
    }

    /// Whether new streams are refused.
    pub fn shedding(&self) -> bool {
        self.shedding
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// What the probe last decided, read by admission and `GET /status` without a lock.
#[derive(Debug, Default)]
pub struct Load {
    limit_ms: u64,
    lag_ms: AtomicU64,
    shedding: AtomicBool,
}

impl Load {
    /// `limit`: `replicas.max_lag_ms` (zero: never refuse).
    pub fn new(limit: Duration) -> Self {
        Self {
            limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            ..Self::default()
        }
    }

    /// The runtime's lag, as of the last sample, in milliseconds.
    pub fn lag_ms(&self) -> u64 {
        self.lag_ms.load(Ordering::Relaxed)
    }

    /// The limit in milliseconds; 0: off.
    pub fn limit_ms(&self) -> u64 {
        self.limit_ms
    }

    /// Whether new agent streams are refused now.
    pub fn shedding(&self) -> bool {
        self.shedding.load(Ordering::Acquire)
    }

    pub(crate) fn publish(&self, lag: &Lag) {
        self.lag_ms.store(
            u64::try_from(lag.lag().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.shedding.store(lag.shedding(), Ordering::Release);
    }
}

/// The probe: measures the runtime's lag every [`PROBE_EVERY`] until `stop`, publishes the
/// decision in `load` and in the metrics, and logs when shedding starts and stops.
pub async fn watch(load: Arc<Load>, telemetry: Arc<Telemetry>, mut stop: watch::Receiver<bool>) {
    let mut lag = Lag::new(Duration::from_millis(load.limit_ms()));
    loop {
        let asleep = Instant::now();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let late = asleep.elapsed().saturating_sub(PROBE_EVERY);
        let change = lag.observe(late);
        load.publish(&lag);
        telemetry.runtime_lag_ms.set(load.lag_ms() as i64);
        telemetry.shedding.set(i64::from(lag.shedding()));
        match change {
            Some(Change::Started) => tracing::warn!(
                lag_ms = load.lag_ms(),
                max_lag_ms = load.limit_ms(),
                "runtime late; refusing new agent streams (replicas.max_lag_ms)"
            ),
            Some(Change::Stopped) => tracing::info!(
                lag_ms = load.lag_ms(),
                max_lag_ms = load.limit_ms(),
                "runtime caught up; admitting new agent streams again"
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `samples` (ms) one by one and returns, after each, (lag ms, shedding, change).
    fn run(limit_ms: u64, samples: &[u64]) -> Vec<(u64, bool, Option<Change>)> {
        let mut lag = Lag::new(ms(limit_ms));
        samples
            .iter()
            .map(|&s| {
                let change = lag.observe(ms(s));
                (lag.lag().as_millis() as u64, lag.shedding(), change)
            })
            .collect()
    }

    #[test]
    fn refuses_over_the_limit_and_admits_under_half_of_it() {
        use Change::{Started, Stopped};
        let seen = run(250, &[1, 2, 250, 251, 3]);
        assert_eq!(
            seen,
            [
                (1, false, None),
                (2, false, None),
                // at the limit is not over it
                (250, false, None),
                (251, true, Some(Started)),
                // one sample on time does not end it: the window still holds the late one
                (251, true, None),
            ]
        );
        // the late sample leaves the window after WINDOW more; the lag then is the
        // largest left (200: over half the limit, so still shedding), then 124: admitted
        let mut lag = Lag::new(ms(250));
        assert_eq!(lag.observe(ms(400)), Some(Started));
        assert_eq!(lag.observe(ms(200)), None);
        for _ in 0..WINDOW - 2 {
            assert_eq!(lag.observe(ms(124)), None);
        }
        assert_eq!(lag.lag(), ms(400));
        assert_eq!(lag.observe(ms(124)), None, "400 gone, 200 left");
        assert_eq!(lag.lag(), ms(200));
        assert!(lag.shedding());
        assert_eq!(lag.observe(ms(124)), Some(Stopped), "200 gone too");
        assert_eq!(lag.lag(), ms(124));
        assert!(!lag.shedding());
    }

    #[test]
    fn does_not_flap_between_half_and_the_limit() {
        // once shedding, lags between half the limit and the limit keep it shedding; once
        // admitting, they keep it admitting
        let mut lag = Lag::new(ms(100));
        for s in [60, 90, 99, 51] {
            assert_eq!(lag.observe(ms(s)), None);
        }
        assert_eq!(lag.observe(ms(101)), Some(Change::Started));
        for _ in 0..3 * WINDOW {
            assert_eq!(lag.observe(ms(50)), None);
            assert!(lag.shedding());
        }
        assert_eq!(lag.observe(ms(49)), None, "a 50 is still in the window");
        for _ in 0..WINDOW - 2 {
            assert_eq!(lag.observe(ms(49)), None);
        }
        assert_eq!(lag.observe(ms(49)), Some(Change::Stopped));
        for _ in 0..3 * WINDOW {
            assert_eq!(lag.observe(ms(100)), None);
            assert!(!lag.shedding());
        }
    }

    #[test]
    fn zero_is_off_but_the_lag_is_still_measured() {
        let seen = run(0, &[5, 10_000, 7]);
        assert!(seen
            .iter()
            .all(|(_, shedding, change)| !shedding && change.is_none()));
        assert_eq!(seen.last().map(|s| s.0), Some(10_000));
        assert_eq!(Lag::new(ms(0)).lag(), Duration::ZERO, "no sample yet");
    }

    #[test]
    fn load_publishes_the_decision() {
        let load = Load::new(ms(100));
        assert_eq!(
            (load.limit_ms(), load.lag_ms(), load.shedding()),
            (100, 0, false)
        );
        let mut lag = Lag::new(ms(load.limit_ms()));
        lag.observe(ms(150));
        load.publish(&lag);
        assert_eq!((load.lag_ms(), load.shedding()), (150, true));
    }
}
