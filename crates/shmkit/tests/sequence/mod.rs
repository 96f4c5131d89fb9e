//! Deterministic randomness and message streams: a message's length and
//! bytes follow from a seed and its number, so a receiver knows exactly what
//! to expect and a stray message names itself.

#![allow(dead_code)] // each test binary uses a different part

use proptest::prelude::ProptestConfig;

pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ splitmix64(b))
}

/// xorshift64: enough randomness for test data, and reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed, 0x5eed) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// The checksum at the end of every message of 16 bytes or more: FNV-1a
/// over 8-byte words (word-wise to keep debug builds quick), then the
/// leftover bytes.
pub fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap());
        hash = (hash ^ word).wrapping_mul(PRIME).rotate_left(29);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    hash
}

/// How the lengths of a [`Sequence`] are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// 0 to max, often the edges (0, max, just under max, tiny).
    Random,
    /// Mostly 16 to 48 bytes, every 1009th close to max.
    Stress,
    /// Always this length.
    Fixed(usize),
    /// 16 bytes to max, often the edges (16, max, just under max): every
    /// message starts with its number, so a receiver that does not know
    /// which message comes next can still check it.
    Numbered,
}

/// A deterministic stream of messages: message `n`'s length and bytes
/// follow from `(seed, n)`, so the receiver knows exactly what to expect.
/// A message of 16 bytes or more starts with `n` and ends with the
/// checksum of the rest, so that a stray one names itself.
#[derive(Clone, Copy, Debug)]
pub struct Sequence {
    pub seed: u64,
    pub max: usize,
    pub shape: Shape,
}

impl Sequence {
    pub fn len(&self, n: u64) -> usize {
        let r = mix(self.seed, n);
        let max = self.max as u64;
        let len = match self.shape {
            Shape::Fixed(len) => len as u64,
            Shape::Stress if n % 1009 == 1008 => max.saturating_sub((r >> 8) % 64),
            Shape::Stress => 16 + (r >> 8) % 33,
            Shape::Numbered => match r % 8 {
                0 => 16,
                1 => max,
                2 => max.saturating_sub((r >> 8) % 64),
                _ => 16 + (r >> 8) % (max.saturating_sub(15)),
            },
            Shape::Random => match r % 16 {
                0 => 0,
                1 => max,
                2 => max.saturating_sub((r >> 8) % 16),
                3..=6 => (r >> 8) % 24,
                _ => (r >> 8) % (max + 1),
            },
        };
        len.min(max) as usize
    }

    pub fn message(&self, n: u64, out: &mut Vec<u8>) {
        let len = self.len(n);
        let mut rng = Rng::new(mix(self.seed ^ 0xc0ff_ee00, n));
        out.clear();
        while out.len() < len {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        out.truncate(len);
        if len >= 16 {
            out[..8].copy_from_slice(&n.to_le_bytes());
            let sum = checksum(&out[..len - 8]);
            out[len - 8..].copy_from_slice(&sum.to_le_bytes());
        }
    }
}

/// Checks that received messages are the sequence, in order, whole.
pub struct Checker {
    pub sequence: Sequence,
    pub next: u64,
    pub expected: Vec<u8>,
}

impl Checker {
    pub fn new(sequence: Sequence) -> Checker {
        Checker {
            sequence,
            next: 0,
            expected: Vec::new(),
        }
    }

    pub fn check(&mut self, got: &[u8]) {
        let n = self.next;
        let intact = if self.sequence.shape == Shape::Stress {
            // Quicker: the length, the sequence number and the checksum
            // (every stress message has 16 bytes or more).
            got.len() == self.sequence.len(n)
                && got[..8] == n.to_le_bytes()
                && got[got.len() - 8..] == checksum(&got[..got.len() - 8]).to_le_bytes()
        } else {
            self.sequence.message(n, &mut self.expected);
            *got == self.expected[..]
        };
        if !intact {
            self.sequence.message(n, &mut self.expected);
            let mut what = format!(
                "message {n} is wrong: {} bytes, expected {}",
                got.len(),
                self.expected.len()
            );
            if got.len() >= 16 {
                let seq = u64::from_le_bytes(got[..8].try_into().unwrap());
                let sum = u64::from_le_bytes(got[got.len() - 8..].try_into().unwrap());
                let intact = sum == checksum(&got[..got.len() - 8]);
                what += &format!("; it says it is message {seq}, checksum valid: {intact}");
            }
            panic!("{what}");
        }
        self.next += 1;
    }
}

/// Proptest's settings here: `cases` cases, drawn with its XorShift
/// generator (its default, ChaCha, dominates the run time of a debug build).
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}
