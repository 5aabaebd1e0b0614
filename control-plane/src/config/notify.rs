//! `[notify]`: where people are told about anomaly events and remediation outcomes.
//!
//! ```toml
//! [notify]
//! console_url = "https://sco.example.com"   # links in messages (optional)
//!
//! [[notify.channels]]
//! name = "oncall"
//! kind = "pagerduty"                     # slack | webhook | pagerduty | email
//! secret_file = "/etc/sco/pagerduty.key" # the integration's routing key
//! min_severity = "high"
//! labels = { env = "prod" }
//!
//! [[notify.channels]]
//! name = "ops-mail"
//! kind = "email"
//! smtp_host = "mail.example.com"
//! smtp_username = "sco"
//! smtp_password_file = "/etc/sco/smtp.password"
//! from = "SmartCloudOps <sco@example.com>"
//! to = ["ops@example.com"]
//! families = ["disk_space", "memory"]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use sco_policy::{Family, Severity};

use super::ConfigError;

/// PagerDuty's Events API v2 endpoint, the `url` of a `pagerduty` channel by default.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySection {
    pub channels: Vec<ChannelConfig>,
    /// The console's address; messages link to the event there (`{console_url}/#/anomaly/{id}`).
    pub console_url: Option<String>,
    /// Delivery attempts before a notification is given up as `failed` (retried with
    /// exponential backoff from 2 s, at most 5 min apart).
    pub max_attempts: u32,
    /// Per delivery attempt.
    pub timeout_ms: u64,
    /// The certificates https receivers (webhooks, Slack, PagerDuty, SMTP over TLS) are
    /// verified against.
    pub ca_file: PathBuf,
}

impl Default for NotifySection {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            console_url: None,
            max_attempts: 8,
            timeout_ms: 10_000,
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack incoming webhook (`url` or `url_file`: the hook URL is a secret).
    Slack,
    /// An http(s) POST of the documented JSON body, signed with HMAC-SHA256 when
    /// `secret_file` is set.
    Webhook,
    /// PagerDuty Events API v2: trigger, acknowledge and resolve with the event id as the
    /// dedup key; `secret_file` holds the routing key.
    Pagerduty,
    /// E-mail over SMTP (STARTTLS by default).
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Pagerduty => "pagerduty",
            ChannelKind::Email => "email",
        }
    }
}

/// What a channel is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// Anomaly events: opened, acknowledged, reminders, closed.
    Anomaly,
    /// Remediation: a proposal waiting for approval, an action that succeeded or failed, a
    /// proposal that expired.
    Remediation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required: a server without it is an error).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or in tests.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// `^[a-z0-9][a-z0-9._-]{0,63}$`, unique; notifications name it.
    pub name: String,
    pub kind: ChannelKind,
    /// Receiver URL (slack, webhook; pagerduty defaults to PagerDuty's).
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the URL instead (a Slack hook URL is a credential).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// webhook: the HMAC-SHA256 signing secret; pagerduty: the routing key.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Only events of at least this severity (remediation outcomes are not filtered by it).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Only events of these families (empty: all).
    #[serde(default)]
    pub families: Vec<Family>,
    /// Only hosts carrying every one of these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the channel is told about (default: both).
    #[serde(default = "default_subjects")]
    pub subjects: Vec<Subject>,
    /// While an event stays open and unacknowledged, say so again this often (0: never).
    /// Not for pagerduty, which escalates by itself.
    #[serde(default)]
    pub repeat_secs: u64,
    // e-mail
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_tls: SmtpTls,
    #[serde(default)]
    pub smtp_username: Option<String>,
    #[serde(default)]
    pub smtp_password_file: Option<PathBuf>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
}

fn default_min_severity() -> Severity {
    Severity::Low
}

fn default_subjects() -> Vec<Subject> {
    vec![Subject::Anomaly, Subject::Remediation]
}

fn read_secret(path: &PathBuf) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(text.trim().to_string())
}

impl ChannelConfig {
    /// The receiver URL, from `url`, `url_file` or (pagerduty) PagerDuty's.
    pub fn resolved_url(&self) -> Result<Option<String>, ConfigError> {
        if let Some(u) = &self.url {
            return Ok(Some(u.clone()));
        }
        if let Some(path) = &self.url_file {
            return Ok(Some(read_secret(path)?));
        }
        Ok((self.kind == ChannelKind::Pagerduty).then(|| PAGERDUTY_EVENTS_URL.to_string()))
    }

    /// The webhook signing secret or the PagerDuty routing key.
    pub fn secret(&self) -> Result<Option<String>, ConfigError> {
        self.secret_file.as_ref().map(read_secret).transpose()
    }

    pub fn smtp_password(&self) -> Result<Option<String>, ConfigError> {
        self.smtp_password_file
            .as_ref()
            .map(read_secret)
            .transpose()
    }

    pub fn wants(&self, subject: Subject) -> bool {
        self.subjects.contains(&subject)
    }
}

fn http_url_ok(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(char::is_whitespace)
        && url.split("://").nth(1).is_some_and(|rest| {
            let host = rest.split('/').next().unwrap_or("");
            !host.is_empty() && !host.contains('@')
        })
}

fn mailbox_ok(s: &str) -> bool {
    s.len() <= 320
        && !s.chars().any(char::is_control)
        && s.parse::<lettre::message::Mailbox>().is_ok()
}

impl NotifySection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        if let Some(url) = &self.console_url {
            if !http_url_ok(url) {
                return invalid(
                    "notify.console_url",
                    format!("{url:?} is not an http(s) URL"),
                );
            }
        }
        if !(1..=50).contains(&self.max_attempts) {
            return invalid(
                "notify.max_attempts",
                format!("{} is outside 1..=50", self.max_attempts),
            );
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return invalid(
                "notify.timeout_ms",
                format!("{} is outside 100..=120000", self.timeout_ms),
            );
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.channels {
            let name_ok = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name.bytes().enumerate().all(|(i, b)| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
                });
            if !name_ok {
                return invalid(
                    "notify.channels.name",
                    format!("{:?} is not a name like oncall-slack", c.name),
                );
            }
            if !names.insert(c.name.as_str()) {
                return invalid(
                    "notify.channels.name",
                    format!("{:?} is used twice", c.name),
                );
            }
            let at = |what: &str| format!("channel {}: {what}", c.name);
            if c.url.is_some() && c.url_file.is_some() {
                return invalid("notify.channels.url", at("set url or url_file, not both"));
            }
            if let Some(url) = &c.url {
                if !http_url_ok(url) {
                    return invalid(
                        "notify.channels.url",
                        at(&format!("{url:?} is not an http(s) URL")),
                    );
                }
            }
            if c.subjects.is_empty() {
                return invalid(
                    "notify.channels.subjects",
                    at("name anomaly, remediation or both"),
                );
            }
            if c.repeat_secs != 0 && !(60..=7 * 86_400).contains(&c.repeat_secs) {
                return invalid(
                    "notify.channels.repeat_secs",
                    at(&format!(
                        "{} is neither 0 nor in 60..=604800",
                        c.repeat_secs
                    )),
                );
            }
            for (k, v) in &c.labels {
                if k.is_empty() || k.len() > 63 || v.len() > 255 {
                    return invalid("notify.channels.labels", at(&format!("{k:?}={v:?}")));
                }
            }
            let email_keys = c.smtp_host.is_some()
                || c.smtp_port.is_some()
                || c.smtp_username.is_some()
                || c.smtp_password_file.is_some()
                || c.from.is_some()
                || !c.to.is_empty();
            match c.kind {
                ChannelKind::Email => {
                    let host_ok = c.smtp_host.as_deref().is_some_and(|h| {
                        !h.is_empty()
                            && h.len() <= 253
                            && h.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
                    });
                    if !host_ok {
                        return invalid("notify.channels.smtp_host", at("a host name is required"));
                    }
                    if !c.from.as_deref().is_some_and(mailbox_ok) {
                        return invalid(
                            "notify.channels.from",
                            at("a sender like \"SCO <sco@example.com>\" is required"),
                        );
                    }
                    if c.to.is_empty() || c.to.len() > 50 {
                        return invalid("notify.channels.to", at("1 to 50 recipients"));
                    }
                    if let Some(bad) = c.to.iter().find(|t| !mailbox_ok(t)) {
                        return invalid(
                            "notify.channels.to",
                            at(&format!("{bad:?} is not an e-mail address")),
                        );
                    }
                    if c.smtp_username.is_some() != c.smtp_password_file.is_some() {
                        return invalid(
                            "notify.channels.smtp_username",
                            at("set smtp_username and smtp_password_file together"),
                        );
                    }
                    if c.smtp_username.is_some() && c.smtp_tls == SmtpTls::None {
                        return invalid(
                            "notify.channels.smtp_tls",
                            at("a password is never sent unencrypted: use starttls or tls"),
                        );
                    }
                    if c.url.is_some() || c.url_file.is_some() || c.secret_file.is_some() {
                        return invalid(
                            "notify.channels.url",
                            at("an email channel has no url or secret_file"),
                        );
                    }
                }
                ChannelKind::Slack | ChannelKind::Webhook | ChannelKind::Pagerduty => {
                    if email_keys {
                        return invalid(
                            "notify.channels.smtp_host",
                            at("smtp_*, from and to are for email channels"),
                        );
                    }
                    if c.kind != ChannelKind::Pagerduty && c.url.is_none() && c.url_file.is_none() {
                        return invalid("notify.channels.url", at("url or url_file is required"));
                    }
                    if c.kind == ChannelKind::Pagerduty && c.secret_file.is_none() {
                        return invalid(
                            "notify.channels.secret_file",
                            at("the file holding the routing key is required"),
                        );
                    }
                    if c.kind == ChannelKind::Slack && c.secret_file.is_some() {
                        return invalid(
                            "notify.channels.secret_file",
                            at("a slack channel has no secret_file (its URL is the secret)"),
                        );
                    }
                    if c.kind == ChannelKind::Pagerduty && c.repeat_secs != 0 {
                        return invalid(
                            "notify.channels.repeat_secs",
                            at("PagerDuty repeats by its own escalation policy"),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NotifySection {
        toml::from_str(text).expect("parse")
    }

    #[test]
    fn a_complete_section_parses_and_validates() {
        let n = parse(
            r#"
            console_url = "https://sco.example.com"
            [[channels]]
            name = "oncall"
            kind = "pagerduty"
            secret_file = "/etc/sco/pd.key"
            min_severity = "high"
            labels = { env = "prod" }
            [[channels]]
            name = "ops-mail"
            kind = "email"
            smtp_host = "mail.example.com"
            smtp_username = "sco"
            smtp_password_file = "/etc/sco/smtp.password"
            from = "SmartCloudOps <sco@example.com>"
            to = ["ops@example.com"]
            families = ["disk_space", "memory"]
            subjects = ["anomaly"]
            repeat_secs = 3600
            "#,
        );
        n.validate().expect("valid");
        assert_eq!(n.channels[0].min_severity, Severity::High);
        assert_eq!(
            n.channels[0].resolved_url().expect("url").as_deref(),
            Some(PAGERDUTY_EVENTS_URL)
        );
        assert_eq!(
            n.channels[1].families,
            vec![Family::DiskSpace, Family::Memory]
        );
        assert_eq!(n.channels[1].smtp_tls, SmtpTls::Starttls);
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (
                r#"[[channels]]
                name = "x"
                kind = "webhook""#,
                "notify.channels.url",
            ),
            (
                r#"[[channels]]
                name = "Bad Name"
                kind = "webhook"
                url = "http://h/x""#,
                "notify.channels.name",
            ),
            (
                r#"[[channels]]
                name = "m"
                kind = "email"
                smtp_host = "mail"
                from = "not an address"
                to = ["a@b.c"]"#,
                "notify.channels.from",
            ),
            (
                r#"[[channels]]
                name = "m"
                kind = "email"
                smtp_host = "mail"
                from = "a@b.c"
                to = ["a@b.c"]
                smtp_tls = "none"
                smtp_username = "u"
                smtp_password_file = "/p""#,
                "notify.channels.smtp_tls",
            ),
            (
                r#"[[channels]]
                name = "p"
                kind = "pagerduty""#,
                "notify.channels.secret_file",
            ),
            (
                r#"[[channels]]
                name = "w"
                kind = "webhook"
                url = "http://h/x"
                repeat_secs = 5"#,
                "notify.channels.repeat_secs",
            ),
            (
                r#"[[channels]]
                name = "w"
                kind = "webhook"
                url = "http://user:pw@h/x""#,
                "notify.channels.url",
            ),
            (
                r#"[[channels]]
                name = "w"
                kind = "webhook"
                url = "http://h/x"
                [[channels]]
                name = "w"
                kind = "webhook"
                url = "http://h/y""#,
                "notify.channels.name",
            ),
            ("max_attempts = 0", "notify.max_attempts"),
        ];
        for (text, key) in cases {
            let err = parse(text).validate().expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let unknown: Result<NotifySection, _> = toml::from_str(
            r#"[[channels]]
               name = "w"
               kind = "sms""#,
        );
        assert!(unknown.is_err());
    }
}
