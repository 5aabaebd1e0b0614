//! Service commands against the stand-in systemctl, leases, limits, the
//! circuit breaker, verification, webhooks, and state across a restart.

#[path = "remediate_support.rs"]
mod support;

use sco_agent::remediate::{
    Action, ActionRequest, Decision, Lease, Mode, Reason, Remediator, VerifySpec, VerifyState,
};
use std::time::Duration;
use support::{argv_log, config, fake_systemctl, request, restart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn restart_service_runs_exactly_the_service_manager_argv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");

    let dry = r
        .request(request(
            "nginx-down",
            restart("nginx.service"),
            Mode::DryRun,
        ))
        .await;
    assert_eq!(dry.decision, Decision::DryRun);
    assert_eq!(
        dry.argv,
        [
            fake_systemctl().display().to_string(),
            "restart".into(),
            "nginx.service".into()
        ]
    );
    assert_eq!(argv_log(dir.path()), None, "dry run ran nothing");
    assert_eq!(
        r.host_actions_last_hour().expect("state"),
        0,
        "dry run is free"
    );

    let bad = r
        .request(request(
            "nginx-down",
            restart("nginx; rm -rf /"),
            Mode::Execute,
        ))
        .await;
    assert_eq!(bad.decision, Decision::Refused);
    assert_eq!(bad.reason_code, Some(Reason::InvalidName));
    assert!(bad.argv.is_empty());
    assert_eq!(argv_log(dir.path()), None, "refused before anything ran");

    let done = r
        .request(request(
            "nginx-down",
            restart("nginx.service"),
            Mode::Execute,
        ))
        .await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert_eq!(
        argv_log(dir.path()).as_deref(),
        Some("restart\nnginx.service\n")
    );
    assert_eq!(done.stdout, "fake-systemctl: restart nginx.service\n");
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.lease.as_deref(), Some("lease-test"));
    assert!(done.ended_ms >= done.started_ms);

    let vacuum = r
        .request(request(
            "journal-big",
            Action::JournalVacuum { max_size_mb: 200 },
            Mode::Execute,
        ))
        .await;
    assert_eq!(vacuum.decision, Decision::Executed, "{vacuum:?}");
    assert_eq!(
        argv_log(dir.path()).as_deref(),
        Some("restart\nnginx.service\n--vacuum-size=200M\n")
    );
}

#[tokio::test]
async fn a_failing_command_is_reported_and_feeds_the_breaker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.env.insert("FAKE_SYSTEMCTL_EXIT".into(), "3".into());
    c.breaker_failures = 2;
    let mut r = Remediator::open(c, dir.path()).expect("open");
    for _ in 0..2 {
        let failed = r
            .request(request("flaky", restart("app.service"), Mode::Execute))
            .await;
        assert_eq!(failed.decision, Decision::Failed);
        assert_eq!(failed.reason_code, Some(Reason::CommandFailed));
        assert_eq!(failed.exit_code, Some(3));
    }
    let open = r
        .request(request("flaky", restart("app.service"), Mode::Execute))
        .await;
    assert_eq!(open.reason_code, Some(Reason::CircuitOpen), "{open:?}");
}

/// A rule that fires again and again while it cools down (a long cooldown,
/// or a flapping condition) gets one refusal per cooldown and rule revision.
#[tokio::test]
async fn a_cooldown_refusal_is_reported_once_per_cooldown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.breaker_failures = 1;
    let mut r = Remediator::open(c, dir.path()).expect("open");
    let executed = ActionRequest {
        cooldown_secs: 3600,
        ..request("p/r", restart("app.service"), Mode::Execute)
    };
    let done = r.request(executed.clone()).await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert!(
        done.notes[0].starts_with("execute: checked rule name, action fields, fleet lease,")
            && done.notes[0].ends_with("counted against the rule's and the host's limits"),
        "{:?}",
        done.notes
    );
    let fired = ActionRequest {
        mode: Mode::Precheck,
        lease: None,
        ..executed
    };

    let first = r.precheck(fired.clone(), "p/r@1").await.expect("reported");
    assert_eq!(first.reason_code, Some(Reason::CooldownActive), "{first:?}");
    assert_eq!(
        first.notes[0],
        "pre-check of a rule that executes: checked rule name, action fields, circuit breaker, \
         cooldown; nothing run or counted; the fleet lease and every check again when the request runs"
    );
    for _ in 0..5 {
        assert!(r.precheck(fired.clone(), "p/r@1").await.is_none());
    }
    // Another revision of the rule is reported once too.
    assert!(r.precheck(fired.clone(), "p/r@2").await.is_some());
    assert!(r.precheck(fired.clone(), "p/r@2").await.is_none());
    let history = r.history(100).expect("history");
    assert_eq!(history.len(), 3, "execution and two refusals: {history:?}");

    // Something else changed (the breaker opened): that refusal is news.
    r.record_verification("p/r", false).await.expect("record");
    let open = r.precheck(fired.clone(), "p/r@1").await.expect("reported");
    assert_eq!(open.reason_code, Some(Reason::CircuitOpen), "{open:?}");
    // An open breaker stays open until a human resets it: reported once too.
    for _ in 0..3 {
        assert!(r.precheck(fired.clone(), "p/r@1").await.is_none());
    }
    assert_eq!(r.history(100).expect("history").len(), 4);
    // Reset: the rule is back to its cooldown, which is news again.
    r.reset_breaker("p/r").await.expect("reset");
    let again = r.precheck(fired.clone(), "p/r@1").await.expect("reported");
    assert_eq!(again.reason_code, Some(Reason::CooldownActive), "{again:?}");

    // A rule that may run is checked (and reported) on every fire.
    let other = ActionRequest {
        rule: "p/other".into(),
        ..fired
    };
    for _ in 0..2 {
        let ok = r
            .precheck(other.clone(), "p/other@1")
            .await
            .expect("reported");
        assert_eq!(ok.decision, Decision::DryRun, "{ok:?}");
        assert_eq!(ok.mode, Mode::Precheck);
    }
    let dry = r
        .request(request("p/dry", restart("app.service"), Mode::DryRun))
        .await;
    assert_eq!(
        dry.notes[0],
        "dry run: checked rule name, action fields, circuit breaker, cooldown, hourly limit, \
         host budget, host safety; no lease needed, nothing run or counted"
    );
    // Only the one execution ran the service manager.
    assert_eq!(
        argv_log(dir.path()).as_deref(),
        Some("restart\napp.service\n")
    );
}

#[tokio::test]
async fn each_limit_refuses_with_its_reason_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.host_max_per_hour = 5;
    c.breaker_failures = 3;
    let mut r = Remediator::open(c.clone(), dir.path()).expect("open");
    let unit = || restart("app.service");

    // Lease: none, empty, expired.
    let leases = [
        (None, Reason::NoLease),
        (
            Some(Lease {
                token: String::new(),
                expires_ms: i64::MAX,
            }),
            Reason::NoLease,
        ),
        (
            Some(Lease {
                token: "old".into(),
                expires_ms: 1,
            }),
            Reason::LeaseExpired,
        ),
    ];
    for (lease, want) in leases {
        let report = r
            .request(ActionRequest {
                lease,
                ..request("lease", unit(), Mode::Execute)
            })
            .await;
        assert_eq!(report.reason_code, Some(want), "{report:?}");
    }
    let no_lease_dry = r
        .request(ActionRequest {
            lease: None,
            ..request("lease", unit(), Mode::DryRun)
        })
        .await;
    assert_eq!(
        no_lease_dry.decision,
        Decision::DryRun,
        "dry run needs no lease"
    );
    assert_eq!(argv_log(dir.path()), None);

    // Cooldown.
    let cool = ActionRequest {
        cooldown_secs: 3600,
        ..request("cool", unit(), Mode::Execute)
    };
    assert_eq!(r.request(cool.clone()).await.decision, Decision::Executed);
    let again = r.request(cool.clone()).await;
    assert_eq!(again.reason_code, Some(Reason::CooldownActive), "{again:?}");

    // Per-rule hourly limit.
    let limited = ActionRequest {
        max_per_hour: 2,
        ..request("limited", unit(), Mode::Execute)
    };
    for _ in 0..2 {
        assert_eq!(
            r.request(limited.clone()).await.decision,
            Decision::Executed
        );
    }
    let third = r.request(limited.clone()).await;
    assert_eq!(
        third.reason_code,
        Some(Reason::RuleRateLimited),
        "{third:?}"
    );

    // Circuit breaker: three failed verifications open it.
    for ok in [false, true, false, false] {
        r.record_verification("breaker", ok).await.expect("record");
    }
    assert!(r
        .rule_state("breaker")
        .expect("state")
        .breaker_open_since_ms
        .is_none());
    let state = r
        .record_verification("breaker", false)
        .await
        .expect("record");
    assert!(state.breaker_open_since_ms.is_some());
    let open = r.request(request("breaker", unit(), Mode::Execute)).await;
    assert_eq!(open.reason_code, Some(Reason::CircuitOpen), "{open:?}");
    let open_dry = r.request(request("breaker", unit(), Mode::DryRun)).await;
    assert_eq!(
        open_dry.reason_code,
        Some(Reason::CircuitOpen),
        "dry run tells the truth"
    );

    // Host budget: 3 executed so far, 2 more allowed, then exhausted.
    for rule in ["b1", "b2"] {
        assert_eq!(
            r.request(request(rule, unit(), Mode::Execute))
                .await
                .decision,
            Decision::Executed
        );
    }
    let over = r.request(request("b3", unit(), Mode::Execute)).await;
    assert_eq!(over.reason_code, Some(Reason::BudgetExhausted), "{over:?}");
    let last_id = over.id;
    let runs = argv_log(dir.path()).expect("log").lines().count() / 2;
    assert_eq!(runs, 5);

    // Restart: every limit holds, the history is there, ids keep growing.
    drop(r);
    let mut r = support::reopen(c.clone(), dir.path());
    assert_eq!(r.host_actions_last_hour().expect("state"), 5);
    let history = r.history(100).expect("history");
    assert_eq!(history.first().map(|h| h.id), Some(last_id), "newest first");
    assert!(history.len() >= 14, "{}", history.len());
    let checks = [
        (cool.clone(), Reason::CooldownActive),
        (limited.clone(), Reason::RuleRateLimited),
        (
            request("breaker", unit(), Mode::Execute),
            Reason::CircuitOpen,
        ),
        (
            request("b4", unit(), Mode::Execute),
            Reason::BudgetExhausted,
        ),
    ];
    for (req, want) in checks {
        let report = r.request(req).await;
        assert_eq!(report.reason_code, Some(want), "{report:?}");
        assert!(report.id > last_id);
    }

    // Only a human reset closes the breaker, and it persists.
    r.reset_breaker("breaker").await.expect("reset");
    drop(r);
    let r = support::reopen(c, dir.path());
    let s = r.rule_state("breaker").expect("state");
    assert!(s.breaker_open_since_ms.is_none());
    assert_eq!(s.consecutive_failures, 0);
}

#[tokio::test]
async fn verification_passes_or_fails_and_feeds_the_breaker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.breaker_failures = 1;
    let mut r = Remediator::open(c, dir.path()).expect("open");
    let spec = VerifySpec {
        metric: "cpu.busy_pct".into(),
        below: 50.0,
        within_secs: 5,
        poll_ms: 20,
    };

    let done = r
        .request(request("cpu", restart("app.service"), Mode::Execute))
        .await;
    let mut readings = vec![95.0, 90.0, 30.0].into_iter();
    let outcome = r
        .verify(&done, &spec, |m| {
            assert_eq!(m, "cpu.busy_pct");
            readings.next()
        })
        .await
        .expect("verify");
    assert!(matches!(outcome.state, VerifyState::Passed { value, .. } if value == 30.0));
    assert!(!outcome.breaker_open);

    let dry = r
        .request(request("cpu", restart("app.service"), Mode::DryRun))
        .await;
    let skipped = r.verify(&dry, &spec, |_| Some(99.0)).await.expect("verify");
    assert_eq!(skipped.state, VerifyState::Skipped);

    let short = VerifySpec {
        within_secs: 0,
        ..spec
    };
    let failed = r
        .verify(&done, &short, |_| Some(99.0))
        .await
        .expect("verify");
    assert!(matches!(failed.state, VerifyState::Failed { last_value: Some(v) } if v == 99.0));
    assert!(failed.breaker_open);
    let refused = r
        .request(request("cpu", restart("app.service"), Mode::Execute))
        .await;
    assert_eq!(refused.reason_code, Some(Reason::CircuitOpen));
}

/// Accepts one HTTP request on a real socket, answers 204, returns the body.
async fn one_webhook(listener: tokio::net::TcpListener) -> String {
    let (sock, _) = listener.accept().await.expect("accept");
    serve_one(sock).await
}

/// Reads one request from `sock`, answers 204, returns the body.
async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut sock: S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            if body.len() >= len || n == 0 {
                sock.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await
                    .expect("answer");
                assert!(head.starts_with("POST /sco/alerts HTTP/1.1"), "{head}");
                return body.to_string();
            }
        }
        assert!(n > 0, "connection closed early");
    }
}

#[tokio::test]
async fn notify_posts_json_to_an_allowlisted_webhook_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(one_webhook(listener));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.notify_urls = vec![format!("http://{addr}/sco")];
    let mut r = Remediator::open(c, dir.path()).expect("open");
    let notify = |url: String| Action::Notify {
        url,
        body: serde_json::json!({"text": "disk cleaned on host-1"}),
    };

    let cases = [
        (format!("http://{addr}/other"), Reason::NotAllowed),
        (format!("http://{addr}/scope"), Reason::NotAllowed),
        (format!("https://{addr}/sco/alerts"), Reason::NotAllowed),
        (format!("ftp://{addr}/sco/alerts"), Reason::InvalidAction),
    ];
    for (url, want) in cases {
        let report = r
            .request(request("notify", notify(url), Mode::Execute))
            .await;
        assert_eq!(report.reason_code, Some(want), "{report:?}");
    }
    let sent = r
        .request(request(
            "notify",
            notify(format!("http://{addr}/sco/alerts")),
            Mode::Execute,
        ))
        .await;
    assert_eq!(sent.decision, Decision::Executed, "{sent:?}");
    assert_eq!(sent.exit_code, Some(204));
    let body = server.await.expect("server");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(json["text"], "disk cleaned on host-1");
}

#[tokio::test]
async fn every_report_serializes_with_its_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let report = r
        .request(ActionRequest {
            lease: None,
            ..request("x", restart("a.service"), Mode::Execute)
        })
        .await;
    let json = serde_json::to_value(&report).expect("serialize");
    assert_eq!(json["decision"], "refused");
    assert_eq!(json["reason_code"], "no_lease");
    assert_eq!(json["mode"], "execute");
    assert_eq!(json["action"]["type"], "restart_service");
    assert_eq!(json["action"]["unit"], "a.service");
    assert!(json["id"].as_u64().is_some());
}

/// A TLS server for `127.0.0.1` with a certificate from a fresh CA; returns
/// the CA (PEM) and the acceptor.
fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (
        ca.pem(),
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
    )
}

#[tokio::test]
async fn notify_posts_over_https_to_servers_the_bundle_trusts_only() {
    let (ca_pem, acceptor) = tls_server();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        // The first connection comes from the agent that does not trust
        // the CA: its handshake fails. The second one succeeds.
        let (sock, _) = listener.accept().await.expect("accept");
        assert!(
            acceptor.accept(sock).await.is_err(),
            "untrusted client got through"
        );
        let (sock, _) = listener.accept().await.expect("accept");
        let tls = acceptor.accept(sock).await.expect("handshake");
        serve_one(tls).await
    });
    let notify = Action::Notify {
        url: format!("https://{addr}/sco/alerts"),
        body: serde_json::json!({"text": "over tls"}),
    };

    // A bundle without the server's CA: refused by certificate checks.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.notify_urls = vec![format!("https://{addr}/sco")];
    c.notify_ca_file = dir.path().join("missing-bundle.pem");
    let mut r = Remediator::open(c.clone(), dir.path()).expect("open");
    let failed = r
        .request(request("notify", notify.clone(), Mode::Execute))
        .await;
    assert_eq!(failed.decision, Decision::Failed, "{failed:?}");
    assert_eq!(failed.reason_code, Some(Reason::Http), "{failed:?}");
    drop(r);

    let other = tempfile::tempdir().expect("tempdir");
    let bundle = other.path().join("ca.pem");
    std::fs::write(&bundle, ca_pem).expect("write bundle");
    c.notify_ca_file = bundle;
    let mut r = Remediator::open(c, other.path()).expect("open");
    let sent = r.request(request("notify", notify, Mode::Execute)).await;
    assert_eq!(sent.decision, Decision::Executed, "{sent:?}");
    assert_eq!(sent.exit_code, Some(204));
    let body = server.await.expect("server");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(json["text"], "over tls");
}

#[tokio::test]
async fn a_webhook_that_refuses_or_never_answers_fails_the_action_and_says_why() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // First connection: read the request, answer 503 with a body longer than the cap.
    // Second connection: read the request and never answer.
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut chunk = [0u8; 4096];
        let _ = sock.read(&mut chunk).await.expect("read");
        let body = "x".repeat(5000);
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).await.expect("answer");
        let (mut silent, _) = listener.accept().await.expect("accept");
        let _ = silent.read(&mut chunk).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.notify_urls = vec![format!("http://{addr}/sco")];
    c.output_cap_bytes = 1024;
    c.command_timeout_secs = 1;
    let mut r = Remediator::open(c, dir.path()).expect("open");
    let notify = Action::Notify {
        url: format!("http://{addr}/sco/alerts"),
        body: serde_json::json!({"text": "refused"}),
    };

    let refused = r
        .request(request("notify", notify.clone(), Mode::Execute))
        .await;
    assert_eq!(refused.decision, Decision::Failed, "{refused:?}");
    assert_eq!(refused.reason_code, Some(Reason::Http));
    assert_eq!(refused.exit_code, Some(503));
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("webhook answered 503"),
        "{refused:?}"
    );
    assert_eq!(
        refused.stdout,
        "x".repeat(1024),
        "the answer is kept up to the cap"
    );

    let started = std::time::Instant::now();
    let silent = r.request(request("notify", notify, Mode::Execute)).await;
    assert_eq!(silent.decision, Decision::Failed, "{silent:?}");
    assert_eq!(silent.reason_code, Some(Reason::Http));
    assert!(
        silent
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("no answer within 1s"),
        "{silent:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the time limit holds"
    );
    server.abort();
}
