//! Services: request–response between many client processes and one
//! server process, in one POSIX shared-memory segment.
//!
//! A service is found by name: [`Server::open`] and [`Client::connect`]
//! create it if it does not exist yet, so either may start first. Each
//! client holds a slot of its own (at least 32 per service, fixed when the
//! service is created), which is a pair of the ring's single-producer
//! single-consumer rings: requests from the client to the server and
//! responses back. So a client never waits for another client, and a
//! response reaches only the client that asked: every request carries a
//! call id that the library assigns, and the response carries it back.
//!
//! A client calls with [`call`](Client::call) (or
//! [`call_timeout`](Client::call_timeout)), or pipelines: each
//! [`send_request`](Client::send_request) returns a [`PendingCall`], and
//! several may be in flight (at most [`Options::max_in_flight`]; a client
//! then waits, or a `try_` form gets [`Error::Full`]), each awaited on its
//! own ([`wait`](Client::wait), [`try_wait`](Client::try_wait),
//! [`wait_timeout`](Client::wait_timeout)), whatever order the responses
//! come in. The server takes requests from every client in turn with
//! [`recv_request`](Server::recv_request) (and `try_`/`_timeout` forms)
//! and answers each one, in any order, with [`reply`](Server::reply) or a
//! zero-copy [`reply_grant`](Server::reply_grant). Requests are read in
//! place ([`Request`] dereferences to the bytes in the ring), and so are
//! responses ([`Response`]). Typed calls go through the channel codecs:
//! [`channel::ServiceClient`](crate::channel::ServiceClient) and
//! [`channel::ServiceServer`](crate::channel::ServiceServer).
//!
//! Liveness comes from the kernel, as for rings and topics: the server and
//! every client hold an open file description lock on a byte of the
//! service's file (`sys::range_lock`), released when they die. A server
//! that dies fails every pending call with [`Error::PeerGone`] within one
//! peer check (20 ms) of the client's wait; one that closes fails them with
//! [`Error::Closed`]. A client that dies never holds the server up: its
//! slot is found dead within a peer check of the server's polling, its
//! requests are skipped and responses to it dropped, and both are counted
//! ([`Server::dropped`]); the next client takes the slot over. The last
//! member to leave removes the service; [`collect_garbage`] removes
//! services whose members all died.
//!
//! Waiting is the ring's ([`Waiting`]): spin, then sleep on a futex. The
//! server sleeps on one futex word that every client's request wakes; a
//! client sleeps on its own response ring's. Neither side makes a system
//! call when the other does not sleep.
//!
//! The byte layout is in `docs/FORMAT.md`; the protocol's rules are listed
//! in the source of `service/protocol.rs`.
//!
//! # Example: a call, and pipelined calls answered out of order
//!
//! ```
//! use shmkit::service::{Client, Server};
//!
//! let name = format!("doc-service-{}", std::process::id());
//! let mut server = Server::open(&name)?;
//! let mut client = Client::connect(&name)?; // usually another process
//!
//! let first = client.send_request(b"first")?;
//! let second = client.send_request(b"second")?;
//! let a = server.recv_request()?.caller(); // read in place, then released
//! let request = server.recv_request()?;
//! assert_eq!(&*request, b"second");
//! request.reply(b"SECOND")?; // answer the second one first
//! server.reply(a, b"FIRST")?;
//!
//! assert_eq!(&*client.wait(second)?, b"SECOND");
//! assert_eq!(&*client.wait(first)?, b"FIRST");
//! # Ok::<(), shmkit::Error>(())
//! ```

mod client;
mod layout;
#[cfg(all(test, loom))]
mod model;
mod protocol;
mod server;
mod shared;
mod status;

pub use crate::ring::Waiting;
pub use client::{Client, PendingCall, Response};
pub use server::{Caller, ReplyGrant, Request, Server};
pub use status::{collect_garbage, list, status, ClientStatus, ServerStatus, ServiceStatus};

use crate::segment::{Mode, Trust};

/// The POSIX name of a service's segment is this prefix and the service's
/// name.
pub const SEGMENT_PREFIX: &str = "/shmkit.service.";

/// How a service is created, and how a member joins and waits.
///
/// The slots, sizes, mode and group apply only when this call creates the
/// service; an existing service keeps its own. An existing service is used
/// only if its owner is trusted ([`Options::trust`]; by default only this
/// process's own uid).
///
/// ```
/// use shmkit::service::{Options, Waiting};
///
/// let options = Options::default()
///     .max_clients(64)
///     .max_request(256)
///     .max_response(1 << 20)
///     .max_in_flight(4)
///     .waiting(Waiting::BusyPoll);
/// assert_eq!(options.max_clients_len(), 64);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    max_clients: u32,
    max_request: u64,
    max_response: u64,
    max_in_flight: u32,
    mode: Mode,
    group: Option<u32>,
    trust: Trust,
    waiting: Waiting,
}

impl Default for Options {
    /// 32 client slots, requests and responses of up to 4 KiB, 8 calls in
    /// flight per client, mode 0600, adaptive waiting.
    fn default() -> Options {
        Options {
            max_clients: 32,
            max_request: 4096,
            max_response: 4096,
            max_in_flight: 8,
            mode: Mode::OWNER_ONLY,
            group: None,
            trust: Trust::me(),
            waiting: Waiting::Adaptive,
        }
    }
}

impl Options {
    /// How many clients may be connected at once (1 to 1024).
    pub fn max_clients(mut self, count: u32) -> Options {
        self.max_clients = count;
        self
    }

    /// The slots this service is created with.
    pub fn max_clients_len(&self) -> u32 {
        self.max_clients
    }

    /// The largest request body in bytes (at most 16 MiB).
    pub fn max_request(mut self, bytes: u64) -> Options {
        self.max_request = bytes;
        self
    }

    /// The largest response body in bytes (at most 16 MiB).
    pub fn max_response(mut self, bytes: u64) -> Options {
        self.max_response = bytes;
        self
    }

    /// How many calls one client may have in flight, sent and their
    /// responses not yet read (1 to 65536). Each slot's rings are sized so
    /// that this many requests and responses of the largest size fit.
    pub fn max_in_flight(mut self, calls: u32) -> Options {
        self.max_in_flight = calls;
        self
    }

    /// Permission bits of the service's segment.
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = mode;
        self
    }

    /// Gives the service's segment this group when creating it (with a
    /// mode such as 0660, for members of another uid in that group).
    pub fn group(mut self, gid: u32) -> Options {
        self.group = Some(gid);
        self
    }

    /// Whose existing services to use (see [`Trust`]).
    pub fn trust(mut self, trust: Trust) -> Options {
        self.trust = trust;
        self
    }

    /// How this member waits.
    pub fn waiting(mut self, waiting: Waiting) -> Options {
        self.waiting = waiting;
        self
    }
}
