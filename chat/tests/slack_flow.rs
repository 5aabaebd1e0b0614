//! Slack requests through the public API as the control plane will use it: verify the
//! signature, decode the body, parse the text, check the role, answer in Block Kit; and
//! a press on the answer's approve button coming back. Signed, forged, stale and
//! malformed requests.

use std::collections::BTreeMap;

use sco_chat::slack::{
    sign, verify_request, ButtonPress, FormError, Reply, SlashCommand, VerifyError,
    APPROVE_ACTION_ID, REJECT_ACTION_ID,
};
use sco_chat::{parse, Intent, Lexicon, Role};

const SECRET: &[u8] = b"e2e-signing-secret-0123456789abcdef";
const NOW_MS: i64 = 1_773_153_000_000;
const TS: &str = "1773153000";

fn lexicon() -> Lexicon {
    let mut lex = Lexicon::new();
    let labels: BTreeMap<String, String> = [("role".to_string(), "db".to_string())].into();
    lex.add_host("db-2-4e5f6071", "db-2", labels);
    lex
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn slash(text: &str) -> String {
    form(&[
        ("token", "legacy"),
        ("team_id", "T1DC2JH3J"),
        ("channel_id", "C0123"),
        ("user_id", "U2CERLKJA"),
        ("user_name", "alice"),
        ("command", "/sco"),
        ("text", text),
        (
            "response_url",
            "https://hooks.slack.com/commands/T1DC2JH3J/1/abc",
        ),
        ("trigger_id", "1.2.3"),
    ])
}

#[test]
fn a_signed_slash_command_is_understood_and_answered_with_buttons() {
    let lex = lexicon();
    let body = slash("kill the burner on db-2");
    let signature = sign(SECRET, TS, body.as_bytes());
    verify_request(SECRET, TS, &signature, body.as_bytes(), NOW_MS).expect("Slack's own");
    let cmd = SlashCommand::decode(body.as_bytes()).expect("decodes");
    let intent = parse(&cmd.text, &lex, NOW_MS);
    assert!(matches!(intent, Intent::Trigger { .. }), "{intent:?}");
    // a viewer is refused before anything is prepared; an operator gets a confirmation
    assert!(intent.authorize(Role::Viewer).is_err());
    assert!(intent.authorize(Role::Operator).is_ok());

    let proposal = "db-2-4e5f6071:0123456789abcdef0123456789abcdef";
    let reply = Reply::new(format!(
        "{}: confirm with `confirm cf-abcd2345`",
        intent.summary()
    ))
    .field("host", "db-2")
    .proposal(
        proposal,
        "cpu-guard/burner wants kill_process *burner* on db-2",
    )
    .to_json();
    // text, fields, the proposal, its buttons
    let buttons = &reply["blocks"][3]["elements"];
    assert_eq!(buttons[0]["action_id"], APPROVE_ACTION_ID);
    assert_eq!(buttons[0]["value"], proposal);

    // the approve button pressed: a signed interactivity request
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": "U2CERLKJA", "username": "alice"},
        "response_url": "https://hooks.slack.com/actions/T1DC2JH3J/2/def",
        "actions": [{"action_id": buttons[0]["action_id"], "value": buttons[0]["value"], "type": "button"}],
    });
    let body = form(&[("payload", &payload.to_string())]);
    let signature = sign(SECRET, TS, body.as_bytes());
    verify_request(SECRET, TS, &signature, body.as_bytes(), NOW_MS + 30_000).expect("Slack's own");
    let press = ButtonPress::decode(body.as_bytes()).expect("decodes");
    assert_eq!(
        press.intent,
        Intent::Approve {
            action_id: proposal.into()
        }
    );
    assert!(press.intent.authorize(Role::Viewer).is_err());
    assert!(press.intent.authorize(Role::Operator).is_ok());
    assert_eq!(REJECT_ACTION_ID, buttons[1]["action_id"]);
}

#[test]
fn forged_stale_and_malformed_requests_are_refused() {
    let body = slash("approve act-0123456789abcdef");
    // forged: signed with another secret, or the body changed after signing
    let forged = sign(b"not the secret", TS, body.as_bytes());
    assert_eq!(
        verify_request(SECRET, TS, &forged, body.as_bytes(), NOW_MS),
        Err(VerifyError::Mismatch)
    );
    let signature = sign(SECRET, TS, body.as_bytes());
    let altered = body.replace("U2CERLKJA", "U0ADMIN00");
    assert_eq!(
        verify_request(SECRET, TS, &signature, altered.as_bytes(), NOW_MS),
        Err(VerifyError::Mismatch)
    );
    // a timestamp moved to pass the window breaks the signature
    assert_eq!(
        verify_request(SECRET, "1773152999", &signature, body.as_bytes(), NOW_MS),
        Err(VerifyError::Mismatch)
    );
    // stale: a correct signature replayed six minutes later
    assert_eq!(
        verify_request(SECRET, TS, &signature, body.as_bytes(), NOW_MS + 360_000),
        Err(VerifyError::Stale { age_secs: 360 })
    );
    // malformed headers
    assert_eq!(
        verify_request(SECRET, TS, "sha256=abc", body.as_bytes(), NOW_MS),
        Err(VerifyError::BadSignatureFormat)
    );
    assert_eq!(
        verify_request(SECRET, "yesterday", &signature, body.as_bytes(), NOW_MS),
        Err(VerifyError::BadTimestamp("yesterday".into()))
    );
    // malformed bodies, correctly signed: refused by the decoder, not guessed
    for bad in ["%%%", "text=hi&command=%2Fsco", "payload=%7Bnot-json"] {
        let sig = sign(SECRET, TS, bad.as_bytes());
        verify_request(SECRET, TS, &sig, bad.as_bytes(), NOW_MS).expect("signed");
        let as_command = SlashCommand::decode(bad.as_bytes());
        let as_press = ButtonPress::decode(bad.as_bytes());
        assert!(as_command.is_err() && as_press.is_err(), "{bad}");
    }
    assert_eq!(SlashCommand::decode(b"%%%"), Err(FormError::BadEscape(0)));
}
