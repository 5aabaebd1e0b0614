//! The command line, declared once: parsing, `--help`, the shell completions and the man
//! page are all generated from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The control plane's default REST address (`http_listen` in its config).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Operate a SmartCloudOps fleet from the command line: hosts, anomalies,
/// remediation actions and what they learnt, policies and models, over the control
/// plane's REST API.
#[derive(Debug, Parser)]
#[command(name = "scoctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// REST address of the control plane (http:// or https://).
    #[arg(long, global = true, env = "SCO_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// PEM file of the CA that signed an HTTPS control plane's certificate
    /// (scoctl trusts no built-in roots).
    #[arg(long, global = true, env = "SCO_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format: aligned tables for people, or the server's JSON.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Where tokens are kept (default $XDG_CONFIG_HOME/scoctl/credentials.json,
    /// else ~/.config/scoctl/credentials.json).
    #[arg(long, global = true, env = "SCO_CREDENTIALS", value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The server's JSON, as it sent it.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in and keep the access and refresh tokens (mode 0600).
    Login(LoginArgs),
    /// End every session of your user on the server and forget its tokens.
    Logout,
    /// List hosts, anomalies, remediation actions, policies, models or learnt preferences.
    #[command(subcommand)]
    Get(Get),
    /// Forget what was learnt (operator).
    #[command(subcommand)]
    Reset(Reset),
    /// Show one object in detail.
    #[command(subcommand)]
    Describe(Describe),
    /// Store a policy as a new revision and roll it out, after showing what changes.
    Apply(ApplyArgs),
    /// Follow policy rollouts.
    #[command(subcommand)]
    Rollout(Rollout),
    /// Upload a model to the registry, roll it out, follow its rollout.
    #[command(subcommand)]
    Model(Model),
    /// Approve a proposed remediation action (of an `approve` rule).
    Approve(DecideArgs),
    /// Reject a proposed remediation action, optionally saying why.
    Reject(RejectArgs),
    /// Enrollment tokens for new agents.
    #[command(subcommand)]
    Token(Token),
    /// Revoke a host's agent: its stream closes at once and it is refused from then on.
    Revoke(RevokeArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print scoctl's man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User to log in as.
    #[arg(long, short)]
    pub username: String,
    /// Read the password from this file (its first line); without it the
    /// password is asked for on a terminal, or read from standard input.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Get {
    /// Hosts with their connection, agent version, detector state and labels.
    Hosts,
    /// Anomaly events, newest first.
    Anomalies(AnomalyFilter),
    /// Remediation requests, proposals and their outcome, newest first.
    Actions(ActionFilter),
    /// Policies with their newest revision and current rollout.
    Policies,
    /// The model registry: every version, newest first, marked with the newest model
    /// rollout and its target.
    Models,
    /// What was learnt about rules' candidate actions: per rule and context, each
    /// candidate's verified successes and failures, its score and the one the next
    /// incident runs.
    Preferences(PreferenceFilter),
}

#[derive(Debug, Args)]
pub struct PreferenceFilter {
    /// Only this rule (`policy/rule`).
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this context (`family/severity`, e.g. `memory/high`, or `family/state`).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Reset {
    /// Forget the learnt preferences (all, or of one rule and/or context): the next
    /// incidents run the candidates in their written order again.
    Preferences(ResetPreferencesArgs),
}

#[derive(Debug, Args)]
pub struct ResetPreferencesArgs {
    #[command(flatten)]
    pub filter: PreferenceFilter,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Model {
    /// Upload a model directory (manifest.json, the .onnx file it names, golden.json,
    /// and MODEL_CARD.md and evaluation.json when present), as `models/shipped/` holds one.
    Upload(ModelUploadArgs),
    /// Roll a version out (canary first, stopped by itself when canaries refuse it or
    /// their alarms jump); `builtin` sends hosts back to their own model.
    Rollout(ModelRolloutArgs),
    /// Per-host state of a version: the model meant for each host, canary or not, the
    /// model it reported and runs, error.
    Status(ModelStatusArgs),
}

#[derive(Debug, Args)]
pub struct ModelUploadArgs {
    /// The directory holding manifest.json, the model file, golden.json (and optionally
    /// MODEL_CARD.md, evaluation.json).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ModelRolloutArgs {
    /// The version (the manifest's `version`), or `builtin`.
    #[arg(value_name = "VERSION")]
    pub model: String,
    /// Share of the targeted hosts that get it first (0: all at once; server default 10).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), conflicts_with = "canary_hosts")]
    pub canary_percent: Option<u8>,
    /// These hosts (ids, comma-separated or repeated) are the canary.
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub canary_hosts: Vec<String>,
    /// How long the canary runs before every targeted host gets it, e.g. 5m (server
    /// default 300 s).
    #[arg(long, value_parser = crate::duration::parse_secs)]
    pub canary_secs: Option<u64>,
    /// New anomaly events on canary hosts that stop the rollout (server default 3).
    #[arg(long)]
    pub max_new_anomalies: Option<u32>,
    /// Target: only hosts with this label, KEY=VALUE (repeatable; all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Target: only this host id (repeatable, or comma-separated).
    #[arg(long = "host", value_name = "HOST", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ModelStatusArgs {
    /// The version (the manifest's `version`), or `builtin`.
    #[arg(value_name = "VERSION")]
    pub model: String,
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// How `status` commands follow a rollout.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Poll until the rollout is complete and every connected host it selects runs
    /// what is meant for it (or refused it), or the rollout stopped.
    #[arg(long, short)]
    pub watch: bool,
    /// Poll interval with --watch, e.g. 2s.
    #[arg(long, default_value = "1s", value_parser = crate::duration::parse_secs)]
    pub interval: u64,
    /// Give up watching after this long, e.g. 10m (default: never).
    #[arg(long, value_parser = crate::duration::parse_secs)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AnomalyFilter {
    /// Only this host (id or hostname).
    #[arg(long)]
    pub host: Option<String>,
    /// Only open or only closed events.
    #[arg(long, value_parser = ["open", "closed"])]
    pub status: Option<String>,
    /// Only events at least this severe.
    #[arg(long, value_parser = ["low", "medium", "high", "critical"])]
    pub min_severity: Option<String>,
    /// At most this many events (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct ActionFilter {
    /// Only this host (id or hostname).
    #[arg(long)]
    pub host: Option<String>,
    /// Only actions in this state.
    #[arg(long, value_parser = [
        "proposed", "approved", "rejected", "running", "succeeded", "failed", "refused",
        "expired", "dry_run",
    ])]
    pub state: Option<String>,
    /// Only actions of this rule: `policy/rule`, or `manual`.
    #[arg(long)]
    pub rule: Option<String>,
    /// At most this many actions (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum Describe {
    /// One host: identity, connection, detector, latest metrics, top processes.
    Host {
        /// Host id (`<hostname>-<8 hex>`) or hostname.
        host: String,
    },
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The policy document (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Only show what would change; store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Share of targeted hosts that get the revision first (0: all at once;
    /// server default 10).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub canary_percent: Option<u8>,
    /// How long the canary runs before everyone gets the revision, e.g. 5m
    /// (server default 300 s).
    #[arg(long, value_parser = crate::duration::parse_secs)]
    pub canary_secs: Option<u64>,
    /// New anomaly events on canary hosts that stop the rollout (server default 3).
    #[arg(long)]
    pub max_new_anomalies: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Rollout {
    /// Per-host state of a policy's newest rollout.
    Status(RolloutStatusArgs),
}

#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// Policy name (default: the policy whose rollout started last).
    pub policy: Option<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The action's id (`scoctl get actions --state proposed`).
    pub action_id: String,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The action's id (`scoctl get actions --state proposed`).
    pub action_id: String,
    /// Why: one line, at most 500 characters, kept with the decision and in the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Token {
    /// Create an enrollment token; it is shown only once.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// How long the token is valid, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = crate::duration::parse_secs)]
    pub ttl: u64,
    /// How many agents may enroll with it.
    #[arg(long, default_value_t = 1)]
    pub max_uses: u32,
    /// A label every agent enrolled with it gets, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Host id or hostname.
    pub host: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definition_is_consistent_and_everything_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} --{id} has no help");
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no help",
                    sub.get_name()
                );
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&cmd, "scoctl");
    }

    #[test]
    fn labels_are_key_value() {
        assert_eq!(
            parse_label("role=web"),
            Ok(("role".to_string(), "web".to_string()))
        );
        assert_eq!(
            parse_label("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert!(parse_label("=x").is_err());
        assert!(parse_label("novalue").is_err());
    }
}
