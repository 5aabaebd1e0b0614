//! Cost of one `Detector::tick` for a whole host (60 metrics, warm detector): normalisation,
//! one batched model call, host PCA, event logic.
//!
//! Cases: the default config (a normal host: metrics whose current value is inside the
//! current-value gate skip the model call), the same host with the gate disabled
//! (`current_gate_z = 0`: every metric goes to the model every tick, the worst case), and the
//! same host with `DetectorConfig::five_minute(600)` (the replay profile), with and without its
//! smoothing over 12 ticks.
//!
//! `cargo bench -p sco-models --bench tick`

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sco_models::{Detector, DetectorConfig, Model};

fn bench_tick(c: &mut Criterion) {
    bench_config(c, "tick/60 metrics", DetectorConfig::default());
    bench_config(
        c,
        "tick/60 metrics, all scored (no gate)",
        DetectorConfig {
            current_gate_z: 0.0,
            ..DetectorConfig::default()
        },
    );
    // the replay profile: one-week baseline window recomputed every 12 observations, host ratio
    // smoothed over 12 ticks; and the same without the smoothing (its cost alone)
    bench_config(
        c,
        "tick/60 metrics, five-minute profile",
        DetectorConfig::five_minute(600),
    );
    bench_config(
        c,
        "tick/60 metrics, five-minute profile, no smoothing",
        DetectorConfig {
            smooth_ticks: 1,
            score_quantile: None,
            ..DetectorConfig::five_minute(600)
        },
    );
}

fn bench_config(c: &mut Criterion, label: &str, config: DetectorConfig) {
    let model = Arc::new(Model::shipped().expect("shipped model loads"));
    let names: Vec<String> = (0..60)
        .map(|i| format!("metric.{i}:dev{}", i % 4))
        .collect();
    let warm = config.warmup_ticks as i64 + 50;
    let mut det = Detector::new(model, config);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut row = |t: i64| -> Vec<(&str, f64)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x >> 11) as f64 / (1u64 << 53) as f64;
                (
                    n.as_str(),
                    10.0 * (i + 1) as f64 + noise + (t % 13) as f64 * 0.01,
                )
            })
            .collect()
    };
    for t in 0..warm {
        det.tick(t * 1000, &row(t)).expect("tick");
    }
    assert!(det.is_warm());
    let rows: Vec<Vec<(&str, f64)>> = (0..256).map(|t| row(warm + t)).collect();
    let mut t = warm;
    c.bench_function(label, |b| {
        b.iter(|| {
            t += 1;
            let values = &rows[(t as usize) % rows.len()];
            black_box(det.tick(t * 1000, black_box(values)).expect("tick"))
        })
    });
}

criterion_group!(benches, bench_tick);
criterion_main!(benches);
