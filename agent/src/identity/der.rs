//! Just enough DER for the agent's identity, on top of ring (linked anyway, for rustls):
//! the validity of a certificate (when to renew) and a PKCS#10 request for a new P-256 key.
//! The agent reads no other field of a certificate and writes no other structure, so a
//! general X.509 parser and certificate generator (x509-parser, rcgen: about 1 MB of code
//! with their ASN.1 crates) would be weight in every agent for two small jobs.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0]` constructed: the certificate's explicit version, the request's attributes.
const CONTEXT_0: u8 = 0xa0;

/// 2.5.4.3, commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 1.2.840.10045.2.1, id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7, prime256v1.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.2.840.10045.4.3.2, ecdsa-with-SHA256.
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        // Long form: the low bits count the length's bytes (at most 4 here: no
        // certificate is 4 GiB).
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// The element at the front of `input`, which must carry `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = element(input)?;
    (t == tag).then_some((contents, rest))
}

/// (notBefore, notAfter) of a DER certificate, Unix seconds.
pub(super) fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, absent for v1 certificates.
    if let Some((CONTEXT_0, _, after)) = element(rest) {
        rest = after;
    }
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (t1, c1, rest) = element(validity)?;
    let (t2, c2, _) = element(rest)?;
    Some((time(t1, c1)?, time(t2, c2)?))
}

/// An X.509 time (RFC 5280 4.1.2.5: `YYMMDDHHMMSSZ` or `YYYYMMDDHHMMSSZ`), Unix seconds.
fn time(tag: u8, s: &[u8]) -> Option<i64> {
    let s = s.strip_suffix(b"Z")?;
    let (year, rest) = match tag {
        UTC_TIME if s.len() == 12 => {
            let yy = digits(&s[..2])?;
            // RFC 5280: two-digit years 50..99 are 19xx, 00..49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        GENERALIZED_TIME if s.len() == 14 => (digits(&s[..4])?, &s[4..]),
        _ => return None,
    };
    let [month, day, hour, minute, second] =
        [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]).unwrap_or(99));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends one DER element.
fn put(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 4);
    put(&mut out, tag, contents);
    out
}

/// A BIT STRING of whole bytes.
fn bits(bytes: &[u8]) -> Vec<u8> {
    let mut contents = Vec::with_capacity(bytes.len() + 1);
    contents.push(0);
    contents.extend_from_slice(bytes);
    der(BIT_STRING, &contents)
}

/// A new P-256 private key (PKCS#8 DER) and a PKCS#10 request for it (DER) with the
/// subject `CN=<common_name>`, signed with ECDSA-SHA256. The control plane chooses the
/// certificate's names itself and keeps only the public key and the proof of possession.
pub(super) fn key_and_csr(
    common_name: &str,
) -> Result<(Vec<u8>, Vec<u8>), ring::error::Unspecified> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| ring::error::Unspecified)?;

    let attribute = [
        der(OID, OID_COMMON_NAME),
        der(UTF8_STRING, common_name.as_bytes()),
    ]
    .concat();
    let subject = der(SEQUENCE, &der(SET, &der(SEQUENCE, &attribute)));
    let algorithm = der(
        SEQUENCE,
        &[der(OID, OID_EC_PUBLIC_KEY), der(OID, OID_P256)].concat(),
    );
    let spki = der(
        SEQUENCE,
        &[algorithm, bits(key.public_key().as_ref())].concat(),
    );
    let info = der(
        SEQUENCE,
        &[
            der(INTEGER, &[0]), // version 1
            subject,
            spki,
            der(CONTEXT_0, &[]), // no attributes
        ]
        .concat(),
    );
    let signature = key.sign(&rng, &info)?;
    let csr = der(
        SEQUENCE,
        &[
            info,
            der(SEQUENCE, &der(OID, OID_ECDSA_SHA256)),
            bits(signature.as_ref()),
        ]
        .concat(),
    );
    Ok((pkcs8.as_ref().to_vec(), csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_rfc_5280_writes_them() {
        let cases: &[(u8, &str, Option<i64>)] = &[
            (UTC_TIME, "700101000000Z", Some(0)),
            (UTC_TIME, "491231235959Z", Some(2_524_607_999)),
            (UTC_TIME, "500101000000Z", Some(-631_152_000)),
            (GENERALIZED_TIME, "20240229120000Z", Some(1_709_208_000)),
            (GENERALIZED_TIME, "99991231235959Z", Some(253_402_300_799)),
            (UTC_TIME, "20240229120000Z", None),
            (GENERALIZED_TIME, "240229120000Z", None),
            (UTC_TIME, "241301000000Z", None),
            (UTC_TIME, "2401010000000", None),
            (UTC_TIME, "24010100000aZ", None),
        ];
        for &(tag, s, want) in cases {
            assert_eq!(time(tag, s.as_bytes()), want, "{s}");
        }
    }

    #[test]
    fn truncated_or_foreign_input_is_no_validity() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x82, 0x01]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }

    #[test]
    fn long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let contents = vec![7u8; len];
            let encoded = der(SEQUENCE, &contents);
            let (tag, got, rest) = element(&encoded).expect("element");
            assert_eq!((tag, got.len(), rest.len()), (SEQUENCE, len, 0));
        }
    }

    #[test]
    fn validity_of_a_certificate_rcgen_signed() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["a".into()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        // After 2049: written as a GeneralizedTime.
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            validity(cert.der().as_ref()),
            Some((1_709_164_800, 2_556_144_000))
        );
    }

    #[test]
    fn requests_parse_and_verify_as_the_control_plane_reads_them() {
        let (key, csr) = key_and_csr("sco-agent").expect("csr");
        let pem = super::super::pem_encode("CERTIFICATE REQUEST", &csr);
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).expect("parse");
        // The request carries the public key of the private key written beside it.
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key, &SystemRandom::new())
                .expect("pkcs8");
        use rcgen::PublicKeyData;
        assert_eq!(parsed.public_key.der_bytes(), pair.public_key().as_ref());
        // A request whose signature does not match is refused.
        let mut forged = csr.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let pem = super::super::pem_encode("CERTIFICATE REQUEST", &forged);
        assert!(rcgen::CertificateSigningRequestParams::from_pem(&pem).is_err());
    }
}
