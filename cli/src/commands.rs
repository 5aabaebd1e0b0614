//! One function per subcommand, and what they share: the client and session of the chosen
//! server, the output format, and printing.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;
use serde_json::Value;

use crate::cli::{Cli, Command, Global, Output};
use crate::client::{Api, Client};

mod fleet;
mod model;
mod policy;
mod preferences;
mod session;

/// What every command gets: the global flags, resolved.
pub struct Ctx {
    pub global: Global,
    pub creds_path: PathBuf,
}

impl Ctx {
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.global.server, self.global.ca_file.as_deref())
    }

    /// An authenticated session with the chosen server.
    pub fn api(&self) -> anyhow::Result<Api> {
        Api::open(self.client()?, self.creds_path.clone())
    }

    pub fn json(&self) -> bool {
        self.global.output == Output::Json
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let creds_path = match &cli.global.credentials {
        Some(p) => p.clone(),
        None => crate::credentials::default_path()?,
    };
    let ctx = Ctx {
        global: cli.global,
        creds_path,
    };
    match cli.command {
        Command::Login(args) => session::login(&ctx, &args),
        Command::Logout => session::logout(&ctx),
        Command::Get(what) => fleet::get(&ctx, &what),
        Command::Reset(crate::cli::Reset::Preferences(args)) => preferences::reset(&ctx, &args),
        Command::Describe(what) => fleet::describe(&ctx, &what),
        Command::Apply(args) => policy::apply(&ctx, &args),
        Command::Rollout(crate::cli::Rollout::Status(args)) => policy::rollout_status(&ctx, &args),
        Command::Model(crate::cli::Model::Upload(args)) => model::upload(&ctx, &args),
        Command::Model(crate::cli::Model::Rollout(args)) => model::rollout(&ctx, &args),
        Command::Model(crate::cli::Model::Status(args)) => model::status(&ctx, &args),
        Command::Approve(args) => fleet::decide(&ctx, &args.action_id, &fleet::Verdict::Approve),
        Command::Reject(args) => fleet::decide(
            &ctx,
            &args.action_id,
            &fleet::Verdict::Reject {
                reason: args.reason.as_deref(),
            },
        ),
        Command::Token(crate::cli::Token::Create(args)) => fleet::token_create(&ctx, &args),
        Command::Revoke(args) => fleet::revoke(&ctx, &args.host),
        Command::Completions(args) => {
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "scoctl", &mut out);
            emit_bytes(&out)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .context("render the man page")?;
            emit_bytes(&out)
        }
    }
}

/// Writes to standard output; an error (a closed pipe) is returned, never a panic.
pub fn emit(text: &str) -> anyhow::Result<()> {
    emit_bytes(text.as_bytes())
}

fn emit_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("write to standard output")
}

/// The server's JSON, pretty-printed.
pub fn emit_json(v: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(v).context("encode JSON")?;
    text.push('\n');
    emit(&text)
}
