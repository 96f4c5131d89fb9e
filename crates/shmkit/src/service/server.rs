//! The server of a service: takes requests from every client slot in turn
//! and answers each one, in any order.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::layout::{
    id_generation, slot_generation, slot_state, slot_status, GATE_BYTE, ID_LEN, SERVER_CLOSED,
    SERVER_LOCK, SERVER_SERVING, SLOT_CONNECTED, SLOT_DEAD,
};
use super::protocol::{read_id, write_call, write_id};
use super::shared::Shared;
use super::Options;
use crate::error::{Error, Result};
use crate::ring::endpoint::{pid_of, this_process};
use crate::ring::layout::record_size;
use crate::ring::protocol::{check_position, ConsumerCursor, ProducerCursor, RingRef, Slot};
use crate::ring::wait::{monotonic_nanos, Waiter, PEER_CHECK_INTERVAL};
use crate::sync::{AtomicU64, Ordering};
use crate::sys::range_lock::RangeLock;

#[cfg(feature = "tokio")]
mod parking;

/// Who asked a request: the server that received it, the client slot, the
/// slot's state when the request came, and the call id. Copy it out of a
/// [`Request`] to answer later, with [`Server::reply`] or
/// [`Server::reply_grant`] of the same server, in any order; another
/// server (of another service, or a later server of this one) refuses it
/// with [`Error::InvalidArgument`].
///
/// ```
/// use shmkit::service::{Client, Server};
///
/// let name = format!("doc-caller-{}", std::process::id());
/// let mut server = Server::open(&name)?;
/// let mut client = Client::connect(&name)?;
/// let call = client.send_request(b"ping")?;
/// let caller = server.recv_request()?.caller(); // the request is released
/// assert_eq!(caller.client(), 0); // the first slot
/// server.reply(caller, b"pong")?;
/// assert_eq!(&*client.wait(call)?, b"pong");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The serial of the server that received the request (`SERVERS`).
    server: u64,
    slot: u32,
    state: u64,
    id: u64,
}

/// Numbers the servers this process opens, so that a [`Caller`] names the
/// one that received its request (rule 3 holds only within one server's
/// slots).
static SERVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Caller {
    /// The client's slot (0 to [`Server::max_clients`] - 1).
    pub fn client(&self) -> u32 {
        self.slot
    }

    /// The call id the library gave the request (unique per client slot
    /// holder).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// The server's private state of one client slot: its cursors in the
/// slot's two rings, and the slot state under which it found the slot
/// damaged, if it did.
#[derive(Debug)]
struct SlotCursors {
    requests: ConsumerCursor,
    responses: ProducerCursor,
    /// The slot's two rings (views computed once, not at every call).
    request_ring: RingRef,
    response_ring: RingRef,
    broken: Option<u64>,
    /// The size of the slot's last request record, the guess of the next
    /// one's for `RingRef::prefetch_record` while polling.
    last_size: u64,
}

/// The server's side of every slot and its round robin.
#[derive(Debug)]
struct Slots {
    cursors: Vec<SlotCursors>,
    /// The server's serial, for its [`Caller`]s.
    serial: u64,
    /// The slot the next poll starts at.
    next: u32,
}

/// How many skipped records one look at a slot goes through at most, so
/// that a client writing records the server skips cannot keep it there.
const SKIPS_PER_POLL: u32 = 64;

/// Polls between two readings of the clock for the sweep of dead clients.
const POLLS_PER_SWEEP_CHECK: u32 = 1024;

/// The server of a service: one per service at a time.
///
/// Dropping it (or [`close`](Server::close)) closes the service: every
/// call pending in a client then fails with [`Error::Closed`], and a
/// new server may open it. If its process dies instead, they fail with
/// [`Error::PeerGone`].
///
/// # Example
///
/// ```
/// use shmkit::service::{Client, Server};
///
/// let name = format!("doc-server-{}", std::process::id());
/// let mut server = Server::open(&name)?;
/// let mut client = Client::connect(&name)?; // usually another process
/// let call = client.send_request(b"hello")?;
///
/// let request = server.recv_request()?; // read in place
/// let upper = request.to_ascii_uppercase();
/// request.reply(&upper)?;
/// assert_eq!(&*client.wait(call)?, b"HELLO");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Server {
    slots: Slots,
    waiter: Waiter,
    me: u64,
    lock: Option<RangeLock>,
    polls: u32,
    next_sweep: u64,
    shared: Shared,
}

impl Server {
    /// Opens (or creates) service `name` as its server, with default
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if a live process is its server already;
    /// [`Error::Corrupt`], [`Error::Truncated`] or
    /// [`Error::VersionMismatch`] if the segment is not a service this
    /// library reads; [`Error::UntrustedOwner`] if another user made it;
    /// [`Error::InvalidArgument`] for a bad name.
    ///
    /// ```
    /// use shmkit::service::Server;
    ///
    /// let name = format!("doc-server-open-{}", std::process::id());
    /// let server = Server::open(&name)?;
    /// assert!(matches!(Server::open(&name), Err(shmkit::Error::InUse { .. })));
    /// assert_eq!(server.max_clients(), 32);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Server> {
        Server::open_with(name, &Options::default())
    }

    /// Opens (or creates) service `name` as its server; `options` shape the
    /// service if this call creates it, must match an existing one's where
    /// given (see [`Options`]), and say how the server waits.
    ///
    /// # Errors
    ///
    /// As [`Server::open`], and [`Error::OptionMismatch`] if the service
    /// exists with another value of an option given (checked before
    /// [`Error::InUse`]).
    ///
    /// ```
    /// use shmkit::service::{Options, Server};
    ///
    /// let name = format!("doc-server-open-with-{}", std::process::id());
    /// let server = Server::open_with(&name, &Options::default().max_clients(100))?;
    /// assert_eq!(server.max_clients(), 100);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<Server> {
        let (shared, gate) = Shared::open(name, options)?;
        let me = this_process()?;
        let server = &shared.header().server;
        let Some(lock) = shared.segment.try_lock_range(SERVER_LOCK, 1)? else {
            return Err(Error::InUse {
                ring: name.to_owned(),
                endpoint: "server",
                pid: pid_of(server.owner.load(Ordering::SeqCst)),
            });
        };
        let cursors: Vec<SlotCursors> = (0..shared.geometry.clients)
            .map(|i| take_over(&shared, i))
            .collect();
        // Rule 6: where this server's requests start, in every slot.
        for (i, cursor) in (0..).zip(&cursors) {
            shared
                .slot(i)
                .server_from
                .store(cursor.requests.head, Ordering::SeqCst);
        }
        // Rule 6: a new epoch, then the owner and the state.
        let epoch = server.epoch.load(Ordering::SeqCst).wrapping_add(1);
        server.epoch.store(epoch, Ordering::SeqCst);
        server.owner.store(me, Ordering::SeqCst);
        server.state.store(SERVER_SERVING, Ordering::SeqCst);
        drop(gate);
        Ok(Server {
            slots: Slots {
                cursors,
                serial: SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                next: 0,
            },
            waiter: Waiter::new(options.waiting_of()),
            me,
            lock: Some(lock),
            polls: 0,
            next_sweep: 0,
            shared,
        })
    }

    /// Receives the next request from any client, waiting while there is
    /// none. Clients are served in turn, so a busy one cannot starve the
    /// others. The [`Request`] reads the body in place; dropping it hands
    /// the space back to its client (keep its [`caller`](Request::caller)
    /// to reply later).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the segment was shrunk under the server.
    /// A client that breaks the protocol (corrupt records) is not an
    /// error: its slot is skipped, and its records counted as
    /// [`dropped`](Server::dropped), until a new client takes the slot.
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-server-recv-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// # let mut client = Client::connect(&name)?;
    /// # let call = client.send_request(b"x")?;
    /// let request = server.recv_request()?;
    /// assert_eq!(&*request, b"x");
    /// request.reply(b"y")?;
    /// # assert_eq!(&*client.wait(call)?, b"y");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn recv_request(&mut self) -> Result<Request<'_>> {
        self.recv_with(None)
    }

    /// [`recv_request`](Server::recv_request) if a request is there now,
    /// else [`Error::Empty`].
    ///
    /// ```
    /// # use shmkit::service::Server;
    /// # let name = format!("doc-server-try-recv-{}", std::process::id());
    /// let mut server = Server::open(&name)?;
    /// assert!(matches!(server.try_recv_request(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_request(&mut self) -> Result<Request<'_>> {
        self.shared.mapping.check_intact()?;
        self.sweep_now_and_then();
        match self.slots.poll(&self.shared) {
            Some(found) => Ok(self.request(found)),
            None => Err(Error::Empty {
                place: format!("service {}", self.shared.name),
            }),
        }
    }

    /// [`recv_request`](Server::recv_request), waiting at most `timeout`
    /// ([`Error::Timeout`] after that).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::service::Server;
    /// # let name = format!("doc-server-recv-timeout-{}", std::process::id());
    /// let mut server = Server::open(&name)?;
    /// let waited = server.recv_request_timeout(Duration::from_millis(1));
    /// assert!(matches!(waited, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_request_timeout(&mut self, timeout: Duration) -> Result<Request<'_>> {
        self.recv_with(Some(Instant::now() + timeout))
    }

    #[inline]
    fn recv_with(&mut self, deadline: Option<Instant>) -> Result<Request<'_>> {
        self.shared.mapping.check_intact()?;
        self.sweep_now_and_then();
        let found = match self.slots.poll(&self.shared) {
            Some(found) => found,
            None => self.wait_for_request(deadline)?,
        };
        Ok(self.request(found))
    }

    /// The rest of `recv_with` when no request is there: out of line, so
    /// that the path of a request that is there stays short.
    #[cold]
    #[inline(never)]
    fn wait_for_request(&mut self, deadline: Option<Instant>) -> Result<(Slot, Caller)> {
        // The blocking form: the poll above, then a wait on the one futex
        // word every client's request wakes (rule 5 of `protocol`).
        let Server {
            slots,
            waiter,
            shared,
            next_sweep,
            ..
        } = self;
        let wait = &shared.header().wait;
        waiter.wait(
            wait,
            &wait.server_sleeping,
            deadline,
            &shared.name,
            || Ok(slots.poll(shared)),
            || {
                shared.mapping.check_size()?;
                sweep(shared);
                *next_sweep = monotonic_nanos() + PEER_CHECK_INTERVAL.as_nanos() as u64;
                Ok(())
            },
        )
    }

    #[inline]
    fn request(&mut self, (record, caller): (Slot, Caller)) -> Request<'_> {
        bump(&self.shared.header().counters.received, 1);
        Request {
            server: self,
            record,
            caller,
        }
    }

    /// Rule 7: looks at the clients' locks every [`PEER_CHECK_INTERVAL`]
    /// of polling, reading the clock once every so many polls.
    #[inline]
    fn sweep_now_and_then(&mut self) {
        self.polls = self.polls.wrapping_add(1);
        if !self.polls.is_multiple_of(POLLS_PER_SWEEP_CHECK) {
            return;
        }
        let now = monotonic_nanos();
        if now >= self.next_sweep {
            sweep(&self.shared);
            self.next_sweep = now + PEER_CHECK_INTERVAL.as_nanos() as u64;
        }
    }

    /// Answers the request of `caller` with `body`. Never waits: a response
    /// to a client that died or left (or whose response ring is full,
    /// which a client keeping to its in-flight bound never lets happen) is
    /// dropped and counted in [`dropped`](Server::dropped).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if `body` is longer than
    /// [`max_response`](Server::max_response) (nothing is sent);
    /// [`Error::InvalidArgument`] for a [`Caller`] that another server
    /// received (of another service, or an earlier server of this one);
    /// [`Error::Truncated`] if the segment was shrunk.
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-server-reply-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// # let mut client = Client::connect(&name)?;
    /// let call = client.send_request(b"2+2")?;
    /// let caller = server.recv_request()?.caller();
    /// server.reply(caller, b"4")?;
    /// assert_eq!(&*client.wait(call)?, b"4");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn reply(&mut self, caller: Caller, body: &[u8]) -> Result<()> {
        self.check_caller(caller)?;
        self.answer(caller, body)
    }

    /// `reply` to a caller of this server's: the response, or (to a client
    /// that is gone) a count of it in `dropped`.
    #[inline]
    fn answer(&mut self, caller: Caller, body: &[u8]) -> Result<()> {
        self.check_reply(body.len())?;
        match self.reserve_reply(caller, body.len() as u64) {
            Some((ring, record)) => {
                write_call(&ring, record, caller.id, body);
                let cursor = &mut self.slots.cursors[caller.slot as usize].responses;
                ring.commit(cursor, record, record.len);
                bump(&self.shared.header().counters.replied, 1);
            }
            None => bump(&self.shared.header().counters.dropped, 1),
        }
        Ok(())
    }

    /// That `caller` came to this server (see [`Caller`]).
    #[inline]
    fn check_caller(&self, caller: Caller) -> Result<()> {
        if caller.server != self.slots.serial {
            return Err(Error::InvalidArgument(format!(
                "service {}: the caller of call {:#x} came to another server",
                self.shared.name, caller.id
            )));
        }
        Ok(())
    }

    /// The checks of every response: the mapping, and its length.
    #[inline]
    fn check_reply(&self, len: usize) -> Result<()> {
        self.shared.mapping.check_intact()?;
        if len as u64 > self.shared.max_response {
            return Err(Error::TooLarge {
                what: "response",
                size: len as u64,
                limit: self.shared.max_response,
            });
        }
        Ok(())
    }

    /// Reserves a response of `len` bytes to `caller` in its client's
    /// response ring, to be written in place and then
    /// [`commit`](ReplyGrant::commit)ted; dropping the grant sends nothing.
    /// A grant to a client that died or left is scratch memory of the
    /// server's own, dropped and counted at the commit.
    ///
    /// # Errors
    ///
    /// As [`reply`](Server::reply).
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-server-reply-grant-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// # let mut client = Client::connect(&name)?;
    /// let call = client.send_request(b"size?")?;
    /// let caller = server.recv_request()?.caller();
    /// let mut grant = server.reply_grant(caller, 8)?;
    /// grant.copy_from_slice(&42u64.to_le_bytes());
    /// grant.commit();
    /// assert_eq!(&*client.wait(call)?, &42u64.to_le_bytes());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reply_grant(&mut self, caller: Caller, len: usize) -> Result<ReplyGrant<'_>> {
        self.check_caller(caller)?;
        self.check_reply(len)?;
        let target = self.reserve_reply(caller, len as u64);
        Ok(ReplyGrant {
            scratch: if target.is_none() {
                vec![0; len]
            } else {
                Vec::new()
            },
            server: self,
            target,
            slot: caller.slot,
            id: caller.id,
            len,
        })
    }

    /// Room for a response to `caller` in its response ring, if its client
    /// is the one that asked and the ring has room (rule 3).
    #[inline]
    fn reserve_reply(&mut self, caller: Caller, len: u64) -> Option<(RingRef, Slot)> {
        let i = caller.slot;
        let state = self.shared.slot(i).state.load(Ordering::Acquire);
        let cursors = &mut self.slots.cursors[i as usize];
        if state != caller.state || cursors.broken == Some(state) {
            return None;
        }
        let ring = cursors.response_ring;
        if let Some(record) = ring.reserve_fast(&cursors.responses, ID_LEN + len) {
            return Some((ring, record));
        }
        match ring.reserve(&mut cursors.responses, ID_LEN + len) {
            Ok(Some(record)) => Some((ring, record)),
            Ok(None) => None,
            Err(_) => {
                // The client moved its head somewhere impossible.
                cursors.broken = Some(state);
                None
            }
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many client slots the service has.
    pub fn max_clients(&self) -> u32 {
        self.shared.geometry.clients
    }

    /// The largest request body.
    pub fn max_request(&self) -> usize {
        self.shared.max_request as usize
    }

    /// The largest response body.
    pub fn max_response(&self) -> usize {
        self.shared.max_response as usize
    }

    /// How many clients are connected now (slots held, dead holders not
    /// yet found included).
    pub fn clients(&self) -> u32 {
        (0..self.shared.geometry.clients)
            .filter(|&i| self.shared.active(i))
            .count() as u32
    }

    /// Responses dropped and requests skipped since the service was
    /// created: those of clients that died or left before the answer, and
    /// of clients that broke the protocol (wrapping counter in the
    /// segment).
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-server-dropped-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// let mut client = Client::connect(&name)?;
    /// let _call = client.send_request(b"never mind")?;
    /// let caller = server.recv_request()?.caller();
    /// drop(client); // leaves before the answer
    /// server.reply(caller, b"too late")?;
    /// assert_eq!(server.dropped(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn dropped(&self) -> u64 {
        self.shared
            .header()
            .counters
            .dropped
            .load(Ordering::Relaxed)
    }

    /// Clients the server found dead (killed without leaving).
    pub fn clients_lost(&self) -> u64 {
        self.shared
            .header()
            .counters
            .clients_lost
            .load(Ordering::Relaxed)
    }

    /// Closes the service: pending calls fail with [`Error::Closed`].
    /// Dropping the server does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let shared = &self.shared;
        let gate = shared.segment.lock_range(GATE_BYTE, 1);
        let server = &shared.header().server;
        server.state.store(SERVER_CLOSED, Ordering::SeqCst);
        let _ = server
            .owner
            .compare_exchange(self.me, 0, Ordering::SeqCst, Ordering::SeqCst);
        drop(lock);
        if gate.is_ok() {
            shared.remove_if_last();
        }
        drop(gate);
        // Waiting clients learn of the close now, not at their next check.
        for i in 0..shared.geometry.clients {
            if shared.active(i) {
                shared.responses(i).wake_consumer();
            }
        }
    }
}

impl Slots {
    /// The next request of any current client, from the slot after the
    /// last served (rule 3 skips the rest).
    #[inline]
    fn poll(&mut self, shared: &Shared) -> Option<(Slot, Caller)> {
        let clients = shared.geometry.clients;
        let bits = &shared.header().active.bits;
        let next = self.next;
        // From the slot after the last served to the end, then from 0:
        // only the slots whose bit is set, found a word at a time.
        for (from, to) in [(next, clients), (0, next)] {
            let mut i = from;
            while i < to {
                // Relaxed: rule 8 of the ring orders what matters (the
                // record); a bit seen late only delays a look at a new
                // client's slot.
                let word = bits[(i / 64) as usize].load(Ordering::Relaxed) >> (i % 64);
                if word == 0 {
                    i = (i / 64 + 1) * 64;
                    continue;
                }
                i += word.trailing_zeros();
                if i >= to {
                    break;
                }
                if let Some(found) = self.take_from(shared, i) {
                    self.next = if i + 1 == clients { 0 } else { i + 1 };
                    return Some(found);
                }
                i += 1;
            }
        }
        None
    }

    /// The next request in slot `i` from its current holder, skipping and
    /// counting those of earlier holders (rule 3).
    #[inline]
    fn take_from(&mut self, shared: &Shared, i: u32) -> Option<(Slot, Caller)> {
        // Acquire: pairs with the claimer's SeqCst store of the state. This
        // load comes before the record's, so it may still show the earlier
        // holder when the record is the new one's: a record that does not
        // match is checked again below against the state loaded after it.
        let state = shared.slot(i).state.load(Ordering::Acquire);
        let cursors = &mut self.cursors[i as usize];
        if cursors.broken == Some(state) {
            return None;
        }
        let ring = cursors.request_ring;
        for _ in 0..SKIPS_PER_POLL {
            let record = match ring.peek_message(&cursors.requests) {
                Some(record) => Ok(Some(record)),
                None => ring.peek(&mut cursors.requests),
            };
            let record = match record {
                Ok(Some(record)) => record,
                Ok(None) => {
                    // The record's other lines come with its word's.
                    ring.prefetch_record(cursors.requests.head, cursors.last_size);
                    return None;
                }
                Err(_) => {
                    cursors.broken = Some(state);
                    bump(&shared.header().counters.dropped, 1);
                    return None;
                }
            };
            let id = read_id(&ring, record);
            let current = slot_status(state) == SLOT_CONNECTED
                && id.is_some_and(|id| id_generation(id) == slot_generation(state) as u32);
            match id {
                Some(id) if current => {
                    cursors.last_size = record_size(record.len);
                    let caller = Caller {
                        server: self.serial,
                        slot: i,
                        state,
                        id,
                    };
                    return Some((record, caller));
                }
                _ => {
                    // After the record's Acquire, the state shows at least
                    // the holder that wrote it (it stored the state before
                    // it committed): if the state moved on, the record may
                    // be the new holder's, so look again next poll.
                    if shared.slot(i).state.load(Ordering::Acquire) != state {
                        return None;
                    }
                    ring.release(&mut cursors.requests, record);
                    ring.wake_producer();
                    bump(&shared.header().counters.dropped, 1);
                }
            }
        }
        None
    }
}

/// The server's cursors in slot `i`, taken over from whoever was server
/// before: the request ring's published `head`, and the response ring's
/// tail recovered as a ring producer does after a crash. A slot whose
/// positions are impossible is marked broken (cursors at 0, never used
/// until a new client claims the slot).
fn take_over(shared: &Shared, i: u32) -> SlotCursors {
    let state = shared.slot(i).state.load(Ordering::SeqCst);
    let requests = shared
        .requests(i)
        .header()
        .consumer
        .head
        .load(Ordering::Acquire);
    let responses = shared.responses(i);
    let header = responses.header();
    let head = header.consumer.head.load(Ordering::Acquire);
    let tail = responses.recover_tail(header.producer.tail.load(Ordering::Relaxed), head);
    match (check_position(requests, "head"), tail) {
        (Ok(()), Ok(tail)) => {
            header.producer.tail.store(tail, Ordering::Relaxed);
            SlotCursors {
                requests: ConsumerCursor { head: requests },
                responses: ProducerCursor {
                    tail,
                    cached_head: head,
                },
                request_ring: shared.requests(i),
                response_ring: responses,
                broken: None,
                last_size: 0,
            }
        }
        _ => SlotCursors {
            requests: ConsumerCursor { head: 0 },
            responses: ProducerCursor {
                tail: 0,
                cached_head: 0,
            },
            request_ring: shared.requests(i),
            response_ring: responses,
            broken: Some(state),
            last_size: 0,
        },
    }
}

/// Rule 7: marks the slots whose holder died.
fn sweep(shared: &Shared) {
    for i in 0..shared.geometry.clients {
        if !shared.active(i) {
            continue;
        }
        let slot = shared.slot(i);
        let state = slot.state.load(Ordering::SeqCst);
        if slot_status(state) != SLOT_CONNECTED || shared.client_alive(i) {
            continue;
        }
        let dead = slot_state(slot_generation(state), SLOT_DEAD);
        if slot
            .state
            .compare_exchange(state, dead, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            bump(&shared.header().counters.clients_lost, 1);
        }
    }
}

/// Adds to a counter in the segment (wrapping: it may hold anything).
#[inline]
pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// One request, read in place: dereferences to its body. Dropping it hands
/// its space back to the client; keep its [`caller`](Request::caller) to
/// reply after that, or [`reply`](Request::reply) at once.
#[must_use = "a request is answered with reply, or its caller kept for Server::reply"]
pub struct Request<'a> {
    server: &'a mut Server,
    record: Slot,
    caller: Caller,
}

impl Request<'_> {
    /// The request's bytes copied out, for a caller that keeps them:
    /// [`Error::Truncated`] instead if the copy ran onto a page a peer cut
    /// away, whose zeros are not the request.
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-request-copied-{}", std::process::id());
    /// let mut server = Server::open(&name)?;
    /// # let mut client = Client::connect(&name)?;
    /// # let _call = client.send_request(b"ping")?;
    /// assert_eq!(server.recv_request()?.copied()?, b"ping");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn copied(&self) -> Result<Vec<u8>> {
        let body = self.to_vec();
        self.intact()?;
        Ok(body)
    }

    /// After a copy of the request: `Err(Truncated)` if it ran onto a page
    /// a peer cut away (the typed server's check before it decodes).
    pub(crate) fn intact(&self) -> Result<()> {
        self.server.shared.mapping.check_intact()
    }

    /// Who asked, to answer with [`Server::reply`] later.
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// Answers this request with `body` (after handing its space back),
    /// as [`Server::reply`].
    ///
    /// ```
    /// # use shmkit::service::{Client, Server};
    /// # let name = format!("doc-request-reply-{}", std::process::id());
    /// # let mut server = Server::open(&name)?;
    /// # let mut client = Client::connect(&name)?;
    /// # let call = client.send_request(b"abc")?;
    /// let request = server.recv_request()?;
    /// let reversed: Vec<u8> = request.iter().rev().copied().collect();
    /// request.reply(&reversed)?;
    /// # assert_eq!(&*client.wait(call)?, b"cba");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn reply(mut self, body: &[u8]) -> Result<()> {
        self.release();
        // This server's own caller: no check of whose it is.
        let result = self.server.answer(self.caller, body);
        // Released above: the drop would release it twice.
        std::mem::forget(self);
        result
    }

    #[inline]
    fn release(&mut self) {
        let cursors = &mut self.server.slots.cursors[self.caller.slot as usize];
        cursors
            .request_ring
            .release(&mut cursors.requests, self.record);
        cursors.request_ring.wake_producer();
    }

    fn ring(&self) -> &RingRef {
        &self.server.slots.cursors[self.caller.slot as usize].request_ring
    }

    /// The body's first byte, for copying out without a `&[u8]` over
    /// memory the client maps.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: the payload has at least ID_LEN bytes (read_id checked).
        unsafe { self.ring().payload(self.record).add(ID_LEN as usize) }
    }
}

impl Deref for Request<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: a committed record inside the data area (peek checked it)
        // of at least ID_LEN bytes; the client does not write it until we
        // release it (ring rule 2); a client breaking that rule changes only
        // bytes, which are data to us.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), (self.record.len - ID_LEN) as usize) }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("caller", &self.caller)
            .field("len", &self.len())
            .finish()
    }
}

/// A response reserved in place: write it through `DerefMut`, then
/// [`commit`](ReplyGrant::commit). Dropping it without a commit sends
/// nothing.
#[must_use = "a grant sends nothing until committed"]
pub struct ReplyGrant<'a> {
    server: &'a mut Server,
    target: Option<(RingRef, Slot)>,
    scratch: Vec<u8>,
    slot: u32,
    id: u64,
    len: usize,
}

impl ReplyGrant<'_> {
    /// Sends the response (or, to a client that is gone, drops and counts
    /// it).
    pub fn commit(mut self) {
        let server = &mut *self.server;
        let header = server.shared.header();
        match self.target.take() {
            Some((ring, record)) => {
                let cursor = &mut server.slots.cursors[self.slot as usize].responses;
                write_id(&ring, record, self.id);
                ring.commit(cursor, record, record.len);
                bump(&header.counters.replied, 1);
            }
            None => bump(&header.counters.dropped, 1),
        }
    }

    /// The response's first byte, for writing without a `&mut [u8]` over
    /// memory the client maps.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        match &self.target {
            // SAFETY: the reserved record has ID_LEN + len bytes.
            Some((ring, record)) => unsafe { ring.payload(*record).add(ID_LEN as usize) },
            None => self.scratch.as_mut_ptr(),
        }
    }
}

impl Deref for ReplyGrant<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.target {
            // SAFETY: a reserved record of ID_LEN + len bytes inside the
            // data area, this producer's until committed (ring rule 2).
            Some((ring, record)) => unsafe {
                std::slice::from_raw_parts(ring.payload(*record).add(ID_LEN as usize), self.len)
            },
            None => &self.scratch,
        }
    }
}

impl DerefMut for ReplyGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        let at = self.as_mut_ptr();
        // SAFETY: as in `deref`; the grant is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(at, len) }
    }
}

impl std::fmt::Debug for ReplyGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyGrant")
            .field("id", &self.id)
            .field("len", &self.len)
            .field("delivered", &self.target.is_some())
            .finish()
    }
}
