//! Wire protocol between the SmartCloudOps agent and the control plane.
//!
//! One bidirectional gRPC stream per agent (`AgentService.Connect`). The
//! generated types live in [`v1`]; both sides convert them to their own
//! domain types at the edge and never let them travel further in.
//!
//! Helpers live here because this is the one crate both binaries depend on:
//! [`systemd`], the notification protocol of `Type=notify` units (readiness, watchdog), and
//! [`config_env`], every config key settable from the environment
//! (`SCO_AGENT__<SECTION>__<KEY>`, `SCO_CP__<SECTION>__<KEY>`) by one rule for both, and
//! [`process`], their logs and their stop signal, and [`quic`] (feature `quic`), the QUIC
//! stream the agent's gRPC session runs over when its endpoint is `quic://host:port`, and
//! [`spread`], when each host sends a finished rollup, so that a fleet's do not all arrive at once,
//! and [`codec`], the gRPC codec with the small buffers thousands of streams can afford.

pub mod codec;
pub mod config_env;
pub mod process;
#[cfg(feature = "quic")]
pub mod quic;
pub mod spread;
pub mod systemd;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sco.v1");
}

/// The gRPC metadata key of a `RESOURCE_EXHAUSTED` refusal of `Connect` by a replica at its
/// stream limit: the `host:port` of live replicas with room, comma-separated, the emptiest
/// first. The agent connects to the first it can use at once, with the same mTLS checks as
/// any endpoint of its own list.
pub const REDIRECT_METADATA: &str = "sco-redirect";

/// Replicas named in one refusal that an agent considers, at most.
pub const MAX_REDIRECT_HINTS: usize = 8;

/// The replicas a refusal names in [`REDIRECT_METADATA`], in its order, at most
/// [`MAX_REDIRECT_HINTS`], trimmed, empty entries left out; each is still to be checked as an
/// endpoint by the caller. `Err` if the value is not text.
pub fn redirect_hints(s: &tonic::Status) -> Result<Vec<&str>, &'static str> {
    let Some(value) = s.metadata().get(REDIRECT_METADATA) else {
        return Ok(Vec::new());
    };
    let text = value
        .to_str()
        .map_err(|_| "a redirect hint that is not text")?;
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .take(MAX_REDIRECT_HINTS)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::{MetadataMap, MetadataValue};

    fn refusal(value: MetadataValue<tonic::metadata::Ascii>) -> tonic::Status {
        let mut m = MetadataMap::new();
        m.insert(REDIRECT_METADATA, value);
        tonic::Status::with_metadata(tonic::Code::ResourceExhausted, "full", m)
    }

    #[test]
    fn redirect_hints_are_trimmed_in_order_and_capped() {
        let none = tonic::Status::resource_exhausted("full");
        assert_eq!(redirect_hints(&none), Ok(Vec::new()));
        let s = refusal(MetadataValue::from_static(" b:1 ,, a:2,"));
        assert_eq!(redirect_hints(&s), Ok(vec!["b:1", "a:2"]));
        let many: Vec<String> = (0..20).map(|i| format!("r{i}:7443")).collect();
        let s = refusal(many.join(",").parse().expect("ascii"));
        let got = redirect_hints(&s).expect("text");
        assert_eq!(got, many[..MAX_REDIRECT_HINTS]);
    }

    #[test]
    fn a_redirect_value_that_is_not_text_is_an_error() {
        let mut m = MetadataMap::new();
        m.insert(
            REDIRECT_METADATA,
            MetadataValue::try_from(&b"cp:1\xff"[..]).expect("visible bytes"),
        );
        let s = tonic::Status::with_metadata(tonic::Code::ResourceExhausted, "full", m);
        assert!(redirect_hints(&s).is_err());
    }
}
