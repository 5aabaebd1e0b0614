//! The language core of ChatOps: what a message from a person asks of the fleet, as a
//! typed intent, with no network, no clock and no database. The control plane builds a
//! [`Lexicon`] from the fleet, calls [`parse`] with the caller's text and `now`, checks
//! the caller's role with [`Intent::authorize`], and answers the intent with its own
//! services; Slack requests and answers go through [`slack`], and an optional model's
//! tool calls through [`llm`]. README.md lists what it understands and its accuracy.
//!
//! - `intent.rs`: [`Intent`] and its typed arguments ([`HostRef`], [`Scope`],
//!   [`ExplainTarget`], [`ActionState`]), the [`Role`] each needs
//!   ([`Intent::authorize`]) and its one-line [`Intent::summary`].
//! - `confirm.rs`: the confirmation step of actions: [`confirmation_id`], and
//!   [`Pending`], which only the asker may confirm, in time, with a role that allows it.
//! - `answer.rs`: the answers that need no fleet data (help, a question back, not
//!   understood with suggestions), as plain text.
//! - `lexicon.rs`: [`Lexicon`], the names a message may use: hosts (exact, or one clear
//!   near miss; ambiguity is reported), labels, policies, metrics and their aliases.
//! - `time.rs`: [`TimeRange`] from words ("last 2 hours", "since 9:00", "yesterday")
//!   against a given `now`.
//! - `parse.rs`, `parse/words.rs`: [`parse`], the deterministic parser: ids, then the
//!   intent by keyword precedence, then its arguments; the shapes of ids, sizes and
//!   severities in `words.rs`.
//! - `suggest.rs`: the closest capabilities for a message that was not understood.
//! - `slack.rs`, `slack/`: request signatures, slash-command and interactivity bodies,
//!   and answers in Block Kit.
//! - `llm.rs`: the OpenAI-compatible `tools` schema of the intents, a model's tool call
//!   checked into an [`Intent`] (any error: fall back to [`parse`]), and the request that
//!   has a model phrase an answer from the data an intent returned.

mod answer;
mod confirm;
mod intent;
mod lexicon;
pub mod llm;
mod parse;
pub mod slack;
mod suggest;
pub mod time;

pub use answer::{help_text, plain_answer};
pub use confirm::{confirmation_id, ConfirmError, Pending, CONFIRMATION_TTL_MS};
pub use intent::{
    ActionState, ExplainTarget, HostRef, Intent, Refusal, Role, Scope, Selector, Suggestion,
};
pub use lexicon::{edit_distance, HostEntry, Lexicon, Resolution};
pub use parse::{
    parse, DEFAULT_JOURNAL_MB, DEFAULT_METRIC_RANGE_MS, MAX_MESSAGE_CHARS, MAX_REASON_CHARS,
};
pub use suggest::{suggestions, MAX_SUGGESTIONS};
pub use time::TimeRange;
