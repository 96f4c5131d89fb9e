//! Looking at topics from outside: their members, the list of them, and the
//! removal of topics whose members all died.

use super::layout::{HEADER_SIZE, LANE_CLOSED, LANE_OPEN, LANE_UNUSED, SUBSCRIBER_ACTIVE};
use super::shared::{key_of, read_header, Shared, FORMAT};
use super::Policy;
use crate::error::{Error, Result};
use crate::ring::{Action, Garbage, Scope};
use crate::segment::format::pid_of;
use crate::segment::{ReadWrite, Segment};
use crate::sync::Ordering;

/// One publisher lane of a topic as [`TopicStatus`] shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PublisherStatus {
    /// The lane (publisher place) index.
    pub lane: usize,
    /// The id of the lane's current (or last) publisher.
    pub id: u64,
    /// Its pid.
    pub pid: crate::Pid,
    /// Whether it still holds the lane (the kernel's lock says so).
    pub alive: bool,
    /// Whether it closed its stream.
    pub closed: bool,
    /// Its next sequence number: the messages it committed, or for a
    /// relay its origin's last sequence + 1.
    pub published: u64,
    /// Messages committed to the lane since the topic was created.
    pub lane_messages: u64,
    /// The other host's publisher it relays, if it is a bridge's relay.
    pub origin: Option<super::Origin>,
}

/// One subscriber of a topic as [`TopicStatus`] shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubscriberStatus {
    /// The subscriber place index.
    pub place: u32,
    /// Its pid.
    pub pid: crate::Pid,
    /// Whether it still holds its place.
    pub alive: bool,
    /// Messages received.
    pub received: u64,
    /// Messages missed (drop-oldest topics).
    pub missed: u64,
    /// Bytes committed to the lanes that it has not read yet.
    pub lag_bytes: u64,
}

/// The state of a topic, read without joining it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TopicStatus {
    /// The topic's name (its segment is [`SEGMENT_PREFIX`](super::SEGMENT_PREFIX) + name).
    pub name: String,
    /// Bytes in each lane.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Publisher places.
    pub max_publishers: u32,
    /// Subscriber places.
    pub max_subscribers: u32,
    /// `"block"` or `"drop-oldest"`.
    pub policy: &'static str,
    /// Retained messages per publisher.
    pub history: u32,
    /// Messages published since the topic was created (all lanes).
    pub published: u64,
    /// The lanes that were ever opened.
    pub publishers: Vec<PublisherStatus>,
    /// The subscribers that hold (or held and died in) a place.
    pub subscribers: Vec<SubscriberStatus>,
}

impl TopicStatus {
    /// Whether some member died without leaving and no member is alive.
    ///
    /// A member that died is a publisher whose lane is still open or a
    /// subscriber still in its place, with its lock free; a publisher that
    /// closed its stream left. A topic whose members all left, or that
    /// never had one, is not abandoned: [`collect_garbage`] calls it
    /// [finished](crate::ring::Reason::Finished) if it is left behind.
    pub fn abandoned(&self) -> bool {
        let open = || self.publishers.iter().filter(|p| !p.closed);
        let alive = open().any(|p| p.alive) || self.subscribers.iter().any(|s| s.alive);
        let died = open().any(|p| !p.alive) || self.subscribers.iter().any(|s| !s.alive);
        died && !alive
    }
}

/// Maps topic `name` read-write (the kernel's lock queries need a
/// descriptor; nothing is written) and validates it.
fn map(name: &str) -> Result<Shared> {
    let key = key_of(name)?;
    let segment = Segment::open(&key)?;
    let size = segment.size()?;
    if size < HEADER_SIZE {
        return Err(Error::Truncated {
            segment: FORMAT.place(name),
            size,
            expected: HEADER_SIZE,
        });
    }
    let mapping = segment.attach(ReadWrite)?;
    Shared::from_mapping(name, segment, mapping)
}

/// The state of topic `name`.
///
/// # Errors
///
/// [`Error::NotFound`] if there is no such topic; [`Error::Corrupt`] or
/// [`Error::VersionMismatch`] if its segment is not a topic this library
/// reads.
///
/// ```
/// use shmkit::topic::{status, Publisher, Subscriber};
///
/// let name = format!("doc-topic-status-{}", std::process::id());
/// let _subscriber = Subscriber::open(&name)?;
/// let mut publisher = Publisher::open(&name)?;
/// publisher.send(b"one")?;
/// let topic = status(&name)?;
/// assert_eq!(topic.published, 1);
/// assert_eq!(topic.publishers[0].pid, std::process::id());
/// assert_eq!(topic.subscribers[0].lag_bytes, 40);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn status(name: &str) -> Result<TopicStatus> {
    let shared = map(name)?;
    let status = describe(&shared);
    // Someone may have shrunk the file while we read: then these are zeros.
    shared.intact()?;
    Ok(status)
}

fn describe(shared: &Shared) -> TopicStatus {
    let used = shared.lanes_used();
    let mut publishers = Vec::new();
    let mut published = 0u64;
    for (i, lane) in shared.lanes[..used].iter().enumerate() {
        let header = lane.header();
        let state = header.state.load(Ordering::Acquire);
        if state == LANE_UNUSED {
            continue;
        }
        let lane_messages = header.lane_sequence.load(Ordering::Relaxed);
        published = published.wrapping_add(lane_messages);
        publishers.push(PublisherStatus {
            lane: i,
            id: header.publisher.load(Ordering::Relaxed),
            pid: pid_of(header.owner.load(Ordering::Relaxed)),
            alive: state == LANE_OPEN && shared.publisher_alive(i),
            closed: state == LANE_CLOSED,
            published: header.published.load(Ordering::Relaxed),
            lane_messages,
            origin: header.origin(),
        });
    }
    let mut subscribers = Vec::new();
    for j in 0..shared.geometry.subscribers {
        let entry = shared.subscriber(j);
        if entry.state.load(Ordering::Acquire) & SUBSCRIBER_ACTIVE == 0 {
            continue;
        }
        let lag_bytes = shared.lanes[..used]
            .iter()
            .enumerate()
            .map(|(i, lane)| {
                let tail = lane.header().tail.load(Ordering::Relaxed);
                let position = shared.position(j, i).load(Ordering::Relaxed);
                tail.saturating_sub(position).min(lane.capacity())
            })
            .fold(0u64, u64::saturating_add);
        subscribers.push(SubscriberStatus {
            place: j,
            pid: pid_of(entry.owner.load(Ordering::Relaxed)),
            alive: shared.subscriber_alive(j),
            received: entry.received.load(Ordering::Relaxed),
            missed: entry.missed.load(Ordering::Relaxed),
            lag_bytes,
        });
    }
    TopicStatus {
        name: shared.name.clone(),
        capacity: shared.geometry.capacity,
        max_message: shared.max_message,
        max_publishers: shared.geometry.publishers,
        max_subscribers: shared.geometry.subscribers,
        policy: match shared.policy {
            Policy::Block => "block",
            Policy::DropOldest => "drop-oldest",
        },
        history: shared.history,
        published,
        publishers,
        subscribers,
    }
}

/// The names of all topics on the machine (regular files in `/dev/shm`
/// whose name starts with [`SEGMENT_PREFIX`](super::SEGMENT_PREFIX)), sorted.
pub fn list() -> Result<Vec<String>> {
    FORMAT.list()
}

/// Finds the topics in `scope` (as [`ring::collect_garbage`](crate::ring::collect_garbage)
/// takes it) that nobody will use, and with [`Action::Remove`] removes
/// them. A topic is garbage when no live process is a member or maps it,
/// and it was [abandoned][abandoned] (a member died),
/// [finished][finished] (its last member could not remove it),
/// [half-made][halfmade] or [corrupt][corrupt]. Each is
/// looked at and removed under its gate, exactly, so that a member
/// joining meanwhile moves to a new topic; one whose gate is held (being
/// joined or left) is skipped, as are topics this user cannot map.
///
/// # Errors
///
/// For [`Scope::Name`], [`Error::NotFound`] if there is no such topic, and
/// any error looking at it; for the other scopes, only an error listing
/// `/dev/shm`.
///
/// [abandoned]: crate::ring::Reason::Abandoned
/// [finished]: crate::ring::Reason::Finished
/// [halfmade]: crate::ring::Reason::HalfMade
/// [corrupt]: crate::ring::Reason::Corrupt
///
/// ```
/// use shmkit::ring::{Action, Scope};
/// use shmkit::topic::collect_garbage;
///
/// let mine = format!("doc-topic-gc-{}-", std::process::id());
/// assert!(collect_garbage(Scope::Prefix(&mine), Action::DryRun)?.is_empty());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn collect_garbage(scope: Scope<'_>, action: Action) -> Result<Vec<Garbage<TopicStatus>>> {
    scope.collect(&FORMAT, |name| examine(name, action))
}

/// Looks at one topic under its gate; removes it if it is garbage and
/// `action` says so.
fn examine(name: &str, action: Action) -> Result<Option<Garbage<TopicStatus>>> {
    let examined = FORMAT.examine(
        name,
        action == Action::Remove,
        |mapping| read_header(mapping, name).map(drop),
        |segment, mapping| Shared::from_mapping(name, segment, mapping),
        describe,
    )?;
    Ok(examined.map(|examination| Garbage::of(name, examination, TopicStatus::abandoned)))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{PublisherStatus, SubscriberStatus, TopicStatus};

    fn topic(publishers: Vec<PublisherStatus>, subscribers: Vec<SubscriberStatus>) -> TopicStatus {
        TopicStatus {
            name: "t".to_owned(),
            capacity: 4096,
            max_message: 1024,
            max_publishers: 2,
            max_subscribers: 2,
            policy: "block",
            history: 0,
            published: 0,
            publishers,
            subscribers,
        }
    }

    fn publisher(alive: bool, closed: bool) -> PublisherStatus {
        PublisherStatus {
            lane: 0,
            id: 1,
            pid: 7,
            alive,
            closed,
            published: 0,
            lane_messages: 0,
            origin: None,
        }
    }

    fn subscriber(alive: bool) -> SubscriberStatus {
        SubscriberStatus {
            place: 0,
            pid: 8,
            alive,
            received: 0,
            missed: 0,
            lag_bytes: 0,
        }
    }

    #[test]
    fn a_topic_is_abandoned_only_if_a_member_died_and_none_lives() {
        // Nobody died: no members, or only publishers that closed (left).
        assert!(!topic(vec![], vec![]).abandoned());
        assert!(!topic(vec![publisher(false, true)], vec![]).abandoned());
        // A dead member and no live one, whichever it is.
        assert!(topic(vec![publisher(false, false)], vec![]).abandoned());
        assert!(topic(vec![], vec![subscriber(false)]).abandoned());
        assert!(topic(vec![publisher(false, true)], vec![subscriber(false)]).abandoned());
        // A live member keeps it, whoever died.
        assert!(!topic(vec![publisher(false, false)], vec![subscriber(true)]).abandoned());
        assert!(!topic(vec![publisher(true, false)], vec![subscriber(false)]).abandoned());
    }
}
