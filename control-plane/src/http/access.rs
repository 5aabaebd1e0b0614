//! Who may call each route, read from the route's one declaration: the `security` of its
//! `#[utoipa::path]`, which is also what `/openapi.json` shows. The router is built from those
//! declarations (`utoipa_axum::routes!`), so a route and its access rule cannot drift apart,
//! and a route without a rule is refused rather than served.
//!
//! | `security(...)` in the declaration | access |
//! |---|---|
//! | `()` | public: no token needed |
//! | `(("bearer" = []))` | any valid token |
//! | `(("bearer" = ["operator"]))` | that role or higher (admin > operator > viewer) |
//! | `((), ("bearer" = ["admin"]))` | either: the use case itself decides (a token, if sent, must be valid) |

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::AppError;
use super::AppState;
use crate::auth::{Claims, Role};

/// The security scheme every declaration names.
pub const SCHEME: &str = "bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// Served with or without a token; the handler's use case decides, knowing the role it
    /// expects (the declaration's).
    Optional(Role),
    /// Any valid token.
    Any,
    /// A valid token of this role or higher.
    Role(Role),
}

impl Access {
    /// Reads an operation's `security` list (its JSON form in the OpenAPI document).
    pub fn from_security(security: Option<&Value>) -> Result<Self, String> {
        let list = security
            .and_then(Value::as_array)
            .ok_or("no security requirement declared")?;
        let mut anonymous = false;
        let mut bearer: Option<Option<Role>> = None;
        for requirement in list {
            let requirement = requirement
                .as_object()
                .ok_or("a security requirement is not an object")?;
            if requirement.is_empty() {
                anonymous = true;
                continue;
            }
            for (scheme, scopes) in requirement {
                if scheme != SCHEME {
                    return Err(format!("unknown security scheme {scheme:?}"));
                }
                let scopes = scopes.as_array().ok_or("scopes are not a list")?;
                let role = match scopes.as_slice() {
                    [] => None,
                    [one] => Some(
                        one.as_str()
                            .and_then(Role::parse)
                            .ok_or_else(|| format!("{one} is not a role"))?,
                    ),
                    _ => return Err("name at most one role".to_string()),
                };
                if bearer.replace(role).is_some() {
                    return Err("more than one bearer requirement".to_string());
                }
            }
        }
        match (anonymous, bearer) {
            (true, None) => Ok(Access::Public),
            (true, Some(Some(role))) => Ok(Access::Optional(role)),
            (true, Some(None)) => Err("anonymous or any token: declare `()` alone".to_string()),
            (false, Some(None)) => Ok(Access::Any),
            (false, Some(Some(role))) => Ok(Access::Role(role)),
            (false, None) => Err("an empty security list".to_string()),
        }
    }

    /// The sentence the operation's description ends with.
    pub fn describe(self) -> String {
        match self {
            Access::Public => "Role: none (no token needed).".to_string(),
            Access::Any => "Role: any valid token.".to_string(),
            Access::Role(role) => format!("Role: {} or higher.", role.as_str()),
            Access::Optional(role) => format!(
                "Role: {} or higher; without a token the answer says what is missing.",
                role.as_str()
            ),
        }
    }
}

/// Every operation of the document: its access, or why it has none.
#[derive(Debug, Default)]
pub struct AccessTable {
    routes: HashMap<(String, String), Result<Access, String>>,
}

impl AccessTable {
    /// Reads the document's `paths` (keys `METHOD path`, the path as axum matches it).
    pub fn from_document(doc: &Value) -> Self {
        let mut routes = HashMap::new();
        if let Some(paths) = doc["paths"].as_object() {
            for (path, item) in paths {
                let Some(item) = item.as_object() else {
                    continue;
                };
                for method in ["get", "put", "post", "delete", "patch"] {
                    if let Some(op) = item.get(method) {
                        routes.insert(
                            (method.to_uppercase(), path.clone()),
                            Access::from_security(op.get("security")),
                        );
                    }
                }
            }
        }
        Self { routes }
    }

    pub fn get(&self, method: &str, path: &str) -> Option<&Result<Access, String>> {
        self.routes.get(&(method.to_string(), path.to_string()))
    }

    /// The declared methods of a path, sorted (empty for a path the document does not have).
    pub fn methods(&self, path: &str) -> Vec<&str> {
        let mut methods: Vec<&str> = self
            .routes
            .keys()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.as_str())
            .collect();
        methods.sort_unstable();
        methods
    }

    /// Operations without a usable declaration, as `METHOD path: reason`.
    pub fn undeclared(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .iter()
            .filter_map(|((m, p), a)| a.as_ref().err().map(|e| format!("{m} {p}: {e}")))
            .collect();
        out.sort();
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &Result<Access, String>)> {
        self.routes.iter()
    }
}

/// The bearer token of a request, if it sent an `Authorization` header.
pub fn bearer(parts: &Parts) -> Result<Option<&str>, AppError> {
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

/// Refuses a request its route's declaration does not allow; otherwise puts the caller's
/// [`Claims`] (when a token was sent) in the request for the handler.
pub async fn enforce(
    State((table, state)): State<(Arc<AccessTable>, AppState)>,
    req: Request,
    next: Next,
) -> Response {
    let method = if req.method() == Method::HEAD {
        "GET".to_string()
    } else {
        req.method().as_str().to_string()
    };
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        // Only routed requests pass through this layer.
        return AppError::not_found("no such endpoint").into_response();
    };
    let access = match table.get(&method, &path) {
        Some(Ok(access)) => *access,
        Some(Err(reason)) => {
            tracing::error!(%method, %path, reason, "route without an access declaration");
            return AppError::internal(format!("{method} {path} has no access declaration"))
                .into_response();
        }
        None => {
            let allowed = table.methods(&path);
            if allowed.is_empty() {
                tracing::error!(%method, %path, "route missing from the OpenAPI document");
                return AppError::internal(format!("{method} {path} has no access declaration"))
                    .into_response();
            }
            // A declared path, another method: only what is declared is served.
            let allow = allowed.join(", ");
            let mut response = AppError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}; allowed: {allow}"),
            )
            .into_response();
            if let Ok(value) = axum::http::HeaderValue::from_str(&allow) {
                response
                    .headers_mut()
                    .insert(axum::http::header::ALLOW, value);
            }
            return response;
        }
    };
    let (mut parts, body) = req.into_parts();
    match check(&state, &parts, access).await {
        Ok(Some(claims)) => {
            parts.extensions.insert(claims);
        }
        Ok(None) => {}
        Err(refusal) => return refusal.into_response(),
    }
    next.run(Request::from_parts(parts, body)).await
}

async fn check(
    state: &AppState,
    parts: &Parts,
    access: Access,
) -> Result<Option<Claims>, AppError> {
    let token = bearer(parts)?;
    let needed = match access {
        Access::Public => return Ok(None),
        Access::Optional(_) => match token {
            None => return Ok(None),
            Some(token) => return Ok(Some(state.accounts.authenticate(token).await?)),
        },
        Access::Any => None,
        Access::Role(role) => Some(role),
    };
    let token = token.ok_or_else(|| AppError::unauthorized("missing bearer token"))?;
    let claims = state.accounts.authenticate(token).await?;
    if let Some(role) = needed {
        if claims.role < role {
            return Err(AppError::forbidden(format!(
                "this endpoint needs the {} role; you have {}",
                role.as_str(),
                claims.role.as_str()
            )));
        }
    }
    Ok(Some(claims))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn declarations() {
        let table = [
            (json!([{}]), Ok(Access::Public)),
            (json!([{"bearer": []}]), Ok(Access::Any)),
            (
                json!([{"bearer": ["viewer"]}]),
                Ok(Access::Role(Role::Viewer)),
            ),
            (
                json!([{"bearer": ["admin"]}]),
                Ok(Access::Role(Role::Admin)),
            ),
            (
                json!([{}, {"bearer": ["admin"]}]),
                Ok(Access::Optional(Role::Admin)),
            ),
        ];
        for (security, expected) in table {
            assert_eq!(
                Access::from_security(Some(&security)),
                expected,
                "{security}"
            );
        }
        for bad in [
            json!(null),
            json!([]),
            json!([{"bearer": ["root"]}]),
            json!([{"bearer": ["admin", "viewer"]}]),
            json!([{"api_key": []}]),
            json!([{}, {"bearer": []}]),
            json!([{"bearer": ["admin"]}, {"bearer": ["viewer"]}]),
        ] {
            assert!(Access::from_security(Some(&bad)).is_err(), "{bad}");
        }
        assert!(Access::from_security(None).is_err());
    }

    #[test]
    fn the_table_names_operations_without_a_declaration() {
        let doc = json!({"paths": {
            "/a": {"get": {"security": [{}]}, "post": {}},
            "/b/{id}": {"delete": {"security": [{"bearer": ["operator"]}]}},
        }});
        let table = AccessTable::from_document(&doc);
        assert_eq!(table.get("GET", "/a"), Some(&Ok(Access::Public)));
        assert_eq!(
            table.get("DELETE", "/b/{id}"),
            Some(&Ok(Access::Role(Role::Operator)))
        );
        assert_eq!(table.get("PUT", "/a"), None);
        assert_eq!(table.methods("/a"), vec!["GET", "POST"]);
        assert!(table.methods("/c").is_empty());
        assert_eq!(
            table.undeclared(),
            vec!["POST /a: no security requirement declared".to_string()]
        );
    }
}
