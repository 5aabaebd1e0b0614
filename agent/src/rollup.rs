//! Turns per-tick samples into per-window summaries (min, mean, max, last).
//!
//! Windows are aligned to multiples of the window length in wall-clock time,
//! so windows from different hosts line up. A window is sealed by the first
//! sample that falls after it.

use std::collections::BTreeMap;

use crate::collect::{ProcessInfo, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u32,
    pub last: f64,
}

impl Summary {
    fn new(v: f64) -> Self {
        Self {
            min: v,
            max: v,
            sum: v,
            count: 1,
            last: v,
        }
    }
    fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
        self.last = v;
    }
    pub fn mean(&self) -> f64 {
        self.sum / f64::from(self.count.max(1))
    }
}

/// A sealed window.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Keyed by (metric name, device).
    pub metrics: BTreeMap<(&'static str, String), Summary>,
    pub top_processes: Vec<ProcessInfo>,
}

pub struct Roller {
    window_ms: i64,
    current: Option<Rollup>,
}

impl Roller {
    pub fn new(window_ms: i64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            current: None,
        }
    }

    /// Adds a sample; returns the previous window when this sample starts a
    /// new one.
    pub fn push(&mut self, sample: Sample) -> Option<Rollup> {
        let start = sample.ts_ms.div_euclid(self.window_ms) * self.window_ms;
        let sealed = match &self.current {
            Some(c) if c.window_start_ms != start => self.current.take(),
            _ => None,
        };
        let current = self.current.get_or_insert_with(|| Rollup {
            window_start_ms: start,
            window_end_ms: start + self.window_ms,
            metrics: BTreeMap::new(),
            top_processes: Vec::new(),
        });
        for m in sample.metrics {
            current
                .metrics
                .entry((m.name, m.device))
                .and_modify(|s| s.add(m.value))
                .or_insert_with(|| Summary::new(m.value));
        }
        if let Some(p) = sample.top_processes {
            current.top_processes = p;
        }
        sealed.filter(|r| !r.metrics.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Metric;

    fn sample(ts_ms: i64, v: f64) -> Sample {
        Sample {
            ts_ms,
            metrics: vec![Metric {
                name: "cpu.total_pct",
                device: String::new(),
                value: v,
            }],
            top_processes: None,
            process_snapshot: None,
        }
    }

    #[test]
    fn summarises_and_seals_on_the_next_window() {
        let mut r = Roller::new(10_000);
        for (i, v) in [3.0, 1.0, 5.0, 2.0].into_iter().enumerate() {
            assert_eq!(r.push(sample(20_000 + i as i64 * 1000, v)), None);
        }
        let sealed = r.push(sample(30_000, 9.0)).expect("window sealed");
        assert_eq!(
            (sealed.window_start_ms, sealed.window_end_ms),
            (20_000, 30_000)
        );
        let s = &sealed.metrics[&("cpu.total_pct", String::new())];
        assert_eq!((s.min, s.max, s.last, s.count), (1.0, 5.0, 2.0, 4));
        assert!((s.mean() - 2.75).abs() < 1e-12);
    }
}
