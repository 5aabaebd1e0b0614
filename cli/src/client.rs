//! The REST client: one control plane, JSON in and out, errors that name the server, the
//! HTTP status and the server's own message; and the session that keeps the access token
//! fresh with the refresh token (which the server rotates on every use).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::Method;
use serde_json::{json, Value};

use crate::credentials::{Credentials, Session};
use crate::duration::now_ms;

/// An answer other than 2xx.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: HTTP {status}{}: {message}", reason.map(|r| format!(" {r}")).unwrap_or_default())]
pub struct HttpError {
    pub method: Method,
    pub url: String,
    pub status: u16,
    pub reason: Option<&'static str>,
    /// The server's `{"error": ...}` message, or the start of its body.
    pub message: String,
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    /// A policy document, sent as `application/yaml` (the server also takes JSON there).
    Yaml(String),
}

/// The control plane at one URL.
pub struct Client {
    http: Http,
    base: String,
}

impl Client {
    pub fn new(server: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).with_context(|| {
            format!("--server {server:?} is not a URL such as http://127.0.0.1:8080")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--server {server:?}: the scheme must be http or https");
        }
        let mut builder = Http::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("scoctl/", env!("CARGO_PKG_VERSION")));
        match ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("read --ca-file {}", path.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                    format!("--ca-file {}: not PEM certificates", path.display())
                })?;
                if certs.is_empty() {
                    bail!("--ca-file {}: no certificate in it", path.display());
                }
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            None if url.scheme() == "https" => bail!(
                "--server {base} is https: pass --ca-file with the CA that signed its certificate \
                 (scoctl trusts no built-in roots)"
            ),
            None => {}
        }
        let http = builder.build().context("build the HTTP client")?;
        Ok(Self { http, base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the JSON answer (`null` for an empty one); a non-2xx
    /// answer is an [`HttpError`], a failure to connect names the server.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
        token: Option<&str>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request: RequestBuilder = self.http.request(method.clone(), &url);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::None => request,
            Body::Json(v) => request.json(v),
            Body::Yaml(text) => request
                .header(reqwest::header::CONTENT_TYPE, "application/yaml")
                .body(text.clone()),
        };
        let response = request.send().map_err(|e| self.network_error(&e))?;
        let status = response.status();
        let text = response
            .text()
            .map_err(|e| self.network_error(&e))
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or_else(|| {
                    let t: String = text.trim().chars().take(200).collect();
                    if t.is_empty() {
                        "(no message)".into()
                    } else {
                        t
                    }
                });
            return Err(HttpError {
                method,
                url,
                status: status.as_u16(),
                reason: status.canonical_reason(),
                message: crate::render::clean(&message),
            }
            .into());
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {url}: the answer is not JSON"))
    }

    fn network_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        anyhow::anyhow!(
            "cannot reach the control plane at {} ({detail}); check --server or SCO_SERVER",
            self.base
        )
    }

    /// `POST /auth/login`.
    pub fn login(&self, username: &str, password: &str) -> anyhow::Result<Session> {
        let v = self.send(
            Method::POST,
            "/auth/login",
            &[],
            &Body::Json(json!({ "username": username, "password": password })),
            None,
        )?;
        session_from(&v)
    }

    /// `POST /auth/refresh`: a new pair; the presented refresh token is spent.
    pub fn refresh(&self, refresh_token: &str) -> anyhow::Result<Session> {
        let v = self.send(
            Method::POST,
            "/auth/refresh",
            &[],
            &Body::Json(json!({ "refresh_token": refresh_token })),
            None,
        )?;
        session_from(&v)
    }
}

/// A token pair from a login, refresh or password answer.
fn session_from(v: &Value) -> anyhow::Result<Session> {
    let text = |k: &str| {
        v[k].as_str()
            .map(String::from)
            .with_context(|| format!("the server's token answer has no {k:?}"))
    };
    let secs = |k: &str| {
        v[k].as_i64()
            .with_context(|| format!("the server's token answer has no {k:?}"))
    };
    Ok(Session {
        username: text("username")?,
        role: text("role")?,
        token: text("token")?,
        expires_at: secs("expires_at")?,
        refresh_token: text("refresh_token")?,
        refresh_expires_at: secs("refresh_expires_at")?,
    })
}

/// A refresh happens this long before the access token expires, so that a request never
/// races its expiry.
const REFRESH_MARGIN_SECS: i64 = 30;

/// Authenticated calls: the stored session of this server, refreshed when its access
/// token has expired (or is refused), the rotated pair written back at once.
pub struct Api {
    pub client: Client,
    creds_path: PathBuf,
    session: Session,
}

impl Api {
    pub fn open(client: Client, creds_path: PathBuf) -> anyhow::Result<Self> {
        let creds = Credentials::load(&creds_path)?;
        let Some(session) = creds.servers.get(client.base()).cloned() else {
            bail!(
                "not logged in to {}: run `scoctl login --username USER` (credentials: {})",
                client.base(),
                creds_path.display()
            );
        };
        Ok(Self {
            client,
            creds_path,
            session,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    fn refresh(&mut self) -> anyhow::Result<()> {
        if self.session.refresh_expires_at <= now_ms() / 1000 {
            bail!(
                "the session at {} has expired: run `scoctl login --username {}`",
                self.client.base(),
                self.session.username
            );
        }
        let fresh = match self.client.refresh(&self.session.refresh_token) {
            Ok(s) => s,
            Err(e) if is_status(&e, 401) => {
                // Spent, revoked (logout elsewhere, password change) or reused: the
                // session is gone; forget it so the next command says so plainly.
                let _ = self.forget();
                bail!(
                    "the session at {} was ended (logout, password change or a reused refresh \
                     token): run `scoctl login --username {}`",
                    self.client.base(),
                    self.session.username
                );
            }
            Err(e) => return Err(e.context("refresh the access token")),
        };
        self.session = fresh;
        let mut creds = Credentials::load(&self.creds_path)?;
        creds
            .servers
            .insert(self.client.base().to_string(), self.session.clone());
        creds.save(&self.creds_path)
    }

    /// Removes this server's session from the credentials file.
    pub fn forget(&self) -> anyhow::Result<()> {
        let mut creds = Credentials::load(&self.creds_path)?;
        if creds.servers.remove(self.client.base()).is_some() {
            creds.save(&self.creds_path)?;
        }
        Ok(())
    }

    /// An authenticated request; an expired access token is refreshed first, and a 401
    /// is retried once after a refresh.
    pub fn call(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
    ) -> anyhow::Result<Value> {
        let mut refreshed = false;
        if self.session.expires_at - REFRESH_MARGIN_SECS <= now_ms() / 1000 {
            self.refresh()?;
            refreshed = true;
        }
        let first = self
            .client
            .send(method.clone(), path, query, body, Some(&self.session.token));
        match first {
            Err(e) if is_status(&e, 401) && !refreshed => {
                self.refresh()?;
                self.client
                    .send(method, path, query, body, Some(&self.session.token))
            }
            other => other,
        }
    }

    pub fn get(&mut self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(Method::GET, path, query, &Body::None)
    }

    pub fn post(&mut self, path: &str, body: &Body) -> anyhow::Result<Value> {
        self.call(Method::POST, path, &[], body)
    }

    pub fn delete(&mut self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, query, &Body::None)
    }
}

/// The error is an answer with this HTTP status.
pub fn is_status(e: &anyhow::Error, status: u16) -> bool {
    e.downcast_ref::<HttpError>()
        .is_some_and(|h| h.status == status)
}

/// A path segment with everything but unreserved characters percent-encoded.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_name_method_url_status_and_message() {
        let e = HttpError {
            method: Method::POST,
            url: "http://127.0.0.1:8080/auth/login".into(),
            status: 401,
            reason: Some("Unauthorized"),
            message: "invalid username or password".into(),
        };
        assert_eq!(
            e.to_string(),
            "POST http://127.0.0.1:8080/auth/login: HTTP 401 Unauthorized: invalid username or password"
        );
        let e: anyhow::Error = e.into();
        assert!(is_status(&e, 401));
        assert!(!is_status(&e, 403));
    }

    #[test]
    fn bad_servers_are_refused_before_any_request() {
        assert!(Client::new("not a url", None).is_err());
        assert!(Client::new("ftp://x", None).is_err());
        let https = Client::new("https://127.0.0.1:8443", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(https.contains("--ca-file"), "{https}");
        let ok = Client::new("http://127.0.0.1:8080/", None).expect("client");
        assert_eq!(ok.base(), "http://127.0.0.1:8080");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("host:1"), "host%3A1");
    }

    #[test]
    fn a_token_answer_becomes_a_session() {
        let v = json!({"token": "t", "token_type": "Bearer", "expires_at": 5, "refresh_token": "rt_1",
                       "refresh_expires_at": 9, "role": "admin", "username": "ad"});
        let s = session_from(&v).expect("session");
        assert_eq!(
            (s.token.as_str(), s.expires_at, s.refresh_expires_at),
            ("t", 5, 9)
        );
        assert!(session_from(&json!({"token": "t"})).is_err());
    }
}
