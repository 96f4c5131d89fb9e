//! A client of a service: calls, pipelined calls and their responses.

use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout::{
    call_id, id_generation, slot_generation, slot_state, CLIENT_LOCKS, GATE_BYTE, ID_LEN,
    SERVER_CLOSED, SERVER_NONE, SERVER_SERVING, SLOT_CONNECTED, SLOT_FREE,
};
use super::protocol::{read_id, write_call};
use super::server::bump;
use super::shared::Shared;
use super::Options;
use crate::error::{Error, Result};
use crate::ring::endpoint::{pid_of, this_process};
use crate::ring::layout::record_size;
use crate::ring::protocol::{check_position, ConsumerCursor, ProducerCursor, RingRef, Slot};
use crate::ring::wait::{wake_if_sleeping, Waiter};
use crate::sync::Ordering;
use crate::sys::range_lock::RangeLock;

#[cfg(feature = "tokio")]
mod parking;

/// How long a verb may wait.
#[derive(Clone, Copy, Debug)]
enum Patience {
    Wait,
    Now,
    Until(Instant),
}

impl Patience {
    fn deadline(self) -> Option<Instant> {
        match self {
            Patience::Until(deadline) => Some(deadline),
            _ => None,
        }
    }
}

/// What became of a call whose response has not come off the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// No call holds this entry.
    Free,
    /// Its response has not come off the ring yet.
    Waiting,
    /// Its [`PendingCall`] was dropped: the response is skipped on arrival.
    Abandoned,
}

/// One entry of the in-flight table: the call that holds it, if any.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    due: Due,
}

const FREE: Entry = Entry {
    id: 0,
    due: Due::Free,
};

/// A call sent and not yet answered, from [`Client::send_request`]; await
/// it with [`Client::wait`], [`Client::try_wait`] or
/// [`Client::wait_timeout`]. Several may be in flight, and each is awaited
/// on its own, in any order. Dropping it abandons the call: its response
/// is skipped when it comes (and the call counts as in flight until then).
#[derive(Debug)]
#[must_use = "a call's response is only had through its PendingCall"]
pub struct PendingCall {
    sent: Sent,
    /// Set once its response was handed out (atomic, so that a call can be
    /// shared between threads, as an async wait across `.await` does;
    /// Relaxed: only the call's drop reads it, after every borrow).
    answered: AtomicBool,
    abandoned: Arc<Abandoned>,
}

/// What waiting for a call needs to know of it: its id, and where its
/// request went (`call` keeps only this, with no [`PendingCall`] to drop).
#[derive(Clone, Copy, Debug)]
struct Sent {
    id: u64,
    /// The server when it was sent (for a message, if it dies).
    server: u64,
    /// The request's record in the request ring: where it starts and the
    /// position after it (rule 6).
    start: u64,
    end: u64,
}

/// The calls whose [`PendingCall`]s were dropped unanswered, for their
/// client to skip the responses of; `any` spares the lock when there are
/// none (every call looks).
#[derive(Debug, Default)]
struct Abandoned {
    any: AtomicBool,
    ids: Mutex<Vec<u64>>,
}

impl PendingCall {
    /// The call id the library gave it (the server sees it as
    /// [`Caller::id`](super::Caller::id)).
    pub fn id(&self) -> u64 {
        self.sent.id
    }
}

impl Drop for PendingCall {
    #[inline]
    fn drop(&mut self) {
        if !self.answered.load(std::sync::atomic::Ordering::Relaxed) {
            self.abandon();
        }
    }
}

impl PendingCall {
    /// The drop of a call never answered: out of line, as it is rare.
    #[cold]
    #[inline(never)]
    fn abandon(&self) {
        if let Ok(mut ids) = self.abandoned.ids.lock() {
            ids.push(self.sent.id);
            self.abandoned
                .any
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// A client's mutable state, apart from its mapping so that a wait can
/// poll it while checking the server.
#[derive(Debug)]
struct State {
    slot: u32,
    generation: u64,
    requests: RingRef,
    responses: RingRef,
    tail: ProducerCursor,
    head: ConsumerCursor,
    sequence: u32,
    /// The calls whose responses are due, at their sequence's low bits: a
    /// power of two at least `max_in_flight` long, so that a send always
    /// finds a free entry (rule 4) and a call costs no allocation.
    calls: Box<[Entry]>,
    /// Responses that came while another call was awaited: copies, for
    /// their calls (rare: only out-of-order waits land here).
    arrived: Vec<(u64, Vec<u8>)>,
    /// Calls whose responses are not off the ring yet (rule 4).
    due: u32,
    abandoned: Arc<Abandoned>,
    /// The size of the last response record, the guess of the next one's
    /// for `RingRef::prefetch_record` while waiting.
    last_size: u64,
}

/// What a look at the response ring found.
enum Found {
    /// The awaited response, in place.
    Wanted(Slot),
    /// Another call's response, taken off the ring (when none is awaited).
    Other,
}

/// A client of a service: holds one slot, calls the server through it.
///
/// Dropping it leaves the slot (pending calls are abandoned) and, if it was
/// the service's last member, removes the service.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use shmkit::service::{Client, Server};
///
/// let name = format!("doc-client-{}", std::process::id());
/// let mut client = Client::connect(&name)?; // no server yet: that is fine
/// let call = client.send_request(b"are you there?")?;
/// let mut server = Server::open(&name)?; // usually another process
/// server.recv_request()?.reply(b"yes")?;
/// assert_eq!(&*client.wait_timeout(&call, Duration::from_secs(10))?, b"yes");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    state: State,
    waiter: Waiter,
    lock: Option<RangeLock>,
    shared: Shared,
}

impl Client {
    /// Connects to (or creates) service `name`, taking a free client slot,
    /// with default [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::ServiceFull`] if live clients hold every slot;
    /// [`Error::Corrupt`], [`Error::Truncated`] or
    /// [`Error::VersionMismatch`] if the segment is not a service this
    /// library reads; [`Error::UntrustedOwner`] if another user made it;
    /// [`Error::InvalidArgument`] for a bad name.
    ///
    /// ```
    /// use shmkit::service::Client;
    ///
    /// let name = format!("doc-client-connect-{}", std::process::id());
    /// let clients: Vec<Client> = (0..32).map(|_| Client::connect(&name)).collect::<Result<_, _>>()?;
    /// assert!(matches!(Client::connect(&name), Err(shmkit::Error::ServiceFull { max: 32, .. })));
    /// assert_eq!(clients[31].slot(), 31);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn connect(name: &str) -> Result<Client> {
        Client::connect_with(name, &Options::default())
    }

    /// Connects to (or creates) service `name`; `options` shape the service
    /// if this call creates it, must match an existing one's where given
    /// (see [`Options`]), and say how the client waits.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`], and [`Error::OptionMismatch`] if the service
    /// exists with another value of an option given.
    ///
    /// ```
    /// use shmkit::service::{Client, Options, Waiting};
    ///
    /// let name = format!("doc-client-connect-with-{}", std::process::id());
    /// let options = Options::default().max_request(64).waiting(Waiting::BusyPoll);
    /// let client = Client::connect_with(&name, &options)?;
    /// assert_eq!(client.max_request(), 64);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn connect_with(name: &str, options: &Options) -> Result<Client> {
        let (shared, gate) = Shared::open(name, options)?;
        let me = this_process()?;
        let clients = shared.geometry.clients;
        for i in 0..clients {
            let Some(lock) = shared
                .segment
                .try_lock_range(CLIENT_LOCKS + u64::from(i), 1)?
            else {
                continue;
            };
            // A slot left damaged by an earlier holder is passed over (its
            // lock is dropped again).
            let Ok((tail, head)) = take_over(&shared, i) else {
                continue;
            };
            // Rule 2: a new generation names this holder.
            let slot = shared.slot(i);
            let generation = slot_generation(slot.state.load(Ordering::SeqCst)).wrapping_add(1)
                & ((1 << 56) - 1);
            slot.state
                .store(slot_state(generation, SLOT_CONNECTED), Ordering::SeqCst);
            slot.owner.store(me, Ordering::SeqCst);
            slot.counters.in_flight.store(0, Ordering::Relaxed);
            shared.header().active.bits[(i / 64) as usize]
                .fetch_or(1 << (i % 64), Ordering::SeqCst);
            drop(gate);
            let state = State {
                slot: i,
                generation,
                requests: shared.requests(i),
                responses: shared.responses(i),
                tail,
                head,
                sequence: 0,
                calls: vec![FREE; shared.max_in_flight.next_power_of_two() as usize]
                    .into_boxed_slice(),
                arrived: Vec::new(),
                due: 0,
                abandoned: Arc::default(),
                last_size: 0,
            };
            return Ok(Client {
                state,
                waiter: Waiter::new(options.waiting_of()),
                lock: Some(lock),
                shared,
            });
        }
        Err(Error::ServiceFull {
            service: name.to_owned(),
            max: clients,
        })
    }

    /// Calls the server: sends `request` and waits for its response, which
    /// is read in place.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if `request` is longer than
    /// [`max_request`](Client::max_request); [`Error::PeerGone`] if the
    /// server died before it answered; [`Error::Closed`] if it closed
    /// the service; [`Error::Corrupt`] for a response that breaks the
    /// protocol; [`Error::Truncated`] if the segment was shrunk.
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-client-call-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// let mut client = Client::connect(&name)?;
    /// # std::thread::scope(|s| {
    /// # s.spawn(|| server.recv_request().and_then(|r| r.reply(b"pong")));
    /// let response = client.call(b"ping")?;
    /// assert_eq!(&*response, b"pong");
    /// # Ok::<(), shmkit::Error>(())
    /// # })?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn call(&mut self, request: &[u8]) -> Result<Response<'_>> {
        self.call_with(request, Patience::Wait)
    }

    /// [`call`](Client::call), waiting at most `timeout` in all (for room
    /// to send, then for the response): [`Error::Timeout`] after that, and
    /// the call is abandoned (its response skipped if it comes).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::service::Client;
    /// # let name = format!("doc-client-call-timeout-{}", std::process::id());
    /// let mut client = Client::connect(&name)?; // no server
    /// let result = client.call_timeout(b"anyone?", Duration::from_millis(10));
    /// assert!(matches!(result, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn call_timeout(&mut self, request: &[u8], timeout: Duration) -> Result<Response<'_>> {
        self.call_with(request, Patience::Until(Instant::now() + timeout))
    }

    /// Sends `request` without waiting for its response: await it with
    /// the [`PendingCall`]. Waits while [`max_in_flight`](Client::max_in_flight)
    /// calls are in flight (taking responses that come meanwhile off the
    /// ring for their own calls) or the request ring is full.
    ///
    /// # Errors
    ///
    /// As [`call`](Client::call).
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-client-send-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// let mut client = Client::connect(&name)?;
    /// let calls: Vec<_> = (0..4u8).map(|n| client.send_request(&[n])).collect::<Result<_, _>>()?;
    /// for _ in 0..4 {
    ///     let request = server.recv_request()?;
    ///     let n = request[0];
    ///     request.reply(&[n * 10])?;
    /// }
    /// for (n, call) in calls.into_iter().enumerate().rev() {
    ///     assert_eq!(client.wait(call)?[0], n as u8 * 10);
    /// }
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn send_request(&mut self, request: &[u8]) -> Result<PendingCall> {
        self.pending(request, Patience::Wait)
    }

    /// [`send_request`](Client::send_request) if it can go now, else
    /// [`Error::Full`] (too many calls in flight, or no room in the
    /// request ring), and nothing is sent.
    ///
    /// ```
    /// # use shmkit::service::{Client, Options};
    /// # let name = format!("doc-client-try-send-{}", std::process::id());
    /// let mut client = Client::connect_with(&name, &Options::default().max_in_flight(1))?;
    /// let _first = client.try_send_request(b"one")?;
    /// assert!(matches!(client.try_send_request(b"two"), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send_request(&mut self, request: &[u8]) -> Result<PendingCall> {
        self.pending(request, Patience::Now)
    }

    /// [`send_request`](Client::send_request), waiting at most `timeout`
    /// for room ([`Error::Timeout`] after that, and nothing is sent).
    pub fn send_request_timeout(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<PendingCall> {
        self.pending(request, Patience::Until(Instant::now() + timeout))
    }

    /// Waits for the response to `call`.
    ///
    /// # Errors
    ///
    /// As [`call`](Client::call); [`Error::InvalidArgument`] for a call
    /// of another client.
    #[inline]
    pub fn wait(&mut self, call: PendingCall) -> Result<Response<'_>> {
        self.wait_with(&call, Patience::Wait)
    }

    /// The response to `call` if it has come, else [`Error::Empty`] (the
    /// call stays pending); [`Error::PeerGone`] or [`Error::Closed`] if
    /// it never will.
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-client-try-wait-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// let mut client = Client::connect(&name)?;
    /// let call = client.send_request(b"later")?;
    /// assert!(matches!(client.try_wait(&call), Err(shmkit::Error::Empty { .. })));
    /// server.recv_request()?.reply(b"now")?;
    /// assert_eq!(&*client.try_wait(&call)?, b"now");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_wait(&mut self, call: &PendingCall) -> Result<Response<'_>> {
        self.wait_with(call, Patience::Now)
    }

    /// Waits at most `timeout` for the response to `call`
    /// ([`Error::Timeout`] after that; the call stays pending).
    pub fn wait_timeout(&mut self, call: &PendingCall, timeout: Duration) -> Result<Response<'_>> {
        self.wait_with(call, Patience::Until(Instant::now() + timeout))
    }

    /// `call`'s whole path: no [`PendingCall`] (nor its shared count), one
    /// look at the mapping and at the abandoned calls; a call that fails
    /// while it waits is abandoned here, as a dropped `PendingCall` is.
    #[inline]
    fn call_with(&mut self, request: &[u8], patience: Patience) -> Result<Response<'_>> {
        self.shared.mapping.check_intact()?;
        self.state.collect_abandoned();
        let sent = self.send_with(request, patience)?;
        self.wait_sent(&sent, patience, true)
    }

    /// `send_request`'s: the call sent, and its handle.
    #[inline]
    fn pending(&mut self, request: &[u8], patience: Patience) -> Result<PendingCall> {
        self.shared.mapping.check_intact()?;
        self.state.collect_abandoned();
        let sent = self.send_with(request, patience)?;
        Ok(PendingCall {
            sent,
            answered: AtomicBool::new(false),
            abandoned: self.state.abandoned.clone(),
        })
    }

    /// Sends a request (the caller looked at the mapping and the abandoned
    /// calls).
    #[inline]
    fn send_with(&mut self, request: &[u8], patience: Patience) -> Result<Sent> {
        let limit = self.shared.max_request;
        if request.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: "request",
                size: request.len() as u64,
                limit,
            });
        }
        let Client {
            state,
            waiter,
            shared,
            ..
        } = self;
        let len = ID_LEN + request.len() as u64;
        let requests = state.requests;
        // Rule 4: at most max_in_flight calls whose responses are due.
        if state.due >= shared.max_in_flight {
            state.room_for_a_call(shared, waiter, patience, len)?;
        }
        let record = match requests.reserve_fast(&state.tail, len) {
            Some(record) => record,
            None => match requests.reserve(&mut state.tail, len)? {
                Some(record) => record,
                None => state.room_in_the_ring(shared, waiter, patience, len)?,
            },
        };
        // The next sequence whose entry is free: fewer than max_in_flight
        // are held (rule 4, above), so one is within the table's length,
        // and the search never needs more than one pass over it.
        let mask = state.calls.len() - 1;
        let index = (0..state.calls.len())
            .find_map(|_| {
                state.sequence = state.sequence.wrapping_add(1);
                let index = state.sequence as usize & mask;
                (state.calls[index].due == Due::Free).then_some(index)
            })
            .expect("rule 4 keeps an entry of the call table free");
        let id = call_id(state.generation, state.sequence);
        write_call(&requests, record, id, request);
        requests.commit(&mut state.tail, record, len);
        // Rule 5: the server sleeps on the service's word, not the ring's.
        let wait = &shared.header().wait;
        wake_if_sleeping(wait, &wait.server_sleeping);
        state.calls[index] = Entry {
            id,
            due: Due::Waiting,
        };
        state.due += 1;
        let counters = &shared.slot(state.slot).counters;
        bump(&counters.calls, 1);
        counters.in_flight.store(state.due, Ordering::Relaxed);
        Ok(Sent {
            id,
            server: shared.header().server.owner.load(Ordering::Relaxed),
            start: record.position,
            end: state.tail.tail,
        })
    }

    /// The waits of `wait`, `try_wait` and `wait_timeout` for a
    /// [`PendingCall`] of this client.
    #[inline]
    fn wait_with(&mut self, call: &PendingCall, patience: Patience) -> Result<Response<'_>> {
        self.shared.mapping.check_intact()?;
        self.state.collect_abandoned();
        if !Arc::ptr_eq(&call.abandoned, &self.state.abandoned) {
            return Err(Error::InvalidArgument(format!(
                "call {:#x} was made by another client of service {}",
                call.sent.id, self.shared.name
            )));
        }
        let id = call.sent.id;
        if self.state.due_of(id) != Due::Waiting {
            let state = &mut self.state;
            let Some(at) = state.arrived.iter().position(|(arrived, _)| *arrived == id) else {
                return Err(Error::InvalidArgument(format!(
                    "call {id:#x} of service {} was answered already",
                    self.shared.name
                )));
            };
            let (_, body) = state.arrived.swap_remove(at);
            call.answered
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(Response {
                shared: &self.shared,
                state,
                body: Body::Copied(body),
            });
        }
        let response = self.wait_sent(&call.sent, patience, false)?;
        call.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(response)
    }

    /// Waits for the response to `sent`, a call whose response is due, and
    /// reads it in place. An `own` call (`call`'s, which no `PendingCall`
    /// keeps) is abandoned if the wait fails.
    #[inline]
    fn wait_sent(&mut self, sent: &Sent, patience: Patience, own: bool) -> Result<Response<'_>> {
        let Client {
            state,
            waiter,
            shared,
            ..
        } = self;
        let found = match state.next_is(sent.id) {
            Some(record) => Ok(record),
            None => match state.take(shared, Some(sent.id)) {
                Ok(Some(Found::Wanted(record))) => Ok(record),
                Ok(_) => state.wait_for(shared, waiter, sent, patience),
                Err(err) => Err(err),
            },
        };
        match found {
            Ok(record) => {
                state.free(sent.id);
                Ok(Response {
                    shared,
                    state,
                    body: Body::InRing(record),
                })
            }
            Err(err) => {
                if own {
                    state.abandon(sent.id);
                }
                Err(err)
            }
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This client's slot.
    pub fn slot(&self) -> u32 {
        self.state.slot
    }

    /// The largest request body.
    pub fn max_request(&self) -> usize {
        self.shared.max_request as usize
    }

    /// The largest response body.
    pub fn max_response(&self) -> usize {
        self.shared.max_response as usize
    }

    /// How many calls may be in flight at once.
    pub fn max_in_flight(&self) -> u32 {
        self.shared.max_in_flight
    }

    /// How many calls are in flight now: sent, and their responses not yet
    /// off the ring (abandoned calls included until theirs come).
    pub fn in_flight(&self) -> u32 {
        self.state.due
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let shared = &self.shared;
        let i = self.state.slot;
        let gate = shared.segment.lock_range(GATE_BYTE, 1);
        let slot = shared.slot(i);
        // Rule 2: the same generation, free: replies to it are dropped.
        slot.state.store(
            slot_state(self.state.generation, SLOT_FREE),
            Ordering::SeqCst,
        );
        slot.owner.store(0, Ordering::SeqCst);
        slot.counters.in_flight.store(0, Ordering::Relaxed);
        shared.header().active.bits[(i / 64) as usize]
            .fetch_and(!(1 << (i % 64)), Ordering::SeqCst);
        drop(lock);
        if gate.is_ok() {
            shared.remove_if_last();
        }
    }
}

impl State {
    /// The rest of a send while `max_in_flight` calls are due (rule 4):
    /// takes responses off the ring for their calls until one is free, or
    /// `Full`, or waits for one. Out of line: a client at its bound waits.
    #[cold]
    #[inline(never)]
    fn room_for_a_call(
        &mut self,
        shared: &Shared,
        waiter: &mut Waiter,
        patience: Patience,
        len: u64,
    ) -> Result<()> {
        let (requests, slot) = (self.requests, self.slot);
        while self.due >= shared.max_in_flight {
            if self.take(shared, None)?.is_some() {
                continue;
            }
            if let Patience::Now = patience {
                return Err(full(shared, len, 0));
            }
            let responses = self.responses;
            let wait = &responses.header().wait;
            waiter.wait(
                wait,
                &wait.consumer_sleeping,
                patience.deadline(),
                &shared.name,
                || self.take(shared, None),
                || server_check(shared, requests, slot, None),
            )?;
        }
        Ok(())
    }

    /// The rest of a send when the request ring has no room: `Full`, or a
    /// wait for room.
    #[cold]
    #[inline(never)]
    fn room_in_the_ring(
        &mut self,
        shared: &Shared,
        waiter: &mut Waiter,
        patience: Patience,
        len: u64,
    ) -> Result<Slot> {
        if let Patience::Now = patience {
            return Err(full(shared, len, 0));
        }
        let (requests, slot) = (self.requests, self.slot);
        let wait = &requests.header().wait;
        let tail = &mut self.tail;
        waiter.wait(
            wait,
            &wait.producer_sleeping,
            patience.deadline(),
            &shared.name,
            || requests.reserve(tail, len),
            || server_check(shared, requests, slot, None),
        )
    }

    /// The rest of a wait for `sent`'s response when it has not come:
    /// `Empty` (after a look at the server), or a wait for it.
    #[cold]
    #[inline(never)]
    fn wait_for(
        &mut self,
        shared: &Shared,
        waiter: &mut Waiter,
        sent: &Sent,
        patience: Patience,
    ) -> Result<Slot> {
        let (requests, slot) = (self.requests, self.slot);
        if let Patience::Now = patience {
            server_check(shared, requests, slot, Some(sent))?;
            return Err(Error::Empty {
                place: format!("service {}", shared.name),
            });
        }
        let responses = self.responses;
        let wait = &responses.header().wait;
        let found = waiter.wait(
            wait,
            &wait.consumer_sleeping,
            patience.deadline(),
            &shared.name,
            || self.take(shared, Some(sent.id)),
            || {
                shared.mapping.check_size()?;
                server_check(shared, requests, slot, Some(sent))
            },
        )?;
        match found {
            Found::Wanted(record) => Ok(record),
            Found::Other => unreachable!("a wanted call's take yields only it"),
        }
    }

    /// Abandons call `id` (its response is skipped when it comes), as a
    /// dropped [`PendingCall`] does.
    fn abandon(&mut self, id: u64) {
        let entry = self.entry(id);
        if entry.id == id && entry.due == Due::Waiting {
            entry.due = Due::Abandoned;
        }
    }

    /// Marks the calls whose [`PendingCall`]s were dropped.
    #[inline]
    fn collect_abandoned(&mut self) {
        // Acquire: pairs with the Release in `PendingCall::drop`.
        if self
            .abandoned
            .any
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.mark_abandoned();
        }
    }

    /// [`collect_abandoned`](State::collect_abandoned)'s work, when a call
    /// was dropped: out of line, as it is rare.
    #[cold]
    #[inline(never)]
    fn mark_abandoned(&mut self) {
        let ids = match self.abandoned.ids.lock() {
            Ok(mut ids) => {
                self.abandoned
                    .any
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                std::mem::take(&mut *ids)
            }
            Err(_) => return,
        };
        for id in ids {
            if self.due_of(id) == Due::Waiting {
                self.abandon(id);
            } else {
                self.arrived.retain(|(arrived, _)| *arrived != id);
            }
        }
    }

    /// The in-flight table's entry for call `id` (which another call may
    /// hold).
    #[inline]
    fn entry(&mut self, id: u64) -> &mut Entry {
        let mask = self.calls.len() - 1;
        &mut self.calls[id as usize & mask]
    }

    /// What became of call `id`: `Free` if it holds no entry.
    #[inline]
    fn due_of(&mut self, id: u64) -> Due {
        let entry = *self.entry(id);
        if entry.id == id {
            entry.due
        } else {
            Due::Free
        }
    }

    /// Frees call `id`'s entry (its response is off the ring).
    #[inline]
    fn free(&mut self, id: u64) {
        let entry = self.entry(id);
        if entry.id == id {
            *entry = FREE;
        }
    }

    /// The record at the response ring's head if it is the response to
    /// `id` (the common case of a call awaited as it was sent), without
    /// `take`'s look through the others; `None` for anything else, which
    /// `take` then sees again.
    #[inline]
    fn next_is(&mut self, id: u64) -> Option<Slot> {
        let record = self.responses.peek_message(&self.head)?;
        if read_id(&self.responses, record) != Some(id) {
            return None;
        }
        self.last_size = record_size(record.len);
        Some(record)
    }

    /// Looks through the response ring: the response to `wanted` stays in
    /// place and is returned; others are copied out for their calls or
    /// skipped (rule 3). With no `wanted`, returns once one response came
    /// off the ring.
    #[inline]
    fn take(&mut self, shared: &Shared, wanted: Option<u64>) -> Result<Option<Found>> {
        let ring = self.responses;
        // Each pass takes one record off the ring; a server that keeps
        // writing records we skip is not followed forever.
        for _ in 0..shared.max_in_flight.saturating_mul(2).saturating_add(64) {
            let Some(record) = ring.peek(&mut self.head)? else {
                // The record's other lines come with its word's.
                ring.prefetch_record(self.head.head, self.last_size);
                return Ok(None);
            };
            self.last_size = record_size(record.len);
            let Some(id) = read_id(&ring, record) else {
                ring.release(&mut self.head, record);
                return Err(Error::Corrupt(format!(
                    "service {}: a response of {} bytes has no call id",
                    shared.name, record.len
                )));
            };
            if id_generation(id) != self.generation as u32 {
                // An earlier holder's.
                ring.release(&mut self.head, record);
                continue;
            }
            if Some(id) == wanted {
                return Ok(Some(Found::Wanted(record)));
            }
            let taken = match self.due_of(id) {
                Due::Waiting => {
                    let len = (record.len - ID_LEN) as usize;
                    let mut body = vec![0u8; len];
                    // SAFETY: the record's payload has ID_LEN + len bytes
                    // inside the data area (peek checked it), which the
                    // server leaves alone until we release it (ring rule 2).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            ring.payload(record).add(ID_LEN as usize),
                            body.as_mut_ptr(),
                            len,
                        );
                    }
                    self.free(id);
                    self.arrived.push((id, body));
                    true
                }
                Due::Abandoned => {
                    self.free(id);
                    true
                }
                // Not a call of ours (answered twice, or made up): skipped.
                Due::Free => false,
            };
            ring.release(&mut self.head, record);
            if taken {
                self.response_off_ring(shared);
                if wanted.is_none() {
                    return Ok(Some(Found::Other));
                }
            }
        }
        Ok(None)
    }

    fn response_off_ring(&mut self, shared: &Shared) {
        self.due = self.due.saturating_sub(1);
        shared
            .slot(self.slot)
            .counters
            .in_flight
            .store(self.due, Ordering::Relaxed);
    }
}

/// The client's slot `i` taken over from its earlier holder: the request
/// ring's tail recovered as a ring producer does after a crash, and the
/// response ring's published head (rule 2).
fn take_over(shared: &Shared, i: u32) -> Result<(ProducerCursor, ConsumerCursor)> {
    let requests = shared.requests(i);
    let header = requests.header();
    // Acquire: pairs with the server's Release of `head`.
    let head = header.consumer.head.load(Ordering::Acquire);
    let tail = requests.recover_tail(header.producer.tail.load(Ordering::Relaxed), head)?;
    header.producer.tail.store(tail, Ordering::Relaxed);
    let responses = shared
        .responses(i)
        .header()
        .consumer
        .head
        .load(Ordering::Acquire);
    check_position(responses, "head")?;
    Ok((
        ProducerCursor {
            tail,
            cached_head: head,
        },
        ConsumerCursor { head: responses },
    ))
}

/// Rule 6: `Ok(())` while a server may still answer (`call`, if given),
/// `Err(PeerGone)` or `Err(Closed)` once none will.
fn server_check(shared: &Shared, requests: RingRef, slot: u32, call: Option<&Sent>) -> Result<()> {
    let server = &shared.header().server;
    let gone = |owner: u64| Error::PeerGone {
        place: format!("service {}", shared.name),
        peer: "server",
        pid: pid_of(owner),
    };
    if shared.server_alive() {
        if let Some(call) = call {
            // Acquire: the server's Release of `head` after taking a record.
            let head = requests.header().consumer.head.load(Ordering::Acquire);
            let taken = head.wrapping_sub(call.end) < 1 << 63;
            let from = shared.slot(slot).server_from.load(Ordering::SeqCst);
            let before = from.wrapping_sub(call.start).wrapping_sub(1) < 1 << 63;
            if taken && before {
                // Taken by a server before this one, which is gone.
                return Err(gone(call.server));
            }
        }
        return Ok(());
    }
    match server.state.load(Ordering::SeqCst) {
        SERVER_CLOSED => Err(Error::Closed {
            place: format!("service {}", shared.name),
        }),
        SERVER_SERVING => Err(gone(server.owner.load(Ordering::SeqCst))),
        // No server yet: the request waits for one.
        SERVER_NONE => Ok(()),
        other => Err(Error::Corrupt(format!(
            "service {}: server state {other} is none of 0, 1 and 2",
            shared.name
        ))),
    }
}

fn full(shared: &Shared, len: u64, free: u64) -> Error {
    Error::Full {
        place: format!("service {}", shared.name),
        needed: record_size(len),
        free,
    }
}

/// A response, read in place (or, if it came while another call was
/// awaited, a copy): dereferences to its body. Dropping it hands its
/// space back.
pub struct Response<'a> {
    state: &'a mut State,
    /// The service: its mapping's fault flag (`copied`), and the slot's
    /// count of calls in flight that `status` shows, one fewer once this
    /// response is read.
    shared: &'a Shared,
    body: Body,
}

enum Body {
    InRing(Slot),
    Copied(Vec<u8>),
}

impl Response<'_> {
    /// The body's first byte, for copying out without a `&[u8]` over
    /// memory the server maps.
    pub fn as_ptr(&self) -> *const u8 {
        match &self.body {
            // SAFETY: the payload has at least ID_LEN bytes (read_id).
            Body::InRing(record) => unsafe {
                self.state.responses.payload(*record).add(ID_LEN as usize)
            },
            Body::Copied(body) => body.as_ptr(),
        }
    }
}

impl Response<'_> {
    /// The body copied out, for a caller that keeps it (a copy is what
    /// another language's binding hands on): [`Error::Truncated`] instead
    /// if the copy ran onto a page a peer cut away, whose zeros are not the
    /// response. (Read in place, the same is reported at the next verb.)
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-response-copied-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// let mut client = Client::connect(&name)?;
    /// let call = client.send_request(b"ping")?;
    /// server.recv_request()?.reply(b"pong")?;
    /// assert_eq!(client.wait(call)?.copied()?, b"pong");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn copied(&self) -> Result<Vec<u8>> {
        let body = self.to_vec();
        self.intact()?;
        Ok(body)
    }

    /// After a copy of the body: `Err(Truncated)` if it ran onto a page a
    /// peer cut away (the typed client's check before it decodes).
    pub(crate) fn intact(&self) -> Result<()> {
        self.shared.mapping.check_intact()
    }
}

impl Deref for Response<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.body {
            // SAFETY: a committed record inside the data area (peek checked
            // it) of at least ID_LEN bytes; the server does not write it
            // until we release it (ring rule 2).
            Body::InRing(record) => unsafe {
                std::slice::from_raw_parts(self.as_ptr(), (record.len - ID_LEN) as usize)
            },
            Body::Copied(body) => body,
        }
    }
}

impl Drop for Response<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Body::InRing(record) = self.body {
            let state = &mut *self.state;
            state.responses.release(&mut state.head, record);
            state.due = state.due.saturating_sub(1);
            // Relaxed: only `status` reads it; the line is this client's.
            let counters = &self.shared.slot(state.slot).counters;
            counters.in_flight.store(state.due, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::service::Server;

    /// Removes a test's service even on panic.
    struct Cleanup(String);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(key) = super::super::shared::key_of(&self.0) {
                if let Ok(segment) = crate::Segment::open(&key) {
                    let _ = segment.remove();
                }
            }
        }
    }

    /// Issue 11: a call makes no system call when nobody sleeps. Every wake
    /// path (the service's line for the server, each ring's line for its
    /// other end) stamps `woken_at` before its `FUTEX_WAKE`, and none is
    /// taken over a hundred calls between a client and a server that only
    /// try.
    #[test]
    fn calls_make_no_wake_call_while_nobody_sleeps() {
        let name = format!("unit-service-no-wake-{}", std::process::id());
        let _cleanup = Cleanup(name.clone());
        let mut server = Server::open(&name).unwrap();
        let mut client = Client::connect(&name).unwrap();
        for n in 0u8..100 {
            let call = client.send_request(&[n]).unwrap();
            let request = server.try_recv_request().unwrap();
            assert_eq!(&*request, &[n]);
            request.reply(&[n, n]).unwrap();
            assert_eq!(&*client.try_wait(&call).unwrap(), &[n, n]);
        }
        let stamps = [
            client.shared.header().wait.woken_at.load(Ordering::Relaxed),
            client
                .state
                .requests
                .header()
                .wait
                .woken_at
                .load(Ordering::Relaxed),
            client
                .state
                .responses
                .header()
                .wait
                .woken_at
                .load(Ordering::Relaxed),
        ];
        assert_eq!(stamps, [0, 0, 0], "no wake call");
    }
}
