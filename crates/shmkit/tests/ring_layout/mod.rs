//! The ring's byte layout, as docs/FORMAT.md draws it, the small ring most
//! tests use, and a raw view of a ring's header to watch its futex words.

#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use shmkit::ring::Options;
use shmkit::{Attachment, ReadWrite, Segment};

use crate::processes::ring_key;

pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKRING");
pub const MAGIC_AT: usize = 0;
pub const VERSION_AT: usize = 8;
pub const FLAGS_AT: usize = 12;
pub const CAPACITY_AT: usize = 16;
pub const MAX_MESSAGE_AT: usize = 24;
pub const DATA_OFFSET_AT: usize = 32;
pub const TAIL_AT: usize = 128;
pub const PRODUCER_OWNER_AT: usize = 136;
pub const HEAD_AT: usize = 256;
pub const CONSUMER_OWNER_AT: usize = 264;
pub const CONSUMER_SLEEPING_AT: usize = 384;
pub const PRODUCER_SLEEPING_AT: usize = 388;
pub const CLOSED_AT: usize = 392;
pub const HEADER: usize = 512;

pub const KIND_EMPTY: u32 = 0;
pub const KIND_MESSAGE: u32 = 1;
pub const KIND_PADDING: u32 = 2;

/// Bytes a record of `len` payload bytes takes: its word, the payload,
/// padding to 8.
pub fn record_size(len: usize) -> u64 {
    (8 + len as u64 + 7) & !7
}

pub fn record_word(len: u32, kind: u32) -> u64 {
    u64::from(kind) << 32 | u64::from(len)
}

/// The small ring most tests use: 4 KiB, so that records wrap constantly.
pub const SMALL: u64 = 4096;

pub fn small_ring() -> Options {
    Options::default().capacity(SMALL)
}

/// `SMALL / 2 - 16`, the largest message of a 4 KiB ring.
pub const SMALL_MAX: usize = 2032;

/// Generous bound for `*_timeout` calls that are expected to succeed.
pub const LONG: Duration = Duration::from_secs(60);

/// A mapping of ring `name`'s header, to watch its futex words.
pub fn map_ring(name: &str) -> Attachment<ReadWrite> {
    Segment::open(&ring_key(name))
        .unwrap()
        .attach(ReadWrite)
        .unwrap()
}

/// Whether the side whose `*_sleeping` word is at `offset` sleeps on it.
pub fn sleeping(ring: &Attachment<ReadWrite>, offset: usize) -> bool {
    ring.atomic_u32(offset)
        .unwrap()
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1
}
