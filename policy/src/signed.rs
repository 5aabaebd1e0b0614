//! Signed policy revisions: the bytes a signature covers, the envelope that travels, and its
//! verification against the fleet's ed25519 key.

use serde::{Deserialize, Serialize};

use crate::document::{parse, Policy};

/// Domain separation for policy signatures.
const SIGNATURE_CONTEXT: &[u8] = b"sco-policy-v1";

/// The bytes an ed25519 policy signature covers.
pub fn signed_message(name: &str, revision: u64, document: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + name.len() + document.len() + 24);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.push(0);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(revision.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(document.as_bytes());
    m
}

/// Domain separation for model signatures.
const MODEL_SIGNATURE_CONTEXT: &[u8] = b"sco-model-v1";

/// The bytes an ed25519 model signature covers: the registry number and the manifest, whose
/// `sha256` binds the model file.
pub fn signed_model_message(number: u64, manifest: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(MODEL_SIGNATURE_CONTEXT.len() + manifest.len() + 24);
    m.extend_from_slice(MODEL_SIGNATURE_CONTEXT);
    m.push(0);
    m.extend_from_slice(number.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(manifest.as_bytes());
    m
}

/// Checks a model signature (hex) against the fleet key.
pub fn verify_model_signature(
    key: Option<&[u8]>,
    number: u64,
    manifest: &str,
    signature_hex: &str,
) -> Result<(), VerifyError> {
    verify_ed25519(key, &signed_model_message(number, manifest), signature_hex)
}

/// Checks an ed25519 signature (hex) of `message` with `key` (32 raw bytes).
fn verify_ed25519(
    key: Option<&[u8]>,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), VerifyError> {
    if signature_hex.is_empty() {
        return Err(VerifyError::Unsigned);
    }
    let key = key.ok_or(VerifyError::NoKey)?;
    let sig = hex::decode(signature_hex).map_err(|_| VerifyError::BadSignature)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// A policy revision as it travels and as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPolicy {
    pub name: String,
    pub revision: u64,
    /// Canonical JSON of the document.
    pub document: String,
    /// ed25519 signature of [`signed_message`], hex.
    pub signature: String,
}

/// Why a signed policy was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("policy is not signed")]
    Unsigned,
    #[error("no policy verifying key is configured (server.policy_key)")]
    NoKey,
    #[error("signature does not verify with the fleet policy key (server.policy_key)")]
    BadSignature,
    #[error("signed document is invalid: {0}")]
    Invalid(String),
}

impl SignedPolicy {
    /// A withdrawal: a signed revision with an empty document removes the
    /// policy from the hosts that get it.
    pub fn is_withdrawal(&self) -> bool {
        self.document.is_empty()
    }

    /// Like [`SignedPolicy::verify`], but a signed withdrawal gives `None`.
    pub fn verify_any(&self, key: Option<&[u8]>) -> Result<Option<Policy>, VerifyError> {
        if self.is_withdrawal() {
            self.check_signature(key)?;
            return Ok(None);
        }
        self.verify(key).map(Some)
    }

    fn check_signature(&self, key: Option<&[u8]>) -> Result<(), VerifyError> {
        verify_ed25519(
            key,
            &signed_message(&self.name, self.revision, &self.document),
            &self.signature,
        )
    }

    /// Checks the signature with `key` (32 raw ed25519 bytes), then parses
    /// and validates the document.
    pub fn verify(&self, key: Option<&[u8]>) -> Result<Policy, VerifyError> {
        self.check_signature(key)?;
        if !self.document.trim_start().starts_with('{') {
            return Err(VerifyError::Invalid("document is not JSON".into()));
        }
        let policy = parse(&self.document).map_err(|e| VerifyError::Invalid(e.to_string()))?;
        if policy.name != self.name {
            return Err(VerifyError::Invalid(format!(
                "document names policy {:?}, envelope {:?}",
                policy.name, self.name
            )));
        }
        Ok(policy)
    }
}

/// Reads a verifying key file: 64 hex characters (32 bytes).
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = hex::decode(text.trim()).map_err(|e| format!("{}: not hex: {e}", path.display()))?;
    if key.len() != 32 {
        return Err(format!(
            "{}: {} bytes, an ed25519 public key has 32",
            path.display(),
            key.len()
        ));
    }
    Ok(key)
}

/// Signing helpers for tests (this crate's, and with the `test-keys` feature its users').
#[cfg(any(test, feature = "test-keys"))]
pub mod test_keys {
    use super::{signed_message, SignedPolicy};
    use crate::document::Policy;

    pub fn keypair() -> ring::signature::Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
    }

    pub fn public(k: &ring::signature::Ed25519KeyPair) -> Vec<u8> {
        use ring::signature::KeyPair;
        k.public_key().as_ref().to_vec()
    }

    pub fn sign(k: &ring::signature::Ed25519KeyPair, p: &Policy, revision: u64) -> SignedPolicy {
        let document = p.canonical_json();
        SignedPolicy {
            name: p.name.clone(),
            revision,
            signature: hex::encode(k.sign(&signed_message(&p.name, revision, &document))),
            document,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
    }

    #[test]
    fn a_signed_revision_verifies_and_any_change_does_not() {
        let k = keypair();
        let public = k.public_key().as_ref().to_vec();
        let p = parse("name: a\nrules: []\n").expect("valid");
        let document = p.canonical_json();
        let signed = SignedPolicy {
            name: p.name.clone(),
            revision: 3,
            signature: hex::encode(k.sign(&signed_message(&p.name, 3, &document))),
            document,
        };
        assert_eq!(signed.verify(Some(&public)), Ok(p));
        let mut later = signed.clone();
        later.revision = 4;
        assert_eq!(later.verify(Some(&public)), Err(VerifyError::BadSignature));
        assert_eq!(signed.verify(None), Err(VerifyError::NoKey));
        let mut unsigned = signed;
        unsigned.signature.clear();
        assert_eq!(unsigned.verify(Some(&public)), Err(VerifyError::Unsigned));
    }
}
