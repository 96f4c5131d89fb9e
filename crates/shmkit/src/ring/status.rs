//! Looking at rings from outside: their state, the list of them, and the
//! removal of rings whose processes all died.

use super::{endpoint, read_header, validate_name, SEGMENT_PREFIX};
use crate::error::{Error, Result};
use crate::segment::{ReadOnly, Segment};
use crate::sync::Ordering;

/// One end of a ring as [`RingStatus`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStatus {
    /// The holder's pid.
    pub pid: crate::Pid,
    /// Whether that process is still running.
    pub alive: bool,
}

/// The state of a ring, read without joining it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RingStatus {
    /// The ring's name (its segment is [`SEGMENT_PREFIX`] + name).
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
/// # shmkit::Segment::open(&shmkit::Key::posix(&format!("/shmkit.ring.{name}"))?)?.remove()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn status(name: &str) -> Result<RingStatus> {
    let key = validate_name(name)?;
    let mapping = Segment::open(&key)?.attach(ReadOnly)?;
    let header = read_header(&mapping, name)?;
    let end = |owner: u64| {
        (owner != 0).then(|| EndpointStatus {
            pid: endpoint::pid_of(owner),
            alive: endpoint::is_alive(owner),
        })
    };
    let capacity = header.config.capacity.load(Ordering::Relaxed);
    let head = header.consumer.head.load(Ordering::Relaxed);
    let tail = header.producer.tail.load(Ordering::Relaxed);
    // A peer may have shrunk the file while we read: then these are zeros.
    mapping.check_intact()?;
    Ok(RingStatus {
        name: name.to_owned(),
        capacity,
        max_message: header.config.max_message.load(Ordering::Relaxed),
        bytes_in_flight: tail.wrapping_sub(head).min(capacity),
        sent: header.producer.sent.load(Ordering::Relaxed),
        received: header.consumer.received.load(Ordering::Relaxed),
        bytes_sent: tail,
        bytes_received: head,
        closed: header.wait.closed.load(Ordering::Relaxed) != 0,
        producer: end(header.producer.owner.load(Ordering::Relaxed)),
        consumer: end(header.consumer.owner.load(Ordering::Relaxed)),
    })
}

/// The names of all rings on the machine (regular files in `/dev/shm` whose
/// name starts with [`SEGMENT_PREFIX`]), sorted.
pub fn list() -> Result<Vec<String>> {
    let prefix = &SEGMENT_PREFIX[1..];
    let dir = std::fs::read_dir(crate::sys::posix::SHM_DIR).map_err(|source| Error::Os {
        context: "listing /dev/shm".to_owned(),
        source,
    })?;
    let mut names: Vec<String> = dir
        .flatten()
        // A symlink, FIFO or directory at a ring's name is no ring (the
        // type comes from readdir: nothing is followed or opened).
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_prefix(prefix)
                .map(str::to_owned)
        })
        .filter(|name| validate_name(name).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Finds rings whose ends were all held by processes that died (see
/// [`RingStatus::abandoned`]) and that no process has mapped, and removes
/// them if `remove` is true. Returns them either way.
///
/// Never touches a segment that is not a valid ring (wrong name prefix,
/// magic or version), one a live process holds an end of, or one mapped by
/// any process.
pub fn collect_garbage(remove: bool) -> Result<Vec<RingStatus>> {
    let mut collected = Vec::new();
    for name in list()? {
        let Ok(ring) = status(&name) else { continue };
        if !ring.abandoned() {
            continue;
        }
        let Ok(key) = validate_name(&name) else {
            continue;
        };
        let Ok(segment) = Segment::open(&key) else {
            continue;
        };
        match segment.stat() {
            Ok(stat) if stat.attachers.is_empty() => {}
            _ => continue,
        }
        if remove {
            segment.remove()?;
        }
        collected.push(ring);
    }
    Ok(collected)
}
