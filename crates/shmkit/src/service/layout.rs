//! A service's bytes: the header, the client slots and the two rings of
//! each slot, as `docs/FORMAT.md` draws them. Everything is `#[repr(C)]`
//! and pinned by `offset_of!` assertions, so that a C or Python program
//! could speak the format. The rings inside a slot are the ring format's
//! own header and data area (`ring/layout.rs`), driven by the ring's
//! protocol (`ring/protocol.rs`).

use crate::ring::layout::{self as ring_layout, record_size, RECORD_HEADER};
use crate::sync::{AtomicU32, AtomicU64};

/// `b"SHMKSERV"` read as a little-endian `u64`, at offset 0.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMKSERV");

/// The format version this code reads and writes.
pub(crate) const VERSION: u32 = 1;

/// The header: five 128-byte lines.
pub(crate) const HEADER_SIZE: u64 = 640;

/// A slot's own two lines, before its two rings.
pub(crate) const SLOT_LINE: u64 = 256;

/// Bytes before a request or response body in its ring record: the call id.
pub(crate) const ID_LEN: u64 = 8;

/// Client slots: at least 1, at most this many (the `active` bitmap has
/// one bit per slot).
pub(crate) const MAX_CLIENTS: u32 = 1024;
/// At most this many calls in flight per client.
pub(crate) const MAX_IN_FLIGHT: u32 = 1 << 16;
/// The largest request or response body: each ring is at most 2^30 bytes.
pub(crate) const MAX_BODY: u64 = 1 << 24;

/// Lock bytes of the segment's file (OFD locks, `sys::range_lock`; past
/// the header's meaning, they touch no byte): the gate, under which members
/// join, leave and remove the service.
pub(crate) const GATE_BYTE: u64 = 0;
/// Held by the server while it lives.
pub(crate) const SERVER_LOCK: u64 = 1;
/// Client slot `i` is held by the lock on byte `CLIENT_LOCKS + i`.
pub(crate) const CLIENT_LOCKS: u64 = 4096;

/// `server.state`: no server ever opened the service.
pub(crate) const SERVER_NONE: u32 = 0;
/// A server holds it (or held it and died: its lock says which).
pub(crate) const SERVER_SERVING: u32 = 1;
/// The last server closed it.
pub(crate) const SERVER_CLOSED: u32 = 2;

/// Slot state word: the low 8 bits are the status, the rest a generation
/// that every claim of the slot bumps, so that a stale compare-and-swap
/// (and a reply to an earlier holder) fails.
pub(crate) const SLOT_FREE: u64 = 0;
/// A client holds the slot (its lock says whether it lives).
pub(crate) const SLOT_CONNECTED: u64 = 1;
/// The server found the holder dead (its lock free, the slot not left).
pub(crate) const SLOT_DEAD: u64 = 2;

/// The status in a slot state word.
pub(crate) const fn slot_status(state: u64) -> u64 {
    state & 0xff
}

/// The generation in a slot state word.
pub(crate) const fn slot_generation(state: u64) -> u64 {
    state >> 8
}

/// A slot state word.
pub(crate) const fn slot_state(generation: u64, status: u64) -> u64 {
    generation << 8 | status
}

/// A call id: the low 32 bits of the slot generation of the client that
/// made it, then the client's call counter.
pub(crate) const fn call_id(generation: u64, sequence: u32) -> u64 {
    (generation & 0xffff_ffff) << 32 | sequence as u64
}

/// The generation part of a call id.
pub(crate) const fn id_generation(id: u64) -> u32 {
    (id >> 32) as u32
}

/// Line 0: written once by the creator before `magic`, read-only after.
#[repr(C, align(128))]
pub(crate) struct Config {
    /// [`MAGIC`]; stored last, with Release, when the segment is ready.
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// Reserved flags, 0.
    pub flags: AtomicU32,
    /// Client slots.
    pub max_clients: AtomicU32,
    /// Calls in flight per client.
    pub max_in_flight: AtomicU32,
    /// Largest request body.
    pub max_request: AtomicU64,
    /// Largest response body.
    pub max_response: AtomicU64,
    /// Data bytes of each request ring (a power of two).
    pub request_capacity: AtomicU64,
    /// Data bytes of each response ring (a power of two).
    pub response_capacity: AtomicU64,
    /// Bytes of one slot: its line and its two rings.
    pub slot_size: AtomicU64,
    /// Offset of slot 0 ([`HEADER_SIZE`]).
    pub slots_offset: AtomicU64,
    /// Bytes of the whole segment.
    pub size: AtomicU64,
}

/// Line 1: written by a server when it opens and closes; read by clients
/// at every call, so nothing that changes per call lives here.
#[repr(C, align(128))]
pub(crate) struct ServerLine {
    /// The server's identity (pid and start time, as a ring's owner
    /// word), 0 when none holds the service.
    pub owner: AtomicU64,
    /// How many servers have opened the service (wrapping): a client's
    /// call outlives only the server it was sent to.
    pub epoch: AtomicU64,
    /// [`SERVER_NONE`], [`SERVER_SERVING`] or [`SERVER_CLOSED`].
    pub state: AtomicU32,
    pub _pad: AtomicU32,
}

/// Line 4: the server's counters, written per call, read by `status`.
#[repr(C, align(128))]
pub(crate) struct CountersLine {
    /// Requests received.
    pub received: AtomicU64,
    /// Responses sent.
    pub replied: AtomicU64,
    /// Responses dropped: to a client that died or left, or whose
    /// response ring was full; and requests of such clients skipped.
    pub dropped: AtomicU64,
    /// Clients the server found dead.
    pub clients_lost: AtomicU64,
}

/// Line 2: words written rarely (a sleep, a wake-up, a removal).
#[repr(C, align(128))]
pub(crate) struct WaitLine {
    /// Futex: 1 while the server sleeps (or is about to) waiting for a
    /// request from any client.
    pub server_sleeping: AtomicU32,
    /// 1 if an endpoint cannot use `membarrier`: then wakers issue full
    /// fences (as the ring's `full_fences`).
    pub full_fences: AtomicU32,
    /// `CLOCK_MONOTONIC` nanoseconds at the last wake-up of the server.
    pub woken_at: AtomicU64,
    /// 1 once the service's name was removed (set under the gate).
    pub removed: AtomicU32,
    pub _pad: AtomicU32,
}

/// Line 3: which slots a client holds, one bit per slot, so that the
/// server's poll looks only at those (set and cleared under the gate).
#[repr(C, align(128))]
pub(crate) struct ActiveLine {
    pub bits: [AtomicU64; (MAX_CLIENTS / 64) as usize],
}

/// The service header at offset 0 of the segment.
#[repr(C)]
pub(crate) struct Header {
    pub config: Config,
    pub server: ServerLine,
    pub wait: WaitLine,
    pub active: ActiveLine,
    pub counters: CountersLine,
}

/// A slot's own two lines, written by its client (and by the server only
/// to mark a dead holder): the state, which the server reads at every
/// look at the slot, and apart from it the counters the client writes at
/// every call.
#[repr(C, align(128))]
pub(crate) struct SlotLine {
    /// Generation and status (see [`SLOT_CONNECTED`]).
    pub state: AtomicU64,
    /// The holder's identity, 0 when the slot was left.
    pub owner: AtomicU64,
    /// Written by a server when it opens: the request ring's `head` it
    /// starts from. A request before it that was taken, was taken by an
    /// earlier server (rule 6).
    pub server_from: AtomicU64,
    pub counters: SlotCounters,
}

/// The second line of a slot.
#[repr(C, align(128))]
pub(crate) struct SlotCounters {
    /// Calls the holder sent.
    pub calls: AtomicU64,
    /// Calls the holder has in flight (sent, response not read).
    pub in_flight: AtomicU32,
    pub _pad: AtomicU32,
}

/// Where everything is in a service of these parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub clients: u32,
    pub request_capacity: u64,
    pub response_capacity: u64,
    pub slot_size: u64,
    pub size: u64,
}

/// Offset of a slot's request ring header from the slot's start.
pub(crate) const REQUEST_RING: u64 = SLOT_LINE;

impl Geometry {
    /// The layout for `clients` slots whose rings carry `in_flight`
    /// bodies of the largest size at once, with room for a padding record.
    pub(crate) fn new(
        clients: u32,
        in_flight: u32,
        max_request: u64,
        max_response: u64,
    ) -> Geometry {
        let request_capacity = ring_capacity(in_flight, max_request);
        let response_capacity = ring_capacity(in_flight, max_response);
        let slot_size =
            SLOT_LINE + 2 * ring_layout::HEADER_SIZE + request_capacity + response_capacity;
        Geometry {
            clients,
            request_capacity,
            response_capacity,
            slot_size,
            size: HEADER_SIZE + u64::from(clients) * slot_size,
        }
    }

    /// Offset of slot `i`'s line.
    pub(crate) fn slot(&self, i: u32) -> u64 {
        HEADER_SIZE + u64::from(i) * self.slot_size
    }

    /// Offset of slot `i`'s response ring header.
    pub(crate) fn response_ring(&self, i: u32) -> u64 {
        self.slot(i) + REQUEST_RING + ring_layout::HEADER_SIZE + self.request_capacity
    }
}

/// The smallest power-of-two ring that holds `in_flight` records of `body`
/// bytes (and an id) after a worst-case padding record, and whose largest
/// message is at least that record.
pub(crate) fn ring_capacity(in_flight: u32, body: u64) -> u64 {
    let message = ID_LEN + body;
    let needed = (u64::from(in_flight) + 1) * record_size(message) + RECORD_HEADER;
    let mut capacity = needed.next_power_of_two().max(ring_layout::MIN_CAPACITY);
    while ring_layout::max_message_for(capacity) < message {
        capacity *= 2;
    }
    capacity
}

#[cfg(not(loom))]
mod pinned {
    use super::*;
    use core::mem::{offset_of, size_of};

    const _: () = assert!(size_of::<Header>() as u64 == HEADER_SIZE);
    const _: () = assert!(size_of::<SlotLine>() as u64 == SLOT_LINE);
    const _: () = assert!(offset_of!(Config, magic) == 0);
    const _: () = assert!(offset_of!(Config, version) == 8);
    const _: () = assert!(offset_of!(Config, flags) == 12);
    const _: () = assert!(offset_of!(Config, max_clients) == 16);
    const _: () = assert!(offset_of!(Config, max_in_flight) == 20);
    const _: () = assert!(offset_of!(Config, max_request) == 24);
    const _: () = assert!(offset_of!(Config, max_response) == 32);
    const _: () = assert!(offset_of!(Config, request_capacity) == 40);
    const _: () = assert!(offset_of!(Config, response_capacity) == 48);
    const _: () = assert!(offset_of!(Config, slot_size) == 56);
    const _: () = assert!(offset_of!(Config, slots_offset) == 64);
    const _: () = assert!(offset_of!(Config, size) == 72);
    const _: () = assert!(offset_of!(Header, server) == 128);
    const _: () = assert!(offset_of!(ServerLine, owner) == 0);
    const _: () = assert!(offset_of!(ServerLine, epoch) == 8);
    const _: () = assert!(offset_of!(ServerLine, state) == 16);
    const _: () = assert!(offset_of!(Header, counters) == 512);
    const _: () = assert!(offset_of!(CountersLine, received) == 0);
    const _: () = assert!(offset_of!(CountersLine, replied) == 8);
    const _: () = assert!(offset_of!(CountersLine, dropped) == 16);
    const _: () = assert!(offset_of!(CountersLine, clients_lost) == 24);
    const _: () = assert!(offset_of!(Header, wait) == 256);
    const _: () = assert!(offset_of!(WaitLine, server_sleeping) == 0);
    const _: () = assert!(offset_of!(WaitLine, full_fences) == 4);
    const _: () = assert!(offset_of!(WaitLine, woken_at) == 8);
    const _: () = assert!(offset_of!(WaitLine, removed) == 16);
    const _: () = assert!(offset_of!(Header, active) == 384);
    const _: () = assert!(offset_of!(SlotLine, state) == 0);
    const _: () = assert!(offset_of!(SlotLine, owner) == 8);
    const _: () = assert!(offset_of!(SlotLine, server_from) == 16);
    const _: () = assert!(offset_of!(SlotLine, counters) == 128);
    const _: () = assert!(offset_of!(SlotCounters, calls) == 0);
    const _: () = assert!(offset_of!(SlotCounters, in_flight) == 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_every_call_in_flight() {
        let capacity = ring_capacity(8, 4096);
        assert_eq!(capacity, 1 << 16);
        assert!(ring_layout::max_message_for(capacity) >= 4096 + ID_LEN);
        // One record of the largest size needs a ring where it is at most half.
        assert_eq!(ring_capacity(1, 1 << 20), 1 << 22);
        assert_eq!(ring_capacity(1, 0), ring_layout::MIN_CAPACITY);
    }

    #[test]
    fn ids_and_states_round_trip() {
        let state = slot_state(7, SLOT_CONNECTED);
        assert_eq!(
            (slot_generation(state), slot_status(state)),
            (7, SLOT_CONNECTED)
        );
        let id = call_id(0x1_0000_0007, 42);
        assert_eq!((id_generation(id), id as u32), (7, 42));
        assert_eq!(&MAGIC.to_le_bytes(), b"SHMKSERV");
    }

    #[test]
    fn slots_are_lines_apart() {
        let geometry = Geometry::new(32, 8, 4096, 4096);
        assert_eq!(geometry.slot_size % 128, 0);
        assert_eq!(geometry.slot(1) - geometry.slot(0), geometry.slot_size);
        assert_eq!(
            geometry.response_ring(0),
            HEADER_SIZE + SLOT_LINE + 512 + (1 << 16)
        );
    }
}
