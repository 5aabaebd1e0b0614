//! `/slack/*`: ChatOps from a Slack app. Slack cannot send our bearer token, so the routes
//! are declared public; instead every request must carry Slack's signature of its body
//! (`X-Slack-Signature` over `v0:{X-Slack-Request-Timestamp}:{body}`, HMAC-SHA256 with the
//! app's signing secret, within five minutes), else 401. The Slack user is mapped to one
//! of our users by configuration (`slack.users`) and asks with that user's current role;
//! an unmapped user gets a polite refusal. Answers are Block Kit messages.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use sco_chat::slack::{verify_request, ButtonPress, Reply, SlashCommand};

use super::error::{AppError, ErrorBody};
use super::AppState;
use crate::chatops::{Answer, Asker, ChatError};
use crate::error::{Code, Coded};
use crate::fleet::now_ms;

/// The slash-command form Slack posts (documentation only: the handler reads the raw body,
/// which the signature covers).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SlashCommandForm {
    /// The command typed, e.g. `/sco`.
    command: String,
    /// The question, e.g. `what's wrong with web-3?`.
    text: String,
    /// The Slack user (`U024BE7LH`), mapped by `slack.users`.
    user_id: String,
    user_name: Option<String>,
    team_id: Option<String>,
    channel_id: Option<String>,
    response_url: Option<String>,
    trigger_id: Option<String>,
}

/// The interactivity form Slack posts (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct InteractionForm {
    /// JSON of a `block_actions` press on an approve or reject button.
    payload: String,
}

/// A Block Kit message as Slack takes it in a slash-command or interactivity response:
/// `response_type` (`ephemeral` or `in_channel`), fallback `text` and `blocks`
/// (`sco_chat::slack::Reply` renders it).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct SlackMessage(Value);

impl From<Reply> for SlackMessage {
    fn from(reply: Reply) -> Self {
        SlackMessage(reply.to_json())
    }
}

/// Refuses a request that Slack did not sign with our secret.
fn verified(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    let Some(secret) = state.chat.slack_secret() else {
        return Err(AppError::unauthorized(
            "slack is not set up on this control plane (slack.signing_secret)",
        ));
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    verify_request(
        secret,
        &header("x-slack-request-timestamp"),
        &header("x-slack-signature"),
        body,
        now_ms(),
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "refused a slack request");
        AppError::unauthorized(format!("slack signature: {e}"))
    })
}

fn unmapped(slack_user: &str) -> Json<SlackMessage> {
    Json(
        Reply::new(format!(
            "Sorry, your Slack user ({slack_user}) is not linked to a SmartCloudOps account, so I \
             cannot answer. Ask an administrator to add it under [slack.users]."
        ))
        .into(),
    )
}

/// An answer (or why there is none) as a Slack message.
fn reply(result: Result<Answer, ChatError>, asker: &Asker) -> Json<SlackMessage> {
    let reply = match result {
        Ok(answer) => {
            let mut r = Reply::new(answer.answer.clone());
            for (id, summary) in &answer.proposals {
                r = r.proposal(id.clone(), summary.clone());
            }
            if let Some(c) = &answer.confirmation {
                let secs = (c.expires_at_ms - now_ms()).max(0) / 1000;
                r = r.context(format!(
                    "To go ahead: /sco confirm {} (within {} min)",
                    c.id,
                    (secs + 59) / 60
                ));
            }
            if let Some(link) = answer.data.get("link").and_then(Value::as_str) {
                r = r.context(format!("REST: {link}"));
            }
            r
        }
        Err(ChatError::Refused(why)) => Reply::new(format!("Sorry, I cannot do that: {why}.")),
        Err(e) if matches!(e.code(), Code::Unavailable | Code::Internal) => {
            Reply::new("Something went wrong on the control plane; try again in a moment.")
        }
        Err(e) => Reply::new(format!("That did not work: {e}")),
    };
    Json(
        reply
            .context(format!("asked as {} ({})", asker.user, asker.role.as_str()))
            .into(),
    )
}

/// A slash command (`/sco what's wrong with web-3`): answered as the mapped user.
#[utoipa::path(post, path = "/slack/commands", tag = "chatops", security(()),
    request_body(content = SlashCommandForm, content_type = "application/x-www-form-urlencoded",
        description = "Slack's slash-command form, signed by Slack"),
    responses(
        (status = 200, description = "a Block Kit message (also the polite refusal of an unmapped Slack user)", body = SlackMessage),
        (status = 400, description = "not a slash-command form (named field)", body = ErrorBody),
        (status = 401, description = "missing, stale or wrong Slack signature, or Slack not set up", body = ErrorBody),
    ))]
pub async fn command(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SlackMessage>, AppError> {
    verified(&state, &headers, &body)?;
    let cmd = SlashCommand::decode(&body).map_err(|e| AppError::bad_request(e.to_string()))?;
    let Some(asker) = state.chat.slack_asker(&cmd.user_id).await? else {
        return Ok(unmapped(&cmd.user_id));
    };
    let result = state.chat.ask(&asker, &cmd.text).await;
    Ok(reply(result, &asker))
}

/// A press on an approve or reject button: asked as the mapped user, like the message
/// `approve <id>`; it answers with a confirmation id to send with `/sco confirm`.
#[utoipa::path(post, path = "/slack/interactions", tag = "chatops", security(()),
    request_body(content = InteractionForm, content_type = "application/x-www-form-urlencoded",
        description = "Slack's interactivity form (`payload=` JSON of a block_actions), signed by Slack"),
    responses(
        (status = 200, description = "a Block Kit message", body = SlackMessage),
        (status = 400, description = "not one of our buttons (named field)", body = ErrorBody),
        (status = 401, description = "missing, stale or wrong Slack signature, or Slack not set up", body = ErrorBody),
    ))]
pub async fn interaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SlackMessage>, AppError> {
    verified(&state, &headers, &body)?;
    let press = ButtonPress::decode(&body).map_err(|e| AppError::bad_request(e.to_string()))?;
    let Some(asker) = state.chat.slack_asker(&press.user_id).await? else {
        return Ok(unmapped(&press.user_id));
    };
    // The button's intent is re-read from its text, so it goes through exactly the path
    // (role, confirmation, audit) a typed message does.
    let result = state.chat.ask(&asker, &press.intent.summary()).await;
    Ok(reply(result, &asker))
}
