//! The live streams of the agents connected to this replica: one registry, shared by the
//! services that deliver to agents (hosts register and drop streams, policies and remediation
//! send down them, enrollment closes them on revocation). It holds no store: what a stream
//! means for the database is the hosts service's business.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::policy::PolicyRevision;
use crate::domain::remediation::PendingCommand;

use super::models::ModelOffer;
use crate::telemetry::Telemetry;

/// What goes down an agent's stream besides acks and heartbeats.
#[derive(Debug, Clone)]
pub enum Downlink {
    Command(PendingCommand),
    Policy(PolicyRevision),
    Model(ModelOffer),
}

struct LiveStream {
    generation: u64,
    /// Requests and policies for this agent, delivered down its stream.
    /// Boxed: a channel allocates its slots up front, and a box is 8 bytes where a
    /// `Downlink` is a few hundred (thousands of streams each hold one).
    downlink: tokio::sync::mpsc::Sender<Box<Downlink>>,
    /// Policy revisions sent down this stream, by policy name.
    policies_sent: HashMap<String, i64>,
    /// The model number last offered down this stream.
    model_sent: Option<i64>,
    /// Closes the stream with the given reason (revocation, replacement).
    close: tokio::sync::watch::Sender<Option<String>>,
}

/// What a stream session holds while it lives.
pub struct StreamHandle {
    pub generation: u64,
    pub downlink: tokio::sync::mpsc::Receiver<Box<Downlink>>,
    /// Turns `Some(reason)` when the stream must close.
    pub closed: tokio::sync::watch::Receiver<Option<String>>,
}

/// Live streams per agent id; the generation tells a stale stream's goodbye from the current
/// one's.
pub struct Streams {
    live: Mutex<HashMap<String, LiveStream>>,
    generation: AtomicU64,
    telemetry: Arc<Telemetry>,
}

impl Streams {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            telemetry,
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveStream>> {
        // A poisoned lock only means another stream task panicked while
        // holding it; the map itself is still consistent.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn connected_agents(&self) -> usize {
        self.live().len()
    }

    /// Records a new stream. A second stream of the same agent replaces the
    /// first, which is closed.
    pub(super) fn connected(&self, agent_id: &str) -> StreamHandle {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (close, closed) = tokio::sync::watch::channel(None);
        let (downlink, downlink_rx) = tokio::sync::mpsc::channel(64);
        let count = {
            let mut s = self.live();
            let live = LiveStream {
                generation,
                downlink,
                policies_sent: HashMap::new(),
                model_sent: None,
                close,
            };
            if let Some(old) = s.insert(agent_id.to_string(), live) {
                let _ = old
                    .close
                    .send(Some("replaced by a newer stream of the same agent".into()));
            }
            s.len()
        };
        self.telemetry.agents_connected.set(count as i64);
        StreamHandle {
            generation,
            downlink: downlink_rx,
            closed,
        }
    }

    /// Forgets the stream of `generation`; true when it was the agent's current one (a stale
    /// stream's goodbye changes nothing).
    pub(super) fn disconnected(&self, agent_id: &str, generation: u64) -> bool {
        let (current, count) = {
            let mut s = self.live();
            let current = s.get(agent_id).is_some_and(|l| l.generation == generation);
            if current {
                s.remove(agent_id);
            }
            (current, s.len())
        };
        self.telemetry.agents_connected.set(count as i64);
        current
    }

    /// Queues a request on the agent's live stream here; false when it has
    /// none (it gets the request when it next connects).
    pub fn send_command(&self, agent_id: &str, command: PendingCommand) -> bool {
        match self.live().get(agent_id) {
            Some(s) => s
                .downlink
                .try_send(Box::new(Downlink::Command(command)))
                .is_ok(),
            None => false,
        }
    }

    /// Sends a policy revision unless this agent's stream already got it.
    pub fn send_policy(&self, agent_id: &str, revision: PolicyRevision) -> bool {
        let mut live = self.live();
        let Some(s) = live.get_mut(agent_id) else {
            return false;
        };
        if s.policies_sent.get(&revision.name) == Some(&revision.revision) {
            return false;
        }
        let (name, rev) = (revision.name.clone(), revision.revision);
        if s.downlink
            .try_send(Box::new(Downlink::Policy(revision)))
            .is_ok()
        {
            s.policies_sent.insert(name, rev);
            true
        } else {
            false
        }
    }

    /// Offers a model unless this agent's stream was already offered that number.
    pub fn send_model(&self, agent_id: &str, offer: ModelOffer) -> bool {
        let mut live = self.live();
        let Some(s) = live.get_mut(agent_id) else {
            return false;
        };
        if s.model_sent == Some(offer.number) {
            return false;
        }
        let number = offer.number;
        if s.downlink
            .try_send(Box::new(Downlink::Model(offer)))
            .is_ok()
        {
            s.model_sent = Some(number);
            true
        } else {
            false
        }
    }

    /// Agents with a live stream on this replica.
    pub fn connected_ids(&self) -> Vec<String> {
        self.live().keys().cloned().collect()
    }

    pub fn is_connected_here(&self, agent_id: &str) -> bool {
        self.live().contains_key(agent_id)
    }

    /// Closes the live stream of an agent on this replica, if any.
    pub fn close_stream(&self, agent_id: &str, reason: &str) -> bool {
        match self.live().get(agent_id) {
            Some(s) => s.close.send(Some(reason.to_string())).is_ok(),
            None => false,
        }
    }
}
