//! What both binaries do the same way as processes: logs on stderr (`SCO_LOG` filter,
//! `SCO_LOG_FORMAT=json` for JSON lines) and waiting for the signal to stop (SIGTERM or ctrl-c).

/// Logs to stderr, filtered by `SCO_LOG` (default `info`); JSON lines with
/// `SCO_LOG_FORMAT=json`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SCO_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
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
