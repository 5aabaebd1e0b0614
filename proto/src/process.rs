//! What both binaries do the same way as processes: logs on stderr (`SCO_LOG` filter,
//! `SCO_LOG_FORMAT=json` for JSON lines) and waiting for the signal to stop (SIGTERM or ctrl-c).

/// Logs to stderr, filtered by `SCO_LOG` (default `info`); JSON lines with
/// `SCO_LOG_FORMAT=json`.
///
/// The filter is a list of `target=level` directives with an optional default level
/// (`info,sco_agent=debug`), read by `Targets`: `EnvFilter`'s span and field matchers would
/// link a regex engine (about 0.5 MB) into every agent for a syntax nobody here uses.
/// A filter that does not parse is reported on stderr and `info` is used.
pub fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = match std::env::var("SCO_LOG") {
        Ok(s) => s.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("warning: SCO_LOG={s:?}: {e}; logging at info");
            Targets::new().with_default(LevelFilter::INFO)
        }),
        Err(_) => Targets::new().with_default(LevelFilter::INFO),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var("SCO_LOG_FORMAT").as_deref() == Ok("json") {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

/// Returns at SIGTERM or ctrl-c (ctrl-c alone where SIGTERM cannot be listened for).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
