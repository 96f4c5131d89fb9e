//! Topics: publish–subscribe from many publishers to many subscribers
//! between processes, in one POSIX shared-memory segment.
//!
//! A topic is found by name: [`Publisher::open`] and [`Subscriber::open`]
//! create it if it does not exist yet, so members may start in any order.
//! Every subscriber receives every message of every publisher, each
//! publisher's messages in the order it sent them; each message carries
//! its publisher's id and that publisher's sequence number
//! ([`Received`]).
//!
//! Each publisher writes into a lane of its own (a single-writer region),
//! so a publisher killed in the middle of a message never blocks or
//! corrupts another: a record is committed by its first word, so its
//! partial record lies behind an empty word, where no subscriber reads,
//! and the next publisher to take the lane continues after every record it
//! committed, writing over the partial one. Subscribers merge the lanes.
//! The back-pressure policy is fixed when the topic is created ([`Policy`]): **Block** makes a
//! publisher wait for the slowest live subscriber; **DropOldest** never
//! makes it wait, and a subscriber that fell a lane behind gets
//! [`Error::Lagged`] with exactly how many messages it missed, then
//! continues from the oldest still there. A subscriber may first receive
//! the last [`history`](Options::history) messages of each publisher.
//!
//! Liveness comes from the kernel: every member holds an open file
//! description lock on a byte of its place (`sys::range_lock`), which the
//! kernel drops when it dies. A dead subscriber stops holding a Block
//! topic back within one peer check (20 ms) of the publisher's wait; a
//! dead publisher's lane is taken over by the next publisher. The last
//! member to leave removes the topic; [`collect_garbage`] removes topics
//! whose members all died.
//!
//! Waiting is the ring's ([`Waiting`]): spin, then sleep on a futex. All
//! subscribers sleep on one futex word, so a publish wakes every sleeper
//! with one `FUTEX_WAKE`, and makes no system call when none sleeps.
//!
//! The byte layout is in `docs/FORMAT.md`; the protocol's rules are listed
//! in the source of `topic/lane.rs`.
//!
//! # Example: two publishers, one subscriber
//!
//! ```
//! use shmkit::topic::{Publisher, Subscriber};
//!
//! let name = format!("doc-topic-{}", std::process::id());
//! let mut subscriber = Subscriber::open(&name)?;
//! let mut camera = Publisher::open(&name)?; // usually other processes
//! let mut lidar = Publisher::open(&name)?;
//!
//! camera.send(b"frame 0")?;
//! let mut grant = lidar.grant(7)?; // zero-copy: write in place
//! grant.copy_from_slice(b"sweep 0");
//! grant.commit();
//!
//! let mut buf = [0u8; 64];
//! let first = subscriber.recv(&mut buf)?;
//! assert_eq!((&buf[..first.len], first.sequence), (&b"frame 0"[..], 0));
//! let second = subscriber.read()?; // zero-copy: read in place
//! assert_eq!(&*second, b"sweep 0");
//! assert_ne!(second.publisher(), first.publisher);
//! # Ok::<(), shmkit::Error>(())
//! ```

mod lane;
mod layout;
mod merge;
#[cfg(all(test, loom))]
mod model;
#[cfg(feature = "tokio")]
mod parking;
mod shared;
mod status;

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

pub use crate::ring::Waiting;
pub use status::{collect_garbage, list, status, PublisherStatus, SubscriberStatus, TopicStatus};

use crate::error::{Error, Result};
use crate::ring::wait::{wake_if_sleeping, Waiter};
use crate::segment::format::owner_word;
use crate::segment::{Mode, Trust};
use crate::sync::Ordering;
use crate::sys::range_lock::RangeLock;
use lane::{LaneCursor, LaneRef, Meta, PublisherCursor, Slot};
use layout::{LANE_CLOSED, LANE_OPEN, LANE_RELAY, SUBSCRIBER_ACTIVE, SUBSCRIBER_LOCKS};
use merge::Merge;
use shared::Shared;

/// The POSIX name of a topic's segment is this prefix and the topic's name.
pub const SEGMENT_PREFIX: &str = "/shmkit.topic.";

/// What a publisher does when a subscriber has not read the space it
/// needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Wait for the slowest live subscriber: nobody misses a message.
    #[default]
    Block,
    /// Never wait: overwrite the oldest messages; a subscriber that falls
    /// a lane behind gets [`Error::Lagged`].
    DropOldest,
}

/// How a topic is created, and how a member joins and waits.
///
/// The [capacity](Options::capacity), [maximum
/// message](Options::max_message), [maximum
/// publishers](Options::max_publishers) and
/// [subscribers](Options::max_subscribers), [policy](Options::policy),
/// [history](Options::history) and [mode](Options::mode) are the topic's
/// own, recorded in its header: they shape a topic this call creates, and
/// when the topic exists already, each one that was given must equal the
/// topic's, or the open fails with [`Error::OptionMismatch`] naming the
/// option, the value asked for and the topic's. One not given takes the
/// topic's own, whatever it is (not the default). This is the rule of
/// [`ring::Options`](crate::ring::Options) and
/// [`service::Options`](crate::service::Options).
///
/// The [maximum message](Options::max_message) must fit the lanes the
/// topic has: the capacity given; else, for a topic this call creates,
/// the default of 256 KiB; else the existing topic's own. One too large
/// for them is [`Error::TooLarge`], as creating a topic of that capacity
/// says (checked before the equality above: `TooLarge` for a value no
/// topic of that capacity could have, `OptionMismatch` for one that
/// another could have). So `max_message` alone joins an existing topic
/// of any capacity whose maximum message it is, and creating with
/// `max_message` alone fails when the default lanes cannot carry it.
/// What is wrong whatever the topic (a capacity that is not a power of
/// two in range, a maximum message over what the capacity given or the
/// largest lane carries, table sizes or a history out of range) fails
/// before the topic is looked for.
///
/// The [group](Options::group) applies only to a topic this call creates
/// (an existing topic keeps its own, unchecked).
/// [`receive_history`](Options::receive_history),
/// [waiting](Options::waiting), [trust](Options::trust) and
/// [relay](Options::relay) are this member's own, and may differ between
/// members. An existing topic is used only if its owner is trusted
/// ([`Options::trust`]; by default only this process's own uid).
///
/// ```
/// use shmkit::topic::{Options, Policy};
///
/// let options = Options::default()
///     .capacity(1 << 16)
///     .policy(Policy::DropOldest)
///     .history(10)
///     .max_subscribers(128);
/// assert_eq!(options.max_message_len(), (1 << 15) - 32);
/// ```
///
/// Opening an existing topic with options of its own, or none:
///
/// ```
/// use shmkit::topic::{Options, Publisher, Subscriber};
/// use shmkit::Error;
///
/// let name = format!("doc-topic-options-{}", std::process::id());
/// let made = Options::default().capacity(1 << 16).history(4);
/// let publisher = Publisher::open_with(&name, &made)?;
///
/// // Only the history given, and it is the topic's; the lanes are too.
/// let same = Subscriber::open_with(&name, &Options::default().history(4))?;
/// assert_eq!(same.max_message(), (1 << 15) - 32);
///
/// match Subscriber::open_with(&name, &Options::default().capacity(1 << 18)) {
///     Err(Error::OptionMismatch { option, asked, found, .. }) => {
///         assert_eq!((option, &*asked, &*found), ("capacity", "262144", "65536"));
///     }
///     other => panic!("expected a mismatch, got {other:?}"),
/// }
/// # drop((publisher, same));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    capacity: Option<u64>,
    max_message: Option<u64>,
    max_publishers: Option<u32>,
    max_subscribers: Option<u32>,
    policy: Option<Policy>,
    history: Option<u32>,
    receive_history: bool,
    mode: Option<Mode>,
    group: Option<u32>,
    trust: Trust,
    waiting: Waiting,
    relay: Option<Origin>,
}

/// Bytes in each lane of a topic made without [`Options::capacity`].
const DEFAULT_CAPACITY: u64 = 1 << 18;

/// Publisher places of a topic made without [`Options::max_publishers`].
const DEFAULT_MAX_PUBLISHERS: u32 = 8;

/// Subscriber places of a topic made without [`Options::max_subscribers`].
const DEFAULT_MAX_SUBSCRIBERS: u32 = 64;

impl Default for Options {
    /// Nothing given: a topic this creates has lanes of 256 KiB, the
    /// largest messages they allow, 8 publishers, 64 subscribers, Block,
    /// no history and mode 0600; an existing topic is taken as it is. The
    /// member receives the history and waits adaptively.
    fn default() -> Options {
        Options {
            capacity: None,
            max_message: None,
            max_publishers: None,
            max_subscribers: None,
            policy: None,
            history: None,
            receive_history: true,
            mode: None,
            group: None,
            trust: Trust::me(),
            waiting: Waiting::Adaptive,
            relay: None,
        }
    }
}

impl Options {
    /// Bytes in each publisher's lane: a power of two from 4 KiB to 64 GiB
    /// (256 KiB if not given).
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.capacity = Some(bytes);
        self
    }

    /// The largest message, at most about half a lane (the default): of
    /// the capacity given, else the default for a topic this call creates,
    /// else the existing topic's ([`Error::TooLarge`] if over).
    pub fn max_message(mut self, bytes: u64) -> Options {
        self.max_message = Some(bytes);
        self
    }

    /// How many publishers may hold the topic at once (1 to 256; 8 if not
    /// given).
    pub fn max_publishers(mut self, count: u32) -> Options {
        self.max_publishers = Some(count);
        self
    }

    /// How many subscribers may hold the topic at once (1 to 4096; 64 if
    /// not given).
    pub fn max_subscribers(mut self, count: u32) -> Options {
        self.max_subscribers = Some(count);
        self
    }

    /// The back-pressure policy ([`Policy::Block`] if not given).
    pub fn policy(mut self, policy: Policy) -> Options {
        self.policy = Some(policy);
        self
    }

    /// How many of each publisher's latest messages a joining subscriber
    /// may first receive (while they are still in the lane; 0 if not
    /// given).
    pub fn history(mut self, messages: u32) -> Options {
        self.history = Some(messages);
        self
    }

    /// For a subscriber: whether to start with the retained history (the
    /// default) or only with messages published after it joined.
    pub fn receive_history(mut self, yes: bool) -> Options {
        self.receive_history = yes;
        self
    }

    /// Permission bits of the topic's segment (0600 if not given).
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = Some(mode);
        self
    }

    /// The group of the topic's segment (this process must be a member).
    pub fn group(mut self, gid: u32) -> Options {
        self.group = Some(gid);
        self
    }

    /// Whose existing topics this member joins (as
    /// [`ring::Options::trust`](crate::ring::Options::trust)); another
    /// owner's topic is [`Error::UntrustedOwner`].
    pub fn trust(mut self, trust: Trust) -> Options {
        self.trust = trust;
        self
    }

    /// How the member waits.
    pub fn waiting(mut self, waiting: Waiting) -> Options {
        self.waiting = waiting;
        self
    }

    /// For a publisher: it relays the publisher `origin` of another host
    /// (what a bridge does). Its lane is marked as a relay of `origin`
    /// ([`PublisherStatus::origin`]) and its messages may carry the
    /// origin's own sequence numbers ([`Publisher::set_sequence`]).
    ///
    /// A relay that dies does not end its origin's stream for subscribers
    /// (no [`Error::PeerGone`]): they wait for the bridge to come back. The
    /// next relay of the same origin takes over the dead one's lane and
    /// carries on (other publishers take that lane only when no other
    /// place is free).
    pub fn relay(mut self, origin: Origin) -> Options {
        self.relay = Some(origin);
        self
    }

    /// The largest message a topic made with these options carries.
    pub fn max_message_len(&self) -> u64 {
        self.max_message
            .unwrap_or_else(|| layout::max_message_for(self.capacity_len()))
    }

    fn capacity_len(&self) -> u64 {
        self.capacity.unwrap_or(DEFAULT_CAPACITY)
    }

    fn publishers_len(&self) -> u32 {
        self.max_publishers.unwrap_or(DEFAULT_MAX_PUBLISHERS)
    }

    fn subscribers_len(&self) -> u32 {
        self.max_subscribers.unwrap_or(DEFAULT_MAX_SUBSCRIBERS)
    }
}

/// What a receive says about the message it delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the message.
    pub len: usize,
    /// The id of its publisher: unique among the publishers that ever
    /// opened this topic (they count from 1).
    pub publisher: u64,
    /// Its place in its publisher's stream: 0 for the first message.
    pub sequence: u64,
}

/// Where a relaying publisher's messages come from: a publisher of a topic
/// of the same name on another host, which a bridge carries here.
///
/// ```
/// use shmkit::topic::{status, Options, Origin, Publisher, Subscriber};
///
/// let name = format!("doc-topic-relay-{}", std::process::id());
/// let origin = Origin { host: 0x5eed, publisher: 3 };
/// let mut subscriber = Subscriber::open(&name)?;
/// let mut relay = Publisher::open_with(&name, &Options::default().relay(origin))?;
/// relay.set_sequence(41)?; // the remote publisher's 42nd message is next
/// relay.send(b"from afar")?;
/// let mut buf = [0u8; 16];
/// let got = subscriber.recv(&mut buf)?;
/// assert_eq!((got.publisher, got.sequence), (relay.id(), 41));
/// assert_eq!(status(&name)?.publishers[0].origin, Some(origin));
///
/// // An ordinary publisher's sequence numbers count its own messages.
/// let mut local = Publisher::open(&name)?;
/// assert!(local.set_sequence(7).is_err());
/// assert_eq!(status(&name)?.publishers[1].origin, None);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Origin {
    /// The host: an id its bridge derives from the host, never 0.
    pub host: u64,
    /// The publisher's id in that host's topic.
    pub publisher: u64,
}

/// The sending end of a topic.
///
/// Dropping it closes its part of the stream: subscribers receive every
/// message it sent.
#[derive(Debug)]
pub struct Publisher {
    cursor: PublisherCursor,
    lane: LaneRef,
    index: usize,
    waiter: Waiter,
    lock: Option<RangeLock>,
    origin: Option<Origin>,
    shared: Shared,
}

impl Publisher {
    /// Opens (or creates) topic `name` as a new publisher, with default
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::TopicFull`] if every publisher place is held by a live
    /// process; [`Error::Corrupt`] or [`Error::VersionMismatch`] if the
    /// segment is not a topic this library reads; [`Error::UntrustedOwner`];
    /// [`Error::InvalidArgument`] for a bad name or option.
    pub fn open(name: &str) -> Result<Publisher> {
        Publisher::open_with(name, &Options::default())
    }

    /// Opens (or creates) topic `name` as a new publisher; `options` shape
    /// the topic if this call creates it, must match an existing one's
    /// where given (see [`Options`]), and say how the publisher waits.
    ///
    /// # Errors
    ///
    /// As [`Publisher::open`], and [`Error::OptionMismatch`] if the topic
    /// exists with another value of an option given; [`Error::TooLarge`]
    /// for a maximum message that the topic's lanes (the capacity given,
    /// the default when creating, or the existing topic's) cannot carry
    /// (see [`Options`]).
    pub fn open_with(name: &str, options: &Options) -> Result<Publisher> {
        let origin = options.relay;
        if let Some(Origin { host: 0, .. }) = origin {
            return Err(Error::InvalidArgument(
                "a relaying publisher's origin host is never 0".to_owned(),
            ));
        }
        let owner = owner_word()?;
        let (shared, gate) = Shared::open(name, options)?;
        let (index, lock) = shared.take_publisher_place(origin)?;
        let index = index as usize;
        let lane = shared.lanes[index];
        let header = lane.header();
        let wait = &shared.header().wait;
        let id = wait
            .last_publisher_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        // A dead predecessor's partial record lies at the true tail, behind
        // an empty word (rules 3, 4 of `lane`): continuing there writes
        // over it, after every record it committed.
        // A walk that ran onto a page a peer cut away is `Truncated`, and
        // leaves the lane as it was (not open without a holder).
        let cursor = lane
            .take_over(id, shared.history as usize)
            .map_err(|err| shared.explain(err))?;
        shared.intact()?;
        header.publisher.store(id, Ordering::Relaxed);
        header.owner.store(owner, Ordering::Relaxed);
        header.published.store(0, Ordering::Relaxed);
        let (host, publisher) = origin.map_or((0, 0), |o| (o.host, o.publisher));
        header.origin_host.store(host, Ordering::Relaxed);
        header.origin_publisher.store(publisher, Ordering::Relaxed);
        let flags = if origin.is_some() { LANE_RELAY } else { 0 };
        header.flags.store(flags, Ordering::Relaxed);
        // Release: the fields above are visible to whoever sees it open.
        header.state.store(LANE_OPEN, Ordering::Release);
        wait.lanes_used
            .fetch_max(index as u32 + 1, Ordering::AcqRel);
        shared.intact()?;
        drop(gate);
        Ok(Publisher {
            cursor,
            lane,
            index,
            waiter: Waiter::new(options.waiting),
            lock: Some(lock),
            origin,
            shared,
        })
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This publisher's id, as subscribers see it in [`Received::publisher`].
    pub fn id(&self) -> u64 {
        self.cursor.id
    }

    /// The remote publisher this one relays ([`Options::relay`]), if any.
    pub fn origin(&self) -> Option<Origin> {
        self.origin
    }

    /// Makes the next message carry `sequence` (and the following ones
    /// count on from it), so that a relay's messages carry its origin's
    /// sequence numbers, gaps included.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if this publisher is not a relay: an
    /// ordinary publisher's sequence numbers count its messages.
    pub fn set_sequence(&mut self, sequence: u64) -> Result<()> {
        if self.origin.is_none() {
            return Err(Error::InvalidArgument(format!(
                "topic {}: only a relaying publisher sets its sequence numbers",
                self.shared.name
            )));
        }
        self.cursor.sequence = sequence;
        Ok(())
    }

    /// The largest message this topic carries.
    pub fn max_message(&self) -> usize {
        self.shared.max_message as usize
    }

    /// The topic's back-pressure policy.
    pub fn policy(&self) -> Policy {
        self.shared.policy
    }

    /// Publishes one message, waiting (Block) while a subscriber has not
    /// read the space it needs.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if longer than [`max_message`](Publisher::max_message);
    /// [`Error::Corrupt`] if the lane's bytes were damaged.
    #[inline]
    pub fn send(&mut self, message: &[u8]) -> Result<()> {
        // One check, before the commit (`fill_and_commit`): the commit then
        // writes only below the payload (the record's words, the lane
        // header), which a truncation that spared the payload spared too;
        // an empty message's words on a cut page are the next verb's error.
        self.send_until(message, None)
    }

    /// Publishes one message if there is room now, else [`Error::Full`].
    pub fn try_send(&mut self, message: &[u8]) -> Result<()> {
        self.try_grant(message.len())?.fill_and_commit(message)
    }

    /// [`send`](Publisher::send), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    pub fn send_timeout(&mut self, message: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(message, Some(Instant::now() + timeout))
    }

    /// Reserves `len` bytes to write a message in place; nothing is visible
    /// until [`WriteGrant::commit`].
    #[inline]
    pub fn grant(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.grant_until(len, None)
    }

    /// [`grant`](Publisher::grant) if there is room now, else [`Error::Full`].
    pub fn try_grant(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        // A fault of an earlier access (a grant's own writes, say) is
        // reported before the caller writes again.
        self.shared.intact()?;
        match self.reserve(len as u64)? {
            Some(slot) => Ok(WriteGrant {
                publisher: self,
                slot,
            }),
            None => Err(Error::Full {
                place: self.shared.place.clone(),
                // The record and the empty word after it (rule 3).
                needed: layout::record_size(len as u64) + lane::EMPTY_WORD,
                free: self.cursor.limit.saturating_sub(self.cursor.tail),
            }),
        }
    }

    /// [`grant`](Publisher::grant), waiting at most `timeout`.
    pub fn grant_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.grant_until(len, Some(Instant::now() + timeout))
    }

    /// Room for `len` bytes: from the publisher's own cursor when it has
    /// it (inline, no shared word read), else out of line.
    #[inline(always)]
    fn reserve(&mut self, len: u64) -> Result<Option<Slot>> {
        match self.lane.fits(&self.cursor, len) {
            Some(slot) => Ok(Some(slot)),
            None => self.reserve_slow(len),
        }
    }

    #[inline(never)]
    fn reserve_slow(&mut self, len: u64) -> Result<Option<Slot>> {
        let shared = &self.shared;
        let index = self.index;
        let reserved = if shared.lossy() {
            self.lane.reserve(&mut self.cursor, len, None)
        } else {
            let mut slowest = |tail| shared.slowest(index, tail);
            self.lane.reserve(&mut self.cursor, len, Some(&mut slowest))
        };
        let reserved = reserved.map_err(|err| shared.explain(err))?;
        // The reserve read the lane's and subscribers' words: were they
        // still there? (The fault flag stays set: one check after.)
        shared.intact()?;
        Ok(reserved)
    }

    #[inline(always)]
    fn grant_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<WriteGrant<'_>> {
        // As in `try_grant`.
        self.shared.intact()?;
        let slot = self.room_until(len, deadline)?;
        Ok(WriteGrant {
            publisher: self,
            slot,
        })
    }

    /// A send's grant without the grant's first check: the one before its
    /// commit covers every earlier access too (the flag stays set).
    #[inline(always)]
    fn send_until(&mut self, message: &[u8], deadline: Option<Instant>) -> Result<()> {
        let slot = self.room_until(message.len(), deadline)?;
        WriteGrant {
            publisher: self,
            slot,
        }
        .fill_and_commit(message)
    }

    /// Room for `len` bytes, waiting until `deadline` on a Block topic.
    #[inline(always)]
    fn room_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<Slot> {
        match self.reserve(len as u64)? {
            Some(slot) => Ok(slot),
            None => self.wait_for_room(len, deadline),
        }
    }

    /// A Block publisher's wait for a slow subscriber, out of line.
    #[inline(never)]
    fn wait_for_room(&mut self, len: usize, deadline: Option<Instant>) -> Result<Slot> {
        let shared = &self.shared;
        let lane = self.lane;
        let index = self.index;
        let cursor = &mut self.cursor;
        let wait = &shared.header().wait;
        let needed = cursor.tail + layout::record_size(len as u64) * 2;
        self.waiter.wait(
            wait,
            &wait.publishers_sleeping,
            deadline,
            &shared.place,
            || {
                let mut slowest = |tail| shared.slowest(index, tail);
                let reserved = lane
                    .reserve(cursor, len as u64, Some(&mut slowest))
                    .map_err(|err| shared.explain(err))?;
                shared.intact()?;
                Ok(reserved)
            },
            || {
                shared.still_sized()?;
                shared.reclaim_dead_subscribers(index, needed);
                Ok(())
            },
        )
    }

    /// Closes this publisher's stream; dropping it does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let gate = self.shared.segment.lock_range(layout::GATE_BYTE, 1);
        // Release: every commit happens before the close is seen; pairs
        // with the Acquire in `Shared::publishers_finished`.
        self.lane
            .header()
            .state
            .store(LANE_CLOSED, Ordering::SeqCst);
        let wait = &self.shared.header().wait;
        wake_if_sleeping(wait, &wait.subscribers_sleeping);
        drop(self.lock.take());
        if gate.is_ok() {
            self.shared.remove_if_last();
        }
    }
}

/// Space reserved in a publisher's lane for one message, written in place.
///
/// Dereferences to the reserved bytes; [`commit`](WriteGrant::commit)
/// publishes them; dropping the grant or [`abort`](WriteGrant::abort)
/// discards them.
#[must_use = "a grant that is not committed sends nothing"]
#[derive(Debug)]
pub struct WriteGrant<'a> {
    publisher: &'a mut Publisher,
    slot: Slot,
}

impl WriteGrant<'_> {
    /// Publishes the whole reserved length as one message.
    #[inline]
    pub fn commit(self) {
        let len = self.slot.len as usize;
        self.commit_len(len);
    }

    /// Publishes the first `len` bytes as one message.
    ///
    /// # Panics
    ///
    /// If `len` is more than was granted.
    #[inline]
    pub fn commit_len(self, len: usize) {
        assert!(
            len as u64 <= self.slot.len,
            "commit_len({len}) of a grant of {} bytes",
            self.slot.len
        );
        let publisher = &mut *self.publisher;
        publisher
            .lane
            .commit(&mut publisher.cursor, self.slot, len as u64);
        let wait = &publisher.shared.header().wait;
        wake_if_sleeping(wait, &wait.subscribers_sleeping);
    }

    /// Discards the reservation; subscribers see nothing.
    pub fn abort(self) {}

    /// The first byte of the reservation, for a writer that must not form
    /// a `&mut [u8]` over shared memory (the typed publisher's codec).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.publisher
            .lane
            .payload(self.slot.position, self.slot.len)
    }

    /// Copies `message` in and commits it, unless the copy ran onto a
    /// page a peer cut away: then nothing is committed.
    #[inline]
    fn fill_and_commit(mut self, message: &[u8]) -> Result<()> {
        self.copy_from_slice(message);
        self.publisher.shared.intact()?;
        self.commit();
        Ok(())
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot lies inside the lane (reserve checked it) past
        // the committed records, where only this publisher writes (rule 1
        // of `lane`); subscribers read a record only once its word commits
        // it (rule 3), and a drop-oldest reader that reads old bytes here
        // discards them (rule 6).
        unsafe {
            std::slice::from_raw_parts(
                self.publisher
                    .lane
                    .payload(self.slot.position, self.slot.len),
                self.slot.len as usize,
            )
        }
    }
}

impl DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.publisher
                    .lane
                    .payload(self.slot.position, self.slot.len),
                self.slot.len as usize,
            )
        }
    }
}

/// How often a non-blocking receive on an empty topic asks the kernel
/// whether its publishers live (a system call per open lane).
const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

/// The receiving end of a topic.
#[derive(Debug)]
pub struct Subscriber {
    merge: Merge,
    index: u32,
    scratch: Vec<u8>,
    waiter: Waiter,
    checked_at: Option<Instant>,
    lock: Option<RangeLock>,
    shared: Shared,
}

impl Subscriber {
    /// Opens (or creates) topic `name` as a new subscriber, with default
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::TopicFull`] if every subscriber place is held by a live
    /// process; otherwise as [`Publisher::open`].
    pub fn open(name: &str) -> Result<Subscriber> {
        Subscriber::open_with(name, &Options::default())
    }

    /// Opens (or creates) topic `name` as a new subscriber; `options` shape
    /// the topic if this call creates it, must match an existing one's
    /// where given (see [`Options`]), and say how the subscriber joins and
    /// waits.
    ///
    /// # Errors
    ///
    /// As [`Subscriber::open`], and [`Error::OptionMismatch`] if the topic
    /// exists with another value of an option given; [`Error::TooLarge`]
    /// for a maximum message that the topic's lanes (the capacity given,
    /// the default when creating, or the existing topic's) cannot carry
    /// (see [`Options`]).
    pub fn open_with(name: &str, options: &Options) -> Result<Subscriber> {
        let owner = owner_word()?;
        let (shared, gate) = Shared::open(name, options)?;
        let (index, lock) =
            shared.take_place(SUBSCRIBER_LOCKS, shared.geometry.subscribers, "subscribers")?;
        let history = options.receive_history && shared.history > 0;
        let mut cursors = Vec::with_capacity(shared.lanes.len());
        for (i, lane) in shared.lanes.iter().enumerate() {
            let (position, expected) = lane
                .join(history, || shared.publisher_alive(i))
                .map_err(|err| shared.explain(err))?;
            // SeqCst: rule 8 of `lane`.
            shared.position(index, i).store(position, Ordering::SeqCst);
            cursors.push(LaneCursor::at(position, Some(expected)));
        }
        let entry = shared.subscriber(index);
        entry.owner.store(owner, Ordering::Relaxed);
        entry.received.store(0, Ordering::Relaxed);
        entry.missed.store(0, Ordering::Relaxed);
        let generation = entry.state.load(Ordering::Relaxed) >> 1;
        entry.state.store(
            (generation.wrapping_add(1) << 1) | SUBSCRIBER_ACTIVE,
            Ordering::SeqCst,
        );
        // Every way out with an error from here clears ACTIVE again: no
        // subscriber is made, and a Block publisher must not wait for it.
        let failed = |err: Error| {
            entry.state.store(
                (generation.wrapping_add(1) << 1) & !SUBSCRIBER_ACTIVE,
                Ordering::SeqCst,
            );
            shared.explain(err)
        };
        // Rule 8: a publisher that raised `reserve` before it could see our
        // positions may overwrite below `reserve - capacity`: start later.
        // (Drop-oldest topics check every read against laps instead.)
        let block = !shared.lossy();
        for (i, lane) in shared.lanes.iter().enumerate().filter(|_| block) {
            let cursor = &mut cursors[i];
            for attempt in 0.. {
                let reserve = lane.header().reserve.load(Ordering::SeqCst);
                if reserve.saturating_sub(lane.capacity()) <= cursor.position {
                    break;
                }
                // A live publisher moves `head` before `reserve`, so this
                // settles at once; one that never does is corrupt.
                if attempt == 1000 {
                    return Err(failed(Error::Corrupt(format!(
                        "topic {name}: lane {i} reserve {reserve} stays over a lane past its head"
                    ))));
                }
                // Block topics never lap a subscriber: nothing to count.
                let head = lane.head_before_tail().map_err(&failed)?;
                *cursor = LaneCursor::at(head, None);
                shared
                    .position(index, i)
                    .store(cursor.position, Ordering::SeqCst);
            }
        }
        shared.intact().map_err(&failed)?;
        drop(gate);
        Ok(Subscriber {
            merge: Merge::new(
                cursors,
                shared.entry(index),
                shared.lanes[shared.lanes.len() - 1],
            ),
            index,
            scratch: vec![0; shared.max_message as usize],
            waiter: Waiter::new(options.waiting),
            checked_at: None,
            lock: Some(lock),
            shared,
        })
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The largest message this topic carries.
    pub fn max_message(&self) -> usize {
        self.shared.max_message as usize
    }

    /// The topic's back-pressure policy.
    pub fn policy(&self) -> Policy {
        self.shared.policy
    }

    /// The remote publisher that publisher `id` (a [`Received::publisher`])
    /// relays, if it is a bridge's relay ([`Options::relay`]), read from
    /// its lane without a system call. `None` also once no lane holds `id`
    /// (its place was taken over by a later publisher).
    ///
    /// ```
    /// use shmkit::topic::{Options, Origin, Publisher, Subscriber};
    ///
    /// let name = format!("doc-topic-origin-of-{}", std::process::id());
    /// let mut subscriber = Subscriber::open(&name)?;
    /// let origin = Origin { host: 9, publisher: 4 };
    /// let mut relay = Publisher::open_with(&name, &Options::default().relay(origin))?;
    /// relay.send(b"from afar")?;
    /// let got = subscriber.recv(&mut [0u8; 64])?;
    /// assert_eq!(subscriber.origin_of(got.publisher), Some(origin));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn origin_of(&self, id: u64) -> Option<Origin> {
        let used = self.shared.lanes_used();
        self.shared.lanes[..used]
            .iter()
            .map(|lane| lane.header())
            .find(|header| header.publisher.load(Ordering::Acquire) == id)?
            .origin()
    }

    /// Receives one message into `buf`, waiting while there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Lagged`] (drop-oldest topics) when messages were
    /// overwritten before this subscriber read them: the next call goes on
    /// with the oldest still there. [`Error::Closed`] once every publisher
    /// that opened the topic closed and everything was received (a
    /// publisher that opens later makes receives deliver again);
    /// [`Error::PeerGone`] likewise when one of them died instead (except
    /// a bridge's relay, whose bridge may come back: it is waited for, so
    /// pass a timeout where a bridge may be gone for good, see
    /// [`Options::relay`]); [`Error::TooLarge`] if `buf` is shorter than
    /// the message (which stays); [`Error::Corrupt`] for a bad record.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Received> {
        self.recv_until(buf, Until::Forever)
    }

    /// [`recv`](Subscriber::recv) if a message is there now, else
    /// [`Error::Empty`].
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Received> {
        self.recv_until(buf, Until::Now)
    }

    /// [`recv`](Subscriber::recv), waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Received> {
        self.recv_until(buf, Until::Deadline(Instant::now() + timeout))
    }

    /// The next message, read in place (on a drop-oldest topic, copied
    /// into this subscriber's buffer first, since its publisher may
    /// overwrite the lane at any time), waiting while there is none.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGuard<'_>> {
        self.read_until(Until::Forever)
    }

    /// [`read`](Subscriber::read) if a message is there now, else
    /// [`Error::Empty`].
    pub fn try_read(&mut self) -> Result<ReadGuard<'_>> {
        self.read_until(Until::Now)
    }

    /// [`read`](Subscriber::read), waiting at most `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_>> {
        self.read_until(Until::Deadline(Instant::now() + timeout))
    }

    #[inline(always)]
    fn recv_until(&mut self, buf: &mut [u8], until: Until) -> Result<Received> {
        loop {
            let found = self.next(until)?;
            if let Some(received) = self.take_into(found, buf)? {
                return Ok(received);
            }
        }
    }

    /// The message `next` found, copied into `buf` and taken; `Ok(None)`
    /// if a drop-oldest publisher overwrote it meanwhile (the merge moved
    /// on: look again).
    #[inline(always)]
    fn take_into(&mut self, (i, meta): (usize, Meta), buf: &mut [u8]) -> Result<Option<Received>> {
        let len = meta.len as usize;
        // The merge's lane: every message `next` finds is on it.
        let (current, lane) = self.merge.current();
        debug_assert_eq!(i, current);
        let lossy = self.shared.lossy();
        if len > buf.len() {
            // A drop-oldest length may be a lap's: only a record read
            // whole is too large.
            if lossy && lane.overwritten(meta.position) {
                self.merge
                    .lapped(&self.shared, i)
                    .map_err(|err| self.shared.explain(err))?;
                return Ok(None);
            }
            return Err(Error::TooLarge {
                what: "message",
                size: meta.len,
                limit: buf.len() as u64,
            });
        }
        if lossy {
            lane.copy_payload(meta.position, meta.len, &mut buf[..len]);
            // Rule 6 of `lane`, once for the record's words and its
            // payload.
            if lane.overwritten(meta.position) {
                self.merge
                    .lapped(&self.shared, i)
                    .map_err(|err| self.shared.explain(err))?;
                return Ok(None);
            }
        } else {
            // SAFETY: a committed record inside the lane (message_at or
            // record_at checked its word), which its publisher does not
            // overwrite before our position passes it (rule 8 of
            // `lane`); `buf` is our own memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    lane.payload(meta.position, meta.len),
                    buf.as_mut_ptr(),
                    len,
                )
            };
        }
        // The copy (and the record's words) may have read pages the
        // file lost: never deliver their zeros.
        self.shared.intact()?;
        self.merge.consume(&self.shared, i, &meta);
        Ok(Some(received(&meta)))
    }

    #[inline(always)]
    fn read_until(&mut self, until: Until) -> Result<ReadGuard<'_>> {
        loop {
            let (i, meta) = self.next(until)?;
            if !self.shared.lossy() {
                // The record's words may be a lost page's zeros.
                self.shared.intact()?;
                debug_assert_eq!(i, self.merge.current().0);
                return Ok(ReadGuard {
                    subscriber: self,
                    meta,
                });
            }
            let (current, lane) = self.merge.current();
            debug_assert_eq!(i, current);
            let len = meta.len as usize;
            if len > self.scratch.len() {
                // Never: message_at and record_at bound a length by
                // max_message, the scratch's size. Were it so, the bytes
                // would be taken for a lap's rather than sliced out of
                // bounds.
                self.merge
                    .lapped(&self.shared, i)
                    .map_err(|err| self.shared.explain(err))?;
                continue;
            }
            lane.copy_payload(meta.position, meta.len, &mut self.scratch[..len]);
            if lane.overwritten(meta.position) {
                self.merge
                    .lapped(&self.shared, i)
                    .map_err(|err| self.shared.explain(err))?;
                continue;
            }
            self.shared.intact()?;
            self.merge.consume(&self.shared, i, &meta);
            return Ok(ReadGuard {
                subscriber: self,
                meta,
            });
        }
    }

    /// A look at every lane (publishing this subscriber's position first:
    /// rule 11 of `lane`).
    fn poll(&mut self) -> Result<Option<(usize, Meta)>> {
        self.merge.poll(&self.shared, self.index)
    }

    /// The next message: a look at the current lane's batch inline, the
    /// rest (the other lanes, the peer check, the wait) out of line, so
    /// that a receive that finds one is a few loads.
    #[inline(always)]
    fn next(&mut self, until: Until) -> Result<(usize, Meta)> {
        if let Some(found) = self.merge.peek(&self.shared) {
            return Ok(found);
        }
        // The slow path hands its message back through `found`, not inside
        // its `Result`: the fast path's values then stay in registers
        // rather than meeting the slow one's in the memory of one enum.
        let mut found = (0, Meta::default());
        self.next_after_empty(until, &mut found)?;
        Ok(found)
    }

    /// Writes the message it finds into `found`.
    #[inline(never)]
    fn next_after_empty(&mut self, until: Until, found: &mut (usize, Meta)) -> Result<()> {
        *found = self.find_after_empty(until)?;
        Ok(())
    }

    fn find_after_empty(&mut self, until: Until) -> Result<(usize, Meta)> {
        if let Some(found) = self.poll()? {
            return Ok(found);
        }
        let deadline = match until {
            Until::Now => {
                let now = Instant::now();
                let due = self
                    .checked_at
                    .is_none_or(|at| now.duration_since(at) >= LIVENESS_INTERVAL);
                if due {
                    self.checked_at = Some(now);
                    self.shared.still_sized()?;
                    if let Err(end) = self.shared.publishers_finished() {
                        return self.poll()?.ok_or(end);
                    }
                }
                return Err(Error::Empty {
                    place: self.shared.place.clone(),
                });
            }
            Until::Forever => None,
            Until::Deadline(deadline) => Some(deadline),
        };
        // The waiter needs `poll` and the peer check at once: split the
        // borrows (the check reads only the mapping).
        let Subscriber {
            merge,
            shared,
            waiter,
            index,
            ..
        } = self;
        let shared_ref: &Shared = shared;
        let wait = &shared_ref.header().wait;
        waiter.wait(
            wait,
            &wait.subscribers_sleeping,
            deadline,
            &shared_ref.place,
            || {
                let found = merge.poll(shared_ref, *index);
                if let Ok(None) = &found {
                    merge.prefetch(shared_ref);
                }
                found
            },
            || {
                shared_ref.still_sized()?;
                shared_ref.publishers_finished()
            },
        )
    }
}

/// How long a receive waits.
#[derive(Clone, Copy, Debug)]
enum Until {
    Now,
    Forever,
    Deadline(Instant),
}

fn received(meta: &Meta) -> Received {
    Received {
        len: meta.len as usize,
        publisher: meta.publisher,
        sequence: meta.sequence,
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let gate = self.shared.segment.lock_range(layout::GATE_BYTE, 1);
        let entry = self.shared.subscriber(self.index);
        let state = entry.state.load(Ordering::Relaxed);
        entry
            .state
            .store(state & !SUBSCRIBER_ACTIVE, Ordering::SeqCst);
        let wait = &self.shared.header().wait;
        wake_if_sleeping(wait, &wait.publishers_sleeping);
        drop(self.lock.take());
        if gate.is_ok() {
            self.shared.remove_if_last();
        }
    }
}

/// One message, read in place (Block topics) or from the subscriber's
/// copy (drop-oldest). Dereferences to its bytes; dropping it (or
/// [`release`](ReadGuard::release)) moves past it.
#[must_use = "dropping a read guard at once discards the message"]
#[derive(Debug)]
pub struct ReadGuard<'a> {
    subscriber: &'a mut Subscriber,
    /// Found in the merge's current lane (`Merge::current`).
    meta: Meta,
}

impl ReadGuard<'_> {
    /// `Err(Truncated)` if the segment was cut since the guard was taken:
    /// what was copied out of a Block topic's lane in place may then be
    /// the SIGBUS guard's zeros.
    pub(crate) fn intact(&self) -> Result<()> {
        self.subscriber.shared.intact()
    }

    /// The id of the message's publisher.
    #[inline]
    pub fn publisher(&self) -> u64 {
        self.meta.publisher
    }

    /// The message's sequence number in its publisher's stream.
    #[inline]
    pub fn sequence(&self) -> u64 {
        self.meta.sequence
    }

    /// Moves past the message.
    #[inline]
    pub fn release(self) {}

    /// The message's first byte, for a reader that must not form a `&[u8]`
    /// over shared memory (the typed subscriber copies through it). Valid,
    /// for [`len`](<[u8]>::len) bytes, while the guard lives.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        if self.copied() {
            return self.subscriber.scratch.as_ptr();
        }
        let (_, lane) = self.subscriber.merge.current();
        lane.payload(self.meta.position, self.meta.len).cast_const()
    }

    /// Whether the message was copied into the subscriber's buffer (and
    /// moved past already): always on a drop-oldest topic, never on a
    /// Block one (`read_until`). Asked of the topic rather than kept in the
    /// guard, which then has no flag byte to keep in memory.
    #[inline(always)]
    fn copied(&self) -> bool {
        self.subscriber.shared.lossy()
    }

    /// The message's length in bytes.
    pub(crate) fn message_len(&self) -> usize {
        self.meta.len as usize
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        let len = self.meta.len as usize;
        if self.copied() {
            return &self.subscriber.scratch[..len];
        }
        let (_, lane) = self.subscriber.merge.current();
        // SAFETY: a committed record inside the lane (record_at checked
        // it); on a Block topic its publisher does not write it before our
        // position passes it, which happens only when the guard drops
        // (rule 8 of `lane`).
        unsafe { std::slice::from_raw_parts(lane.payload(self.meta.position, self.meta.len), len) }
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.copied() {
            let subscriber = &mut *self.subscriber;
            let (i, _) = subscriber.merge.current();
            subscriber.merge.consume(&subscriber.shared, i, &self.meta);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Removes a test's topic even on panic.
    struct Cleanup(String);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(key) = shared::key_of(&self.0) {
                if let Ok(segment) = crate::Segment::open(&key) {
                    let _ = segment.remove();
                }
            }
        }
    }

    /// Issue 10: a publish makes no system call when no subscriber sleeps
    /// (the wake path, which stamps `woken_at` before its `FUTEX_WAKE`, is
    /// not taken), and wakes every sleeping subscriber with one call (the
    /// shared word is cleared once, and both sleepers receive).
    #[test]
    fn a_publish_wakes_all_sleepers_with_one_call_and_none_without_sleepers() {
        let name = format!("unit-topic-wake-{}", std::process::id());
        let _cleanup = Cleanup(name.clone());
        let options = Options::default().waiting(Waiting::SpinThenSleep(Duration::ZERO));
        let mut publisher = Publisher::open_with(&name, &options).unwrap();
        let mut idle = Subscriber::open_with(&name, &options).unwrap();
        for n in 0u8..100 {
            publisher.send(&[n]).unwrap();
            assert_eq!(idle.try_recv(&mut [0u8; 1]).unwrap().sequence, u64::from(n));
        }
        // The idle subscriber stays, to watch the header (it never sleeps).
        let wait = &idle.shared.header().wait;
        assert_eq!(wait.woken_at.load(Ordering::Relaxed), 0, "no wake call");

        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let mut subscriber =
                    Subscriber::open_with(&name, &options.clone().receive_history(false)).unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8];
                    let got = subscriber.recv(&mut buf).map(|r| buf[..r.len].to_vec());
                    (got, subscriber)
                })
            })
            .collect();
        // Both announce their sleep on the one word (a spin-free waiter
        // goes to it at once); wait for the word, not for a time.
        let deadline = Instant::now() + Duration::from_secs(60);
        while wait.subscribers_sleeping.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no subscriber went to sleep");
            std::thread::yield_now();
        }
        publisher.send(b"wake").unwrap();
        assert_ne!(wait.woken_at.load(Ordering::Relaxed), 0, "one wake call");
        for sleeper in sleepers {
            let (got, subscriber) = sleeper.join().unwrap();
            assert_eq!(got.unwrap(), b"wake");
            drop(subscriber);
        }
    }
}
