//! REST authentication and authorisation over a real socket.
//!
//! Long (about 600 lines) because each test is one whole scenario against real processes, with its
//! own set-up; splitting them by file would only repeat the set-up.

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

/// A token whose header claims `alg` but whose signature is HMAC-SHA256
/// with the right secret: the classic algorithm-confusion forgery.
fn confused(secret: &str, alg: &str, payload: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    let message = format!("{header}.{body}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("sign");
    format!("{message}.{signature}")
}

fn payload_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
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
    // Real claims of the admin (uid, ver), each changed in one way.
    let admin_claims = payload_of(&admin);
    let with = |key: &str, value: Value| {
        let mut c = admin_claims.clone();
        c[key] = value;
        c
    };
    let expired = forge(secret, with("exp", json!(now() - 3600)));
    let wrong_audience = forge(secret, with("aud", json!("someone-else")));
    let wrong_secret = forge(
        "another-secret-another-secret-00000000",
        admin_claims.clone(),
    );
    let viewer_escalated = forge(
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
    let rs256_confusion = confused(secret, "RS256", &admin_claims);
    let hs512_header = confused(secret, "HS512", &admin_claims);
    let real_rs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &admin_claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(TEST_RSA_KEY.as_bytes()).expect("rsa key"),
    )
    .expect("rs256");
    let wrong_issuer = forge(secret, with("iss", json!("someone-else")));
    let not_yet = forge(secret, with("nbf", json!(now() + 600)));
    let mut no_version = admin_claims.clone();
    no_version.as_object_mut().expect("object").remove("ver");
    let no_version = forge(secret, no_version);
    let other_version = forge(
        secret,
        with("ver", json!(admin_claims["ver"].as_i64().unwrap_or(0) + 1)),
    );
    // The same claims re-signed correctly are accepted: the cases above
    // fail for the reason they name.
    let (status, _) = sb
        .get(&forge(secret, admin_claims.clone()), "/auth/verify")
        .await;
    assert_eq!(status, 200, "control: a correctly signed copy works");
    for (case, token) in [
        (
            "alg RS256 header, HMAC signature (HS/RS confusion)",
            rs256_confusion,
        ),
        ("alg HS512 header", hs512_header),
        ("really signed RS256", real_rs256),
        ("wrong issuer", wrong_issuer),
        ("not valid yet (nbf)", not_yet),
        ("no token version", no_version),
        ("another token version", other_version),
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("wrong secret", wrong_secret),
        ("old-style claims, wrong secret", viewer_escalated),
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

/// An RSA key made for this test only, to forge RS256 tokens above.
const TEST_RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC9ykTKARZBjcE3
ge0pKDvx86ZYDgEAbM9Jg2LZDSBcsz8dhU67uIwPKe65YBSCLN0ybMNWHBUZP4Rf
dcDJyFlG+lNMTQjFlrSqqe33RiMifrKetmpFccVk/ViYpdNGf9QovUdwIhoAEdMQ
PQR9/GRojNdCbzb8Cb7nHBiY7rpvHuoaacBQ3RPHs4wlDzI7RtZlAEeO/7hw9WFU
atYX7MI9wbGXap9yFtJUzfM8u5nzwkUgS47nnk9Uu8Pi+B16e5DDQEaS93AoURjQ
O0+VV/v+ZNCoPvOg2UPQOduKsP9pdaNIKHnJv1mxkni/pHLW4HxJF3Gb4+sZr2hx
CBRRNswZAgMBAAECggEAJX61+2CemIHcZ85z37syqJjVxrSxjvdwNlpOJ4p318iT
0g25oc2SYhaLMrVgJ92cL6+cIcF3i57oVIGrflHmDWc8GKlpb7vX4pWizUTegRyd
xkxMj36sHEkO/U1ZgaaUcB4A5I7gKx5aX+1mG0vHPH6Csn3NU5rLS9ZZp7EWRQhz
6DKk8PDr5YHVKu+fqZHmW3bQLC0HXY74B9+aX2MNSg/iPc8pUI8CfvPUuxzD0j5G
QLX+9Os85NPUXiygwy0vMg5114HHAJAJChzJMVsIv6toYEUAFWy1Y0xbbyW9Rxik
sd0by8zZ35WCkVdvQDu9ENQbq8KwiVyX252uOa2/HwKBgQDdEeK6gqQkuhguCXzD
uq4m/51RL1bEYPlSnj6Y1gKYrqn0i3frI1XRJe0MRfta1ryGAkOHs3+fu1AjXK61
EleBcGwGAPmvkuxsmEKVC9jwdf12ZdgIyw2LXzjKaQ/QB8gvxnA36qkqQYnPTA7I
CEB0C7i0ohcND5znFomvn6j7AwKBgQDbxyPQKXk+9rdSbUtg4qe7sm9vmNPCX4+Y
dRwhR7MVYRRZ9u6jgb/yG4t2jOabF+E6OptqlwvHDsOFMwlCIbu2/x7f1e0N9Ia3
5qwEPCmyTAvOfItj1RQFZP9kPlhirwSU0poFxBCqWj9KFVxBxiw4gxpgPzkaqOZC
wC5g6PTDswKBgQCC5NguPrQZ2uX+PDfXXG1JQghPzYu+cvys4m2F6RFYffK7jOjQ
HPfvAlm87qLJQmQVpLl/W9SxKyNkDLiVFesiBQKw+1rbjk7WbcDep0kn93S/6cVk
T3YRk6v4jQSD1Fe/ketX8GWBU5TZXNtTrS8chuQyb9beMORiH4IerpZLKQKBgQCl
yWHFnBN/IKMHRbTv3+pBl4eiOjm7TVTH38eZfzmjLfkpKDG6G51Mp+SbSAyJAAmB
YEZusIRM42EwMGCSh1nP4EFM/lX1Cfk57oLiKvQVMHJTj/WiGFEjBJ3242TPBFFD
Zl6TbORZbPyDCPvwDeq7soIKCocsCi6wOcKCjhhdKwKBgCWbvZ69by7G0Azg1jBd
59TMWk18Kr238/vdOV0JTp+5y1fZphAUdxfblGvpIewcrlboC4IQQUdtXURGb+Xo
4RS5jmz41lh/JANXJCieObJDQveSF5oQYCZHYVwPk3a7eOoBJ8iTSe7FgqH6wdGZ
HvTfLx/ti5mKwgxSXOvCd84L
-----END PRIVATE KEY-----";

async fn login_body(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{base}/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("send")
}

#[tokio::test(flavor = "multi_thread")]
async fn brute_force_is_throttled_with_retry_after() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let http = reqwest::Client::new();
    let base = sb.base_url();
    sb.admin_token().await;
    // Five failures lock the account (default auth.login_max_failures)...
    for i in 0..5 {
        let r = login_body(&http, &base, "admin", &format!("guess-{i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // ...so even the right password now gets 429 with Retry-After.
    let r = login_body(&http, &base, "admin", "admin-password-1").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry), "retry after {retry}");
    let msg = expect_error(r, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(msg.contains("try again"), "{msg}");
    // An unknown account is throttled exactly like a known one.
    for _ in 0..5 {
        let r = login_body(&http, &base, "nobody-here", "guess-guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_body(&http, &base, "nobody-here", "guess-guess").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // The address limit (20 failures) then locks this client for any account.
    for i in 0..10 {
        let r = login_body(&http, &base, &format!("user-{i}"), "guess-guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "user-{i}");
    }
    let r = login_body(&http, &base, "someone-else", "guess-guess").await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_throttling_holds_across_replicas() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _a = sb.start_control_plane();
    let (b_grpc, b_http) = (sco_tests::free_addr(), sco_tests::free_addr());
    let _b = sb.start_replica("replica-b", b_grpc, b_http);
    let http = reqwest::Client::new();
    sb.admin_token().await;
    // Five failures spread over both replicas lock the account on both.
    for i in 0..5 {
        let base = if i % 2 == 0 {
            sb.base_url()
        } else {
            format!("http://{b_http}")
        };
        let r = login_body(&http, &base, "admin", &format!("guess-{i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    for base in [sb.base_url(), format!("http://{b_http}")] {
        let r = login_body(&http, &base, "admin", "admin-password-1").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{base}");
        assert!(r.headers().contains_key("retry-after"));
    }
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send")
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotation_reuse_logout_and_password_change_sqlite() {
    sessions(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotation_reuse_logout_and_password_change_postgres() {
    sessions(Db::Postgres).await;
}

async fn sessions(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", sb.base_url());
    sb.admin_token().await;
    let login: Value = login_body(&http, &sb.base_url(), "admin", "admin-password-1")
        .await
        .json()
        .await
        .expect("json");
    let ttl = login["expires_at"].as_i64().expect("expires_at") - now();
    assert!(
        (890..=905).contains(&ttl),
        "access tokens live 15 minutes: {ttl}"
    );
    let access = login["token"].as_str().expect("token").to_string();
    let r1 = login["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();

    // Rotation: each refresh token works once and yields a new pair.
    let r = post(
        &http,
        url("/auth/refresh"),
        None,
        json!({"refresh_token": r1}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair: Value = r.json().await.expect("json");
    let r2 = pair["refresh_token"].as_str().expect("refresh").to_string();
    assert_ne!(r1, r2);
    let access2 = pair["token"].as_str().expect("token").to_string();
    assert_eq!(sb.get(&access2, "/auth/verify").await.0, 200);
    // Reuse of the spent token revokes the family: r2 stops working too.
    let r = post(
        &http,
        url("/auth/refresh"),
        None,
        json!({"refresh_token": r1}),
    )
    .await;
    assert!(expect_error(r, StatusCode::UNAUTHORIZED)
        .await
        .contains("already used"));
    let r = post(
        &http,
        url("/auth/refresh"),
        None,
        json!({"refresh_token": r2}),
    )
    .await;
    assert!(expect_error(r, StatusCode::UNAUTHORIZED)
        .await
        .contains("revoked"));
    for bad in ["", "rt_0000", "not-a-token"] {
        let r = post(
            &http,
            url("/auth/refresh"),
            None,
            json!({"refresh_token": bad}),
        )
        .await;
        expect_error(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = post(
        &http,
        url("/auth/refresh"),
        None,
        json!({"refresh_token": "x", "extra": 1}),
    )
    .await;
    expect_error(r, StatusCode::BAD_REQUEST).await;

    // Logout invalidates every earlier access and refresh token.
    let fresh: Value = login_body(&http, &sb.base_url(), "admin", "admin-password-1")
        .await
        .json()
        .await
        .expect("json");
    let r3 = fresh["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let access3 = fresh["token"].as_str().expect("token").to_string();
    let r = post(&http, url("/auth/logout"), Some(&access3), json!({})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for (case, token) in [
        ("first", &access),
        ("refreshed", &access2),
        ("current", &access3),
    ] {
        let (status, body) = sb.get(token, "/auth/verify").await;
        assert_eq!(status, 401, "{case} token after logout: {body}");
    }
    let r = post(
        &http,
        url("/auth/refresh"),
        None,
        json!({"refresh_token": r3}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED).await;

    // Password change: needs the current password, then revokes the rest.
    let before = sb.login("admin", "admin-password-1").await;
    let r = post(
        &http,
        url("/auth/password"),
        Some(&before),
        json!({"current_password": "wrong-password", "new_password": "a-new-password-2"}),
    )
    .await;
    assert!(expect_error(r, StatusCode::FORBIDDEN)
        .await
        .contains("current_password"));
    let r = post(
        &http,
        url("/auth/password"),
        Some(&before),
        json!({"current_password": "admin-password-1", "new_password": "short"}),
    )
    .await;
    assert!(expect_error(r, StatusCode::BAD_REQUEST)
        .await
        .contains("new_password"));
    let r = post(
        &http,
        url("/auth/password"),
        Some(&before),
        json!({"current_password": "admin-password-1", "new_password": "a-new-password-2"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let changed: Value = r.json().await.expect("json");
    let after = changed["token"].as_str().expect("token");
    assert_eq!(
        sb.get(&before, "/auth/verify").await.0,
        401,
        "old token revoked"
    );
    assert_eq!(
        sb.get(after, "/auth/verify").await.0,
        200,
        "new token works"
    );
    let r = login_body(&http, &sb.base_url(), "admin", "admin-password-1").await;
    expect_error(r, StatusCode::UNAUTHORIZED).await;
    let r = login_body(&http, &sb.base_url(), "admin", "a-new-password-2").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_and_no_cors_by_default() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let r = reqwest::Client::new()
        .get(format!("{}/health", sb.base_url()))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    let h = r.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        !h.contains_key("strict-transport-security"),
        "plain HTTP: no HSTS"
    );
    assert!(
        !h.contains_key("access-control-allow-origin"),
        "empty allowlist: no CORS"
    );
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
