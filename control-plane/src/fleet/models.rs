//! The model registry: uploads checked the way agents check a model (manifest, sha256,
//! input/output schema, operators, a test inference) plus the uploader's golden outputs,
//! stored as immutable signed versions; rollouts with a canary that stops by itself, exactly
//! like policy rollouts (`domain::policy::decide`); delivery of the model meant for each host
//! down its stream, in chunks the agent asks for (so an interrupted download resumes).
//!
//! Which model a host should run follows from the model rollouts (`domain::models::number_for`):
//! a rollout is for the hosts its `target` selects (every host by default; the policy
//! document's selector); during its canary phase canary hosts get the new model and the
//! others keep what they ran; a complete rollout gives every selected host the new one; a
//! stopped rollout puts them back on what they ran before. Hosts a rollout does not select
//! keep their model. Its `previous_revision` is what the newest rollout had settled on, for
//! the record. Number 0 is "no fleet model": the agent runs its own (configured file or
//! built-in).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::audit::Audit;
use super::streams::Streams;
use crate::domain::models::{
    number_for, valid_version, HostModelState, ModelRolloutStatus, ModelStatusIn, ModelVersion,
    MAX_MODEL_BYTES, MODEL_ROLLOUT,
};
use crate::domain::policy::{
    check_rollout_request, choose_canaries, decide, initial_state, Candidate, Rollout,
    RolloutRequest, RolloutState,
};
use crate::domain::{new_id, now_ms, Ingested};
use crate::error::ServiceError;
use crate::pki::PolicySigner;
use crate::store::{RolloutTable, Store, StoreError, Wake};
use crate::telemetry::Telemetry;
use sco_policy::Target;

/// The version name that stands for "the agent's own model" in rollouts.
pub const BUILT_IN: &str = "builtin";

/// Bytes per chunk sent down a stream.
const CHUNK_BYTES: usize = 64 * 1024;

/// Model files kept in memory for delivery (they are immutable, and a rollout sends the same
/// one to every host).
const CACHED_FILES: usize = 4;

/// A model as uploaded.
#[derive(Debug, Clone)]
pub struct ModelUpload {
    /// The manifest as JSON text (what agents are given and what is signed).
    pub manifest: String,
    pub onnx: Vec<u8>,
    /// Reference outputs (`golden.json` as `models/train/train.py` writes it).
    pub golden: String,
    pub card: String,
    pub evaluation: String,
}

/// What goes down a stream to say which model to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOffer {
    pub number: i64,
    pub version: String,
    pub manifest: String,
    pub signature: String,
    pub size: i64,
}

impl ModelOffer {
    fn own() -> Self {
        Self {
            number: 0,
            version: String::new(),
            manifest: String::new(),
            signature: String::new(),
            size: 0,
        }
    }

    fn of(m: &ModelVersion) -> Self {
        Self {
            number: m.number,
            version: m.version.clone(),
            manifest: m.manifest.clone(),
            signature: m.signature.clone(),
            size: m.size_bytes,
        }
    }
}

pub struct Models {
    store: Store,
    telemetry: Arc<Telemetry>,
    streams: Arc<Streams>,
    audit: Arc<Audit>,
    signer: Option<PolicySigner>,
    files: Mutex<Vec<(i64, Arc<Vec<u8>>)>>,
}

impl Models {
    pub fn new(
        store: Store,
        telemetry: Arc<Telemetry>,
        streams: Arc<Streams>,
        audit: Arc<Audit>,
        signer: Option<PolicySigner>,
    ) -> Self {
        Self {
            store,
            telemetry,
            streams,
            audit,
            signer,
            files: Mutex::new(Vec::new()),
        }
    }

    /// Checks, signs and stores a new version.
    pub async fn upload(&self, actor: &str, up: ModelUpload) -> Result<ModelVersion, ServiceError> {
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| ServiceError::Invalid("this control plane has no signing key".into()))?;
        if up.onnx.is_empty() || up.onnx.len() > MAX_MODEL_BYTES {
            return Err(ServiceError::Invalid(format!(
                "onnx: {} bytes; a model file has 1 to {MAX_MODEL_BYTES}",
                up.onnx.len()
            )));
        }
        let ModelUpload {
            manifest,
            onnx,
            golden,
            card,
            evaluation,
        } = up;
        // tract's checks and optimisation are CPU work
        let (checked, onnx) = tokio::task::spawn_blocking(move || {
            let checked = sco_models::Model::from_parts(&manifest, &onnx, "upload")
                .and_then(|m| m.check_golden(&golden).map(|rows| (m, rows)))
                .map(|(m, rows)| (m.manifest().clone(), rows, manifest, golden));
            (checked, onnx)
        })
        .await
        .map_err(|e| ServiceError::Invalid(format!("model check failed: {e}")))?;
        let (parsed, golden_rows, manifest, golden) =
            checked.map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if !valid_version(&parsed.version) || parsed.version == BUILT_IN {
            return Err(ServiceError::Invalid(format!(
                "manifest version {:?}: 1 to 64 of A-Z a-z 0-9 . _ + - (and not {BUILT_IN:?})",
                parsed.version
            )));
        }
        if parsed.name.trim().is_empty() || parsed.name.len() > 128 {
            return Err(ServiceError::Invalid(
                "manifest name: 1 to 128 characters".into(),
            ));
        }
        for _ in 0..5 {
            let number = self.store.next_model_number().await?;
            let m = ModelVersion {
                number,
                name: parsed.name.clone(),
                version: parsed.version.clone(),
                signature: signer.sign_model(number as u64, &manifest),
                manifest: manifest.clone(),
                sha256: parsed.sha256.to_ascii_lowercase(),
                size_bytes: onnx.len() as i64,
                golden: golden.clone(),
                card: card.clone(),
                evaluation: evaluation.clone(),
                created_by: actor.to_string(),
                created_at_ms: now_ms(),
            };
            match self.store.insert_model(&m, &onnx).await {
                Ok(()) => {
                    self.audit
                        .record(
                            actor,
                            "model.upload",
                            "",
                            "stored",
                            serde_json::json!({
                                "number": m.number, "name": m.name, "version": m.version,
                                "sha256": m.sha256, "size_bytes": m.size_bytes,
                                "golden_rows": golden_rows,
                            }),
                        )
                        .await;
                    return Ok(m);
                }
                Err(StoreError::Conflict(_))
                    if self.store.model_by_version(&m.version).await?.is_some() =>
                {
                    return Err(ServiceError::Conflict(format!(
                        "model version {:?} already exists; versions are immutable",
                        m.version
                    )));
                }
                // another upload took the number: try the next one
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(
            "too many concurrent uploads; try again".into(),
        ))
    }

    pub async fn models(&self) -> Result<Vec<ModelVersion>, StoreError> {
        self.store.models().await
    }

    pub async fn model(&self, version: &str) -> Result<ModelVersion, ServiceError> {
        self.store
            .model_by_version(version)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no model version {version:?}")))
    }

    /// The registry number a rollout of `version` names (`builtin`: 0).
    async fn number_of(&self, version: &str) -> Result<i64, ServiceError> {
        if version == BUILT_IN {
            return Ok(0);
        }
        Ok(self.model(version).await?.number)
    }

    /// Every model rollout, newest first.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.store
            .rollouts_in(RolloutTable::Models, MODEL_ROLLOUT)
            .await
    }

    /// Starts a rollout of `version` (or of `builtin`, the agents' own model). Canary hosts are
    /// `canary_hosts` when given, else `canary_percent` of the hosts chosen like a policy's.
    pub async fn start_rollout(
        &self,
        actor: &str,
        version: &str,
        req: RolloutRequest,
        canary_hosts: Option<Vec<String>>,
        target: Target,
    ) -> Result<Rollout, ServiceError> {
        check_rollout_request(&req).map_err(ServiceError::Invalid)?;
        target
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let number = self.number_of(version).await?;
        let current = self.rollouts().await?.into_iter().next();
        if let Some(c) = current.as_ref().filter(|c| c.state == RolloutState::Canary) {
            return Err(ServiceError::Conflict(format!(
                "model rollout {} of number {} is still in its canary phase",
                c.id, c.revision
            )));
        }
        let previous = current.as_ref().map_or(0, Rollout::settled_revision);
        let now = now_ms();
        let targeted: Vec<Candidate> = self
            .store
            .hosts(i64::MAX, now)
            .await?
            .into_iter()
            .filter(|h| !h.revoked && target.matches(&h.id, &h.labels))
            .map(|h| Candidate {
                id: h.id,
                connected: h.connected,
            })
            .collect();
        if targeted.is_empty() && !target.is_everything() {
            return Err(ServiceError::Invalid(format!(
                "target: selects no enrolled, unrevoked host (labels {:?}, hosts {:?})",
                target.labels, target.hosts
            )));
        }
        let (percent, hosts) = match canary_hosts {
            Some(chosen) => {
                if let Some(unknown) = chosen
                    .iter()
                    .find(|c| !targeted.iter().any(|t| &t.id == *c))
                {
                    return Err(ServiceError::Invalid(format!(
                        "canary_hosts: {unknown:?} is not an enrolled, unrevoked host{}",
                        if target.is_everything() {
                            ""
                        } else {
                            " of the target"
                        }
                    )));
                }
                if chosen.is_empty() || req.canary_secs == 0 {
                    return Err(ServiceError::Invalid(
                        "canary_hosts: needs at least one host and canary_secs of at least 1"
                            .into(),
                    ));
                }
                let mut chosen = chosen;
                chosen.sort();
                chosen.dedup();
                let percent = ((chosen.len() * 100).div_ceil(targeted.len().max(1))) as i64;
                (percent.max(1), chosen)
            }
            None => (
                req.canary_percent,
                choose_canaries(
                    &format!("{MODEL_ROLLOUT}/{number}"),
                    &targeted,
                    req.canary_percent,
                ),
            ),
        };
        let canary_ms = req.canary_secs * 1000;
        let baseline = self
            .store
            .count_anomalies_opened(&hosts, now - canary_ms, now)
            .await?;
        let (state, reason) = initial_state(percent, &hosts);
        let rollout = Rollout {
            id: new_id("rollout"),
            name: MODEL_ROLLOUT.into(),
            revision: number,
            previous_revision: previous,
            canary_percent: percent,
            canary_hosts: hosts,
            canary_secs: req.canary_secs,
            max_new_anomalies: req.max_new_anomalies,
            baseline_anomalies: baseline,
            target,
            state,
            reason,
            started_by: actor.to_string(),
            started_at_ms: now,
            updated_at_ms: now,
        };
        self.store
            .insert_rollout_in(RolloutTable::Models, &rollout)
            .await?;
        // offered to the streams held here now, not at the next tick; other replicas are told
        self.store.announce(Wake::Ticks).await;
        if let Err(e) = self.sync_models().await {
            tracing::warn!(error = %e, "cannot offer the rollout now; the next tick will");
        }
        self.audit
            .record(
                actor,
                "model.rollout",
                "",
                rollout.state.as_str(),
                serde_json::json!({
                    "version": version, "number": number, "rollout": rollout.id,
                    "canary_hosts": rollout.canary_hosts, "previous_number": previous,
                    "target": rollout.target,
                }),
            )
            .await;
        Ok(rollout)
    }

    /// Finishes or stops the model rollout in its canary phase, by the rules of policy
    /// rollouts. Safe on every replica: the change is conditional and audited once.
    pub async fn advance_rollouts(&self) -> Result<(), StoreError> {
        let Some(r) = self.rollouts().await?.into_iter().next() else {
            return Ok(());
        };
        if r.state != RolloutState::Canary {
            return Ok(());
        }
        let now = now_ms();
        let statuses: Vec<_> = self
            .store
            .model_statuses()
            .await?
            .iter()
            .map(|s| s.as_policy_status())
            .collect();
        let opened = self
            .store
            .count_anomalies_opened(&r.canary_hosts, r.started_at_ms, now)
            .await?;
        let Some((to, reason)) = decide(&r, &statuses, opened, now) else {
            return Ok(());
        };
        if self
            .store
            .transition_rollout_in(
                RolloutTable::Models,
                &r.id,
                RolloutState::Canary,
                to,
                &reason,
                now,
            )
            .await?
        {
            tracing::info!(number = r.revision, state = %to, %reason, "model rollout");
            self.audit
                .record(
                    "control-plane",
                    "model.rollout",
                    "",
                    to.as_str(),
                    serde_json::json!({ "number": r.revision, "rollout": r.id, "reason": reason }),
                )
                .await;
        }
        Ok(())
    }

    /// Sends every agent connected here the model meant for it, unless its stream already
    /// got that offer.
    pub async fn sync_models(&self) -> Result<(), StoreError> {
        self.sync_models_of(&self.streams.connected_ids()).await
    }

    /// [`Models::sync_models`] for the given agents only (a connecting agent).
    pub async fn sync_models_of(&self, agents: &[String]) -> Result<(), StoreError> {
        if agents.is_empty() {
            return Ok(());
        }
        let rollouts = self.rollouts().await?;
        if rollouts.is_empty() {
            return Ok(());
        }
        // hosts' labels matter only to a rollout with a target (a read of every host)
        let labels: HashMap<String, BTreeMap<String, String>> =
            if rollouts.iter().all(|r| r.target.is_everything()) {
                HashMap::new()
            } else {
                self.store
                    .hosts(i64::MAX, now_ms())
                    .await?
                    .into_iter()
                    .map(|h| (h.id, h.labels))
                    .collect()
            };
        let no_labels = BTreeMap::new();
        let running: HashMap<String, i64> = self
            .store
            .model_statuses()
            .await?
            .into_iter()
            .map(|s| (s.host_id, s.applied_number))
            .collect();
        let mut cache: HashMap<i64, Option<ModelVersion>> = HashMap::new();
        for agent in agents {
            let desired = number_for(&rollouts, agent, labels.get(agent).unwrap_or(&no_labels));
            let offer = if desired == 0 {
                // a host that never ran a fleet model needs no word
                if running.get(agent).copied().unwrap_or(0) == 0 {
                    continue;
                }
                ModelOffer::own()
            } else {
                if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(desired) {
                    e.insert(self.store.model(desired).await?);
                }
                match cache.get(&desired) {
                    Some(Some(m)) => ModelOffer::of(m),
                    _ => continue,
                }
            };
            self.streams.send_model(agent, offer);
        }
        Ok(())
    }

    /// The pieces of model `number`'s file from `offset` on; empty past its end.
    pub async fn chunks(
        &self,
        number: i64,
        offset: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let file = self.file(number).await?;
        let Some(file) = file else {
            return Ok(Vec::new());
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(file.len());
        Ok(file[start..]
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| ((start + i * CHUNK_BYTES) as u64, c.to_vec()))
            .collect())
    }

    async fn file(&self, number: i64) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let cached = {
            let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            files
                .iter()
                .find(|(n, _)| *n == number)
                .map(|(_, f)| f.clone())
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(bytes) = self.store.model_file(number).await? else {
            return Ok(None);
        };
        let file = Arc::new(bytes);
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.retain(|(n, _)| *n != number);
        files.push((number, file.clone()));
        if files.len() > CACHED_FILES {
            files.remove(0);
        }
        Ok(Some(file))
    }

    /// Stores an agent's model status and audits it.
    pub async fn status_report(
        &self,
        agent_id: &str,
        s: ModelStatusIn,
    ) -> Result<Ingested, StoreError> {
        let ingested = self
            .store
            .record_model_status(agent_id, &s, now_ms())
            .await?;
        if ingested == Ingested::Stored {
            self.telemetry.ingest_messages.inc();
            let (action, result) = if s.applied {
                ("model.applied", "applied")
            } else {
                tracing::warn!(agent_id, number = s.number, error = %s.error, "agent refused a model");
                ("model.refused", "refused")
            };
            self.audit
                .record(
                    &format!("agent:{agent_id}"),
                    action,
                    agent_id,
                    result,
                    serde_json::json!({
                        "number": s.number, "active_number": s.active_number,
                        "active_model": s.active_model, "error": s.error,
                    }),
                )
                .await;
        }
        Ok(ingested)
    }

    /// Per host: the model meant for it under the newest rollout, and what it reported.
    pub async fn status(&self, version: &str) -> Result<ModelRolloutStatus, ServiceError> {
        let number = self.number_of(version).await?;
        let rollouts = self.rollouts().await?;
        let rollout = rollouts.first().cloned();
        let statuses: HashMap<String, _> = self
            .store
            .model_statuses()
            .await?
            .into_iter()
            .map(|s| (s.host_id.clone(), s))
            .collect();
        let mut hosts = Vec::new();
        for h in self.store.hosts(i64::MAX, now_ms()).await? {
            if h.revoked {
                continue;
            }
            let desired = number_for(&rollouts, &h.id, &h.labels);
            let status = statuses.get(&h.id);
            let concerned = desired == number
                || status.is_some_and(|s| s.number == number || s.applied_number == number);
            if !concerned {
                continue;
            }
            hosts.push(HostModelState {
                canary: rollout
                    .as_ref()
                    .is_some_and(|r| r.revision == number && r.canary_hosts.contains(&h.id)),
                host_id: h.id,
                desired_number: desired,
                reported_number: status.map_or(0, |s| s.number),
                applied_number: status.map_or(0, |s| s.applied_number),
                applied_model: status.map_or(String::new(), |s| s.applied_model.clone()),
                applied_at_ms: status.map_or(0, |s| s.applied_at_ms),
                error: status.map_or(String::new(), |s| s.error.clone()),
                in_sync: status.is_some_and(|s| s.applied_number == desired && s.error.is_empty()),
            });
        }
        Ok(ModelRolloutStatus {
            number,
            version: version.to_string(),
            rollout,
            hosts,
        })
    }
}
