//! `scoctl`: parse the command line, run it, and turn an error into a message on standard
//! error and exit status 1.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = sco_cli::Cli::parse();
    match sco_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A reader that went away (`scoctl man | head`) is not an error to report.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if !broken_pipe {
                eprintln!("scoctl: error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
