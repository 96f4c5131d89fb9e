//! `bare-slots`: a reference for streams, not a transport to use. Fixed
//! slots of one message each in a shared segment, each slot with a flag of
//! its own on a line pair of its own; the sender waits for its next slot to
//! be free, copies the message in and sets the flag, the receiver waits for
//! the flag, checks the message in place and hands the slot back. Nothing
//! else: no record words, no liveness, no wake-ups, no variable lengths.
//!
//! What it shows, for large messages, is how fast this host moves bytes
//! from one CPU to the other at all: every line of a message is written by
//! one CPU and read by the other, as with any shared-memory transport, and
//! the flags are one line a message in a thousand. `memcpy` in one process
//! moves none between CPUs, so where a large message's stream stands
//! against `memcpy` says little until set beside this. For small messages
//! it is no ceiling: a slot of a line and a flag of its own for each
//! message move more lines than a ring whose records share lines.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmkit::{Attachment, Key, ReadWrite, Segment};

use super::ring::RemoveRing;
use super::{one_way, AnyLink, Link, Opened, PeerEnd, Setup};
use crate::peer::Peer;
use crate::reference;
use crate::Error;

/// Each flag's own space: two lines, so that the adjacent-line prefetcher
/// of one flag's line never fetches another's.
const FLAG_SPACE: usize = 128;

/// How many slots: as many messages as the rings of this size hold
/// ([`super::ring_capacity`]), at least two so that both sides can work at
/// once.
fn slots(size: usize) -> usize {
    let slot = slot_size(size);
    (super::ring_capacity(size) as usize / slot).max(2)
}

/// A slot: the message rounded up to whole lines.
fn slot_size(size: usize) -> usize {
    size.div_ceil(64) * 64
}

/// Both ends of a stream to the peer (streams only: a reference of
/// throughput has no round trip to offer).
pub fn open(both: bool, size: usize) -> Result<Opened, Error> {
    if both {
        return Ok(Opened::Unsupported(
            "a reference for streams: it has no round trip".to_owned(),
        ));
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "/shmkit-bench-{}-slots-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let key = Key::posix(&name)?;
    let len = slots(size) * (FLAG_SPACE + slot_size(size));
    let segment = reference::fresh_segment(&key, len as u64)?;
    // Removed once both ends have it mapped (`Setup::unlink`), or dropped.
    let remove = RemoveRing::of_key(key);
    let link = SlotsLink::new(segment.attach(ReadWrite)?, size, true)?;
    Ok(Opened::Ready(Box::new(Setup {
        link: AnyLink::Slots(link),
        peer_end: PeerEnd::Slots { name },
        inherit: Vec::new(),
        rings: vec![remove],
    })))
}

/// In the peer: the receiving end of the segment `name`.
pub fn peer_link(size: usize, name: &str, parent: Peer) -> Result<AnyLink, Error> {
    let segment = Segment::open(&Key::posix(name)?)?;
    let mut link = SlotsLink::new(segment.attach(ReadWrite)?, size, false)?;
    link.watch(parent);
    Ok(AnyLink::Slots(link))
}

/// One end of the slots.
#[derive(Debug)]
pub struct SlotsLink {
    mapping: Attachment<ReadWrite>,
    size: usize,
    slots: usize,
    /// Messages this end has sent or received.
    count: u64,
    sending: bool,
    peer: Option<Peer>,
}

impl SlotsLink {
    fn new(mapping: Attachment<ReadWrite>, size: usize, sending: bool) -> Result<SlotsLink, Error> {
        let slots = slots(size);
        if mapping.len() < slots * (FLAG_SPACE + slot_size(size)) {
            return Err(Error::Message(format!(
                "the slots' segment is {} bytes, too short for {slots} slots of {size}",
                mapping.len()
            )));
        }
        Ok(SlotsLink {
            mapping,
            size,
            slots,
            count: 0,
            sending,
            peer: None,
        })
    }

    /// Checks now and then, while waiting, that `peer` lives.
    pub fn watch(&mut self, peer: Peer) {
        self.peer = Some(peer);
    }

    /// The flag of the slot the next message goes through, and that slot.
    fn next_slot(&self) -> Result<(&AtomicU64, *mut u8), Error> {
        let slot = (self.count % self.slots as u64) as usize;
        let flag = self.mapping.atomic_u64(slot * FLAG_SPACE)?;
        let offset = self.slots * FLAG_SPACE + slot * slot_size(self.size);
        // SAFETY: `new` checked that the mapping holds every slot, so the
        // offset and the slot's `size` bytes after it are inside it.
        let data = unsafe { self.mapping.as_mut_ptr().add(offset) };
        Ok((flag, data))
    }

    /// Spins until `flag` holds `value`.
    fn wait(&self, flag: &AtomicU64, value: u64) -> Result<(), Error> {
        reference::wait_for(flag, value, self.peer, "the other end of the slots is gone")
    }

    /// The lap of the message `count`: its slot's flag says `2 * lap` when
    /// the slot is free for it and `2 * lap + 1` once it is written.
    fn lap(&self) -> u64 {
        self.count / self.slots as u64
    }
}

impl Link for SlotsLink {
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        if !self.sending {
            return Err(one_way("send"));
        }
        if message.len() != self.size {
            return Err(Error::Message(format!(
                "a message of {} bytes to send, not {}",
                message.len(),
                self.size
            )));
        }
        let (flag, data) = self.next_slot()?;
        let lap = self.lap();
        self.wait(flag, 2 * lap)?;
        // SAFETY: the slot is `size` bytes inside the mapping (`next_slot`),
        // and the receiver handed it back (the flag says so): nobody else
        // touches it until the store below.
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), data, message.len()) };
        // Release: the message's bytes before the flag that says so.
        flag.store(2 * lap + 1, Ordering::Release);
        self.count += 1;
        Ok(())
    }

    fn recv<R>(&mut self, _buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        if self.sending {
            return Err(one_way("receive"));
        }
        let (flag, data) = self.next_slot()?;
        let lap = self.lap();
        self.wait(flag, 2 * lap + 1)?;
        // SAFETY: the slot is `size` bytes inside the mapping, written
        // whole by the sender before its Release (seen by the Acquire in
        // `wait`), and the sender does not touch it again until the store
        // below hands it back.
        let message = unsafe { std::slice::from_raw_parts(data.cast_const(), self.size) };
        let result = inspect(message);
        // Release: this end's reads of the slot before the sender's next
        // writes to it.
        flag.store(2 * lap + 2, Ordering::Release);
        self.count += 1;
        Ok(result)
    }
}
