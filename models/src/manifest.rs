//! The manifest shipped beside each model file (`manifest.json`, written by `train/train.py`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What the agent needs to know about a shipped model. Fields the crate does not use
/// (normalisation text, training data, fitted parameters) are kept as raw JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// Model file name, relative to the manifest's folder.
    pub file: String,
    /// Lowercase hex sha256 of the model file.
    pub sha256: String,
    pub opset: i64,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Names of the input's features, in column order.
    pub features: Vec<String>,
    #[serde(default)]
    pub feature_description: String,
    #[serde(default)]
    pub normalisation: serde_json::Value,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Name, element type and shape of one model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// ONNX element type spelled like numpy: only `float32` is used today.
    pub dtype: String,
    pub shape: Vec<Dim>,
}

/// One dimension: a fixed size, or a named symbolic size such as the batch `"N"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Symbol(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbol(s) => write!(f, "{s}"),
        }
    }
}

/// Formats a shape like `[N, 8]` for error messages.
pub(crate) fn shape_str(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

impl Manifest {
    /// Reads and parses a manifest file.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ModelError::ManifestParse {
            path: path.to_path_buf(),
            source,
        })
    }
}
