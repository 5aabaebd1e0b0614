//! The confirmation step of chat actions: a trigger, approval or rejection is answered with a confirmation id
//! and carried out only when the same person sends it back, within five minutes, still
//! holding a role that allows it. The control plane stores [`Pending`] (one use: it
//! deletes it when confirmed) and asks [`Pending::check`] whether a confirmation holds.

use serde::{Deserialize, Serialize};

use crate::intent::{Intent, Refusal, Role};

/// How long a confirmation id stays valid.
pub const CONFIRMATION_TTL_MS: i64 = 5 * 60_000;

/// A confirmation id from five random bytes the caller draws: `cf-` and eight
/// characters of lowercase RFC 4648 base 32, short enough to type back.
pub fn confirmation_id(entropy: [u8; 5]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits = entropy
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut out = String::from("cf-");
    for i in (0..8).rev() {
        let idx = ((bits >> (i * 5)) & 31) as usize;
        out.push(char::from(ALPHABET[idx]));
    }
    out
}

/// Why a confirmation is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    #[error("only an action request waits for a confirmation, not {0}")]
    NotAnAction(String),
    #[error("confirmation id {0:?} is not this request's")]
    WrongId(String),
    #[error("only the person who asked can confirm this request")]
    OtherUser,
    #[error("confirmation {id} expired {ago_secs} s ago; ask again")]
    Expired { id: String, ago_secs: i64 },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// An action request waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub confirmation_id: String,
    /// Who asked (our user name, after mapping a Slack user): only they may confirm.
    pub user: String,
    /// The request to carry out: an [`Intent::Trigger`], [`Intent::Approve`] or
    /// [`Intent::Reject`].
    pub intent: Intent,
    /// The chat text that asked, for the audit entry.
    pub text: String,
    pub created_ms: i64,
}

impl Pending {
    /// A pending request; only actions (trigger, approve, reject) wait for a confirmation.
    pub fn new(
        confirmation_id: String,
        user: String,
        intent: Intent,
        text: String,
        now_ms: i64,
    ) -> Result<Self, ConfirmError> {
        if !matches!(
            intent,
            Intent::Trigger { .. } | Intent::Approve { .. } | Intent::Reject { .. }
        ) {
            return Err(ConfirmError::NotAnAction(intent.name().to_string()));
        }
        Ok(Pending {
            confirmation_id,
            user,
            intent,
            text,
            created_ms: now_ms,
        })
    }

    pub fn expires_ms(&self) -> i64 {
        self.created_ms.saturating_add(CONFIRMATION_TTL_MS)
    }

    /// Whether `user`, now holding `role`, may confirm with `confirmation_id` at `now_ms`:
    /// the request to carry out, or why not. The role is checked again here, so a
    /// demotion between the request and its confirmation counts.
    pub fn check(
        &self,
        confirmation_id: &str,
        user: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<&Intent, ConfirmError> {
        if confirmation_id != self.confirmation_id {
            return Err(ConfirmError::WrongId(
                confirmation_id.chars().take(64).collect(),
            ));
        }
        if user != self.user {
            return Err(ConfirmError::OtherUser);
        }
        if now_ms > self.expires_ms() {
            return Err(ConfirmError::Expired {
                id: self.confirmation_id.clone(),
                ago_secs: now_ms.saturating_sub(self.expires_ms()) / 1000,
            });
        }
        self.intent.authorize(role)?;
        Ok(&self.intent)
    }
}

#[cfg(test)]
mod tests {
    use sco_policy::Action;

    use super::*;
    use crate::intent::HostRef;

    const NOW: i64 = 1_773_153_000_000;

    fn trigger() -> Intent {
        Intent::Trigger {
            host: HostRef {
                id: "db-2-4e5f6071".into(),
                hostname: "db-2".into(),
            },
            action: Action::KillProcess {
                name: None,
                pattern: Some("*burner*".into()),
                pid: None,
                top_consumer: None,
                grace_secs: 10,
            },
            dry_run: false,
        }
    }

    #[test]
    fn confirmation_ids_have_their_shape() {
        assert_eq!(confirmation_id([0; 5]), "cf-aaaaaaaa");
        assert_eq!(confirmation_id([0xff; 5]), "cf-77777777");
        let id = confirmation_id([0xff, 0x12, 0x34, 0x56, 0x78]);
        assert_eq!(id.len(), 11);
        assert!(id[3..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn only_the_asker_confirms_in_time_with_a_role_that_allows_it() {
        let id = confirmation_id([1, 2, 3, 4, 5]);
        let p = Pending::new(
            id.clone(),
            "alice".into(),
            trigger(),
            "kill the burner on db-2".into(),
            NOW,
        )
        .expect("a trigger waits");
        assert_eq!(
            p.check(&id, "alice", Role::Operator, NOW + 1000),
            Ok(&trigger())
        );
        assert_eq!(
            p.check(&id, "alice", Role::Admin, NOW + CONFIRMATION_TTL_MS),
            Ok(&trigger())
        );
        assert_eq!(
            p.check("cf-aaaaaaaa", "alice", Role::Operator, NOW),
            Err(ConfirmError::WrongId("cf-aaaaaaaa".into()))
        );
        assert_eq!(
            p.check(&id, "mallory", Role::Admin, NOW),
            Err(ConfirmError::OtherUser)
        );
        assert!(matches!(
            p.check(
                &id,
                "alice",
                Role::Operator,
                NOW + CONFIRMATION_TTL_MS + 2000
            ),
            Err(ConfirmError::Expired { ago_secs: 2, .. })
        ));
        let refused = p
            .check(&id, "alice", Role::Viewer, NOW)
            .expect_err("a viewer cannot run actions");
        assert!(
            refused.to_string().contains("needs the operator role"),
            "{refused}"
        );
        assert!(matches!(
            Pending::new(id, "alice".into(), Intent::Help, "help".into(), NOW),
            Err(ConfirmError::NotAnAction(_))
        ));
    }
}
