//! The first admin: `serve` never leaves registration open. Without a bootstrap,
//! `POST /auth/register` is refused with a message saying how to create the first admin;
//! `sco-control-plane user add` and the bootstrap variables of `serve` create it.

use std::process::{Command, Output, Stdio};

use sco_control_plane::accounts::NO_ADMIN_YET;
use sco_control_plane::config::env;
use sco_tests::{bin, listens, wait_until, Db, Proc, Sandbox, ADMIN_PASSWORD};
use serde_json::{json, Value};

/// `serve` exactly as configured, without the sandbox's bootstrap.
fn serve_without_bootstrap(sb: &Sandbox) -> Proc {
    let config = sb.control_plane_config();
    let proc = Proc::spawn(
        "control-plane",
        Command::new(bin("sco-control-plane"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove(env::BOOTSTRAP_ADMIN_PASSWORD_FILE),
        &sb.path().join("control-plane.log"),
    );
    let addr = sb.http_addr;
    wait_until("control plane answers /health", || listens(addr));
    proc
}

async fn register(sb: &Sandbox, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/auth/register", sb.base_url()))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.expect("register request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn login_status(sb: &Sandbox, username: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/auth/login", sb.base_url()))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login request")
        .status()
        .as_u16()
}

fn user_add(sb: &Sandbox, username: &str, role: &str, password_file: &str) -> Output {
    Command::new(bin("sco-control-plane"))
        .args(["user", "add", "--config"])
        .arg(sb.control_plane_config())
        .args(["--username", username, "--role", role, "--password-file"])
        .arg(password_file)
        .stdin(Stdio::null())
        .output()
        .expect("run sco-control-plane user add")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_bootstrap_registration_is_refused_until_user_add_creates_an_admin() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let cp = serve_without_bootstrap(&sb);
    let first = json!({"username": "mallory", "password": "mallory-password", "role": "admin"});
    let (status, body) = register(&sb, None, &first).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().expect("error message");
    assert_eq!(message, NO_ADMIN_YET);
    assert!(
        message.contains("sco-control-plane user add") && message.contains("--role admin"),
        "{message}"
    );
    assert!(
        message.contains(env::BOOTSTRAP_ADMIN_PASSWORD_FILE),
        "{message}"
    );
    // Without a role, the same refusal (not a viewer nobody can promote).
    let (status, _) = register(
        &sb,
        None,
        &json!({"username": "vera", "password": "viewer-password-1"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(login_status(&sb, "mallory", "mallory-password").await, 401);
    assert!(cp.log_contains("no admin exists yet"), "{}", cp.log_tail());

    // `user add` refuses bad input with a clear error and writes nothing.
    let file = sb.path().join("pw");
    std::fs::write(&file, "").expect("write");
    let o = user_add(&sb, "root-admin", "admin", file.to_str().expect("utf-8"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));
    std::fs::write(&file, "short\n").expect("write");
    let o = user_add(&sb, "root-admin", "admin", file.to_str().expect("utf-8"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("password must be at least 10 characters"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&file, "root-admin-password\n").expect("write");
    let o = user_add(&sb, "first-viewer", "viewer", file.to_str().expect("utf-8"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the first user must be an admin"),
        "{}",
        stderr(&o)
    );
    let o = user_add(
        &sb,
        "root-admin",
        "superuser",
        file.to_str().expect("utf-8"),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("superuser"), "{}", stderr(&o));
    let o = user_add(
        &sb,
        "root-admin",
        "admin",
        sb.path().join("missing").to_str().expect("utf-8"),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot read the password file"),
        "{}",
        stderr(&o)
    );

    // The first admin, written to the database while the control plane runs; the final
    // newline of the file is not part of the password.
    let o = user_add(&sb, "root-admin", "admin", file.to_str().expect("utf-8"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("user root-admin added with role admin"));
    let o = user_add(&sb, "root-admin", "admin", file.to_str().expect("utf-8"));
    assert!(!o.status.success(), "a taken name is refused");
    let admin = sb.login("root-admin", "root-admin-password").await;
    let (status, body) = register(&sb, None, &first).await;
    assert_eq!(status, 403, "an admin exists now: {body}");
    let (status, body) = register(
        &sb,
        Some(&admin),
        &json!({"username": "vera", "password": "viewer-password-1"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["role"], "viewer");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_creates_the_first_admin_once() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    // A bad bootstrap stops `serve` with a message naming the variables.
    let short = sb.path().join("short.password");
    std::fs::write(&short, "short").expect("write");
    let o = Command::new(bin("sco-control-plane"))
        .args(["serve", "--config"])
        .arg(sb.control_plane_config())
        .env(env::BOOTSTRAP_ADMIN_PASSWORD_FILE, &short)
        .output()
        .expect("run serve");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(env::BOOTSTRAP_ADMIN_PASSWORD_FILE) && err.contains("at least 10"),
        "{err}"
    );

    let mut cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let (status, body) = sb.get(&admin, "/auth/verify").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "admin");
    let (status, body) = register(
        &sb,
        None,
        &json!({"username": "mallory", "password": "mallory-password", "role": "admin"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(cp.log_contains("first admin created from the bootstrap"));
    assert!(cp.terminate().success());

    // Once an admin exists the bootstrap is not needed: the file may be gone, and a
    // different password in it changes nothing.
    std::fs::write(sb.path().join("other.password"), "another-password-2").expect("write");
    let restarted = Proc::spawn(
        "control-plane (restarted)",
        Command::new(bin("sco-control-plane"))
            .args(["serve", "--config"])
            .arg(sb.control_plane_config())
            .env(
                env::BOOTSTRAP_ADMIN_PASSWORD_FILE,
                sb.path().join("other.password"),
            ),
        &sb.path().join("control-plane-2.log"),
    );
    let addr = sb.http_addr;
    wait_until("the restarted control plane answers", || listens(addr));
    assert_eq!(login_status(&sb, "admin", ADMIN_PASSWORD).await, 200);
    assert_eq!(login_status(&sb, "admin", "another-password-2").await, 401);
    assert!(
        restarted.log_contains("is not needed any more"),
        "{}",
        restarted.log_tail()
    );
}
