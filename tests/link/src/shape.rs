//! What happens to a packet: the settings of one direction, parsed from the settings file, and
//! the decision for each packet (drop it, send it at once, or hold it for a while).

use std::time::Duration;

/// How one direction of the link treats its packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Percent of the packets dropped.
    pub loss: u32,
    /// Delay of each packet kept, in milliseconds ...
    pub delay_ms: u32,
    /// ... plus or minus up to this much, uniformly (packets then overtake each other).
    pub jitter_ms: u32,
    /// Percent of the packets sent at once, not delayed (they overtake the delayed ones).
    pub reorder: u32,
    /// Percent of the packets sent twice.
    pub duplicate: u32,
    /// Percent of the packets with one payload bit flipped past the transport checksum
    /// ([`crate::packet::corrupt`]).
    pub corrupt: u32,
    /// The link's rate in kbit/s (0: unlimited): a packet leaves once the ones before it have,
    /// taking its size over the rate; more than the queue holds are dropped.
    pub rate_kbit: u32,
}

/// The settings of both directions: `ab` from the first device to the second, `ba` back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub ab: Shape,
    pub ba: Shape,
}

impl Settings {
    /// Parses the settings file: one line per direction (`ab`, `ba`, or `both`) followed by
    /// `key=value` words among `loss`, `delay`, `jitter`, `reorder`, `duplicate`, `corrupt`
    /// (percent and milliseconds) and `rate` (kbit/s); a key left out is 0, `#` starts a
    /// comment, an empty file is a clean link.
    ///
    /// ```text
    /// both delay=300 jitter=100
    /// ab loss=30
    /// ba rate=64 duplicate=5 corrupt=1
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut settings = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            let Some(which) = words.next() else {
                continue;
            };
            let mut shape = Shape::default();
            for word in words {
                let (key, value) = word
                    .split_once('=')
                    .ok_or_else(|| format!("line {}: expected key=value, got {word:?}", n + 1))?;
                let value: u32 = value.parse().map_err(|_| {
                    format!("line {}: {key} is not a whole number: {value:?}", n + 1)
                })?;
                match key {
                    "loss" | "reorder" | "duplicate" | "corrupt" if value > 100 => {
                        return Err(format!("line {}: {key} over 100 %: {value}", n + 1))
                    }
                    "loss" => shape.loss = value,
                    "reorder" => shape.reorder = value,
                    "delay" => shape.delay_ms = value,
                    "jitter" => shape.jitter_ms = value,
                    "duplicate" => shape.duplicate = value,
                    "corrupt" => shape.corrupt = value,
                    "rate" => shape.rate_kbit = value,
                    _ => return Err(format!("line {}: unknown key {key:?}", n + 1)),
                }
            }
            match which {
                "ab" => settings.ab = shape,
                "ba" => settings.ba = shape,
                "both" => (settings.ab, settings.ba) = (shape, shape),
                _ => {
                    return Err(format!(
                        "line {}: expected ab, ba or both, got {which:?}",
                        n + 1
                    ))
                }
            }
        }
        Ok(settings)
    }
}

/// What becomes of one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Drop,
    /// Sent at once by the reorder rule, ahead of the delayed packets.
    Rush,
    Hold(Duration),
}

impl Shape {
    /// Whether a packet kept is sent twice.
    pub fn duplicates(&self, rng: &mut Rng) -> bool {
        self.duplicate > 0 && rng.below(100) < u64::from(self.duplicate)
    }

    /// Whether a packet kept is corrupted.
    pub fn corrupts(&self, rng: &mut Rng) -> bool {
        self.corrupt > 0 && rng.below(100) < u64::from(self.corrupt)
    }

    /// How long `bytes` take on the wire at the link's rate (zero when unlimited).
    pub fn wire_time(&self, bytes: usize) -> Duration {
        if self.rate_kbit == 0 {
            return Duration::ZERO;
        }
        // bits / (kbit/s) = milliseconds, so bytes * 8000 / kbit = microseconds
        Duration::from_micros(bytes as u64 * 8_000 / u64::from(self.rate_kbit))
    }

    pub fn fate(&self, rng: &mut Rng) -> Fate {
        if self.loss > 0 && rng.below(100) < u64::from(self.loss) {
            return Fate::Drop;
        }
        if self.delay_ms == 0 && self.jitter_ms == 0 {
            return Fate::Hold(Duration::ZERO);
        }
        if self.reorder > 0 && rng.below(100) < u64::from(self.reorder) {
            return Fate::Rush;
        }
        let jitter = i64::from(self.jitter_ms);
        let offset = rng.below(2 * jitter as u64 + 1) as i64 - jitter;
        let ms = (i64::from(self.delay_ms) + offset).max(0);
        Fate::Hold(Duration::from_millis(ms as u64))
    }
}

/// A small seeded generator (SplitMix64): the same seed and packets give the same fates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directions_and_keys() {
        let s = Settings::parse("both delay=300 jitter=100 # wan\nab loss=30\n\n").expect("valid");
        assert_eq!(
            s.ab,
            Shape {
                loss: 30,
                ..Shape::default()
            }
        );
        assert_eq!(
            s.ba,
            Shape {
                delay_ms: 300,
                jitter_ms: 100,
                ..Shape::default()
            }
        );
        assert_eq!(Settings::parse("").expect("empty"), Settings::default());
        let s = Settings::parse("both rate=64 duplicate=5 corrupt=1").expect("valid");
        assert_eq!(
            s.ab,
            Shape {
                rate_kbit: 64,
                duplicate: 5,
                corrupt: 1,
                ..Shape::default()
            }
        );
        assert_eq!(s.ab, s.ba);
        // 1,000 bytes at 64 kbit/s: 125 ms
        assert_eq!(s.ab.wire_time(1_000), Duration::from_millis(125));
        assert_eq!(Shape::default().wire_time(1_000), Duration::ZERO);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [
            "up loss=3",
            "both loss",
            "both loss=x",
            "both loss=101",
            "both speed=1",
            "ab reorder=200",
            "both duplicate=101",
            "both corrupt=150",
            "both rate=-1",
        ] {
            assert!(Settings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fates_follow_the_settings() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        let lossy = Shape {
            loss: 30,
            ..Shape::default()
        };
        let dropped = (0..n)
            .filter(|_| lossy.fate(&mut rng) == Fate::Drop)
            .count();
        assert!((5_500..6_500).contains(&dropped), "{dropped}");

        let jittery = Shape {
            delay_ms: 300,
            jitter_ms: 100,
            ..Shape::default()
        };
        let delays: Vec<u128> = (0..n)
            .map(|_| match jittery.fate(&mut rng) {
                Fate::Hold(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays.iter().min(), Some(&200));
        assert_eq!(delays.iter().max(), Some(&400));

        let reordering = Shape {
            delay_ms: 50,
            reorder: 25,
            ..Shape::default()
        };
        let rushed = (0..n)
            .filter(|_| reordering.fate(&mut rng) == Fate::Rush)
            .count();
        assert!((4_500..5_500).contains(&rushed), "{rushed}");

        let noisy = Shape {
            duplicate: 20,
            corrupt: 10,
            ..Shape::default()
        };
        let twice = (0..n).filter(|_| noisy.duplicates(&mut rng)).count();
        assert!((3_500..4_500).contains(&twice), "{twice}");
        let corrupted = (0..n).filter(|_| noisy.corrupts(&mut rng)).count();
        assert!((1_600..2_400).contains(&corrupted), "{corrupted}");
        assert!(!(0..n).any(|_| Shape::default().duplicates(&mut rng)));
        assert!(!(0..n).any(|_| Shape::default().corrupts(&mut rng)));
        assert_eq!(
            Shape::default().fate(&mut rng),
            Fate::Hold(Duration::ZERO),
            "a clean link"
        );
    }
}
