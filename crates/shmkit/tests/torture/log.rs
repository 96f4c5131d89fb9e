//! The consumer's log: one 16-byte entry per message received, and the
//! producer's count of what it committed.

use crate::*;

/// How the consumer took a message out of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `recv`: copied, handed back, then logged (at most once).
    Recv = 1,
    /// `read`: read in place, logged, then handed back (at least once).
    Read = 2,
    /// `drain_with_sequence`: each logged inside the batch, handed back
    /// together after it (at least once, the whole batch).
    Drain = 3,
}

impl Verb {
    /// The verb a consumer incarnation uses for its operation after `k`
    /// log entries: a function of the numbers alone, so the checker knows
    /// what a killed consumer was doing.
    pub fn choose(seed: u64, incarnation: u64, k: u64) -> Verb {
        match mix(mix(seed, incarnation), k) % 10 {
            0..=3 => Verb::Read,
            4..=6 => Verb::Recv,
            _ => Verb::Drain,
        }
    }

    pub fn from_code(code: u64) -> Verb {
        match code {
            1 => Verb::Recv,
            2 => Verb::Read,
            3 => Verb::Drain,
            other => panic!("verb code {other} in a consumer log"),
        }
    }
}

/// One logged message: the ring's sequence number, the message's number,
/// how it was taken, whether it starts a drain batch, whether the consumer
/// had seen that sequence number before (a redelivery it skipped).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub seq: u64,
    pub n: u64,
    pub verb: Verb,
    pub batch_start: bool,
    pub duplicate: bool,
}

pub const N_BITS: u64 = (1 << 48) - 1;

impl Entry {
    pub fn encode(&self) -> [u8; 16] {
        let word = self.n
            | (self.verb as u64) << 56
            | u64::from(self.batch_start) << 55
            | u64::from(self.duplicate) << 54;
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.seq.to_le_bytes());
        bytes[8..].copy_from_slice(&word.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Entry {
        let seq = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let word = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        Entry {
            seq,
            n: word & N_BITS,
            verb: Verb::from_code(word >> 56),
            batch_start: word >> 55 & 1 == 1,
            duplicate: word >> 54 & 1 == 1,
        }
    }
}

/// Reads a log's whole entries (a kill cannot split a 16-byte write to a
/// regular file, but a short tail would be ignored).
pub fn read_entries(path: &Path) -> Vec<Entry> {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        file.read_to_end(&mut bytes).unwrap();
    }
    bytes.chunks_exact(16).map(Entry::decode).collect()
}

/// The producer's log: two 8-byte words, rewritten in place. At 0, the
/// number of its commits, after each `Ok`; at 8, before a batch commits,
/// how many it will have committed after it (so the checker knows what a
/// producer killed around a batch's commit may have committed unlogged).
pub fn read_log(path: &Path) -> (u64, u64) {
    let mut words = [0; 16];
    match File::open(path).and_then(|file| file.read_exact_at(&mut words, 0)) {
        Ok(()) => (
            u64::from_le_bytes(words[..8].try_into().unwrap()),
            u64::from_le_bytes(words[8..].try_into().unwrap()),
        ),
        Err(_) => (0, 0),
    }
}

pub fn read_count(path: &Path) -> u64 {
    read_log(path).0
}
