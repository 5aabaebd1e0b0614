//! Alerts to people, end to end: the real control plane tells a webhook receiver, a Slack
//! receiver, a PagerDuty receiver that fails twice before it accepts, and an SMTP sink, all
//! started here and speaking their real protocols, about anomaly events that a hand-written
//! agent (a real mTLS stream) opens, escalates and closes. Checked: one notification per
//! opening, escalation past a channel's floor, acknowledgement and closing (never one per
//! update), retries with backoff, webhook signatures, PagerDuty dedup keys, routing by
//! severity, family and labels, a silence that holds a host's news and lets it go when it is
//! lifted, acknowledgements and silences under roles and in the audit, a remediation outcome.
//!
//! Long (about 850 lines) because each test is one whole scenario against real processes and a
//! local receiver, with its own set-up; they share the receiver and helpers at the top.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{
    agent_message, anomaly_event, control_message, ActionReport, AgentMessage, AnomalyEvent,
    Contributor, ControlMessage, Heartbeat, Hello,
};
use sco_tests::{wait_for, Db, Sandbox};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

type Log = Arc<Mutex<Vec<Received>>>;
/// Each message's recipients and data.
type Mails = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// An HTTP/1.1 receiver: records every POST; paths under `/flaky/` answer 503 to their first
/// two requests.
async fn http_receiver() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log: Log = Arc::default();
    let flaky_seen = Arc::new(Mutex::new(0_u32));
    let shared = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = shared.clone();
            let flaky_seen = flaky_seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut headers = BTreeMap::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let fail = path.starts_with("/flaky/") && {
                        let mut n = flaky_seen.lock().expect("lock");
                        *n += 1;
                        *n <= 2
                    };
                    if !fail {
                        log.lock().expect("lock").push(Received {
                            path,
                            headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                    }
                    let reply: &[u8] = if fail {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
                    } else {
                        b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

/// A receiver that accepts connections and never answers (until the test ends).
async fn stuck_receiver() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An SMTP sink (RFC 5321 without extensions): records each message's envelope and data.
async fn smtp_sink() -> (SocketAddr, Mails) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mails: Mails = Arc::default();
    let shared = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mails = shared.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
                let mut rcpt = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink.test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt.push(line[8..].trim().to_string());
                        b"250 ok\r\n"
                    } else if upper.starts_with("DATA") {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            if reader.read_line(&mut l).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        mails
                            .lock()
                            .expect("lock")
                            .push((std::mem::take(&mut rcpt), data));
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        // MAIL FROM, RSET, NOOP
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, mails)
}

/// A hand-written agent: one mTLS stream; control messages arrive on `inbound`.
struct FakeAgent {
    tx: mpsc::Sender<AgentMessage>,
    inbound: mpsc::Receiver<ControlMessage>,
    seq: u64,
}

impl FakeAgent {
    async fn connect(sb: &Sandbox, id: &str, labels: &[(&str, &str)]) -> Self {
        let channel = sb.agent_channel(id).await;
        let (tx, rx) = mpsc::channel(64);
        tx.send(AgentMessage {
            seq: 0,
            produced_at_ms: 0,
            body: Some(agent_message::Body::Hello(Hello {
                hostname: format!("{id}.test"),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                run_started_ms: 1,
                ..Default::default()
            })),
        })
        .await
        .expect("hello");
        let mut stream = AgentServiceClient::new(channel)
            .connect(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        // heartbeats, as the agent sends them, or the stream is closed as dead
        let beats = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let beat = AgentMessage {
                    seq: 0,
                    produced_at_ms: now_ms(),
                    body: Some(agent_message::Body::Heartbeat(Heartbeat::default())),
                };
                if beats.send(beat).await.is_err() {
                    return;
                }
            }
        });
        let (in_tx, inbound) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(m)) = stream.message().await {
                if in_tx.send(m).await.is_err() {
                    return;
                }
            }
        });
        Self {
            tx,
            inbound,
            seq: 0,
        }
    }

    /// Sends a durable message and waits for its ack; returns its sequence number.
    async fn send(&mut self, body: agent_message::Body) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.tx
            .send(AgentMessage {
                seq,
                produced_at_ms: now_ms(),
                body: Some(body),
            })
            .await
            .expect("send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(15), self.inbound.recv())
                .await
                .expect("an ack within 15 s")
                .expect("stream up");
            if let Some(control_message::Body::Ack(a)) = m.body {
                if a.up_to_seq >= seq {
                    return seq;
                }
            }
        }
    }

    /// The next command the control plane sends down.
    async fn command(&mut self) -> sco_proto::v1::ActionCommand {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.inbound.recv())
                .await
                .expect("a command within 20 s")
                .expect("stream up");
            if let Some(control_message::Body::Command(c)) = m.body {
                return c;
            }
        }
    }

    /// Opens (`open_seq` None), updates or closes an event.
    async fn event(
        &mut self,
        open_seq: Option<u64>,
        kind: anomaly_event::Kind,
        severity: &str,
        family: &str,
    ) -> u64 {
        let open = open_seq.unwrap_or(self.seq + 1);
        let metric = if family == "cpu" {
            "cpu.user_pct"
        } else {
            "disk.io_util_pct"
        };
        self.send(agent_message::Body::Anomaly(AnomalyEvent {
            kind: kind as i32,
            open_seq: open,
            run_started_ms: 1,
            started_ms: now_ms(),
            updated_ms: now_ms(),
            ended_ms: if kind == anomaly_event::Kind::Closed {
                now_ms()
            } else {
                0
            },
            score: 0.9,
            peak_score: 0.9,
            severity: severity.into(),
            family: family.into(),
            contributors: vec![Contributor {
                metric: metric.into(),
                value: 97.0,
                expected_low: 2.0,
                expected_high: 30.0,
                contribution: 0.8,
            }],
            close_reason: if kind == anomaly_event::Kind::Closed {
                format!("recovered: {family} under its clear level for 15 s")
            } else {
                String::new()
            },
            ..Default::default()
        }))
        .await;
        open
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn events(log: &Log, path_prefix: &str, subject: &str) -> Vec<Received> {
    log.lock()
        .expect("lock")
        .iter()
        .filter(|r| r.path.starts_with(path_prefix))
        .filter(|r| r.body.contains(subject))
        .cloned()
        .collect()
}

async fn wait_received(
    log: &Log,
    what: &str,
    path: &str,
    subject: &str,
    n: usize,
) -> Vec<Received> {
    wait_for(what, || async {
        let got = events(log, path, subject);
        (got.len() >= n).then_some(got)
    })
    .await
}

fn verify_signature(secret: &str, r: &Received) {
    let header = r.headers.get("x-sco-signature").expect("signed");
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect("t=...,v1=...");
    let age = now_ms() / 1000 - t.parse::<i64>().expect("t is seconds");
    assert!((0..120).contains(&age), "signature time {t} is {age} s old");
    // what a receiver does with the documented format
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hex::decode(v1).expect("hex");
    ring::hmac::verify(&key, format!("{t}.{}", r.body).as_bytes(), &tag)
        .expect("the signature verifies over t.body");
}

async fn run(db: Db) {
    let (http, hooks) = http_receiver().await;
    let (smtp, mails) = smtp_sink().await;
    let stuck = stuck_receiver().await;
    let Some(mut sb) = Sandbox::new(db).await else {
        return;
    };
    let dir = sb.path().to_path_buf();
    std::fs::write(dir.join("hook.secret"), "hook-secret-0123456789\n").expect("secret");
    std::fs::write(dir.join("pd.key"), "R0UTINGKEY\n").expect("key");
    sb.control_plane_extra = format!(
        r#"
[notify]
console_url = "https://sco.example.com"
timeout_ms = 5000
[[notify.channels]]
name = "stuck"
kind = "webhook"
url = "http://{stuck}/hook"
subjects = ["anomaly"]
[[notify.channels]]
name = "hooks"
kind = "webhook"
url = "http://{http}/hook"
secret_file = "{dir}/hook.secret"
[[notify.channels]]
name = "chat"
kind = "slack"
url = "http://{http}/slack/T0/B0/XYZ"
min_severity = "high"
[[notify.channels]]
name = "pager"
kind = "pagerduty"
url = "http://{http}/flaky/v2/enqueue"
secret_file = "{dir}/pd.key"
families = ["cpu"]
[[notify.channels]]
name = "remind"
kind = "webhook"
url = "http://{http}/remind"
repeat_secs = 60
subjects = ["anomaly"]
[[notify.channels]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_tls = "none"
from = "SmartCloudOps <sco@test.local>"
to = ["ops@test.local"]
labels = {{ env = "prod" }}
subjects = ["anomaly"]
"#,
        dir = dir.display(),
        port = smtp.port(),
    );
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let operator = sb.add_user(&admin, "oncall", "operator").await;
    let viewer = sb.add_user(&admin, "watcher", "viewer").await;

    let mut web = FakeAgent::connect(&sb, "web-1", &[("env", "prod")]).await;
    let mut db1 = FakeAgent::connect(&sb, "db-1", &[("env", "staging")]).await;

    // A silence over the staging hosts, before db-1's event: made by an operator, not a viewer.
    let silence_body = json!({"labels": {"env": "staging"}, "duration_secs": 3600,
        "comment": "staging database upgrade"});
    let (status, _) = sb.post(&viewer, "/silences", &silence_body).await;
    assert_eq!(status, 403, "a viewer cannot silence");
    let (status, created) = sb.post(&operator, "/silences", &silence_body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["active"], true);
    let silence_id = created["silence"]["id"].as_str().expect("id").to_string();
    let (status, bad) = sb
        .post(
            &operator,
            "/silences",
            &json!({"labels": {}, "comment": "no end"}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    // web-1: a medium cpu event. The webhook, PagerDuty (cpu, after two 503s) and e-mail (env
    // prod) are told; Slack only from high.
    let opened_at = std::time::Instant::now();
    let event_seq = web
        .event(None, anomaly_event::Kind::Opened, "medium", "cpu")
        .await;
    let event = format!("web-1:{event_seq}");
    let opened = wait_received(
        &hooks,
        "the webhook told of the opening",
        "/hook",
        &event,
        1,
    )
    .await;
    // a receiver that hangs for its whole timeout (5 s) holds up only its own channel
    let took = opened_at.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the webhook waited {took:?} behind the stuck receiver"
    );
    let body = opened[0].json();
    assert_eq!(body["event"], "anomaly.opened");
    assert_eq!(body["anomaly"]["id"], event.as_str());
    assert_eq!(body["anomaly"]["severity"], "medium");
    assert_eq!(body["host"]["labels"]["env"], "prod");
    assert_eq!(
        body["url"],
        format!("https://sco.example.com/#/anomalies/{event}").as_str()
    );
    assert!(
        body["summary"]
            .as_str()
            .expect("summary")
            .contains("cpu.user_pct 97.0"),
        "{body}"
    );
    assert_eq!(
        opened[0].headers.get("x-sco-delivery").map(String::as_str),
        body["id"].as_str()
    );
    verify_signature("hook-secret-0123456789", &opened[0]);

    let paged = wait_received(
        &hooks,
        "PagerDuty triggered after its 503s",
        "/flaky/",
        &event,
        1,
    )
    .await;
    let page = paged[0].json();
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(page["routing_key"], "R0UTINGKEY");
    assert_eq!(page["dedup_key"], event.as_str());
    assert_eq!(page["payload"]["severity"], "warning");
    assert_eq!(page["payload"]["source"], "web-1.test");
    let (_, listed) = sb
        .get(
            &viewer,
            &format!("/notifications?subject={event}&channel=pager"),
        )
        .await;
    let pager = &listed["notifications"][0];
    assert_eq!(pager["state"], "sent", "{listed}");
    assert_eq!(pager["attempts"], 3, "two 503s, then accepted: {listed}");
    assert!(pager["last_error"].as_str().unwrap_or("").is_empty());

    let mail = wait_for("the e-mail", || async {
        mails.lock().expect("lock").first().cloned()
    })
    .await;
    assert_eq!(mail.0, vec!["<ops@test.local>".to_string()]);
    assert!(
        mail.1.contains("Subject: [SCO] [MEDIUM] cpu on web-1.test"),
        "{}",
        mail.1
    );
    assert!(
        mail.1.contains("https://sco.example.com/#/anomalies/"),
        "{}",
        mail.1
    );

    assert!(
        events(&hooks, "/slack/", &event).is_empty(),
        "Slack takes only high and above"
    );

    // Updates at the same severity tell nobody again; escalating to high tells Slack.
    web.event(
        Some(event_seq),
        anomaly_event::Kind::Updated,
        "medium",
        "cpu",
    )
    .await;
    web.event(Some(event_seq), anomaly_event::Kind::Updated, "high", "cpu")
        .await;
    let slack = wait_received(
        &hooks,
        "Slack told of the escalation",
        "/slack/",
        "web-1",
        1,
    )
    .await;
    let s = slack[0].json();
    assert!(
        s["text"]
            .as_str()
            .expect("text")
            .starts_with("[HIGH] cpu on web-1.test"),
        "{s}"
    );
    let context = s["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .find(|b| b["type"] == "context")
        .expect("a context block");
    assert!(context["elements"][0]["text"]
        .as_str()
        .expect("context")
        .contains("open in the console"));

    // Reminders: an hour is simulated by ageing what the channel was told.
    wait_received(
        &hooks,
        "the reminding channel told of the opening",
        "/remind",
        &event,
        1,
    )
    .await;
    let pool = sb.db().await;
    let age = |pool: sqlx::AnyPool, subject: String| async move {
        sqlx::query(
            "UPDATE notifications SET created_ms = created_ms - 61000 WHERE channel = 'remind' AND subject = $1",
        )
        .bind(subject)
        .execute(&pool)
        .await
        .expect("age");
    };
    age(pool.clone(), event.clone()).await;
    let reminded =
        wait_received(&hooks, "a reminder after repeat_secs", "/remind", &event, 2).await;
    assert_eq!(reminded[1].json()["event"], "anomaly.reminder.1");
    assert!(reminded[1].json()["summary"]
        .as_str()
        .expect("summary")
        .starts_with("Still open"));

    // Acknowledging: viewers may not; the first operator's ack counts; PagerDuty hears it.
    let ack_path = format!("/anomaly/{event}/ack");
    let (status, _) = sb.post(&viewer, &ack_path, &json!({"note": "mine"})).await;
    assert_eq!(status, 403);
    let (status, acked) = sb
        .post(
            &operator,
            &ack_path,
            &json!({"note": "looking at the runaway"}),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acknowledged_now"], true);
    assert_eq!(acked["ack"]["by"], "oncall");
    let (_, again) = sb.post(&admin, &ack_path, &json!({})).await;
    assert_eq!(again["acknowledged_now"], false);
    assert_eq!(
        again["ack"]["by"], "oncall",
        "the first acknowledgement stays"
    );
    let (status, _) = sb
        .post(&operator, "/anomaly/web-1:999999/ack", &json!({}))
        .await;
    assert_eq!(status, 404);
    wait_for("PagerDuty acknowledged", || async {
        events(&hooks, "/flaky/", &event)
            .iter()
            .any(|r| r.json()["event_action"] == "acknowledge")
            .then_some(())
    })
    .await;
    // no reminder once acknowledged, however long it stays open
    age(pool.clone(), event.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_ack: Vec<String> = events(&hooks, "/remind", &event)
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        after_ack,
        vec![
            "anomaly.opened",
            "anomaly.reminder.1",
            "anomaly.acknowledged"
        ]
    );
    let (_, one) = sb.get(&viewer, &format!("/anomaly/{event}")).await;
    assert_eq!(one["ack"]["note"], "looking at the runaway");
    assert!(
        one["notifications"].as_array().expect("list").len() >= 4,
        "{one}"
    );

    // Closing: told once to each channel that was told the opening.
    web.event(Some(event_seq), anomaly_event::Kind::Closed, "high", "cpu")
        .await;
    wait_for("PagerDuty resolved", || async {
        events(&hooks, "/flaky/", &event)
            .iter()
            .any(|r| r.json()["event_action"] == "resolve")
            .then_some(())
    })
    .await;
    wait_received(
        &hooks,
        "Slack told of the closing",
        "/slack/",
        "Resolved",
        1,
    )
    .await;
    wait_for("the closing e-mail", || async {
        (mails.lock().expect("lock").len() >= 2).then_some(())
    })
    .await;
    // a few more routing passes: nothing new may appear
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hook_events: Vec<String> = events(&hooks, "/hook", &event)
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        hook_events,
        vec!["anomaly.opened", "anomaly.acknowledged", "anomaly.closed"],
        "one notification per opening, acknowledgement and closing, in order"
    );
    let pd_actions: Vec<String> = events(&hooks, "/flaky/", &event)
        .iter()
        .map(|r| r.json()["event_action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(pd_actions, vec!["trigger", "acknowledge", "resolve"]);
    assert_eq!(
        events(&hooks, "/slack/", "web-1").len(),
        3,
        "opened (at high), ack, closed"
    );
    assert_eq!(
        mails.lock().expect("lock").len(),
        3,
        "opened, acknowledged, closed"
    );

    // db-1 is silenced: its event is recorded, not sent, until the silence is lifted.
    let db_seq = db1
        .event(None, anomaly_event::Kind::Opened, "high", "disk_io")
        .await;
    let db_event = format!("db-1:{db_seq}");
    let held = wait_for("db-1's opening recorded as silenced", || async {
        let (_, l) = sb
            .get(
                &viewer,
                &format!("/notifications?subject={db_event}&state=silenced"),
            )
            .await;
        (l["count"].as_u64() >= Some(2)).then_some(l)
    })
    .await;
    assert!(held["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .all(|n| n["silence_id"] == silence_id.as_str()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        events(&hooks, "/", &db_event).is_empty(),
        "nothing sent while silenced"
    );
    let (status, _) = sb
        .send(
            reqwest::Method::DELETE,
            &viewer,
            &format!("/silences/{silence_id}"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, ended) = sb
        .send(
            reqwest::Method::DELETE,
            &operator,
            &format!("/silences/{silence_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["active"], false);
    let (status, _) = sb
        .send(
            reqwest::Method::DELETE,
            &operator,
            &format!("/silences/{silence_id}"),
            None,
        )
        .await;
    assert_eq!(status, 409, "already ended");
    let released = wait_received(
        &hooks,
        "db-1's opening sent once the silence ended",
        "/hook",
        &db_event,
        1,
    )
    .await;
    assert_eq!(released[0].json()["event"], "anomaly.opened");
    assert!(
        events(&hooks, "/flaky/", &db_event).is_empty(),
        "PagerDuty takes only cpu"
    );
    let (_, active) = sb.get(&viewer, "/silences").await;
    assert_eq!(active["count"], 0);
    let (_, all) = sb.get(&viewer, "/silences?all=true").await;
    assert_eq!(all["silences"][0]["expired_by"], "oncall");

    // A remediation outcome: a manual action the agent reports as failed.
    let (status, trig) = sb
        .post(
            &operator,
            "/remediation/trigger",
            &json!({"host": "web-1", "action": {"type": "kill_process", "name": "runaway"}}),
        )
        .await;
    assert_eq!(status, 202, "{trig}");
    let command = web.command().await;
    web.send(agent_message::Body::ActionReport(ActionReport {
        command_id: command.id.clone(),
        rule: "manual".into(),
        decision: "failed".into(),
        reason: "no process matched runaway".into(),
        report_json: "{}".into(),
    }))
    .await;
    let outcome = wait_received(&hooks, "the failed action told", "/hook", &command.id, 1).await;
    let o = outcome[0].json();
    assert_eq!(o["event"], "remediation.failed", "{o}");
    assert_eq!(o["action"]["reason"], "no process matched runaway");

    // The stuck receiver's notifications were tried, timed out and wait for their retry.
    let (_, stuck_rows) = sb.get(&viewer, "/notifications?channel=stuck").await;
    let first = stuck_rows["notifications"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .expect("the stuck channel was told of the first event");
    assert!(first["attempts"].as_i64() >= Some(1), "{stuck_rows}");
    assert_ne!(first["state"], "sent", "{stuck_rows}");
    assert!(
        !first["last_error"].as_str().unwrap_or("").is_empty(),
        "{stuck_rows}"
    );

    // The audit names who acknowledged and silenced.
    let (_, audit) = sb.get(&admin, "/audit?limit=100").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["anomaly.ack", "silence.create", "silence.expire"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn people_are_told_once_per_change_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn people_are_told_once_per_change_postgres() {
    run(Db::Postgres).await;
}
