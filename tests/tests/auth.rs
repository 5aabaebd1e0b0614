//! REST authentication and authorisation over a real socket.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use sco_tests::{Db, Sandbox};
use serde_json::{json, Value};

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn forge(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

fn claims(role: &str, exp: i64, aud: &str) -> Value {
    json!({"sub": "admin", "role": role, "iss": "sco-control-plane", "aud": aud, "iat": now(), "nbf": now() - 10, "exp": exp})
}

async fn expect_error(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("error bodies are JSON");
    body["error"].as_str().expect("error message").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_and_roles() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", sb.base_url());
    let admin = sb.admin_token().await;

    // Once an admin exists, registration needs an admin token.
    let viewer_body =
        json!({"username": "vera", "password": "viewer-password-1", "role": "viewer"});
    let r = http
        .post(url("/auth/register"))
        .json(&viewer_body)
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::FORBIDDEN).await;
    let r = http
        .post(url("/auth/register"))
        .bearer_auth(&admin)
        .json(&viewer_body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let viewer = sb.login("vera", "viewer-password-1").await;
    let r = http
        .post(url("/auth/register"))
        .bearer_auth(&viewer)
        .json(&json!({"username": "mallory", "password": "mallory-password", "role": "admin"}))
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::FORBIDDEN).await;

    // Bad password and unknown user look the same.
    let r = http
        .post(url("/auth/login"))
        .json(&json!({"username": "admin", "password": "wrong-password"}))
        .send()
        .await
        .expect("send");
    let wrong_password = expect_error(r, StatusCode::UNAUTHORIZED).await;
    let r = http
        .post(url("/auth/login"))
        .json(&json!({"username": "nobody", "password": "wrong-password"}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        expect_error(r, StatusCode::UNAUTHORIZED).await,
        wrong_password
    );

    // Verify a good token.
    let (status, body) = sb.get(&admin, "/auth/verify").await;
    assert_eq!(status, 200);
    assert_eq!(body["role"], "admin");

    // Forged and broken tokens.
    let secret = &sb.jwt_secret;
    let expired = forge(secret, claims("admin", now() - 3600, "sco-api"));
    let wrong_audience = forge(secret, claims("admin", now() + 3600, "someone-else"));
    let wrong_secret = forge(
        "another-secret-another-secret-00000000",
        claims("admin", now() + 3600, "sco-api"),
    );
    let mut parts: Vec<String> = viewer.split('.').map(String::from).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    payload["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = parts.join(".");
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    for (case, token) in [
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("wrong secret", wrong_secret),
        ("tampered payload", tampered),
        ("alg none", alg_none),
        ("garbage", "not-a-token".to_string()),
    ] {
        let r = http
            .get(url("/auth/verify"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{case}");
        let body: Value = r.json().await.expect("json");
        assert!(body["error"].is_string(), "{case}: {body}");
    }
    let r = http.get(url("/hosts")).send().await.expect("send");
    expect_error(r, StatusCode::UNAUTHORIZED).await;

    // Roles.
    let (status, _) = sb.get(&viewer, "/users").await;
    assert_eq!(status, 403, "a viewer may not list users");
    let (status, body) = sb.get(&admin, "/users").await;
    assert_eq!(status, 200);
    assert_eq!(body["users"].as_array().map(Vec::len), Some(2));
    let (status, _) = sb.get(&viewer, "/hosts").await;
    assert_eq!(status, 200, "a viewer may read hosts");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_json_errors() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", sb.base_url());
    let admin = sb.admin_token().await;

    let r = http
        .post(url("/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = http
        .post(url("/auth/login"))
        .json(&json!({"username": "admin", "password": "x", "extra": 1}))
        .send()
        .await
        .expect("send");
    let msg = expect_error(r, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("extra"), "{msg}");
    let r = http
        .post(url("/auth/register"))
        .bearer_auth(&admin)
        .json(&json!({"username": "short-pw", "password": "x", "role": "viewer"}))
        .send()
        .await
        .expect("send");
    assert!(expect_error(r, StatusCode::BAD_REQUEST)
        .await
        .contains("password"));
    let r = http
        .post(url("/auth/register"))
        .bearer_auth(&admin)
        .json(&json!({"username": "someone", "password": "long-enough-pw", "role": "root"}))
        .send()
        .await
        .expect("send");
    assert!(expect_error(r, StatusCode::BAD_REQUEST)
        .await
        .contains("role"));
    let r = http
        .post(url("/auth/register"))
        .bearer_auth(&admin)
        .json(&json!({"username": "admin", "password": "long-enough-pw", "role": "viewer"}))
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::CONFLICT).await;

    for (query, word) in [
        ("host=a&from=10&to=5", "from"),
        ("host=a&limit=0", "limit"),
        ("host=a&from=yesterday", "from"),
        ("metric=cpu", "host"),
        ("host=bad%20id", "host"),
    ] {
        let (status, body) = sb
            .get(&admin, &format!("/monitoring/metrics?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(word), "{query}: {msg}");
    }
    let r = http.get(url("/no/such/path")).send().await.expect("send");
    expect_error(r, StatusCode::NOT_FOUND).await;
    let big = "x".repeat(200 * 1024);
    let r = http
        .post(url("/auth/login"))
        .json(&json!({"username": big, "password": "x"}))
        .send()
        .await
        .expect("send");
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await;
}
