//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid manifest {path}: {source}")]
    ManifestParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid manifest {path}: {reason}")]
    ManifestInvalid { path: PathBuf, reason: String },

    #[error("sha256 mismatch for {file}: manifest says {expected}, file is {actual}")]
    Sha256Mismatch {
        file: String,
        expected: String,
        actual: String,
    },

    #[error("cannot load onnx model {file}: {reason}")]
    Onnx { file: String, reason: String },

    #[error("model {file} does not match its manifest: {reason}")]
    SchemaMismatch { file: String, reason: String },

    #[error("batch of {n} rows needs {expected} values ({n} x {features} features), got {got}")]
    BatchShape {
        n: usize,
        features: usize,
        expected: usize,
        got: usize,
    },

    #[error("inference failed: {0}")]
    Inference(String),

    #[error("{file} does not reproduce its golden outputs: {reason}")]
    Golden { file: String, reason: String },

    #[error("test inference of {file} failed: {reason}")]
    SelfTest { file: String, reason: String },
}
