//! The metric rows of one rollup packed into one value, stored as one row of `rollup_windows`
//! (and of `host_latest`) instead of one row per metric: ingest writes one row and one index
//! entry per rollup, not ~60 of each (docs/LOADGEN.md: the rows were what bounded the SQLite
//! writer).
//!
//! Format, version 1, little-endian: the byte `1`, the row count (`u32`), then per row the
//! metric name and the device (each a `u32` byte length and UTF-8 bytes), `min`, `mean`, `max`,
//! `last` (`f64`, bit for bit) and the sample count (`i64`). Reading checks every length against
//! what is left, so a damaged or foreign value is an error, never a panic or a short read.

use crate::domain::MetricRow;

use super::StoreError;

const VERSION: u8 = 1;

/// Bytes of one row besides its two names.
const FIXED: usize = 4 + 4 + 5 * 8;

pub(super) fn pack(rows: &[MetricRow]) -> Vec<u8> {
    let names: usize = rows.iter().map(|r| r.metric.len() + r.device.len()).sum();
    let mut out = Vec::with_capacity(5 + rows.len() * FIXED + names);
    out.push(VERSION);
    out.extend_from_slice(&len32(rows.len()).to_le_bytes());
    for r in rows {
        for name in [&r.metric, &r.device] {
            out.extend_from_slice(&len32(name.len()).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        for v in [r.min, r.mean, r.max, r.last] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&r.count.to_le_bytes());
    }
    out
}

/// Lengths come from a validated rollup (names of at most a few hundred bytes, a few thousand
/// rows): far below `u32::MAX`.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(super) fn unpack(bytes: &[u8]) -> Result<Vec<MetricRow>, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(StoreError::Unreadable(format!(
            "rollup of format {version} (this version reads format {VERSION})"
        )));
    }
    let n = r.u32()? as usize;
    // each row takes at least FIXED bytes: a count larger than what is left is damage, and
    // must not reserve memory for it
    if n > r.left() / FIXED {
        return Err(damaged(format!("{n} rows in {} bytes", bytes.len())));
    }
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let metric = r.text()?;
        let device = r.text()?;
        rows.push(MetricRow {
            metric,
            device,
            min: r.f64()?,
            mean: r.f64()?,
            max: r.f64()?,
            last: r.f64()?,
            count: i64::from_le_bytes(r.array()?),
        });
    }
    if r.left() != 0 {
        return Err(damaged(format!("{} bytes after the last row", r.left())));
    }
    Ok(rows)
}

fn damaged(what: String) -> StoreError {
    StoreError::Unreadable(format!("rollup is damaged: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if n > self.left() {
            return Err(damaged(format!(
                "{n} bytes wanted at offset {}, {} left",
                self.at,
                self.left()
            )));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, StoreError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn text(&mut self) -> Result<String, StoreError> {
        let n = self.u32()? as usize;
        let at = self.at;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| damaged(format!("a name at offset {at} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metric: &str, device: &str, v: f64, count: i64) -> MetricRow {
        MetricRow {
            metric: metric.into(),
            device: device.into(),
            min: v - 1.0,
            mean: v,
            max: v + 1.0,
            last: v + 0.5,
            count,
        }
    }

    #[test]
    fn rows_come_back_bit_for_bit() {
        let rows = vec![
            row("cpu.usage_pct", "", 12.5, 10),
            row(
                "disk.used_bytes",
                "/dev/sda1",
                1.715373926431966e178,
                i64::MAX,
            ),
            row("net.rx_bytes", "eth0 ünïcode", -0.0, 0),
            MetricRow {
                metric: "x".into(),
                device: String::new(),
                min: f64::MIN_POSITIVE,
                mean: f64::MAX,
                max: f64::INFINITY,
                last: 5e-324,
                count: -1,
            },
        ];
        let back = unpack(&pack(&rows)).expect("unpack");
        assert_eq!(back.len(), rows.len());
        for (a, b) in rows.iter().zip(&back) {
            assert_eq!(
                (&a.metric, &a.device, a.count),
                (&b.metric, &b.device, b.count)
            );
            for (x, y) in [
                (a.min, b.min),
                (a.mean, b.mean),
                (a.max, b.max),
                (a.last, b.last),
            ] {
                assert_eq!(x.to_bits(), y.to_bits(), "{} {}", a.metric, x);
            }
        }
        assert!(unpack(&pack(&[])).expect("empty").is_empty());
    }

    #[test]
    fn every_truncation_and_damage_is_an_error() {
        let bytes = pack(&[row("cpu.usage_pct", "", 1.0, 1), row("mem", "m", 2.0, 2)]);
        for cut in 0..bytes.len() {
            let e = unpack(&bytes[..cut]).expect_err("a truncated rollup must not read");
            assert!(e.to_string().contains("rollup"), "{e}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(unpack(&longer)
            .expect_err("trailing bytes")
            .to_string()
            .contains("after the last row"));
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert!(unpack(&newer)
            .expect_err("format 2")
            .to_string()
            .contains("format 2"));
        // a row count far beyond the bytes, and a name length beyond them
        let mut huge = bytes.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&huge).is_err());
        let mut long_name = bytes.clone();
        long_name[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&long_name).is_err());
        let mut not_utf8 = bytes;
        not_utf8[9] = 0xff;
        assert!(unpack(&not_utf8)
            .expect_err("not UTF-8")
            .to_string()
            .contains("UTF-8"));
    }
}
