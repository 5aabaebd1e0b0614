//! Users, roles, password hashing, JWT access tokens, refresh tokens and
//! the login rate limiter.
//!
//! Passwords are hashed with argon2id v19 (the crate's defaults: m = 19456
//! KiB, t = 2 passes, p = 1 lane, 16-byte random salt, 32-byte output, as
//! OWASP recommends). Access tokens are short-lived HS256 JWTs; the
//! algorithm is pinned, and `exp`, `nbf`, `iss` and `aud` are checked, and
//! `ver` must equal the user's current token version (see
//! [`Claims::ver`]). Refresh tokens are opaque random strings stored only
//! as SHA-256 hashes and rotated on every use.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "sco-control-plane";
pub const AUDIENCE: &str = "sco-api";

/// The roles, shared with ChatOps (`sco-chat`), which names the role each intent needs.
pub use sco_policy::Role;

/// The name of [`Role`]'s schema among the OpenAPI document's components. `sco-policy` stays
/// free of OpenAPI, so the schema is built here from the type's own names ([`role_schema`])
/// and `http::openapi::finish` adds it; a `Role` field refers to it with
/// `#[schema(schema_with = role_ref)]`.
pub const ROLE_SCHEMA: &str = "Role";

/// A string, one of the roles' names.
pub fn role_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Role::ALL.map(Role::as_str)))
        .build()
}

/// A reference to [`ROLE_SCHEMA`].
pub fn role_ref() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name(ROLE_SCHEMA)
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    #[schema(schema_with = role_ref)]
    pub role: Role,
    pub created_at_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("invalid token: {0}")]
    Token(String),
    #[error("cannot hash password: {0}")]
    Hash(String),
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Constant-time in the password (argon2's verifier compares in constant
/// time); a malformed stored hash counts as a mismatch.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// What every authenticated request checks against the user's row.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAuth {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub token_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// The user id (stable; usernames could be reused after a deletion).
    pub uid: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The user's token version when the token was issued. Logout and
    /// password changes increment the stored version, so every earlier
    /// token stops working at once. Required: a token without it is invalid.
    pub ver: i64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl_secs: i64,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    pub fn issue(&self, user: &UserAuth, now_secs: i64) -> Result<(String, Claims), AuthError> {
        let claims = Claims {
            sub: user.username.clone(),
            uid: user.id.clone(),
            role: user.role,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now_secs,
            nbf: now_secs,
            exp: now_secs + self.ttl_secs,
            ver: user.token_version,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Token(e.to_string()))?;
        Ok((token, claims))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Token(e.to_string()))
    }
}

/// A stored refresh token (the token itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub family_id: String,
    pub user_id: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A new refresh token (256 random bits, hex) and its record.
pub fn new_refresh_token(
    user_id: &str,
    family_id: &str,
    now_ms: i64,
    ttl_secs: i64,
) -> (String, RefreshRecord) {
    let token = format!("rt_{}", hex::encode(rand::random::<[u8; 32]>()));
    let record = RefreshRecord {
        token_hash: hash_refresh_token(&token),
        family_id: family_id.to_string(),
        user_id: user_id.to_string(),
        issued_at_ms: now_ms,
        expires_at_ms: now_ms + ttl_secs * 1000,
        used_at_ms: None,
        revoked_at_ms: None,
    };
    (token, record)
}

/// SHA-256 of a refresh token: enough for a 256-bit random secret (no salt
/// or slow hash needed), and lookups stay a primary-key read.
pub fn hash_refresh_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Login throttling per account and per client address: after `max`
/// consecutive failures the key is locked for `lockout`, doubling with each
/// further failure up to `lockout_max`. A lock answers 429 before the
/// password is looked at, for known and unknown accounts alike (no
/// enumeration). Counters are forgotten `lockout_max` after the last
/// failure, and an account's counter is cleared by a successful login (an
/// address's is not: one good account must not reset an address that is
/// guessing others). Kept in memory and in the database, so every replica
/// sees the failures made against the others.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitPolicy {
    pub max_failures_per_account: u32,
    pub max_failures_per_addr: u32,
    pub lockout_ms: i64,
    pub lockout_max_ms: i64,
}

#[derive(Debug, Default, Clone)]
struct Strikes {
    failures: u32,
    last_failure_ms: i64,
    locked_until_ms: i64,
}

/// See [`LimitPolicy`].
#[derive(Debug)]
pub struct LoginLimiter {
    policy: LimitPolicy,
    keys: std::sync::Mutex<std::collections::HashMap<String, Strikes>>,
}

/// Beyond this many tracked keys, stale entries are pruned (bounded memory).
const LIMITER_MAX_KEYS: usize = 100_000;

impl LoginLimiter {
    pub fn new(policy: LimitPolicy) -> Self {
        Self {
            policy,
            keys: Default::default(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Strikes>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (each update is a plain field write), so a poisoned lock is used.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds until a login may be tried, when one of the keys is
    /// locked.
    pub fn check(&self, account: &str, addr: Option<&str>, now_ms: i64) -> Option<i64> {
        let keys = self.keys();
        [Some(account_key(account)), addr.map(addr_key)]
            .into_iter()
            .flatten()
            .filter_map(|k| keys.get(&k).map(|s| s.locked_until_ms - now_ms))
            .filter(|wait| *wait > 0)
            .max()
    }

    pub fn failure(&self, account: &str, addr: Option<&str>, now_ms: i64) {
        let p = &self.policy;
        let mut keys = self.keys();
        if keys.len() >= LIMITER_MAX_KEYS {
            keys.retain(|_, s| now_ms - s.last_failure_ms < p.lockout_max_ms);
        }
        let targets = [
            Some((account_key(account), p.max_failures_per_account)),
            addr.map(|a| (addr_key(a), p.max_failures_per_addr)),
        ];
        for (key, max) in targets.into_iter().flatten() {
            let s = keys.entry(key).or_default();
            if now_ms - s.last_failure_ms >= p.lockout_max_ms {
                *s = Strikes::default();
            }
            s.failures += 1;
            s.last_failure_ms = now_ms;
            if s.failures >= max {
                s.locked_until_ms = now_ms + p.lock_ms(s.failures, max);
            }
        }
    }

    pub fn success(&self, account: &str) {
        self.keys().remove(&account_key(account));
    }

    pub fn policy(&self) -> &LimitPolicy {
        &self.policy
    }
}

impl LimitPolicy {
    /// The lock after `failures` consecutive failures of a key whose limit
    /// is `max` (0: not locked).
    pub fn lock_ms(&self, failures: u32, max: u32) -> i64 {
        if failures < max {
            return 0;
        }
        let doublings = (failures - max).min(20);
        self.lockout_ms
            .saturating_mul(1 << doublings)
            .min(self.lockout_max_ms)
    }
}

/// Usernames are at most 64 characters; longer guesses share a key, so a
/// client cannot grow the map with huge names.
pub fn account_key(account: &str) -> String {
    let name: String = account.chars().take(65).collect();
    format!("user:{}", name.to_ascii_lowercase())
}

pub fn addr_key(addr: &str) -> String {
    format!("addr:{addr}")
}

/// Username rule shared by registration and login.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.len() < 3 || name.len() > 64 {
        return Err("username must be 3 to 64 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err("username may contain only letters, digits and - _ . @".into());
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < 10 {
        return Err("password must be at least 10 characters".into());
    }
    if password.len() > 1024 {
        return Err("password must be at most 1024 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn tokens_verify_and_reject() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", 60);
        let now = 1_800_000_000;
        let mut alice = UserAuth {
            id: "u1".into(),
            username: "alice".into(),
            role: Role::Operator,
            token_version: 3,
        };
        let (token, claims) = t
            .issue(&alice, jsonwebtoken::get_current_timestamp() as i64)
            .expect("issue");
        assert_eq!(t.verify(&token).expect("valid").role, Role::Operator);
        assert_eq!((claims.sub.as_str(), claims.ver), ("alice", 3));
        let other = Tokens::new(b"another secret another secret 00", 60);
        assert!(other.verify(&token).is_err(), "wrong secret");
        let (expired, _) = t
            .issue(
                {
                    alice.role = Role::Admin;
                    &alice
                },
                now - 1_000_000,
            )
            .expect("issue");
        assert!(t.verify(&expired).is_err(), "expired");
    }

    #[test]
    fn limiter_locks_per_account_and_address_with_backoff() {
        let l = LoginLimiter::new(LimitPolicy {
            max_failures_per_account: 3,
            max_failures_per_addr: 5,
            lockout_ms: 1000,
            lockout_max_ms: 60_000,
        });
        let t = 1_000_000;
        for i in 0..2 {
            l.failure("Alice", Some("10.0.0.1"), t + i);
            assert_eq!(l.check("alice", Some("10.0.0.1"), t + i), None);
        }
        l.failure("alice", Some("10.0.0.1"), t + 2);
        assert_eq!(
            l.check("ALICE", None, t + 2),
            Some(1000),
            "third failure locks"
        );
        assert_eq!(l.check("bob", Some("10.0.0.2"), t + 2), None);
        l.failure("alice", Some("10.0.0.1"), t + 1002);
        assert_eq!(
            l.check("alice", None, t + 1002),
            Some(2000),
            "backoff doubles"
        );
        // The address has five failures now: locked for any account.
        l.failure("carol", Some("10.0.0.1"), t + 1003);
        assert_eq!(l.check("dave", Some("10.0.0.1"), t + 1003), Some(1000));
        l.success("alice");
        assert_eq!(l.check("alice", None, t + 1004), None);
        // Counters are forgotten after lockout_max without failures.
        assert_eq!(l.check("dave", Some("10.0.0.1"), t + 100_000), None);
    }

    #[test]
    fn refresh_tokens_hash_and_differ() {
        let (a, ra) = new_refresh_token("u1", "f1", 1000, 60);
        let (b, _) = new_refresh_token("u1", "f1", 1000, 60);
        assert_ne!(a, b);
        assert_eq!(ra.token_hash, hash_refresh_token(&a));
        assert_eq!(ra.expires_at_ms, 61_000);
        assert!(!ra.token_hash.contains(&a));
    }

    #[test]
    fn roles_order() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
