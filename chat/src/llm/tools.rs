//! The tools the model may choose among (one per intent, typed arguments) and the request
//! that offers them.

use serde_json::{json, Value};

use sco_policy::Severity;

use super::SYSTEM_PROMPT;
use crate::intent::ActionState;

pub(super) const RANGE_DOC: &str = "a time range phrase: \"last 30 minutes\", \"last 2 hours\", \
\"past day\", \"since 09:00\", \"since yesterday\", \"today\", \"yesterday\"";

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn enumeration(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            },
        },
    })
}

/// The intents as an OpenAI-compatible `tools` array.
pub fn tools() -> Value {
    let host = string("a hostname or agent id, as the user wrote it");
    let selector = json!({
        "type": "object",
        "description": "host labels that must all match, e.g. {\"role\": \"web\"}",
        "additionalProperties": {"type": "string"},
    });
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let states: Vec<&str> = ActionState::ALL.iter().map(|s| s.as_str()).collect();
    let consumers = ["cpu", "memory", "io"];
    Value::Array(vec![
        tool(
            "fleet_status",
            "Status of the whole fleet, or of the hosts matching a label selector.",
            json!({"selector": selector}),
            &[],
        ),
        tool(
            "host_status",
            "Status of one host: connection, latest values, open anomalies.",
            json!({"host": host}),
            &["host"],
        ),
        tool(
            "anomalies",
            "List anomaly events, optionally for one host or a label selector, a minimum severity, a time range, open ones only.",
            json!({
                "host": host,
                "selector": selector,
                "min_severity": enumeration(&severities, "events of this severity or worse"),
                "range": string(RANGE_DOC),
                "open_only": {"type": "boolean", "description": "only events still open"},
            }),
            &[],
        ),
        tool(
            "explain",
            "Why an anomaly fired (by event id), or what is wrong with a host now.",
            json!({
                "event_id": string("an anomaly event id, <agent id>:<number>"),
                "host": host,
            }),
            &[],
        ),
        tool(
            "metric_history",
            "A metric's recent behaviour on one host: min, mean, max and the series.",
            json!({
                "host": host,
                "metric": string("a metric name (cpu.total_pct) or a word for it: cpu, memory, disk, load, network, io, swap, pressure"),
                "range": string(RANGE_DOC),
            }),
            &["host", "metric"],
        ),
        tool(
            "top_processes",
            "The processes of a host using the most of a resource.",
            json!({"host": host, "by": enumeration(&consumers, "the resource")}),
            &["host"],
        ),
        tool(
            "actions",
            "Remediation actions and proposals, optionally for one host or in one state.",
            json!({
                "host": host,
                "state": enumeration(&states, "the action's state"),
                "range": string(RANGE_DOC),
            }),
            &[],
        ),
        tool(
            "policy_status",
            "Policies and the status of their rollouts, or one policy's.",
            json!({"policy": string("a policy name")}),
            &[],
        ),
        tool(
            "approve",
            "Approve a remediation proposal by its action id.",
            json!({"action_id": string("the action id, act-<hex> or <agent id>:<hex>")}),
            &["action_id"],
        ),
        tool(
            "reject",
            "Reject a remediation proposal by its action id, with an optional reason.",
            json!({
                "action_id": string("the action id, act-<hex> or <agent id>:<hex>"),
                "reason": string("one line, at most 500 characters"),
            }),
            &["action_id"],
        ),
        tool(
            "trigger",
            "Ask one host for an allowlisted action; it is prepared, not run, until confirmed.",
            json!({
                "host": host,
                "action": enumeration(&["restart_service", "kill_process", "journal_vacuum"], "the action"),
                "unit": string("restart_service: the systemd unit, e.g. nginx"),
                "process": string("kill_process: a word of the process's command line, e.g. burner"),
                "pid": {"type": "integer", "minimum": 1, "description": "kill_process: a process id"},
                "top_consumer": enumeration(&consumers, "kill_process: the heaviest process by this resource"),
                "max_size_mb": {"type": "integer", "minimum": 1, "description": "journal_vacuum: size to shrink the journal to"},
                "dry_run": {"type": "boolean", "description": "only a dry run"},
            }),
            &["host", "action"],
        ),
        tool(
            "confirm",
            "Carry out a prepared action by the confirmation id it was answered with.",
            json!({"confirmation_id": string("cf-<letters and digits>")}),
            &["confirmation_id"],
        ),
        tool(
            "runbooks",
            "Search the runbooks.",
            json!({"query": string("words to search for")}),
            &["query"],
        ),
        tool("help", "What this assistant can do.", json!({}), &[]),
    ])
}

/// An OpenAI-compatible chat-completions request body offering the tools, with one
/// tool call required.
pub fn request_body(model: &str, user_text: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_text},
        ],
        "tools": tools(),
        "tool_choice": "required",
        "temperature": 0,
    })
}
