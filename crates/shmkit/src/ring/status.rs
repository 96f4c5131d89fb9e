//! Looking at rings from outside: their state, the list of them, their
//! removal, and the collection of rings nobody will use.

use super::endpoint::{self, End};
use super::layout::{Header, HEADER_SIZE, OPEN};
use super::{read_header, remove_exactly, unused, validate_name};
use crate::error::{Error, Result};
use crate::segment::{ReadOnly, Segment};
use crate::sync::Ordering;

/// One end of a ring as [`RingStatus`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStatus {
    /// The holder's pid.
    pub pid: crate::Pid,
    /// Whether that process still holds the end: its lock on the ring's
    /// file is held (the kernel's answer, right in any pid namespace; an
    /// answer that cannot be had counts as alive).
    pub alive: bool,
}

/// The state of a ring, read without joining it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RingStatus {
    /// The ring's name (its segment is [`SEGMENT_PREFIX`](super::SEGMENT_PREFIX) + name).
    pub name: String,
    /// Bytes in the data area.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Bytes committed and not yet read (records, padding included).
    pub bytes_in_flight: u64,
    /// Messages committed since the ring was created.
    pub sent: u64,
    /// Messages read since the ring was created.
    pub received: u64,
    /// Bytes committed since the ring was created: the producer's `tail`
    /// position, records' 8-byte headers and padding included (so that
    /// two samples give the ring's bytes per second).
    pub bytes_sent: u64,
    /// Bytes read since the ring was created: the consumer's `head`.
    pub bytes_received: u64,
    /// Whether the producer closed the stream.
    pub closed: bool,
    /// The producer, if one holds the ring.
    pub producer: Option<EndpointStatus>,
    /// The consumer, if one holds the ring.
    pub consumer: Option<EndpointStatus>,
}

impl RingStatus {
    /// Whether a process held an end of the ring and died without leaving,
    /// and no live process holds the other end.
    pub fn abandoned(&self) -> bool {
        let ends = [self.producer, self.consumer];
        ends.iter().flatten().all(|e| !e.alive) && ends.iter().flatten().any(|e| !e.alive)
    }
}

/// The state of ring `name`.
///
/// # Errors
///
/// [`Error::NotFound`] if there is no such ring; [`Error::Corrupt`] or
/// [`Error::VersionMismatch`] if its segment is not a ring this library
/// reads.
///
/// ```
/// use shmkit::ring::{status, Producer};
///
/// let name = format!("doc-status-{}", std::process::id());
/// let mut producer = Producer::open(&name)?;
/// producer.send(b"one")?;
/// let ring = status(&name)?;
/// assert_eq!((ring.sent, ring.received, ring.closed), (1, 0, false));
/// assert_eq!(ring.producer.unwrap().pid, std::process::id());
/// assert!(ring.consumer.is_none());
/// # drop(producer);
/// # shmkit::ring::remove(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn status(name: &str) -> Result<RingStatus> {
    let key = validate_name(name)?;
    let segment = Segment::open(&key)?;
    let mapping = segment.attach(ReadOnly)?;
    let header = read_header(&mapping, name)?;
    let status = status_of(name, header, &segment);
    // A peer may have shrunk the file while we read: then these are zeros.
    mapping.check_intact()?;
    Ok(status)
}

fn status_of(name: &str, header: &Header, segment: &Segment) -> RingStatus {
    let end = |owner: u64, end: End| {
        let alive = endpoint::is_held(segment, end);
        (owner != 0 || alive).then(|| EndpointStatus {
            pid: endpoint::pid_of(owner),
            alive,
        })
    };
    let capacity = header.config.capacity.load(Ordering::Relaxed);
    let head = header.consumer.head.load(Ordering::Relaxed);
    let tail = header.producer.tail.load(Ordering::Relaxed);
    RingStatus {
        name: name.to_owned(),
        capacity,
        max_message: header.config.max_message.load(Ordering::Relaxed),
        bytes_in_flight: tail.wrapping_sub(head).min(capacity),
        sent: header.producer.sent.load(Ordering::Relaxed),
        received: header.consumer.received.load(Ordering::Relaxed),
        bytes_sent: tail,
        bytes_received: head,
        closed: header.wait.closed.load(Ordering::Relaxed) != OPEN,
        producer: end(header.producer.owner.load(Ordering::Relaxed), End::Producer),
        consumer: end(header.consumer.owner.load(Ordering::Relaxed), End::Consumer),
    }
}

/// The names of all rings on the machine (regular files in `/dev/shm` whose
/// name starts with [`SEGMENT_PREFIX`](super::SEGMENT_PREFIX)), sorted.
pub fn list() -> Result<Vec<String>> {
    super::FORMAT.list()
}

/// Removes ring `name`, which no process may hold an end of (its data, if
/// any, is lost). Removal is exact: a ring made anew under the same name
/// meanwhile is left alone, and an endpoint that was opening the old one
/// moves to the new. A half-made or corrupt ring is removed too.
///
/// # Errors
///
/// [`Error::NotFound`] if there is no such ring; [`Error::InUse`] if a live
/// process holds an end; [`Error::PermissionDenied`] if this user may not
/// remove it.
///
/// ```
/// use shmkit::ring::{remove, Producer};
///
/// let name = format!("doc-remove-{}", std::process::id());
/// let mut producer = Producer::open(&name)?;
/// producer.send(b"never read")?;
/// producer.close()?; // the ring stays, for a consumer to come
/// remove(&name)?;
/// assert!(matches!(remove(&name), Err(shmkit::Error::NotFound { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn remove(name: &str) -> Result<()> {
    let key = validate_name(name)?;
    let segment = Segment::open(&key)?;
    let _gate = endpoint::gate(&segment)?;
    let mapped = Mapped::new(&segment);
    for end in [End::Producer, End::Consumer] {
        if endpoint::is_held(&segment, end) {
            let owner = mapped
                .header(name)
                .ok()
                .map_or(0, |h| super::owner_word(h, end).load(Ordering::SeqCst));
            return Err(Error::InUse {
                ring: name.to_owned(),
                endpoint: end.name(),
                pid: endpoint::pid_of(owner),
            });
        }
    }
    remove_exactly(
        mapped.writable_header(name).map(|h| &h.wait.removed),
        &segment,
    )
}

/// Which rings [`collect_garbage`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every ring on the machine that this user can see.
    All,
    /// The ring of this name only; [`Error::NotFound`] if there is none.
    Name(&'a str),
    /// The rings whose names start with this.
    Prefix(&'a str),
}

impl Scope<'_> {
    /// What `examine` finds in each structure of `format` this scope
    /// covers. An error examining one is returned for [`Scope::Name`], and
    /// for the other scopes skips it (gone meanwhile, or not ours to read).
    pub(crate) fn collect<G>(
        self,
        format: &crate::segment::format::Format,
        mut examine: impl FnMut(&str) -> Result<Option<G>>,
    ) -> Result<Vec<G>> {
        let names = match self {
            Scope::Name(name) => {
                format.key(name)?;
                vec![name.to_owned()]
            }
            Scope::All => format.list()?,
            Scope::Prefix(prefix) => format
                .list()?
                .into_iter()
                .filter(|name| name.starts_with(prefix))
                .collect(),
        };
        let mut collected = Vec::new();
        for name in names {
            match examine(&name) {
                Ok(Some(garbage)) => collected.push(garbage),
                Ok(None) => {}
                Err(err) if matches!(self, Scope::Name(_)) => return Err(err),
                Err(_) => {}
            }
        }
        Ok(collected)
    }
}

/// What [`collect_garbage`] does with the garbage it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Only list it.
    DryRun,
    /// Remove it.
    Remove,
}

/// Why a ring is garbage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Reason {
    /// A process held an end and died without leaving, and no live process
    /// holds the other end.
    Abandoned,
    /// No process holds an end and nothing is left to read: its last
    /// endpoint could not remove it (another user's ring, say).
    Finished,
    /// No header: its creator died (or ran out of memory) before
    /// initialising it. The segment's size in bytes.
    HalfMade(u64),
    /// A header this library cannot read, and why.
    Corrupt(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Abandoned => write!(
                f,
                "abandoned: an end's process died, no live process holds the other"
            ),
            Reason::Finished => write!(f, "finished: no endpoint, nothing left to read"),
            Reason::HalfMade(size) => write!(
                f,
                "half-made: {size} bytes and no header (its creator died before initialising it)"
            ),
            Reason::Corrupt(why) => write!(f, "corrupt: {why}"),
        }
    }
}

/// What became of a piece of garbage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Removal {
    /// Listed only ([`Action::DryRun`]).
    NotAsked,
    /// Removed.
    Removed,
    /// Could not be removed, and why (the ring stays).
    Failed(String),
}

/// A ring that nobody will use, found by [`collect_garbage`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Garbage<S = RingStatus> {
    /// The ring's (or topic's) name.
    pub name: String,
    /// Why it is garbage.
    pub reason: Reason,
    /// Its state, when its header could be read: a [`RingStatus`], or a
    /// [`TopicStatus`](crate::topic::TopicStatus) for a topic.
    pub status: Option<S>,
    /// What was done with it.
    pub removal: Removal,
}

impl<S> Garbage<S> {
    /// What [`Format::examine`](crate::segment::format::Format::examine)
    /// found in a topic or service, as garbage: a readable one is
    /// [abandoned](Reason::Abandoned) if `abandoned` says so of its status
    /// (some member died, none lives), else [finished](Reason::Finished).
    pub(crate) fn of(
        name: &str,
        examination: crate::segment::format::Examination<S>,
        abandoned: impl FnOnce(&S) -> bool,
    ) -> Garbage<S> {
        use crate::segment::format::Examined;
        let (reason, status) = match examination.found {
            Examined::Readable(status) if abandoned(&status) => (Reason::Abandoned, Some(status)),
            Examined::Readable(status) => (Reason::Finished, Some(status)),
            Examined::HalfMade(size) => (Reason::HalfMade(size), None),
            Examined::Corrupt(why) => (Reason::Corrupt(why), None),
        };
        Garbage {
            name: name.to_owned(),
            reason,
            status,
            removal: match examination.removal {
                None => Removal::NotAsked,
                Some(Ok(())) => Removal::Removed,
                Some(Err(err)) => Removal::Failed(err.to_string()),
            },
        }
    }
}

/// Finds the rings in `scope` that nobody will use, and with
/// [`Action::Remove`] removes them. A ring is garbage when no live process
/// holds an end of it or maps it, and it was [abandoned](Reason::Abandoned),
/// [finished](Reason::Finished), [half-made](Reason::HalfMade) or
/// [corrupt](Reason::Corrupt). Each is looked at and removed under its gate
/// lock, exactly (docs/ARCHITECTURE.md, rule 7), so an endpoint opening it at the same
/// time moves to a new ring. Rings that vanish meanwhile are skipped; rings
/// this user cannot read are not listed.
///
/// A ring holding unread messages or an unread end of stream for a
/// consumer to come is not garbage, unless its producer died.
///
/// # Errors
///
/// For [`Scope::Name`], [`Error::NotFound`] if there is no such ring, and
/// any error looking at it; for the other scopes, only an error listing
/// `/dev/shm`.
///
/// ```
/// use shmkit::ring::{collect_garbage, Action, Scope};
///
/// let mine = format!("doc-gc-{}-", std::process::id());
/// assert!(collect_garbage(Scope::Prefix(&mine), Action::DryRun)?.is_empty());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn collect_garbage(scope: Scope<'_>, action: Action) -> Result<Vec<Garbage>> {
    scope.collect(&super::FORMAT, |name| examine(name, action))
}

/// Looks at one ring under its gate; removes it if it is garbage and
/// `action` says so.
fn examine(name: &str, action: Action) -> Result<Option<Garbage>> {
    let key = validate_name(name)?;
    let segment = Segment::open(&key)?;
    let gate = endpoint::gate(&segment);
    // Who maps it is asked before this process maps it: a child that this
    // process forks meanwhile (from another thread) holds a copy of every
    // mapping until it execs, and would make the ring look in use.
    if unused(&segment).is_err() {
        return Ok(None);
    }
    let mapped = Mapped::new(&segment);
    let (reason, status) = match mapped.header(name) {
        Ok(header) => {
            let status = status_of(name, header, &segment);
            match garbage_reason(header, &status) {
                Some(reason) => (reason, Some(status)),
                None => return Ok(None),
            }
        }
        Err(Found::HalfMade(size)) => (Reason::HalfMade(size), None),
        Err(Found::Corrupt(why)) => (Reason::Corrupt(why), None),
    };
    let removal = match (action, gate) {
        (Action::DryRun, _) => Removal::NotAsked,
        (Action::Remove, Err(err)) => Removal::Failed(err.to_string()),
        (Action::Remove, Ok(_gate)) => match remove_exactly(
            mapped.writable_header(name).map(|h| &h.wait.removed),
            &segment,
        ) {
            Ok(()) => Removal::Removed,
            Err(err) => Removal::Failed(err.to_string()),
        },
    };
    Ok(Some(Garbage {
        name: name.to_owned(),
        reason,
        status,
        removal,
    }))
}

/// Why a readable ring is garbage, if it is.
fn garbage_reason(header: &Header, status: &RingStatus) -> Option<Reason> {
    let ends = [status.producer, status.consumer];
    if ends.iter().flatten().any(|end| end.alive) {
        return None;
    }
    if status.abandoned() {
        return Some(Reason::Abandoned);
    }
    // No end held, none died: left by its last endpoint.
    let unseen_close = header.wait.closed.load(Ordering::SeqCst) == super::layout::CLOSED;
    (status.bytes_in_flight == 0 && !unseen_close).then_some(Reason::Finished)
}

/// What an unreadable ring's segment holds.
enum Found {
    HalfMade(u64),
    Corrupt(String),
}

/// A ring's segment mapped read-write if this user may, else read-only, or
/// not at all (too small to hold a header).
enum Mapped {
    ReadWrite(crate::segment::Attachment<crate::segment::ReadWrite>),
    ReadOnly(crate::segment::Attachment<ReadOnly>),
    Small(u64),
}

impl Mapped {
    fn new(segment: &Segment) -> Mapped {
        match segment.size() {
            Ok(size) if size >= HEADER_SIZE => {}
            Ok(size) => return Mapped::Small(size),
            Err(_) => return Mapped::Small(0),
        }
        match segment.attach(crate::segment::ReadWrite) {
            Ok(mapping) => Mapped::ReadWrite(mapping),
            Err(_) => match segment.attach(ReadOnly) {
                Ok(mapping) => Mapped::ReadOnly(mapping),
                Err(_) => Mapped::Small(0),
            },
        }
    }

    fn header(&self, name: &str) -> std::result::Result<&Header, Found> {
        let mut magic = [0u8; 8];
        let (result, read, len) = match self {
            Mapped::Small(0) => return Err(Found::HalfMade(0)),
            // A creator that died leaves 0 bytes, or the full size.
            Mapped::Small(size) => {
                return Err(Found::Corrupt(format!(
                    "truncated to {size} bytes, smaller than the {HEADER_SIZE}-byte header"
                )))
            }
            Mapped::ReadWrite(m) => (read_header(m, name), m.read_at(0, &mut magic), m.len()),
            Mapped::ReadOnly(m) => (read_header(m, name), m.read_at(0, &mut magic), m.len()),
        };
        match (result, read) {
            (Ok(header), _) => Ok(header),
            (Err(_), Ok(())) if magic == [0; 8] => Err(Found::HalfMade(len as u64)),
            (Err(err), _) => Err(Found::Corrupt(err.to_string())),
        }
    }

    /// The header, if it is valid and this user may write it.
    fn writable_header(&self, name: &str) -> Option<&Header> {
        match self {
            Mapped::ReadWrite(_) => self.header(name).ok(),
            _ => None,
        }
    }
}
