//! The pure half of the optional LLM provider: the intents as an OpenAI-compatible
//! `tools` array (the model may only choose among them, with typed arguments), the
//! request body that offers them, and a model's tool call checked into an [`Intent`].
//! Hosts, policies and metrics in a tool call go through the same [`Lexicon`] as typed
//! words, time ranges through the same grammar; anything unknown, ambiguous or malformed
//! is an error, and the caller then falls back to [`crate::parse`]. Nothing here talks
//! to a network.

use serde_json::{json, Map, Value};

use sco_policy::{Action, Consumer, Severity};

use crate::intent::{ActionState, ExplainTarget, HostRef, Intent, Scope, Selector};
use crate::lexicon::{Lexicon, Resolution};
use crate::parse::{is_action_id, DEFAULT_JOURNAL_MB, DEFAULT_METRIC_RANGE_MS, MAX_REASON_CHARS};
use crate::time::{range_at, TimeRange};

mod tools;

use tools::RANGE_DOC;
pub use tools::{request_body, tools};

/// What the model is told before the user's message.
pub const SYSTEM_PROMPT: &str = "You translate one message from an SRE about a fleet of \
servers into exactly one tool call. Choose the tool that answers the message; copy host \
names, ids and process names exactly as the user wrote them; never invent ids. Time ranges \
are phrases such as \"last 2 hours\", \"since 09:00\", \"since yesterday\", \"today\". If no \
tool fits, call help.";

/// Why a tool call was not turned into an intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    #[error("not a tool call: {0}")]
    Malformed(String),
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("tool {tool}: {problem}")]
    BadArgument { tool: String, problem: String },
}

/// What the model is told when it phrases an answer from the data an intent returned.
pub const ANSWER_PROMPT: &str = "Answer the SRE's question in a few short sentences, using \
only the JSON data given (what the fleet returned for the question). Name hosts, metrics, \
values and ids exactly as they appear in it. If the data does not answer the question, say \
so. Do not suggest commands or actions that are not in the data.";

/// Largest data, in bytes of JSON, handed to the model for an answer; longer data is cut
/// (and the model is told so).
pub const MAX_ANSWER_DATA_BYTES: usize = 16 * 1024;

/// A chat-completions request (no tools) asking the model to phrase the answer from the
/// data the intent returned, so the answer is grounded in it. The caller keeps its own
/// plain answer if this request fails.
pub fn answer_request_body(model: &str, user_text: &str, intent: &Intent, data: &Value) -> Value {
    let mut data = data.to_string();
    if data.len() > MAX_ANSWER_DATA_BYTES {
        let mut cut = MAX_ANSWER_DATA_BYTES;
        while !data.is_char_boundary(cut) {
            cut -= 1;
        }
        data.truncate(cut);
        data.push_str(" …(cut)");
    }
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": ANSWER_PROMPT},
            {"role": "user", "content": user_text},
            {"role": "user", "content": format!("Understood as: {}\nData (JSON): {data}", intent.summary())},
        ],
        "temperature": 0,
    })
}

/// The text of a chat-completions answer (`choices[0].message.content`), if any.
pub fn answer_text(response: &Value) -> Option<String> {
    response
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(4000).collect())
}

/// The first tool call of a chat-completions response (`choices[0].message.tool_calls[0]`),
/// checked into an intent.
pub fn intent_from_response(
    response: &Value,
    lex: &Lexicon,
    now_ms: i64,
) -> Result<Intent, ToolCallError> {
    let call = response
        .pointer("/choices/0/message/tool_calls/0")
        .ok_or_else(|| ToolCallError::Malformed("no choices[0].message.tool_calls[0]".into()))?;
    intent_from_tool_call(call, lex, now_ms)
}

/// One tool call (`{"type": "function", "function": {"name", "arguments"}}`, or just
/// `{"name", "arguments"}`; arguments a JSON object or a string holding one), checked.
pub fn intent_from_tool_call(
    call: &Value,
    lex: &Lexicon,
    now_ms: i64,
) -> Result<Intent, ToolCallError> {
    let f = call.get("function").unwrap_or(call);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ToolCallError::Malformed("no function name".into()))?;
    let args = match f.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ToolCallError::Malformed(
                    "arguments are not an object".into(),
                ))
            }
            Err(e) => return Err(ToolCallError::Malformed(format!("arguments: {e}"))),
        },
        Some(_) => {
            return Err(ToolCallError::Malformed(
                "arguments are not an object".into(),
            ))
        }
    };
    let a = Args {
        tool: name,
        args,
        lex,
        now: now_ms,
    };
    a.intent()
}

struct Args<'a> {
    tool: &'a str,
    args: Map<String, Value>,
    lex: &'a Lexicon,
    now: i64,
}

impl Args<'_> {
    fn bad(&self, problem: impl Into<String>) -> ToolCallError {
        ToolCallError::BadArgument {
            tool: self.tool.to_string(),
            problem: problem.into(),
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), ToolCallError> {
        match self.args.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(self.bad(format!("unknown argument {:?}", clip(k)))),
            None => Ok(()),
        }
    }

    fn str(&self, key: &str) -> Result<Option<String>, ToolCallError> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() > 1000 => {
                Err(self.bad(format!("{key} is longer than 1000 characters")))
            }
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(self.bad(format!("{key} is not a string"))),
        }
    }

    fn req_str(&self, key: &str) -> Result<String, ToolCallError> {
        self.str(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.bad(format!("{key} is required")))
    }

    fn bool(&self, key: &str) -> Result<bool, ToolCallError> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(format!("{key} is not a boolean"))),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u32>, ToolCallError> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| self.bad(format!("{key} is not a positive integer"))),
        }
    }

    fn host(&self, key: &str) -> Result<Option<HostRef>, ToolCallError> {
        let Some(name) = self.str(key)? else {
            return Ok(None);
        };
        match self.lex.resolve_host(&name) {
            Resolution::Found(h) => Ok(Some(h)),
            Resolution::Ambiguous(c) => Err(self.bad(format!(
                "host {:?} is ambiguous: {}",
                clip(&name),
                c.join(", ")
            ))),
            Resolution::NotFound => Err(self.bad(format!("no host named {:?}", clip(&name)))),
        }
    }

    fn req_host(&self) -> Result<HostRef, ToolCallError> {
        self.host("host")?
            .ok_or_else(|| self.bad("host is required"))
    }

    fn selector(&self) -> Result<Selector, ToolCallError> {
        match self.args.get("selector") {
            None | Some(Value::Null) => Ok(Selector::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(v) if valid_label(k) && valid_label(v) => Ok((k.clone(), v.to_string())),
                    _ => Err(self.bad(format!("selector label {:?} is not key: value", clip(k)))),
                })
                .collect(),
            Some(_) => Err(self.bad("selector is not an object")),
        }
    }

    fn range(&self) -> Result<Option<TimeRange>, ToolCallError> {
        let Some(text) = self.str("range")? else {
            return Ok(None);
        };
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        match range_at(&words, self.now) {
            Some((range, used)) if used == words.len() => Ok(Some(range)),
            _ => Err(self.bad(format!(
                "range {:?} is not understood; {RANGE_DOC}",
                clip(&text)
            ))),
        }
    }

    fn consumer(&self, key: &str) -> Result<Option<Consumer>, ToolCallError> {
        Ok(match self.str(key)?.as_deref() {
            None => None,
            Some("cpu") => Some(Consumer::Cpu),
            Some("memory") => Some(Consumer::Memory),
            Some("io") => Some(Consumer::Io),
            Some(other) => {
                return Err(self.bad(format!("{key} {:?} is not cpu, memory or io", clip(other))))
            }
        })
    }

    fn action_id(&self) -> Result<String, ToolCallError> {
        let id = self.req_str("action_id")?;
        if is_action_id(&id) {
            Ok(id)
        } else {
            Err(self.bad(format!("{:?} is not a remediation action id", clip(&id))))
        }
    }

    fn intent(&self) -> Result<Intent, ToolCallError> {
        match self.tool {
            "fleet_status" => {
                self.only(&["selector"])?;
                Ok(Intent::FleetStatus {
                    selector: self.selector()?,
                })
            }
            "host_status" => {
                self.only(&["host"])?;
                Ok(Intent::HostStatus {
                    host: self.req_host()?,
                })
            }
            "anomalies" => {
                self.only(&["host", "selector", "min_severity", "range", "open_only"])?;
                let host = self.host("host")?;
                let selector = self.selector()?;
                let scope = match (host, selector.is_empty()) {
                    (Some(_), false) => return Err(self.bad("give a host or a selector, not both")),
                    (Some(host), true) => Scope::Host { host },
                    (None, false) => Scope::Selector { labels: selector },
                    (None, true) => Scope::Fleet,
                };
                let min_severity = match self.str("min_severity")? {
                    None => None,
                    Some(s) => Some(Severity::parse(&s).ok_or_else(|| {
                        self.bad(format!(
                            "min_severity {:?} is not low, medium, high or critical",
                            clip(&s)
                        ))
                    })?),
                };
                Ok(Intent::Anomalies {
                    scope,
                    min_severity,
                    range: self.range()?,
                    open_only: self.bool("open_only")?,
                })
            }
            "explain" => {
                self.only(&["event_id", "host"])?;
                let target = match (self.str("event_id")?, self.host("host")?) {
                    (Some(id), None) if crate::parse::is_event_id(&id) => {
                        ExplainTarget::Event { id }
                    }
                    (Some(id), None) => {
                        return Err(self.bad(format!("{:?} is not an event id", clip(&id))))
                    }
                    (None, Some(host)) => ExplainTarget::Host { host },
                    _ => return Err(self.bad("give an event_id or a host")),
                };
                Ok(Intent::Explain { target })
            }
            "metric_history" => {
                self.only(&["host", "metric", "range"])?;
                let host = self.req_host()?;
                let metric = self.req_str("metric")?.to_lowercase();
                let words: Vec<&str> = metric.split_whitespace().collect();
                let metrics = match self.lex.metric_at(&words) {
                    Some((m, used)) if used == words.len() => m,
                    _ => return Err(self.bad(format!("metric {:?} is not known", clip(&metric)))),
                };
                let range = self
                    .range()?
                    .unwrap_or_else(|| TimeRange::last(self.now, DEFAULT_METRIC_RANGE_MS));
                Ok(Intent::MetricHistory {
                    host,
                    metrics,
                    range,
                })
            }
            "top_processes" => {
                self.only(&["host", "by"])?;
                Ok(Intent::TopProcesses {
                    host: self.req_host()?,
                    by: self.consumer("by")?.unwrap_or(Consumer::Cpu),
                })
            }
            "actions" => {
                self.only(&["host", "state", "range"])?;
                let state = match self.str("state")? {
                    None => None,
                    Some(s) => Some(ActionState::parse(&s).ok_or_else(|| {
                        self.bad(format!("state {:?} is not an action state", clip(&s)))
                    })?),
                };
                Ok(Intent::Actions {
                    host: self.host("host")?,
                    state,
                    range: self.range()?,
                })
            }
            "policy_status" => {
                self.only(&["policy"])?;
                let policy = match self.str("policy")? {
                    None => None,
                    Some(p) => match self.lex.resolve_policy(&p) {
                        Resolution::Found(p) => Some(p),
                        _ => return Err(self.bad(format!("no policy named {:?}", clip(&p)))),
                    },
                };
                Ok(Intent::PolicyStatus { policy })
            }
            "approve" => {
                self.only(&["action_id"])?;
                Ok(Intent::Approve {
                    action_id: self.action_id()?,
                })
            }
            "reject" => {
                self.only(&["action_id", "reason"])?;
                let reason = self.str("reason")?.filter(|r| !r.is_empty());
                if let Some(r) = &reason {
                    if r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control) {
                        return Err(self.bad(format!(
                            "reason must be one line of at most {MAX_REASON_CHARS} characters"
                        )));
                    }
                }
                Ok(Intent::Reject {
                    action_id: self.action_id()?,
                    reason,
                })
            }
            "trigger" => {
                self.only(&[
                    "host",
                    "action",
                    "unit",
                    "process",
                    "pid",
                    "top_consumer",
                    "max_size_mb",
                    "dry_run",
                ])?;
                let host = self.req_host()?;
                let action = match self.req_str("action")?.as_str() {
                    "restart_service" => {
                        self.only(&["host", "action", "unit", "dry_run"])?;
                        Action::RestartService {
                            unit: self.req_str("unit")?,
                        }
                    }
                    "kill_process" => {
                        self.only(&[
                            "host",
                            "action",
                            "process",
                            "pid",
                            "top_consumer",
                            "dry_run",
                        ])?;
                        let process = self.str("process")?.filter(|p| !p.is_empty());
                        Action::KillProcess {
                            name: None,
                            pattern: process.map(|p| format!("*{p}*")),
                            pid: self.uint("pid")?,
                            top_consumer: self.consumer("top_consumer")?,
                            grace_secs: 10,
                        }
                    }
                    "journal_vacuum" => {
                        self.only(&["host", "action", "max_size_mb", "dry_run"])?;
                        Action::JournalVacuum {
                            max_size_mb: self.uint("max_size_mb")?.unwrap_or(DEFAULT_JOURNAL_MB),
                        }
                    }
                    other => {
                        return Err(self.bad(format!(
                            "action {:?} is not restart_service, kill_process or journal_vacuum",
                            clip(other)
                        )))
                    }
                };
                // the allowlist's own static checks: names, one target, patterns
                action.check().map_err(|(_, e)| self.bad(e))?;
                Ok(Intent::Trigger {
                    host,
                    action,
                    dry_run: self.bool("dry_run")?,
                })
            }
            "confirm" => {
                self.only(&["confirmation_id"])?;
                let id = self.req_str("confirmation_id")?;
                if crate::parse::is_confirmation_id(&id) {
                    Ok(Intent::Confirm {
                        confirmation_id: id,
                    })
                } else {
                    Err(self.bad(format!("{:?} is not a confirmation id", clip(&id))))
                }
            }
            "runbooks" => {
                self.only(&["query"])?;
                Ok(Intent::Runbooks {
                    query: self.req_str("query")?,
                })
            }
            "help" => {
                self.only(&[])?;
                Ok(Intent::Help)
            }
            other => Err(ToolCallError::UnknownTool(clip(other))),
        }
    }
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const NOW: i64 = 1_773_153_000_000;

    fn lex() -> Lexicon {
        let mut lex = Lexicon::new();
        let role =
            |r: &str| -> BTreeMap<String, String> { [("role".to_string(), r.to_string())].into() };
        lex.add_host("web-1-0a1b2c3d", "web-1", role("web"))
            .add_host("web-2-1b2c3d4e", "web-2", role("web"))
            .add_host("db-2-4e5f6071", "db-2", role("db"))
            .add_policy("cpu-guard");
        lex
    }

    fn host(id: &str, hostname: &str) -> HostRef {
        HostRef {
            id: id.into(),
            hostname: hostname.into(),
        }
    }

    fn call(name: &str, args: Value) -> Value {
        // as OpenAI sends it: arguments as a JSON string
        json!({"id": "call_1", "type": "function",
               "function": {"name": name, "arguments": args.to_string()}})
    }

    #[test]
    fn every_tool_is_a_function_with_a_closed_object_schema() {
        let tools = tools();
        let tools = tools.as_array().expect("an array");
        assert_eq!(tools.len(), 14);
        let mut names = Vec::new();
        for t in tools {
            assert_eq!(t["type"], "function");
            let f = &t["function"];
            names.push(f["name"].as_str().expect("name").to_string());
            assert!(!f["description"].as_str().expect("description").is_empty());
            assert_eq!(f["parameters"]["type"], "object");
            assert_eq!(f["parameters"]["additionalProperties"], false);
            for r in f["parameters"]["required"].as_array().expect("required") {
                let r = r.as_str().expect("name");
                assert!(f["parameters"]["properties"].get(r).is_some(), "{r}");
            }
        }
        // one tool per intent the model may choose; never clarify or unknown
        for n in &names {
            assert!(!["clarify", "unknown"].contains(&n.as_str()));
        }
        let body = request_body("m", "what's wrong with web-1?");
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["messages"][1]["content"], "what's wrong with web-1?");
    }

    #[test]
    fn answers_are_asked_for_from_the_data_only() {
        let data = json!({"host": "web-1", "cpu.total_pct": {"min": 3, "mean": 40, "max": 99}});
        let body = answer_request_body("m", "cpu on web-1?", &Intent::Help, &data);
        assert!(body.get("tools").is_none());
        let last = body["messages"][2]["content"].as_str().expect("content");
        assert!(
            last.starts_with("Understood as: help\nData (JSON): {"),
            "{last}"
        );
        let huge = json!({"x": "é".repeat(MAX_ANSWER_DATA_BYTES)});
        let body = answer_request_body("m", "q", &Intent::Help, &huge);
        let last = body["messages"][2]["content"].as_str().expect("content");
        assert!(last.len() < MAX_ANSWER_DATA_BYTES + 200 && last.ends_with("(cut)"));
        let response = json!({"choices": [{"message": {"content": "  web-1 peaked at 99%.  "}}]});
        assert_eq!(
            answer_text(&response).as_deref(),
            Some("web-1 peaked at 99%.")
        );
        assert_eq!(answer_text(&json!({"choices": []})), None);
    }

    #[test]
    fn good_calls_become_intents() {
        let lex = lex();
        let cases = vec![
            (
                call("fleet_status", json!({})),
                Intent::FleetStatus {
                    selector: Selector::new(),
                },
            ),
            (
                call(
                    "anomalies",
                    json!({"host": "web-1", "min_severity": "high", "range": "last 2 hours", "open_only": true}),
                ),
                Intent::Anomalies {
                    scope: Scope::Host {
                        host: host("web-1-0a1b2c3d", "web-1"),
                    },
                    min_severity: Some(Severity::High),
                    range: Some(TimeRange::last(NOW, 2 * 3_600_000)),
                    open_only: true,
                },
            ),
            (
                call("anomalies", json!({"selector": {"role": "db"}})),
                Intent::Anomalies {
                    scope: Scope::Selector {
                        labels: [("role".to_string(), "db".to_string())].into(),
                    },
                    min_severity: None,
                    range: None,
                    open_only: false,
                },
            ),
            (
                call(
                    "metric_history",
                    json!({"host": "db-2", "metric": "memory", "range": "since 09:00"}),
                ),
                Intent::MetricHistory {
                    host: host("db-2-4e5f6071", "db-2"),
                    metrics: vec!["mem.used_pct".into()],
                    range: TimeRange::since_clock(NOW, 9, 0),
                },
            ),
            (
                call(
                    "trigger",
                    json!({"host": "db-2", "action": "kill_process", "process": "burner"}),
                ),
                Intent::Trigger {
                    host: host("db-2-4e5f6071", "db-2"),
                    action: Action::KillProcess {
                        name: None,
                        pattern: Some("*burner*".into()),
                        pid: None,
                        top_consumer: None,
                        grace_secs: 10,
                    },
                    dry_run: false,
                },
            ),
            (
                call(
                    "trigger",
                    json!({"host": "web-1", "action": "restart_service", "unit": "nginx", "dry_run": true}),
                ),
                Intent::Trigger {
                    host: host("web-1-0a1b2c3d", "web-1"),
                    action: Action::RestartService {
                        unit: "nginx".into(),
                    },
                    dry_run: true,
                },
            ),
            (
                call(
                    "reject",
                    json!({"action_id": "act-0123456789abcdef", "reason": "peak hours"}),
                ),
                Intent::Reject {
                    action_id: "act-0123456789abcdef".into(),
                    reason: Some("peak hours".into()),
                },
            ),
            (
                call("explain", json!({"event_id": "web-1-0a1b2c3d:88"})),
                Intent::Explain {
                    target: ExplainTarget::Event {
                        id: "web-1-0a1b2c3d:88".into(),
                    },
                },
            ),
            (
                call("policy_status", json!({"policy": "cpu-guard"})),
                Intent::PolicyStatus {
                    policy: Some("cpu-guard".into()),
                },
            ),
            (
                call("confirm", json!({"confirmation_id": "cf-7k2p9q4x"})),
                Intent::Confirm {
                    confirmation_id: "cf-7k2p9q4x".into(),
                },
            ),
            (json!({"name": "help", "arguments": {}}), Intent::Help),
            (json!({"name": "help"}), Intent::Help),
        ];
        for (c, want) in cases {
            assert_eq!(intent_from_tool_call(&c, &lex, NOW), Ok(want), "{c}");
        }
        let response = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [call("top_processes", json!({"host": "web-2", "by": "memory"}))]}}]});
        assert_eq!(
            intent_from_response(&response, &lex, NOW),
            Ok(Intent::TopProcesses {
                host: host("web-2-1b2c3d4e", "web-2"),
                by: Consumer::Memory
            })
        );
    }

    #[test]
    fn bad_calls_are_errors_so_the_parser_answers_instead() {
        let lex = lex();
        let bad = vec![
            json!({}),
            json!({"function": {"name": 3}}),
            json!({"function": {"name": "help", "arguments": "{not json"}}),
            json!({"function": {"name": "help", "arguments": "[1]"}}),
            call("run_shell", json!({"cmd": "rm -rf /"})),
            call("clarify", json!({})),
            call("help", json!({"extra": 1})),
            call("host_status", json!({})),
            call("host_status", json!({"host": "zeus"})),
            call("host_status", json!({"host": "web-3"})), // web-1 or web-2
            call("host_status", json!({"host": 7})),
            call("anomalies", json!({"min_severity": "urgent"})),
            call("anomalies", json!({"range": "since the dawn of time"})),
            call("anomalies", json!({"range": "last 2 hours and more"})),
            call(
                "anomalies",
                json!({"host": "web-1", "selector": {"role": "web"}}),
            ),
            call("anomalies", json!({"selector": {"role": 1}})),
            call("anomalies", json!({"open_only": "yes"})),
            call("explain", json!({})),
            call("explain", json!({"event_id": "88"})),
            call("metric_history", json!({"host": "web-1", "metric": "gpu"})),
            call("actions", json!({"state": "on fire"})),
            call("policy_status", json!({"policy": "nope"})),
            call("approve", json!({"action_id": "anything; drop table"})),
            call(
                "reject",
                json!({"action_id": "act-0123456789abcdef", "reason": "a\nb"}),
            ),
            call("trigger", json!({"host": "web-1", "action": "run_script"})),
            call(
                "trigger",
                json!({"host": "web-1", "action": "restart_service", "unit": "nginx; reboot"}),
            ),
            call(
                "trigger",
                json!({"host": "web-1", "action": "restart_service", "unit": "nginx", "pid": 3}),
            ),
            call(
                "trigger",
                json!({"host": "web-1", "action": "kill_process"}),
            ),
            call(
                "trigger",
                json!({"host": "web-1", "action": "kill_process", "pid": 3, "process": "x"}),
            ),
            call(
                "trigger",
                json!({"host": "web-1", "action": "kill_process", "pid": -3}),
            ),
            call(
                "trigger",
                json!({"host": "web-1", "action": "kill_process", "process": "*"}),
            ),
            call(
                "trigger",
                json!({"host": "web-1", "action": "journal_vacuum", "max_size_mb": 0}),
            ),
            call("confirm", json!({"confirmation_id": "yes"})),
            call("runbooks", json!({"query": ""})),
        ];
        for c in bad {
            assert!(intent_from_tool_call(&c, &lex, NOW).is_err(), "{c}");
        }
        assert!(intent_from_response(&json!({"choices": []}), &lex, NOW).is_err());
        assert_eq!(
            intent_from_tool_call(&call("format_disk", json!({})), &lex, NOW),
            Err(ToolCallError::UnknownTool("format_disk".into()))
        );
    }
}
