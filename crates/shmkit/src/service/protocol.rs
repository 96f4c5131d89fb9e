//! The service protocol: how clients claim slots, how calls travel through
//! a slot's two rings, and how each side learns the other died.
//!
//! # Rules
//!
//! 1. Each slot holds two rings in the ring format (`ring/layout.rs`):
//!    requests (the client produces, the server consumes) and responses
//!    (the server produces, the client consumes), driven by the ring's
//!    own protocol (`ring/protocol.rs`) through `RingRef`: the service adds
//!    no second record format. A record's payload is an 8-byte call id,
//!    little-endian, then the body.
//! 2. A client claims slot `i` by taking the OFD lock on byte
//!    `CLIENT_LOCKS + i` of the file, under the gate. Holding it, it bumps
//!    the slot's generation and stores `state = generation << 8 |
//!    CONNECTED` (SeqCst), its owner word, and sets bit `i` of `active`.
//!    It takes the request ring's producer side over as a ring producer
//!    does after a crash (`recover_tail`), and the response ring's
//!    consumer side from its published `head`. Leaving, under the gate, it
//!    stores `FREE` with the same generation, clears its owner and bit,
//!    and drops the lock.
//! 3. Call ids are `(generation & 0xffff_ffff) << 32 | sequence`: the
//!    slot's generation names the holder that made the call. The server
//!    skips (and counts as dropped) a request whose generation is not the
//!    slot's current one, or whose slot is not `CONNECTED`; it drops (and
//!    counts) a reply whose slot state is no longer the exact word it had
//!    when the request came, or whose ring has no room. A client skips a
//!    response of another generation (left by an earlier holder) or of a
//!    call it abandoned. So a reply never reaches another client than the
//!    one that asked.
//! 4. A client has at most `max_in_flight` calls whose responses are not
//!    yet off its response ring; both rings hold that many records of the
//!    largest size after a padding record, so a reply to a live client
//!    that follows the protocol always finds room: the server never waits
//!    for a client.
//! 5. The server wakes on one futex word, `server_sleeping`, with the
//!    ring's rule 8: a client, after committing a request (which checks
//!    the request ring's own, unused, consumer word), runs
//!    `wake_if_sleeping` on the service's wait line. A client waits for
//!    its response on its response ring's `consumer_sleeping`, and for
//!    room on its request ring's `producer_sleeping`, as a ring endpoint.
//! 6. The server holds the lock on byte `SERVER_LOCK` while it lives; on
//!    open it bumps `epoch`, stores in every slot's `server_from` the
//!    request ring `head` it starts from, then its owner word and
//!    `SERVING`; closing, it stores `CLOSED` and clears its owner, then
//!    drops the lock. A waiting client checks the lock: free with
//!    `SERVING` is a dead server (`PeerGone`), free with `CLOSED` a closed
//!    one (`Closed`), and `NONE` no server yet (the request waits for
//!    one). Held, it is a live server, and a call fails with `PeerGone`
//!    only if the request ring's `head` passed the request and the
//!    request starts before the slot's `server_from`: an earlier server
//!    took it and is gone. A request no server took waits for the next.
//! 7. The server checks its clients' locks while it waits, and every 20 ms
//!    while it polls: a `CONNECTED` slot whose lock is free is dead, and
//!    the server swaps its exact state word to `DEAD` (a new holder's
//!    claim makes the swap fail).
//! 8. Joining, leaving and removal happen under the gate (byte 0); the
//!    last member to leave (no lock held in `SERVER_LOCK..CLIENT_LOCKS +
//!    MAX_CLIENTS`) unlinks the name and sets `removed`, and an opener
//!    that finds `removed` goes back to the name.

use crate::ring::protocol::{RingRef, Slot};

use super::layout::ID_LEN;

/// The call id at the start of a record's payload, copied out (the peer
/// may rewrite it; nothing is kept as a reference), or `None` if the
/// record is shorter than an id.
#[inline]
pub(crate) fn read_id(ring: &RingRef, slot: Slot) -> Option<u64> {
    if slot.len < ID_LEN {
        return None;
    }
    let mut id = [0u8; 8];
    // SAFETY: the record's payload has at least 8 bytes inside the data
    // area (`peek` checked the record), and the producer leaves a committed
    // record alone until it is released (ring rule 2).
    unsafe { std::ptr::copy_nonoverlapping(ring.payload(slot), id.as_mut_ptr(), 8) };
    Some(u64::from_le_bytes(id))
}

/// Writes `body` and then `id` into a reserved record of `ID_LEN +
/// body.len()` bytes.
///
/// The body first: the id shares the record's first cache line with the
/// record word, which the consumer polls, so storing the id just before
/// the commit stores the word writes that line in one burst. The other way
/// round (the id, then a call to `memcpy`, then the word), the polling
/// consumer takes the line back between the id and the body's stores and
/// the producer must fetch it again: a 64 B call's round trip took 2.2
/// times a ring's that way, 1.2 times this way (`shmkit bench`, one run).
#[inline]
pub(crate) fn write_call(ring: &RingRef, slot: Slot, id: u64, body: &[u8]) {
    debug_assert_eq!(slot.len, ID_LEN + body.len() as u64);
    let at = ring.payload(slot);
    // SAFETY: a reserved record of `ID_LEN + body.len()` bytes inside the
    // data area, this producer's until committed (ring rule 2); `body` is
    // the caller's memory, which cannot overlap a region it does not own.
    unsafe {
        std::ptr::copy_nonoverlapping(body.as_ptr(), at.add(ID_LEN as usize), body.len());
        std::ptr::copy_nonoverlapping(id.to_le_bytes().as_ptr(), at, 8);
    }
}

/// Writes `id` at the start of a reserved record's payload (at least
/// `ID_LEN` bytes).
#[inline]
pub(crate) fn write_id(ring: &RingRef, slot: Slot, id: u64) {
    debug_assert!(slot.len >= ID_LEN);
    // SAFETY: a reserved record of at least 8 bytes inside the data area,
    // this producer's until committed (ring rule 2).
    unsafe { std::ptr::copy_nonoverlapping(id.to_le_bytes().as_ptr(), ring.payload(slot), 8) };
}
