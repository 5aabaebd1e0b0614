//! Slack request bodies: `application/x-www-form-urlencoded` decoding (written here: it
//! is twenty lines), the slash command's fields, and the `payload=` JSON of a button
//! press on an approve or reject button.

use crate::intent::Intent;
use crate::parse::is_action_id;

use super::blocks::{APPROVE_ACTION_ID, REJECT_ACTION_ID};

/// Largest body decoded (a button press carries the whole message it was pressed on).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_FIELDS: usize = 256;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the body is {0} bytes, more than {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("the body has more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("bad percent escape at byte {0}")]
    BadEscape(usize),
    #[error("field {0:?} is not UTF-8 once decoded")]
    NotUtf8(String),
    #[error("field {0:?} is missing")]
    Missing(&'static str),
    #[error("field {field:?}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// Decodes a form body into its `(name, value)` pairs, in order.
pub fn decode_form(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(FormError::TooLarge(body.len()));
    }
    let mut out = Vec::new();
    let mut offset = 0;
    for piece in body.split(|b| *b == b'&') {
        let start = offset;
        offset += piece.len() + 1;
        if piece.is_empty() {
            continue;
        }
        if out.len() == MAX_FIELDS {
            return Err(FormError::TooManyFields);
        }
        let (name, value) = match piece.iter().position(|b| *b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &piece[piece.len()..]),
        };
        let name = percent_decode(name, start)?;
        let name = String::from_utf8(name)
            .map_err(|e| FormError::NotUtf8(String::from_utf8_lossy(e.as_bytes()).into()))?;
        let value_start = start + piece.len() - value.len();
        let value = String::from_utf8(percent_decode(value, value_start)?)
            .map_err(|_| FormError::NotUtf8(name.clone()))?;
        out.push((name, value));
    }
    Ok(out)
}

fn percent_decode(s: &[u8], at: usize) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                match (hex(s.get(i + 1)), hex(s.get(i + 2))) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(FormError::BadEscape(at + i)),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A slash command (`/sco what's wrong with web-3`), as Slack posts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    /// The command typed (`/sco`).
    pub command: String,
    /// Everything after the command: the question for [`crate::parse`].
    pub text: String,
    pub user_id: String,
    pub user_name: String,
    pub team_id: String,
    pub channel_id: String,
    /// Where later answers may be posted (checked to be Slack's), if given.
    pub response_url: Option<String>,
    pub trigger_id: String,
}

impl SlashCommand {
    /// Decodes a slash command's form body.
    pub fn decode(body: &[u8]) -> Result<Self, FormError> {
        let pairs = decode_form(body)?;
        let get = |name| field(&pairs, name).unwrap_or("").to_string();
        let required = |name: &'static str| {
            field(&pairs, name)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or(FormError::Missing(name))
        };
        let user_id = required("user_id")?;
        check_slack_id("user_id", &user_id)?;
        let response_url = match field(&pairs, "response_url").filter(|u| !u.is_empty()) {
            Some(u) => Some(check_response_url(u)?),
            None => None,
        };
        Ok(SlashCommand {
            command: required("command")?,
            text: get("text"),
            user_id,
            user_name: get("user_name"),
            team_id: get("team_id"),
            channel_id: get("channel_id"),
            response_url,
            trigger_id: get("trigger_id"),
        })
    }
}

/// A press on an approve or reject button of a [`super::Reply`].
#[derive(Debug, Clone, PartialEq)]
pub struct ButtonPress {
    pub user_id: String,
    pub user_name: String,
    pub response_url: Option<String>,
    /// [`Intent::Approve`] or [`Intent::Reject`] (without a reason) of the button's action.
    pub intent: Intent,
}

impl ButtonPress {
    /// Decodes an interactivity body (`payload=<JSON>`) of type `block_actions` whose
    /// first action is one of our buttons.
    pub fn decode(body: &[u8]) -> Result<Self, FormError> {
        let pairs = decode_form(body)?;
        let payload = field(&pairs, "payload").ok_or(FormError::Missing("payload"))?;
        let v: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| FormError::Invalid {
                field: "payload",
                problem: format!("not JSON: {e}"),
            })?;
        let invalid = |problem: &str| FormError::Invalid {
            field: "payload",
            problem: problem.to_string(),
        };
        match v.get("type").and_then(|t| t.as_str()) {
            Some("block_actions") => {}
            Some(other) => {
                let shown: String = other.chars().take(40).collect();
                return Err(invalid(&format!("type {shown:?} is not block_actions")));
            }
            None => return Err(invalid("no type")),
        }
        let user = v.get("user").ok_or_else(|| invalid("no user"))?;
        let user_id = user
            .get("id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| invalid("no user.id"))?
            .to_string();
        check_slack_id("user.id", &user_id)?;
        let user_name = user
            .get("username")
            .or_else(|| user.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string();
        let action = v
            .get("actions")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .ok_or_else(|| invalid("no actions"))?;
        let action_id = action
            .get("action_id")
            .and_then(|a| a.as_str())
            .unwrap_or("");
        let value = action
            .get("value")
            .and_then(|a| a.as_str())
            .unwrap_or("")
            .to_string();
        if !is_action_id(&value) {
            return Err(invalid("the button's value is not a remediation action id"));
        }
        let intent = match action_id {
            APPROVE_ACTION_ID => Intent::Approve { action_id: value },
            REJECT_ACTION_ID => Intent::Reject {
                action_id: value,
                reason: None,
            },
            _ => return Err(invalid("the action is not an approve or reject button")),
        };
        let response_url = match v.get("response_url").and_then(|u| u.as_str()) {
            Some(u) if !u.is_empty() => Some(check_response_url(u)?),
            _ => None,
        };
        Ok(ButtonPress {
            user_id,
            user_name,
            response_url,
            intent,
        })
    }
}

/// Slack ids (`U2CERLKJA`, `W012A3CDE`): upper-case letters and digits.
fn check_slack_id(field: &'static str, id: &str) -> Result<(), FormError> {
    if (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(FormError::Invalid {
            field,
            problem: "not a Slack id (upper-case letters and digits)".into(),
        })
    }
}

/// A response URL is only ever Slack's own (https, a slack.com or slack-gov.com host):
/// the control plane posts answers there, and must not be made to post anywhere else.
fn check_response_url(url: &str) -> Result<String, FormError> {
    let host = url
        .strip_prefix("https://")
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .unwrap_or("");
    let ok = url.len() <= 2048
        && !host.contains(['@', ':'])
        && [".slack.com", ".slack-gov.com"]
            .iter()
            .any(|d| host.ends_with(d) && host.len() > d.len());
    if ok {
        Ok(url.to_string())
    } else {
        Err(FormError::Invalid {
            field: "response_url",
            problem: "not an https URL of slack.com".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else if b == b' ' {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[test]
    fn forms_decode() {
        let pairs = decode_form(b"a=1&b=two+words&c=%2Fsco&&d&e=%C3%A9&f=").expect("decodes");
        let want: Vec<(String, String)> = [
            ("a", "1"),
            ("b", "two words"),
            ("c", "/sco"),
            ("d", ""),
            ("e", "é"),
            ("f", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, want);
        assert_eq!(decode_form(b""), Ok(vec![]));
        assert_eq!(decode_form(b"a=%2"), Err(FormError::BadEscape(2)));
        assert_eq!(decode_form(b"a=1&b=%zz"), Err(FormError::BadEscape(6)));
        assert_eq!(decode_form(b"a=%FF"), Err(FormError::NotUtf8("a".into())));
        assert!(matches!(
            decode_form(&vec![b'a'; MAX_BODY_BYTES + 1]),
            Err(FormError::TooLarge(_))
        ));
        assert_eq!(
            decode_form("a&".repeat(MAX_FIELDS + 1).as_bytes()),
            Err(FormError::TooManyFields)
        );
    }

    #[test]
    fn slash_commands_decode() {
        let body = format!(
            "token=x&team_id=T1DC2JH3J&channel_id=G8PSS9T3V&user_id=U2CERLKJA&user_name=roadrunner\
             &command=%2Fsco&text={}&response_url={}&trigger_id=398.474.803a",
            enc("what's wrong with web-3?"),
            enc("https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rG")
        );
        let cmd = SlashCommand::decode(body.as_bytes()).expect("decodes");
        assert_eq!(cmd.command, "/sco");
        assert_eq!(cmd.text, "what's wrong with web-3?");
        assert_eq!(cmd.user_id, "U2CERLKJA");
        assert_eq!(cmd.user_name, "roadrunner");
        assert_eq!(
            cmd.response_url.as_deref(),
            Some("https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rG")
        );
        // no text is a question too (help)
        let cmd = SlashCommand::decode(b"command=%2Fsco&user_id=U1").expect("decodes");
        assert_eq!(cmd.text, "");
        assert_eq!(cmd.response_url, None);
        for (body, want) in [
            (
                &b"command=%2Fsco&text=hi"[..],
                FormError::Missing("user_id"),
            ),
            (b"user_id=U1&text=hi", FormError::Missing("command")),
            (b"user_id=&command=%2Fsco", FormError::Missing("user_id")),
        ] {
            assert_eq!(SlashCommand::decode(body), Err(want));
        }
        for body in [
            "command=%2Fsco&user_id=u1",
            "command=%2Fsco&user_id=U1%00",
            "command=%2Fsco&user_id=U1&response_url=http%3A%2F%2Fhooks.slack.com%2Fx",
            "command=%2Fsco&user_id=U1&response_url=https%3A%2F%2Fevil.example%2Fx",
            "command=%2Fsco&user_id=U1&response_url=https%3A%2F%2Fslack.com.evil.example%2F",
            "command=%2Fsco&user_id=U1&response_url=https%3A%2F%2Fu%40evil.example%2F.slack.com",
            "command=%2Fsco&user_id=U1&response_url=https%3A%2F%2F.slack.com%2F",
        ] {
            assert!(
                matches!(
                    SlashCommand::decode(body.as_bytes()),
                    Err(FormError::Invalid { .. })
                ),
                "{body}"
            );
        }
    }

    fn press(action_id: &str, value: &str) -> Vec<u8> {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U2CERLKJA", "username": "roadrunner", "team_id": "T1DC2JH3J"},
            "response_url": "https://hooks.slack.com/actions/T1DC2JH3J/1/abc",
            "actions": [{"action_id": action_id, "block_id": "b1", "value": value,
                         "type": "button", "action_ts": "1548426417.840180"}]
        });
        format!("payload={}", enc(&payload.to_string())).into_bytes()
    }

    #[test]
    fn button_presses_decode_to_decisions() {
        let p = ButtonPress::decode(&press(APPROVE_ACTION_ID, "act-0123456789abcdef"))
            .expect("decodes");
        assert_eq!(
            p.intent,
            Intent::Approve {
                action_id: "act-0123456789abcdef".into()
            }
        );
        assert_eq!(p.user_id, "U2CERLKJA");
        assert_eq!(p.user_name, "roadrunner");
        let p = ButtonPress::decode(&press(
            REJECT_ACTION_ID,
            "db-2-4e5f6071:0123456789abcdef0123456789abcdef",
        ))
        .expect("decodes");
        assert_eq!(
            p.intent,
            Intent::Reject {
                action_id: "db-2-4e5f6071:0123456789abcdef0123456789abcdef".into(),
                reason: None
            }
        );
    }

    #[test]
    fn malformed_presses_are_refused() {
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"payload=".to_vec(),
            b"payload=%7B".to_vec(),
            b"payload=%5B%5D".to_vec(),
            format!("payload={}", enc(r#"{"type":"view_submission"}"#)).into_bytes(),
            format!(
                "payload={}",
                enc(r#"{"type":"block_actions","actions":[]}"#)
            )
            .into_bytes(),
            format!(
                "payload={}",
                enc(r#"{"type":"block_actions","user":{"id":"U1"},"actions":[]}"#)
            )
            .into_bytes(),
            press("something_else", "act-0123456789abcdef"),
            press(APPROVE_ACTION_ID, "act-0123; rm -rf /"),
            press(APPROVE_ACTION_ID, ""),
        ];
        for body in bad {
            assert!(
                ButtonPress::decode(&body).is_err(),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
