//! [`Model`]: a verified, ready-to-run shipped model.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tract_core::prelude::*;

use crate::manifest::{shape_str, Dim, Manifest, TensorSpec};
use crate::onnx as pb;
use crate::ModelError;

/// Name of the model's only input, `float32[N, F]`.
pub const INPUT: &str = "x";
/// Name of the per-row score output, `float32[N]`.
pub const SCORE_OUTPUT: &str = "score";
/// Name of the per-feature contribution output, `float32[N, F]`.
pub const CONTRIB_OUTPUT: &str = "contrib";

/// The shipped manifest and model file, embedded at build time (see [`Model::shipped`]).
const SHIPPED_MANIFEST: &str = include_str!("../shipped/manifest.json");
const SHIPPED_MANIFEST_PATH: &str = "shipped/manifest.json (embedded)";
const SHIPPED_ONNX: &[u8] = include_bytes!("../shipped/sco-window-pca.onnx");

/// The only element type the crate feeds or reads.
const FLOAT32: &str = "float32";

type Plan = TypedRunnableModel;

/// Reference outputs for [`Model::check_golden`].
#[derive(serde::Deserialize)]
struct Golden {
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    tolerance: Tolerance,
    rows: Vec<Vec<f32>>,
    score: Vec<f32>,
    contrib: Vec<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct Tolerance {
    rel: f32,
    abs: f32,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            rel: 1e-4,
            abs: 1e-4,
        }
    }
}

/// Batch sizes up to this get their own plan with a concrete batch dimension (built once, on
/// first use, and cached): tract fuses the element-wise ops of a concrete plan and skips the
/// per-run symbol resolution of the symbolic one. Larger batches (warm-up calibration, posted
/// windows) use the symbolic plan.
pub const MAX_CONCRETE_BATCH: usize = 1024;

/// A shipped model whose file matched its manifest's sha256 and schema and that passed a test
/// inference. Scoring is synchronous CPU work: callers on an async runtime should run large
/// batches on a blocking thread.
#[derive(Debug)]
pub struct Model {
    manifest: Manifest,
    model_path: PathBuf,
    plan: Arc<Plan>,
    /// The decluttered model with a symbolic batch dimension, to derive concrete plans from.
    typed: TypedModel,
    /// Concrete-batch plans by batch size (see [`MAX_CONCRETE_BATCH`]).
    concrete: Mutex<HashMap<usize, Arc<Plan>>>,
    features: usize,
    score_index: usize,
    contrib_index: usize,
}

/// Output of [`Model::score`] for a batch of `n` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// One score per row; higher is more anomalous.
    pub score: Vec<f32>,
    /// Row-major `n * features` contributions; row `i` explains `score[i]`.
    pub contrib: Vec<f32>,
    /// Number of features per row.
    pub features: usize,
}

impl Scores {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.score.len()
    }

    /// True when the batch had no row.
    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }

    /// The per-feature contributions of row `i`, or `None` past the last row.
    pub fn contrib_row(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.features)?;
        self.contrib.get(start..start.checked_add(self.features)?)
    }
}

impl Model {
    /// Reads the manifest at `manifest_path`, verifies the model file beside it (sha256, input and
    /// output schema), builds the tract plan and runs one test inference.
    pub fn load(manifest_path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let manifest_path = manifest_path.as_ref();
        let manifest = Manifest::read(manifest_path)?;
        let features = check_manifest(&manifest, manifest_path)?;

        let dir = manifest_path.parent().unwrap_or_else(|| Path::new("."));
        let model_path = dir.join(&manifest.file);
        let bytes = std::fs::read(&model_path).map_err(|source| ModelError::Io {
            path: model_path.clone(),
            source,
        })?;
        Self::from_verified_parts(manifest, features, model_path, &bytes)
    }

    /// The model shipped with this crate (`shipped/manifest.json` and its `.onnx` file, embedded
    /// in the binary at build time), verified exactly like [`Model::load`] does: sha256, schema,
    /// test inference. Needs no file at run time.
    pub fn shipped() -> Result<Self, ModelError> {
        let path = Path::new(SHIPPED_MANIFEST_PATH);
        let manifest: Manifest =
            serde_json::from_str(SHIPPED_MANIFEST).map_err(|source| ModelError::ManifestParse {
                path: path.to_path_buf(),
                source,
            })?;
        let features = check_manifest(&manifest, path)?;
        let model_path = Path::new("shipped").join(&manifest.file);
        Self::from_verified_parts(manifest, features, model_path, SHIPPED_ONNX)
    }

    /// A model received as bytes (an upload, a download): `manifest_json` is the manifest's
    /// text and `onnx` the model file it names, verified exactly like [`Model::load`] does.
    /// `origin` names where it came from in errors.
    pub fn from_parts(manifest_json: &str, onnx: &[u8], origin: &str) -> Result<Self, ModelError> {
        let path = Path::new(origin);
        let manifest: Manifest =
            serde_json::from_str(manifest_json).map_err(|source| ModelError::ManifestParse {
                path: path.to_path_buf(),
                source,
            })?;
        let features = check_manifest(&manifest, path)?;
        let model_path = path.join(&manifest.file);
        Self::from_verified_parts(manifest, features, model_path, onnx)
    }

    /// Checks the model against reference outputs computed by its trainer (a `golden.json` as
    /// `train/train.py` writes it: input rows and the scores and contributions another runtime
    /// computed for them). Every value must agree within `|a - b| <= rel * |b| + abs`
    /// (defaults 1e-4 and 1e-4).
    pub fn check_golden(&self, golden_json: &str) -> Result<usize, ModelError> {
        let fail = |reason: String| ModelError::Golden {
            file: self.manifest.file.clone(),
            reason,
        };
        let golden: Golden =
            serde_json::from_str(golden_json).map_err(|e| fail(format!("unreadable: {e}")))?;
        if !golden.sha256.is_empty() && !golden.sha256.eq_ignore_ascii_case(&self.manifest.sha256) {
            return Err(fail(format!(
                "made for sha256 {}, the model is {}",
                golden.sha256, self.manifest.sha256
            )));
        }
        let n = golden.rows.len();
        if n == 0 || golden.score.len() != n || golden.contrib.len() != n {
            return Err(fail(format!(
                "needs as many scores and contribution rows as input rows ({n} rows, {} scores, \
                 {} contribution rows)",
                golden.score.len(),
                golden.contrib.len()
            )));
        }
        if let Some(i) = golden.rows.iter().position(|r| r.len() != self.features) {
            return Err(fail(format!(
                "row {i} has {} values, the model takes {}",
                golden.rows[i].len(),
                self.features
            )));
        }
        let (rel, abs) = (golden.tolerance.rel, golden.tolerance.abs);
        if !(0.0..=1e-2).contains(&rel) || !(0.0..=1e-2).contains(&abs) {
            return Err(fail(format!(
                "tolerance rel {rel} / abs {abs}: each must be within 0..=0.01"
            )));
        }
        let close = |a: f32, b: f32| (a - b).abs() <= rel * b.abs() + abs;
        let batch: Vec<f32> = golden.rows.iter().flatten().copied().collect();
        let out = self.score(&batch, n).map_err(|e| fail(e.to_string()))?;
        for i in 0..n {
            if !close(out.score[i], golden.score[i]) {
                return Err(fail(format!(
                    "row {i}: score {} here, {} expected",
                    out.score[i], golden.score[i]
                )));
            }
            let row = out.contrib_row(i).unwrap_or_default();
            if row.len() != golden.contrib[i].len() {
                return Err(fail(format!(
                    "row {i}: contribution row of the wrong length"
                )));
            }
            for (j, (&t, &o)) in row.iter().zip(&golden.contrib[i]).enumerate() {
                if !close(t, o) {
                    return Err(fail(format!(
                        "row {i} feature {j}: contribution {t} here, {o} expected"
                    )));
                }
            }
        }
        Ok(n)
    }

    fn from_verified_parts(
        manifest: Manifest,
        features: usize,
        model_path: PathBuf,
        bytes: &[u8],
    ) -> Result<Self, ModelError> {
        let actual = hex::encode(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(ModelError::Sha256Mismatch {
                file: manifest.file.clone(),
                expected: manifest.sha256.clone(),
                actual,
            });
        }

        let onnx_err = |e: TractError| ModelError::Onnx {
            file: manifest.file.clone(),
            reason: format!("{e:#}"),
        };
        let proto = pb::decode(bytes).map_err(|reason| ModelError::Onnx {
            file: manifest.file.clone(),
            reason,
        })?;
        let (score_index, contrib_index) = check_schema(&proto, &manifest)?;
        let typed = crate::ops::typed_model(&proto, manifest.opset)
            .and_then(|m| m.into_decluttered())
            .map_err(onnx_err)?;
        let plan = typed
            .clone()
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(onnx_err)?;

        let model = Model {
            manifest,
            model_path,
            plan,
            typed,
            concrete: Mutex::new(HashMap::new()),
            features,
            score_index,
            contrib_index,
        };
        model.self_test()?;
        Ok(model)
    }

    /// The manifest the model was verified against.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Path of the verified model file.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Number of features per input row (`F`).
    pub fn features(&self) -> usize {
        self.features
    }

    /// Scores `n` rows given row-major in `batch` (`n * F` values).
    pub fn score(&self, batch: &[f32], n: usize) -> Result<Scores, ModelError> {
        let expected = n.checked_mul(self.features);
        if expected != Some(batch.len()) {
            return Err(ModelError::BatchShape {
                n,
                features: self.features,
                expected: expected.unwrap_or(usize::MAX),
                got: batch.len(),
            });
        }
        if n == 0 {
            return Ok(Scores {
                score: Vec::new(),
                contrib: Vec::new(),
                features: self.features,
            });
        }
        let input = Tensor::from_shape(&[n, self.features], batch)
            .map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        let concrete = self.concrete_plan(n)?;
        let plan = concrete.as_ref().unwrap_or(&self.plan);
        let outputs = plan
            .run(tvec!(input.into()))
            .map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        let score = output_values(&outputs, self.score_index, SCORE_OUTPUT, &[n])?;
        let contrib = output_values(
            &outputs,
            self.contrib_index,
            CONTRIB_OUTPUT,
            &[n, self.features],
        )?;
        Ok(Scores {
            score,
            contrib,
            features: self.features,
        })
    }

    /// The cached plan for batch size `n` (built on first use), or None for large batches.
    fn concrete_plan(&self, n: usize) -> Result<Option<Arc<Plan>>, ModelError> {
        if n > MAX_CONCRETE_BATCH {
            return Ok(None);
        }
        // a poisoned lock only means another thread panicked while inserting: the map is fine
        let mut plans = self.concrete.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(&n) {
            return Ok(Some(Arc::clone(p)));
        }
        let fail = |e: TractError| ModelError::Inference(format!("batch {n} plan: {e:#}"));
        let input = self.typed.input_outlets().map_err(fail)?[0];
        let dim = self.typed.outlet_fact(input).map_err(fail)?.shape[0].clone();
        let values: HashMap<Symbol, TDim> = dim
            .symbols()
            .into_iter()
            .map(|sym| (sym, TDim::Val(n as i64)))
            .collect();
        let plan = self
            .typed
            .set_symbols(&values)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(fail)?;
        plans.insert(n, Arc::clone(&plan));
        Ok(Some(plan))
    }

    /// One inference on a fixed batch: catches a model that loads but cannot run.
    fn self_test(&self) -> Result<(), ModelError> {
        let fail = |reason: String| ModelError::SelfTest {
            file: self.manifest.file.clone(),
            reason,
        };
        let rows = 2;
        let batch = vec![0.0f32; rows * self.features];
        let scores = self.score(&batch, rows).map_err(|e| fail(e.to_string()))?;
        if scores
            .score
            .iter()
            .chain(&scores.contrib)
            .any(|v| !v.is_finite())
        {
            return Err(fail("non-finite output for an all-zero batch".into()));
        }
        Ok(())
    }
}

fn output_values(
    outputs: &[TValue],
    index: usize,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, ModelError> {
    let value = outputs
        .get(index)
        .ok_or_else(|| ModelError::Inference(format!("output {name} missing")))?;
    let view = value
        .to_plain_array_view::<f32>()
        .map_err(|e| ModelError::Inference(format!("output {name}: {e:#}")))?;
    if view.shape() != shape {
        return Err(ModelError::Inference(format!(
            "output {name} has shape {:?}, expected {shape:?}",
            view.shape()
        )));
    }
    Ok(view.iter().copied().collect())
}

/// Checks that the manifest describes the contract this crate runs: one input `x: float32[N, F]`,
/// outputs `score: float32[N]` and `contrib: float32[N, F]`, and `F` feature names.
/// Returns `F`.
fn check_manifest(m: &Manifest, path: &Path) -> Result<usize, ModelError> {
    let invalid = |reason: String| ModelError::ManifestInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let [input] = m.inputs.as_slice() else {
        return Err(invalid(format!(
            "expected exactly one input, found {}",
            m.inputs.len()
        )));
    };
    let (batch, features) = match input.shape.as_slice() {
        [Dim::Symbol(b), Dim::Fixed(f)] if *f > 0 => (b.clone(), *f),
        _ => {
            return Err(invalid(format!(
                "input {} must have shape [batch symbol, feature count], found {}",
                input.name,
                shape_str(&input.shape)
            )))
        }
    };
    let features = usize::try_from(features)
        .map_err(|_| invalid(format!("feature count {features} is too large")))?;
    let want = [
        TensorSpec {
            name: INPUT.into(),
            dtype: FLOAT32.into(),
            shape: vec![Dim::Symbol(batch.clone()), Dim::Fixed(features as u64)],
        },
        TensorSpec {
            name: SCORE_OUTPUT.into(),
            dtype: FLOAT32.into(),
            shape: vec![Dim::Symbol(batch.clone())],
        },
        TensorSpec {
            name: CONTRIB_OUTPUT.into(),
            dtype: FLOAT32.into(),
            shape: vec![Dim::Symbol(batch), Dim::Fixed(features as u64)],
        },
    ];
    if *input != want[0] {
        return Err(invalid(format!(
            "input must be {INPUT}: {FLOAT32}{}, found {}: {}{}",
            shape_str(&want[0].shape),
            input.name,
            input.dtype,
            shape_str(&input.shape)
        )));
    }
    for w in &want[1..] {
        match m.outputs.iter().find(|o| o.name == w.name) {
            Some(o) if o == w => {}
            Some(o) => {
                return Err(invalid(format!(
                    "output {} must be {FLOAT32}{}, found {}{}",
                    w.name,
                    shape_str(&w.shape),
                    o.dtype,
                    shape_str(&o.shape)
                )))
            }
            None => return Err(invalid(format!("output {} is missing", w.name))),
        }
    }
    if m.features.len() != features {
        return Err(invalid(format!(
            "input has {features} features but the feature list has {} names",
            m.features.len()
        )));
    }
    Ok(features)
}

/// Compares the ONNX graph's declared inputs and outputs with the manifest, exactly: same names
/// in the same order, same element types, same fixed and symbolic dimensions. Returns the
/// positions of the score and contrib outputs.
fn check_schema(proto: &pb::ModelProto, m: &Manifest) -> Result<(usize, usize), ModelError> {
    let mismatch = |reason: String| ModelError::SchemaMismatch {
        file: m.file.clone(),
        reason,
    };
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| mismatch("the file has no graph".into()))?;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .map(spec_of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(&mismatch)?;
    let outputs = graph
        .output
        .iter()
        .map(spec_of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(&mismatch)?;
    compare("input", &m.inputs, &inputs).map_err(&mismatch)?;
    compare("output", &m.outputs, &outputs).map_err(&mismatch)?;
    crate::ops::check_operators(graph).map_err(&mismatch)?;

    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version);
    if opset != Some(m.opset) {
        return Err(mismatch(format!(
            "manifest says opset {}, model imports {}",
            m.opset,
            opset.map_or_else(|| "none".to_string(), |v| v.to_string())
        )));
    }

    let position = |name: &str| {
        outputs
            .iter()
            .position(|o| o.name == name)
            .ok_or_else(|| mismatch(format!("output {name} is missing")))
    };
    Ok((position(SCORE_OUTPUT)?, position(CONTRIB_OUTPUT)?))
}

fn compare(kind: &str, manifest: &[TensorSpec], model: &[TensorSpec]) -> Result<(), String> {
    let names = |specs: &[TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(manifest) != names(model) {
        return Err(format!(
            "manifest {kind}s are {:?}, model {kind}s are {:?}",
            names(manifest),
            names(model)
        ));
    }
    for (want, have) in manifest.iter().zip(model) {
        if want.dtype != have.dtype || want.shape != have.shape {
            return Err(format!(
                "{kind} {}: manifest says {}{}, model has {}{}",
                want.name,
                want.dtype,
                shape_str(&want.shape),
                have.dtype,
                shape_str(&have.shape)
            ));
        }
    }
    Ok(())
}

fn spec_of(v: &pb::ValueInfoProto) -> Result<TensorSpec, String> {
    use pb::tensor_shape_proto::dimension::Value as D;
    use pb::type_proto::Value as T;
    let Some(T::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("{} is not a tensor", v.name));
    };
    let shape = t
        .shape
        .as_ref()
        .ok_or_else(|| format!("{} has no declared shape", v.name))?
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(D::DimValue(x)) => u64::try_from(*x)
                .map(Dim::Fixed)
                .map_err(|_| format!("{} has negative dimension {x}", v.name)),
            Some(D::DimParam(s)) => Ok(Dim::Symbol(s.clone())),
            None => Err(format!("{} has an unnamed unknown dimension", v.name)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorSpec {
        name: v.name.clone(),
        dtype: dtype_name(t.elem_type),
        shape,
    })
}

/// ONNX `TensorProto.DataType` codes, spelled like numpy.
fn dtype_name(code: i32) -> String {
    match code {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        _ => return format!("onnx type {code}"),
    }
    .to_string()
}
