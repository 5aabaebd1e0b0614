//! ChatOps: questions in plain words, answered from the same services as the REST API and
//! under the caller's role. The language (intents, names, times) is `sco-chat`'s; this
//! service builds its [`Lexicon`] from the live fleet, answers each intent with the fleet's
//! reads, and carries out actions (trigger, approve, reject) only on a second message naming
//! the confirmation id the first one returned, from the same person, still allowed to. Each
//! exchange is recorded; each action taken through chat is audited with the chat text.
//!
//! - `chatops.rs`: the service, the exchange record, actions and their confirmation.
//! - `chatops/reads.rs`: the answers to the read intents, from the fleet's reads.
//! - `chatops/text.rs`: how answers read (numbers, times, one line per item, series).

pub mod llm;
mod reads;
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use sco_chat::{confirmation_id, plain_answer, ConfirmError, Intent, Lexicon, Pending};

use crate::auth::Role;
use crate::domain::new_id;
use crate::error::{Code, Coded};
use crate::fleet::{
    now_ms, ActionRecord, DecideError, Decision, Fleet, ServiceError, TriggerError,
};
use crate::store::{Store, StoreError};

/// At most this many items (hosts, events, actions, processes) in one answer's data.
const MAX_ITEMS: usize = 50;
/// At most this many items named in the short text.
const MAX_LINES: usize = 5;
/// Rollup windows read for one metric's history (a day of 10 s windows, twice over).
const MAX_WINDOWS: i64 = 20_000;
/// Points of a history's series: windows are averaged into this many buckets at most, enough
/// for a sparkline.
const MAX_SERIES_POINTS: usize = 360;

/// One recorded question and its answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Exchange {
    pub id: String,
    pub at_ms: i64,
    pub user: String,
    pub role: String,
    /// `api` or `slack`.
    pub source: String,
    pub text: String,
    /// The understood intent (JSON), null when the text was refused before parsing.
    pub intent: Value,
    pub answer: String,
    /// `answered`, `awaiting_confirmation`, `executed`, `refused` or `error`.
    pub outcome: String,
    /// The confirmation id the exchange returned or used, else empty.
    pub confirmation_id: String,
}

/// Which exchanges to list.
#[derive(Debug, Clone, Default)]
pub struct ExchangeQuery {
    pub user: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// Who asks: our user name, their role now, and through which edge.
#[derive(Debug, Clone)]
pub struct Asker {
    pub user: String,
    pub role: Role,
    pub source: &'static str,
}

/// An action waiting for its confirmation: send `confirm <id>` before `expires_at_ms`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Confirmation {
    pub id: String,
    pub expires_at_ms: i64,
}

/// The answer to one message (the body of `POST /query`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Answer {
    /// A short answer for people.
    pub answer: String,
    /// The understood intent, tagged by `intent` (e.g. `explain`, `trigger`).
    #[schema(value_type = Object)]
    pub intent: Intent,
    /// The data behind the answer (hosts, events, series with min/mean/max, actions) and
    /// `link`s to the REST resources.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Present when an action waits for `confirm <id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    /// Proposals the answer offers to decide (action id, one line), for Slack's buttons.
    #[serde(skip)]
    pub proposals: Vec<(String, String)>,
    #[serde(skip)]
    outcome: &'static str,
}

impl Answer {
    fn new(intent: &Intent, answer: impl Into<String>, data: Value) -> Self {
        Answer {
            answer: answer.into(),
            intent: intent.clone(),
            data,
            confirmation: None,
            proposals: Vec::new(),
            outcome: "answered",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The message itself is unusable (empty, too long).
    #[error("{0}")]
    Invalid(String),
    /// The caller's role (or identity) does not allow it: the same answer REST would give.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Policy(#[from] ServiceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for ChatError {
    fn code(&self) -> Code {
        match self {
            ChatError::Invalid(_) => Code::Invalid,
            ChatError::Refused(_) => Code::Denied,
            ChatError::NotFound(_) => Code::NotFound,
            ChatError::Conflict(_) => Code::Conflict,
            ChatError::Trigger(e) => e.code(),
            ChatError::Decide(e) => e.code(),
            ChatError::Policy(e) => e.code(),
            ChatError::Store(e) => e.code(),
        }
    }
}

pub struct ChatOps {
    fleet: Arc<Fleet>,
    store: Store,
    /// The knowledge base: searched for the runbooks intent, cited when explaining an event.
    runbooks: crate::runbooks::Runbooks,
    /// The optional LLM provider (tool calling among the intents; the parser when it fails).
    llm: Option<llm::LlmClient>,
    stale_after_ms: i64,
    /// The Slack app's signing secret; `None`: Slack is not set up.
    slack_secret: Option<Vec<u8>>,
    /// Slack user id → our user name.
    slack_users: BTreeMap<String, String>,
    /// The time of this replica's last recorded exchange: each is recorded at least 1 ms
    /// after the one before, so a history lists one person's quick exchanges in order.
    last_exchange_ms: std::sync::atomic::AtomicI64,
}

impl ChatOps {
    pub fn new(fleet: Arc<Fleet>, store: Store, stale_after_ms: i64) -> Self {
        Self {
            fleet,
            runbooks: crate::runbooks::Runbooks::new(store.clone()),
            llm: None,
            store,
            stale_after_ms,
            slack_secret: None,
            slack_users: BTreeMap::new(),
            last_exchange_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Lets Slack ask: requests signed with `secret`, from the Slack users of `users`
    /// (Slack user id → our user name).
    pub fn with_slack(mut self, secret: Option<String>, users: BTreeMap<String, String>) -> Self {
        self.slack_secret = secret.filter(|s| !s.is_empty()).map(String::into_bytes);
        self.slack_users = users;
        self
    }

    /// Lets an LLM provider choose the intents and phrase the answers.
    pub fn with_llm(mut self, llm: Option<llm::LlmClient>) -> Self {
        self.llm = llm;
        self
    }

    /// The Slack signing secret, when Slack is set up.
    pub fn slack_secret(&self) -> Option<&[u8]> {
        self.slack_secret.as_deref()
    }

    /// Who a Slack user is here: the mapped user with their current role, or `None` for a
    /// Slack user nobody mapped (or mapped to a user that does not exist).
    pub async fn slack_asker(&self, slack_user: &str) -> Result<Option<Asker>, StoreError> {
        let Some(name) = self.slack_users.get(slack_user) else {
            return Ok(None);
        };
        match self.store.user_by_name(name).await? {
            Some((user, _)) => Ok(Some(Asker {
                user: user.username,
                role: user.role,
                source: "slack",
            })),
            None => {
                tracing::warn!(slack_user, user = %name, "slack.users maps to a user that does not exist");
                Ok(None)
            }
        }
    }

    /// The names a message may use, from the fleet as it is now.
    pub async fn lexicon(&self) -> Result<Lexicon, StoreError> {
        let mut lex = Lexicon::new();
        for h in self.fleet.hosts.hosts(self.stale_after_ms).await? {
            lex.add_host(h.id, h.hostname, h.labels);
        }
        for (p, _) in self.fleet.policies.policies().await? {
            lex.add_policy(p.name);
        }
        Ok(lex)
    }

    /// Answers one message and records the exchange, whatever the outcome.
    pub async fn ask(&self, asker: &Asker, text: &str) -> Result<Answer, ChatError> {
        let text = text.trim();
        let now = now_ms();
        let (intent, result) = if text.is_empty() {
            (None, Err(ChatError::Invalid("text: empty message".into())))
        } else if text.chars().count() > sco_chat::MAX_MESSAGE_CHARS {
            (
                None,
                Err(ChatError::Invalid(format!(
                    "text: longer than {} characters",
                    sco_chat::MAX_MESSAGE_CHARS
                ))),
            )
        } else {
            let lex = self.lexicon().await?;
            let (intent, by_llm) = self.understand(text, &lex, now).await;
            let mut result = match intent.authorize(asker.role) {
                Err(refusal) => Err(ChatError::Refused(refusal.to_string())),
                Ok(()) => self.answer(asker, text, &intent, &lex, now).await,
            };
            if let (Some(llm), Ok(a)) = (&self.llm, &mut result) {
                // an action's answer carries its confirmation id: it stays as written
                let action = matches!(
                    intent,
                    Intent::Approve { .. }
                        | Intent::Reject { .. }
                        | Intent::Trigger { .. }
                        | Intent::Confirm { .. }
                );
                if by_llm && !action {
                    if let Some(phrased) = llm.phrase(text, &intent, &a.data).await {
                        a.answer = phrased;
                    }
                }
                if let Some(d) = a.data.as_object_mut() {
                    d.insert(
                        "understood_by".into(),
                        json!(if by_llm { "llm" } else { "parser" }),
                    );
                }
            }
            (Some(intent), result)
        };
        let (answer, outcome, confirmation) = match &result {
            Ok(a) => (
                a.answer.clone(),
                a.outcome,
                a.confirmation.as_ref().map(|c| c.id.clone()),
            ),
            Err(ChatError::Refused(m)) => (m.clone(), "refused", None),
            Err(e) if matches!(e.code(), Code::Unavailable | Code::Internal) => {
                ("internal error".to_string(), "error", None)
            }
            Err(e) => (e.to_string(), "error", None),
        };
        let confirmation = confirmation.or_else(|| match &intent {
            Some(Intent::Confirm { confirmation_id }) => Some(confirmation_id.clone()),
            _ => None,
        });
        let at_ms = self
            .last_exchange_ms
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |last| Some(now.max(last + 1)),
            )
            .map_or(now, |last| now.max(last + 1));
        let exchange = Exchange {
            id: new_id("chat"),
            at_ms,
            user: asker.user.clone(),
            role: asker.role.as_str().to_string(),
            source: asker.source.to_string(),
            text: text.chars().take(sco_chat::MAX_MESSAGE_CHARS).collect(),
            intent: intent
                .as_ref()
                .and_then(|i| serde_json::to_value(i).ok())
                .unwrap_or(Value::Null),
            answer,
            outcome: outcome.to_string(),
            confirmation_id: confirmation.unwrap_or_default(),
        };
        if let Err(e) = self.store.insert_chat_exchange(&exchange).await {
            tracing::error!(error = %e, user = %asker.user, "cannot record a chat exchange");
        }
        if let Some(i) = &intent {
            tracing::info!(user = %asker.user, intent = i.name(), outcome, "chat");
        }
        result
    }

    /// The intent of `text`: the LLM provider's choice when one is set up and its call checks,
    /// else the parser's; true when it was the provider's.
    async fn understand(&self, text: &str, lex: &Lexicon, now: i64) -> (Intent, bool) {
        if let Some(llm) = &self.llm {
            match llm.choose(text, lex, now).await {
                Ok(intent) => return (intent, true),
                Err(e) => {
                    tracing::warn!(error = %e, "LLM provider failed; the parser answers")
                }
            }
        }
        (sco_chat::parse(text, lex, now), false)
    }

    /// Recorded exchanges, newest first.
    pub async fn history(&self, q: &ExchangeQuery) -> Result<Vec<Exchange>, StoreError> {
        self.store.chat_exchanges(q).await
    }

    async fn answer(
        &self,
        asker: &Asker,
        text: &str,
        intent: &Intent,
        lex: &Lexicon,
        now: i64,
    ) -> Result<Answer, ChatError> {
        if let Some(plain) = plain_answer(intent, lex) {
            let data = match intent {
                Intent::Unknown { suggestions, .. } => json!({ "suggestions": suggestions }),
                Intent::Clarify { candidates, .. } => json!({ "candidates": candidates }),
                _ => json!({}),
            };
            return Ok(Answer::new(intent, plain, data));
        }
        match intent {
            Intent::FleetStatus { selector } => self.fleet_status(intent, selector).await,
            Intent::HostStatus { host } => self.host_status(intent, host).await,
            Intent::Anomalies { .. }
            | Intent::MetricHistory { .. }
            | Intent::TopProcesses { .. }
            | Intent::Actions { .. }
            | Intent::PolicyStatus { .. } => self.read(intent, lex, now).await,
            Intent::Explain { target } => self.explain(intent, target, lex, now).await,
            Intent::Approve { .. } | Intent::Reject { .. } | Intent::Trigger { .. } => {
                self.propose(asker, text, intent, now).await
            }
            Intent::Confirm { confirmation_id } => {
                self.confirm(asker, text, intent, confirmation_id, now)
                    .await
            }
            Intent::Runbooks { query } => self.search_runbooks(intent, query).await,
            // answered by plain_answer above
            Intent::Help | Intent::Clarify { .. } | Intent::Unknown { .. } => {
                Ok(Answer::new(intent, sco_chat::help_text(lex), json!({})))
            }
        }
    }

    /// The first message of an action: nothing is carried out; a confirmation id is
    /// stored for the asker. A trigger's first message also asks the agent for a dry
    /// run, so the answer can be checked before confirming; a trigger asked as a dry run
    /// ends there.
    async fn propose(
        &self,
        asker: &Asker,
        text: &str,
        intent: &Intent,
        now: i64,
    ) -> Result<Answer, ChatError> {
        let mut data = json!({});
        if let Intent::Trigger {
            host,
            action,
            dry_run,
        } = intent
        {
            let action = serde_json::to_value(action)
                .map_err(|e| ChatError::Invalid(format!("action: {e}")))?;
            let record = self
                .fleet
                .remediation
                .trigger(&asker.user, &host.id, action, "dry_run")
                .await?;
            self.fleet
                .audit
                .record(
                    &asker.user,
                    "chat.dry_run",
                    &host.id,
                    record.state.as_str(),
                    json!({ "text": text, "request": record.id, "intent": intent.summary(), "source": asker.source }),
                )
                .await;
            data = json!({
                "dry_run": record,
                "link": format!("/remediation/actions?host={}", host.id),
            });
            if *dry_run {
                let mut answer = Answer::new(
                    intent,
                    format!(
                        "Asked {} for a dry run of {} ({}); nothing will be changed. \
                         Follow it at /remediation/actions?host={}.",
                        host.hostname,
                        intent.summary(),
                        record.id,
                        host.id
                    ),
                    data,
                );
                answer.outcome = "executed";
                return Ok(answer);
            }
        }
        let id = confirmation_id(rand::random::<[u8; 5]>());
        let pending = Pending::new(
            id.clone(),
            asker.user.clone(),
            intent.clone(),
            text.to_string(),
            now,
        )
        .map_err(|e| ChatError::Invalid(e.to_string()))?;
        let stored =
            serde_json::to_value(&pending).map_err(|e| ChatError::Invalid(e.to_string()))?;
        self.store
            .insert_chat_pending(&id, &asker.user, &stored, text, now, pending.expires_ms())
            .await?;
        let mut answer = Answer::new(
            intent,
            format!(
                "To {}, send \"confirm {id}\" within {} minutes. Nothing has been done yet{}.",
                intent.summary(),
                sco_chat::CONFIRMATION_TTL_MS / 60_000,
                if matches!(intent, Intent::Trigger { .. }) {
                    "; a dry run was asked for, to show what it would do"
                } else {
                    ""
                }
            ),
            data,
        );
        answer.confirmation = Some(Confirmation {
            id,
            expires_at_ms: pending.expires_ms(),
        });
        answer.outcome = "awaiting_confirmation";
        Ok(answer)
    }

    /// The second message of an action: the pending request is checked (the asker, in
    /// time, with a role that allows it), taken once, and carried out through the usual
    /// services; the audit entry carries both chat texts and the confirmation id.
    async fn confirm(
        &self,
        asker: &Asker,
        text: &str,
        intent: &Intent,
        id: &str,
        now: i64,
    ) -> Result<Answer, ChatError> {
        let gone = || {
            ChatError::NotFound(format!(
                "no pending request {id}: it was carried out, expired or never existed"
            ))
        };
        let stored = self.store.chat_pending(id).await?.ok_or_else(gone)?;
        let pending: Pending = serde_json::from_value(stored)
            .map_err(|e| StoreError::Unreadable(format!("chat confirmation {id}: {e}")))?;
        let action = match pending.check(id, &asker.user, asker.role, now) {
            Ok(action) => action.clone(),
            Err(e) => {
                let why = e.to_string();
                return Err(match e {
                    ConfirmError::Expired { .. } => {
                        // of no use to anyone any more
                        self.store.take_chat_pending(id).await?;
                        ChatError::Conflict(why)
                    }
                    ConfirmError::OtherUser | ConfirmError::Refused(_) => ChatError::Refused(why),
                    ConfirmError::WrongId(_) | ConfirmError::NotAnAction(_) => gone(),
                });
            }
        };
        if !self.store.take_chat_pending(id).await? {
            return Err(gone());
        }
        let (verb, record): (&str, ActionRecord) = match &action {
            Intent::Trigger { host, action, .. } => {
                let action = serde_json::to_value(action)
                    .map_err(|e| ChatError::Invalid(format!("action: {e}")))?;
                let r = self
                    .fleet
                    .remediation
                    .trigger(&asker.user, &host.id, action, "execute")
                    .await?;
                ("trigger", r)
            }
            Intent::Approve { action_id } => (
                "approve",
                self.fleet
                    .remediation
                    .decide(&asker.user, action_id, Decision::Approve)
                    .await?,
            ),
            Intent::Reject { action_id, reason } => (
                "reject",
                self.fleet
                    .remediation
                    .decide(
                        &asker.user,
                        action_id,
                        Decision::Reject {
                            reason: reason.clone().unwrap_or_default(),
                        },
                    )
                    .await?,
            ),
            other => {
                return Err(ChatError::Invalid(format!(
                    "{} is not an action",
                    other.name()
                )))
            }
        };
        self.fleet
            .audit
            .record(
                &asker.user,
                &format!("chat.{verb}"),
                &record.host_id,
                record.state.as_str(),
                json!({
                    "text": pending.text, "confirm_text": text, "confirmation_id": id,
                    "request": record.id, "intent": action.summary(), "source": asker.source,
                }),
            )
            .await;
        let mut answer = Answer::new(
            intent,
            format!(
                "Done: {} ({}), now {}. Follow it at /remediation/actions?host={}.",
                action.summary(),
                record.id,
                record.state.as_str(),
                record.host_id
            ),
            json!({
                "action": record,
                "link": format!("/remediation/actions?host={}", record.host_id),
            }),
        );
        answer.outcome = "executed";
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::remediation::{Approval, AuditQuery};
    use crate::domain::HostInfo;
    use crate::fleet::ActionState;
    use crate::http::access::Access;
    use crate::store::sqlite_url;
    use crate::telemetry::Telemetry;

    const HOST: &str = "web-1-0a1b2c3d";

    fn lexicon() -> Lexicon {
        let mut lex = Lexicon::new();
        lex.add_host(
            HOST,
            "web-1",
            BTreeMap::from([("role".into(), "web".into())]),
        );
        lex.add_policy("cpu-guard");
        lex
    }

    /// Each intent, a message that asks for it, and the REST operation it stands for: the
    /// chat refuses exactly the roles that operation's declaration refuses.
    #[test]
    fn chat_needs_the_role_of_each_intents_rest_twin() {
        let (_, mut doc) = crate::http::routes().split_for_parts();
        crate::http::openapi::finish(&mut doc);
        let access = crate::http::openapi::access_table(&doc);
        let rest_role = |method: &str, path: &str| match access.get(method, path) {
            Some(Ok(Access::Role(role))) => *role,
            other => panic!("{method} {path}: {other:?}"),
        };
        let cases = [
            ("fleet status", "fleet_status", "GET", "/hosts"),
            ("status of web-1", "host_status", "GET", "/hosts/{id}"),
            ("open anomalies on web-1", "anomalies", "GET", "/anomaly"),
            (
                "what's wrong with web-1?",
                "explain",
                "GET",
                "/anomaly/{id}",
            ),
            (
                "cpu on web-1 last hour",
                "metric_history",
                "GET",
                "/monitoring/metrics",
            ),
            (
                "top processes by memory on web-1",
                "top_processes",
                "GET",
                "/hosts/{id}",
            ),
            (
                "pending proposals",
                "actions",
                "GET",
                "/remediation/actions",
            ),
            (
                "how is cpu-guard rolling out",
                "policy_status",
                "GET",
                "/policies/{name}/status",
            ),
            (
                "approve act-0123456789abcdef",
                "approve",
                "POST",
                "/remediation/actions/{id}/approve",
            ),
            (
                "reject act-0123456789abcdef because too risky",
                "reject",
                "POST",
                "/remediation/actions/{id}/reject",
            ),
            (
                "restart nginx on web-1",
                "trigger",
                "POST",
                "/remediation/trigger",
            ),
            (
                "kill the burner on web-1",
                "trigger",
                "POST",
                "/remediation/trigger",
            ),
            (
                "confirm cf-abcdefgh",
                "confirm",
                "POST",
                "/remediation/trigger",
            ),
            ("help", "help", "POST", "/query"),
            ("order me a pizza", "unknown", "POST", "/query"),
        ];
        let lex = lexicon();
        let mut refused = Vec::new();
        for (text, name, method, path) in cases {
            let intent = sco_chat::parse(text, &lex, 1_773_153_000_000);
            assert_eq!(intent.name(), name, "{text}: {intent:?}");
            let needed = rest_role(method, path);
            for role in [Role::Viewer, Role::Operator, Role::Admin] {
                let chat = intent.authorize(role).is_ok();
                assert_eq!(
                    chat,
                    role >= needed,
                    "{text:?} as {}: chat {} but {method} {path} needs {}",
                    role.as_str(),
                    if chat { "allows" } else { "refuses" },
                    needed.as_str()
                );
                if !chat {
                    refused.push((name, role.as_str()));
                }
            }
        }
        // the matrix is not vacuous: a viewer cannot decide, trigger or confirm
        for name in ["approve", "reject", "trigger", "confirm"] {
            assert!(refused.contains(&(name, "viewer")), "{name}: {refused:?}");
            assert!(
                !refused.contains(&(name, "operator")),
                "{name}: {refused:?}"
            );
        }
    }

    async fn service(dir: &std::path::Path) -> (ChatOps, Store) {
        let store = Store::connect(&sqlite_url(dir))
            .await
            .expect("sqlite store");
        let info = HostInfo {
            hostname: "web-1".into(),
            ..HostInfo::default()
        };
        store
            .upsert_host(HOST, &info, now_ms())
            .await
            .expect("host");
        let fleet = Arc::new(Fleet::new(store.clone(), Arc::new(Telemetry::default())));
        (ChatOps::new(fleet, store.clone(), 60_000), store)
    }

    fn asker(user: &str, role: Role) -> Asker {
        Asker {
            user: user.into(),
            role,
            source: "api",
        }
    }

    fn proposal(id: &str) -> ActionRecord {
        let now = now_ms();
        ActionRecord {
            id: id.into(),
            host_id: HOST.into(),
            rule: "cpu-guard/stop-burner".into(),
            policy: "cpu-guard".into(),
            action: json!({"type": "kill_process", "pattern": "*burner*"}),
            mode: "execute".into(),
            approval: Approval::Approve,
            state: ActionState::Proposed,
            reason: String::new(),
            requested_by: format!("agent:{HOST}"),
            decided_by: String::new(),
            max_concurrent: 1,
            expires_at_ms: now + 600_000,
            evidence: None,
            created_at_ms: now,
            updated_at_ms: now,
            report: None,
        }
    }

    #[tokio::test]
    async fn an_approval_through_chat_waits_for_the_askers_confirmation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chat, store) = service(dir.path()).await;
        let id = "act-0123456789abcdef";
        store.insert_action(&proposal(id)).await.expect("proposal");
        let text = format!("approve {id}");

        // a viewer is refused, and nothing waits
        let err = chat
            .ask(&asker("vera", Role::Viewer), &text)
            .await
            .expect_err("a viewer cannot approve");
        assert!(matches!(err, ChatError::Refused(_)), "{err:?}");
        assert_eq!(err.code(), Code::Denied);

        // an operator gets a confirmation; nothing is decided yet
        let first = chat
            .ask(&asker("otto", Role::Operator), &text)
            .await
            .expect("operator");
        let cf = first.confirmation.clone().expect("a confirmation").id;
        assert!(
            first.answer.contains(&format!("confirm {cf}")),
            "{}",
            first.answer
        );
        let a = store.action(id).await.expect("read").expect("stored");
        assert_eq!(a.state, ActionState::Proposed);

        // nobody else can use it: a viewer (role), another operator (identity)
        let confirm = format!("confirm {cf}");
        for (who, role) in [("vera", Role::Viewer), ("olga", Role::Operator)] {
            let err = chat
                .ask(&asker(who, role), &confirm)
                .await
                .expect_err("not theirs");
            assert!(matches!(err, ChatError::Refused(_)), "{who}: {err:?}");
        }
        let a = store.action(id).await.expect("read").expect("stored");
        assert_eq!(a.state, ActionState::Proposed, "refusals decided nothing");

        // the asker confirms: approved through decide, audited with the chat text
        let done = chat
            .ask(&asker("otto", Role::Operator), &confirm)
            .await
            .expect("confirmed");
        assert_eq!(done.data["action"]["state"], "approved", "{}", done.data);
        let a = store.action(id).await.expect("read").expect("stored");
        assert_eq!(a.state, ActionState::Approved);
        assert_eq!(a.decided_by, "otto");
        let audit = store
            .audit_log(&AuditQuery {
                action: Some("chat.approve".into()),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .expect("audit");
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!(audit[0].actor, "otto");
        assert_eq!(audit[0].detail["text"], text.as_str());
        assert_eq!(audit[0].detail["confirmation_id"], cf.as_str());
        assert_eq!(audit[0].detail["request"], id);

        // one use only
        let err = chat
            .ask(&asker("otto", Role::Operator), &confirm)
            .await
            .expect_err("used");
        assert!(matches!(err, ChatError::NotFound(_)), "{err:?}");

        // a confirmation sent too late is refused (409) and dropped
        let old = now_ms() - sco_chat::CONFIRMATION_TTL_MS - 60_000;
        let late = Pending::new(
            "cf-aaaaaaaa".into(),
            "otto".into(),
            sco_chat::parse(&text, &lexicon(), old),
            text.clone(),
            old,
        )
        .expect("pending");
        store
            .insert_chat_pending(
                "cf-aaaaaaaa",
                "otto",
                &serde_json::to_value(&late).expect("json"),
                &text,
                old,
                late.expires_ms(),
            )
            .await
            .expect("stored");
        let err = chat
            .ask(&asker("otto", Role::Operator), "confirm cf-aaaaaaaa")
            .await
            .expect_err("expired");
        assert!(
            matches!(&err, ChatError::Conflict(m) if m.contains("expired")),
            "{err:?}"
        );
        assert_eq!(err.code(), Code::Conflict);
        assert!(store
            .chat_pending("cf-aaaaaaaa")
            .await
            .expect("read")
            .is_none());

        // every exchange is recorded, newest first, per user
        let otto = chat
            .history(&ExchangeQuery {
                user: Some("otto".into()),
                limit: 10,
                ..ExchangeQuery::default()
            })
            .await
            .expect("history");
        let outcomes: Vec<&str> = otto.iter().map(|e| e.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["error", "error", "executed", "awaiting_confirmation"]
        );
        assert_eq!(otto[0].confirmation_id, "cf-aaaaaaaa");
        assert!(otto[1..].iter().all(|e| e.confirmation_id == cf));
        let all = chat
            .history(&ExchangeQuery {
                limit: 2,
                offset: 0,
                ..ExchangeQuery::default()
            })
            .await
            .expect("history");
        assert_eq!(all.len(), 2);
        let vera = chat
            .history(&ExchangeQuery {
                user: Some("vera".into()),
                limit: 10,
                ..ExchangeQuery::default()
            })
            .await
            .expect("history");
        assert_eq!(vera.len(), 2);
        assert!(vera.iter().all(|e| e.outcome == "refused"), "{vera:?}");
    }

    #[tokio::test]
    async fn a_metrics_history_has_min_mean_max_and_a_short_series() {
        use crate::domain::{MetricRow, RollupBatch};
        let dir = tempfile::tempdir().expect("tempdir");
        let (chat, store) = service(dir.path()).await;
        let now = now_ms();
        // 1000 windows of 1 s over the last 20 minutes: cpu climbs 0..999
        for i in 0..1000_i64 {
            let end = now - 1_200_000 + i * 1000;
            let v = i as f64;
            let batch = RollupBatch {
                seq: i + 1,
                produced_at_ms: end,
                window_start_ms: end - 1000,
                window_end_ms: end,
                metrics: vec![MetricRow {
                    metric: "cpu.total_pct".into(),
                    device: String::new(),
                    min: v,
                    mean: v,
                    max: v,
                    last: v,
                    count: 1,
                }],
                top_processes: Vec::new(),
                outbox_dropped_total: 0,
            };
            store
                .ingest_rollup(HOST, &batch, now)
                .await
                .expect("rollup");
        }
        let a = chat
            .ask(&asker("vera", Role::Viewer), "cpu on web-1 last hour")
            .await
            .expect("history");
        assert!(
            a.answer
                .contains("cpu.total_pct: min 0 · mean 500 · max 999 (1000 windows)"),
            "{}",
            a.answer
        );
        let s = &a.data["series"][0];
        assert_eq!(s["metric"], "cpu.total_pct");
        assert_eq!(s["truncated"], false);
        assert_eq!(
            (s["min"].as_f64(), s["mean"].as_f64(), s["max"].as_f64()),
            (Some(0.0), Some(499.5), Some(999.0))
        );
        let points = s["points"].as_array().expect("points");
        assert!(
            points.len() <= MAX_SERIES_POINTS && points.len() >= 300,
            "{}",
            points.len()
        );
        // buckets keep their order and end at the newest window
        assert_eq!(
            points.last().and_then(|p| p[0].as_i64()),
            Some(now - 201_000)
        );
        assert_eq!(a.data["link"], format!("/hosts/{HOST}"));
    }

    #[tokio::test]
    async fn reads_answer_with_data_and_bad_text_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chat, _) = service(dir.path()).await;
        let viewer = asker("vera", Role::Viewer);
        let a = chat.ask(&viewer, "fleet status").await.expect("fleet");
        assert!(a.answer.starts_with("1 host: "), "{}", a.answer);
        assert_eq!(a.data["hosts"][0]["link"], format!("/hosts/{HOST}"));
        let a = chat
            .ask(&viewer, "what's wrong with web-1?")
            .await
            .expect("explain");
        assert!(a.answer.contains("no open anomalies"), "{}", a.answer);
        let a = chat
            .ask(&viewer, "cpu on web-1 last hour")
            .await
            .expect("cpu");
        assert!(a.answer.contains("no data"), "{}", a.answer);
        let a = chat
            .ask(&viewer, "runbooks for disk full")
            .await
            .expect("kb");
        assert!(a.answer.contains("No runbook matches"), "{}", a.answer);
        chat.runbooks.seed(now_ms()).await.expect("seed");
        let a = chat
            .ask(&viewer, "runbooks for disk full")
            .await
            .expect("kb");
        assert!(
            a.answer.contains("A file system filling up"),
            "{}",
            a.answer
        );
        assert_eq!(a.data["runbooks"][0]["id"], "disk-filling", "{}", a.data);
        let a = chat
            .ask(&viewer, "order me a pizza")
            .await
            .expect("unknown");
        assert_eq!(a.intent.name(), "unknown");
        assert!(a.data["suggestions"].is_array());
        for bad in ["", "   ", &"x".repeat(sco_chat::MAX_MESSAGE_CHARS + 1)] {
            let err = chat.ask(&viewer, bad).await.expect_err("bad text");
            assert!(
                matches!(&err, ChatError::Invalid(m) if m.starts_with("text: ")),
                "{err:?}"
            );
        }
    }

    /// One change of the anomaly event opened at `open_seq` (`(seq, open_seq, kind)`), with
    /// one contributor of its family and, when it recovered, when.
    fn anomaly_change(
        now: i64,
        (seq, open_seq, kind): (i64, i64, crate::domain::ChangeKind),
        family: &str,
        severity: crate::domain::Severity,
        recovered_ms: Option<i64>,
    ) -> crate::domain::AnomalyChange {
        use crate::domain::{AnomalyChange, ChangeKind, Contributor};
        AnomalyChange {
            seq,
            produced_at_ms: now,
            kind,
            open_seq,
            run_started_ms: 1,
            started_ms: now - 600_000 + open_seq * 1000,
            updated_ms: now,
            ended_ms: (kind == ChangeKind::Closed).then_some(now),
            score: 0.9,
            peak_score: 0.9,
            severity,
            contributors: vec![Contributor {
                metric: format!("{family}.metric"),
                value: 97.0,
                expected_low: 20.0,
                expected_high: 60.0,
                contribution: 0.8,
            }],
            context: Vec::new(),
            context_processes: Vec::new(),
            model: "test".into(),
            family: family.into(),
            close_reason: String::new(),
            culprits: Vec::new(),
            recovered_ms,
        }
    }

    /// A host's status and why it is unwell say held of each open event that recovered (the
    /// agent holds it open in case it comes back), with when it recovered, and not of one
    /// still firing.
    #[tokio::test]
    async fn host_status_and_why_say_held_only_of_the_open_events_that_recovered() {
        use crate::domain::{ChangeKind, Severity};
        let dir = tempfile::tempdir().expect("tempdir");
        let (chat, store) = service(dir.path()).await;
        let now = now_ms();
        let recovered_ms = now - 30_000;
        let change = |seq, open_seq, kind, family: &str, severity| {
            let recovered = (kind == ChangeKind::Updated).then_some(recovered_ms);
            anomaly_change(now, (seq, open_seq, kind), family, severity, recovered)
        };
        // cpu high and disk_io medium recovered and are held; memory low still fires
        for c in [
            change(1, 1, ChangeKind::Opened, "cpu", Severity::High),
            change(2, 1, ChangeKind::Updated, "cpu", Severity::High),
            change(3, 3, ChangeKind::Opened, "memory", Severity::Low),
            change(4, 4, ChangeKind::Opened, "disk_io", Severity::Medium),
            change(5, 4, ChangeKind::Updated, "disk_io", Severity::Medium),
        ] {
            store.ingest_anomaly(HOST, &c, now).await.expect("anomaly");
        }
        let held = format!(
            "recovered at {} and held",
            sco_policy::utc::utc(recovered_ms)
        );
        let viewer = asker("vera", Role::Viewer);

        let a = chat.ask(&viewer, "status of web-1").await.expect("status");
        let lines: Vec<&str> = a.answer.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{}", a.answer);
        for line in lines {
            let firing = line.starts_with("• memory low since ");
            assert_eq!(
                line.contains(&format!(", {held} (top: ")),
                !firing,
                "{line}"
            );
            assert_eq!(line.contains("held"), !firing, "{line}");
        }

        let a = chat
            .ask(&viewer, "what's wrong with web-1?")
            .await
            .expect("explain");
        let head = a
            .answer
            .split(" Top contributor")
            .next()
            .unwrap_or_default();
        assert!(
            head.starts_with(&format!(
                "web-1 ({HOST}) has a high cpu anomaly ({HOST}:1), open since "
            )),
            "{}",
            a.answer
        );
        assert!(
            head.contains(&format!(" ago, {held}, score 0.9")),
            "{}",
            a.answer
        );
        assert!(
            a.answer.contains(&format!(
                " 2 more open: disk_io medium ({held}), memory low."
            )),
            "{}",
            a.answer
        );
    }

    /// The fleet's status says how many of each host's open events recovered and are held,
    /// read with the counts: not an event still firing, one that fired again after it
    /// recovered, or a closed one.
    #[tokio::test]
    async fn the_fleet_status_says_how_many_open_events_are_held() {
        use crate::domain::{ChangeKind, Severity};
        const DB: &str = "db-1-4e5f6a7b";
        let dir = tempfile::tempdir().expect("tempdir");
        let (chat, store) = service(dir.path()).await;
        let now = now_ms();
        let info = HostInfo {
            hostname: "db-1".into(),
            ..HostInfo::default()
        };
        store.upsert_host(DB, &info, now).await.expect("host");
        let recovered = Some(now - 30_000);
        let (opened, updated, closed) =
            (ChangeKind::Opened, ChangeKind::Updated, ChangeKind::Closed);
        let changes = [
            // web-1: cpu high held twice over, memory low firing, network medium fired again
            // after it recovered, disk_space low closed after it recovered
            (HOST, (1, 1, opened), "cpu", Severity::High, None),
            (HOST, (2, 1, updated), "cpu", Severity::High, recovered),
            (HOST, (3, 3, opened), "cpu", Severity::High, None),
            (HOST, (4, 3, updated), "cpu", Severity::High, recovered),
            (HOST, (5, 5, opened), "memory", Severity::Low, None),
            (HOST, (6, 6, opened), "network", Severity::Medium, None),
            (
                HOST,
                (7, 6, updated),
                "network",
                Severity::Medium,
                recovered,
            ),
            (HOST, (8, 6, updated), "network", Severity::Medium, None),
            (HOST, (9, 9, opened), "disk_space", Severity::Low, None),
            (
                HOST,
                (10, 9, updated),
                "disk_space",
                Severity::Low,
                recovered,
            ),
            (
                HOST,
                (11, 9, closed),
                "disk_space",
                Severity::Low,
                recovered,
            ),
            // db-1: one event, held
            (DB, (1, 1, opened), "disk_io", Severity::Medium, None),
            (DB, (2, 1, updated), "disk_io", Severity::Medium, recovered),
        ];
        for (host, seqs, family, severity, recovered) in changes {
            let c = anomaly_change(now, seqs, family, severity, recovered);
            store.ingest_anomaly(host, &c, now).await.expect("anomaly");
        }
        let viewer = asker("vera", Role::Viewer);
        let a = chat.ask(&viewer, "fleet status").await.expect("fleet");
        let lines: Vec<&str> = a.answer.lines().collect();
        assert_eq!(
            lines[1..],
            [
                format!("• db-1 ({DB}): 1 open anomaly (disk_io medium), recovered and held"),
                format!(
                    "• web-1 ({HOST}): 4 open anomalies (cpu high, memory low, network medium), \
                     2 of them recovered and held"
                ),
            ],
            "{}",
            a.answer
        );
        // the data says the same per host: how many open, how many of them held
        let counts = |data: &Value, id: &str| {
            let hosts = data["hosts"].as_array().expect("hosts");
            let h = hosts.iter().find(|h| h["id"] == id).expect(id);
            (h["open_anomalies"].as_i64(), h["held_anomalies"].as_i64())
        };
        assert_eq!(counts(&a.data, HOST), (Some(4), Some(2)), "{}", a.data);
        assert_eq!(counts(&a.data, DB), (Some(1), Some(1)), "{}", a.data);

        // once web-1's cpu events fire again, none of its open events is held
        for (seq, open_seq) in [(12, 1), (13, 3)] {
            let c = anomaly_change(now, (seq, open_seq, updated), "cpu", Severity::High, None);
            store.ingest_anomaly(HOST, &c, now).await.expect("anomaly");
        }
        let a = chat.ask(&viewer, "fleet status").await.expect("fleet");
        assert!(
            a.answer.ends_with(&format!(
                "\n• web-1 ({HOST}): 4 open anomalies (cpu high, memory low, network medium)"
            )),
            "{}",
            a.answer
        );
        assert_eq!(counts(&a.data, HOST), (Some(4), Some(0)), "{}", a.data);
    }

    /// What the fake chat-completions provider does with the next requests.
    #[derive(Clone)]
    enum Provider {
        /// Call this tool with these arguments; phrase answers as "PHRASED: <n> bytes of data".
        Tool(&'static str, Value),
        Status(u16),
        /// Answer after 3 s.
        Slow,
    }

    /// The requests the fake provider got: Authorization header and body.
    type Seen = Arc<std::sync::Mutex<Vec<(Option<String>, Value)>>>;

    /// A local server speaking the OpenAI chat-completions protocol; it records what it got.
    struct FakeProvider {
        url: String,
        mode: Arc<std::sync::Mutex<Provider>>,
        seen: Seen,
    }

    impl FakeProvider {
        async fn start() -> Self {
            use axum::extract::State;
            type Shared = (Arc<std::sync::Mutex<Provider>>, Seen);
            async fn completions(
                State((mode, seen)): State<Shared>,
                headers: axum::http::HeaderMap,
                axum::Json(body): axum::Json<Value>,
            ) -> axum::response::Response {
                use axum::response::IntoResponse;
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                seen.lock().expect("seen").push((auth, body.clone()));
                let mode = mode.lock().expect("mode").clone();
                match mode {
                    Provider::Status(code) => (
                        axum::http::StatusCode::from_u16(code).expect("status"),
                        "provider error",
                    )
                        .into_response(),
                    Provider::Slow => {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        axum::Json(json!({})).into_response()
                    }
                    Provider::Tool(name, args) if body.get("tools").is_some() => {
                        axum::Json(json!({"choices": [{"message": {"role": "assistant",
                            "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": name, "arguments": args.to_string()}}]}}]}))
                        .into_response()
                    }
                    Provider::Tool(..) => {
                        let data = body["messages"][2]["content"].as_str().unwrap_or_default();
                        axum::Json(json!({"choices": [{"message": {"role": "assistant",
                            "content": format!("PHRASED: {} bytes of data", data.len())}}]}))
                        .into_response()
                    }
                }
            }
            let mode = Arc::new(std::sync::Mutex::new(Provider::Status(500)));
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let app = axum::Router::new()
                .route("/v1/chat/completions", axum::routing::post(completions))
                .with_state((mode.clone(), seen.clone()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self {
                url: format!("http://{addr}/v1/chat/completions"),
                mode,
                seen,
            }
        }

        fn set(&self, p: Provider) {
            *self.mode.lock().expect("mode") = p;
            self.seen.lock().expect("seen").clear();
        }

        fn seen(&self) -> Vec<(Option<String>, Value)> {
            self.seen.lock().expect("seen").clone()
        }
    }

    #[tokio::test]
    async fn an_llm_provider_chooses_among_the_intents_and_the_parser_answers_when_it_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chat, _store) = service(dir.path()).await;
        let fake = FakeProvider::start().await;
        let llm = llm::LlmClient::new(
            fake.url.clone(),
            "test-model".into(),
            Some("key-123".into()),
            std::time::Duration::from_millis(800),
            None,
        )
        .expect("client");
        let chat = chat.with_llm(Some(llm));
        let viewer = asker("vera", Role::Viewer);

        // the model chooses host_status for words the parser would not take, then phrases the
        // answer from the data that intent returned
        fake.set(Provider::Tool("host_status", json!({"host": "web-1"})));
        let a = chat
            .ask(&viewer, "is the first web box ok")
            .await
            .expect("answer");
        assert_eq!(a.intent.name(), "host_status");
        assert!(a.answer.starts_with("PHRASED: "), "{}", a.answer);
        assert_eq!(a.data["understood_by"], "llm", "{}", a.data);
        let seen = fake.seen();
        assert_eq!(seen.len(), 2, "a tool call and a phrasing");
        assert_eq!(seen[0].0.as_deref(), Some("Bearer key-123"));
        assert_eq!(seen[0].1["model"], "test-model");
        assert_eq!(seen[0].1["tool_choice"], "required");
        assert!(seen[0].1["tools"].as_array().is_some_and(|t| t.len() > 10));
        assert!(seen[1].1.get("tools").is_none());
        assert!(
            seen[1].1["messages"][2]["content"]
                .as_str()
                .is_some_and(|c| c.contains("web-1")),
            "the phrasing request carries the data: {}",
            seen[1].1
        );

        // a provider error or a timeout: the parser answers
        for (mode, what) in [(Provider::Status(500), "500"), (Provider::Slow, "timeout")] {
            fake.set(mode);
            let started = std::time::Instant::now();
            let a = chat.ask(&viewer, "status of web-1").await.expect("answer");
            assert_eq!(a.intent.name(), "host_status", "{what}");
            assert_eq!(a.data["understood_by"], "parser", "{what}");
            assert!(!a.answer.starts_with("PHRASED"), "{what}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(3),
                "{what}"
            );
        }

        // a tool call that does not check (an unknown tool, a host that does not exist):
        // the parser answers
        for (name, args) in [
            ("rm_rf", json!({})),
            ("host_status", json!({"host": "no-such-host"})),
        ] {
            fake.set(Provider::Tool(name, args));
            let a = chat.ask(&viewer, "fleet status").await.expect("answer");
            assert_eq!(a.intent.name(), "fleet_status", "{name}");
            assert_eq!(a.data["understood_by"], "parser");
        }

        // the model's choice has exactly the asker's role: a viewer cannot trigger through it
        fake.set(Provider::Tool(
            "trigger",
            json!({"host": "web-1", "action": "restart_service", "unit": "nginx"}),
        ));
        let e = chat
            .ask(&viewer, "please fix web-1")
            .await
            .expect_err("refused");
        assert!(
            matches!(&e, ChatError::Refused(m) if m.contains("operator")),
            "{e:?}"
        );
        // an operator gets a confirmation, worded by us (it carries the id), not phrased
        fake.set(Provider::Tool(
            "trigger",
            json!({"host": "web-1", "action": "restart_service", "unit": "nginx"}),
        ));
        let operator = asker("otto", Role::Operator);
        let a = chat
            .ask(&operator, "please fix web-1")
            .await
            .expect("answer");
        assert_eq!(a.intent.name(), "trigger");
        let id = a.confirmation.as_ref().expect("confirmation").id.clone();
        assert!(a.answer.contains(&id), "{}", a.answer);
        assert_eq!(fake.seen().len(), 1, "no phrasing request for an action");
    }
}
