//! Inference cost per agent tick: one batched call scoring every metric of a host.
//!
//! `cargo bench --bench score`

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use sco_models::Model;

fn bench_score(c: &mut Criterion) {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shipped/manifest.json");
    let model = Model::load(manifest).expect("shipped model loads");
    let f = model.features();
    let mut group = c.benchmark_group("score");
    for n in [1usize, 32, 256] {
        // deterministic, mildly varied rows
        let batch: Vec<f32> = (0..n * f)
            .map(|i| ((i * 7919) % 97) as f32 / 40.0 - 1.2)
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &batch, |b, batch| {
            b.iter(|| model.score(black_box(batch), n).expect("scores"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_score);
criterion_main!(benches);
