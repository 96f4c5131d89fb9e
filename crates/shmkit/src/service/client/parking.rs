//! What the async client (`crate::aio`, feature `tokio`) needs of the
//! blocking one: whether a request can go or a response has come, without
//! waiting or a system call, the look at the server, and the futex word to
//! sleep on.

use super::*;
use crate::ring::wait::WakeLine;
use crate::sync::AtomicU32;

impl Client {
    /// Whether a request of `len` bytes can go now: fewer than
    /// `max_in_flight` calls due (after taking a response that came off
    /// the ring for its call) and room in the request ring. May commit a
    /// padding record, as a reserved and aborted grant does.
    pub(crate) fn request_ready(&mut self, len: usize) -> Result<bool> {
        self.shared.mapping.check_intact()?;
        self.state.collect_abandoned();
        let Client { state, shared, .. } = self;
        while state.due >= shared.max_in_flight {
            if state.take(shared, None)?.is_none() {
                return Ok(false);
            }
        }
        let requests = state.requests;
        Ok(requests
            .reserve(&mut state.tail, ID_LEN + len as u64)?
            .is_some())
    }

    /// [`try_send_request`](Client::try_send_request), inlined into the
    /// async sends, as `send_request`'s first try is into its caller.
    #[inline]
    pub(crate) fn send_request_now(&mut self, request: &[u8]) -> Result<PendingCall> {
        self.pending(request, Patience::Now)
    }

    /// Whether the response to `call` is here (or the call is not one this
    /// client can wait for: then `try_wait` says why).
    pub(crate) fn response_ready(&mut self, call: &PendingCall) -> Result<bool> {
        self.shared.mapping.check_intact()?;
        self.state.collect_abandoned();
        if !Arc::ptr_eq(&call.abandoned, &self.state.abandoned) {
            return Ok(true);
        }
        let Client { state, shared, .. } = self;
        if state.due_of(call.sent.id) != Due::Waiting {
            return Ok(true);
        }
        Ok(matches!(
            state.take(shared, Some(call.sent.id))?,
            Some(Found::Wanted(_))
        ))
    }

    /// [`response_ready`](Client::response_ready)'s look, keeping what it
    /// found for [`response_at`](Client::response_at), so that the end of
    /// an async wait does not look again: `Some(Some(record))`, the
    /// response in place (it stays in the ring until read); `Some(None)`,
    /// a call not waiting on the ring (its response copied out already, or
    /// not a call of this client's); `None` while it has not come.
    #[inline]
    pub(crate) fn response_now(&mut self, call: &PendingCall) -> Result<Option<Option<Slot>>> {
        self.shared.mapping.check_intact()?;
        self.state.collect_abandoned();
        if !Arc::ptr_eq(&call.abandoned, &self.state.abandoned) {
            return Ok(Some(None));
        }
        let Client { state, shared, .. } = self;
        if state.due_of(call.sent.id) != Due::Waiting {
            return Ok(Some(None));
        }
        match state.take(shared, Some(call.sent.id))? {
            Some(Found::Wanted(record)) => Ok(Some(Some(record))),
            _ => Ok(None),
        }
    }

    /// The response [`response_now`](Client::response_now) found, as
    /// `try_wait` hands it out: read in place from `found`, or for a call
    /// not waiting on the ring, by `try_wait` itself (its copy, or why
    /// not).
    #[inline]
    pub(crate) fn response_at(
        &mut self,
        call: &PendingCall,
        found: Option<Slot>,
    ) -> Result<Response<'_>> {
        let Some(record) = found else {
            return self.try_wait(call);
        };
        let Client { state, shared, .. } = self;
        state.free(call.sent.id);
        call.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Response {
            shared,
            state,
            body: Body::InRing(record),
        })
    }

    /// The waiting client's look at the server (for `call`'s response, if
    /// given): `Err(PeerGone)` or `Err(Closed)` once no server will answer.
    pub(crate) fn server_ended(&self, call: Option<&PendingCall>) -> Result<()> {
        self.shared.mapping.check_size()?;
        server_check(
            &self.shared,
            self.state.requests,
            self.state.slot,
            call.map(|call| &call.sent),
        )
    }

    /// Where a waiting client sleeps: on its response ring while too many
    /// calls are due (a response frees one), else on its request ring's
    /// room.
    pub(crate) fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let state = &self.state;
        if state.due >= self.shared.max_in_flight {
            let wait = &state.responses.header().wait;
            (wait, &wait.consumer_sleeping)
        } else {
            let wait = &state.requests.header().wait;
            (wait, &wait.producer_sleeping)
        }
    }

    /// Where a client waiting for a response sleeps: its response ring.
    pub(crate) fn response_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        let wait = &self.state.responses.header().wait;
        (wait, &wait.consumer_sleeping)
    }

    /// This client's waiter: how long it spins before it sleeps, which its
    /// async waits follow too, and learn from (a wake-up from the server's
    /// `FUTEX_WAKE` to its task's next poll folds into its adaptive spin,
    /// as `Waiter::wait` folds a blocking one's).
    pub(crate) fn waiter(&mut self) -> &mut Waiter {
        &mut self.waiter
    }
}
