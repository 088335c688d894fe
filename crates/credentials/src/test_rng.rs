//! Test-only: a deterministic PRNG and the token mutation both fuzz loops use.

/// Deterministic xorshift64*, so the fuzz loops are reproducible.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One to three random edits (replace, delete, insert a byte of `alphabet`) of `s`.
    pub(crate) fn mutate(&mut self, s: &str, alphabet: &[u8]) -> String {
        let mut m = s.as_bytes().to_vec();
        for _ in 0..1 + self.below(3) {
            match self.below(3) {
                0 if !m.is_empty() => {
                    let i = self.below(m.len());
                    m[i] = alphabet[self.below(alphabet.len())];
                }
                1 if !m.is_empty() => {
                    m.remove(self.below(m.len()));
                }
                _ => {
                    let i = self.below(m.len() + 1);
                    m.insert(i, alphabet[self.below(alphabet.len())]);
                }
            }
        }
        String::from_utf8_lossy(&m).into_owned()
    }
}
