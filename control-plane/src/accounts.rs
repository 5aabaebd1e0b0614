//! Accounts: users, logins throttled per account and per client address (on this replica in
//! memory, across replicas in the database), refresh-token rotation with reuse detection,
//! logout, password change, and checking an access token against its user's row. The REST
//! layer only translates requests and errors; every rule of the account lives here.

use std::sync::Arc;

use crate::auth::{self, Claims, LimitPolicy, LoginLimiter, Role, Tokens, User, UserAuth};
use crate::config::Config;
use crate::domain::now_ms;
use crate::error::{Code, Coded};
use crate::store::{Store, StoreError};

/// Expired refresh tokens are kept a week past expiry, so a stolen spent token presented late
/// still revokes its session.
const REFRESH_RETENTION_MS: i64 = 7 * 86_400_000;
/// Login strikes are forgotten after the longest lockout anyway; a day later they are clutter.
const STRIKE_RETENTION_MS: i64 = 86_400_000;

/// What `POST /auth/register` answers while no admin exists: registration never stays open
/// to whoever calls first, so the first admin is created on the control-plane host.
pub const NO_ADMIN_YET: &str = "no admin exists yet, so registration is closed: create the \
first admin on the control-plane host with `sco-control-plane user add --config FILE \
--username NAME --role admin --password-file FILE` (run as the service user), or start \
`sco-control-plane serve` with SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE naming a file that holds \
its password (and SCO_BOOTSTRAP_ADMIN_USERNAME, default admin)";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    /// No valid credentials: a bad token, password or refresh token.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed logins; try again in {0} s")]
    Locked(u64),
    /// Registration over REST needs an admin, and none exists yet.
    #[error("{NO_ADMIN_YET}")]
    NoAdmin,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for AccountError {
    fn code(&self) -> Code {
        match self {
            AccountError::Invalid(_) => Code::Invalid,
            AccountError::Unauthenticated(_) => Code::Unauthenticated,
            AccountError::Forbidden(_) => Code::Denied,
            AccountError::Locked(_) => Code::Throttled,
            AccountError::NoAdmin => Code::Precondition,
            AccountError::Internal(_) => Code::Internal,
            AccountError::Store(e) => e.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AccountError::Locked(secs) => Some(*secs),
            _ => None,
        }
    }
}

/// An access token and the refresh token that renews it.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub refresh_token: String,
    /// Unix seconds.
    pub refresh_expires_at: i64,
    pub role: Role,
    pub username: String,
}

pub struct Accounts {
    store: Store,
    tokens: Arc<Tokens>,
    limiter: LoginLimiter,
    refresh_ttl_secs: i64,
}

/// A valid argon2 hash of a random password: verifying against it when the user does not
/// exist makes unknown users cost the same time as known ones.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
});

fn throttle_keys(account: &str, addr: Option<&str>) -> Vec<String> {
    [Some(auth::account_key(account)), addr.map(auth::addr_key)]
        .into_iter()
        .flatten()
        .collect()
}

async fn hash(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| AccountError::Internal(e.to_string()))?
        .map_err(|e| AccountError::Internal(e.to_string()))
}

fn parse_role(role: &str) -> Result<Role, AccountError> {
    Role::parse(role).ok_or_else(|| {
        AccountError::Invalid(format!(
            "role {role:?} is not one of admin, operator, viewer"
        ))
    })
}

/// Checks the name and password, hashes the password and stores the user.
async fn create(
    store: &Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<User, AccountError> {
    auth::check_username(username).map_err(|m| AccountError::Invalid(format!("username: {m}")))?;
    auth::check_password(password).map_err(|m| AccountError::Invalid(format!("password: {m}")))?;
    let hash = hash(password.to_string()).await?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        role,
        created_at_ms: now_ms(),
    };
    store.create_user(&user, &hash).await?;
    Ok(user)
}

/// Adds a user straight to the database, for `sco-control-plane user add` on the
/// control-plane host (whoever can write the database needs no token). `role` is admin,
/// operator or viewer; the first user must be an admin, so that registration over REST
/// becomes possible at all.
pub async fn add_user(
    store: &Store,
    username: &str,
    password: &str,
    role: &str,
) -> Result<User, AccountError> {
    let role = parse_role(role)?;
    if role != Role::Admin && !store.admin_exists().await? {
        return Err(AccountError::Invalid(format!(
            "the first user must be an admin (--role admin), not {}",
            role.as_str()
        )));
    }
    let user = create(store, username, password, role).await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), "user added from the command line");
    Ok(user)
}

/// Creates the admin `username` when no admin exists yet (`serve` with
/// `SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE`); `None` when an admin already exists, so leaving the
/// bootstrap configured across restarts changes nothing. Replicas starting together with the
/// same bootstrap both succeed: the one that loses the race finds the admin created.
pub async fn bootstrap_admin(
    store: &Store,
    username: &str,
    password: &str,
) -> Result<Option<User>, AccountError> {
    if store.admin_exists().await? {
        return Ok(None);
    }
    match create(store, username, password, Role::Admin).await {
        Ok(user) => {
            tracing::info!(username = %user.username, "first admin created from the bootstrap");
            Ok(Some(user))
        }
        Err(AccountError::Store(StoreError::Conflict(_))) if store.admin_exists().await? => {
            Ok(None)
        }
        Err(AccountError::Store(StoreError::Conflict(_))) => Err(AccountError::Invalid(format!(
            "cannot bootstrap the admin {username:?}: a user of that name exists but is not \
             an admin; choose another SCO_BOOTSTRAP_ADMIN_USERNAME"
        ))),
        Err(e) => Err(e),
    }
}

async fn verify_password(hash: String, password: String) -> Result<bool, AccountError> {
    tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .map_err(|e| AccountError::Internal(e.to_string()))
}

impl Accounts {
    pub fn new(store: Store, tokens: Arc<Tokens>, config: &Config) -> Self {
        let a = &config.auth;
        Self {
            store,
            tokens,
            limiter: LoginLimiter::new(LimitPolicy {
                max_failures_per_account: a.login_max_failures,
                max_failures_per_addr: a.login_max_failures_per_addr,
                lockout_ms: a.login_lockout_secs * 1000,
                lockout_max_ms: a.login_lockout_max_secs * 1000,
            }),
            refresh_ttl_secs: a.refresh_ttl_secs,
        }
    }

    /// The caller of an access token: its signature and claims, then its user's row, which
    /// must still exist under the same name with the same token version (no logout or
    /// password change since). The role is the user's current one.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, AccountError> {
        let mut claims = self
            .tokens
            .verify(token)
            .map_err(|e| AccountError::Unauthenticated(e.to_string()))?;
        let user = self
            .store
            .user_auth(&claims.uid)
            .await?
            .filter(|u| u.username == claims.sub)
            .ok_or_else(|| {
                AccountError::Unauthenticated("invalid token: the user no longer exists".into())
            })?;
        if user.token_version != claims.ver {
            return Err(AccountError::Unauthenticated(
                "invalid token: revoked by a logout or password change; log in again".into(),
            ));
        }
        claims.role = user.role;
        Ok(claims)
    }

    /// Only an admin may register users. While no admin exists, registration is refused
    /// with [`NO_ADMIN_YET`], which says how to create the first one ([`add_user`] from the
    /// command line, or [`bootstrap_admin`] at start).
    pub async fn register(
        &self,
        caller: Option<&Claims>,
        username: &str,
        password: &str,
        role: Option<&str>,
    ) -> Result<User, AccountError> {
        if !self.store.admin_exists().await? {
            return Err(AccountError::NoAdmin);
        }
        match caller {
            Some(c) if c.role == Role::Admin => {}
            Some(_) => {
                return Err(AccountError::Forbidden(
                    "only an admin may register users".into(),
                ))
            }
            None => {
                return Err(AccountError::Forbidden(
                    "registration needs an admin token".into(),
                ))
            }
        }
        let role = match role {
            None => Role::Viewer,
            Some(r) => parse_role(r)?,
        };
        let user = create(&self.store, username, password, role).await?;
        tracing::info!(username = %user.username, role = user.role.as_str(), by = ?caller.map(|c| &c.sub), "user registered");
        Ok(user)
    }

    /// A locked account or address is refused whatever the password; a wrong password (or
    /// an unknown user: one message for both) counts against both.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        addr: Option<&str>,
    ) -> Result<TokenPair, AccountError> {
        self.throttle_check(username, addr).await?;
        let (user, hash) = match self.store.user_by_name(username).await? {
            Some((u, h)) => (Some(u), h),
            None => (None, DUMMY_HASH.clone()),
        };
        let ok = verify_password(hash, password).await?;
        let user = match (user, ok) {
            (Some(u), true) => u,
            _ => {
                self.throttle_failure(username, addr).await?;
                tracing::info!(username = %username.chars().take(64).collect::<String>(), addr = ?addr, "failed login");
                return Err(AccountError::Unauthenticated(
                    "invalid username or password".into(),
                ));
            }
        };
        self.limiter.success(username);
        self.store
            .clear_login_failures(&auth::account_key(username))
            .await?;
        let auth =
            self.store.user_auth(&user.id).await?.ok_or_else(|| {
                AccountError::Unauthenticated("invalid username or password".into())
            })?;
        self.new_session(&auth).await
    }

    /// Rotates a refresh token: the presented one is spent and a new pair is returned.
    /// Presenting a spent token again revokes its whole family (every refresh token
    /// descended from the same login).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AccountError> {
        let token_hash = auth::hash_refresh_token(refresh_token);
        let record = self
            .store
            .refresh_token(&token_hash)
            .await?
            .ok_or_else(|| AccountError::Unauthenticated("invalid refresh token".into()))?;
        let now = now_ms();
        let reuse = || async {
            tracing::warn!(family = %record.family_id, user = %record.user_id, "refresh token reused; revoking its family");
            self.store
                .revoke_refresh_family(&record.family_id, now)
                .await?;
            Err::<TokenPair, AccountError>(AccountError::Unauthenticated(
                "refresh token was already used; every token of its session is revoked".into(),
            ))
        };
        if record.revoked_at_ms.is_some() {
            return Err(AccountError::Unauthenticated(
                "refresh token was revoked".into(),
            ));
        }
        if record.used_at_ms.is_some() {
            return reuse().await;
        }
        if record.expires_at_ms <= now {
            return Err(AccountError::Unauthenticated(
                "refresh token expired; log in again".into(),
            ));
        }
        let user = self
            .store
            .user_auth(&record.user_id)
            .await?
            .ok_or_else(|| {
                AccountError::Unauthenticated(
                    "invalid refresh token: the user no longer exists".into(),
                )
            })?;
        match self
            .issue_pair(&user, &record.family_id, Some(&token_hash))
            .await?
        {
            Some(pair) => Ok(pair),
            // Spent or revoked between the read and the rotation: a race between two uses of
            // the same token is reuse too.
            None => reuse().await,
        }
    }

    /// Ends every session of the user: all access tokens issued so far stop working and all
    /// refresh tokens are revoked.
    pub async fn logout(&self, caller: &Claims) -> Result<(), AccountError> {
        self.store
            .revoke_sessions(&caller.uid, None, now_ms())
            .await?;
        tracing::info!(username = %caller.sub, "logged out");
        Ok(())
    }

    /// Changes the caller's password; every earlier token stops working and a new pair is
    /// returned. Wrong current passwords count as failed logins.
    pub async fn change_password(
        &self,
        caller: &Claims,
        addr: Option<&str>,
        current: String,
        new: String,
    ) -> Result<TokenPair, AccountError> {
        let username = caller.sub.as_str();
        self.throttle_check(username, addr).await?;
        auth::check_password(&new)
            .map_err(|m| AccountError::Invalid(format!("new_password: {m}")))?;
        let (_, hash) = self.store.user_by_name(username).await?.ok_or_else(|| {
            AccountError::Unauthenticated("invalid token: the user no longer exists".into())
        })?;
        if !verify_password(hash, current).await? {
            self.throttle_failure(username, addr).await?;
            return Err(AccountError::Forbidden(
                "current_password: wrong password".into(),
            ));
        }
        let new_hash = self::hash(new).await?;
        self.store
            .revoke_sessions(&caller.uid, Some(&new_hash), now_ms())
            .await?;
        tracing::info!(%username, "password changed; earlier tokens revoked");
        let user = self.store.user_auth(&caller.uid).await?.ok_or_else(|| {
            AccountError::Unauthenticated("invalid token: the user no longer exists".into())
        })?;
        self.new_session(&user).await
    }

    pub async fn users(&self) -> Result<Vec<User>, AccountError> {
        Ok(self.store.users().await?)
    }

    /// Forgets refresh tokens long expired and old login strikes (hourly, on every replica).
    pub async fn purge(&self) {
        match self
            .store
            .purge_refresh_tokens(now_ms() - REFRESH_RETENTION_MS)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired refresh tokens purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot purge refresh tokens"),
        }
        if let Err(e) = self
            .store
            .purge_login_strikes(now_ms() - STRIKE_RETENTION_MS)
            .await
        {
            tracing::warn!(error = %e, "cannot purge login strikes");
        }
    }

    /// Runs [`Accounts::purge`] every hour until `stop` changes.
    pub async fn run_purges(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.purge().await;
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// A new login family: an access token and its first refresh token.
    async fn new_session(&self, user: &UserAuth) -> Result<TokenPair, AccountError> {
        let family = uuid::Uuid::new_v4().to_string();
        self.issue_pair(user, &family, None)
            .await?
            .ok_or_else(|| AccountError::Internal("a new refresh token could not be stored".into()))
    }

    /// Issues an access token and a refresh token in `family`, spending `rotating` if given;
    /// `None` when that token was spent or revoked meanwhile.
    async fn issue_pair(
        &self,
        user: &UserAuth,
        family: &str,
        rotating: Option<&str>,
    ) -> Result<Option<TokenPair>, AccountError> {
        let now = now_ms();
        let (token, claims) = self
            .tokens
            .issue(user, now / 1000)
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        let (refresh_token, record) =
            auth::new_refresh_token(&user.id, family, now, self.refresh_ttl_secs);
        match rotating {
            None => self.store.insert_refresh_token(&record).await?,
            Some(old) => {
                if !self.store.rotate_refresh_token(old, &record, now).await? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(TokenPair {
            token,
            expires_at: claims.exp,
            refresh_token,
            refresh_expires_at: record.expires_at_ms / 1000,
            role: user.role,
            username: user.username.clone(),
        }))
    }

    /// Refused while the account or the client address is locked, on this replica (memory)
    /// or on any (database).
    async fn throttle_check(&self, account: &str, addr: Option<&str>) -> Result<(), AccountError> {
        let now = now_ms();
        let here = self.limiter.check(account, addr, now);
        let shared = self
            .store
            .login_lock_wait(&throttle_keys(account, addr), now)
            .await?;
        match here.max(shared) {
            Some(wait_ms) => Err(AccountError::Locked(
                u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
            )),
            None => Ok(()),
        }
    }

    async fn throttle_failure(
        &self,
        account: &str,
        addr: Option<&str>,
    ) -> Result<(), AccountError> {
        let now = now_ms();
        self.limiter.failure(account, addr, now);
        let p = self.limiter.policy();
        self.store
            .record_login_failure(
                &auth::account_key(account),
                p.lockout_max_ms,
                |n| p.lock_ms(n, p.max_failures_per_account),
                now,
            )
            .await?;
        if let Some(a) = addr {
            self.store
                .record_login_failure(
                    &auth::addr_key(a),
                    p.lockout_max_ms,
                    |n| p.lock_ms(n, p.max_failures_per_addr),
                    now,
                )
                .await?;
        }
        Ok(())
    }
}
