//! A topic's mapping, shared by publishers and subscribers: creating or
//! finding it, validating its header, the member places and their locks,
//! and leaving (which removes the topic when its last member goes).

use std::ptr::NonNull;

use super::lane::LaneRef;
use super::layout::{
    self, Geometry, Header, LaneHeader, SubscriberHeader, WaitLine, GATE_BYTE, HEADER_SIZE,
    LANE_OPEN, LANE_RELAY, MAGIC, MAX_CAPACITY, MAX_HISTORY, MAX_PUBLISHERS, MAX_SUBSCRIBERS,
    MIN_CAPACITY, POLICY_BLOCK, POLICY_DROP_OLDEST, PUBLISHER_LOCKS, SUBSCRIBER_ACTIVE,
    SUBSCRIBER_LOCKS, VERSION,
};
use super::{Options, Origin, Policy, SEGMENT_PREFIX};
use crate::error::{Error, Result};
use crate::ring::wait::WakeLine;
use crate::segment::format::{max_message_fits, pid_of, Creation, Format, Made, Opened};
use crate::segment::{AccessMode, Attachment, Key, Mode, ReadWrite, Segment};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys::range_lock::RangeLock;

impl WakeLine for WaitLine {
    fn full_fences(&self) -> &AtomicU32 {
        &self.full_fences
    }

    fn woken_at(&self) -> &AtomicU64 {
        &self.woken_at
    }

    /// Subscribers (and Block publishers) share one word: leave it for the
    /// waker to clear (see the trait).
    fn stop_sleeping(&self, _sleeping: &AtomicU32) {}
}

impl Opened for Shared {
    fn segment(&self) -> &Segment {
        &self.segment
    }

    fn removed(&self) -> &AtomicU32 {
        &self.header().wait.removed
    }
}

/// The topic as one member sees it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    /// `topic NAME`, as errors name it.
    pub place: String,
    pub geometry: Geometry,
    pub max_message: u64,
    pub policy: Policy,
    pub history: u32,
    header: NonNull<Header>,
    base: NonNull<u8>,
    pub lanes: Vec<LaneRef>,
    pub segment: Segment,
    // Declared last: unmapped after everything that points in.
    mapping: Attachment<ReadWrite>,
}

// SAFETY: every pointer is into `mapping`, owned alongside; shared memory
// is reached through atomics and the lane protocol only.
unsafe impl Send for Shared {}

/// How a topic keeps its segment (see `segment::format`).
pub(crate) const FORMAT: Format = Format {
    noun: "topic",
    prefix: SEGMENT_PREFIX,
    header_size: HEADER_SIZE,
    magic: MAGIC,
    version: VERSION,
    gate: GATE_BYTE,
    members: PUBLISHER_LOCKS..SUBSCRIBER_LOCKS + MAX_SUBSCRIBERS as u64,
};

/// The key of topic `name`, after checking the name.
pub(crate) fn key_of(name: &str) -> Result<Key> {
    FORMAT.key(name)
}

impl Options {
    /// Checks what is wrong with the options whatever topic they meet,
    /// before any shared memory is touched: a capacity given that is not a
    /// power of two in range, a maximum message over what the capacity
    /// given carries, or (no capacity given) over what the largest lane
    /// carries, and table sizes or a history out of range. How the maximum
    /// message fits a capacity not given is [`fits`](Options::fits)'s,
    /// once the capacity is known.
    pub(crate) fn validate(&self) -> Result<()> {
        match self.capacity {
            Some(c) => {
                if !c.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&c) {
                    return Err(Error::InvalidArgument(format!(
                        "topic capacity must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY} bytes per publisher, not {c}"
                    )));
                }
                self.fits(c)?;
            }
            None => self.fits(MAX_CAPACITY)?,
        }
        if !(1..=MAX_PUBLISHERS).contains(&self.publishers_len()) {
            return Err(Error::InvalidArgument(format!(
                "a topic has 1 to {MAX_PUBLISHERS} publishers, not {}",
                self.publishers_len()
            )));
        }
        if !(1..=MAX_SUBSCRIBERS).contains(&self.subscribers_len()) {
            return Err(Error::InvalidArgument(format!(
                "a topic has 1 to {MAX_SUBSCRIBERS} subscribers, not {}",
                self.subscribers_len()
            )));
        }
        if self.history_len() > MAX_HISTORY {
            return Err(Error::InvalidArgument(format!(
                "a topic keeps at most {MAX_HISTORY} messages of history, not {}",
                self.history_len()
            )));
        }
        Ok(())
    }

    fn history_len(&self) -> u32 {
        self.history.unwrap_or(0)
    }

    /// Checks the maximum message given, if any, against the lane capacity
    /// the topic has or will have: the one given, the default for a topic
    /// this call creates, or an existing topic's (validated by
    /// `read_header`).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] naming the largest message `capacity` carries.
    fn fits(&self, capacity: u64) -> Result<()> {
        max_message_fits(self.max_message, layout::max_message_for(capacity))
    }

    /// Checks the options that were given against an existing topic's
    /// (its header's, as `shared` read and validated them), under the
    /// gate: the rule of `ring::Options`. A maximum message given must fit
    /// the topic's lanes ([`Error::TooLarge`], as creating a topic of that
    /// capacity would say) and be the topic's.
    fn check_against(&self, shared: &Shared) -> Result<()> {
        let check = FORMAT.options_of(&shared.name, &shared.segment);
        let geometry = &shared.geometry;
        check.value("capacity", self.capacity, geometry.capacity)?;
        self.fits(geometry.capacity)?;
        check.value("maximum message", self.max_message, shared.max_message)?;
        check.value(
            "maximum publishers",
            self.max_publishers,
            geometry.publishers,
        )?;
        check.value(
            "maximum subscribers",
            self.max_subscribers,
            geometry.subscribers,
        )?;
        check.value("policy", self.policy, shared.policy)?;
        check.value("history", self.history, shared.history)?;
        check.mode(self.mode)
    }
}

impl Shared {
    /// Finds topic `name`, or creates it with `options`, and takes its
    /// gate: the caller claims its place and then drops the gate.
    pub(crate) fn open(name: &str, options: &Options) -> Result<(Shared, RangeLock)> {
        options.validate()?;
        let geometry = Geometry::new(
            options.capacity_len(),
            options.publishers_len(),
            options.subscribers_len(),
        );
        // With the defaults for the options not given, which the maximum
        // message given must then fit: checked only when creating, since an
        // existing topic's own lanes are what counts when it is found.
        let creation = || {
            options.fits(geometry.capacity)?;
            Ok(Creation {
                size: geometry.size,
                mode: options.mode.unwrap_or(Mode::OWNER_ONLY),
                group: options.group,
            })
        };
        let mut found = false;
        let (shared, gate) = FORMAT.find_or_create(
            name,
            &options.trust,
            creation,
            |mapping| {
                initialise(mapping, options, &geometry);
                Ok(())
            },
            |segment, mapping, made| {
                found = made == Made::Found;
                Shared::from_mapping(name, segment, mapping)
            },
        )?;
        if found {
            options.check_against(&shared)?;
        }
        if !crate::sys::membarrier::register_global_expedited() {
            shared.header().wait.full_fences.store(1, Ordering::SeqCst);
        }
        Ok((shared, gate))
    }

    /// Validates the header of a mapping and builds the views.
    pub(crate) fn from_mapping(
        name: &str,
        segment: Segment,
        mapping: Attachment<ReadWrite>,
    ) -> Result<Shared> {
        let header = read_header(&mapping, name)?;
        let config = &header.config;
        let geometry = Geometry::new(
            config.capacity.load(Ordering::Relaxed),
            config.max_publishers.load(Ordering::Relaxed),
            config.max_subscribers.load(Ordering::Relaxed),
        );
        let max_message = config.max_message.load(Ordering::Relaxed);
        let policy = match config.policy.load(Ordering::Relaxed) {
            POLICY_BLOCK => Policy::Block,
            _ => Policy::DropOldest,
        };
        let history = config.history.load(Ordering::Relaxed);
        let base = NonNull::new(mapping.as_mut_ptr()).expect("a mapping is never null");
        let lanes = (0..geometry.publishers as u64)
            .map(|i| {
                // SAFETY: read_header checked that the lane table and the
                // lanes lie inside the mapping (geometry.size <= len), so
                // these offsets are in bounds; lanes start on a page
                // (8-aligned).
                unsafe {
                    let lane_header = base
                        .as_ptr()
                        .add((geometry.publishers_offset + i * layout::LANE_HEADER_SIZE) as usize)
                        .cast::<LaneHeader>();
                    let data = base
                        .as_ptr()
                        .add((geometry.lanes_offset + i * geometry.capacity) as usize)
                        .cast::<AtomicU64>();
                    // SAFETY (of `new`): the mapping outlives the views (it
                    // is dropped last, with them); capacity and max_message
                    // were validated.
                    LaneRef::new(
                        NonNull::new_unchecked(lane_header),
                        NonNull::new_unchecked(data),
                        geometry.capacity,
                        max_message,
                    )
                }
            })
            .collect();
        Ok(Shared {
            name: name.to_owned(),
            place: FORMAT.place(name),
            geometry,
            max_message,
            policy,
            history,
            header: NonNull::from(header),
            base,
            lanes,
            segment,
            mapping,
        })
    }

    /// `Err(Truncated)` once an access found the segment shrunk by someone
    /// (the pages it lost read as zeros): checked by every verb, after its
    /// accesses, so that zeros are never delivered as a message.
    #[inline]
    pub(crate) fn intact(&self) -> Result<()> {
        self.mapping.check_intact()
    }

    /// `Err(Truncated)` if the file is shorter than the mapping, faulted
    /// or not (a cut inside the header's page zeroes its words without a
    /// fault, and a waiter would wait forever): a system call, for waits.
    pub(crate) fn still_sized(&self) -> Result<()> {
        self.mapping.check_size()
    }

    /// A `Corrupt` found in the topic becomes `Truncated` when the file is
    /// shorter than the mapping.
    #[cold]
    pub(crate) fn explain(&self, err: Error) -> Error {
        self.mapping.explain(err)
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: inside the mapping we own; all atomics.
        unsafe { self.header.as_ref() }
    }

    /// Subscriber `j`'s fixed words.
    #[inline]
    pub(crate) fn subscriber(&self, j: u32) -> &SubscriberHeader {
        debug_assert!(j < self.geometry.subscribers);
        let offset =
            self.geometry.subscribers_offset + u64::from(j) * self.geometry.subscriber_size;
        // SAFETY: j < subscribers, so the entry is inside the table, which
        // read_header checked lies inside the mapping; 128-aligned; atomics.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(offset as usize)
                .cast::<SubscriberHeader>()
        }
    }

    /// Subscriber `j`'s position in lane `i`.
    #[inline]
    pub(crate) fn position(&self, j: u32, i: usize) -> &AtomicU64 {
        self.entry_position(self.entry(j), i)
    }

    /// Where subscriber `j`'s entry is, for a member that finds its words
    /// often (a subscriber's own, once per message).
    #[inline]
    pub(crate) fn entry(&self, j: u32) -> Entry {
        debug_assert!(j < self.geometry.subscribers);
        Entry(self.geometry.subscribers_offset + u64::from(j) * self.geometry.subscriber_size)
    }

    /// The position in lane `i` of the subscriber whose entry is `entry`.
    #[inline(always)]
    pub(crate) fn entry_position(&self, entry: Entry, i: usize) -> &AtomicU64 {
        debug_assert!((i as u32) < self.geometry.publishers);
        let offset = entry.0 + layout::SUBSCRIBER_FIXED + 8 * i as u64;
        // SAFETY: the entry is one of the table's (`entry`, j < subscribers),
        // i < publishers, and an entry has room for one position per
        // publisher after its fixed words (subscriber_entry_size); the table
        // lies inside the mapping (read_header); 8-aligned; an atomic.
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<AtomicU64>() }
    }

    /// The `received` count of the subscriber whose entry is `entry`.
    #[inline(always)]
    pub(crate) fn entry_received(&self, entry: Entry) -> &AtomicU64 {
        // SAFETY: as in `entry_position`: the fixed words of an entry of the
        // table.
        let header = unsafe {
            &*self
                .base
                .as_ptr()
                .add(entry.0 as usize)
                .cast::<SubscriberHeader>()
        };
        &header.received
    }

    /// How many lanes were ever opened (bounded by the table).
    #[inline]
    pub(crate) fn lanes_used(&self) -> usize {
        (self.header().wait.lanes_used.load(Ordering::Acquire) as usize).min(self.lanes.len())
    }

    pub(crate) fn lossy(&self) -> bool {
        self.policy == Policy::DropOldest
    }

    /// Whether a live process holds lane `i` (an unanswerable question
    /// counts as yes).
    pub(crate) fn publisher_alive(&self, i: usize) -> bool {
        self.segment
            .range_held(PUBLISHER_LOCKS + i as u64, 1)
            .unwrap_or(true)
    }

    /// Whether a live process holds subscriber place `j`.
    pub(crate) fn subscriber_alive(&self, j: u32) -> bool {
        self.segment
            .range_held(SUBSCRIBER_LOCKS + u64::from(j), 1)
            .unwrap_or(true)
    }

    /// Takes the lock of the first free place among `count` from `base`.
    pub(crate) fn take_place(
        &self,
        base: u64,
        count: u32,
        members: &'static str,
    ) -> Result<(u32, RangeLock)> {
        for index in 0..count {
            if let Some(lock) = self.segment.try_lock_range(base + u64::from(index), 1)? {
                return Ok((index, lock));
            }
        }
        Err(Error::TopicFull {
            topic: self.name.clone(),
            members,
            max: count,
        })
    }

    /// Under the gate: takes the lock of a free publisher place for a
    /// publisher that relays `origin` (if any). A relay continues the lane
    /// of a dead relay of its origin (a bridge killed and restarted);
    /// other publishers take a dead relay's lane, for which subscribers
    /// wait, only when no other place is free.
    pub(crate) fn take_publisher_place(&self, origin: Option<Origin>) -> Result<(u32, RangeLock)> {
        let used = self.lanes_used();
        let preference = |i: &u32| {
            let Some(lane) = self.lanes[..used].get(*i as usize) else {
                return 1; // never opened
            };
            let header = lane.header();
            let open_relay = header
                .origin()
                .filter(|_| header.state.load(Ordering::Acquire) == LANE_OPEN);
            match open_relay {
                Some(relays) if Some(relays) == origin => 0u8,
                Some(_) => 2,
                None => 1,
            }
        };
        // Each place's preference read once: a word another process writes
        // (without the gate, if it is hostile) must not change the order
        // mid-sort.
        let mut places: Vec<(u8, u32)> = (0..self.geometry.publishers)
            .map(|i| (preference(&i), i))
            .collect();
        places.sort_unstable();
        for (_, index) in places {
            if let Some(lock) = self
                .segment
                .try_lock_range(PUBLISHER_LOCKS + u64::from(index), 1)?
            {
                return Ok((index, lock));
            }
        }
        Err(Error::TopicFull {
            topic: self.name.clone(),
            members: "publishers",
            max: self.geometry.publishers,
        })
    }

    /// After a member gave up its place (and dropped its lock), under the
    /// gate: removes the topic if no member is left.
    pub(crate) fn remove_if_last(&self) {
        FORMAT.remove_if_last(self);
    }

    /// Block: the slowest active subscriber's position in lane `i`, among
    /// those possible for `tail` (rule 8 of `lane`).
    pub(crate) fn slowest(&self, i: usize, tail: u64) -> Option<u64> {
        let capacity = self.geometry.capacity;
        let mut slowest: Option<u64> = None;
        for j in 0..self.geometry.subscribers {
            // SeqCst: rule 8 of `lane` (after our SeqCst store of reserve).
            if self.subscriber(j).state.load(Ordering::SeqCst) & SUBSCRIBER_ACTIVE == 0 {
                continue;
            }
            let position = self.position(j, i).load(Ordering::SeqCst);
            if position <= tail && tail - position <= capacity {
                slowest = Some(slowest.map_or(position, |s| s.min(position)));
            }
        }
        slowest
    }

    /// Block: frees the places of dead subscribers that hold lane `i`
    /// back from `needed`, so that the publisher goes on.
    pub(crate) fn reclaim_dead_subscribers(&self, i: usize, needed: u64) {
        let capacity = self.geometry.capacity;
        for j in 0..self.geometry.subscribers {
            let subscriber = self.subscriber(j);
            let state = subscriber.state.load(Ordering::SeqCst);
            if state & SUBSCRIBER_ACTIVE == 0 {
                continue;
            }
            let position = self.position(j, i).load(Ordering::SeqCst);
            if position + capacity >= needed || self.subscriber_alive(j) {
                continue;
            }
            // Only the dead holder's exact word: a new holder stores a new
            // generation, and this then fails.
            let _ = subscriber.state.compare_exchange(
                state,
                state & !SUBSCRIBER_ACTIVE,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
    }

    /// Whether every lane that was opened is closed or its publisher dead:
    /// `Err(Closed)` (all closed), `Err(PeerGone)` (some died), `Ok(())`
    /// while a live publisher holds a lane, or none ever did.
    ///
    /// A dead relay is not the end of its origin's stream: its bridge may
    /// come back, and its successor for the same origin takes its lane
    /// ([`Shared::take_publisher_place`]). Until then it counts as live.
    pub(crate) fn publishers_finished(&self) -> Result<()> {
        let used = self.lanes_used();
        if used == 0 {
            return Ok(());
        }
        let mut dead = None;
        for (i, lane) in self.lanes[..used].iter().enumerate() {
            let header = lane.header();
            // Acquire: pairs with the Release of the state in the
            // publisher's close, so its last records are visible after.
            if header.state.load(Ordering::Acquire) == LANE_OPEN {
                // The flag first: `publisher_alive` asks the kernel.
                if header.flags.load(Ordering::Relaxed) & LANE_RELAY != 0 || self.publisher_alive(i)
                {
                    return Ok(());
                }
                dead = Some(i);
            }
        }
        match dead {
            None => Err(Error::Closed {
                place: self.place.clone(),
            }),
            Some(i) => Err(Error::PeerGone {
                place: self.place.clone(),
                peer: "publisher",
                pid: pid_of(self.lanes[i].header().owner.load(Ordering::Relaxed)),
            }),
        }
    }
}

/// The byte offset of a subscriber's entry in the table, found once
/// ([`Shared::entry`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry(u64);

/// Writes a fresh topic's header; `magic` last, with Release.
fn initialise(mapping: &Attachment<ReadWrite>, options: &Options, geometry: &Geometry) {
    // SAFETY: a fresh mapping of geometry.size > HEADER_SIZE bytes, page
    // aligned; it has no name yet, so no one else can reach it.
    let header = unsafe { &*mapping.as_mut_ptr().cast::<Header>() };
    let config = &header.config;
    config.version.store(VERSION, Ordering::Relaxed);
    config.capacity.store(geometry.capacity, Ordering::Relaxed);
    config
        .max_message
        .store(options.max_message_len(), Ordering::Relaxed);
    config
        .max_publishers
        .store(geometry.publishers, Ordering::Relaxed);
    config
        .max_subscribers
        .store(geometry.subscribers, Ordering::Relaxed);
    let policy = match options.policy.unwrap_or_default() {
        Policy::Block => POLICY_BLOCK,
        Policy::DropOldest => POLICY_DROP_OLDEST,
    };
    config.policy.store(policy, Ordering::Relaxed);
    config
        .history
        .store(options.history_len(), Ordering::Relaxed);
    config
        .publishers_offset
        .store(geometry.publishers_offset, Ordering::Relaxed);
    config
        .subscribers_offset
        .store(geometry.subscribers_offset, Ordering::Relaxed);
    config
        .lanes_offset
        .store(geometry.lanes_offset, Ordering::Relaxed);
    config.size.store(geometry.size, Ordering::Relaxed);
    // Release: publishes the configuration; pairs with the Acquire in
    // `Format::attach_existing` and `read_header`. (The link that names
    // the file orders it too; the magic stays the sign of a whole header.)
    config.magic.store(MAGIC, Ordering::Release);
}

/// The header of a topic mapping, every configuration field checked.
pub(crate) fn read_header<'m, A: AccessMode>(
    mapping: &'m Attachment<A>,
    name: &str,
) -> Result<&'m Header> {
    FORMAT.check_header(mapping, name)?;
    let corrupt = |what: String| Error::Corrupt(format!("topic {name}: {what}"));
    let len = mapping.len() as u64;
    // SAFETY: at least HEADER_SIZE bytes (checked), page aligned; only
    // atomics inside.
    let header = unsafe { &*mapping.as_ptr().cast::<Header>() };
    let config = &header.config;
    let capacity = config.capacity.load(Ordering::Relaxed);
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(corrupt(format!(
            "lane capacity {capacity} is not a power of two in range"
        )));
    }
    let max_message = config.max_message.load(Ordering::Relaxed);
    if max_message > layout::max_message_for(capacity) {
        return Err(corrupt(format!(
            "maximum message {max_message} is too large for lanes of {capacity}"
        )));
    }
    let publishers = config.max_publishers.load(Ordering::Relaxed);
    let subscribers = config.max_subscribers.load(Ordering::Relaxed);
    if !(1..=MAX_PUBLISHERS).contains(&publishers) || !(1..=MAX_SUBSCRIBERS).contains(&subscribers)
    {
        return Err(corrupt(format!(
            "{publishers} publishers and {subscribers} subscribers are out of range"
        )));
    }
    let policy = config.policy.load(Ordering::Relaxed);
    if policy != POLICY_BLOCK && policy != POLICY_DROP_OLDEST {
        return Err(corrupt(format!("unknown back-pressure policy {policy}")));
    }
    let history = config.history.load(Ordering::Relaxed);
    if history > MAX_HISTORY {
        return Err(corrupt(format!("history of {history} is out of range")));
    }
    let geometry = Geometry::new(capacity, publishers, subscribers);
    let found = (
        config.publishers_offset.load(Ordering::Relaxed),
        config.subscribers_offset.load(Ordering::Relaxed),
        config.lanes_offset.load(Ordering::Relaxed),
        config.size.load(Ordering::Relaxed),
    );
    let expected = (
        geometry.publishers_offset,
        geometry.subscribers_offset,
        geometry.lanes_offset,
        geometry.size,
    );
    if found != expected {
        return Err(corrupt(format!(
            "table offsets and size {found:?} do not match the configuration's {expected:?}"
        )));
    }
    if geometry.size > len {
        return Err(Error::Truncated {
            segment: format!("topic {name}"),
            size: len,
            expected: geometry.size,
        });
    }
    Ok(header)
}
