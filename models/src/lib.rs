//! Loads, verifies and runs SmartCloudOps' shipped ONNX anomaly models with tract.
//!
//! Code map:
//! - [`manifest`] owns the JSON manifest shipped beside each `.onnx` file: name, version, sha256,
//!   input/output schema, feature list and normalisation description.
//! - [`model`] owns [`Model`]: it checks the file's sha256 against the manifest, checks the ONNX
//!   graph's inputs and outputs against the manifest's schema, builds a tract plan, runs one test
//!   inference, and then scores batches ([`Model::score`] -> [`Scores`]).
//! - [`detect`] owns the one detection pipeline ([`detect::Detector`], [`detect::score_window`]):
//!   online per-host normalisation, batched window-model scoring, host PCA, per-host threshold,
//!   events with hysteresis and explanations. Used live by the agent, offline by [`replay`].
//! - [`onnx`] decodes the ONNX file (the protobuf messages and fields the loader reads);
//!   [`ops`] wires its nodes into a tract-core graph: only the operators the shipped models use
//!   exist, and a model using any other is refused at load, by name.
//! - [`replay`] runs a [`detect::Detector`] over a CSV file (`sco-agent replay`).
//! - `linalg` is the Jacobi eigen-decomposition behind the host PCA.
//! - [`error`] owns [`ModelError`], the one error type of this crate.
//!
//! The shipped model (`shipped/sco-window-pca.onnx`) scores one host metric per row from the
//! metric's last 8 normalised values; `shipped/MODEL_CARD.md` defines the features.
#![forbid(unsafe_code)]

pub mod detect;
pub mod error;
mod linalg;
pub mod manifest;
pub mod model;
pub mod onnx;
pub mod ops;
pub mod replay;

pub use detect::{
    score_window, Anomaly, Contributor, DetectError, Detector, DetectorConfig, DetectorSnapshot,
    EventChange, EventKind, Family, RestoreError, Severity, SpikeAlarm, Tick, WindowScore,
};
pub use error::ModelError;
pub use manifest::{Dim, Manifest, TensorSpec};
pub use model::{Model, Scores, CONTRIB_OUTPUT, INPUT, SCORE_OUTPUT};
