//! The audit log: every service writes what was done, by whom, to which host; the REST API
//! reads it back.

use crate::domain::remediation::{AuditEntry, AuditQuery};
use crate::domain::{new_id, now_ms};
use crate::store::{Store, StoreError};

pub struct Audit {
    store: Store,
}

impl Audit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Writes one entry; a failure is logged, never passed to the action it records.
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        host: &str,
        result: &str,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            id: new_id("audit"),
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            host_id: host.to_string(),
            result: result.to_string(),
            detail,
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::error!(error = %e, actor, action, host, "cannot write the audit log");
        }
    }

    pub async fn entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_log(q).await
    }
}
