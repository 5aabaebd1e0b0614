//! Slack's side of ChatOps, without HTTP: verifying that a request comes from Slack,
//! decoding slash-command and interactivity bodies, and rendering answers as Block Kit
//! messages with approve and reject buttons. The control plane's handlers read the body
//! and headers, call these, map the Slack user to one of ours, and answer with the JSON.
//!
//! - `slack/verify.rs`: `X-Slack-Signature` (`v0=` + HMAC-SHA256 over
//!   `v0:{timestamp}:{body}`), checked in constant time, within a 5-minute window.
//! - `slack/form.rs`: `application/x-www-form-urlencoded` decoding, the slash command
//!   and the `payload=` of a button press.
//! - `slack/blocks.rs`: [`Reply`] → Block Kit JSON.

mod blocks;
mod form;
mod verify;

pub use blocks::{Reply, ReplyProposal, APPROVE_ACTION_ID, REJECT_ACTION_ID};
pub use form::{decode_form, ButtonPress, FormError, SlashCommand, MAX_BODY_BYTES};
pub use verify::{sign, verify_request, VerifyError, REPLAY_WINDOW_SECS};
