//! A model file or manifest that does not match is refused with a clear error.

use std::path::{Path, PathBuf};

use sco_models::{Model, ModelError};
use serde_json::Value;

fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shipped")
}

/// Copies the shipped manifest and model into a fresh temp dir.
fn copy_shipped() -> (tempfile::TempDir, PathBuf, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest_text =
        std::fs::read_to_string(shipped_dir().join("manifest.json")).expect("manifest");
    let manifest: Value = serde_json::from_str(&manifest_text).expect("manifest parses");
    let file = manifest["file"].as_str().expect("file name").to_string();
    std::fs::copy(shipped_dir().join(&file), dir.path().join(&file)).expect("copy model");
    std::fs::write(dir.path().join("manifest.json"), manifest_text).expect("write manifest");
    let model_path = dir.path().join(file);
    (dir, model_path, manifest)
}

fn write_manifest(dir: &Path, manifest: &Value) -> PathBuf {
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(manifest).expect("json")).expect("write");
    path
}

#[test]
fn the_copied_model_loads() {
    let (dir, _, _) = copy_shipped();
    Model::load(dir.path().join("manifest.json")).expect("unmodified copy loads");
}

#[test]
fn flipped_byte_is_refused_by_sha256() {
    let (dir, model_path, manifest) = copy_shipped();
    let mut bytes = std::fs::read(&model_path).expect("read model");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&model_path, &bytes).expect("write model");

    let err = Model::load(dir.path().join("manifest.json")).expect_err("corrupt model");
    let ModelError::Sha256Mismatch {
        ref file,
        ref expected,
        ref actual,
    } = err
    else {
        panic!("expected a sha256 mismatch, got {err}");
    };
    assert_eq!(file, manifest["file"].as_str().expect("file"));
    assert_eq!(expected, manifest["sha256"].as_str().expect("sha256"));
    assert_ne!(expected, actual);
    assert_eq!(
        err.to_string(),
        format!("sha256 mismatch for {file}: manifest says {expected}, file is {actual}")
    );
}

#[test]
fn manifest_with_wrong_feature_count_is_refused() {
    // The manifest is self-consistent (10 features everywhere) but the model takes 8.
    let (dir, _, mut manifest) = copy_shipped();
    manifest["inputs"][0]["shape"][1] = 10.into();
    manifest["outputs"][1]["shape"][1] = 10.into();
    manifest["features"] = (0..10)
        .map(|i| format!("lag_{i}"))
        .collect::<Vec<_>>()
        .into();
    let path = write_manifest(dir.path(), &manifest);

    let err = Model::load(path).expect_err("schema mismatch");
    assert!(
        matches!(err, ModelError::SchemaMismatch { .. }),
        "expected a schema mismatch, got {err}"
    );
    assert_eq!(
        err.to_string(),
        "model sco-window-pca.onnx does not match its manifest: \
         input x: manifest says float32[N, 10], model has float32[N, 8]"
    );
}

#[test]
fn manifest_with_renamed_output_is_refused() {
    let (dir, _, mut manifest) = copy_shipped();
    manifest["outputs"][0]["name"] = "anomaly".into();
    let path = write_manifest(dir.path(), &manifest);
    let err = Model::load(path).expect_err("renamed output");
    assert!(
        matches!(err, ModelError::ManifestInvalid { .. }),
        "expected an invalid manifest, got {err}"
    );
    assert!(err.to_string().contains("output score is missing"), "{err}");
}

#[test]
fn manifest_with_wrong_opset_is_refused() {
    let (dir, _, mut manifest) = copy_shipped();
    manifest["opset"] = 17.into();
    let path = write_manifest(dir.path(), &manifest);
    let err = Model::load(path).expect_err("wrong opset");
    assert!(
        err.to_string()
            .contains("manifest says opset 17, model imports 13"),
        "{err}"
    );
}

#[test]
fn missing_model_file_is_reported_with_its_path() {
    let (dir, model_path, _) = copy_shipped();
    std::fs::remove_file(&model_path).expect("remove model");
    let err = Model::load(dir.path().join("manifest.json")).expect_err("missing model");
    assert!(matches!(err, ModelError::Io { .. }), "got {err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot read {}: ", model_path.display())),
        "{msg}"
    );
}

#[test]
fn missing_manifest_is_reported_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.json");
    let err = Model::load(&path).expect_err("missing manifest");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}: ", path.display())),
        "{err}"
    );
}

#[test]
fn malformed_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, "{ not json").expect("write");
    let err = Model::load(&path).expect_err("malformed manifest");
    assert!(matches!(err, ModelError::ManifestParse { .. }), "got {err}");
}

#[test]
fn garbage_model_with_matching_sha256_is_refused_by_the_loader() {
    use sha2::{Digest, Sha256};
    let (dir, model_path, mut manifest) = copy_shipped();
    let garbage = b"this is not an onnx protobuf".to_vec();
    std::fs::write(&model_path, &garbage).expect("write");
    manifest["sha256"] = hex::encode(Sha256::digest(&garbage)).into();
    let path = write_manifest(dir.path(), &manifest);
    let err = Model::load(path).expect_err("garbage model");
    assert!(
        matches!(
            err,
            ModelError::Onnx { .. } | ModelError::SchemaMismatch { .. }
        ),
        "got {err}"
    );
}

/// Replaces the operator type of the shipped graph's `Add` node (the `op_type` field of a
/// NodeProto, tag 0x22, three bytes long) with `op`, and fixes the manifest's sha256.
fn with_add_replaced_by(op: &[u8; 3]) -> (tempfile::TempDir, PathBuf) {
    use sha2::{Digest, Sha256};
    let (dir, model_path, mut manifest) = copy_shipped();
    let mut bytes = std::fs::read(&model_path).expect("read model");
    let field = b"\x22\x03Add";
    let at = bytes
        .windows(field.len())
        .position(|w| w == field)
        .expect("the shipped model has an Add node");
    bytes[at + 2..at + 5].copy_from_slice(op);
    std::fs::write(&model_path, &bytes).expect("write model");
    manifest["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
    let path = write_manifest(dir.path(), &manifest);
    (dir, path)
}

#[test]
fn a_model_using_an_operator_outside_the_register_is_refused_by_name() {
    // Div is an ONNX operator tract knows, but not one the agent links in.
    let (_dir, path) = with_add_replaced_by(b"Div");
    let err = Model::load(path).expect_err("Div is not in the register");
    assert!(
        matches!(err, ModelError::SchemaMismatch { .. }),
        "got {err}"
    );
    assert!(
        err.to_string().contains(
            "the model uses operators the agent does not run: Div \
             (supported: Add, Clip, MatMul, Mul, ReduceSum, Sub)"
        ),
        "{err}"
    );
}

#[test]
fn the_register_runs_the_same_graph_with_an_operator_swapped_for_another_it_has() {
    // Sub instead of Add is still a model of registered operators: it loads and its self-test
    // inference runs (the scores differ, which the golden vectors of the shipped model catch).
    let (_dir, path) = with_add_replaced_by(b"Sub");
    let model = Model::load(path).expect("a graph of registered operators loads");
    let features = model.features();
    let scores = model.score(&vec![0.5; 2 * features], 2).expect("scores");
    assert_eq!(scores.score.len(), 2);
}
