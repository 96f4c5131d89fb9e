//! One look at every object `top` shows, and the rates between two looks.
//!
//! A look costs the watched rings nothing they would notice: each ring's
//! header is read through a read-only mapping with relaxed atomic loads,
//! no lock is taken and nothing in the segment is written. (The mapping
//! lives only for the look, so a ring's memory is freed as soon as its own
//! processes are done with it.)

use std::time::{Instant, SystemTime};

use serde::Serialize;
use shmkit::ring::{EndpointStatus, SEGMENT_PREFIX};
use shmkit::{Kind, Stat};

use crate::error::CliError;
use crate::output::ring_state;

/// What an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A message ring (its POSIX segment is not listed separately).
    Ring,
    /// A topic: publishers to subscribers (its segment likewise).
    Topic,
    /// A service: clients calling a server (its segment likewise).
    Service,
    /// A System V segment.
    Sysv,
    /// A POSIX segment that holds no ring.
    Posix,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Ring => "ring",
            ObjectKind::Topic => "topic",
            ObjectKind::Service => "service",
            ObjectKind::Sysv => "sysv",
            ObjectKind::Posix => "posix",
        }
    }
}

/// A process that takes part in an object: a ring's producer or consumer,
/// a topic's publishers and subscribers, a service's server and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// `producer`, `consumer`, `publisher`, `subscriber`, `server`, `client`.
    pub role: &'static str,
    pub pid: u32,
    pub alive: bool,
    /// A subscriber's bytes published and not yet read by it.
    pub lag_bytes: Option<u64>,
}

/// The counters in an object's header: totals since it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Messages sent.
    pub messages: u64,
    /// Bytes committed (records' headers and padding included), where the
    /// header counts them (a ring's does, a topic's not).
    pub bytes: Option<u64>,
}

/// One object as one look saw it.
#[derive(Clone, Debug, Serialize)]
pub struct Object {
    pub kind: ObjectKind,
    /// The ring's name, or the segment's key as `ls` shows it.
    pub name: String,
    /// The segment's size in bytes.
    pub size: u64,
    /// Bytes resident (System V) or allocated in /dev/shm (POSIX).
    pub resident_bytes: u64,
    /// Attachments: the kernel's count (System V), or the mappings found
    /// in the processes this user may inspect (POSIX).
    pub attachers: u64,
    /// The header's counters, for objects that carry messages.
    #[serde(skip)]
    pub counters: Option<Counters>,
    /// Bytes waiting to be read, and the room for them.
    pub bytes_in_flight: Option<u64>,
    pub capacity: Option<u64>,
    /// A service's calls sent and not yet answered.
    pub calls_in_flight: Option<u64>,
    pub members: Vec<Member>,
    /// `open`, `closed`, `abandoned` for a ring or service (a topic is
    /// never `closed`); `dest` for a removed
    /// segment still attached; empty otherwise.
    pub state: String,
    /// Why this object could not be read, if it could not.
    pub unreadable: Option<String>,
}

impl Object {
    /// The fill level, 0 to 1.
    pub fn fill(&self) -> Option<f64> {
        match (self.bytes_in_flight, self.capacity) {
            (Some(used), Some(capacity)) if capacity > 0 => Some(used as f64 / capacity as f64),
            _ => None,
        }
    }

    /// Whether a member died without leaving.
    pub fn has_dead_member(&self) -> bool {
        self.members.iter().any(|m| !m.alive)
    }
}

/// Everything one look saw.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken: Instant,
    pub at: SystemTime,
    pub objects: Vec<Object>,
}

/// Looks at every segment and ring.
pub fn look() -> Result<Snapshot, CliError> {
    let stats = shmkit::list()?;
    let objects = stats.iter().filter_map(object).collect();
    Ok(Snapshot {
        taken: Instant::now(),
        at: SystemTime::now(),
        objects,
    })
}

/// The object a segment is: a ring if its name says so, else the segment;
/// `None` for a ring that vanished meanwhile.
fn object(stat: &Stat) -> Option<Object> {
    let key = stat.key.to_string();
    let mut object = Object {
        kind: match stat.kind {
            Kind::SysV => ObjectKind::Sysv,
            Kind::Posix => ObjectKind::Posix,
        },
        name: key.clone(),
        size: stat.size,
        resident_bytes: stat.resident_bytes,
        attachers: stat.nattch,
        counters: None,
        bytes_in_flight: None,
        capacity: None,
        calls_in_flight: None,
        members: Vec::new(),
        state: if stat.removed { "dest" } else { "" }.to_owned(),
        unreadable: None,
    };
    if stat.kind != Kind::Posix {
        return Some(object);
    }
    if let Some(name) = key.strip_prefix(shmkit::topic::SEGMENT_PREFIX) {
        return topic(object, name);
    }
    if let Some(name) = key.strip_prefix(shmkit::service::SEGMENT_PREFIX) {
        return service(object, name);
    }
    let Some(name) = key.strip_prefix(SEGMENT_PREFIX) else {
        return Some(object);
    };
    object.kind = ObjectKind::Ring;
    object.name = name.to_owned();
    match shmkit::ring::status(name) {
        Ok(ring) => {
            object.counters = Some(Counters {
                messages: ring.sent,
                bytes: Some(ring.bytes_sent),
            });
            object.bytes_in_flight = Some(ring.bytes_in_flight);
            object.capacity = Some(ring.capacity);
            let member = |role, end: Option<EndpointStatus>| {
                end.map(|e| Member {
                    role,
                    pid: e.pid,
                    alive: e.alive,
                    lag_bytes: None,
                })
            };
            object.members = [
                member("producer", ring.producer),
                member("consumer", ring.consumer),
            ]
            .into_iter()
            .flatten()
            .collect();
            object.state = ring_state(&ring).to_owned();
        }
        Err(err) => return unreadable(object, err),
    }
    Some(object)
}

/// A topic's segment as the topic: its members, its published count, and
/// its worst subscriber's lag as the fill level. (The library's look at a
/// topic maps it read-write, for the lock queries that tell live members;
/// it writes nothing.)
fn topic(mut object: Object, name: &str) -> Option<Object> {
    object.kind = ObjectKind::Topic;
    object.name = name.to_owned();
    let topic = match shmkit::topic::status(name) {
        Ok(topic) => topic,
        Err(err) => return unreadable(object, err),
    };
    object.counters = Some(Counters {
        messages: topic.published,
        bytes: None,
    });
    let lanes = topic.publishers.len().max(1) as u64;
    object.capacity = Some(topic.capacity.saturating_mul(lanes));
    object.bytes_in_flight = topic
        .subscribers
        .iter()
        .map(|s| s.lag_bytes)
        .max()
        .or(Some(0));
    let publishers = topic
        .publishers
        .iter()
        .filter(|p| !p.closed)
        .map(|p| Member {
            role: "publisher",
            pid: p.pid,
            alive: p.alive,
            lag_bytes: None,
        });
    let subscribers = topic.subscribers.iter().map(|s| Member {
        role: "subscriber",
        pid: s.pid,
        alive: s.alive,
        lag_bytes: Some(s.lag_bytes),
    });
    object.members = publishers.chain(subscribers).collect();
    object.state = if topic.abandoned() {
        "abandoned"
    } else {
        "open"
    }
    .to_owned();
    Some(object)
}

/// A service's segment as the service: its server and clients, the
/// requests its servers received, and the calls in flight. (Mapped
/// read-write for the lock queries, as a topic is; nothing is written.)
fn service(mut object: Object, name: &str) -> Option<Object> {
    object.kind = ObjectKind::Service;
    object.name = name.to_owned();
    let service = match shmkit::service::status(name) {
        Ok(service) => service,
        Err(err) => return unreadable(object, err),
    };
    object.counters = Some(Counters {
        messages: service.received,
        bytes: None,
    });
    object.calls_in_flight = Some(service.in_flight());
    let server = service.server.map(|server| Member {
        role: "server",
        pid: server.pid,
        alive: server.alive,
        lag_bytes: None,
    });
    let clients = service.clients.iter().map(|client| Member {
        role: "client",
        pid: client.pid,
        alive: client.alive,
        lag_bytes: None,
    });
    object.members = server.into_iter().chain(clients).collect();
    object.state = if service.abandoned() {
        "abandoned"
    } else if service.closed {
        "closed"
    } else {
        "open"
    }
    .to_owned();
    Some(object)
}

/// An object whose header could not be read, and why; `None` if it
/// vanished meanwhile.
fn unreadable(mut object: Object, err: shmkit::Error) -> Option<Object> {
    object.unreadable = Some(match err {
        shmkit::Error::NotFound { .. } => return None,
        shmkit::Error::PermissionDenied { .. } => "permission denied".to_owned(),
        err => err.to_string(),
    });
    Some(object)
}

/// An object's rates between two looks: per second, `None` where the
/// object has no counters, was not in the earlier look, or was made anew
/// (its counters went back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub messages_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
}

/// The rates of `object` since `earlier`.
pub fn rates(earlier: Option<&Snapshot>, now: &Snapshot, object: &Object) -> Rates {
    let Some(earlier) = earlier else {
        return Rates::default();
    };
    let seconds = now.taken.duration_since(earlier.taken).as_secs_f64();
    let before = earlier
        .objects
        .iter()
        .find(|o| o.kind == object.kind && o.name == object.name)
        .and_then(|o| o.counters);
    match (before, object.counters) {
        (Some(before), Some(after))
            if seconds > 0.0
                && after.messages >= before.messages
                && after.bytes >= before.bytes =>
        {
            let per_second = |earlier: u64, later: u64| (later - earlier) as f64 / seconds;
            Rates {
                messages_per_sec: Some(per_second(before.messages, after.messages)),
                bytes_per_sec: before.bytes.zip(after.bytes).map(|(b, a)| per_second(b, a)),
            }
        }
        _ => Rates::default(),
    }
}

/// What this user cannot see of these objects, a sentence each; none for
/// root.
pub fn limits_of_view<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Vec<String> {
    let mut notes = Vec::new();
    let unreadable: Vec<&str> = objects
        .into_iter()
        .filter(|o| o.unreadable.is_some())
        .map(|o| o.name.as_str())
        .collect();
    if !unreadable.is_empty() {
        notes.push(format!(
            "{} object(s) could not be read by this user: {} (run as their owner or root to see them)",
            unreadable.len(),
            unreadable.join(", ")
        ));
    }
    if !rustix::process::geteuid().is_root() {
        notes.push(
            "POSIX attachers are counted only in this user's processes: other users' \
             /proc/PID/maps cannot be read"
                .to_owned(),
        );
    }
    notes
}
