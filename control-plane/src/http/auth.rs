//! `/auth/*` and `/users`: registration, login with throttling, refresh
//! token rotation, logout, password change, token verification; and the
//! extractors every other handler authenticates with.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiJson, AppError};
use super::AppState;
use crate::auth::{self, Claims, LimitPolicy, LoginLimiter, Role, User, UserAuth};
use crate::config::Config;
use crate::fleet::now_ms;

/// Auth and transport settings the REST layer needs beyond the token keys.
pub struct Security {
    pub limiter: LoginLimiter,
    pub refresh_ttl_secs: i64,
    /// REST is served over TLS: send `Strict-Transport-Security`.
    pub tls: bool,
    /// Browser origins allowed by CORS; empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

fn throttle_keys(account: &str, addr: Option<&str>) -> Vec<String> {
    [Some(auth::account_key(account)), addr.map(auth::addr_key)]
        .into_iter()
        .flatten()
        .collect()
}

/// 429 while the account or the client address is locked, on this replica
/// (memory) or on any (database).
async fn throttle_check(
    state: &AppState,
    account: &str,
    addr: Option<&str>,
) -> Result<(), AppError> {
    let now = now_ms();
    let here = state.security.limiter.check(account, addr, now);
    let shared = state
        .fleet
        .store()
        .login_lock_wait(&throttle_keys(account, addr), now)
        .await?;
    match here.max(shared) {
        Some(wait) => Err(locked(wait)),
        None => Ok(()),
    }
}

async fn throttle_failure(
    state: &AppState,
    account: &str,
    addr: Option<&str>,
) -> Result<(), AppError> {
    let now = now_ms();
    let limiter = &state.security.limiter;
    limiter.failure(account, addr, now);
    let p = limiter.policy();
    let store = state.fleet.store();
    let key = auth::account_key(account);
    store
        .record_login_failure(
            &key,
            p.lockout_max_ms,
            |n| p.lock_ms(n, p.max_failures_per_account),
            now,
        )
        .await?;
    if let Some(a) = addr {
        store
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

async fn throttle_success(state: &AppState, account: &str) -> Result<(), AppError> {
    state.security.limiter.success(account);
    state
        .fleet
        .store()
        .clear_login_failures(&auth::account_key(account))
        .await?;
    Ok(())
}

impl Security {
    pub fn from_config(config: &Config) -> Self {
        let a = &config.auth;
        Self {
            limiter: LoginLimiter::new(LimitPolicy {
                max_failures_per_account: a.login_max_failures,
                max_failures_per_addr: a.login_max_failures_per_addr,
                lockout_ms: a.login_lockout_secs * 1000,
                lockout_max_ms: a.login_lockout_max_secs * 1000,
            }),
            refresh_ttl_secs: a.refresh_ttl_secs,
            tls: config.rest.tls,
            cors_allowed_origins: config.rest.cors_allowed_origins.clone(),
        }
    }
}

/// The caller, from a valid `Authorization: Bearer` token whose version
/// still matches the user's (not logged out, password not changed since).
/// `role` is the user's current role, which may be lower than when the
/// token was issued.
pub struct Caller(pub Claims);

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "this endpoint needs the {} role; you have {}",
                role.as_str(),
                self.0.role.as_str()
            )))
        }
    }
}

fn bearer(parts: &Parts) -> Result<Option<&str>, AppError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::unauthorized("authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| AppError::unauthorized("authorization header must be `Bearer <token>`"))?;
    Ok(Some(token.trim()))
}

/// Checks the signature and claims, then the user's row: it must still
/// exist, under the same name, with the same token version.
async fn authenticate(state: &AppState, token: &str) -> Result<Claims, AppError> {
    let mut claims = state
        .tokens
        .verify(token)
        .map_err(|e| AppError::unauthorized(e.to_string()))?;
    let user = state
        .fleet
        .store()
        .user_auth(&claims.uid)
        .await?
        .filter(|u| u.username == claims.sub)
        .ok_or_else(|| AppError::unauthorized("invalid token: the user no longer exists"))?;
    if user.token_version != claims.ver {
        return Err(AppError::unauthorized(
            "invalid token: revoked by a logout or password change; log in again",
        ));
    }
    claims.role = user.role;
    Ok(claims)
}

#[axum::async_trait]
impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer(parts)?.ok_or_else(|| AppError::unauthorized("missing bearer token"))?;
        authenticate(&state, token).await.map(Caller)
    }
}

/// Like [`Caller`] but absent without an Authorization header.
pub struct MaybeCaller(pub Option<Claims>);

#[axum::async_trait]
impl<S> FromRequestParts<S> for MaybeCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        match bearer(parts)? {
            None => Ok(Self(None)),
            Some(token) => authenticate(&state, token).await.map(|c| Self(Some(c))),
        }
    }
}

/// The peer address of the connection (never a forwarded header, which a
/// client could forge); absent when the server was not given it.
pub struct ClientAddr(pub Option<IpAddr>);

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 3 to 64 characters: letters, digits and `- _ . @`.
    #[schema(example = "vera")]
    username: String,
    /// At least 10 characters, at most 1024 bytes.
    #[schema(example = "a-long-password")]
    password: String,
    /// admin, operator or viewer (default viewer; the first user must be
    /// admin).
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    user: User,
}

/// Open only until the first admin exists (then it bootstraps that admin);
/// afterwards only an admin may register users.
#[utoipa::path(
    post, path = "/auth/register", tag = "auth",
    request_body = RegisterBody,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "user created", body = UserResponse),
        (status = 400, description = "invalid username, password or role", body = ErrorBody),
        (status = 401, description = "the token is invalid or expired", body = ErrorBody),
        (status = 403, description = "an admin exists and the caller has no admin token", body = ErrorBody),
        (status = 409, description = "the username is taken", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<UserResponse>), AppError> {
    let admin_exists = state.fleet.store().admin_exists().await?;
    if admin_exists {
        match &caller {
            Some(c) if c.role == Role::Admin => {}
            Some(_) => return Err(AppError::forbidden("only an admin may register users")),
            None => return Err(AppError::forbidden("registration needs an admin token")),
        }
    }
    let role = match body.role.as_deref() {
        None if admin_exists => Role::Viewer,
        None => Role::Admin,
        Some(r) => Role::parse(r).ok_or_else(|| {
            AppError::bad_request(format!("role {r:?} is not one of admin, operator, viewer"))
        })?,
    };
    if !admin_exists && role != Role::Admin {
        return Err(AppError::bad_request("the first user must be an admin"));
    }
    auth::check_username(&body.username)
        .map_err(|m| AppError::bad_request(format!("username: {m}")))?;
    auth::check_password(&body.password)
        .map_err(|m| AppError::bad_request(format!("password: {m}")))?;
    let user = create_user(&state, &body.username, &body.password, role).await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), by = ?caller.map(|c| c.sub), "user registered");
    Ok((StatusCode::CREATED, Json(UserResponse { user })))
}

async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

async fn verify_password(hash: String, password: String) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .map_err(AppError::internal)
}

pub async fn create_user(
    state: &AppState,
    username: &str,
    password: &str,
    role: Role,
) -> Result<User, AppError> {
    let hash = hash(password.to_string()).await?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        role,
        created_at_ms: now_ms(),
    };
    state.fleet.store().create_user(&user, &hash).await?;
    Ok(user)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(example = "admin")]
    username: String,
    #[schema(example = "a-long-password")]
    password: String,
}

/// An access token and the refresh token that renews it.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (JWT, HS256); send as `Authorization: Bearer`.
    token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// When the access token expires (Unix seconds).
    expires_at: i64,
    /// Opaque, single use: `POST /auth/refresh` returns a new pair.
    refresh_token: String,
    /// When the refresh token expires (Unix seconds).
    refresh_expires_at: i64,
    role: Role,
    username: String,
}

/// A valid argon2 hash of a random password: verifying against it when the
/// user does not exist makes unknown users cost the same time as known ones.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
});

fn locked(wait_ms: i64) -> AppError {
    let secs = u64::try_from((wait_ms + 999) / 1000).unwrap_or(1);
    AppError::too_many_requests(
        format!("too many failed logins; try again in {secs} s"),
        secs,
    )
}

/// Issues an access token and a refresh token in `family`.
async fn issue_pair(
    state: &AppState,
    user: &UserAuth,
    family: &str,
    rotating: Option<&str>,
) -> Result<Result<TokenResponse, ()>, AppError> {
    let now = now_ms();
    let (token, claims) = state
        .tokens
        .issue(user, now / 1000)
        .map_err(AppError::internal)?;
    let (refresh_token, record) =
        auth::new_refresh_token(&user.id, family, now, state.security.refresh_ttl_secs);
    let store = state.fleet.store();
    match rotating {
        None => store.insert_refresh_token(&record).await?,
        Some(old) => {
            if !store.rotate_refresh_token(old, &record, now).await? {
                return Ok(Err(()));
            }
        }
    }
    Ok(Ok(TokenResponse {
        token,
        token_type: "Bearer",
        expires_at: claims.exp,
        refresh_token,
        refresh_expires_at: record.expires_at_ms / 1000,
        role: user.role,
        username: user.username.clone(),
    }))
}

/// Throttled per account and per client address (see the docs): a locked
/// account or address gets 429 with `Retry-After` whatever the password.
#[utoipa::path(
    post, path = "/auth/login", tag = "auth",
    request_body = LoginBody,
    security(()),
    responses(
        (status = 200, description = "logged in", body = TokenResponse),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "invalid username or password (one message for both)", body = ErrorBody),
        (status = 429, description = "too many failed logins; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until a login may be tried"))),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<TokenResponse>, AppError> {
    let addr = addr.map(|a| a.to_string());
    throttle_check(&state, &body.username, addr.as_deref()).await?;
    let found = state.fleet.store().user_by_name(&body.username).await?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, DUMMY_HASH.clone()),
    };
    let ok = verify_password(hash, body.password).await?;
    let user = match (user, ok) {
        (Some(u), true) => u,
        _ => {
            throttle_failure(&state, &body.username, addr.as_deref()).await?;
            tracing::info!(username = %body.username.chars().take(64).collect::<String>(), addr = ?addr, "failed login");
            // One message for both cases: no user enumeration.
            return Err(AppError::unauthorized("invalid username or password"));
        }
    };
    throttle_success(&state, &body.username).await?;
    let auth = state
        .fleet
        .store()
        .user_auth(&user.id)
        .await?
        .ok_or_else(|| AppError::unauthorized("invalid username or password"))?;
    let family = uuid::Uuid::new_v4().to_string();
    let pair = issue_pair(&state, &auth, &family, None)
        .await?
        .map_err(|()| AppError::internal("a new refresh token could not be stored"))?;
    Ok(Json(pair))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token from the last login or refresh.
    refresh_token: String,
}

/// Rotates a refresh token: the presented one is spent and a new pair is
/// returned. Presenting a spent token again revokes its whole family (every
/// refresh token descended from the same login).
#[utoipa::path(
    post, path = "/auth/refresh", tag = "auth",
    request_body = RefreshBody,
    security(()),
    responses(
        (status = 200, description = "a new access token and refresh token", body = TokenResponse),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "unknown, expired, revoked or reused refresh token", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<TokenResponse>, AppError> {
    let store = state.fleet.store();
    let token_hash = auth::hash_refresh_token(&body.refresh_token);
    let record = store
        .refresh_token(&token_hash)
        .await?
        .ok_or_else(|| AppError::unauthorized("invalid refresh token"))?;
    let now = now_ms();
    let reuse = || async {
        tracing::warn!(family = %record.family_id, user = %record.user_id, "refresh token reused; revoking its family");
        store.revoke_refresh_family(&record.family_id, now).await?;
        Err::<Json<TokenResponse>, AppError>(AppError::unauthorized(
            "refresh token was already used; every token of its session is revoked",
        ))
    };
    if record.revoked_at_ms.is_some() {
        return Err(AppError::unauthorized("refresh token was revoked"));
    }
    if record.used_at_ms.is_some() {
        return reuse().await;
    }
    if record.expires_at_ms <= now {
        return Err(AppError::unauthorized(
            "refresh token expired; log in again",
        ));
    }
    let user = store.user_auth(&record.user_id).await?.ok_or_else(|| {
        AppError::unauthorized("invalid refresh token: the user no longer exists")
    })?;
    match issue_pair(&state, &user, &record.family_id, Some(&token_hash)).await? {
        Ok(pair) => Ok(Json(pair)),
        // Spent or revoked between the read and the rotation: a race
        // between two uses of the same token is reuse too.
        Err(()) => reuse().await,
    }
}

/// Ends every session of the caller: all access tokens issued so far stop
/// working and all refresh tokens are revoked.
#[utoipa::path(
    post, path = "/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "logged out everywhere"),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    )
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, AppError> {
    state
        .fleet
        .store()
        .revoke_sessions(&caller.0.uid, None, now_ms())
        .await?;
    tracing::info!(username = %caller.0.sub, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current_password: String,
    /// At least 10 characters, at most 1024 bytes.
    new_password: String,
}

/// Changes the caller's password. Every earlier access and refresh token
/// stops working; the response is a new pair. Wrong current passwords count
/// as failed logins.
#[utoipa::path(
    post, path = "/auth/password", tag = "auth",
    request_body = PasswordBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "password changed; a new token pair", body = TokenResponse),
        (status = 400, description = "malformed body or new password too weak", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the current password is wrong", body = ErrorBody),
        (status = 429, description = "too many failed attempts; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until the next attempt"))),
    )
)]
pub async fn password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    caller: Caller,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<TokenResponse>, AppError> {
    let addr = addr.map(|a| a.to_string());
    let username = caller.0.sub.clone();
    throttle_check(&state, &username, addr.as_deref()).await?;
    auth::check_password(&body.new_password)
        .map_err(|m| AppError::bad_request(format!("new_password: {m}")))?;
    let store = state.fleet.store();
    let (_, hash) = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| AppError::unauthorized("invalid token: the user no longer exists"))?;
    if !verify_password(hash, body.current_password).await? {
        throttle_failure(&state, &username, addr.as_deref()).await?;
        return Err(AppError::forbidden("current_password: wrong password"));
    }
    let new_hash = self::hash(body.new_password).await?;
    store
        .revoke_sessions(&caller.0.uid, Some(&new_hash), now_ms())
        .await?;
    tracing::info!(%username, "password changed; earlier tokens revoked");
    let user = store
        .user_auth(&caller.0.uid)
        .await?
        .ok_or_else(|| AppError::unauthorized("invalid token: the user no longer exists"))?;
    let family = uuid::Uuid::new_v4().to_string();
    let pair = issue_pair(&state, &user, &family, None)
        .await?
        .map_err(|()| AppError::internal("a new refresh token could not be stored"))?;
    Ok(Json(pair))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    valid: bool,
    username: String,
    role: Role,
    /// Unix seconds.
    expires_at: i64,
}

/// The token's user and (current) role.
#[utoipa::path(
    get, path = "/auth/verify", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the token is valid", body = VerifyResponse),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    )
)]
pub async fn verify(caller: Caller) -> Json<VerifyResponse> {
    Json(VerifyResponse {
        valid: true,
        username: caller.0.sub,
        role: caller.0.role,
        expires_at: caller.0.exp,
    })
}

#[derive(Serialize, ToSchema)]
pub struct UsersResponse {
    users: Vec<User>,
}

#[utoipa::path(
    get, path = "/users", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "every user (admin only)", body = UsersResponse),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    )
)]
pub async fn users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UsersResponse>, AppError> {
    caller.require(Role::Admin)?;
    let users = state.fleet.store().users().await?;
    Ok(Json(UsersResponse { users }))
}

/// CORS for the configured browser origins only; `None` (no CORS headers,
/// so browsers refuse cross-origin calls) when the allowlist is empty.
pub fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn cors_only_for_allowed_origins() {
        assert!(cors_layer(&[]).is_none(), "empty allowlist: no CORS layer");
        let layer = cors_layer(&["https://ops.example.com".into()]).expect("layer");
        let app = Router::new()
            .route("/x", get(|| async { "ok" }))
            .layer(layer);
        for (origin, allowed) in [
            ("https://ops.example.com", true),
            ("https://evil.example", false),
        ] {
            let request = Request::get("/x")
                .header("origin", origin)
                .body(Body::empty())
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("response");
            assert_eq!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_some(),
                allowed,
                "{origin}"
            );
        }
    }
}
