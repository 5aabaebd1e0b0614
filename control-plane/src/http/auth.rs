//! `/auth/*` and `/users` over the accounts service ([`crate::accounts`]), and the
//! extractors every other handler authenticates with.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::bearer;
use super::error::{ApiJson, AppError, ErrorBody};
use super::AppState;
use crate::accounts::TokenPair;
use crate::auth::{Claims, Role, User};
use crate::config::Config;

/// Transport settings of the REST layer.
pub struct Security {
    /// REST is served over TLS: send `Strict-Transport-Security`.
    pub tls: bool,
    /// Browser origins allowed by CORS; empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

impl Security {
    pub fn from_config(config: &Config) -> Self {
        Self {
            tls: config.rest.tls,
            cors_allowed_origins: config.rest.cors_allowed_origins.clone(),
        }
    }
}

/// The caller, from a valid `Authorization: Bearer` token whose version
/// still matches the user's (not logged out, password not changed since).
/// `role` is the user's current role, which may be lower than when the
/// token was issued. The access layer ([`super::access`]) has already
/// checked it against the route's declared role.
pub struct Caller(pub Claims);

/// The claims the access layer found, or (for a route that did not need a token) the
/// request's own token checked here.
async fn claims<S>(parts: &Parts, state: &S) -> Result<Option<Claims>, AppError>
where
    AppState: FromRef<S>,
{
    if let Some(claims) = parts.extensions.get::<Claims>() {
        return Ok(Some(claims.clone()));
    }
    match bearer(parts)? {
        None => Ok(None),
        Some(token) => Ok(Some(
            AppState::from_ref(state)
                .accounts
                .authenticate(token)
                .await?,
        )),
    }
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        claims(parts, state)
            .await?
            .map(Caller)
            .ok_or_else(|| AppError::unauthorized("missing bearer token"))
    }
}

/// Like [`Caller`] but absent without an Authorization header.
pub struct MaybeCaller(pub Option<Claims>);

impl<S> FromRequestParts<S> for MaybeCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        claims(parts, state).await.map(Self)
    }
}

/// The peer address of the connection (never a forwarded header, which a
/// client could forge); absent when the server was not given it.
pub struct ClientAddr(pub Option<IpAddr>);

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

/// The `role` of a registration: a role's name or null.
fn role_or_null() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let mut role = crate::auth::role_ref();
    role.description = "admin, operator or viewer (default viewer).".into();
    Schema::OneOf(
        OneOfBuilder::new()
            .item(role)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
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
    /// admin, operator or viewer (default viewer).
    #[serde(default)]
    #[schema(schema_with = role_or_null)]
    role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    user: User,
}

/// Admin only. Never open: while no admin exists it is refused with a 400
/// saying how to create the first one on the control-plane host
/// (`sco-control-plane user add`, or the bootstrap variables of `serve`).
#[utoipa::path(
    post, path = "/auth/register", tag = "auth",
    request_body = RegisterBody,
    security((), ("bearer" = ["admin"])),
    responses(
        (status = 201, description = "user created", body = UserResponse),
        (status = 400, description = "invalid username, password or role, or no admin exists yet (the message says how to create one)", body = ErrorBody),
        (status = 401, description = "the token is invalid or expired", body = ErrorBody),
        (status = 403, description = "the caller has no admin token", body = ErrorBody),
        (status = 409, description = "the username is taken", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<UserResponse>), AppError> {
    let user = state
        .accounts
        .register(
            caller.as_ref(),
            &body.username,
            &body.password,
            body.role.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserResponse { user })))
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
    #[schema(schema_with = crate::auth::role_ref)]
    role: Role,
    username: String,
}

impl From<TokenPair> for TokenResponse {
    fn from(p: TokenPair) -> Self {
        Self {
            token: p.token,
            token_type: "Bearer",
            expires_at: p.expires_at,
            refresh_token: p.refresh_token,
            refresh_expires_at: p.refresh_expires_at,
            role: p.role,
            username: p.username,
        }
    }
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
    let pair = state
        .accounts
        .login(&body.username, body.password, addr.as_deref())
        .await?;
    Ok(Json(pair.into()))
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
    Ok(Json(
        state.accounts.refresh(&body.refresh_token).await?.into(),
    ))
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
    state.accounts.logout(&caller.0).await?;
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
    let pair = state
        .accounts
        .change_password(
            &caller.0,
            addr.as_deref(),
            body.current_password,
            body.new_password,
        )
        .await?;
    Ok(Json(pair.into()))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    valid: bool,
    username: String,
    #[schema(schema_with = crate::auth::role_ref)]
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
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "every user (admin only)", body = UsersResponse),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    )
)]
pub async fn users(State(state): State<AppState>) -> Result<Json<UsersResponse>, AppError> {
    let users = state.accounts.users().await?;
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
