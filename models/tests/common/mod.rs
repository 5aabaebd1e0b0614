//! What the detector's test files share.

/// Deterministic noise in [-1, 1] (xorshift), summed for a bell shape.
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..4 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        }
        s / 2.0
    }
}
