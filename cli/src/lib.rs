//! `scoctl`, the operator's command line for a SmartCloudOps control plane. It speaks
//! only the REST API, and links no control-plane or agent code: of the project it uses
//! `sco-policy`, to check a policy document with the same parser before sending it.
//!
//! - [`cli`]: the command line, declared once; help, completions and the man page are
//!   generated from it.
//! - [`client`]: HTTP to one control plane (optionally HTTPS with a private CA), errors
//!   naming the server, status and message, and the session that refreshes its token.
//! - [`credentials`]: the 0600 file of token pairs, one per server.
//! - [`commands`]: one function per subcommand.
//! - [`render`]: aligned tables, the line diff of `apply`, safe cells.
//! - [`duration`]: `5m`-style durations in, ages and UTC times out.

pub mod cli;
pub mod client;
pub mod commands;
pub mod credentials;
pub mod duration;
pub mod render;

pub use cli::Cli;
pub use commands::run;
