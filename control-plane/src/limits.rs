//! How many agent streams this process can hold: each TCP stream is an open file, and a process
//! out of descriptors cannot open its database, answer the REST API or accept anything. Unless
//! `replicas.max_streams` says otherwise, the limit comes from the open-file limit, so a surge of
//! agents is refused (and sent to a replica with room) before it starves the process.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for everything that is not an agent stream (database connections and files,
/// REST clients, logs, the QUIC socket): a tenth of the limit, at least this many.
pub const RESERVED_FILES: u64 = 256;

/// Fewest streams a derived limit allows, however low the open-file limit.
pub const MIN_STREAMS: u64 = 16;

/// Raises this process's soft open-file limit to its hard limit (as a server does: the soft
/// limit is often 1,024 where the hard one allows far more) and returns the soft limit now in
/// force; None when it is unlimited.
pub fn raise_open_files() -> Option<u64> {
    let now = getrlimit(Resource::Nofile);
    let raised = match (now.current, now.maximum) {
        (Some(cur), Some(max)) if cur < max => Rlimit {
            current: Some(max),
            maximum: Some(max),
        },
        _ => return now.current,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => raised.current,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit; keeping the soft one");
            now.current
        }
    }
}

/// Agent streams a process allowed `open_files` descriptors can hold: all of them but
/// a reserve of a tenth (at least [`RESERVED_FILES`]), and at least [`MIN_STREAMS`].
pub fn streams_for(open_files: u64) -> u64 {
    let reserve = (open_files / 10).max(RESERVED_FILES);
    open_files.saturating_sub(reserve).max(MIN_STREAMS)
}

/// `replicas.max_streams` in force: the configured one, or (0) the one the open-file limit
/// allows, after raising it; 0 (no limit) when the open-file limit is unlimited.
pub fn max_streams(configured: u64) -> u64 {
    if configured > 0 {
        return configured;
    }
    raise_open_files().map_or(0, streams_for)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_the_files_or_256_stay_for_the_rest() {
        assert_eq!(streams_for(20_000), 18_000);
        assert_eq!(streams_for(1_024), 768);
        assert_eq!(streams_for(300), 44);
        assert_eq!(streams_for(100), MIN_STREAMS);
        assert_eq!(streams_for(0), MIN_STREAMS);
        assert_eq!(max_streams(5), 5);
    }
}
