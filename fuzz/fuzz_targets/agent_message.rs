//! Bytes an agent could send: decode an `AgentMessage` with prost and run
//! its body through the control plane's protobuf → domain conversions
//! (`grpc::pb::{host_info, rollup, anomaly}`). Neither may panic; whatever
//! the conversion accepts must respect its documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sco_control_plane::grpc::pb;
use sco_proto::v1::{agent_message::Body, AgentMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = AgentMessage::decode(data) else {
        return;
    };
    match msg.body {
        Some(Body::Hello(h)) => {
            let info = pb::host_info(h);
            assert!(info.hostname.len() <= 253);
        }
        Some(Body::Rollup(r)) => {
            if let Ok(batch) = pb::rollup(msg.seq, msg.produced_at_ms, r) {
                assert!(batch.metrics.len() <= 10_000);
                assert!(batch.window_start_ms <= batch.window_end_ms);
            }
        }
        Some(Body::Anomaly(a)) => {
            let _ = pb::anomaly(msg.seq, msg.produced_at_ms, a);
        }
        // Heartbeats carry no payload to convert; bodies added later
        // (remediation reports, ...) get their own arm when they get a
        // conversion in grpc/pb.rs.
        _ => {}
    }
});
