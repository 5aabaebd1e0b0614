//! One error type for every handler: a status code and a JSON message.
//! Internal errors are logged in full and answered with a generic message.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::{Code, Coded};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (seconds), with 429.
    pub retry_after_secs: Option<u64>,
}

/// The body of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, naming the field or value.
    pub error: String,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    /// 429 with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The HTTP status of each error code: the one place that decides it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Invalid | Code::Precondition => StatusCode::BAD_REQUEST,
        Code::Denied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Conflict => StatusCode::CONFLICT,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Throttled => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl<E: Coded> From<E> for AppError {
    fn from(e: E) -> Self {
        match e.code() {
            Code::Unavailable => {
                tracing::error!(error = %e, "storage error");
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
            }
            Code::Internal => AppError::internal(e),
            Code::Throttled => {
                AppError::too_many_requests(e.to_string(), e.retry_after_secs().unwrap_or(1))
            }
            code => AppError::new(http_status(code), e.to_string()),
        }
    }
}

/// `Json` whose rejections are JSON errors naming the problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: `None` when the request has no body at all (so a client that sends
/// none keeps working), else exactly [`ApiJson`]'s rules (JSON content type, strict fields,
/// errors naming the problem).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| AppError::new(r.status(), r.body_text()))?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !json_type {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a body must be JSON: send `Content-Type: application/json`, or no body",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(Self(Some(v))),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> AppError {
    let status = match &r {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    AppError::new(status, r.body_text())
}

/// `Query` whose rejections are JSON errors naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Self(q.0)),
            Err(r) => Err(AppError::bad_request(query_message(&r))),
        }
    }
}

fn query_message(r: &QueryRejection) -> String {
    r.body_text()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Reason {
        reason: Option<String>,
    }

    #[tokio::test]
    async fn an_optional_body_is_absent_or_strict_json() {
        let app = Router::new().route(
            "/x",
            post(|OptionalJson(body): OptionalJson<Reason>| async move {
                match body {
                    None => "none".to_string(),
                    Some(b) => format!("reason {:?}", b.reason),
                }
            }),
        );
        // (content type, body) -> status, body text (start)
        let cases = [
            (None, "", 200, "none"),
            (Some("application/json"), "", 200, "none"),
            (Some("text/plain"), "", 200, "none"),
            (
                Some("application/json"),
                r#"{"reason": "freeze"}"#,
                200,
                r#"reason Some("freeze")"#,
            ),
            (
                Some("application/json; charset=utf-8"),
                "{}",
                200,
                "reason None",
            ),
            (
                Some("application/json"),
                r#"{"why": "x"}"#,
                400,
                r#"{"error":"#,
            ),
            (Some("application/json"), "{", 400, r#"{"error":"#),
            (None, r#"{"reason": "x"}"#, 415, r#"{"error":"#),
            (Some("text/plain"), "freeze", 415, r#"{"error":"#),
        ];
        for (content_type, body, status, text) in cases {
            let mut request = axum::http::Request::post("/x");
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let response = app
                .clone()
                .oneshot(request.body(Body::from(body)).expect("request"))
                .await
                .expect("response");
            assert_eq!(
                response.status().as_u16(),
                status,
                "{content_type:?} {body}"
            );
            let got = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .expect("body");
            let got = String::from_utf8_lossy(&got);
            assert!(got.starts_with(text), "{content_type:?} {body}: {got}");
        }
    }
}
