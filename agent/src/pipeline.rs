//! What the agent does with each sample, in order: apply the detection settings of the
//! policies in force, score it (event changes become durable messages, and the rules see
//! them), publish the detector's state when it changes, evaluate the rules against the
//! latest values (fired rules go to the remediation task), and fold it into the current
//! rollup window (a finished window becomes a durable message).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Mutex, Notify};

use crate::collect::Sample;
use crate::config::DetectSection;
use crate::detect::{self, LiveDetector};
use crate::executor;
use crate::fleet_model::{self, Assignment};
use crate::outbox::Outbox;
use crate::policy::engine::{Engine, Trigger};
use crate::policy::store::PolicyStore;
use crate::policy::DetectionSettings;
use crate::requests::ModelReport;
use crate::rollup::Roller;
use crate::status::{self, Status};
use crate::{clock, pb, AgentError};

pub struct Pipeline {
    pub detect: DetectSection,
    pub data_dir: PathBuf,
    pub live: Option<LiveDetector>,
    /// The detector's state, for heartbeats (and `status.json`).
    pub detector: watch::Sender<Status>,
    /// Detection settings of the policies in force, from the remediation task.
    pub tuning: watch::Receiver<Option<DetectionSettings>>,
    pub engine: Engine,
    pub policies: Arc<std::sync::Mutex<PolicyStore>>,
    /// The latest values, for the remediation task's verifications.
    pub latest: watch::Sender<executor::Latest>,
    pub triggers: mpsc::Sender<Trigger>,
    pub roller: Roller,
    pub outbox: Arc<Mutex<Outbox>>,
    pub new_data: Arc<Notify>,
    /// The model the fleet wants run, from the uplink (`fleet_model`).
    pub fleet_model: watch::Receiver<Option<Assignment>>,
    /// The last model status sent, so that a repeated offer is not reported again.
    pub model_reported: Option<ModelReport>,
}

impl Pipeline {
    pub async fn on_sample(&mut self, sample: Sample) -> Result<(), AgentError> {
        if self.fleet_model.has_changed().unwrap_or(false) {
            let assignment = self.fleet_model.borrow_and_update().clone();
            if let Some(a) = assignment {
                self.apply_model(a).await?;
            }
        }
        if self.tuning.has_changed().unwrap_or(false) {
            let tuning = self.tuning.borrow_and_update().clone();
            if let Some(d) = self.live.as_mut() {
                d.tune(&self.detect, tuning.as_ref());
            }
        }
        let changes = self
            .live
            .as_mut()
            .map(|d| d.observe(&sample))
            .unwrap_or_default();
        self.publish_state(sample.ts_ms);
        for change in changes {
            self.engine.on_event(change.change());
            let Some(d) = self.live.as_mut() else { break };
            let seq = self
                .outbox
                .lock()
                .await
                .push_with(|seq| pb::anomaly_message(&d.report(&change, seq), seq, clock::now_ms()))
                .await?;
            tracing::info!(seq, "anomaly event queued");
            self.new_data.notify_one();
        }
        for t in self.fired(&sample) {
            if let Err(e) = self.triggers.try_send(t) {
                tracing::warn!(error = %e, "remediation busy; fired rule dropped");
            }
        }
        if let Some(r) = self.roller.push(sample) {
            let mut o = self.outbox.lock().await;
            let dropped = o.dropped_total();
            let seq = o
                .push(pb::rollup_message(r, clock::now_ms(), dropped))
                .await?;
            drop(o);
            tracing::debug!(seq, "rollup queued");
            self.new_data.notify_one();
        }
        Ok(())
    }

    /// Runs (or refuses) the model the fleet assigned, and reports the outcome as a durable
    /// status unless it is the one reported last.
    async fn apply_model(&mut self, a: Assignment) -> Result<(), AgentError> {
        let (number, outcome) = match a {
            Assignment::Refused { number, error } => (number, Err(error)),
            Assignment::Use { number, manifest } => {
                let outcome = match self.live.as_mut() {
                    None => Err(
                        "anomaly detection is off on this host ([detect] enabled = false)"
                            .to_string(),
                    ),
                    Some(d) => d
                        .use_fleet_model(number, manifest.as_deref())
                        .map_err(|e| e.to_string()),
                };
                if outcome.is_ok() {
                    let dir = self.data_dir.join("models");
                    if let Err(e) = fleet_model::record_current(&dir, number) {
                        tracing::warn!(error = %e, "cannot record the fleet model in force; it is used until the agent stops");
                    }
                }
                (number, outcome)
            }
        };
        if let Err(error) = &outcome {
            tracing::error!(number, %error, "refused a fleet model; the running one stays");
        }
        let report = ModelReport {
            number,
            applied: outcome.is_ok(),
            error: outcome.err().unwrap_or_default(),
            active_number: self.live.as_ref().map_or(0, LiveDetector::fleet_number),
            active_model: self
                .live
                .as_ref()
                .map_or(String::new(), |d| d.model_name().to_string()),
        };
        if self.model_reported.as_ref() == Some(&report) {
            return Ok(());
        }
        let seq = self
            .outbox
            .lock()
            .await
            .push(pb::model_status_message(report.clone(), clock::now_ms()))
            .await?;
        tracing::info!(seq, number, applied = report.applied, "model status queued");
        self.model_reported = Some(report);
        self.new_data.notify_one();
        self.publish_state(clock::now_ms());
        Ok(())
    }

    /// Saves the detector's learnt state (at shutdown).
    pub fn finish(&mut self) {
        if let Some(d) = self.live.as_mut() {
            d.save();
        }
    }

    fn publish_state(&self, now_ms: i64) {
        let Some(d) = self.live.as_ref() else {
            return;
        };
        let state = d.state(now_ms);
        let changed = self.detector.send_if_modified(|s| {
            // warm_until_ms moves with the clock; only the rest is news
            let news = s.detector != state.detector
                || s.calibrated_at_ms != state.calibrated_at_ms
                || s.model != state.model
                || s.warm_until_ms == 0 && state.warm_until_ms != 0;
            if news {
                *s = state;
            }
            news
        });
        if changed {
            status::write(&self.data_dir, &self.detector.borrow(), None);
        }
    }

    /// Rules and their verifications read the latest values; with no policy in force there is
    /// nothing to build them for.
    fn fired(&mut self, sample: &Sample) -> Vec<Trigger> {
        let store = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        if store.is_empty() {
            return Vec::new();
        }
        let values: executor::Latest = Arc::new(
            sample
                .metrics
                .iter()
                .map(|m| (detect::metric_key(m.name, &m.device), m.value))
                .collect(),
        );
        self.latest.send_replace(values.clone());
        self.engine.evaluate(&store, &values, sample.ts_ms)
    }
}
