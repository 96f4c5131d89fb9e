//! Looking at services from outside: their server and clients, the list of
//! them, and the removal of services whose members all died.

use super::layout::{slot_status, SERVER_CLOSED, SLOT_CONNECTED, SLOT_DEAD};
use super::shared::{key_of, read_header, Shared, FORMAT};

use crate::error::Result;
use crate::ring::endpoint::pid_of;
use crate::ring::{Action, Garbage, Scope};
use crate::segment::{ReadWrite, Segment};
use crate::sync::Ordering;

/// The server of a service as [`ServiceStatus`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServerStatus {
    /// Its pid (in its own pid namespace).
    pub pid: crate::Pid,
    /// Whether it still holds the service (the kernel's lock says so).
    pub alive: bool,
}

/// One client of a service as [`ServiceStatus`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClientStatus {
    /// Its slot.
    pub slot: u32,
    /// Its pid.
    pub pid: crate::Pid,
    /// Whether it still holds its slot.
    pub alive: bool,
    /// Calls it sent.
    pub calls: u64,
    /// Calls it has in flight.
    pub in_flight: u32,
}

/// The state of a service, read without joining it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// The service's name (its segment is [`SEGMENT_PREFIX`](super::SEGMENT_PREFIX) + name).
    pub name: String,
    /// Client slots.
    pub max_clients: u32,
    /// Calls in flight per client.
    pub max_in_flight: u32,
    /// Largest request body.
    pub max_request: u64,
    /// Largest response body.
    pub max_response: u64,
    /// The server, if one holds the service or died holding it.
    pub server: Option<ServerStatus>,
    /// Whether the last server closed it.
    pub closed: bool,
    /// Requests the servers received.
    pub received: u64,
    /// Responses they sent.
    pub replied: u64,
    /// Responses dropped and requests skipped (clients gone or broken).
    pub dropped: u64,
    /// Clients the servers found dead.
    pub clients_lost: u64,
    /// The clients that hold (or held and died in) a slot.
    pub clients: Vec<ClientStatus>,
}

impl ServiceStatus {
    /// Calls in flight, over all clients.
    pub fn in_flight(&self) -> u64 {
        self.clients.iter().map(|c| u64::from(c.in_flight)).sum()
    }

    /// Whether some member died without leaving and no member is alive.
    pub fn abandoned(&self) -> bool {
        let alive = self.server.is_some_and(|s| s.alive) || self.clients.iter().any(|c| c.alive);
        let died = self.server.is_some_and(|s| !s.alive) || self.clients.iter().any(|c| !c.alive);
        died && !alive
    }
}

/// Maps service `name` read-write (the kernel's lock queries need a
/// descriptor; nothing is written) and validates it.
fn map(name: &str) -> Result<Shared> {
    let key = key_of(name)?;
    let segment = Segment::open(&key)?;
    let mapping = segment.attach(ReadWrite)?;
    Shared::from_mapping(name, segment, mapping)
}

/// The state of service `name`.
///
/// # Errors
///
/// [`Error::NotFound`] if there is no such service; [`Error::Corrupt`],
/// [`Error::Truncated`] or [`Error::VersionMismatch`] if its segment is not
/// a service this library reads.
///
/// [`Error::NotFound`]: crate::Error::NotFound
/// [`Error::Corrupt`]: crate::Error::Corrupt
/// [`Error::Truncated`]: crate::Error::Truncated
/// [`Error::VersionMismatch`]: crate::Error::VersionMismatch
///
/// ```
/// use shmkit::service::{status, Client, Server};
///
/// let name = format!("doc-service-status-{}", std::process::id());
/// let _server = Server::open(&name)?;
/// let mut client = Client::connect(&name)?;
/// let _call = client.send_request(b"one")?;
/// let service = status(&name)?;
/// assert_eq!(service.server.unwrap().pid, std::process::id());
/// assert_eq!((service.clients.len(), service.in_flight()), (1, 1));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn status(name: &str) -> Result<ServiceStatus> {
    let shared = map(name)?;
    let status = describe(&shared);
    // A peer may have shrunk the file while we read: then these are zeros.
    shared.mapping.check_intact()?;
    Ok(status)
}

fn describe(shared: &Shared) -> ServiceStatus {
    let header = shared.header();
    let server = &header.server;
    let owner = server.owner.load(Ordering::Relaxed);
    let alive = shared.server_alive();
    let mut clients = Vec::new();
    for i in 0..shared.geometry.clients {
        let slot = shared.slot(i);
        let status = slot_status(slot.state.load(Ordering::Acquire));
        if status != SLOT_CONNECTED && status != SLOT_DEAD {
            continue;
        }
        clients.push(ClientStatus {
            slot: i,
            pid: pid_of(slot.owner.load(Ordering::Relaxed)),
            alive: status == SLOT_CONNECTED && shared.client_alive(i),
            calls: slot.counters.calls.load(Ordering::Relaxed),
            in_flight: slot.counters.in_flight.load(Ordering::Relaxed),
        });
    }
    ServiceStatus {
        name: shared.name.clone(),
        max_clients: shared.geometry.clients,
        max_in_flight: shared.max_in_flight,
        max_request: shared.max_request,
        max_response: shared.max_response,
        server: (owner != 0 || alive).then(|| ServerStatus {
            pid: pid_of(owner),
            alive,
        }),
        closed: server.state.load(Ordering::Relaxed) == SERVER_CLOSED,
        received: header.counters.received.load(Ordering::Relaxed),
        replied: header.counters.replied.load(Ordering::Relaxed),
        dropped: header.counters.dropped.load(Ordering::Relaxed),
        clients_lost: header.counters.clients_lost.load(Ordering::Relaxed),
        clients,
    }
}

/// The names of all services on the machine (regular files in `/dev/shm`
/// whose name starts with [`SEGMENT_PREFIX`](super::SEGMENT_PREFIX)), sorted.
pub fn list() -> Result<Vec<String>> {
    FORMAT.list()
}

/// Finds services in `scope` (as [`ring::collect_garbage`](crate::ring::collect_garbage)
/// takes it) that nobody will use, and with [`Action::Remove`] removes
/// them: no live process is a member or maps the segment, and some member
/// died without leaving ([`Reason::Abandoned`], see
/// [`ServiceStatus::abandoned`]), or the last member could not remove it
/// ([`Reason::Finished`]), or it is [half-made][halfmade] or
/// [corrupt][corrupt]. Each is looked at and removed under its
/// gate, exactly.
///
/// # Errors
///
/// For [`Scope::Name`], [`Error::NotFound`] if there is no such service,
/// and any error looking at it; for the other scopes, only an error
/// listing `/dev/shm`.
///
/// [`Reason::Abandoned`]: crate::ring::Reason::Abandoned
/// [`Reason::Finished`]: crate::ring::Reason::Finished
/// [halfmade]: crate::ring::Reason::HalfMade
/// [corrupt]: crate::ring::Reason::Corrupt
/// [`Error::NotFound`]: crate::Error::NotFound
///
/// ```
/// use shmkit::ring::{Action, Scope};
/// use shmkit::service::collect_garbage;
///
/// let mine = format!("doc-service-gc-{}-", std::process::id());
/// assert!(collect_garbage(Scope::Prefix(&mine), Action::DryRun)?.is_empty());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn collect_garbage(scope: Scope<'_>, action: Action) -> Result<Vec<Garbage<ServiceStatus>>> {
    scope.collect(&FORMAT, |name| examine(name, action))
}

/// Looks at one service under its gate; removes it if it is garbage and
/// `action` says so.
fn examine(name: &str, action: Action) -> Result<Option<Garbage<ServiceStatus>>> {
    let examined = FORMAT.examine(
        name,
        action == Action::Remove,
        |mapping| read_header(mapping, name).map(drop),
        |segment, mapping| Shared::from_mapping(name, segment, mapping),
        describe,
    )?;
    Ok(examined.map(|examination| Garbage::of(name, examination, ServiceStatus::abandoned)))
}
