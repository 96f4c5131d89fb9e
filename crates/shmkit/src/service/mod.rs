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
//! [`Error::Full`]: crate::Error::Full
//! [`Error::PeerGone`]: crate::Error::PeerGone
//! [`Error::Closed`]: crate::Error::Closed
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
/// The [client slots](Options::max_clients), [maximum
/// request](Options::max_request) and [response](Options::max_response),
/// [calls in flight](Options::max_in_flight) and [mode](Options::mode)
/// are the service's own, recorded in its header: they shape a service
/// this call creates, and when the service exists already, each one that
/// was given must equal the service's, or the open fails with
/// [`Error::OptionMismatch`](crate::Error::OptionMismatch) naming the
/// option, the value asked for and the service's. One not given takes the
/// service's own, whatever it is (not the default). This is the rule of
/// [`ring::Options`](crate::ring::Options) and
/// [`topic::Options`](crate::topic::Options).
///
/// Unlike a ring's or topic's maximum message, no service option's limit
/// depends on another option: each is checked on its own limits (a body
/// over 16 MiB is [`Error::TooLarge`](crate::Error::TooLarge), a count out
/// of range [`Error::InvalidArgument`](crate::Error::InvalidArgument))
/// before the service is looked for, the same for a service found as for
/// one created, and then each one given must equal the service's.
///
/// The [group](Options::group) applies only to a service this call
/// creates (an existing service keeps its own, unchecked).
/// [Waiting](Options::waiting) and [trust](Options::trust) are this
/// member's own, and may differ between members. An existing service is
/// used only if its owner is trusted ([`Options::trust`]; by default only
/// this process's own uid).
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
///
/// Connecting to an existing service with options of its own, or none:
///
/// ```
/// use shmkit::service::{Client, Options, Server};
/// use shmkit::Error;
///
/// let name = format!("doc-service-options-{}", std::process::id());
/// let server = Server::open_with(&name, &Options::default().max_request(64))?;
///
/// let client = Client::connect(&name)?; // nothing given: the service's
/// assert_eq!(client.max_request(), 64);
///
/// match Client::connect_with(&name, &Options::default().max_request(128)) {
///     Err(Error::OptionMismatch { option, asked, found, .. }) => {
///         assert_eq!((option, &*asked, &*found), ("maximum request", "128", "64"));
///     }
///     other => panic!("expected a mismatch, got {other:?}"),
/// }
/// # drop((client, server));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    max_clients: Option<u32>,
    max_request: Option<u64>,
    max_response: Option<u64>,
    max_in_flight: Option<u32>,
    mode: Option<Mode>,
    group: Option<u32>,
    trust: Trust,
    waiting: Waiting,
}

/// Client slots of a service made without [`Options::max_clients`].
const DEFAULT_MAX_CLIENTS: u32 = 32;

/// The largest request or response body of a service made without
/// [`Options::max_request`] or [`Options::max_response`].
const DEFAULT_MAX_BODY: u64 = 4096;

/// Calls in flight per client of a service made without
/// [`Options::max_in_flight`].
const DEFAULT_MAX_IN_FLIGHT: u32 = 8;

impl Default for Options {
    /// Nothing given: a service this creates has 32 client slots,
    /// requests and responses of up to 4 KiB, 8 calls in flight per client
    /// and mode 0600; an existing service is taken as it is. The member
    /// waits adaptively.
    fn default() -> Options {
        Options {
            max_clients: None,
            max_request: None,
            max_response: None,
            max_in_flight: None,
            mode: None,
            group: None,
            trust: Trust::me(),
            waiting: Waiting::Adaptive,
        }
    }
}

impl Options {
    /// How many clients may be connected at once (1 to 1024; 32 if not
    /// given).
    pub fn max_clients(mut self, count: u32) -> Options {
        self.max_clients = Some(count);
        self
    }

    /// The slots a service made with these options has.
    pub fn max_clients_len(&self) -> u32 {
        self.max_clients.unwrap_or(DEFAULT_MAX_CLIENTS)
    }

    /// The largest request body in bytes (at most 16 MiB; 4 KiB if not
    /// given).
    pub fn max_request(mut self, bytes: u64) -> Options {
        self.max_request = Some(bytes);
        self
    }

    /// The largest response body in bytes (at most 16 MiB; 4 KiB if not
    /// given).
    pub fn max_response(mut self, bytes: u64) -> Options {
        self.max_response = Some(bytes);
        self
    }

    /// How many calls one client may have in flight, sent and their
    /// responses not yet read (1 to 65536; 8 if not given). Each slot's
    /// rings are sized so that this many requests and responses of the
    /// largest size fit.
    pub fn max_in_flight(mut self, calls: u32) -> Options {
        self.max_in_flight = Some(calls);
        self
    }

    /// Permission bits of the service's segment (0600 if not given).
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = Some(mode);
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

    fn max_request_len(&self) -> u64 {
        self.max_request.unwrap_or(DEFAULT_MAX_BODY)
    }

    fn max_response_len(&self) -> u64 {
        self.max_response.unwrap_or(DEFAULT_MAX_BODY)
    }

    fn in_flight_len(&self) -> u32 {
        self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT)
    }
}
