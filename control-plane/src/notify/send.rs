//! Delivery: each channel kind renders the notification's JSON body its own way and sends it.
//!
//! - `webhook`: the body as is (the format is documented in docs/API.md), with
//!   `X-SCO-Delivery` (the notification id: receivers deduplicate retries by it) and, with a
//!   secret, `X-SCO-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
//! - `slack`: an incoming-webhook message in Block Kit, as chat answers are (approve and reject
//!   buttons on a proposal waiting for approval).
//! - `pagerduty`: Events API v2; the anomaly or action id is the dedup key, so opening,
//!   acknowledgement and closing are one incident (trigger, acknowledge, resolve).
//! - `email`: a plain-text message over SMTP (lettre, rustls).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};

use super::Notification;
use crate::config::{ChannelConfig, ChannelKind, SmtpTls};

/// Why an attempt failed, and whether trying again can help.
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    /// The receiver refused it for good (a 4xx, a 5xx SMTP reply): no retry.
    pub permanent: bool,
    /// The receiver asked to wait this long (HTTP 429 `Retry-After`).
    pub retry_after_ms: Option<i64>,
}

impl SendError {
    fn transient(message: String) -> Self {
        Self {
            message,
            permanent: false,
            retry_after_ms: None,
        }
    }
}

enum Transport {
    Http {
        client: reqwest::Client,
        url: String,
        secret: Option<String>,
    },
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
        to: Vec<Mailbox>,
    },
}

/// A configured channel, ready to send.
pub struct Channel {
    pub config: ChannelConfig,
    pub timeout: Duration,
    transport: Transport,
}

fn http_client(ca: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tls_built_in_root_certs(false)
        // a hook URL is a credential: it is never followed elsewhere
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("SmartCloudOps/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca {
        for c in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA bundle: {e}"))?
        {
            http = http.add_root_certificate(c);
        }
    }
    http.build().map_err(|e| e.to_string())
}

impl Channel {
    pub fn new(
        config: &ChannelConfig,
        ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let name = &config.name;
        let transport = match config.kind {
            ChannelKind::Slack | ChannelKind::Webhook | ChannelKind::Pagerduty => {
                let url = config
                    .resolved_url()
                    .map_err(|e| format!("channel {name}: {e}"))?
                    .ok_or_else(|| format!("channel {name}: no url"))?;
                let secret = config
                    .secret()
                    .map_err(|e| format!("channel {name}: {e}"))?;
                if config.kind == ChannelKind::Pagerduty
                    && secret.as_deref().is_none_or(str::is_empty)
                {
                    return Err(format!("channel {name}: the routing key file is empty"));
                }
                Transport::Http {
                    client: http_client(ca, timeout)?,
                    url,
                    secret,
                }
            }
            ChannelKind::Email => {
                let host = config.smtp_host.clone().unwrap_or_default();
                let tls_params = || -> Result<TlsParameters, String> {
                    let mut b = TlsParameters::builder(host.clone())
                        .certificate_store(CertificateStore::None);
                    if let Some(pem) = ca {
                        b = b.add_root_certificate(
                            Certificate::from_pem(pem).map_err(|e| format!("CA bundle: {e}"))?,
                        );
                    }
                    b.build_rustls().map_err(|e| e.to_string())
                };
                let (tls, port) = match config.smtp_tls {
                    SmtpTls::Starttls => (Tls::Required(tls_params()?), 587),
                    SmtpTls::Tls => (Tls::Wrapper(tls_params()?), 465),
                    SmtpTls::None => (Tls::None, 25),
                };
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
                    .port(config.smtp_port.unwrap_or(port))
                    .tls(tls)
                    .timeout(Some(timeout));
                if let Some(user) = &config.smtp_username {
                    let password = config
                        .smtp_password()
                        .map_err(|e| format!("channel {name}: {e}"))?
                        .unwrap_or_default();
                    b = b.credentials(Credentials::new(user.clone(), password));
                }
                let mailbox = |s: &str| {
                    s.parse::<Mailbox>()
                        .map_err(|e| format!("channel {name}: {s:?}: {e}"))
                };
                Transport::Smtp {
                    transport: Box::new(b.build()),
                    from: mailbox(config.from.as_deref().unwrap_or_default())?,
                    to: config
                        .to
                        .iter()
                        .map(|t| mailbox(t))
                        .collect::<Result<_, _>>()?,
                }
            }
        };
        Ok(Self {
            config: config.clone(),
            timeout,
            transport,
        })
    }

    /// One delivery attempt.
    pub async fn send(&self, n: &Notification, body: &Value) -> Result<(), SendError> {
        match &self.transport {
            Transport::Http {
                client,
                url,
                secret,
            } => {
                let payload = match self.config.kind {
                    ChannelKind::Slack => slack_message(n, body),
                    ChannelKind::Pagerduty => {
                        pagerduty_event(n, body, secret.as_deref().unwrap_or_default())
                    }
                    _ => body.clone(),
                };
                let text = payload.to_string();
                let mut req = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-SCO-Delivery", &n.id)
                    .header("X-SCO-Event", &n.event);
                if self.config.kind == ChannelKind::Webhook {
                    if let Some(secret) = secret {
                        let t = crate::domain::now_ms() / 1000;
                        req = req.header("X-SCO-Signature", signature(secret, t, &text));
                    }
                }
                let response = req
                    .body(text)
                    .send()
                    .await
                    .map_err(|e| SendError::transient(format!("{}: {e}", redact(url))))?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let retry_after_ms = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .map(|s| s.clamp(1, 3600) * 1000);
                let detail: String = response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                let code = status.as_u16();
                Err(SendError {
                    message: format!("{} answered {status}: {detail}", redact(url)),
                    permanent: status.is_client_error() && code != 408 && code != 429,
                    retry_after_ms,
                })
            }
            Transport::Smtp {
                transport,
                from,
                to,
            } => {
                let mut m = Message::builder()
                    .from(from.clone())
                    .subject(format!("[SCO] {}", n.summary))
                    .header(ContentType::TEXT_PLAIN);
                for t in to {
                    m = m.to(t.clone());
                }
                let message = m.body(email_text(n, body)).map_err(|e| SendError {
                    message: format!("cannot build the message: {e}"),
                    permanent: true,
                    retry_after_ms: None,
                })?;
                match transport.send(message).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(SendError {
                        permanent: e.is_permanent(),
                        message: format!(
                            "smtp {}: {e}",
                            self.config.smtp_host.as_deref().unwrap_or("")
                        ),
                        retry_after_ms: None,
                    }),
                }
            }
        }
    }
}

/// A URL without its path and query, which may hold a token (Slack hook URLs do).
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
        None => "receiver".into(),
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256 over "<t>.<body>">`; receivers recompute it with the shared
/// secret and refuse old `t` (replays).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

fn details(body: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let a = &body["anomaly"];
    if a.is_object() {
        if let Some(cs) = a["contributors"].as_array() {
            for c in cs.iter().take(3) {
                lines.push(format!(
                    "{} = {} (expected {} to {})",
                    c["metric"].as_str().unwrap_or(""),
                    c["value"],
                    c["expected_low"],
                    c["expected_high"]
                ));
            }
        }
        if let Some(by) = a["acked_by"].as_str().filter(|b| !b.is_empty()) {
            let note = a["ack_note"].as_str().unwrap_or("");
            lines.push(
                format!("acknowledged by {by} {note}")
                    .trim_end()
                    .to_string(),
            );
        }
    }
    let x = &body["action"];
    if x.is_object() {
        lines.push(format!("action: {}", x["action"]));
        if let Some(r) = x["reason"].as_str().filter(|r| !r.is_empty()) {
            lines.push(format!("reason: {r}"));
        }
    }
    lines
}

/// A Slack message in the same Block Kit form as chat answers; a proposal waiting for
/// approval carries the approve and reject buttons the interactivity endpoint handles.
fn slack_message(n: &Notification, body: &Value) -> Value {
    let mut reply = sco_chat::slack::Reply::new(&n.summary).in_channel();
    for l in details(body) {
        reply = reply.field(n.event.as_str(), l);
    }
    if n.event == "remediation.proposed" {
        if let Some(id) = body["action"]["id"].as_str() {
            reply = reply.proposal(id, &n.summary);
        }
    }
    let mut context = format!("host {} · {}", n.host_id, n.subject);
    if let Some(url) = body["url"].as_str() {
        context.push_str(&format!(" · open in the console: {url}"));
    }
    let mut m = reply.context(context).to_json();
    if let Some(o) = m.as_object_mut() {
        // an incoming webhook posts to its channel; the slash-command field means nothing there
        o.remove("response_type");
    }
    m
}

fn pagerduty_event(n: &Notification, body: &Value, routing_key: &str) -> Value {
    let action = match n.event.as_str() {
        "anomaly.closed" => "resolve",
        "anomaly.acknowledged" => "acknowledge",
        _ => "trigger",
    };
    let severity = match n.severity.as_str() {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    };
    let timestamp = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(body["at_ms"].as_i64().unwrap_or(0)) * 1_000_000,
    )
    .ok()
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    let source = body["host"]["hostname"]
        .as_str()
        .filter(|h| !h.is_empty())
        .unwrap_or(&n.host_id);
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.subject,
        "client": "SmartCloudOps",
    });
    if action == "trigger" {
        let summary: String = n.summary.chars().take(1024).collect();
        event["payload"] = json!({
            "summary": summary,
            "source": source,
            "severity": severity,
            "timestamp": timestamp,
            "component": n.family,
            "class": body["anomaly"]["top_metric"].as_str().unwrap_or(n.event.as_str()),
            "custom_details": if body["anomaly"].is_object() { &body["anomaly"] } else { &body["action"] },
        });
    }
    if let Some(url) = body["url"].as_str() {
        event["client_url"] = json!(url);
        event["links"] = json!([{"href": url, "text": "Open in SmartCloudOps"}]);
    }
    event
}

fn email_text(n: &Notification, body: &Value) -> String {
    let mut text = format!("{}\n\n", n.summary);
    for l in details(body) {
        text.push_str(&format!("  {l}\n"));
    }
    text.push_str(&format!(
        "\nhost: {}\n{}: {}\n",
        n.host_id, n.event, n.subject
    ));
    if let Some(url) = body["url"].as_str() {
        text.push_str(&format!("\n{url}\n"));
    }
    text.push_str(
        "\n-- \nSmartCloudOps: acknowledge with POST /anomaly/{id}/ack to stop reminders.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(event: &str, severity: &str) -> Notification {
        Notification {
            id: "ntf-1".into(),
            channel: "pd".into(),
            kind: "pagerduty".into(),
            subject: "web-1:7".into(),
            event: event.into(),
            host_id: "web-1".into(),
            severity: severity.into(),
            family: "cpu".into(),
            summary: "[HIGH] cpu on web-1: cpu.user_pct 97.0 (expected 2.0–30.0)".into(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_ms: 0,
            last_error: String::new(),
            silence_id: String::new(),
            created_ms: 0,
            sent_ms: None,
        }
    }

    #[test]
    fn pagerduty_events_share_the_dedup_key_and_map_severity() {
        let body = json!({"at_ms": 1_764_000_000_000_i64, "url": "https://sco/#/anomalies/web-1:7",
            "host": {"id": "web-1", "hostname": "web-1.example"},
            "anomaly": {"top_metric": "cpu.user_pct"}});
        let open = pagerduty_event(&notification("anomaly.opened", "high"), &body, "KEY");
        assert_eq!(open["event_action"], "trigger");
        assert_eq!(open["dedup_key"], "web-1:7");
        assert_eq!(open["routing_key"], "KEY");
        assert_eq!(open["payload"]["severity"], "error");
        assert_eq!(open["payload"]["source"], "web-1.example");
        assert_eq!(open["payload"]["class"], "cpu.user_pct");
        assert_eq!(open["payload"]["timestamp"], "2025-11-24T16:00:00Z");
        let ack = pagerduty_event(&notification("anomaly.acknowledged", "high"), &body, "KEY");
        assert_eq!(ack["event_action"], "acknowledge");
        assert!(ack.get("payload").is_none());
        let closed = pagerduty_event(&notification("anomaly.closed", "high"), &body, "KEY");
        assert_eq!(closed["event_action"], "resolve");
        assert_eq!(closed["dedup_key"], open["dedup_key"]);
    }

    #[test]
    fn signatures_are_hmac_sha256_over_time_and_body() {
        // the receiver's check, written from the documented format
        let s = signature("s3cret", 1700000000, "{\"a\":1}");
        let (t, v1) = s.split_once(",v1=").expect("format");
        assert_eq!(t, "t=1700000000");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        let tag = hex::decode(v1).expect("hex");
        ring::hmac::verify(&key, b"1700000000.{\"a\":1}", &tag).expect("verifies");
        assert!(ring::hmac::verify(&key, b"1700000001.{\"a\":1}", &tag).is_err());
    }

    #[test]
    fn slack_messages_escape_text_carry_buttons_for_proposals_and_errors_hide_urls() {
        let mut n = notification("anomaly.opened", "high");
        n.summary = "<!channel> & friends".into();
        let m = slack_message(&n, &json!({}));
        assert_eq!(m["text"], "<!channel> & friends");
        let text = m["blocks"][0]["text"]["text"].as_str().expect("text");
        assert!(text.contains("&lt;!channel&gt; &amp; friends"), "{text}");
        assert!(m.get("response_type").is_none());
        let mut p = notification("remediation.proposed", "low");
        p.subject = "act-1".into();
        let m = slack_message(
            &p,
            &json!({"action": {"id": "act-1", "action": {"type": "restart_service"}}}),
        );
        let buttons = m["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .find(|b| b["type"] == "actions")
            .expect("buttons");
        assert_eq!(
            buttons["elements"][0]["action_id"],
            sco_chat::slack::APPROVE_ACTION_ID
        );
        assert_eq!(buttons["elements"][0]["value"], "act-1");
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com"
        );
    }
}
