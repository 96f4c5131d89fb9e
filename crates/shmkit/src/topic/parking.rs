//! What a waiter outside the members needs of them: the async adapters
//! (`crate::aio`, feature `tokio`) wait for a topic without calling
//! `Waiter::wait`, by polling these, then announcing sleep on the
//! member's futex word (rule 8 of `ring::protocol`) and handing the word to
//! their reactor.

use super::*;
use crate::ring::wait::WakeLine;
use crate::sync::AtomicU32;

impl Subscriber {
    /// Whether a message is there now (or a lag to report: `Err(Lagged)`);
    /// never a system call.
    pub(crate) fn message_ready(&mut self) -> Result<bool> {
        Ok(self.poll()?.is_some())
    }

    /// The waiting subscriber's look at the publishers (what
    /// `Waiter::wait` runs as its peer check): `Err(Closed)` or
    /// `Err(PeerGone)` once every publisher that opened the topic is done;
    /// `Err(Truncated)` once its file was cut short.
    pub(crate) fn publishers_ended(&self) -> Result<()> {
        self.shared.still_sized()?;
        self.shared.publishers_finished()
    }

    /// The next message's place in the common case (one in the current
    /// lane's batch), as `recv` looks first; `None` says nothing (the
    /// wait's `try_recv` sorts it out). Small enough to inline into every
    /// async receive.
    #[inline(always)]
    pub(crate) fn message_now(&mut self) -> Option<(usize, Meta)> {
        self.merge.peek(&self.shared)
    }

    /// The message at `found` (from [`message_now`](Subscriber::message_now))
    /// copied into `buf` and taken, as `recv` takes it; `Ok(None)` if a
    /// drop-oldest publisher overwrote it meanwhile (look again).
    #[inline(always)]
    pub(crate) fn recv_at(
        &mut self,
        found: (usize, Meta),
        buf: &mut [u8],
    ) -> Result<Option<Received>> {
        self.take_into(found, buf)
    }

    /// The topic's wait line and the subscribers' futex word in it.
    pub(crate) fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let wait = &self.shared.header().wait;
        (wait, &wait.subscribers_sleeping)
    }

    /// This subscriber's waiter: how long it spins before it sleeps,
    /// which its async waits follow too, and learn from (a wake-up from
    /// the waker's `FUTEX_WAKE` to its task's next poll folds into its
    /// adaptive spin, as `Waiter::wait` folds a blocking one's).
    pub(crate) fn waiter(&mut self) -> &mut Waiter {
        &mut self.waiter
    }
}

impl Publisher {
    /// Whether a message of `len` bytes fits now (always, on a drop-oldest
    /// topic). May write a padding record past the tail, as a reserved and
    /// aborted grant does.
    pub(crate) fn room_for(&mut self, len: usize) -> Result<bool> {
        Ok(self.reserve(len as u64)?.is_some())
    }

    /// Room for a message of `len` bytes if there is some now: `try_grant`
    /// without the error it makes when there is none, for an async verb
    /// that tries first and waits only on `None`.
    pub(crate) fn reserve_now(&mut self, len: usize) -> Result<Option<Slot>> {
        self.reserve(len as u64)
    }

    /// Room for a message of `len` bytes in the common case (room as this
    /// publisher last saw it, no wrap), as `send` finds it first; `None`
    /// says nothing ([`reserve_now`](Publisher::reserve_now) sorts it
    /// out). The check of the fault flag is `send_at`'s, after its copy,
    /// as in `send`. Small enough to inline into every async send.
    #[inline(always)]
    pub(crate) fn room_to_fill_now(&self, len: usize) -> Option<Slot> {
        self.lane.fits(&self.cursor, len as u64)
    }

    /// The room at `slot`, from [`reserve_now`](Publisher::reserve_now), as
    /// a grant.
    #[inline]
    pub(crate) fn grant_at(&mut self, slot: Slot) -> WriteGrant<'_> {
        WriteGrant {
            publisher: self,
            slot,
        }
    }

    /// `message` written into the room at `slot` (from `reserve_now`, for
    /// its length) and committed, as `try_send`.
    #[inline]
    pub(crate) fn send_at(&mut self, slot: Slot, message: &[u8]) -> Result<()> {
        self.grant_at(slot).fill_and_commit(message)
    }

    /// The waiting publisher's peer check (what `Waiter::wait` runs): frees
    /// the places of dead subscribers that hold back the room for `len`
    /// bytes. A live subscriber is waited for, however long.
    pub(crate) fn reclaim_for(&mut self, len: usize) {
        let needed = self.cursor.tail + layout::record_size(len as u64) * 2;
        self.shared.reclaim_dead_subscribers(self.index, needed);
    }

    /// The topic's wait line and the publishers' futex word in it.
    pub(crate) fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let wait = &self.shared.header().wait;
        (wait, &wait.publishers_sleeping)
    }

    /// As [`Subscriber::waiter`].
    pub(crate) fn waiter(&mut self) -> &mut Waiter {
        &mut self.waiter
    }
}
