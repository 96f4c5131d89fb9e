//! Single-producer single-consumer rings of variable-size messages between
//! processes, in a POSIX shared-memory segment.
//!
//! A ring is found by name: [`Producer::open`] and [`Consumer::open`] create
//! it if it does not exist yet (and say whether they did, with `created`),
//! so either side may start first. Each end is held by one process at a
//! time, through a lock the kernel keeps on the ring's file; a second
//! producer or consumer gets [`Error::InUse`] while the first is alive, in
//! whatever pid namespace it runs, and takes over once it has died.
//!
//! Messages are byte strings of up to [`Producer::max_message`] bytes,
//! delivered whole and in order. The producer copies in with
//! [`send`](Producer::send) or writes in place through a
//! [`grant`](Producer::grant); the consumer copies out with
//! [`recv`](Consumer::recv) or reads in place through
//! [`read`](Consumer::read). A stream can go in batches, many messages
//! for the cost of one index update: [`Producer::send_batch`] and
//! [`Producer::batch`] commit many records at once, [`Consumer::drain`] and
//! [`Consumer::drain_while`] release many.
//!
//! When the producer is dropped or [`close`](Producer::close)s, the consumer
//! receives every message committed before, then [`Error::Closed`]; a new
//! producer may then reopen the drained ring, and the consumer reads on. If
//! the producer's process dies instead, the consumer receives every
//! committed message, then [`Error::PeerGone`]. A producer whose consumer
//! died or left gets [`Error::PeerGone`] or [`Error::PeerLeft`] once the
//! ring is full, unless [`Options::wait_for_new_consumer`].
//!
//! # Lifetime
//!
//! A ring is removed when its last end leaves and nothing more will be
//! read from it: a consumer leaving a drained ring with no producer, or a
//! producer closing a drained ring whose consumer came and left. Unread
//! messages, and the close of an empty stream, stay for a consumer that
//! starts later. A ring removed while another process was opening it is
//! never written to: the opener makes or finds the ring now at the name.
//! [`remove`] removes a ring nobody holds; [`collect_garbage`] finds and
//! removes rings nobody will use (abandoned by dead processes, finished,
//! half-made or corrupt), scoped by [`Scope`].
//!
//! The byte layout is in `docs/FORMAT.md`; the protocol's rules are listed
//! in the source of `ring/protocol.rs`.
//!
//! # Example: a producer and a consumer
//!
//! ```
//! use shmkit::ring::{Consumer, Producer};
//!
//! let name = format!("doc-example-{}", std::process::id());
//! let mut producer = Producer::open(&name)?;
//! let mut consumer = Consumer::open(&name)?; // usually another process
//!
//! producer.send(b"hello")?;
//! let mut grant = producer.grant(5)?; // zero-copy: write in place
//! grant.copy_from_slice(b"world");
//! grant.commit();
//! producer.close()?;
//!
//! let mut buf = [0u8; 64];
//! let n = consumer.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! assert_eq!(&*consumer.read()?, b"world");
//! assert!(matches!(consumer.recv(&mut buf), Err(shmkit::Error::Closed { .. })));
//! # Ok::<(), shmkit::Error>(())
//! ```

mod batch;
mod endpoint;
mod layout;
#[cfg(all(test, loom))]
mod model;
mod protocol;
mod status;
pub(crate) mod wait;

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

pub use batch::WriteBatch;
pub use status::{
    collect_garbage, list, remove, status, Action, EndpointStatus, Garbage, Reason, Removal,
    RingStatus, Scope,
};
pub use wait::Waiting;

use crate::error::{Error, Result};
use crate::segment::{AccessMode, Attachment, Key, Mode, ReadWrite, Segment, Trust};
use crate::sync::{AtomicU64, Ordering};
use crate::sys::range_lock::RangeLock;
use endpoint::End;
use layout::{
    Header, CLOSED, CLOSE_SEEN, HEADER_SIZE, MAGIC, MAX_CAPACITY, MIN_CAPACITY, OPEN, VERSION,
};
use protocol::{ConsumerCursor, ProducerCursor, RingRef, Slot};
use wait::Waiter;

/// The POSIX name of a ring's segment is this prefix and the ring's name.
pub const SEGMENT_PREFIX: &str = "/shmkit.ring.";

/// How a ring is created and how an endpoint waits.
///
/// The capacity, maximum message, mode and group shape a ring this call
/// creates. When the ring exists already, each of the capacity, maximum
/// message and mode that was given must match it, or the open fails with
/// [`Error::OptionMismatch`]; one not given takes the ring's own. An
/// existing ring is used only if its owner is trusted ([`Options::trust`];
/// by default only this process's own uid).
///
/// ```
/// use shmkit::ring::{Options, Waiting};
///
/// let options = Options::default().capacity(1 << 16).waiting(Waiting::BusyPoll);
/// assert_eq!(options.max_message_len(), (1 << 15) - 16);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    capacity: Option<u64>,
    max_message: Option<u64>,
    mode: Option<Mode>,
    waiting: Waiting,
    group: Option<u32>,
    trust: Trust,
    wait_for_new_consumer: bool,
}

/// The data area of a ring made without [`Options::capacity`]: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;

impl Default for Options {
    /// A 1 MiB data area, the largest messages it allows, mode 0600,
    /// adaptive waiting, and a producer that fails once its consumer left.
    fn default() -> Options {
        Options {
            capacity: None,
            max_message: None,
            mode: None,
            waiting: Waiting::Adaptive,
            group: None,
            trust: Trust::me(),
            wait_for_new_consumer: false,
        }
    }
}

impl Options {
    /// Bytes in the data area: a power of two from 4 KiB to 1 TiB
    /// ([`DEFAULT_CAPACITY`] if not given).
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.capacity = Some(bytes);
        self
    }

    /// The largest message, at most about half the capacity (the default).
    pub fn max_message(mut self, bytes: u64) -> Options {
        self.max_message = Some(bytes);
        self
    }

    /// Permission bits of the ring's segment (0600 if not given).
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = Some(mode);
        self
    }

    /// The group of the ring's segment, for sharing it with the group's
    /// members (with a mode such as 0660); this process must be a member.
    pub fn group(mut self, gid: u32) -> Options {
        self.group = Some(gid);
        self
    }

    /// Whose existing rings this endpoint joins: by default only those of
    /// this process's own uid, so that another user cannot squat the name
    /// (docs/SECURITY.md). Another owner's ring is [`Error::UntrustedOwner`].
    pub fn trust(mut self, trust: Trust) -> Options {
        self.trust = trust;
        self
    }

    /// How the endpoint waits when the ring is full or empty.
    pub fn waiting(mut self, waiting: Waiting) -> Options {
        self.waiting = waiting;
        self
    }

    /// For a producer: when the ring is full and its consumer has left
    /// (cleanly or not), wait for a new consumer instead of failing with
    /// [`Error::PeerLeft`] or [`Error::PeerGone`]. A producer that never had
    /// a consumer waits for the first one either way.
    pub fn wait_for_new_consumer(mut self, wait: bool) -> Options {
        self.wait_for_new_consumer = wait;
        self
    }

    /// The largest message a ring made with these options carries.
    pub fn max_message_len(&self) -> u64 {
        self.max_message
            .unwrap_or_else(|| layout::max_message_for(self.capacity_len()))
    }

    fn capacity_len(&self) -> u64 {
        self.capacity.unwrap_or(DEFAULT_CAPACITY)
    }

    fn validate(&self) -> Result<()> {
        let c = self.capacity_len();
        if !c.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&c) {
            return Err(Error::InvalidArgument(format!(
                "ring capacity must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY} bytes, not {c}"
            )));
        }
        let limit = layout::max_message_for(c);
        if self.max_message_len() > limit {
            return Err(Error::TooLarge {
                what: "maximum message",
                size: self.max_message_len(),
                limit,
            });
        }
        Ok(())
    }

    /// Checks the options that were given against an existing ring's.
    fn check_against(&self, ring: &RingRef, segment: &Segment, name: &str) -> Result<()> {
        let mismatch = |option, asked: String, found: String| Error::OptionMismatch {
            ring: name.to_owned(),
            option,
            asked,
            found,
        };
        if let Some(capacity) = self.capacity {
            if capacity != ring.capacity() {
                let found = ring.capacity().to_string();
                return Err(mismatch("capacity", capacity.to_string(), found));
            }
        }
        if let Some(max) = self.max_message {
            if max != ring.max_message() {
                let found = ring.max_message().to_string();
                return Err(mismatch("maximum message", max.to_string(), found));
            }
        }
        if let Some(mode) = self.mode {
            let found =
                crate::sys::posix::fstat(segment.posix_fd()?).map_err(|source| Error::Os {
                    context: format!("reading the mode of ring {name}"),
                    source,
                })?;
            let found = found.st_mode & 0o777;
            if found != mode.bits() {
                let asked = format!("{:04o}", mode.bits());
                return Err(mismatch("mode", asked, format!("{found:04o}")));
            }
        }
        Ok(())
    }
}

/// The mapping of a ring and who this endpoint is; shared by both ends.
#[derive(Debug)]
struct Shared {
    name: String,
    ring: RingRef,
    me: u64,
    end: End,
    /// Whether this endpoint's open created the ring.
    created: bool,
    /// This end's lock: held while the endpoint lives (see `endpoint`).
    lock: Option<RangeLock>,
    segment: Segment,
    // Declared last so that it is unmapped after everything that points in.
    mapping: Attachment<ReadWrite>,
}

fn validate_name(name: &str) -> Result<Key> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "ring name {name:?} must be 1 to 200 letters, digits, '-', '_' or '.', not starting with '.'"
        )));
    }
    Key::posix(&format!("{SEGMENT_PREFIX}{name}"))
}

/// How many times an opener goes back to the name after finding the ring
/// there removed under it, before it gives up.
const OPEN_ATTEMPTS: u32 = 32;

impl Shared {
    /// Opens the ring `name` as its `end`, creating it with `options` if
    /// needed. `join` runs under the gate once the end is claimed (its lock
    /// taken, the owner word not yet written) and may refuse.
    fn open<T>(
        name: &str,
        options: &Options,
        end: End,
        mut join: impl FnMut(&RingRef, &Segment) -> Result<T>,
    ) -> Result<(Shared, T)> {
        options.validate()?;
        let key = validate_name(name)?;
        let me = endpoint::this_process()?;
        // A publisher skips the full fence on every message only if every
        // endpoint can receive the sleeper's membarrier (rule 8).
        let membarrier = crate::sys::membarrier::register_global_expedited();
        for _ in 0..OPEN_ATTEMPTS {
            let (segment, mapping, created) = match Segment::open(&key) {
                Ok(segment) => match attach_existing(&segment, name, &options.trust)? {
                    Some(mapping) => (segment, mapping, false),
                    // A half-made ring, removed: go back to the name.
                    None => continue,
                },
                Err(Error::NotFound { .. }) => match create(&key, options) {
                    Ok((segment, mapping)) => (segment, mapping, true),
                    // Another opener created it first: open theirs.
                    Err(Error::AlreadyExists { .. }) => continue,
                    Err(other) => return Err(other),
                },
                Err(other) => return Err(other),
            };
            let gate = endpoint::gate(&segment)?;
            let ring = validate_header(&mapping, name)?;
            let header = ring.header();
            if header.wait.removed.load(Ordering::SeqCst) != 0 {
                // Removed between our open of the name and the gate: the
                // live ring, if any, is at the name now.
                continue;
            }
            if !created {
                options.check_against(&ring, &segment, name)?;
            }
            let owner = owner_word(header, end);
            let Some(lock) = endpoint::try_take(&segment, end)? else {
                return Err(Error::InUse {
                    ring: name.to_owned(),
                    endpoint: end.name(),
                    pid: endpoint::pid_of(owner.load(Ordering::SeqCst)),
                });
            };
            // Dropping `lock` on an error gives the end back untouched.
            let joined = join(&ring, &segment)?;
            owner.store(me, Ordering::SeqCst);
            if !membarrier {
                header.wait.full_fences.store(1, Ordering::SeqCst);
            }
            drop(gate);
            let shared = Shared {
                name: name.to_owned(),
                ring,
                me,
                end,
                created,
                lock: Some(lock),
                segment,
                mapping,
            };
            return Ok((shared, joined));
        }
        Err(Error::Corrupt(format!(
            "ring {name} was removed and made again under this opener {OPEN_ATTEMPTS} times in a row"
        )))
    }

    fn header(&self) -> &Header {
        self.ring.header()
    }

    fn closed(&self) -> bool {
        // Acquire: pairs with the Release in `Producer::close`, so every
        // record committed before the close is visible to a later `peek`.
        self.header().wait.closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether everything committed has been read: the head reached the
    /// tail, or passed a tail that a dead producer had not published yet.
    fn drained(&self) -> bool {
        drained(&self.ring)
    }

    /// Gives up this end and, if `remove` says nothing more can be read
    /// from the ring (looked at under the gate, with this end given up),
    /// removes the ring.
    ///
    /// # Errors
    ///
    /// The removal's: [`Error::PermissionDenied`] when the ring is another
    /// user's (`/dev/shm` is sticky), which then stays for its owner's next
    /// endpoint or `gc`.
    fn leave(&mut self, remove: impl FnOnce(&Shared) -> bool) -> Result<()> {
        let Some(lock) = self.lock.take() else {
            return Ok(());
        };
        // On an error taking the gate (not expected: we hold the file open
        // read-write), still give the end up, and remove nothing.
        let gate = endpoint::gate(&self.segment);
        let owner = owner_word(self.header(), self.end);
        // SeqCst, as everything under the gate: a plain total order.
        let _ = owner.compare_exchange(self.me, 0, Ordering::SeqCst, Ordering::SeqCst);
        drop(lock);
        let gate = gate?;
        let result = if remove(self) {
            remove_exactly(Some(self.header()), &self.segment)
        } else {
            Ok(())
        };
        drop(gate);
        result
    }

    /// `Err(Truncated)` once an access found the segment shrunk by a peer
    /// (the pages it lost read as zeros): checked at every verb.
    #[inline]
    fn intact(&self) -> Result<()> {
        self.mapping.check_intact()
    }

    /// `Err(Truncated)` if the file is shorter than the mapping, faulted or
    /// not: checked by a waiting side with its peer (a cut inside the first
    /// page zeroes the indices without a fault, and both sides would wait
    /// on each other forever).
    fn still_sized(&self) -> Result<()> {
        self.mapping.check_size()
    }

    /// A `Corrupt` found in the ring becomes `Truncated` when the file is
    /// shorter than the mapping: a cut inside the first page zeroes the
    /// indices past it without a fault, and the zeros look like damage.
    /// (Only on the error path, so the `fstat` costs nothing normally.)
    #[cold]
    fn explain(&self, err: Error) -> Error {
        match (&err, self.still_sized()) {
            (Error::Corrupt(_), Err(truncated)) => truncated,
            _ => err,
        }
    }

    /// Whether the ring's file has lost its name (removed by someone else;
    /// a shmkit remover never removes a ring an endpoint holds). An answer
    /// that cannot be had counts as still named.
    fn unlinked(&self) -> bool {
        self.segment
            .posix_fd()
            .ok()
            .and_then(|fd| crate::sys::posix::fstat(fd).ok())
            .is_some_and(|stat| stat.st_nlink == 0)
    }

    /// For the consumer: `Err(Closed)` or `Err(PeerGone)` once no more
    /// records can come, `Ok(())` while they can.
    fn producer_finished(&self) -> Result<()> {
        self.intact()?;
        if self.closed() {
            return Err(Error::Closed {
                ring: self.name.clone(),
            });
        }
        if endpoint::is_held(&self.segment, End::Producer) {
            return Ok(());
        }
        // Free: a producer that left would have closed; one whose word is
        // still there died. (No word: none came yet.)
        let producer = self.header().producer.owner.load(Ordering::SeqCst);
        if producer != 0 {
            return Err(self.peer_gone("producer", producer));
        }
        Ok(())
    }

    fn peer_gone(&self, peer: &'static str, owner: u64) -> Error {
        Error::PeerGone {
            ring: self.name.clone(),
            peer,
            pid: endpoint::pid_of(owner),
        }
    }
}

/// Whether everything committed to `ring` has been read: the head reached
/// the tail, or passed a tail that a dead producer had not published yet.
fn drained(ring: &RingRef) -> bool {
    let header = ring.header();
    let in_flight = header
        .producer
        .tail
        .load(Ordering::SeqCst)
        .wrapping_sub(header.consumer.head.load(Ordering::SeqCst));
    in_flight == 0 || in_flight > ring.capacity()
}

/// The owner word of `end` (see `endpoint`).
fn owner_word(header: &Header, end: End) -> &AtomicU64 {
    match end {
        End::Producer => &header.producer.owner,
        End::Consumer => &header.consumer.owner,
    }
}

/// Creates ring `name`'s segment with its header written, so that no
/// opener ever sees it half made.
fn create(key: &Key, options: &Options) -> Result<(Segment, Attachment<ReadWrite>)> {
    let capacity = options.capacity_len();
    let mode = options.mode.unwrap_or(Mode::OWNER_ONLY);
    Segment::create_initialised(key, HEADER_SIZE + capacity, mode, |segment, mapping| {
        if let Some(gid) = options.group {
            // The group, then the mode again (a chown may clear bits); no
            // other process can open it before the link.
            segment.set_group(gid)?;
            segment.set_mode(mode)?;
        }
        // SAFETY: a fresh mapping of more than HEADER_SIZE bytes,
        // page-aligned, hence a valid place for the atomics of a Header;
        // nobody else can reach it yet (it has no name).
        let header = unsafe { &*mapping.as_mut_ptr().cast::<Header>() };
        let config = &header.config;
        config.version.store(VERSION, Ordering::Relaxed);
        config.capacity.store(capacity, Ordering::Relaxed);
        config
            .max_message
            .store(options.max_message_len(), Ordering::Relaxed);
        config.data_offset.store(HEADER_SIZE, Ordering::Relaxed);
        // Release: publishes the configuration above; pairs with the
        // Acquire in `read_header`. (The link that names the file orders it
        // too; the magic stays the sign of a finished header.)
        config.magic.store(MAGIC, Ordering::Release);
        Ok(())
    })
}

/// Maps an existing ring's segment. A half-made one (of 0 bytes, or without
/// a magic number: its creator died before finishing, since shmkit's own
/// creators publish rings whole) that no process uses is
/// removed at once, and `None` returned; one that a process maps is
/// [`Error::Corrupt`].
fn attach_existing(
    segment: &Segment,
    name: &str,
    trust: &Trust,
) -> Result<Option<Attachment<ReadWrite>>> {
    trust.check(segment, &format!("ring {name}"))?;
    let size = segment.size()?;
    if size > 0 && size < HEADER_SIZE {
        // A creator that died leaves 0 bytes, or the full size: this one
        // was cut.
        return Err(Error::Truncated {
            segment: format!("ring {name}"),
            size,
            expected: HEADER_SIZE,
        });
    }
    if size >= HEADER_SIZE {
        let mapping = segment.attach(ReadWrite)?;
        // Acquire: pairs with the creator's Release of the magic.
        if mapping.atomic_u64(0)?.load(Ordering::Acquire) != 0 {
            return Ok(Some(mapping));
        }
    }
    let gate = endpoint::gate(segment)?;
    match unused(segment) {
        Ok(()) => {}
        Err(users) => {
            return Err(Error::Corrupt(format!(
                "ring {name} was never initialised, and {users}; \
                 `shmkit gc --force {name}` removes it once they are gone"
            )))
        }
    }
    match segment.remove() {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(other) => return Err(other),
    }
    drop(gate);
    Ok(None)
}

/// `Ok` if no process holds an end of the ring or maps its segment; else
/// who does, in words.
fn unused(segment: &Segment) -> std::result::Result<(), String> {
    for end in [End::Producer, End::Consumer] {
        if endpoint::is_held(segment, end) {
            return Err(format!("a live process holds its {} end", end.name()));
        }
    }
    // This process's own mappings do not count: its endpoints hold locks.
    let me = std::process::id();
    match segment.stat() {
        Ok(stat) => {
            let pids: Vec<String> = stat
                .attachers
                .iter()
                .filter(|a| a.pid != me)
                .map(|a| a.pid.to_string())
                .collect();
            if pids.is_empty() {
                return Ok(());
            }
            Err(format!("process {} maps it", pids.join(", ")))
        }
        Err(err) => Err(format!("who maps it cannot be told ({err})")),
    }
}

/// Removes a ring's segment, under its gate, exactly (the name must still
/// stand for it), and marks it removed for openers that mapped it before.
/// One already gone is fine.
/// (`header` is `None` when the caller may not write it, or it is not a
/// valid header: then no opener can have mapped it as a ring.)
fn remove_exactly(header: Option<&Header>, segment: &Segment) -> Result<()> {
    match segment.remove() {
        // Gone already: whoever unlinked it, it is not at the name.
        Ok(()) | Err(Error::NotFound { .. }) => {
            if let Some(header) = header {
                header.wait.removed.store(1, Ordering::SeqCst);
            }
            Ok(())
        }
        Err(other) => Err(other),
    }
}

/// Checks a ring header written by someone else and builds the view.
fn validate_header(mapping: &Attachment<ReadWrite>, name: &str) -> Result<RingRef> {
    let header = read_header(mapping, name)?;
    let config = &header.config;
    let capacity = config.capacity.load(Ordering::Relaxed);
    let max_message = config.max_message.load(Ordering::Relaxed);
    // SAFETY: read_header checked that the data area is inside the mapping.
    let data = unsafe { NonNull::new_unchecked(mapping.as_mut_ptr().add(HEADER_SIZE as usize)) };
    let header = NonNull::from(header);
    // SAFETY: header and data point into `mapping`, which the Shared that
    // owns this view keeps alive; the data area has `capacity` bytes after
    // a page-aligned start plus 512, so it is 8-aligned; read_header
    // validated capacity and max_message.
    Ok(unsafe { RingRef::new(header, data, capacity, max_message) })
}

/// The header of a ring mapping, with its configuration validated: magic,
/// version, flags, capacity, data offset and maximum message.
fn read_header<'m, A: AccessMode>(mapping: &'m Attachment<A>, name: &str) -> Result<&'m Header> {
    let corrupt = |what: String| Error::Corrupt(format!("ring {name}: {what}"));
    let len = mapping.len() as u64;
    if len < HEADER_SIZE {
        return Err(corrupt(format!(
            "segment of {len} bytes is smaller than the header"
        )));
    }
    // SAFETY: at least HEADER_SIZE bytes, page aligned; only atomics inside.
    let header = unsafe { &*mapping.as_ptr().cast::<Header>() };
    let config = &header.config;
    // Acquire: pairs with the creator's Release of the magic.
    let magic = config.magic.load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(corrupt(format!(
            "magic {magic:#018x} is not a shmkit ring's"
        )));
    }
    let version = config.version.load(Ordering::Relaxed);
    if version != VERSION {
        return Err(Error::VersionMismatch {
            segment: format!("ring {name}"),
            found: version,
            expected: VERSION,
        });
    }
    let flags = config.flags.load(Ordering::Relaxed);
    let capacity = config.capacity.load(Ordering::Relaxed);
    let max_message = config.max_message.load(Ordering::Relaxed);
    let data_offset = config.data_offset.load(Ordering::Relaxed);
    if flags != 0 {
        return Err(corrupt(format!("unknown flags {flags:#x}")));
    }
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(corrupt(format!(
            "capacity {capacity} is not a power of two in range"
        )));
    }
    if data_offset != HEADER_SIZE {
        return Err(corrupt(format!(
            "data_offset is {data_offset}; the data area always starts at {HEADER_SIZE}"
        )));
    }
    if HEADER_SIZE + capacity > len {
        return Err(Error::Truncated {
            segment: format!("ring {name}"),
            size: len,
            expected: HEADER_SIZE + capacity,
        });
    }
    if max_message > layout::max_message_for(capacity) {
        return Err(corrupt(format!(
            "maximum message {max_message} is too large for capacity {capacity}"
        )));
    }
    Ok(header)
}

/// The sending end of a ring.
///
/// Dropping it closes the stream: the consumer gets every message sent,
/// then [`Error::Closed`].
#[derive(Debug)]
pub struct Producer {
    cursor: ProducerCursor,
    waiter: Waiter,
    consumers: ConsumersSeen,
    wait_for_new_consumer: bool,
    shared: Shared,
}

/// What a producer knew of consumers when it opened, to tell later that
/// its consumer left.
#[derive(Clone, Copy, Debug)]
struct ConsumersSeen {
    /// The header's `joined` count then.
    joined: u64,
    /// Whether a consumer held the ring then (or had died holding it).
    present: bool,
}

impl ConsumersSeen {
    /// Whether a consumer came (or was there) and is gone now.
    fn one_left(self, header: &Header, segment: &Segment) -> bool {
        !endpoint::is_held(segment, End::Consumer)
            && (self.present || header.consumer.joined.load(Ordering::SeqCst) != self.joined)
    }
}

impl Producer {
    /// Opens (or creates) ring `name` as its producer, with default
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if a live process is the producer already;
    /// [`Error::Closed`] if the ring's producer closed it and the consumer
    /// has not yet read everything and been told of the close;
    /// [`Error::OptionMismatch`] if the ring exists with other options
    /// than those given; [`Error::Corrupt`] or [`Error::VersionMismatch`]
    /// if the segment is not a ring this library can read;
    /// [`Error::InvalidArgument`] for a bad name.
    ///
    /// # Reopening a closed ring
    ///
    /// A ring whose producer closed it can have a new producer once its
    /// consumer has read everything and received [`Error::Closed`] (or no
    /// consumer holds it): the new stream then follows the old in the same
    /// ring, and the consumer, if it goes on reading, receives it. A
    /// producer that died is simply replaced: no close is sent.
    pub fn open(name: &str) -> Result<Producer> {
        Producer::open_with(name, &Options::default())
    }

    /// Opens (or creates) ring `name` as its producer.
    pub fn open_with(name: &str, options: &Options) -> Result<Producer> {
        let (shared, (cursor, consumers)) =
            Shared::open(name, options, End::Producer, |ring, segment| {
                let header = ring.header();
                let closed = header.wait.closed.load(Ordering::SeqCst);
                let told = closed == CLOSE_SEEN || !endpoint::is_held(segment, End::Consumer);
                if closed != OPEN && !(told && drained(ring)) {
                    return Err(Error::Closed {
                        ring: name.to_owned(),
                    });
                }
                // Acquire: pairs with the consumer's Release of `head`.
                let head = header.consumer.head.load(Ordering::Acquire);
                // After a crash the published tail may lag the records; after a
                // clean hand-over this finds it exact at once.
                let published = header.producer.tail.load(Ordering::Relaxed);
                let tail = ring.recover_tail(published, head)?;
                header.producer.tail.store(tail, Ordering::Relaxed);
                // Reopens a closed, drained stream.
                header.wait.closed.store(OPEN, Ordering::SeqCst);
                let consumers = ConsumersSeen {
                    joined: header.consumer.joined.load(Ordering::SeqCst),
                    present: endpoint::is_held(segment, End::Consumer)
                        || header.consumer.owner.load(Ordering::SeqCst) != 0,
                };
                Ok((
                    ProducerCursor {
                        tail,
                        cached_head: head,
                    },
                    consumers,
                ))
            })?;
        Ok(Producer {
            cursor,
            waiter: Waiter::new(options.waiting),
            consumers,
            wait_for_new_consumer: options.wait_for_new_consumer,
            shared,
        })
    }

    /// Whether this producer's open created the ring (else it existed).
    pub fn created(&self) -> bool {
        self.shared.created
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The largest message this ring carries.
    pub fn max_message(&self) -> usize {
        self.shared.ring.max_message() as usize
    }

    /// Bytes in the ring's data area.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Sends one message, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if longer than [`max_message`](Producer::max_message);
    /// [`Error::PeerGone`] if the consumer died, and [`Error::PeerLeft`] if
    /// it left, while the ring was full (unless
    /// [`Options::wait_for_new_consumer`]); a producer that never had a
    /// consumer waits for one.
    #[inline]
    pub fn send(&mut self, message: &[u8]) -> Result<()> {
        self.grant(message.len())?.fill_and_commit(message);
        Ok(())
    }

    /// Sends one message if there is room now, else [`Error::Full`].
    pub fn try_send(&mut self, message: &[u8]) -> Result<()> {
        self.try_grant(message.len())?.fill_and_commit(message);
        Ok(())
    }

    /// Sends one message, waiting at most `timeout` for room
    /// ([`Error::Timeout`] after that).
    pub fn send_timeout(&mut self, message: &[u8], timeout: Duration) -> Result<()> {
        self.grant_timeout(message.len(), timeout)?
            .fill_and_commit(message);
        Ok(())
    }

    /// Reserves `len` bytes in the ring to write a message in place,
    /// waiting while the ring is full. Nothing is visible to the consumer
    /// until [`WriteGrant::commit`].
    #[inline]
    pub fn grant(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.grant_until(len, None)
    }

    /// [`grant`](Producer::grant) if there is room now, else [`Error::Full`].
    pub fn try_grant(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.shared.intact()?;
        match self
            .shared
            .ring
            .reserve(&mut self.cursor, len as u64)
            .map_err(|e| self.shared.explain(e))?
        {
            Some(slot) => Ok(WriteGrant {
                producer: self,
                slot,
            }),
            None => {
                let used = self.cursor.tail.wrapping_sub(self.cursor.cached_head);
                Err(Error::Full {
                    ring: self.shared.name.clone(),
                    needed: layout::record_size(len as u64) + layout::RECORD_HEADER,
                    free: self.shared.ring.capacity().saturating_sub(used),
                })
            }
        }
    }

    /// [`grant`](Producer::grant), waiting at most `timeout`
    /// ([`Error::Timeout`] after that; otherwise the errors of `grant`).
    pub fn grant_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.grant_until(len, Some(Instant::now() + timeout))
    }

    #[inline]
    fn grant_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<WriteGrant<'_>> {
        self.shared.intact()?;
        // The common case, room at once, without the waiter's set-up.
        if let Some(slot) = self
            .shared
            .ring
            .reserve(&mut self.cursor, len as u64)
            .map_err(|e| self.shared.explain(e))?
        {
            return Ok(WriteGrant {
                producer: self,
                slot,
            });
        }
        let shared = &self.shared;
        let cursor = &mut self.cursor;
        let header = shared.header();
        let (consumers, wait_for_new) = (self.consumers, self.wait_for_new_consumer);
        let slot = self.waiter.wait(
            &header.wait,
            &header.wait.producer_sleeping,
            deadline,
            &shared.name,
            || {
                let reserved = shared.ring.reserve(cursor, len as u64);
                reserved.map_err(|e| shared.explain(e))
            },
            || {
                shared
                    .still_sized()
                    .and_then(|()| consumer_gone(shared, consumers, wait_for_new))
            },
        )?;
        Ok(WriteGrant {
            producer: self,
            slot,
        })
    }

    /// Closes the stream: the consumer receives what was sent, then
    /// [`Error::Closed`]. Dropping the producer does the same, but cannot
    /// report an error.
    ///
    /// The ring stays for a consumer to read, even one that starts later
    /// (an empty stream is delivered too), unless a consumer came during
    /// this producer's time, read everything and left: then the ring is
    /// removed.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the ring should be removed but is
    /// another user's (`/dev/shm` is sticky): the stream was closed, and
    /// the ring stays until its owner's next endpoint leaves it or
    /// [`collect_garbage`] runs as its owner.
    pub fn close(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if self.shared.lock.is_none() {
            return Ok(());
        }
        let header = self.shared.header();
        // Release: every commit happens before the close is seen; pairs
        // with the Acquire in `Shared::closed`. (SeqCst for `Shared::leave`.)
        header.wait.closed.store(CLOSED, Ordering::SeqCst);
        self.shared.ring.wake_consumer();
        let consumers = self.consumers;
        self.shared.leave(|shared| {
            consumers.one_left(shared.header(), &shared.segment) && shared.drained()
        })
    }
}

/// For a waiting producer: `Err` once its consumer is gone and will not
/// come back for it.
fn consumer_gone(shared: &Shared, consumers: ConsumersSeen, wait_for_new: bool) -> Result<()> {
    shared.intact()?;
    let header = shared.header();
    let consumer_held = endpoint::is_held(&shared.segment, End::Consumer);
    if !consumer_held && shared.unlinked() {
        // Removed from /dev/shm under us (`shmkit rm`): no consumer can
        // ever find it again, so waiting for one would be forever.
        return Err(Error::PeerLeft {
            ring: shared.name.clone(),
            peer: "consumer",
        });
    }
    if wait_for_new || !consumers.one_left(header, &shared.segment) {
        return Ok(());
    }
    // Free: one whose word is still there died; one that left cleared it.
    match header.consumer.owner.load(Ordering::SeqCst) {
        0 => Err(Error::PeerLeft {
            ring: shared.name.clone(),
            peer: "consumer",
        }),
        owner => Err(shared.peer_gone("consumer", owner)),
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // A drop cannot report: a ring that could not be removed stays for
        // its owner's next endpoint or gc, as `close` documents.
        let _ = self.finish();
    }
}

/// Space reserved in the ring for one message, written in place.
///
/// Dereferences to the reserved bytes (`&mut [u8]`, which only this
/// producer may touch until the commit). [`commit`](WriteGrant::commit)
/// publishes them; dropping the grant or calling
/// [`abort`](WriteGrant::abort) discards them.
#[must_use = "a grant that is not committed sends nothing"]
#[derive(Debug)]
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    slot: Slot,
}

impl WriteGrant<'_> {
    /// Publishes the whole reserved length as one message.
    #[inline]
    pub fn commit(self) {
        let len = self.slot.len as usize;
        self.commit_len(len);
    }

    /// Publishes the first `len` bytes as one message (the rest of the
    /// reservation is given back).
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
        let producer = &mut *self.producer;
        producer
            .shared
            .ring
            .commit(&mut producer.cursor, self.slot, len as u64);
    }

    /// Discards the reservation; the consumer sees nothing.
    pub fn abort(self) {}

    /// The first of the grant's `len()` bytes, to write through a pointer
    /// instead of a `&mut [u8]` over shared memory.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.producer.shared.ring.payload(self.slot)
    }

    #[inline]
    fn fill_and_commit(mut self, message: &[u8]) {
        debug_assert_eq!(message.len() as u64, self.slot.len);
        // SAFETY: the slot's message.len() bytes are in the data area and
        // this producer's until the commit (rule 2); `message` is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), self.as_mut_ptr(), message.len())
        };
        self.commit();
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the slot lies inside the data area (reserve checked it)
        // and belongs to this producer until committed (rule 2): no other
        // process reads or writes it meanwhile.
        unsafe {
            std::slice::from_raw_parts(
                self.producer.shared.ring.payload(self.slot),
                self.slot.len as usize,
            )
        }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.producer.shared.ring.payload(self.slot),
                self.slot.len as usize,
            )
        }
    }
}

/// The receiving end of a ring.
///
/// # Delivery and sequence numbers
///
/// Every message has a sequence number, [`ReadGrant::sequence`] (or
/// [`last_sequence`](Consumer::last_sequence) after a copying receive, or
/// the first argument of [`drain_with_sequence`](Consumer::drain_with_sequence)):
/// the position of its record in the ring's byte stream. It grows with
/// every message (by the record's size, not by 1), and a message keeps it
/// when it is delivered again to a consumer that takes over after a crash,
/// so an application that stores the last number it acted on can skip
/// what it already saw. A new ring (after the old one was removed) starts
/// again from 0.
///
/// What survives a crash of this process depends on the verb: a message
/// is handed back to the producer when [`recv`](Consumer::recv) returns
/// (at most once: if the process dies before it used the copy, the
/// message is lost), when a [`ReadGrant`] is dropped (at least once: if
/// it dies holding the grant, the next consumer gets the message again),
/// or when [`drain`](Consumer::drain) returns (at least once for the whole
/// batch). The README has the table, under "What survives a crash".
#[derive(Debug)]
pub struct Consumer {
    cursor: ConsumerCursor,
    waiter: Waiter,
    shared: Shared,
    last_sequence: Option<u64>,
}

impl Consumer {
    /// Opens (or creates) ring `name` as its consumer, with default
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if a live process is the consumer already;
    /// [`Error::OptionMismatch`] if the ring exists with other options than
    /// those given; [`Error::Corrupt`] or [`Error::VersionMismatch`] if the
    /// segment is not a ring this library can read;
    /// [`Error::InvalidArgument`] for a bad name.
    pub fn open(name: &str) -> Result<Consumer> {
        Consumer::open_with(name, &Options::default())
    }

    /// Opens (or creates) ring `name` as its consumer.
    pub fn open_with(name: &str, options: &Options) -> Result<Consumer> {
        let (shared, head) = Shared::open(name, options, End::Consumer, |ring, _| {
            let consumer = &ring.header().consumer;
            let head = consumer.head.load(Ordering::Acquire);
            protocol::check_position(head, "head")?;
            let joined = consumer.joined.load(Ordering::SeqCst).wrapping_add(1);
            consumer.joined.store(joined, Ordering::SeqCst);
            Ok(head)
        })?;
        Ok(Consumer {
            cursor: ConsumerCursor { head },
            waiter: Waiter::new(options.waiting),
            shared,
            last_sequence: None,
        })
    }

    /// Whether this consumer's open created the ring (else it existed).
    pub fn created(&self) -> bool {
        self.shared.created
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The largest message this ring carries.
    pub fn max_message(&self) -> usize {
        self.shared.ring.max_message() as usize
    }

    /// Bytes in the ring's data area.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Leaves the ring. If no producer holds it and everything was read,
    /// the ring is removed (a producer that comes later makes a new one);
    /// else it stays, with what is left in it, for the next consumer.
    /// Dropping the consumer does the same, but cannot report an error.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the ring should be removed but is
    /// another user's (`/dev/shm` is sticky): it stays until its owner's
    /// next endpoint leaves it or [`collect_garbage`] runs as its owner.
    pub fn close(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        self.shared
            .leave(|shared| !endpoint::is_held(&shared.segment, End::Producer) && shared.drained())
    }

    /// Records that the consumer was told of the close, so that a new
    /// producer may reopen the ring; passes any error on.
    fn told(&self, err: Error) -> Error {
        if matches!(err, Error::Closed { .. }) {
            let closed = &self.shared.header().wait.closed;
            let _ = closed.compare_exchange(CLOSED, CLOSE_SEEN, Ordering::SeqCst, Ordering::SeqCst);
        }
        err
    }

    /// Receives one message into `buf`, waiting while the ring is empty;
    /// returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the producer closed and everything was read;
    /// [`Error::PeerGone`] once the producer died and everything it
    /// committed was read; [`Error::TooLarge`] if `buf` is shorter than the
    /// message (which stays in the ring); [`Error::Corrupt`] for a bad record.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let slot = self.next_until(None)?;
        self.copy_out(slot, buf)
    }

    /// [`recv`](Consumer::recv) if a message is there now, else
    /// [`Error::Empty`].
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let slot = self.try_next()?;
        self.copy_out(slot, buf)
    }

    /// [`recv`](Consumer::recv), waiting at most `timeout`
    /// ([`Error::Timeout`] after that; otherwise the errors of `recv`).
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        let slot = self.next_until(Some(Instant::now() + timeout))?;
        self.copy_out(slot, buf)
    }

    /// [`recv`](Consumer::recv) into `buf`, replacing its contents and
    /// growing it to fit (never [`Error::TooLarge`]), for callers that do
    /// not know how large messages are. [`ReadGrant::copy_to`] does the
    /// same while keeping the message in the ring.
    ///
    /// ```
    /// # use shmkit::ring::{Consumer, Producer};
    /// # let name = format!("doc-recv-vec-{}", std::process::id());
    /// # let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// producer.send(&[7; 3000])?;
    /// producer.send(b"kept until written")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(consumer.recv_vec(&mut buf)?, 3000);
    /// let message = consumer.read()?;
    /// message.copy_to(&mut buf);
    /// assert_eq!(buf, b"kept until written");
    /// message.release(); // only now is its space handed back
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_vec(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.read()?.copy_to(buf);
        Ok(buf.len())
    }

    /// The next message, read in place, waiting while the ring is empty.
    /// Its space is handed back when the grant is dropped or released.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGrant<'_>> {
        let slot = self.next_until(None)?;
        Ok(ReadGrant {
            consumer: self,
            slot,
        })
    }

    /// [`read`](Consumer::read) if a message is there now, else
    /// [`Error::Empty`].
    pub fn try_read(&mut self) -> Result<ReadGrant<'_>> {
        let slot = self.try_next()?;
        Ok(ReadGrant {
            consumer: self,
            slot,
        })
    }

    /// [`read`](Consumer::read), waiting at most `timeout`
    /// ([`Error::Timeout`] after that; otherwise the errors of `read`).
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGrant<'_>> {
        let slot = self.next_until(Some(Instant::now() + timeout))?;
        Ok(ReadGrant {
            consumer: self,
            slot,
        })
    }

    /// Hands every message that is in the ring now to `f`, in order, then
    /// gives their space back with one update of the ring's index (and one
    /// wake-up check); returns how many there were. Does not wait: `Ok(0)`
    /// when the ring is empty. Reads at most one lap of the data area (all
    /// a ring holds at once), so that records going round forever in a
    /// corrupt ring cannot keep it from returning.
    ///
    /// ```
    /// use shmkit::ring::{Consumer, Producer};
    ///
    /// let name = format!("doc-drain-{}", std::process::id());
    /// let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// for word in ["one", "two", "three"] {
    ///     producer.send(word.as_bytes())?;
    /// }
    /// let mut seen = Vec::new();
    /// assert_eq!(consumer.drain(|message| seen.push(message.to_vec()))?, 3);
    /// assert_eq!(seen, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    /// assert_eq!(consumer.drain(|_| unreachable!())?, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<usize> {
        self.drain_with_sequence(|_, message| f(message))
    }

    /// [`drain`](Consumer::drain), handing `f` each message's sequence
    /// number too. The batch is given back when this returns: if the
    /// process dies inside it, the next consumer gets the whole batch again,
    /// with the same numbers.
    ///
    /// ```
    /// use shmkit::ring::{Consumer, Producer};
    ///
    /// let name = format!("doc-drain-seq-{}", std::process::id());
    /// let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// producer.send(b"one")?;
    /// producer.send(b"two")?;
    /// let mut numbers = Vec::new();
    /// consumer.drain_with_sequence(|sequence, _| numbers.push(sequence))?;
    /// assert!(numbers[0] < numbers[1]);
    /// assert_eq!(consumer.last_sequence(), Some(numbers[1]));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn drain_with_sequence(&mut self, mut f: impl FnMut(u64, &[u8])) -> Result<usize> {
        self.drain_slots(|sequence, message| {
            f(sequence, message);
            true
        })
    }

    /// The batch read under [`drain_with_sequence`](Consumer::drain_with_sequence)
    /// and [`drain_while`](Consumer::drain_while): hands messages to `f`
    /// until it returns false (that message stays in the ring), then
    /// publishes the new head once.
    fn drain_slots(&mut self, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<usize> {
        self.shared.intact()?;
        let ring = self.shared.ring;
        let last_sequence = &mut self.last_sequence;
        let count = ring.drain_while(&mut self.cursor, |slot| {
            // SAFETY: a committed record inside the data area (record_at
            // checked it), which the producer leaves alone until the head
            // passes it, after `f` returns (rule 2).
            let message =
                unsafe { std::slice::from_raw_parts(ring.payload(slot), slot.len as usize) };
            let taken = f(slot.position, message);
            if taken {
                *last_sequence = Some(slot.position);
            }
            taken
        });
        if matches!(count, Ok(n) if n > 0) || count.is_err() {
            ring.wake_producer();
        }
        // Messages read from pages a peer truncated away were zeros.
        let count = count
            .map_err(|e| self.shared.explain(e))
            .and_then(|n| self.shared.intact().map(|()| n));
        count.map(|n| n as usize)
    }

    #[inline]
    fn copy_out(&mut self, slot: Slot, buf: &mut [u8]) -> Result<usize> {
        let len = slot.len as usize;
        if len > buf.len() {
            return Err(Error::TooLarge {
                what: "message",
                size: slot.len,
                limit: buf.len() as u64,
            });
        }
        // SAFETY: as in `drain`; `buf` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.shared.ring.payload(slot), buf.as_mut_ptr(), len)
        };
        // Zeros from pages a peer truncated away are not the message.
        self.shared.intact()?;
        self.shared.ring.release(&mut self.cursor, slot);
        self.last_sequence = Some(slot.position);
        self.shared.ring.wake_producer();
        Ok(len)
    }

    /// The sequence number of the last message this consumer received
    /// (by any verb), `None` before the first. See [`Consumer`] for what
    /// the numbers are.
    ///
    /// ```
    /// use shmkit::ring::{Consumer, Producer};
    ///
    /// let name = format!("doc-last-sequence-{}", std::process::id());
    /// let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// producer.send(b"hello")?;
    /// let mut buf = [0u8; 16];
    /// consumer.recv(&mut buf)?;
    /// assert_eq!(consumer.last_sequence(), Some(0)); // the first record is at 0
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }

    fn try_next(&mut self) -> Result<Slot> {
        self.shared.intact()?;
        if let Some(slot) = self
            .shared
            .ring
            .peek(&mut self.cursor)
            .map_err(|e| self.shared.explain(e))?
        {
            return Ok(slot);
        }
        let end = match self.shared.producer_finished() {
            Ok(()) => Error::Empty {
                ring: self.shared.name.clone(),
            },
            Err(end) => end,
        };
        // Whatever was committed before the end (or the check) is still
        // delivered.
        match self
            .shared
            .ring
            .peek(&mut self.cursor)
            .map_err(|e| self.shared.explain(e))?
        {
            Some(slot) => Ok(slot),
            None => Err(self.told(end)),
        }
    }

    #[inline]
    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Slot> {
        self.shared.intact()?;
        // The common case, a message at once, without the waiter's set-up.
        if let Some(slot) = self
            .shared
            .ring
            .peek(&mut self.cursor)
            .map_err(|e| self.shared.explain(e))?
        {
            return Ok(slot);
        }
        let shared = &self.shared;
        let cursor = &mut self.cursor;
        let header = shared.header();
        let next = self.waiter.wait(
            &header.wait,
            &header.wait.consumer_sleeping,
            deadline,
            &shared.name,
            || shared.ring.peek(cursor).map_err(|e| shared.explain(e)),
            || {
                shared
                    .still_sized()
                    .and_then(|()| shared.producer_finished())
            },
        );
        next.map_err(|err| self.told(err))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A drop cannot report: a ring that could not be removed stays for
        // its owner's next endpoint or gc, as `close` documents.
        let _ = self.finish();
    }
}

/// One message, read in place. Dereferences to its bytes; dropping it (or
/// [`release`](ReadGrant::release)) hands its space back to the producer.
#[must_use = "dropping a read grant at once discards the message"]
#[derive(Debug)]
pub struct ReadGrant<'a> {
    consumer: &'a mut Consumer,
    slot: Slot,
}

impl ReadGrant<'_> {
    /// Hands the message's space back to the producer.
    pub fn release(self) {}

    /// The message's sequence number (see [`Consumer`]): the same if it is
    /// delivered again after this process dies holding the grant.
    pub fn sequence(&self) -> u64 {
        self.slot.position
    }

    /// The message's length in bytes (without forming a slice over it).
    pub fn len(&self) -> usize {
        self.slot.len as usize
    }

    /// Whether the message is empty (a message may have 0 bytes).
    pub fn is_empty(&self) -> bool {
        self.slot.len == 0
    }

    /// Replaces `buf`'s contents with a copy of the message made through
    /// the raw pointer (see [`Consumer::recv_vec`] for an example).
    pub fn copy_to(&self, buf: &mut Vec<u8>) {
        let len = self.len();
        buf.clear();
        buf.reserve(len);
        // SAFETY: the message's `len` bytes are a committed record inside
        // the data area that the producer leaves alone until this grant is
        // dropped (rule 2); `buf` is our own memory with room for `len`
        // bytes, which the copy initialises before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr(), buf.as_mut_ptr(), len);
            buf.set_len(len);
        }
    }

    /// The first of the message's [`len`](ReadGrant::len) bytes, to copy
    /// out through a pointer instead of a `&[u8]` over shared memory.
    pub fn as_ptr(&self) -> *const u8 {
        self.consumer.shared.ring.payload(self.slot)
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: a committed record inside the data area (peek checked it);
        // the producer does not write it until we release it (rule 2).
        unsafe {
            std::slice::from_raw_parts(
                self.consumer.shared.ring.payload(self.slot),
                self.slot.len as usize,
            )
        }
    }
}

impl Drop for ReadGrant<'_> {
    #[inline]
    fn drop(&mut self) {
        let consumer = &mut *self.consumer;
        consumer
            .shared
            .ring
            .release(&mut consumer.cursor, self.slot);
        consumer.last_sequence = Some(self.slot.position);
        consumer.shared.ring.wake_producer();
    }
}
