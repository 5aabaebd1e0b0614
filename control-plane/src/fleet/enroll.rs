//! Joining the fleet and staying in it: enrollment tokens, certificates
//! issued for keys generated on the hosts, renewal and revocation.

use crate::error::{Code, Coded};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use tokio::sync::Notify;

use super::audit::Audit;
use super::streams::Streams;
use crate::domain::{now_ms, valid_agent_id, EnrollmentToken, TokenUse};
use crate::pki::Ca;
use crate::store::{Store, StoreError, Wake};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("invalid enrollment token")]
    UnknownToken,
    #[error("enrollment token expired")]
    Expired,
    #[error("enrollment token has no uses left")]
    UsedUp,
    #[error("enrollment token was revoked")]
    TokenRevoked,
    #[error("agent {0} is revoked")]
    AgentRevoked(String),
    #[error("{0}")]
    Csr(String),
    #[error("this control plane has no CA key and cannot issue certificates")]
    NoCa,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct Issued {
    pub agent_id: String,
    pub certificate_pem: String,
    pub ca_pem: String,
    pub not_after_ms: i64,
    /// The fleet's policy verifying key, hex (empty without a signer).
    pub policy_key: String,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Equal-length comparison that does not stop at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A readable, unique agent id: the host name (sanitised) and a random suffix,
/// so that no token holder can claim the id of an existing agent.
pub fn new_agent_id(hostname: &str) -> String {
    let base: String = hostname
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "agent" } else { base };
    let suffix: u32 = rand::random();
    format!("{base}-{suffix:08x}")
}

/// The enrollment service: tokens, certificates for enrolling and renewing agents, and
/// revocation (with the watcher that closes revoked agents' streams on every replica).
pub struct Enrollment {
    store: Store,
    streams: Arc<Streams>,
    audit: Arc<Audit>,
    /// The CA that issues agent certificates; without it nothing is issued.
    ca: Option<Ca>,
    cert_ttl: Duration,
    /// The fleet's policy verifying key, hex (empty without a signer), given with each
    /// certificate.
    policy_key: String,
    /// Another replica revoked a host (woken by the ticks service's wake listener).
    wake_revocations: Arc<Notify>,
}

impl Enrollment {
    pub fn new(
        store: Store,
        streams: Arc<Streams>,
        audit: Arc<Audit>,
        ca: Option<(Ca, Duration)>,
        policy_key: String,
        wake_revocations: Arc<Notify>,
    ) -> Self {
        let (ca, cert_ttl) = match ca {
            Some((ca, ttl)) => (Some(ca), ttl),
            None => (None, Duration::from_secs(86_400)),
        };
        Self {
            store,
            streams,
            audit,
            ca,
            cert_ttl,
            policy_key,
            wake_revocations,
        }
    }

    /// Creates a token; returns it and the secret string shown once.
    pub async fn create_enrollment_token(
        &self,
        created_by: &str,
        ttl_secs: i64,
        max_uses: i64,
        labels: BTreeMap<String, String>,
    ) -> Result<(EnrollmentToken, String), StoreError> {
        let (id, secret) = (
            format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            hex::encode(rand::random::<[u8; 32]>()),
        );
        let now = now_ms();
        let token = EnrollmentToken {
            id: id.clone(),
            labels,
            max_uses,
            uses: 0,
            expires_at_ms: now + ttl_secs * 1000,
            created_by: created_by.to_string(),
            created_at_ms: now,
            revoked: false,
        };
        self.store
            .create_enrollment_token(&token, &sha256_hex(&secret))
            .await?;
        Ok((token, format!("{id}.{secret}")))
    }

    /// Spends a token use and signs the agent's CSR.
    pub async fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        hostname: &str,
    ) -> Result<Issued, EnrollError> {
        let ca = self.ca.as_ref().ok_or(EnrollError::NoCa)?;
        let (id, secret) = token.split_once('.').ok_or(EnrollError::UnknownToken)?;
        if id.is_empty() || id.len() > 64 || secret.len() > 256 {
            return Err(EnrollError::UnknownToken);
        }
        let presented = sha256_hex(secret);
        let used = self
            .store
            .use_enrollment_token(id, now_ms(), |stored| {
                constant_time_eq(stored.as_bytes(), presented.as_bytes())
            })
            .await?;
        let labels = match used {
            TokenUse::Ok { labels } => labels,
            TokenUse::Unknown => return Err(EnrollError::UnknownToken),
            TokenUse::Expired => return Err(EnrollError::Expired),
            TokenUse::UsedUp => return Err(EnrollError::UsedUp),
            TokenUse::Revoked => return Err(EnrollError::TokenRevoked),
        };
        let agent_id = new_agent_id(hostname);
        let issued = self.issue(ca, &agent_id, csr_pem)?;
        let hostname: String = hostname.chars().take(253).collect();
        self.store
            .enroll_host(
                &agent_id,
                &hostname,
                id,
                &labels,
                issued.not_after_ms,
                now_ms(),
            )
            .await?;
        tracing::info!(agent_id, token = id, "agent enrolled");
        Ok(issued)
    }

    /// Issues a fresh certificate to an authenticated, unrevoked agent.
    pub async fn renew(&self, agent_id: &str, csr_pem: &str) -> Result<Issued, EnrollError> {
        let ca = self.ca.as_ref().ok_or(EnrollError::NoCa)?;
        if self.store.is_revoked(agent_id).await? {
            return Err(EnrollError::AgentRevoked(agent_id.to_string()));
        }
        let issued = self.issue(ca, agent_id, csr_pem)?;
        self.store
            .set_cert_expiry(agent_id, issued.not_after_ms)
            .await?;
        tracing::info!(
            agent_id,
            not_after_ms = issued.not_after_ms,
            "agent certificate renewed"
        );
        Ok(issued)
    }

    fn issue(&self, ca: &Ca, agent_id: &str, csr_pem: &str) -> Result<Issued, EnrollError> {
        if !valid_agent_id(agent_id) {
            return Err(EnrollError::Csr(format!("invalid agent id {agent_id:?}")));
        }
        let lifetime = time::Duration::try_from(self.cert_ttl).unwrap_or(time::Duration::days(1));
        let (pem, not_after) = ca
            .sign_agent_csr(csr_pem, agent_id, lifetime)
            .map_err(|e| EnrollError::Csr(e.to_string()))?;
        Ok(Issued {
            agent_id: agent_id.to_string(),
            certificate_pem: pem,
            ca_pem: ca.cert_pem.clone(),
            not_after_ms: (not_after.unix_timestamp_nanos() / 1_000_000) as i64,
            policy_key: self.policy_key.clone(),
        })
    }

    /// SHA-256 of the fleet CA, for `sco-agent enroll --ca-sha256`.
    pub fn ca_fingerprint(&self) -> Option<String> {
        self.ca.as_ref().map(|ca| ca.fingerprint())
    }

    pub async fn is_revoked(&self, agent_id: &str) -> Result<bool, StoreError> {
        self.store.is_revoked(agent_id).await
    }

    /// Revokes an agent everywhere: recorded in the database (which every
    /// replica polls) and its stream on this replica closed at once.
    pub async fn revoke(&self, agent_id: &str) -> Result<bool, StoreError> {
        if !self.store.revoke_host(agent_id, now_ms()).await? {
            return Ok(false);
        }
        self.streams.close_stream(agent_id, "agent revoked");
        self.store.announce(Wake::Revocations).await;
        tracing::warn!(agent_id, "agent revoked");
        Ok(true)
    }

    /// Closes the streams of agents revoked on any replica. Runs until
    /// `stop` turns true.
    pub async fn watch_revocations(
        &self,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut since = now_ms() - 60_000;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.wake_revocations.notified() => {}
                _ = stop.changed() => return,
            }
            let checked_at = now_ms();
            match self.store.revoked_since(since).await {
                Ok(revoked) => {
                    for (id, _) in revoked {
                        if self.streams.close_stream(&id, "agent revoked") {
                            tracing::warn!(agent_id = %id, "closed the stream of a revoked agent");
                        }
                    }
                    // Overlap a little: a revocation committed during the
                    // query is seen next time.
                    since = checked_at - 5_000;
                }
                Err(e) => tracing::warn!(error = %e, "cannot check revocations"),
            }
        }
    }

    pub async fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        self.store.enrollment_tokens().await
    }

    /// Revokes an enrollment token (audited); false when there is no such token.
    pub async fn revoke_enrollment_token(&self, actor: &str, id: &str) -> Result<bool, StoreError> {
        if !self.store.revoke_enrollment_token(id).await? {
            return Ok(false);
        }
        self.audit
            .record(
                actor,
                "enrollment_token.revoke",
                "",
                "revoked",
                serde_json::json!({ "token": id }),
            )
            .await;
        tracing::info!(token = %id, by = %actor, "enrollment token revoked");
        Ok(true)
    }
}

impl Coded for EnrollError {
    fn code(&self) -> Code {
        match self {
            EnrollError::UnknownToken
            | EnrollError::Expired
            | EnrollError::UsedUp
            | EnrollError::TokenRevoked
            | EnrollError::AgentRevoked(_) => Code::Denied,
            EnrollError::Csr(_) => Code::Invalid,
            EnrollError::NoCa => Code::Precondition,
            EnrollError::Store(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_readable_unique_and_valid() {
        for host in ["web-01", "WEB_01.example.com", "", "🦀🦀", &"x".repeat(300)] {
            let id = new_agent_id(host);
            assert!(valid_agent_id(&id), "{host:?} -> {id}");
        }
        assert!(new_agent_id("web-01").starts_with("web-01-"));
        assert_ne!(new_agent_id("a"), new_agent_id("a"));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
