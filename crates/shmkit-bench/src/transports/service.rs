//! `shmkit-service`: a shmkit service (`shmkit::service`), the parent its
//! client and the peer its server, both busy-polling. A round trip is one
//! call: the client sends the message as a request, the server reads it
//! in place, checks it, copies it into its buffer and replies with it,
//! and the client reads the response in place and checks it. Beside
//! `shmkit-spin` (two rings, the same copies less the server's one) it
//! shows what the request–response layer costs: call ids, slot states,
//! the server's look at every client slot.
//!
//! Only round trips: a service has no one-way stream. The warm-up streams
//! `prime` requests before the first response is read, so each client
//! may have that many calls in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

use shmkit::service::{Caller, Client, Options, PendingCall, Server, Waiting, SEGMENT_PREFIX};
use shmkit::Key;

use super::ring::{ring_capacity, ring_record, RemoveRing};
use super::{wrong_length, AnyLink, Link, Opened, PeerEnd, Setup};
use crate::Error;

/// The largest body a service carries (the library's limit).
const MAX_BODY: usize = 1 << 24;

/// The most calls a client may have in flight (the library's bound): the
/// ping-pong's warm-up, which sends all its messages before it reads one
/// back, streams at most this many less one to a service.
pub const MAX_IN_FLIGHT: u64 = 1 << 16;

/// The client's side of a service for calls of `size` bytes each way, and
/// the peer's end naming it; the segment is removed with the [`Setup`].
pub fn open(both: bool, size: usize) -> Result<Opened, Error> {
    if !both {
        return Ok(Opened::Unsupported(
            "a service answers calls: round trips only, no one-way stream".to_owned(),
        ));
    }
    if size > MAX_BODY {
        return Ok(Opened::Unsupported(format!(
            "a service carries bodies of up to {MAX_BODY} bytes"
        )));
    }
    let name = name();
    let remove = RemoveRing::of_key(Key::posix(&format!("{SEGMENT_PREFIX}{name}"))?);
    let client = Client::connect_with(&name, &options(size))?;
    Ok(Opened::Ready(Box::new(Setup {
        link: AnyLink::Service(ServiceLink::Client {
            client,
            pending: VecDeque::new(),
        }),
        peer_end: PeerEnd::Service { name },
        inherit: Vec::new(),
        rings: vec![remove],
    })))
}

/// In the peer: the server of the service the parent made.
pub fn peer_link(size: usize, name: &str) -> Result<AnyLink, Error> {
    Ok(AnyLink::Service(ServiceLink::Server {
        server: Server::open_with(name, &options(size))?,
        callers: VecDeque::new(),
    }))
}

/// One client slot (the bench has one client), bodies of `size`, as many
/// calls in flight as the warm-up streams, busy-polling.
fn options(size: usize) -> Options {
    let prime = ring_capacity(size) / ring_record(size) + 1;
    Options::default()
        .max_clients(1)
        .max_request(size as u64)
        .max_response(size as u64)
        .max_in_flight((prime + 1).min(MAX_IN_FLIGHT) as u32)
        .waiting(Waiting::BusyPoll)
}

/// A name no other service of this bench has: `bench-PID-N-service`.
fn name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bench-{}-{n}-service", std::process::id())
}

/// The client with its calls in flight (answered in order), or the server
/// with the callers it has not answered yet.
#[derive(Debug)]
pub enum ServiceLink {
    Client {
        client: Client,
        pending: VecDeque<PendingCall>,
    },
    Server {
        server: Server,
        callers: VecDeque<Caller>,
    },
}

impl Link for ServiceLink {
    /// The client sends a request; the server answers its oldest caller.
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        match self {
            ServiceLink::Client { client, pending } => {
                pending.push_back(client.send_request(message)?);
            }
            ServiceLink::Server { server, callers } => {
                let caller = callers
                    .pop_front()
                    .ok_or_else(|| Error::Message("a reply with no call to answer".to_owned()))?;
                server.reply(caller, message)?;
            }
        }
        Ok(())
    }

    /// The client waits for its oldest call's response; the server for
    /// the next request. Both read in place.
    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        match self {
            ServiceLink::Client { client, pending } => {
                let call = pending
                    .pop_front()
                    .ok_or_else(|| Error::Message("a response to no call".to_owned()))?;
                let response = client.wait(call)?;
                if response.len() != buf.len() {
                    return Err(wrong_length(response.len(), buf.len()));
                }
                Ok(inspect(&response))
            }
            ServiceLink::Server { server, callers } => {
                let request = server.recv_request()?;
                if request.len() != buf.len() {
                    return Err(wrong_length(request.len(), buf.len()));
                }
                let result = inspect(&request);
                callers.push_back(request.caller());
                Ok(result)
            }
        }
    }

    /// The server checks the request in place, copies it into `buf` (the
    /// request holds the server until it is released) and replies with it.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let ServiceLink::Server { server, .. } = self else {
            return Err(Error::Message("only the server echoes".to_owned()));
        };
        let request = server.recv_request()?;
        if request.len() != buf.len() {
            return Err(wrong_length(request.len(), buf.len()));
        }
        check(&request)?;
        buf.copy_from_slice(&request);
        request.reply(buf)?;
        Ok(())
    }
}
