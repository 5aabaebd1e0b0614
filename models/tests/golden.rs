//! Golden test: tract's outputs for fixed rows must match what onnxruntime computed for them
//! (`shipped/golden.json`, written by `train/train.py`).
//!
//! Tolerance: |tract - onnxruntime| <= 1e-4 * |onnxruntime| + 1e-4 for every value. Both run the
//! same float32 graph; only summation order differs.

use std::path::PathBuf;

use sco_models::Model;
use serde::Deserialize;

const REL_TOL: f32 = 1e-4;
const ABS_TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Golden {
    sha256: String,
    input_name: String,
    rows: Vec<Vec<f32>>,
    score: Vec<f32>,
    contrib: Vec<Vec<f32>>,
}

fn shipped(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("shipped")
        .join(file)
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= REL_TOL * b.abs() + ABS_TOL
}

#[test]
fn tract_matches_onnxruntime_on_golden_rows() {
    let golden: Golden =
        serde_json::from_str(&std::fs::read_to_string(shipped("golden.json")).expect("golden"))
            .expect("golden.json parses");
    let model = Model::load(shipped("manifest.json")).expect("shipped model loads");
    assert_eq!(
        golden.sha256,
        model.manifest().sha256,
        "golden.json is stale"
    );
    assert_eq!(golden.input_name, sco_models::INPUT);

    let n = golden.rows.len();
    let batch: Vec<f32> = golden.rows.iter().flatten().copied().collect();
    let out = model.score(&batch, n).expect("scoring works");
    assert_eq!(out.len(), n);
    for i in 0..n {
        assert!(
            close(out.score[i], golden.score[i]),
            "row {i}: tract score {} vs onnxruntime {}",
            out.score[i],
            golden.score[i]
        );
        let row = out.contrib_row(i).expect("row exists");
        for (j, (&t, &o)) in row.iter().zip(&golden.contrib[i]).enumerate() {
            assert!(
                close(t, o),
                "row {i} feature {j}: tract {t} vs onnxruntime {o}"
            );
        }
        // contributions explain the score
        let sum: f32 = row.iter().sum();
        assert!(close(sum, out.score[i]), "row {i}: contrib sums to {sum}");
    }
}

#[test]
fn rows_are_scored_independently_of_the_batch() {
    let golden: Golden =
        serde_json::from_str(&std::fs::read_to_string(shipped("golden.json")).expect("golden"))
            .expect("golden.json parses");
    let model = Model::load(shipped("manifest.json")).expect("shipped model loads");
    let batch: Vec<f32> = golden.rows.iter().flatten().copied().collect();
    let all = model.score(&batch, golden.rows.len()).expect("batch");
    for (i, row) in golden.rows.iter().enumerate() {
        let one = model.score(row, 1).expect("single row");
        assert!(close(one.score[0], all.score[i]), "row {i}");
    }
}

#[test]
fn anomalous_shapes_score_higher_than_noise() {
    let model = Model::load(shipped("manifest.json")).expect("shipped model loads");
    let noise = [0.3, -0.2, 0.1, 0.4, -0.1, 0.0, 0.2, -0.3];
    let spike = [6.0, 0.1, -0.2, 0.0, 0.1, -0.1, 0.2, 0.0];
    let level = [3.0, 3.1, 2.9, 3.0, 3.1, 3.0, 2.9, 3.0];
    let batch: Vec<f32> = [noise, spike, level].concat();
    let out = model.score(&batch, 3).expect("scoring works");
    assert!(out.score[1] > 4.0 * out.score[0], "{:?}", out.score);
    assert!(out.score[2] > 4.0 * out.score[0], "{:?}", out.score);
    // the spike is explained by the newest value
    let spike_contrib = out.contrib_row(1).expect("row 1");
    let top = spike_contrib
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(j, _)| j);
    assert_eq!(top, Some(0), "{spike_contrib:?}");
}

#[test]
fn bad_batch_length_and_empty_batch() {
    let model = Model::load(shipped("manifest.json")).expect("shipped model loads");
    let err = model
        .score(&[0.0; 7], 1)
        .expect_err("7 values for one row of 8");
    assert_eq!(
        err.to_string(),
        "batch of 1 rows needs 8 values (1 x 8 features), got 7"
    );
    let empty = model.score(&[], 0).expect("empty batch");
    assert!(empty.is_empty());
}

#[test]
fn model_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
}

#[test]
fn check_golden_accepts_the_shipped_references_and_refuses_a_changed_one() {
    let model = Model::load(shipped("manifest.json")).expect("shipped model loads");
    let text = std::fs::read_to_string(shipped("golden.json")).expect("golden");
    let golden: Golden = serde_json::from_str(&text).expect("golden.json parses");
    assert_eq!(
        model.check_golden(&text).expect("shipped golden holds"),
        golden.rows.len()
    );
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let s = v["score"][1].as_f64().expect("score");
    v["score"][1] = serde_json::json!(s + 1.0);
    let err = model
        .check_golden(&v.to_string())
        .expect_err("a changed score is refused")
        .to_string();
    assert!(err.contains("row 1: score"), "{err}");
    v["score"][1] = serde_json::json!(s);
    v["tolerance"] = serde_json::json!({"rel": 1.0, "abs": 0.0});
    let err = model
        .check_golden(&v.to_string())
        .expect_err("tolerance")
        .to_string();
    assert!(err.contains("tolerance"), "{err}");
}

#[test]
fn from_parts_verifies_like_load() {
    let manifest = std::fs::read_to_string(shipped("manifest.json")).expect("manifest");
    let onnx = std::fs::read(shipped("sco-window-pca.onnx")).expect("onnx");
    let m = Model::from_parts(&manifest, &onnx, "upload").expect("parts load");
    assert_eq!(m.features(), 8);
    let mut bad = onnx.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = Model::from_parts(&manifest, &bad, "upload")
        .expect_err("flipped byte refused")
        .to_string();
    assert!(err.contains("sha256 mismatch"), "{err}");
}
