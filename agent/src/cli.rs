//! The command line: five subcommands of a few flags each, parsed by hand. A general parser
//! (clap with its derive and help machinery) was about 0.3 MB of every agent's binary, and the
//! agent's binary is most of its resident memory (README, "Footprint").

use std::path::PathBuf;

const DEFAULT_CONFIG: &str = "/etc/sco-agent/agent.toml";
const TOKEN_ENV: &str = "SCO_ENROLL_TOKEN";

pub const USAGE: &str = "\
SmartCloudOps host agent

Usage: sco-agent <COMMAND>

Commands:
  run       Collect metrics and stream them to the control plane
  status    Print what the running agent's anomaly detector is doing
  validate  Check a configuration file (and environment overrides) and exit
  enroll    Join the fleet with a one-time token
  replay    Run the live anomaly detector offline over a CSV file, one row per tick
  help      Print this message or the help of the given subcommand

Options:
  -h, --help     Print help
  -V, --version  Print version
";

const CONFIG_HELP: &str = "\
Options:
  -c, --config <CONFIG>  Agent configuration file (TOML); environment variables override it
                         [default: /etc/sco-agent/agent.toml]
  -h, --help             Print help
";

const RUN_HELP: &str = "\
Collect metrics and stream them to the control plane

Usage: sco-agent run [--config <CONFIG>]
";

const STATUS_HELP: &str = "\
Print what the running agent's anomaly detector is doing (warming up until when, calibrated
since when, restored or not, model). Exits 3 when the agent is not running (the last status it
left is printed with its time), 4 when its process exists but has stopped updating its status.

Usage: sco-agent status [--config <CONFIG>]
";

const VALIDATE_HELP: &str = "\
Check a configuration file (and environment overrides) and exit; exits non-zero naming the bad
key.

Usage: sco-agent validate [--config <CONFIG>]
";

const ENROLL_HELP: &str = "\
Join the fleet with a one-time token: pins the control plane's CA by its fingerprint, generates
a private key here, and writes ca.pem, agent.pem and agent.key (0600) into --out. Nothing is
written on failure.

Usage: sco-agent enroll --server <SERVER> --token <TOKEN> --ca-sha256 <CA_SHA256> [OPTIONS]

Options:
      --server <SERVER>            Control plane gRPC endpoint, HOST:PORT
      --token <TOKEN>              Enrollment token from `POST /enrollment-tokens`
                                   [env: SCO_ENROLL_TOKEN]
      --ca-sha256 <CA_SHA256>      SHA-256 of the fleet CA certificate (hex)
      --server-name <SERVER_NAME>  Name the server certificate carries, when it is not the
                                   host in --server
      --out <OUT>                  Directory ca.pem, agent.pem, agent.key and policy.pub are
                                   written to [default: /etc/sco-agent]
  -h, --help                       Print help
";

const REPLAY_HELP: &str = "\
Run the live anomaly detector offline over a CSV file, one row per tick.

Usage: sco-agent replay --input <INPUT> --output <OUTPUT> [OPTIONS]

Options:
      --input <INPUT>                    NAB-style `timestamp,value` CSV or headerless
                                         multivariate CSV
      --warmup <WARMUP>                  Rows fed first to calibrate the detector (same
                                         columns), not written
      --output <OUTPUT>                  CSV written: the anomaly score and alarm (0/1) of
                                         every input row
      --model <MODEL>                    Model manifest (default: the shipped model built
                                         into the binary)
      --warmup-ticks <N>                 Default: all rows of --warmup, else 15% of the input
                                         (at most 750 rows, NAB's probation period)
      --min-duration <N>                 Consecutive ticks over the threshold before an event
                                         opens (default 1)
      --quantile <Q>                     Quantile of the warm-up scores the component
                                         thresholds sit at, in [0, 1] (default 0.995)
      --sensitivity <S>                  Threshold divisor: above 1 alarms more, below 1 less
                                         (default 1)
      --smooth-ticks <N>                 Ticks the host score is averaged over (default 12,
                                         one hour of 5-minute rows; 1 = off); with this flag
                                         or the next the alarm is that one mean against a
                                         fixed threshold (by default the hour's threshold
                                         adapts, and the last tick and the last three ticks
                                         also alarm, against their 0.999 and 0.993 quantiles)
      --score-quantile <Q>               Quantile of the host's smoothed warm-up scores the
                                         alarm threshold sits at (default 0.98), or `none` for
                                         the component thresholds alone
      --no-host-pca                      Window model only (no host PCA component)
  -h, --help                             Print help
";

#[derive(Debug, PartialEq)]
pub enum Command {
    Run {
        config: PathBuf,
    },
    Status {
        config: PathBuf,
    },
    Validate {
        config: PathBuf,
    },
    Enroll {
        server: String,
        token: String,
        ca_sha256: String,
        server_name: Option<String>,
        out: PathBuf,
    },
    Replay(Box<Replay>),
}

#[derive(Debug, PartialEq)]
pub struct Replay {
    pub input: PathBuf,
    pub warmup: Option<PathBuf>,
    pub output: PathBuf,
    pub model: Option<PathBuf>,
    pub warmup_ticks: Option<usize>,
    pub min_duration: Option<usize>,
    pub quantile: Option<f64>,
    pub sensitivity: Option<f64>,
    pub smooth_ticks: Option<usize>,
    /// `--score-quantile`: `Some(None)` for `none`.
    pub score_quantile: Option<Option<f64>>,
    pub no_host_pca: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Command(Command),
    /// `--help`, `help` or `--version`: text for stdout, exit 0.
    Print(String),
}

/// A usage error: printed on stderr with the usage line, exit 2 (as clap did).
#[derive(Debug, PartialEq)]
pub struct Usage(pub String);

/// Flags and values of one subcommand, in the order given. `--flag value`, `--flag=value`
/// and `-c value` are accepted; a flag given twice is an error.
struct Flags {
    subcommand: &'static str,
    given: Vec<(&'static str, Option<String>)>,
}

impl Flags {
    /// `spec`: (long name, short letter or ' ', takes a value).
    fn parse(
        subcommand: &'static str,
        spec: &[(&'static str, char, bool)],
        args: &mut impl Iterator<Item = String>,
    ) -> Result<Result<Self, String>, Usage> {
        let mut given: Vec<(&'static str, Option<String>)> = Vec::new();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Err(subcommand.to_string()));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let found = spec.iter().find(|(long, short, _)| {
                name.strip_prefix("--") == Some(long)
                    || (*short != ' '
                        && name.len() == 2
                        && name.strip_prefix('-') == Some(&short.to_string()))
            });
            let Some(&(long, _, takes_value)) = found else {
                return Err(Usage(format!(
                    "unexpected argument '{arg}' for 'sco-agent {subcommand}'"
                )));
            };
            if given.iter().any(|(g, _)| *g == long) {
                return Err(Usage(format!("--{long} given more than once")));
            }
            let value = match (takes_value, inline) {
                (true, Some(v)) => Some(v),
                (true, None) => Some(
                    args.next()
                        .ok_or_else(|| Usage(format!("--{long} needs a value")))?,
                ),
                (false, Some(_)) => return Err(Usage(format!("--{long} takes no value"))),
                (false, None) => None,
            };
            given.push((long, value));
        }
        Ok(Ok(Self { subcommand, given }))
    }

    fn take(&mut self, long: &str) -> Option<String> {
        let i = self.given.iter().position(|(g, _)| *g == long)?;
        self.given.remove(i).1
    }

    fn flag(&mut self, long: &str) -> bool {
        match self.given.iter().position(|(g, _)| *g == long) {
            Some(i) => {
                self.given.remove(i);
                true
            }
            None => false,
        }
    }

    fn required(&mut self, long: &str) -> Result<String, Usage> {
        self.take(long).ok_or_else(|| {
            Usage(format!(
                "--{long} is required for 'sco-agent {}'",
                self.subcommand
            ))
        })
    }

    fn number<T: std::str::FromStr>(&mut self, long: &str) -> Result<Option<T>, Usage>
    where
        T::Err: std::fmt::Display,
    {
        self.take(long)
            .map(|v| {
                v.parse()
                    .map_err(|e| Usage(format!("invalid value '{v}' for --{long}: {e}")))
            })
            .transpose()
    }
}

fn help_of(subcommand: &str) -> Option<String> {
    let (text, config) = match subcommand {
        "run" => (RUN_HELP, true),
        "status" => (STATUS_HELP, true),
        "validate" => (VALIDATE_HELP, true),
        "enroll" => (ENROLL_HELP, false),
        "replay" => (REPLAY_HELP, false),
        _ => return None,
    };
    Some(if config {
        format!("{text}\n{CONFIG_HELP}")
    } else {
        text.to_string()
    })
}

/// Parses the arguments after the program name; `token_env` is `SCO_ENROLL_TOKEN`'s value.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    token_env: Option<String>,
) -> Result<Parsed, Usage> {
    let mut args = args.into_iter();
    let Some(sub) = args.next() else {
        return Err(Usage("a subcommand is required".into()));
    };
    let config_spec: &[(&str, char, bool)] = &[("config", 'c', true)];
    let command = match sub.as_str() {
        "-h" | "--help" => return Ok(Parsed::Print(USAGE.into())),
        "-V" | "--version" => {
            return Ok(Parsed::Print(format!(
                "sco-agent {}\n",
                env!("CARGO_PKG_VERSION")
            )))
        }
        "help" => {
            return match args.next() {
                None => Ok(Parsed::Print(USAGE.into())),
                Some(s) => help_of(&s)
                    .map(Parsed::Print)
                    .ok_or_else(|| Usage(format!("unrecognized subcommand '{s}'"))),
            }
        }
        "run" | "status" | "validate" => {
            let name = match sub.as_str() {
                "run" => "run",
                "status" => "status",
                _ => "validate",
            };
            let mut f = match Flags::parse(name, config_spec, &mut args)? {
                Ok(f) => f,
                Err(help) => return Ok(Parsed::Print(help_of(&help).unwrap_or_default())),
            };
            let config = PathBuf::from(f.take("config").unwrap_or_else(|| DEFAULT_CONFIG.into()));
            match name {
                "run" => Command::Run { config },
                "status" => Command::Status { config },
                _ => Command::Validate { config },
            }
        }
        "enroll" => {
            let spec: &[(&str, char, bool)] = &[
                ("server", ' ', true),
                ("token", ' ', true),
                ("ca-sha256", ' ', true),
                ("server-name", ' ', true),
                ("out", ' ', true),
            ];
            let mut f = match Flags::parse("enroll", spec, &mut args)? {
                Ok(f) => f,
                Err(help) => return Ok(Parsed::Print(help_of(&help).unwrap_or_default())),
            };
            let token = match f.take("token").or(token_env) {
                Some(t) => t,
                None => {
                    return Err(Usage(format!(
                        "--token (or {TOKEN_ENV}) is required for 'sco-agent enroll'"
                    )))
                }
            };
            Command::Enroll {
                server: f.required("server")?,
                token,
                ca_sha256: f.required("ca-sha256")?,
                server_name: f.take("server-name"),
                out: PathBuf::from(f.take("out").unwrap_or_else(|| "/etc/sco-agent".into())),
            }
        }
        "replay" => {
            let spec: &[(&str, char, bool)] = &[
                ("input", ' ', true),
                ("warmup", ' ', true),
                ("output", ' ', true),
                ("model", ' ', true),
                ("warmup-ticks", ' ', true),
                ("min-duration", ' ', true),
                ("quantile", ' ', true),
                ("sensitivity", ' ', true),
                ("smooth-ticks", ' ', true),
                ("score-quantile", ' ', true),
                ("no-host-pca", ' ', false),
            ];
            let mut f = match Flags::parse("replay", spec, &mut args)? {
                Ok(f) => f,
                Err(help) => return Ok(Parsed::Print(help_of(&help).unwrap_or_default())),
            };
            let score_quantile = match f.take("score-quantile") {
                None => None,
                Some(s) if s == "none" => Some(None),
                Some(s) => Some(Some(s.parse::<f64>().map_err(|e| {
                    Usage(format!(
                        "invalid value '{s}' for --score-quantile: {e} (a number in (0, 1), or none)"
                    ))
                })?)),
            };
            Command::Replay(Box::new(Replay {
                input: PathBuf::from(f.required("input")?),
                output: PathBuf::from(f.required("output")?),
                warmup: f.take("warmup").map(PathBuf::from),
                model: f.take("model").map(PathBuf::from),
                warmup_ticks: f.number("warmup-ticks")?,
                min_duration: f.number("min-duration")?,
                quantile: f.number("quantile")?,
                sensitivity: f.number("sensitivity")?,
                smooth_ticks: f.number("smooth-ticks")?,
                score_quantile,
                no_host_pca: f.flag("no-host-pca"),
            }))
        }
        other => return Err(Usage(format!("unrecognized subcommand '{other}'"))),
    };
    Ok(Parsed::Command(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Parsed, Usage> {
        parse(line.split_whitespace().map(String::from), None)
    }

    fn cmd(line: &str) -> Command {
        match p(line) {
            Ok(Parsed::Command(c)) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn usage(line: &str) -> String {
        match p(line) {
            Err(Usage(m)) => m,
            other => panic!("{line}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn config_flags_in_every_spelling() {
        let c = |s: &str| PathBuf::from(s);
        let cases = [
            (
                "run",
                Command::Run {
                    config: c(DEFAULT_CONFIG),
                },
            ),
            (
                "run --config a.toml",
                Command::Run {
                    config: c("a.toml"),
                },
            ),
            (
                "run --config=a.toml",
                Command::Run {
                    config: c("a.toml"),
                },
            ),
            (
                "run -c a.toml",
                Command::Run {
                    config: c("a.toml"),
                },
            ),
            (
                "status -c b.toml",
                Command::Status {
                    config: c("b.toml"),
                },
            ),
            ("validate --config x", Command::Validate { config: c("x") }),
        ];
        for (line, want) in cases {
            assert_eq!(cmd(line), want, "{line}");
        }
    }

    #[test]
    fn usage_errors_name_the_argument() {
        let cases = [
            ("", "a subcommand is required"),
            ("serve", "unrecognized subcommand 'serve'"),
            (
                "run --conifg a",
                "unexpected argument '--conifg' for 'sco-agent run'",
            ),
            ("run --config", "--config needs a value"),
            ("run -c a -c b", "--config given more than once"),
            (
                "enroll --token t --ca-sha256 ab",
                "--server is required for 'sco-agent enroll'",
            ),
            (
                "enroll --server h:1 --ca-sha256 ab",
                "--token (or SCO_ENROLL_TOKEN) is required",
            ),
            (
                "replay --input a",
                "--output is required for 'sco-agent replay'",
            ),
            (
                "replay --input a --output b --warmup-ticks x",
                "invalid value 'x' for --warmup-ticks",
            ),
            (
                "replay --input a --output b --score-quantile hi",
                "invalid value 'hi' for --score-quantile",
            ),
            (
                "replay --input a --output b --no-host-pca=1",
                "--no-host-pca takes no value",
            ),
        ];
        for (line, want) in cases {
            let got = usage(line);
            assert!(got.contains(want), "{line}: {got}");
        }
    }

    #[test]
    fn enroll_takes_its_token_from_the_flag_or_the_environment() {
        let want = |token: &str, server_name: Option<&str>| Command::Enroll {
            server: "cp:7443".into(),
            token: token.into(),
            ca_sha256: "ab12".into(),
            server_name: server_name.map(String::from),
            out: PathBuf::from("/etc/sco-agent"),
        };
        assert_eq!(
            cmd("enroll --server cp:7443 --token t1 --ca-sha256 ab12"),
            want("t1", None)
        );
        let from_env = parse(
            "enroll --server cp:7443 --ca-sha256 ab12 --server-name sco"
                .split_whitespace()
                .map(String::from),
            Some("t2".into()),
        );
        assert_eq!(from_env, Ok(Parsed::Command(want("t2", Some("sco")))));
        // The flag wins over the environment.
        let both = parse(
            "enroll --server cp:7443 --token t1 --ca-sha256 ab12"
                .split_whitespace()
                .map(String::from),
            Some("t2".into()),
        );
        assert_eq!(both, Ok(Parsed::Command(want("t1", None))));
    }

    #[test]
    fn replay_options() {
        let got = cmd(
            "replay --input in.csv --output out.csv --warmup w.csv --warmup-ticks 10 \
             --min-duration 2 --quantile 0.99 --sensitivity 1.5 --smooth-ticks 1 \
             --score-quantile none --no-host-pca --model m.json",
        );
        let want = Replay {
            input: "in.csv".into(),
            warmup: Some("w.csv".into()),
            output: "out.csv".into(),
            model: Some("m.json".into()),
            warmup_ticks: Some(10),
            min_duration: Some(2),
            quantile: Some(0.99),
            sensitivity: Some(1.5),
            smooth_ticks: Some(1),
            score_quantile: Some(None),
            no_host_pca: true,
        };
        assert_eq!(got, Command::Replay(Box::new(want)));
        let Command::Replay(r) = cmd("replay --input a --output b --score-quantile 0.9") else {
            panic!("replay");
        };
        assert_eq!(
            (r.score_quantile, r.no_host_pca, r.warmup),
            (Some(Some(0.9)), false, None)
        );
    }

    #[test]
    fn help_and_version_print_and_exit() {
        for line in ["--help", "-h", "help"] {
            assert_eq!(p(line), Ok(Parsed::Print(USAGE.into())), "{line}");
        }
        for line in ["run --help", "help run", "enroll -h", "replay --help"] {
            let Ok(Parsed::Print(text)) = p(line) else {
                panic!("{line}");
            };
            assert!(text.contains("Usage: sco-agent "), "{line}: {text}");
        }
        assert_eq!(
            p("--version"),
            Ok(Parsed::Print(format!(
                "sco-agent {}\n",
                env!("CARGO_PKG_VERSION")
            )))
        );
    }
}
