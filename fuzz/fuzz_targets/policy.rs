//! The policy parser (YAML or JSON) and the signed-policy check the agent
//! runs on what the control plane sends: any input must give a policy or a
//! `PolicyError` / `VerifyError`, never a panic; a policy that parses must
//! survive its canonical JSON round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sco_policy::{parse, SignedPolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = parse(text) {
        let canonical = policy.canonical_json();
        let again = parse(&canonical).expect("canonical JSON of a valid policy parses");
        assert_eq!(again, policy, "canonical round trip changed the policy");
    }
    // The agent-side path: a forged envelope around the same bytes is
    // refused (with any key), never a panic.
    let signed = SignedPolicy {
        name: "fuzz".into(),
        revision: data.len() as u64,
        document: text.to_string(),
        signature: "00".repeat(64),
    };
    assert!(signed.verify(Some(&[7u8; 32])).is_err());
});
