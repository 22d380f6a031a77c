//! Keys and values of the generated requests.
//!
//! Keys are zero-padded decimal numbers of exactly `--key-size` bytes (printable, so a loaded
//! store can be inspected with etcdctl); a number wider than the key keeps its low digits.
//! Random keys come from a per-client SplitMix64 generator: cheap, and no shared state between
//! clients.

/// The key for index `n`, exactly `size` bytes long.
pub fn key(n: u64, size: usize) -> Vec<u8> {
    let digits = n.to_string().into_bytes();
    if digits.len() >= size {
        digits[digits.len() - size..].to_vec()
    } else {
        let mut k = vec![b'0'; size - digits.len()];
        k.extend_from_slice(&digits);
        k
    }
}

/// A value of `size` bytes that starts with `n` in decimal (so a watcher can tell which put an
/// event comes from), padded with `-`.
pub fn value(n: u64, size: usize) -> Vec<u8> {
    let mut v = n.to_string().into_bytes();
    v.push(b';');
    v.resize(size.max(v.len()), b'-');
    v
}

/// The number a [`value`] starts with.
pub fn value_seq(v: &[u8]) -> Option<u64> {
    let end = v.iter().position(|&b| b == b';')?;
    std::str::from_utf8(&v[..end]).ok()?.parse().ok()
}

/// SplitMix64: a small, fast, good-enough generator for picking keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_requested_size() {
        assert_eq!(key(42, 8), b"00000042");
        assert_eq!(key(123_456_789, 4), b"6789");
        assert_eq!(value(7, 6), b"7;----");
        assert_eq!(value(123, 2), b"123;");
        assert_eq!(value_seq(&value(99, 256)), Some(99));
    }
}
