//! Answers as Slack messages (Block Kit): the short text in a section, the data as
//! fields, small print as context, and for each proposal an approve and a reject button
//! carrying its action id, both behind Slack's own confirmation dialog. Slack's limits
//! (3000 characters a section, 10 fields a section, 2000 a field, 50 blocks) are kept by
//! clipping, never by failing.

use serde_json::{json, Value};

/// `action_id` of the approve button; its `value` is the remediation action id.
pub const APPROVE_ACTION_ID: &str = "sco_approve";
/// `action_id` of the reject button; its `value` is the remediation action id.
pub const REJECT_ACTION_ID: &str = "sco_reject";

const MAX_SECTION_CHARS: usize = 3000;
const MAX_FIELD_CHARS: usize = 2000;
const MAX_FIELDS_PER_SECTION: usize = 10;
const MAX_FIELDS: usize = 20;
const MAX_BLOCKS: usize = 50;
const MAX_CONTEXT_ELEMENTS: usize = 10;

/// A proposal the reply offers to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyProposal {
    /// The remediation action id the buttons carry.
    pub action_id: String,
    /// One line: host, action, why.
    pub summary: String,
}

/// One answer, to be rendered for Slack with [`Reply::to_json`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The short answer for people (plain text: escaped for Slack when rendered).
    pub text: String,
    /// Label and value pairs (host, state, min/mean/max, ...).
    pub fields: Vec<(String, String)>,
    /// Proposals to approve or reject, each with its two buttons.
    pub proposals: Vec<ReplyProposal>,
    /// Small print: links to the REST resources, the confirmation id to send, who asked.
    pub context: Vec<String>,
    /// Visible to the channel (`in_channel`) rather than to the asker only (`ephemeral`).
    pub in_channel: bool,
}

impl Reply {
    pub fn new(text: impl Into<String>) -> Self {
        Reply {
            text: text.into(),
            ..Reply::default()
        }
    }

    pub fn field(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((label.into(), value.into()));
        self
    }

    pub fn proposal(mut self, action_id: impl Into<String>, summary: impl Into<String>) -> Self {
        self.proposals.push(ReplyProposal {
            action_id: action_id.into(),
            summary: summary.into(),
        });
        self
    }

    pub fn context(mut self, line: impl Into<String>) -> Self {
        self.context.push(line.into());
        self
    }

    pub fn in_channel(mut self) -> Self {
        self.in_channel = true;
        self
    }

    /// The message as Slack takes it in a slash-command response, a `response_url`
    /// post or `chat.postMessage`: `response_type`, fallback `text` and `blocks`.
    pub fn to_json(&self) -> Value {
        let mut blocks = vec![section(&self.text)];
        let fields: Vec<&(String, String)> = self.fields.iter().take(MAX_FIELDS).collect();
        for chunk in fields.chunks(MAX_FIELDS_PER_SECTION) {
            let fields: Vec<Value> = chunk
                .iter()
                .map(|(label, value)| {
                    json!({
                        "type": "mrkdwn",
                        "text": clip(&format!("*{}*\n{}", escape(label), escape(value)), MAX_FIELD_CHARS),
                    })
                })
                .collect();
            blocks.push(json!({"type": "section", "fields": fields}));
        }
        let mut context: Vec<String> = Vec::new();
        if self.fields.len() > MAX_FIELDS {
            context.push(format!(
                "{} more fields not shown",
                self.fields.len() - MAX_FIELDS
            ));
        }
        // each proposal takes two blocks; keep one for the context
        let room = MAX_BLOCKS.saturating_sub(blocks.len() + 1) / 2;
        for (i, p) in self.proposals.iter().take(room).enumerate() {
            blocks.push(section(&p.summary));
            blocks.push(json!({
                "type": "actions",
                "block_id": format!("proposal-{i}"),
                "elements": [
                    button("Approve", APPROVE_ACTION_ID, &p.action_id, "primary", "Approve", "approve"),
                    button("Reject", REJECT_ACTION_ID, &p.action_id, "danger", "Reject", "reject"),
                ],
            }));
        }
        if self.proposals.len() > room {
            context.push(format!(
                "{} more proposals not shown: ask `pending proposals`",
                self.proposals.len() - room
            ));
        }
        context.extend(self.context.iter().cloned());
        if !context.is_empty() {
            let elements: Vec<Value> = context
                .iter()
                .take(MAX_CONTEXT_ELEMENTS)
                .map(|c| json!({"type": "mrkdwn", "text": clip(&escape(c), MAX_FIELD_CHARS)}))
                .collect();
            blocks.push(json!({"type": "context", "elements": elements}));
        }
        json!({
            "response_type": if self.in_channel { "in_channel" } else { "ephemeral" },
            "text": clip(&self.text, MAX_SECTION_CHARS),
            "blocks": blocks,
        })
    }
}

fn section(text: &str) -> Value {
    let text = if text.trim().is_empty() { " " } else { text };
    json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": clip(&escape(text), MAX_SECTION_CHARS)},
    })
}

fn button(
    label: &str,
    action_id: &str,
    value: &str,
    style: &str,
    confirm: &str,
    verb: &str,
) -> Value {
    json!({
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": clip(value, MAX_FIELD_CHARS),
        "style": style,
        "confirm": {
            "title": {"type": "plain_text", "text": format!("{confirm} this proposal?")},
            "text": {"type": "mrkdwn", "text": clip(&format!("This will {verb} `{}`.", escape(value)), 300)},
            "confirm": {"type": "plain_text", "text": confirm},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    })
}

/// Slack's three control characters in text (`&`, `<`, `>`), escaped, so a host label
/// or a process name cannot ping a channel or forge a link.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when clipped.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_with_fields_and_proposal_buttons() {
        let reply = Reply::new("web-3: 1 open anomaly (cpu, high)")
            .field("host", "web-3")
            .field("cpu.total_pct", "min 12 / mean 71 / max 99")
            .proposal(
                "web-3-2c3d4e5f:0123456789abcdef0123456789abcdef",
                "kill_process *burner* on web-3 (cpu-guard/burner)",
            )
            .context("GET /anomaly/web-3-2c3d4e5f:88");
        let v = reply.to_json();
        assert_eq!(v["response_type"], "ephemeral");
        assert_eq!(v["text"], "web-3: 1 open anomaly (cpu, high)");
        let blocks = v["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 5, "{v:#}");
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[1]["fields"][0]["text"], "*host*\nweb-3");
        assert_eq!(blocks[3]["type"], "actions");
        let buttons = blocks[3]["elements"].as_array().expect("buttons");
        assert_eq!(buttons[0]["action_id"], APPROVE_ACTION_ID);
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[1]["action_id"], REJECT_ACTION_ID);
        assert_eq!(buttons[1]["style"], "danger");
        for b in buttons {
            assert_eq!(
                b["value"],
                "web-3-2c3d4e5f:0123456789abcdef0123456789abcdef"
            );
            assert_eq!(b["confirm"]["deny"]["text"], "Cancel");
        }
        assert_eq!(blocks[4]["type"], "context");
    }

    #[test]
    fn text_is_escaped_and_limits_are_kept() {
        let many = (0..60).fold(Reply::new("<!channel> & <http://x|y>"), |r, i| {
            r.proposal(format!("act-{i:016x}"), "x".repeat(4000))
                .field(format!("f{i}"), "y".repeat(3000))
        });
        let v = many.in_channel().to_json();
        assert_eq!(v["response_type"], "in_channel");
        let blocks = v["blocks"].as_array().expect("blocks");
        assert!(blocks.len() <= MAX_BLOCKS, "{}", blocks.len());
        assert_eq!(
            blocks[0]["text"]["text"],
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= MAX_SECTION_CHARS);
            }
            if let Some(fields) = b["fields"].as_array() {
                assert!(fields.len() <= MAX_FIELDS_PER_SECTION);
                for f in fields {
                    assert!(f["text"].as_str().expect("text").chars().count() <= MAX_FIELD_CHARS);
                }
            }
        }
        let last = blocks.last().expect("a context block");
        assert_eq!(last["type"], "context");
        assert!(last["elements"][0]["text"]
            .as_str()
            .expect("text")
            .contains("more fields"));
        // an empty reply is still a valid message
        let empty = Reply::default().to_json();
        assert_eq!(empty["blocks"][0]["text"]["text"], " ");
    }
}
