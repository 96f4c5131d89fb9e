//! What a waiter outside the endpoints needs of them: the async adapters
//! (`crate::aio`, feature `tokio`) wait for a ring without calling
//! [`Waiter::wait`](super::wait::Waiter::wait), by polling these, then
//! announcing sleep on the endpoint's futex word (rule 8 of `protocol`)
//! and handing the word to their reactor.

use super::wait::WakeLine;
use super::*;
use crate::sync::AtomicU32;

impl Consumer {
    /// Whether a message is in the ring now; never a system call, never
    /// a look at the producer. (Padding before it is skipped.)
    /// While none is, fetches the cache lines of the next record as a
    /// blocking waiter does (see `RingRef::prefetch_record`).
    pub(crate) fn message_ready(&mut self) -> Result<bool> {
        self.shared.intact()?;
        let slot = self.shared.ring.peek(&mut self.cursor);
        let found = slot.map_err(|e| self.shared.explain(e))?.is_some();
        if !found {
            let size = self.last_size;
            self.shared.ring.prefetch_record(self.cursor.head, size);
        }
        Ok(found)
    }

    /// The next message's place if one is there now: `try_read` without
    /// its look at the producer when the ring is empty (system calls), for
    /// an async verb that tries first and waits only on `None`.
    #[inline]
    pub(crate) fn next_now(&mut self) -> Result<Option<Slot>> {
        self.shared.intact()?;
        // The common case first, as `read` does.
        if let Some(slot) = self.shared.ring.peek_message(&self.cursor) {
            return Ok(Some(slot));
        }
        let slot = self.shared.ring.peek(&mut self.cursor);
        slot.map_err(|e| self.shared.explain(e))
    }

    /// The next message's place in the common case (a message at the
    /// head, the mapping intact), as `read` finds it first; `None` says
    /// nothing ([`next_now`](Consumer::next_now) sorts it out). Small
    /// enough to inline into every async receive.
    #[inline(always)]
    pub(crate) fn message_now(&self) -> Option<Slot> {
        let slot = self.message_to_copy_now()?;
        // After the record word's load, as in `read`.
        self.shared.intact().is_ok().then_some(slot)
    }

    /// [`message_now`](Consumer::message_now) without its check of the
    /// fault flag, for a verb that checks it after its own copy
    /// ([`recv_at`](Consumer::recv_at)), which covers this load too.
    #[inline(always)]
    pub(crate) fn message_to_copy_now(&self) -> Option<Slot> {
        self.shared.ring.peek_message(&self.cursor)
    }

    /// The next message if one comes within the first polls of a wait,
    /// polled inline as the blocking consumer's wait begins
    /// (`Consumer::first_looks`), for an async receive before its wait:
    /// `None` if none came (or padding or a corrupt word did, which the
    /// wait's `next_now` sorts out), or if this consumer may not spin
    /// (`Waiter::looks_first`, as the blocking wait asks).
    pub(crate) fn message_soon(&mut self) -> Result<Option<Slot>> {
        if !self.waiter.looks_first(None) {
            return Ok(None);
        }
        match self.first_looks() {
            // After the record word's load, as in `message_now`.
            Some(slot) => self.shared.intact().map(|()| Some(slot)),
            None => Ok(None),
        }
    }

    /// The message at `slot`, from [`next_now`](Consumer::next_now), read
    /// in place.
    #[inline]
    pub(crate) fn read_at(&mut self, slot: Slot) -> ReadGrant<'_> {
        ReadGrant {
            consumer: self,
            slot,
        }
    }

    /// The message at `slot`, from [`next_now`](Consumer::next_now),
    /// copied into `buf` and taken (as `try_recv`).
    #[inline]
    pub(crate) fn recv_at(&mut self, slot: Slot, buf: &mut [u8]) -> Result<usize> {
        self.copy_out(slot, buf)
    }

    /// The waiting consumer's look at its producer (what [`Waiter::wait`]
    /// runs as its peer check): `Err(Closed)` or `Err(PeerGone)` once no
    /// more records can come, `Err(Truncated)` for a shrunk segment.
    pub(crate) fn producer_ended(&self) -> Result<()> {
        self.shared
            .still_sized()
            .and_then(|()| self.shared.producer_finished())
    }

    /// Passes on an error about to be returned to the caller, recording a
    /// `Closed` as seen (so that a new producer may reopen the ring).
    pub(crate) fn end_seen(&self, err: Error) -> Error {
        self.told(err)
    }

    /// The ring's wait line and the consumer's futex word in it.
    pub(crate) fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let wait = &self.shared.header().wait;
        (wait, &wait.consumer_sleeping)
    }

    /// This consumer's waiter: how long it spins before it sleeps, which
    /// its async waits follow too, and learn from (a wake-up from its
    /// peer's `FUTEX_WAKE` to its task running folds into its adaptive
    /// spin).
    pub(crate) fn waiter(&mut self) -> &mut Waiter {
        &mut self.waiter
    }
}

impl Producer {
    /// Whether a message of `len` bytes fits now. May commit a padding
    /// record at the wrap, as a reserved and aborted grant does.
    pub(crate) fn room_for(&mut self, len: usize) -> Result<bool> {
        self.shared.intact()?;
        let slot = self.shared.ring.reserve(&mut self.cursor, len as u64);
        Ok(slot.map_err(|e| self.shared.explain(e))?.is_some())
    }

    /// Room for a message of `len` bytes if there is some now: `try_grant`
    /// without the error it makes when there is none, for an async verb
    /// that tries first and waits only on `None`.
    #[inline]
    pub(crate) fn reserve_now(&mut self, len: usize) -> Result<Option<Slot>> {
        self.shared.intact()?;
        self.reserve_to_fill_now(len)
    }

    /// [`reserve_now`](Producer::reserve_now) without its check of the
    /// fault flag, for a send whose commit checks it after the copy
    /// ([`send_at`](Producer::send_at)), which covers the reserve's loads
    /// too, as `send` does: a sink's send of a message that fits.
    #[inline]
    pub(crate) fn reserve_to_fill_now(&mut self, len: usize) -> Result<Option<Slot>> {
        // The common case first, as `grant` does.
        if let Some(slot) = self.shared.ring.reserve_fast(&self.cursor, len as u64) {
            return Ok(Some(slot));
        }
        let slot = self.shared.ring.reserve(&mut self.cursor, len as u64);
        slot.map_err(|e| self.shared.explain(e))
    }

    /// Room for a message of `len` bytes in the common case (no wrap, room
    /// as last seen, the mapping intact), as `grant` finds it first;
    /// `None` says nothing ([`reserve_now`](Producer::reserve_now) sorts
    /// it out). Small enough to inline into every async send.
    #[inline(always)]
    pub(crate) fn room_now(&self, len: usize) -> Option<Slot> {
        // Before the caller writes, as in `grant`.
        if self.shared.intact().is_err() {
            return None;
        }
        self.room_to_fill_now(len)
    }

    /// [`room_now`](Producer::room_now) without its check of the fault
    /// flag, for a verb that checks it after its own copy
    /// ([`send_at`](Producer::send_at), as `send` does).
    #[inline(always)]
    pub(crate) fn room_to_fill_now(&self, len: usize) -> Option<Slot> {
        self.shared.ring.reserve_fast(&self.cursor, len as u64)
    }

    /// Room for `len` bytes after the blocking producer's first, unhurried
    /// looks at a full ring (`Producer::wait_for_room`), before an async
    /// wait starts: `None` if there is still none, or if this producer may
    /// not spin (`Waiter::looks_first`, as the blocking wait asks).
    pub(crate) fn room_unhurried(&mut self, len: usize) -> Result<Option<Slot>> {
        self.shared.intact()?;
        if !self.waiter.looks_first(None) {
            return Ok(None);
        }
        self.reserve_unhurried(len)
    }

    /// The room at `slot`, from [`reserve_now`](Producer::reserve_now), as
    /// a grant.
    #[inline]
    pub(crate) fn grant_at(&mut self, slot: Slot) -> WriteGrant<'_> {
        WriteGrant {
            producer: self,
            slot,
        }
    }

    /// `message` written into the room at `slot` (from
    /// [`reserve_now`](Producer::reserve_now), for its length) and
    /// committed, as `try_send` (nothing is committed if the copy ran
    /// onto a page a peer cut away).
    #[inline]
    pub(crate) fn send_at(&mut self, slot: Slot, message: &[u8]) -> Result<()> {
        self.fill_and_commit_slot(slot, message)
    }

    /// The waiting producer's look at its consumer (what [`Waiter::wait`]
    /// runs as its peer check): `Err(PeerGone)` or `Err(PeerLeft)` once
    /// it will not read again, `Err(Truncated)` for a shrunk segment.
    pub(crate) fn consumer_ended(&self) -> Result<()> {
        self.shared.still_sized().and_then(|()| {
            producer::consumer_gone(&self.shared, self.consumers, self.wait_for_new_consumer)
        })
    }

    /// The ring's wait line and the producer's futex word in it.
    pub(crate) fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let wait = &self.shared.header().wait;
        (wait, &wait.producer_sleeping)
    }

    /// As [`Consumer::waiter`].
    pub(crate) fn waiter(&mut self) -> &mut Waiter {
        &mut self.waiter
    }
}
