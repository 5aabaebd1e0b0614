//! The agent's policies: the last good signed revision of each, kept in
//! sled so that they apply after a restart and while the control plane is
//! unreachable. Every stored revision is verified again when loaded.

use std::collections::BTreeMap;

use super::{Policy, Rule, SignedPolicy, VerifyError};

const TREE: &str = "policies";

/// What [`PolicyStore::apply`] did with a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Verified, stored and in force.
    New,
    /// The same revision is already in force.
    Unchanged,
    /// Refused; the previous revision (if any) stays in force.
    Refused(String),
}

pub struct PolicyStore {
    tree: sled::Tree,
    key: Option<Vec<u8>>,
    /// In force, or withdrawn (`None`: kept so that its revision is known).
    policies: BTreeMap<String, (SignedPolicy, Option<Policy>)>,
}

impl PolicyStore {
    /// Opens the policies kept in `db`, dropping (with a warning) any that
    /// no longer verify with `key`.
    pub fn open(db: &sled::Db, key: Option<Vec<u8>>) -> Result<Self, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let mut policies = BTreeMap::new();
        for item in tree.iter() {
            let (name, bytes) = item?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let signed = match serde_json::from_slice::<SignedPolicy>(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(policy = %name, error = %e, "stored policy unreadable; ignored");
                    continue;
                }
            };
            match signed.verify_any(key.as_deref()) {
                Ok(p) => {
                    policies.insert(name, (signed, p));
                }
                Err(e) => {
                    tracing::warn!(policy = %name, error = %e, "stored policy does not verify; ignored")
                }
            }
        }
        Ok(Self {
            tree,
            key,
            policies,
        })
    }

    /// Verifies `signed` and puts it in force. Nothing changes on refusal.
    pub fn apply(&mut self, signed: SignedPolicy) -> Result<Applied, sled::Error> {
        let policy = match signed.verify_any(self.key.as_deref()) {
            Ok(p) => p,
            Err(e) => return Ok(Applied::Refused(refusal(&e))),
        };
        // An older revision is a rollback (a stopped rollout): signed like
        // any other, it is accepted.
        if let Some((current, _)) = self.policies.get(&signed.name) {
            if current.revision == signed.revision && current.document == signed.document {
                return Ok(Applied::Unchanged);
            }
        }
        let bytes = serde_json::to_vec(&signed).unwrap_or_default();
        self.tree.insert(signed.name.as_bytes(), bytes)?;
        self.tree.flush()?;
        self.policies.insert(signed.name.clone(), (signed, policy));
        Ok(Applied::New)
    }

    pub fn revision(&self, name: &str) -> Option<u64> {
        self.policies.get(name).map(|(s, _)| s.revision)
    }

    /// Policies in force: (name, revision, policy).
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, &Policy)> {
        self.policies
            .iter()
            .filter_map(|(n, (s, p))| Some((n.as_str(), s.revision, p.as_ref()?)))
    }

    /// A rule by its qualified name `policy/rule`, with the revision in force.
    pub fn rule(&self, qualified: &str) -> Option<(u64, &Rule)> {
        let (policy, rule) = qualified.split_once('/')?;
        let (signed, Some(p)) = self.policies.get(policy)? else {
            return None;
        };
        Some((signed.revision, p.rule(rule)?))
    }

    pub fn is_empty(&self) -> bool {
        self.policies.values().all(|(_, p)| p.is_none())
    }
}

fn refusal(e: &VerifyError) -> String {
    match e {
        VerifyError::Unsigned => "unsigned: policy is not signed".into(),
        VerifyError::NoKey => format!("no_key: {e}"),
        VerifyError::BadSignature => format!("bad_signature: {e}"),
        VerifyError::Invalid(_) => format!("invalid: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_keys::{keypair as key, public, sign};
    use crate::policy::{parse, signed_message};
    use ring::signature::Ed25519KeyPair;

    fn signed(k: &Ed25519KeyPair, revision: u64, cooldown: u64) -> SignedPolicy {
        let p = parse(&format!(
            "name: disk\nrules:\n  - name: vacuum\n    when: {{ state: ['disk.used_pct:/ > 90'] }}\n    \
             action: {{ type: journal_vacuum, max_size_mb: 100 }}\n    cooldown_secs: {cooldown}\n"
        ))
        .expect("valid");
        sign(k, &p, revision)
    }

    #[test]
    fn keeps_the_last_good_revision_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let public_key = public(&k);
        {
            let db = sled::open(dir.path()).expect("db");
            let mut s = PolicyStore::open(&db, Some(public_key.clone())).expect("open");
            assert_eq!(s.apply(signed(&k, 1, 10)).expect("apply"), Applied::New);
            assert_eq!(
                s.apply(signed(&k, 1, 10)).expect("apply"),
                Applied::Unchanged
            );
            assert_eq!(s.apply(signed(&k, 2, 20)).expect("apply"), Applied::New);

            // A signed withdrawal removes the policy but keeps its revision.
            let mut gone = signed(&k, 5, 0);
            gone.document.clear();
            gone.signature = hex::encode(k.sign(&signed_message("disk", 5, "")));
            assert_eq!(s.apply(gone.clone()).expect("apply"), Applied::New);
            assert!(s.rule("disk/vacuum").is_none() && s.is_empty());
            assert_eq!(s.revision("disk"), Some(5));
            let mut forged = gone;
            forged.revision = 6;
            let Applied::Refused(why) = s.apply(forged).expect("apply") else {
                panic!("forged withdrawal applied")
            };
            assert!(why.starts_with("bad_signature"), "{why}");
            assert_eq!(s.apply(signed(&k, 2, 20)).expect("apply"), Applied::New);

            let mut tampered = signed(&k, 3, 30);
            tampered.document = tampered.document.replace("30", "0");
            let Applied::Refused(why) = s.apply(tampered).expect("apply") else {
                panic!("tampered policy applied")
            };
            assert!(why.starts_with("bad_signature"), "{why}");

            let mut unsigned = signed(&k, 4, 40);
            unsigned.signature.clear();
            let Applied::Refused(why) = s.apply(unsigned).expect("apply") else {
                panic!("unsigned policy applied")
            };
            assert!(why.starts_with("unsigned"), "{why}");

            assert_eq!(
                s.rule("disk/vacuum").map(|(rev, r)| (rev, r.cooldown_secs)),
                Some((2, 20))
            );
            // A rollback to an older signed revision applies.
            assert_eq!(s.apply(signed(&k, 1, 10)).expect("apply"), Applied::New);
            assert_eq!(
                s.rule("disk/vacuum").map(|(rev, r)| (rev, r.cooldown_secs)),
                Some((1, 10))
            );
            assert_eq!(s.apply(signed(&k, 2, 20)).expect("apply"), Applied::New);
        }
        let db = sled::open(dir.path()).expect("db");
        let s = PolicyStore::open(&db, Some(public_key)).expect("reopen");
        assert_eq!(
            s.rule("disk/vacuum").map(|(rev, r)| (rev, r.cooldown_secs)),
            Some((2, 20))
        );
        // A different key (a re-keyed fleet) invalidates what was stored.
        let s = PolicyStore::open(&db, Some(public(&key()))).expect("reopen");
        assert!(s.is_empty());
    }
}
