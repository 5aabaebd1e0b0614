//! Corruption that gets past the checksums: one bit of a TCP or UDP payload flipped in an IPv4
//! packet, and the transport checksum computed again over the changed bytes. A bit flipped
//! without fixing the checksum is only loss (the receiving kernel drops the packet); fixed, the
//! damage reaches what runs over the transport (TLS records, QUIC packets), as corruption that
//! a weak checksum misses does on real links.

use crate::shape::Rng;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Where the transport segment of an IPv4 TCP or UDP packet starts and its payload starts,
/// or `None` for anything else (IPv6, fragments, other protocols, a malformed header).
fn layout(p: &[u8]) -> Option<(u8, usize, usize)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    // more fragments, or not the first fragment: the checksum spans other packets
    let fragment = u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0;
    if ihl < 20 || total < ihl || total > p.len() || fragment {
        return None;
    }
    let proto = p[9];
    let header = match proto {
        TCP if total >= ihl + 20 => usize::from(p[ihl + 12] >> 4) * 4,
        UDP if total >= ihl + 8 => 8,
        _ => return None,
    };
    if header < 8 || ihl + header > total {
        return None;
    }
    Some((proto, ihl, ihl + header))
}

/// The offset of the transport checksum within its segment.
fn checksum_at(proto: u8) -> usize {
    if proto == TCP {
        16
    } else {
        6
    }
}

/// The Internet checksum of the segment `p[l4..total]` with the IPv4 pseudo-header, the
/// checksum field itself counted as zero.
fn transport_checksum(p: &[u8], proto: u8, l4: usize, total: usize) -> u16 {
    let len = total - l4;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    };
    add(&p[12..20]);
    add(&[0, proto]);
    add(&(len as u16).to_be_bytes());
    let at = l4 + checksum_at(proto);
    add(&p[l4..at]);
    add(&p[at + 2..total]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    // UDP sends a computed zero as all ones (zero means "no checksum")
    if proto == UDP && c == 0 {
        0xffff
    } else {
        c
    }
}

/// Flips one bit of the payload of an IPv4 TCP or UDP packet and fixes its transport checksum
/// (a UDP packet sent without one keeps none). Returns whether the packet was changed: not for
/// other packets, nor for segments with no payload (a bare ACK).
pub fn corrupt(p: &mut [u8], rng: &mut Rng) -> bool {
    let Some((proto, l4, payload)) = layout(p) else {
        return false;
    };
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if payload >= total {
        return false;
    }
    let byte = payload + rng.below((total - payload) as u64) as usize;
    p[byte] ^= 1 << rng.below(8);
    let at = l4 + checksum_at(proto);
    let unchecked = proto == UDP && p[at] == 0 && p[at + 1] == 0;
    if !unchecked {
        let c = transport_checksum(p, proto, l4, total);
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 packet from 10.0.0.1 to 10.0.0.2 carrying `payload` over `proto`, with a valid
    /// transport checksum.
    fn packet(proto: u8, payload: &[u8]) -> Vec<u8> {
        let l4_header = if proto == TCP { 20 } else { 8 };
        let total = 20 + l4_header + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&40_000u16.to_be_bytes());
        p[22..24].copy_from_slice(&7443u16.to_be_bytes());
        if proto == TCP {
            p[32] = 5 << 4;
        } else {
            p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        p[20 + l4_header..].copy_from_slice(payload);
        let c = transport_checksum(&p, proto, 20, total);
        let at = 20 + checksum_at(proto);
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// The receiver's check: the one's complement sum over pseudo-header and segment, the
    /// checksum included, is all ones.
    fn verifies(p: &[u8]) -> bool {
        let (proto, l4, _) = layout(p).expect("a TCP or UDP packet");
        let at = l4 + checksum_at(proto);
        let stored = u16::from_be_bytes([p[at], p[at + 1]]);
        transport_checksum(p, proto, l4, p.len()) == stored
    }

    #[test]
    fn one_payload_bit_flips_and_the_checksum_still_verifies() {
        let mut rng = Rng::new(3);
        // an odd length checks the padding of the last byte
        for (proto, payload) in [(TCP, &b"a TLS record"[..]), (UDP, &b"a QUIC packet"[..])] {
            for _ in 0..200 {
                let before = packet(proto, payload);
                assert!(verifies(&before));
                let mut after = before.clone();
                assert!(corrupt(&mut after, &mut rng));
                assert!(verifies(&after), "the checksum was fixed");
                let (_, _, start) = layout(&after).expect("layout");
                let flipped: u32 = before[start..]
                    .iter()
                    .zip(&after[start..])
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
                assert_eq!(flipped, 1, "one payload bit");
                assert_eq!(before[..20], after[..20], "the IP header is untouched");
            }
        }
    }

    #[test]
    fn leaves_what_it_cannot_corrupt_past_the_checksum() {
        let mut rng = Rng::new(5);
        let mut bare_ack = packet(TCP, b"");
        let copy = bare_ack.clone();
        assert!(!corrupt(&mut bare_ack, &mut rng));
        assert_eq!(bare_ack, copy);
        let mut ipv6 = vec![0x60u8; 60];
        assert!(!corrupt(&mut ipv6, &mut rng));
        let mut fragment = packet(UDP, b"part");
        fragment[6] = 0x20; // more fragments
        assert!(!corrupt(&mut fragment, &mut rng));
        let mut short = packet(TCP, b"data");
        short.truncate(30);
        assert!(!corrupt(&mut short, &mut rng));
        let mut unchecked = packet(UDP, b"no checksum");
        unchecked[26..28].copy_from_slice(&[0, 0]);
        assert!(corrupt(&mut unchecked, &mut rng));
        assert_eq!(
            unchecked[26..28],
            [0, 0],
            "UDP without a checksum keeps none"
        );
    }
}
