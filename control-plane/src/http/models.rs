//! `/models`: the model registry (upload, list, read), model rollouts and per-host status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::error::{ApiJson, AppError, ErrorBody};
use super::AppState;
use crate::domain::models::{valid_version, HostModelState, ModelVersion};
use crate::fleet::{ModelUpload, Rollout, RolloutRequest};
use sco_policy::Target;

/// Largest `POST /models` body: a 16 MiB model in base64 with its manifest and golden rows.
pub const MAX_UPLOAD_BODY: usize = 24 * 1024 * 1024;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadBody {
    /// The model's manifest (`manifest.json` as `models/train/train.py` writes it).
    #[schema(value_type = Object)]
    manifest: Value,
    /// The ONNX file, base64.
    onnx_base64: String,
    /// Reference outputs (`golden.json`): input rows and the scores and contributions the
    /// trainer's runtime computed; the upload is refused unless tract reproduces them.
    #[schema(value_type = Object)]
    golden: Value,
    /// The model card (Markdown).
    #[serde(default)]
    card: String,
    /// Evaluation figures.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    evaluation: Option<Value>,
}

/// A stored version as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelView {
    number: i64,
    name: String,
    version: String,
    sha256: String,
    size_bytes: i64,
    #[schema(value_type = Object)]
    manifest: Value,
    /// The exact manifest text the signature covers (with the number).
    signed_manifest: String,
    signature: String,
    card: String,
    #[schema(value_type = Option<Object>)]
    evaluation: Option<Value>,
    created_by: String,
    created_at_ms: i64,
}

impl From<ModelVersion> for ModelView {
    fn from(m: ModelVersion) -> Self {
        Self {
            manifest: serde_json::from_str(&m.manifest).unwrap_or(Value::Null),
            evaluation: serde_json::from_str(&m.evaluation).ok(),
            number: m.number,
            name: m.name,
            version: m.version,
            sha256: m.sha256,
            size_bytes: m.size_bytes,
            signed_manifest: m.manifest,
            signature: m.signature,
            card: m.card,
            created_by: m.created_by,
            created_at_ms: m.created_at_ms,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelCreated {
    model: ModelView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelsResponse {
    count: usize,
    models: Vec<ModelView>,
    /// The newest model rollout.
    #[schema(value_type = Option<Object>)]
    rollout: Option<Rollout>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelResponse {
    model: ModelView,
    /// The reference outputs it was checked against.
    #[schema(value_type = Object)]
    golden: Value,
    /// Rollouts of this version, newest first.
    #[schema(value_type = Vec<Object>)]
    rollouts: Vec<Rollout>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRolloutBody {
    /// Share of hosts that get it first (0..=100, default 10; 0: all at once); ignored when
    /// `canary_hosts` is given.
    #[serde(default = "default_canary_percent")]
    #[schema(default = 10)]
    canary_percent: i64,
    /// These hosts are the canary.
    #[serde(default)]
    canary_hosts: Option<Vec<String>>,
    /// Canary duration in seconds (default 300).
    #[serde(default = "default_canary_secs")]
    #[schema(default = 300)]
    canary_secs: i64,
    /// Extra anomaly events canary hosts may open before the rollout stops (default 3): an
    /// alarm-rate jump rolls the model back.
    #[serde(default = "default_max_new_anomalies")]
    #[schema(default = 3)]
    max_new_anomalies: i64,
    /// The hosts it is for, as a policy's `target`: `{"labels": {"role": "web"}, "hosts":
    /// ["agent-7"]}` (every label must match, and the host must be listed if any are);
    /// default every host. The others keep the model they run and are not canaries.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    target: Option<Target>,
}

fn default_canary_percent() -> i64 {
    10
}
fn default_canary_secs() -> i64 {
    300
}
fn default_max_new_anomalies() -> i64 {
    3
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelRolloutResponse {
    #[schema(value_type = Object)]
    rollout: Rollout,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelStatusResponse {
    number: i64,
    version: String,
    /// The newest model rollout.
    #[schema(value_type = Option<Object>)]
    rollout: Option<Rollout>,
    /// Per host: desired_number, canary, reported_number, applied_number, applied_model,
    /// applied_at_ms, error, in_sync.
    #[schema(value_type = Vec<Object>)]
    hosts: Vec<HostModelState>,
}

fn check_version(version: &str) -> Result<(), AppError> {
    if valid_version(version) {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "version: 1 to 64 of A-Z a-z 0-9 . _ + -",
        ))
    }
}

/// Uploads a model: checked like an agent checks one (manifest, sha256, schema, operators, a
/// test inference) and against its golden outputs, then stored as an immutable version and
/// signed with the fleet key.
#[utoipa::path(post, path = "/models", tag = "models", security(("bearer" = ["admin"])),
    request_body = UploadBody,
    responses(
        (status = 201, description = "stored and signed", body = ModelCreated),
        (status = 400, description = "the model, its manifest or its golden outputs fail a check (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "the version exists", body = ErrorBody),
        (status = 413, description = "body over 24 MiB", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<UploadBody>,
) -> Result<(StatusCode, Json<ModelCreated>), AppError> {
    if !body.manifest.is_object() {
        return Err(AppError::bad_request("manifest: must be a JSON object"));
    }
    if !body.golden.is_object() {
        return Err(AppError::bad_request("golden: must be a JSON object"));
    }
    let onnx = base64::engine::general_purpose::STANDARD
        .decode(body.onnx_base64.trim())
        .map_err(|e| AppError::bad_request(format!("onnx_base64: not base64 ({e})")))?;
    if body.card.len() > 256 * 1024 {
        return Err(AppError::bad_request("card: at most 256 KiB"));
    }
    let upload = ModelUpload {
        manifest: body.manifest.to_string(),
        onnx,
        golden: body.golden.to_string(),
        card: body.card,
        evaluation: body.evaluation.map(|v| v.to_string()).unwrap_or_default(),
    };
    let model = state.fleet.models.upload(&caller.0.sub, upload).await?;
    Ok((
        StatusCode::CREATED,
        Json(ModelCreated {
            model: model.into(),
        }),
    ))
}

/// Every stored version, newest first, and the newest model rollout.
#[utoipa::path(get, path = "/models", tag = "models", security(("bearer" = ["viewer"])),
    responses(
        (status = 200, description = "models", body = ModelsResponse),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ModelsResponse>, AppError> {
    let models: Vec<ModelView> = state
        .fleet
        .models
        .models()
        .await?
        .into_iter()
        .map(ModelView::from)
        .collect();
    let rollout = state.fleet.models.rollouts().await?.into_iter().next();
    Ok(Json(ModelsResponse {
        count: models.len(),
        models,
        rollout,
    }))
}

/// One version with its card, evaluation, golden outputs and rollouts.
#[utoipa::path(get, path = "/models/{version}", tag = "models", security(("bearer" = ["viewer"])),
    params(("version" = String, Path, description = "the manifest's version")),
    responses(
        (status = 200, description = "model", body = ModelResponse),
        (status = 400, description = "invalid version", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such version", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<ModelResponse>, AppError> {
    check_version(&version)?;
    let model = state.fleet.models.model(&version).await?;
    let rollouts = state
        .fleet
        .models
        .rollouts()
        .await?
        .into_iter()
        .filter(|r| r.revision == model.number)
        .collect();
    Ok(Json(ModelResponse {
        golden: serde_json::from_str(&model.golden).unwrap_or(Value::Null),
        model: model.into(),
        rollouts,
    }))
}

/// Rolls a version out (or `builtin`: the agents' own model): canary hosts first, everyone
/// after `canary_secs` unless a canary refuses it (it cannot verify or load it) or canary
/// hosts open more anomaly events than allowed; then everyone goes back to the previous model.
#[utoipa::path(post, path = "/models/{version}/rollout", tag = "models", security(("bearer" = ["admin"])),
    params(("version" = String, Path, description = "the manifest's version, or builtin")),
    request_body = ModelRolloutBody,
    responses(
        (status = 201, description = "rollout started", body = ModelRolloutResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such version", body = ErrorBody),
        (status = 409, description = "a model rollout is still in its canary phase", body = ErrorBody),
    ))]
pub async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
    ApiJson(body): ApiJson<ModelRolloutBody>,
) -> Result<(StatusCode, Json<ModelRolloutResponse>), AppError> {
    check_version(&version)?;
    if body.canary_hosts.as_ref().is_some_and(|h| h.len() > 1000) {
        return Err(AppError::bad_request("canary_hosts: at most 1000 hosts"));
    }
    let req = RolloutRequest {
        revision: None,
        canary_percent: body.canary_percent,
        canary_secs: body.canary_secs,
        max_new_anomalies: body.max_new_anomalies,
    };
    let rollout = state
        .fleet
        .models
        .start_rollout(
            &caller.0.sub,
            &version,
            req,
            body.canary_hosts,
            body.target.unwrap_or_default(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ModelRolloutResponse { rollout })))
}

/// Per host: the model meant for it under the newest rollout, and what it reported running.
#[utoipa::path(get, path = "/models/{version}/status", tag = "models", security(("bearer" = ["viewer"])),
    params(("version" = String, Path, description = "the manifest's version, or builtin")),
    responses(
        (status = 200, description = "per-host status", body = ModelStatusResponse),
        (status = 400, description = "invalid version", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such version", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<ModelStatusResponse>, AppError> {
    check_version(&version)?;
    let s = state.fleet.models.status(&version).await?;
    Ok(Json(ModelStatusResponse {
        number: s.number,
        version: s.version,
        rollout: s.rollout,
        hosts: s.hosts,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_is_a_valid_path_version() {
        assert!(super::check_version(crate::fleet::BUILT_IN).is_ok());
        assert!(super::check_version("../x").is_err());
    }
}
