//! What the async server (`crate::aio`, feature `tokio`) needs of the
//! blocking one: whether a request is there, without waiting or a system
//! call, the look at the clients, and the futex word to sleep on.

use super::*;
use crate::ring::wait::WakeLine;
use crate::sync::AtomicU32;

impl Server {
    /// Whether a request of a current client is there now.
    pub(crate) fn request_ready(&mut self) -> Result<bool> {
        self.shared.mapping.check_intact()?;
        Ok(self.slots.poll(&self.shared).is_some())
    }

    /// A current client's request if one is there now: `try_recv_request`
    /// without the error it makes when there is none, for an async receive
    /// that tries first and waits only on `None`. Its value is for
    /// [`request_at`](Server::request_at).
    #[inline]
    pub(crate) fn request_now(&mut self) -> Result<Option<(Slot, Caller)>> {
        self.shared.mapping.check_intact()?;
        self.sweep_now_and_then();
        Ok(self.slots.poll(&self.shared))
    }

    /// A current client's request in the common case (the mapping intact,
    /// a request there), as `recv_request` finds it; `None` says nothing
    /// ([`request_now`](Server::request_now) sorts it out). Inlined into
    /// every async receive.
    #[inline(always)]
    pub(crate) fn request_quick(&mut self) -> Option<(Slot, Caller)> {
        self.shared.mapping.check_intact().ok()?;
        self.sweep_now_and_then();
        self.slots.poll(&self.shared)
    }

    /// The request `request_now` found.
    #[inline]
    pub(crate) fn request_at(&mut self, found: (Slot, Caller)) -> Request<'_> {
        self.request(found)
    }

    /// The waiting server's look at its clients (rule 7 of `protocol`):
    /// frees the slots of dead ones. A server waits for clients however
    /// long, so only a shrunk segment is an error.
    pub(crate) fn sweep_clients(&mut self) -> Result<()> {
        self.shared.mapping.check_size()?;
        sweep(&self.shared);
        self.next_sweep = monotonic_nanos() + PEER_CHECK_INTERVAL.as_nanos() as u64;
        Ok(())
    }

    /// The service's wait line and the server's futex word in it, which
    /// every client's request wakes (rule 5 of `protocol`).
    pub(crate) fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let wait = &self.shared.header().wait;
        (wait, &wait.server_sleeping)
    }

    /// This server's waiter: how long it spins before it sleeps, which its
    /// async waits follow too, and learn from (a wake-up from a client's
    /// `FUTEX_WAKE` to its task's next poll folds into its adaptive spin,
    /// as `Waiter::wait` folds a blocking one's).
    pub(crate) fn waiter(&mut self) -> &mut Waiter {
        &mut self.waiter
    }
}
