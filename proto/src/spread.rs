//! When a finished rollup goes on the wire.
//!
//! Every agent's windows end at the same wall-clock instant (they are aligned so that hosts
//! line up), so a fleet that sent each rollup the moment its window closed would hit the
//! control plane with all of them at once: 10,000 hosts, 10,000 rollups in the same second,
//! then nine quiet ones. Each host instead sends its rollups at its own fixed offset after
//! the window's end, the same offset every window, spread evenly over the span across the
//! fleet. Both the agent and the load generator (which must send as agents do) use this.

/// The offset in `[0, span_ms)` at which the host named `key` sends a finished window.
///
/// Stable across runs, versions and platforms (FNV-1a and a final mix, not the standard
/// library's hasher, whose output is not promised to stay the same): a host keeps its slot,
/// and the control plane sees a steady load rather than one that reshuffles on each restart.
/// Names that differ only in a counter (`web-0001`, `web-0002`, ...) land far apart.
pub fn offset_ms(key: &str, span_ms: u64) -> u64 {
    if span_ms == 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits follow the last bytes too closely.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h % span_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_gets_the_same_slot_inside_the_span() {
        for span in [1, 7, 1_000, 10_000] {
            for name in ["", "web-1", "db.example.org"] {
                let o = offset_ms(name, span);
                assert!(o < span, "{name} {span} -> {o}");
                assert_eq!(o, offset_ms(name, span));
            }
        }
        assert_eq!(offset_ms("web-1", 0), 0);
        // pinned: a change of hash would move every host of a fleet at once
        assert_eq!(offset_ms("web-1", 10_000), 3837);
        assert_eq!(offset_ms("web-2", 10_000), 5850);
    }

    #[test]
    fn numbered_hosts_fill_the_span_evenly() {
        // 10,000 hosts named by a counter over a 10 s span, in ten 1 s buckets: each holds
        // 1,000 expected; a binomial's standard deviation here is 30, so 850..1150 is ±5σ.
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let o = offset_ms(&format!("web-{i:05}"), 10_000);
            buckets[(o / 1_000) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!(
                (850..=1_150).contains(n),
                "bucket {i}: {n} of 10,000 ({buckets:?})"
            );
        }
    }
}
