//! A topic's bytes: the header, the publisher (lane) table, the subscriber
//! table, the lanes and their records, as `docs/FORMAT.md` draws them.
//! Everything is `#[repr(C)]` and pinned by `offset_of!` assertions.

use crate::sync::{AtomicU32, AtomicU64};

/// `b"SHMKTOPC"` read as a little-endian `u64`, at offset 0.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMKTOPC");

/// The format version this code reads and writes.
pub(crate) const VERSION: u32 = 2;

/// The header: four 128-byte lines.
pub(crate) const HEADER_SIZE: u64 = 512;

/// Bytes of one publisher's entry (its lane's header): one line.
pub(crate) const LANE_HEADER_SIZE: u64 = 128;

/// Bytes of a subscriber entry before its positions.
pub(crate) const SUBSCRIBER_FIXED: u64 = 32;

/// Records start at multiples of this.
pub(crate) const RECORD_ALIGN: u64 = 8;

/// A record's header: the kind word, publisher id, publisher sequence and
/// lane sequence.
pub(crate) const RECORD_HEADER: u64 = 32;

/// Smallest and largest lanes accepted.
pub(crate) const MIN_CAPACITY: u64 = 4096;
/// 2^36 bytes per lane.
pub(crate) const MAX_CAPACITY: u64 = 1 << 36;

/// Limits on the tables (so that the header's numbers cannot ask for
/// absurd segments, and lock bytes stay in their ranges).
pub(crate) const MAX_PUBLISHERS: u32 = 256;
/// At most this many subscribers.
pub(crate) const MAX_SUBSCRIBERS: u32 = 4096;
/// At most this many retained messages per lane.
pub(crate) const MAX_HISTORY: u32 = 1 << 20;

/// Record kinds (high half of the kind word). An empty word (all zero)
/// is where the next record will start (rule 3 of `lane`).
pub(crate) const KIND_EMPTY: u32 = 0;
/// A message record.
pub(crate) const KIND_MESSAGE: u32 = 1;
/// Padding up to the end of the lane: skip to offset 0.
pub(crate) const KIND_PADDING: u32 = 2;

/// A lane header's `flags`: its publisher relays another host's publisher.
pub(crate) const LANE_RELAY: u32 = 1;

/// Back-pressure policies (`policy` in the header).
pub(crate) const POLICY_BLOCK: u32 = 0;
/// A publisher overwrites the oldest records.
pub(crate) const POLICY_DROP_OLDEST: u32 = 1;

/// Lane states.
pub(crate) const LANE_UNUSED: u32 = 0;
/// A publisher holds the lane (or held it and died: its lock says which).
pub(crate) const LANE_OPEN: u32 = 1;
/// The last publisher closed the lane.
pub(crate) const LANE_CLOSED: u32 = 2;

/// Subscriber slot states: bit 0 set while in use; the rest is a
/// generation, bumped by every claim so that a stale compare-and-swap
/// (reclaiming a dead holder) never frees a new holder's slot.
pub(crate) const SUBSCRIBER_ACTIVE: u64 = 1;

/// OFD lock bytes (past any file's end; they touch no byte of the
/// mapping): the gate, held while members join or leave; one byte per
/// publisher lane; one per subscriber slot.
pub(crate) const GATE_BYTE: u64 = (1 << 62) - 1;
/// Publisher `i` locks `PUBLISHER_LOCKS + i`.
pub(crate) const PUBLISHER_LOCKS: u64 = 1 << 62;
/// Subscriber `j` locks `SUBSCRIBER_LOCKS + j`.
pub(crate) const SUBSCRIBER_LOCKS: u64 = (1 << 62) + (1 << 32);

/// Packs a kind word: length in the low 32 bits, kind in the high 32.
pub(crate) const fn kind_word(len: u32, kind: u32) -> u64 {
    (kind as u64) << 32 | len as u64
}

/// Unpacks a kind word into `(len, kind)`.
pub(crate) const fn split_kind_word(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// The bytes a record with `len` payload bytes takes.
pub(crate) const fn record_size(len: u64) -> u64 {
    (RECORD_HEADER + len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The largest message a lane of `capacity` bytes carries: a record may
/// need padding of almost its own size before it, and the empty word after
/// it (rule 3 of `lane`), so half the lane; and its length, and that
/// padding's (at most `record_size(max) - 8`), must fit 32 bits.
pub(crate) const fn max_message_for(capacity: u64) -> u64 {
    let half = capacity / 2 - RECORD_HEADER;
    let widest = (1 << 32) - RECORD_HEADER;
    if half < widest {
        half
    } else {
        widest
    }
}

/// Bytes of one subscriber entry for `publishers` lanes: a multiple of 128.
pub(crate) const fn subscriber_entry_size(publishers: u32) -> u64 {
    (SUBSCRIBER_FIXED + 8 * publishers as u64).div_ceil(128) * 128
}

/// Where the tables and lanes are, from the numbers in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub capacity: u64,
    pub publishers: u32,
    pub subscribers: u32,
    pub publishers_offset: u64,
    pub subscribers_offset: u64,
    pub subscriber_size: u64,
    pub lanes_offset: u64,
    pub size: u64,
}

impl Geometry {
    /// The layout for these numbers (already checked against the limits).
    pub(crate) fn new(capacity: u64, publishers: u32, subscribers: u32) -> Geometry {
        let publishers_offset = HEADER_SIZE;
        let subscribers_offset = publishers_offset + LANE_HEADER_SIZE * publishers as u64;
        let subscriber_size = subscriber_entry_size(publishers);
        let lanes_offset = subscribers_offset + subscriber_size * subscribers as u64;
        // Lanes start on a page so that their data is 8-aligned (and
        // prefetch-friendly).
        let lanes_offset = lanes_offset.div_ceil(4096) * 4096;
        Geometry {
            capacity,
            publishers,
            subscribers,
            publishers_offset,
            subscribers_offset,
            subscriber_size,
            lanes_offset,
            size: lanes_offset + capacity * publishers as u64,
        }
    }
}

/// Line 0: written once by the creator before `magic`, read-only after.
#[repr(C, align(128))]
pub(crate) struct Config {
    /// [`MAGIC`]; stored last, with Release, when the header is ready.
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// Reserved, 0.
    pub flags: AtomicU32,
    /// Bytes in each lane, a power of two.
    pub capacity: AtomicU64,
    /// Largest message payload.
    pub max_message: AtomicU64,
    /// Entries in the publisher table (= lanes).
    pub max_publishers: AtomicU32,
    /// Entries in the subscriber table.
    pub max_subscribers: AtomicU32,
    /// [`POLICY_BLOCK`] or [`POLICY_DROP_OLDEST`].
    pub policy: AtomicU32,
    /// Messages per lane a joining subscriber may first receive.
    pub history: AtomicU32,
    /// Offsets of the tables and the lanes, and the segment's size, as
    /// [`Geometry::new`] computes them (a reader checks they agree).
    pub publishers_offset: AtomicU64,
    pub subscribers_offset: AtomicU64,
    pub lanes_offset: AtomicU64,
    pub size: AtomicU64,
}

/// Line 1: words written rarely (sleeping, waking, joining, leaving).
#[repr(C, align(128))]
pub(crate) struct WaitLine {
    /// Futex: 1 while some subscriber sleeps (or is about to) for a record.
    pub subscribers_sleeping: AtomicU32,
    /// Futex: 1 while some publisher of a Block topic sleeps for space.
    pub publishers_sleeping: AtomicU32,
    /// 1 if a member cannot use `membarrier` (see `ring::protocol`, rule 8).
    pub full_fences: AtomicU32,
    /// 1 once the topic's name was removed (set under the gate, after the
    /// unlink): an opener that mapped it before goes back to the name.
    pub removed: AtomicU32,
    /// `CLOCK_MONOTONIC` ns of the last wake-up call.
    pub woken_at: AtomicU64,
    /// The last publisher id handed out (ids start at 1).
    pub last_publisher_id: AtomicU64,
    /// One more than the highest lane ever opened: subscribers look at no
    /// lane beyond it.
    pub lanes_used: AtomicU32,
    pub _reserved: AtomicU32,
}

/// The topic header at offset 0.
#[repr(C)]
pub(crate) struct Header {
    pub config: Config,
    pub wait: WaitLine,
    pub _reserved: [Reserved; 2],
}

/// A zero line, reserved.
#[repr(C, align(128))]
pub(crate) struct Reserved {
    pub _zero: AtomicU64,
}

/// One publisher's entry in the table: its lane's header. Written only by
/// the lane's publisher, except `state` and `owner`, which a taker-over
/// writes under the gate.
#[repr(C, align(128))]
pub(crate) struct LaneHeader {
    /// A record boundary (bytes ever written to the lane) with every
    /// record below it committed: the last commit's end, or a little
    /// behind it when the publisher died between a record's word and this
    /// store (rule 3 of `lane`). Subscribers do not read it per message.
    pub tail: AtomicU64,
    /// Bytes up to this position may be being written (a seqlock's
    /// counter: see `lane`, rule 6).
    pub reserve: AtomicU64,
    /// Position of the oldest record still whole in the lane.
    pub head: AtomicU64,
    /// Position of the oldest retained record of the history.
    pub history_start: AtomicU64,
    /// [`LANE_UNUSED`], [`LANE_OPEN`] or [`LANE_CLOSED`].
    pub state: AtomicU32,
    /// [`LANE_RELAY`] when the lane's publisher relays a publisher of
    /// another host (a bridge), else 0.
    pub flags: AtomicU32,
    /// The id of the lane's (last) publisher.
    pub publisher: AtomicU64,
    /// The publisher's pid (low 32 bits) and start time (high 32), for
    /// `status`; liveness comes from its lock.
    pub owner: AtomicU64,
    /// The current publisher's next sequence number: the messages it
    /// committed (a relay: its origin's last sequence + 1).
    pub published: AtomicU64,
    /// Messages committed to the lane since the topic was created (the
    /// next lane sequence).
    pub lane_sequence: AtomicU64,
    /// A seqlock counter over `tail` and `lane_sequence`: odd while the
    /// publisher updates them, so a joiner reads a consistent pair.
    pub version: AtomicU64,
    /// A relay lane's origin: the host (a bridge's origin id) and the id
    /// there of the publisher it relays; 0 otherwise.
    pub origin_host: AtomicU64,
    pub origin_publisher: AtomicU64,
}

impl LaneHeader {
    /// The remote publisher this lane's publisher relays, if its flags say
    /// it is a relay.
    pub(crate) fn origin(&self) -> Option<super::Origin> {
        use crate::sync::Ordering::Relaxed;
        (self.flags.load(Relaxed) & LANE_RELAY != 0).then(|| super::Origin {
            host: self.origin_host.load(Relaxed),
            publisher: self.origin_publisher.load(Relaxed),
        })
    }
}

/// The fixed part of a subscriber's entry; its positions (one u64 per
/// lane, written only by the subscriber) follow.
#[repr(C)]
pub(crate) struct SubscriberHeader {
    /// Generation << 1 | [`SUBSCRIBER_ACTIVE`].
    pub state: AtomicU64,
    /// The holder's pid (low 32 bits) and start time (high 32), for
    /// `status`; liveness comes from its lock.
    pub owner: AtomicU64,
    /// Messages received.
    pub received: AtomicU64,
    /// Messages missed (drop-oldest topics).
    pub missed: AtomicU64,
}

#[cfg(not(loom))]
mod pinned {
    use super::*;
    use core::mem::{offset_of, size_of};

    const _: () = assert!(size_of::<Header>() as u64 == HEADER_SIZE);
    const _: () = assert!(offset_of!(Config, magic) == 0);
    const _: () = assert!(offset_of!(Config, version) == 8);
    const _: () = assert!(offset_of!(Config, flags) == 12);
    const _: () = assert!(offset_of!(Config, capacity) == 16);
    const _: () = assert!(offset_of!(Config, max_message) == 24);
    const _: () = assert!(offset_of!(Config, max_publishers) == 32);
    const _: () = assert!(offset_of!(Config, max_subscribers) == 36);
    const _: () = assert!(offset_of!(Config, policy) == 40);
    const _: () = assert!(offset_of!(Config, history) == 44);
    const _: () = assert!(offset_of!(Config, publishers_offset) == 48);
    const _: () = assert!(offset_of!(Config, subscribers_offset) == 56);
    const _: () = assert!(offset_of!(Config, lanes_offset) == 64);
    const _: () = assert!(offset_of!(Config, size) == 72);
    const _: () = assert!(offset_of!(Header, wait) == 128);
    const _: () = assert!(offset_of!(WaitLine, subscribers_sleeping) == 0);
    const _: () = assert!(offset_of!(WaitLine, publishers_sleeping) == 4);
    const _: () = assert!(offset_of!(WaitLine, full_fences) == 8);
    const _: () = assert!(offset_of!(WaitLine, removed) == 12);
    const _: () = assert!(offset_of!(WaitLine, woken_at) == 16);
    const _: () = assert!(offset_of!(WaitLine, last_publisher_id) == 24);
    const _: () = assert!(offset_of!(WaitLine, lanes_used) == 32);
    const _: () = assert!(size_of::<LaneHeader>() as u64 == LANE_HEADER_SIZE);
    const _: () = assert!(offset_of!(LaneHeader, tail) == 0);
    const _: () = assert!(offset_of!(LaneHeader, reserve) == 8);
    const _: () = assert!(offset_of!(LaneHeader, head) == 16);
    const _: () = assert!(offset_of!(LaneHeader, history_start) == 24);
    const _: () = assert!(offset_of!(LaneHeader, state) == 32);
    const _: () = assert!(offset_of!(LaneHeader, flags) == 36);
    const _: () = assert!(offset_of!(LaneHeader, publisher) == 40);
    const _: () = assert!(offset_of!(LaneHeader, owner) == 48);
    const _: () = assert!(offset_of!(LaneHeader, published) == 56);
    const _: () = assert!(offset_of!(LaneHeader, lane_sequence) == 64);
    const _: () = assert!(offset_of!(LaneHeader, version) == 72);
    const _: () = assert!(offset_of!(LaneHeader, origin_host) == 80);
    const _: () = assert!(offset_of!(LaneHeader, origin_publisher) == 88);
    const _: () = assert!(size_of::<SubscriberHeader>() as u64 == SUBSCRIBER_FIXED);
    const _: () = assert!(offset_of!(SubscriberHeader, state) == 0);
    const _: () = assert!(offset_of!(SubscriberHeader, owner) == 8);
    const _: () = assert!(offset_of!(SubscriberHeader, received) == 16);
    const _: () = assert!(offset_of!(SubscriberHeader, missed) == 24);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_places_tables_then_page_aligned_lanes() {
        let g = Geometry::new(4096, 2, 64);
        assert_eq!(g.publishers_offset, 512);
        assert_eq!(g.subscribers_offset, 512 + 256);
        assert_eq!(g.subscriber_size, 128);
        assert_eq!(g.lanes_offset, 12288);
        assert_eq!(g.size, 12288 + 8192);
        assert_eq!(subscriber_entry_size(12), 128);
        assert_eq!(subscriber_entry_size(13), 256);
    }

    #[test]
    fn the_largest_message_always_fits_after_padding() {
        for capacity in [MIN_CAPACITY, 1 << 20] {
            let max = max_message_for(capacity);
            // Padding short of the record, the record, the empty word.
            assert!(record_size(max) - RECORD_ALIGN + record_size(max) + RECORD_ALIGN <= capacity);
        }
        for capacity in [1 << 33, 1 << 34, MAX_CAPACITY] {
            // The widest padding, just short of the largest record and its
            // empty word: its length (the padding less its word) fits 32 bits.
            let padding = record_size(max_message_for(capacity));
            assert!(padding - RECORD_ALIGN <= u32::MAX as u64, "{capacity}");
        }
        assert_eq!(&MAGIC.to_le_bytes(), b"SHMKTOPC");
        assert_eq!(
            split_kind_word(kind_word(7, KIND_PADDING)),
            (7, KIND_PADDING)
        );
    }
}
