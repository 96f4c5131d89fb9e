//! Who holds each end of a ring, and whether they are still alive.
//!
//! Liveness comes from the kernel (docs/ARCHITECTURE.md, rule 6): the holder of an end
//! keeps an open file description lock (`sys::range_lock`) on one byte of
//! the ring's file, [`End::lock_byte`], for as long as it holds the end. The
//! kernel drops the lock when the holder dies, however it dies and in
//! whatever pid namespace it runs, so "is the lock held" is the whole
//! answer; a lock whose state cannot be read counts as held.
//!
//! Each end also has an owner word in the header: 0 when free, else the
//! holder's pid (in its own pid namespace) in the low 32 bits and the low 32
//! bits of its start time in the high 32. It is only a name for messages
//! and `status`, and tells a holder that left (word 0) from one that died
//! (word set, lock free). The holder takes the lock before it writes the
//! word and clears the word before it drops the lock.
//!
//! Opening, leaving and removing a ring happen under a third lock, the
//! gate ([`GATE_BYTE`]), held for microseconds: so that a ring is never
//! removed between an opener's check of it and its claim of an end.

use crate::error::Result;
use crate::segment::Segment;
use crate::sys::range_lock::RangeLock;

/// The byte of a ring's file whose lock is the gate.
pub(crate) const GATE_BYTE: u64 = 0;

/// One end of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Producer,
    Consumer,
}

impl End {
    /// The byte of the ring's file that the holder of this end locks (the
    /// offset of its header line, for a reader's memory; the lock touches
    /// no byte).
    pub(crate) fn lock_byte(self) -> u64 {
        match self {
            End::Producer => 128,
            End::Consumer => 256,
        }
    }

    /// `"producer"` or `"consumer"`, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            End::Producer => "producer",
            End::Consumer => "consumer",
        }
    }
}

/// The owner word naming this process.
pub(crate) use crate::segment::format::{owner_word as this_process, pid_of};

/// Whether a process holds `end` of the ring in `segment`. An answer the
/// kernel cannot give counts as held: a live holder is never taken for
/// dead.
pub(crate) fn is_held(segment: &Segment, end: End) -> bool {
    segment.range_held(end.lock_byte(), 1).unwrap_or(true)
}

/// Takes `end`'s lock if no process holds it; `None` if one does.
pub(crate) fn try_take(segment: &Segment, end: End) -> Result<Option<RangeLock>> {
    segment.try_lock_range(end.lock_byte(), 1)
}

/// Waits for the gate of the ring in `segment`, and takes it.
pub(crate) fn gate(segment: &Segment) -> Result<RangeLock> {
    segment.lock_range(GATE_BYTE, 1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_owner_word_names_this_process() {
        let me = this_process().unwrap();
        assert_eq!(pid_of(me), std::process::id());
        assert_ne!(me >> 32, 0, "a start time is recorded");
    }

    #[test]
    fn an_end_is_held_while_its_lock_is() {
        let key =
            crate::Key::posix(&format!("/shmkit-test-endpoint-{}", std::process::id())).unwrap();
        let segment = Segment::create(&key, 4096, crate::Mode::OWNER_ONLY).unwrap();
        segment.remove().unwrap();
        assert!(!is_held(&segment, End::Producer));
        let lock = try_take(&segment, End::Producer).unwrap().unwrap();
        assert!(is_held(&segment, End::Producer));
        assert!(!is_held(&segment, End::Consumer), "the ends are apart");
        assert!(try_take(&segment, End::Producer).unwrap().is_none());
        drop(lock);
        assert!(!is_held(&segment, End::Producer));
        let gate = gate(&segment).unwrap();
        assert!(!is_held(&segment, End::Producer), "the gate is apart");
        drop(gate);
    }
}
