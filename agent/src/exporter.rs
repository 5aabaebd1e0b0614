//! The local health and Prometheus endpoint (`[exporter]`, off by default, loopback by
//! default): `GET /health` answers what the agent knows about itself as JSON, and
//! `GET /metrics` the same as Prometheus text plus the host metrics under node_exporter's
//! names ([`node`]).
//!
//! HTTP/1.1 through hyper's server, which the agent already links through tonic: no new
//! crate, and a real parser in front of input nobody vetted. One request per connection
//! (`Connection: close`), at most [`MAX_CONNECTIONS`] connections at once (further clients
//! wait in the kernel's backlog), headers within [`MAX_REQUEST_BYTES`] and
//! [`HEADER_TIMEOUT`], each connection within [`CONNECTION_TIMEOUT`]. Malformed requests get
//! hyper's 400 (431 for oversized headers); nothing a client sends can stop the agent.

pub mod node;
pub mod text;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, Semaphore};

use crate::collect::HostPaths;
use crate::outbox::Outbox;
use crate::status::{Activity, ActivitySnapshot, Status, ACTION_DECISIONS, RULE_DECISIONS};
use text::{Kind, Text};

/// Connections served at once; a scraper needs one.
pub const MAX_CONNECTIONS: usize = 8;
/// Request line and headers must fit (hyper's smallest read buffer).
pub const MAX_REQUEST_BYTES: usize = 8192;
const MAX_HEADERS: usize = 32;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the endpoint reads: handles on the running agent's state.
#[derive(Clone)]
pub struct Sources {
    pub connected: watch::Receiver<bool>,
    pub detector: watch::Receiver<Status>,
    pub outbox: Arc<Mutex<Outbox>>,
    pub activity: Arc<Activity>,
    /// Where host metrics are read (the collector's).
    pub host: HostPaths,
}

/// Serves until `shutdown` turns true (or its sender is gone).
pub async fn serve(listener: TcpListener, sources: Sources, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A free slot before accepting: clients beyond it wait in the backlog, costing
        // nothing here.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // out of file descriptors, say: wait instead of spinning
                    tracing::warn!(error = %e, "exporter: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                // the request itself (its body unread) stays out of the answer's future
                let (sources, method) = (sources.clone(), req.method().clone());
                let path = req.uri().path().to_string();
                async move { Ok::<_, Infallible>(handle(&sources, &method, &path).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .max_headers(MAX_HEADERS)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "exporter: connection ended"),
                Err(_) => tracing::debug!("exporter: connection timed out"),
            }
        });
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Metrics,
}

/// Why a request has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    MethodNotAllowed,
}

impl Refusal {
    pub fn response(self) -> Response<String> {
        match self {
            Refusal::NotFound => plain(
                StatusCode::NOT_FOUND,
                "not found; try /health or /metrics\n",
            ),
            Refusal::MethodNotAllowed => {
                let mut r = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed; only GET and HEAD\n",
                );
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                r
            }
        }
    }
}

/// The route of a request.
pub fn route(method: &Method, path: &str) -> Result<Route, Refusal> {
    let route = match path {
        "/health" => Route::Health,
        "/metrics" => Route::Metrics,
        _ => return Err(Refusal::NotFound),
    };
    if *method != Method::GET && *method != Method::HEAD {
        return Err(Refusal::MethodNotAllowed);
    }
    Ok(route)
}

async fn handle(sources: &Sources, method: &Method, path: &str) -> Response<String> {
    match route(method, path) {
        Err(r) => r.response(),
        Ok(Route::Health) => {
            let h = health(sources).await;
            match serde_json::to_string_pretty(&h) {
                Ok(mut body) => {
                    body.push('\n');
                    respond(StatusCode::OK, "application/json", body)
                }
                Err(e) => internal(&e),
            }
        }
        Ok(Route::Metrics) => {
            let h = health(sources).await;
            let host = sources.host.clone();
            // /proc reads and statvfs calls are blocking I/O
            let body = tokio::task::spawn_blocking(move || {
                let mut t = Text::default();
                write_self(&mut t, &h);
                node::write(&mut t, &host);
                t.finish()
            })
            .await;
            match body {
                Ok(body) => respond(StatusCode::OK, text::CONTENT_TYPE, body),
                Err(e) => internal(&e),
            }
        }
    }
}

fn internal(e: &dyn std::error::Error) -> Response<String> {
    tracing::warn!(error = %e, "exporter: cannot answer");
    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

fn plain(status: StatusCode, body: &str) -> Response<String> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /health`: what the agent knows about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub version: &'static str,
    pub pid: u32,
    pub started_ms: i64,
    pub uptime_secs: f64,
    /// The stream to the control plane is up.
    pub connected: bool,
    /// When the control plane last acknowledged messages; absent before the first time.
    pub last_ack_ms: Option<i64>,
    pub last_ack_age_secs: Option<f64>,
    /// When the newest sample was taken; absent before the first one.
    pub last_sample_ms: Option<i64>,
    pub last_sample_age_secs: Option<f64>,
    pub outbox: OutboxHealth,
    pub uplink: UplinkHealth,
    pub detector: DetectorHealth,
    pub remediation: RemediationHealth,
}

/// What the stream has on the wire ([`crate::flight`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UplinkHealth {
    /// Bytes sent and not yet acknowledged.
    pub in_flight_bytes: u64,
    /// How many the link's measured delivery rate allows in flight.
    pub window_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxHealth {
    /// Messages not yet acknowledged.
    pub messages: u64,
    /// Dropped from a full outbox (oldest first), over the outbox's life.
    pub dropped_total: u64,
    /// Highest sequence number assigned.
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectorHealth {
    /// `warming_up`, `calibrated`, or `off` (`[detect] enabled = false`).
    pub state: String,
    /// While warming up: no alarms before this.
    pub warm_until_ms: i64,
    pub calibrated_at_ms: i64,
    /// The learnt state was restored at start.
    pub restored: bool,
    /// Model name and version.
    pub model: String,
}

/// Counts since the agent started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemediationHealth {
    /// Requests of the control plane handled, by decision.
    pub actions: BTreeMap<&'static str, u64>,
    /// Policy rules that fired, by what became of them.
    pub rules_fired: BTreeMap<&'static str, u64>,
}

async fn health(sources: &Sources) -> Health {
    let (messages, dropped_total, last_seq) = {
        let o = sources.outbox.lock().await;
        (o.pending(), o.dropped_total(), o.last_seq())
    };
    let parts = Parts {
        connected: *sources.connected.borrow(),
        detector: sources.detector.borrow().clone(),
        outbox: OutboxHealth {
            messages,
            dropped_total,
            last_seq,
        },
        activity: sources.activity.snapshot(),
    };
    parts.health(crate::clock::now_ms())
}

/// The inputs of [`Health`], gathered.
struct Parts {
    connected: bool,
    detector: Status,
    outbox: OutboxHealth,
    activity: ActivitySnapshot,
}

impl Parts {
    fn health(self, now_ms: i64) -> Health {
        let a = &self.activity;
        let age = |ms: i64| now_ms.saturating_sub(ms).max(0) as f64 / 1000.0;
        let seen = |ms: i64| (ms > 0).then_some(ms);
        let d = self.detector;
        Health {
            version: crate::VERSION,
            pid: std::process::id(),
            started_ms: a.started_ms,
            uptime_secs: age(a.started_ms),
            connected: self.connected,
            last_ack_ms: seen(a.last_ack_ms),
            last_ack_age_secs: seen(a.last_ack_ms).map(age),
            last_sample_ms: seen(a.last_sample_ms),
            last_sample_age_secs: seen(a.last_sample_ms).map(age),
            outbox: self.outbox,
            uplink: UplinkHealth {
                in_flight_bytes: a.in_flight_bytes,
                window_bytes: a.send_window_bytes,
            },
            detector: DetectorHealth {
                state: if d.detector.is_empty() {
                    "off".into()
                } else {
                    d.detector
                },
                warm_until_ms: d.warm_until_ms,
                calibrated_at_ms: d.calibrated_at_ms,
                restored: d.restored,
                model: d.model,
            },
            remediation: RemediationHealth {
                actions: ACTION_DECISIONS.into_iter().zip(a.actions).collect(),
                rules_fired: RULE_DECISIONS.into_iter().zip(a.rules_fired).collect(),
            },
        }
    }
}

/// The agent's own metrics, from the same values as `/health`.
pub fn write_self(t: &mut Text, h: &Health) {
    t.family(
        "sco_agent_build_info",
        Kind::Gauge,
        "The agent's version, as a label; always 1.",
    )
    .int(&[("version", h.version)], 1);
    t.family(
        "sco_agent_start_time_seconds",
        Kind::Gauge,
        "When the agent started, in seconds since the Unix epoch.",
    )
    .float(&[], h.started_ms as f64 / 1000.0);
    t.family(
        "sco_agent_connected",
        Kind::Gauge,
        "1 while the stream to the control plane is up.",
    )
    .int(&[], u64::from(h.connected));
    t.family(
        "sco_agent_outbox_messages",
        Kind::Gauge,
        "Messages in the outbox not yet acknowledged by the control plane.",
    )
    .int(&[], h.outbox.messages);
    t.family(
        "sco_agent_outbox_dropped_total",
        Kind::Counter,
        "Messages dropped from the full outbox, oldest first, over the outbox's life.",
    )
    .int(&[], h.outbox.dropped_total);
    t.family(
        "sco_agent_uplink_in_flight_bytes",
        Kind::Gauge,
        "Bytes sent to the control plane and not yet acknowledged.",
    )
    .int(&[], h.uplink.in_flight_bytes);
    t.family(
        "sco_agent_uplink_window_bytes",
        Kind::Gauge,
        "Unacknowledged bytes the uplink allows, from the link's measured delivery rate.",
    )
    .int(&[], h.uplink.window_bytes);
    if let Some(age) = h.last_ack_age_secs {
        t.family(
            "sco_agent_last_ack_age_seconds",
            Kind::Gauge,
            "Seconds since the control plane last acknowledged messages (absent before the first).",
        )
        .float(&[], age);
    }
    if let Some(age) = h.last_sample_age_secs {
        t.family(
            "sco_agent_last_sample_age_seconds",
            Kind::Gauge,
            "Seconds since the newest host sample was taken.",
        )
        .float(&[], age);
    }
    t.family(
        "sco_agent_detector_calibrated",
        Kind::Gauge,
        "1 once the anomaly detector has calibrated (it raises no alarm before).",
    )
    .int(&[], u64::from(h.detector.state == "calibrated"));
    t.family(
        "sco_agent_detector_info",
        Kind::Gauge,
        "The anomaly detector's state and model, as labels; always 1.",
    )
    .int(
        &[
            ("state", h.detector.state.as_str()),
            ("model", h.detector.model.as_str()),
        ],
        1,
    );
    let mut f = t.family(
        "sco_agent_remediation_actions_total",
        Kind::Counter,
        "Remediation requests of the control plane handled since start, by decision.",
    );
    for (decision, n) in &h.remediation.actions {
        f.int(&[("decision", *decision)], *n);
    }
    let mut f = t.family(
        "sco_agent_remediation_rules_fired_total",
        Kind::Counter,
        "Policy rules that fired since start, by what became of them.",
    );
    for (decision, n) in &h.remediation.rules_fired {
        f.int(&[("decision", *decision)], *n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        let activity = Activity::new(1_000);
        activity.acked(9_000);
        activity.sampled(9_500);
        activity.action("executed");
        activity.rule_fired("dry_run");
        Parts {
            connected: true,
            detector: Status {
                detector: "warming_up".into(),
                warm_until_ms: 20_000,
                calibrated_at_ms: 0,
                restored: false,
                model: "m@1".into(),
            },
            outbox: OutboxHealth {
                messages: 3,
                dropped_total: 1,
                last_seq: 40,
            },
            activity: activity.snapshot(),
        }
    }

    #[test]
    fn health_json_names_every_field() {
        let h = parts().health(10_000);
        let v = serde_json::to_value(&h).expect("json");
        assert_eq!(v["connected"], true);
        assert_eq!(v["uptime_secs"], 9.0);
        assert_eq!(v["last_ack_age_secs"], 1.0);
        assert_eq!(v["last_sample_age_secs"], 0.5);
        assert_eq!(
            v["outbox"],
            serde_json::json!({"messages": 3, "dropped_total": 1, "last_seq": 40})
        );
        assert_eq!(v["detector"]["state"], "warming_up");
        assert_eq!(v["detector"]["warm_until_ms"], 20_000);
        assert_eq!(
            v["remediation"],
            serde_json::json!({
                "actions": {"executed": 1, "dry_run": 0, "refused": 0, "failed": 0},
                "rules_fired": {"proposed": 0, "dry_run": 1, "refused": 0},
            })
        );
        let fresh = Parts {
            detector: Status::default(),
            activity: Activity::new(1_000).snapshot(),
            ..parts()
        }
        .health(10_000);
        let v = serde_json::to_value(&fresh).expect("json");
        assert_eq!(v["detector"]["state"], "off");
        assert!(v["last_ack_ms"].is_null() && v["last_ack_age_secs"].is_null());
    }

    #[test]
    fn self_metrics() {
        let mut t = Text::default();
        write_self(&mut t, &parts().health(10_000));
        let out = t.finish();
        for line in [
            "# TYPE sco_agent_connected gauge",
            "sco_agent_connected 1",
            "sco_agent_outbox_messages 3",
            "# TYPE sco_agent_outbox_dropped_total counter",
            "sco_agent_outbox_dropped_total 1",
            "sco_agent_last_ack_age_seconds 1",
            "sco_agent_detector_calibrated 0",
            "sco_agent_detector_info{state=\"warming_up\",model=\"m@1\"} 1",
            "# TYPE sco_agent_remediation_actions_total counter",
            "sco_agent_remediation_actions_total{decision=\"executed\"} 1",
            "sco_agent_remediation_actions_total{decision=\"failed\"} 0",
            "sco_agent_remediation_rules_fired_total{decision=\"dry_run\"} 1",
            "sco_agent_start_time_seconds 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn routes() {
        let cases = [
            (Method::GET, "/health", Ok(Route::Health)),
            (Method::HEAD, "/metrics", Ok(Route::Metrics)),
            (Method::GET, "/metrics", Ok(Route::Metrics)),
            (Method::GET, "/", Err(404)),
            (Method::GET, "/health/x", Err(404)),
            (Method::POST, "/metrics", Err(405)),
            (Method::DELETE, "/health", Err(405)),
            (Method::POST, "/nothing", Err(404)),
        ];
        for (method, path, want) in cases {
            let got = route(&method, path).map_err(|r| r.response().status().as_u16());
            assert_eq!(got, want, "{method} {path}");
        }
        let r = route(&Method::PUT, "/health").expect_err("405").response();
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }

    /// Over a real socket: answers, refusals and malformed input, and the server keeps
    /// serving after each.
    #[tokio::test]
    async fn serves_and_survives_bad_requests() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&dir.path().join("outbox"), 1 << 20, 1 << 20).expect("outbox");
        let sources = Sources {
            connected: watch::channel(false).1,
            detector: watch::channel(Status::default()).1,
            outbox: Arc::new(Mutex::new(outbox)),
            activity: Arc::new(Activity::new(crate::clock::now_ms())),
            host: HostPaths::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, sources, stop_rx));

        async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            // a peer that hangs up early is fine: the answer (if any) is what counts
            let _ = s.write_all(request).await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\r\n\r\n# HELP sco_agent_build_info"), "{ok}");
        assert!(ok.contains("sco_agent_connected 0"), "{ok}");
        assert!(
            ok.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}"),
            "{ok}"
        );

        let health = exchange(addr, b"GET /health HTTP/1.0\r\n\r\n").await;
        let (head, body) = health.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(v["detector"]["state"], "off");
        assert_eq!(v["outbox"]["messages"], 0);

        let head = exchange(addr, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );

        let refused: [(&[u8], &str); 5] = [
            (
                b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
                "405",
            ),
            (b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
            (b"\x00\x01garbage\r\n\r\n", "400"),
            (b"GET /metrics HTTP/9.9\r\n\r\n", "400"),
            (b"GET /metrics\r\nHost: x\r\n\r\n", "400"),
        ];
        for (request, status) in refused {
            let answer = exchange(addr, request).await;
            let first = answer.lines().next().unwrap_or("");
            assert!(
                first.starts_with("HTTP/1.1 ") && first.contains(status),
                "{:?} -> {answer}",
                String::from_utf8_lossy(request)
            );
        }
        // headers beyond the limit: refused, never buffered without end
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..2000 {
            huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(20)).as_bytes());
        }
        huge.extend_from_slice(b"\r\n");
        let answer = exchange(addr, &huge).await;
        assert!(!answer.contains("200 OK"), "{answer}");

        // more idle connections than slots: the server still answers once they go
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS + 2 {
            idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        drop(idle);
        let ok = exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

        stop_tx.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops")
            .expect("server task");
    }
}
