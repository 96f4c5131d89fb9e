//! The ring's bytes: the header and the records, as `docs/FORMAT.md` draws
//! them. Everything here is `#[repr(C)]` and pinned by `offset_of!`
//! assertions, so that a C or Python program could speak the format.

use crate::sync::{AtomicU32, AtomicU64};

/// `b"SHMKRING"` read as a little-endian `u64`, at offset 0.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMKRING");

/// The format version this code reads and writes. Version 2 added the
/// endpoint locks (see `endpoint`), `joined`, `removed` and the third state
/// of `closed`; a version 1 peer would not take the locks.
pub(crate) const VERSION: u32 = 2;

/// Where the data area starts: the header is four 128-byte lines.
pub(crate) const HEADER_SIZE: u64 = 512;

/// Records start at multiples of this.
pub(crate) const RECORD_ALIGN: u64 = 8;

/// Size of a record header: the 8-byte word written by one 64-bit store.
pub(crate) const RECORD_HEADER: u64 = 8;

/// Smallest and largest data areas accepted.
pub(crate) const MIN_CAPACITY: u64 = 4096;
/// 2^40 bytes: more than any tmpfs here, small enough that positions
/// (`u64` byte counts) cannot wrap in centuries.
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;

/// Record type in the high half of the record word: no record yet.
pub(crate) const KIND_EMPTY: u32 = 0;
/// A message of `len` bytes follows.
pub(crate) const KIND_MESSAGE: u32 = 1;
/// Padding up to the end of the data area: skip to offset 0.
pub(crate) const KIND_PADDING: u32 = 2;

/// Packs a record word: length in the low 32 bits, type in the high 32.
pub(crate) const fn record_word(len: u32, kind: u32) -> u64 {
    (kind as u64) << 32 | len as u64
}

/// Unpacks a record word into `(len, kind)`.
pub(crate) const fn split_record_word(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// The bytes a record of `len` payload bytes takes: header plus payload,
/// rounded up to [`RECORD_ALIGN`].
pub(crate) const fn record_size(len: u64) -> u64 {
    (RECORD_HEADER + len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The largest message a data area of `capacity` bytes can carry: a record
/// may need a padding record of almost its own size before it, plus the
/// empty record word after it, so it is limited to half the area; and its
/// length, and that padding record's (at most `record_size(max) - 8`),
/// must fit the record word's 32 bits.
pub(crate) const fn max_message_for(capacity: u64) -> u64 {
    let half = capacity / 2 - 2 * RECORD_HEADER;
    let widest = (1 << 32) - RECORD_HEADER;
    if half < widest {
        half
    } else {
        widest
    }
}

/// Line 0: written once by the creator before `magic`, read-only after.
#[repr(C, align(128))]
pub(crate) struct Config {
    /// [`MAGIC`]; stored last, with Release, when the header is ready.
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// Reserved flags, 0.
    pub flags: AtomicU32,
    /// Bytes in the data area, a power of two.
    pub capacity: AtomicU64,
    /// Largest message payload in bytes.
    pub max_message: AtomicU64,
    /// Offset of the data area from the start of the segment ([`HEADER_SIZE`]).
    pub data_offset: AtomicU64,
}

/// Line 1: written only by the producer.
#[repr(C, align(128))]
pub(crate) struct ProducerLine {
    /// Position (bytes ever written) after the last committed record.
    pub tail: AtomicU64,
    /// The producer's identity (see `endpoint`), 0 when there is none.
    pub owner: AtomicU64,
    /// Messages committed since the ring was created.
    pub sent: AtomicU64,
}

/// Line 2: written only by the consumer.
#[repr(C, align(128))]
pub(crate) struct ConsumerLine {
    /// Position of the next record to read; all bytes before it are free.
    pub head: AtomicU64,
    /// The consumer's identity, 0 when there is none.
    pub owner: AtomicU64,
    /// Messages released since the ring was created.
    pub received: AtomicU64,
    /// How many consumers have opened the ring (wrapping): a producer
    /// compares it to learn that its consumer left, even if a new one
    /// came meanwhile.
    pub joined: AtomicU64,
}

/// Line 3: words written rarely (when a side goes to sleep, is woken, or
/// closes), so that the other side's check of them on every message reads a
/// line that stays in its cache.
#[repr(C, align(128))]
pub(crate) struct WaitLine {
    /// Futex: 1 while the consumer sleeps (or is about to) waiting for a record.
    pub consumer_sleeping: AtomicU32,
    /// Futex: 1 while the producer sleeps (or is about to) waiting for space.
    pub producer_sleeping: AtomicU32,
    /// [`OPEN`], [`CLOSED`] once the producer closed the stream, or
    /// [`CLOSE_SEEN`] once the consumer was told so.
    pub closed: AtomicU32,
    /// 1 if an endpoint cannot use `membarrier`: then wakers issue full
    /// fences instead of the light half of the asymmetric fence.
    pub full_fences: AtomicU32,
    /// `CLOCK_MONOTONIC` nanoseconds at the last wake-up call, so the woken
    /// side can measure what a wake-up costs (see `wait`).
    pub woken_at: AtomicU64,
    /// 1 once the ring's name was removed: an opener that mapped it before
    /// goes back to the name (set under the gate lock, after the unlink).
    pub removed: AtomicU32,
}

/// `closed`: the stream is open.
pub(crate) const OPEN: u32 = 0;
/// `closed`: the producer closed the stream.
pub(crate) const CLOSED: u32 = 1;
/// `closed`: closed, and the consumer has been told (a new producer may
/// then reopen the drained ring).
pub(crate) const CLOSE_SEEN: u32 = 2;

/// The ring header at offset 0 of the segment.
#[repr(C)]
pub(crate) struct Header {
    pub config: Config,
    pub producer: ProducerLine,
    pub consumer: ConsumerLine,
    pub wait: WaitLine,
}

#[cfg(not(loom))]
mod pinned {
    use super::*;
    use core::mem::{offset_of, size_of};

    const _: () = assert!(size_of::<Header>() as u64 == HEADER_SIZE);
    const _: () = assert!(offset_of!(Header, config) == 0);
    const _: () = assert!(offset_of!(Config, magic) == 0);
    const _: () = assert!(offset_of!(Config, version) == 8);
    const _: () = assert!(offset_of!(Config, flags) == 12);
    const _: () = assert!(offset_of!(Config, capacity) == 16);
    const _: () = assert!(offset_of!(Config, max_message) == 24);
    const _: () = assert!(offset_of!(Config, data_offset) == 32);
    const _: () = assert!(offset_of!(Header, producer) == 128);
    const _: () = assert!(offset_of!(ProducerLine, tail) == 0);
    const _: () = assert!(offset_of!(ProducerLine, owner) == 8);
    const _: () = assert!(offset_of!(ProducerLine, sent) == 16);
    const _: () = assert!(offset_of!(Header, consumer) == 256);
    const _: () = assert!(offset_of!(ConsumerLine, head) == 0);
    const _: () = assert!(offset_of!(ConsumerLine, owner) == 8);
    const _: () = assert!(offset_of!(ConsumerLine, received) == 16);
    const _: () = assert!(offset_of!(ConsumerLine, joined) == 24);
    const _: () = assert!(offset_of!(Header, wait) == 384);
    const _: () = assert!(offset_of!(WaitLine, consumer_sleeping) == 0);
    const _: () = assert!(offset_of!(WaitLine, producer_sleeping) == 4);
    const _: () = assert!(offset_of!(WaitLine, closed) == 8);
    const _: () = assert!(offset_of!(WaitLine, full_fences) == 12);
    const _: () = assert!(offset_of!(WaitLine, woken_at) == 16);
    const _: () = assert!(offset_of!(WaitLine, removed) == 24);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_are_aligned() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
        assert_eq!(record_size(64), 72);
    }

    #[test]
    fn record_words_round_trip() {
        let word = record_word(12345, KIND_MESSAGE);
        assert_eq!(split_record_word(word), (12345, KIND_MESSAGE));
        assert_eq!(split_record_word(0), (0, KIND_EMPTY));
        assert_eq!(&MAGIC.to_le_bytes(), b"SHMKRING");
    }

    #[test]
    fn the_largest_message_has_a_32_bit_length() {
        assert_eq!(max_message_for(1 << 33), (1 << 32) - 16);
        assert_eq!(max_message_for(1 << 34), (1 << 32) - 8);
        assert_eq!(max_message_for(MAX_CAPACITY), (1 << 32) - 8);
        for capacity in [1 << 33, 1 << 34, MAX_CAPACITY] {
            // The widest padding record, just short of the largest record
            // and its empty word: its length fits the word too.
            let padding = record_size(max_message_for(capacity));
            assert!(padding - RECORD_HEADER <= u32::MAX as u64, "{capacity}");
        }
    }

    #[test]
    fn the_largest_message_always_fits() {
        for capacity in [MIN_CAPACITY, 1 << 20] {
            let max = max_message_for(capacity);
            // Worst case: a padding record of just under a record, the
            // record, and the empty word after it.
            assert!(record_size(max) - RECORD_ALIGN + record_size(max) + RECORD_HEADER <= capacity);
        }
    }
}
