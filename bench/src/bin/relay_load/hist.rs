//! A fixed-size log-linear latency histogram (HdrHistogram-like, ~0.8 % relative error):
//! recording is an index computation and an increment, with no allocation.

/// Sub-buckets per power of two: 2^(P-1) with P = 8 significant bits.
const P: u32 = 8;
const HALF: u64 = 1 << (P - 1);
/// Enough buckets for values up to 2^48 ns (~3 days).
const BUCKETS: usize = ((48 - P as usize + 2) * HALF as usize) + (1 << P);

#[derive(Clone)]
pub struct Hist {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < (1 << P) {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= P
    let shift = e - (P - 1);
    let m = v >> shift; // in [HALF, 2*HALF)
    ((shift as u64) * HALF + m) as usize
}

fn value(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < (1 << P) {
        return idx;
    }
    let shift = idx / HALF - 1;
    let m = idx - shift * HALF;
    (m << shift) + ((1u64 << shift) >> 1)
}

impl Hist {
    /// Records one value (nanoseconds).
    #[inline]
    pub fn record(&mut self, v: u64) {
        let i = index(v).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.sum += v as u128;
        if v > self.max {
            self.max = v;
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += *b;
        }
        self.total += o.total;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// Mean value; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_roundtrip_is_close() {
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            1000,
            12_345,
            1_000_000,
            987_654_321,
            1 << 40,
        ] {
            let back = value(index(v));
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> {back}");
        }
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(997) {
            let i = index(v);
            assert!(i >= last);
            last = i;
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01, "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
    }
}
