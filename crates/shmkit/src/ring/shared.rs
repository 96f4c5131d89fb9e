//! What both ends share: the mapping, the gate under which an end opens,
//! leaves and removes its ring, and the checks of the header.

use super::*;
pub(super) use crate::segment::format::{remove_exactly, Format};
use crate::segment::format::{Creation, Made, Opened};
use crate::sync::AtomicU32;

/// The mapping of a ring and who this endpoint is; shared by both ends.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) name: String,
    /// `ring NAME`, as errors name it.
    pub(super) place: String,
    pub(super) ring: RingRef,
    pub(super) me: u64,
    pub(super) end: End,
    /// Whether this endpoint's open created the ring.
    pub(super) created: bool,
    /// This end's lock: held while the endpoint lives (see `endpoint`).
    pub(super) lock: Option<RangeLock>,
    pub(super) segment: Segment,
    // Declared last so that it is unmapped after everything that points in.
    pub(super) mapping: Attachment<ReadWrite>,
}

/// How a ring keeps its segment (see `segment::format`).
pub(super) const FORMAT: Format = Format {
    noun: "ring",
    prefix: SEGMENT_PREFIX,
    header_size: HEADER_SIZE,
    magic: MAGIC,
    version: VERSION,
    gate: endpoint::GATE_BYTE,
    // The producer's byte (128) and the consumer's (256).
    members: 128..257,
};

pub(super) fn validate_name(name: &str) -> Result<Key> {
    FORMAT.key(name)
}

impl Shared {
    /// Opens the ring `name` as its `end`, creating it with `options` if
    /// needed. `join` runs under the gate once the end is claimed (its lock
    /// taken, the owner word not yet written) and may refuse.
    pub(super) fn open<T>(
        name: &str,
        options: &Options,
        end: End,
        mut join: impl FnMut(&RingRef, &Segment) -> Result<T>,
    ) -> Result<(Shared, T)> {
        options.validate()?;
        let me = endpoint::this_process()?;
        // A publisher skips the full fence on every message only if every
        // endpoint can receive the sleeper's membarrier (rule 8).
        let membarrier = crate::sys::membarrier::register_global_expedited();
        let (found, gate) = FORMAT.find_or_create(
            name,
            &options.trust,
            || creation(options),
            |mapping| {
                initialise(mapping, options);
                Ok(())
            },
            |segment, mapping, made| {
                let ring = validate_header(&mapping, name)?;
                Ok(Found {
                    segment,
                    mapping,
                    ring,
                    made,
                })
            },
        )?;
        let Found {
            segment,
            mapping,
            ring,
            made,
        } = found;
        let created = made == Made::Created;
        if !created {
            options.check_against(&ring, &segment, name)?;
        }
        let header = ring.header();
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
            place: FORMAT.place(name),
            ring,
            me,
            end,
            created,
            lock: Some(lock),
            segment,
            mapping,
        };
        Ok((shared, joined))
    }

    pub(super) fn header(&self) -> &Header {
        self.ring.header()
    }

    pub(super) fn closed(&self) -> bool {
        // Acquire: pairs with the (SeqCst) store in `Producer::finish`, so
        // every record committed before the close is visible to a later
        // `peek`.
        self.header().wait.closed.load(Ordering::Acquire) != OPEN
    }

    /// Whether everything committed has been read: the head reached the
    /// tail, or passed a tail that a dead producer had not published yet.
    pub(super) fn drained(&self) -> bool {
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
    pub(super) fn leave(&mut self, remove: impl FnOnce(&Shared) -> bool) -> Result<()> {
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
            remove_exactly(Some(&self.header().wait.removed), &self.segment)
        } else {
            Ok(())
        };
        drop(gate);
        result
    }

    /// `Err(Truncated)` once an access found the segment shrunk by a peer
    /// (the pages it lost read as zeros): checked at every verb.
    #[inline]
    pub(super) fn intact(&self) -> Result<()> {
        self.mapping.check_intact()
    }

    /// `Err(Truncated)` if the file is shorter than the mapping, faulted or
    /// not: checked by a waiting side with its peer (a cut inside the first
    /// page zeroes the indices without a fault, and both sides would wait
    /// on each other forever).
    pub(super) fn still_sized(&self) -> Result<()> {
        self.mapping.check_size()
    }

    /// A `Corrupt` found in the ring becomes `Truncated` when the file is
    /// shorter than the mapping: a cut inside the first page zeroes the
    /// indices past it without a fault, and the zeros look like damage.
    /// (Only on the error path, so the `fstat` costs nothing normally.)
    #[cold]
    pub(super) fn explain(&self, err: Error) -> Error {
        self.mapping.explain(err)
    }

    /// Whether the ring's file has lost its name (removed by someone else;
    /// a shmkit remover never removes a ring an endpoint holds). An answer
    /// that cannot be had counts as still named.
    pub(super) fn unlinked(&self) -> bool {
        self.segment
            .posix_fd()
            .ok()
            .and_then(|fd| crate::sys::posix::fstat(fd).ok())
            .is_some_and(|stat| stat.st_nlink == 0)
    }

    /// For the consumer: `Err(Closed)` or `Err(PeerGone)` once no more
    /// records can come, `Ok(())` while they can.
    pub(super) fn producer_finished(&self) -> Result<()> {
        // No `intact` here: both callers have just checked (`try_next`,
        // and the waiter's `still_sized`).
        if self.closed() {
            return Err(Error::Closed {
                place: self.place.clone(),
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

    pub(super) fn peer_gone(&self, peer: &'static str, owner: u64) -> Error {
        Error::PeerGone {
            place: self.place.clone(),
            peer,
            pid: endpoint::pid_of(owner),
        }
    }
}

/// Whether everything committed to `ring` has been read: the head reached
/// the tail, or passed a tail that a dead producer had not published yet.
pub(super) fn drained(ring: &RingRef) -> bool {
    let header = ring.header();
    let in_flight = header
        .producer
        .tail
        .load(Ordering::SeqCst)
        .wrapping_sub(header.consumer.head.load(Ordering::SeqCst));
    in_flight == 0 || in_flight > ring.capacity()
}

/// The owner word of `end` (see `endpoint`).
pub(super) fn owner_word(header: &Header, end: End) -> &AtomicU64 {
    match end {
        End::Producer => &header.producer.owner,
        End::Consumer => &header.consumer.owner,
    }
}

/// How a ring of `options` is made when an opener finds none: with the
/// defaults for the options not given, which the maximum message given
/// must then fit ([`Error::TooLarge`]; checked only here, since an
/// existing ring's own capacity is what counts when it is found).
fn creation(options: &Options) -> Result<Creation> {
    options.fits(options.capacity_len())?;
    Ok(Creation {
        size: HEADER_SIZE + options.capacity_len(),
        mode: options.mode.unwrap_or(Mode::OWNER_ONLY),
        group: options.group,
    })
}

/// Writes the header of a ring of `options` into a fresh mapping.
fn initialise(mapping: &Attachment<ReadWrite>, options: &Options) {
    // SAFETY: a fresh mapping of more than HEADER_SIZE bytes, page-aligned,
    // hence a valid place for the atomics of a Header; nobody else can
    // reach it yet (it has no name).
    let header = unsafe { &*mapping.as_mut_ptr().cast::<Header>() };
    let config = &header.config;
    config.version.store(VERSION, Ordering::Relaxed);
    config
        .capacity
        .store(options.capacity_len(), Ordering::Relaxed);
    config
        .max_message
        .store(options.max_message_len(), Ordering::Relaxed);
    config.data_offset.store(HEADER_SIZE, Ordering::Relaxed);
    // Release: publishes the configuration above; pairs with the Acquire in
    // `read_header`. (The link that names the file orders it too; the magic
    // stays the sign of a finished header.)
    config.magic.store(MAGIC, Ordering::Release);
}

/// A ring's segment as `find_or_create` found or made it, its header
/// checked.
struct Found {
    segment: Segment,
    mapping: Attachment<ReadWrite>,
    ring: RingRef,
    made: Made,
}

impl Opened for Found {
    fn segment(&self) -> &Segment {
        &self.segment
    }

    fn removed(&self) -> &AtomicU32 {
        &self.ring.header().wait.removed
    }
}

/// `Ok` if no process holds an end of the ring or maps its segment; else
/// who does, in words.
pub(super) fn unused(segment: &Segment) -> std::result::Result<(), String> {
    FORMAT.unused(segment)
}

/// Checks a ring header written by someone else and builds the view.
pub(super) fn validate_header(mapping: &Attachment<ReadWrite>, name: &str) -> Result<RingRef> {
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
pub(super) fn read_header<'m, A: AccessMode>(
    mapping: &'m Attachment<A>,
    name: &str,
) -> Result<&'m Header> {
    FORMAT.check_header(mapping, name)?;
    let corrupt = |what: String| Error::Corrupt(format!("ring {name}: {what}"));
    let len = mapping.len() as u64;
    // SAFETY: at least HEADER_SIZE bytes (checked), page aligned; only
    // atomics inside.
    let header = unsafe { &*mapping.as_ptr().cast::<Header>() };
    let config = &header.config;
    let capacity = config.capacity.load(Ordering::Relaxed);
    let max_message = config.max_message.load(Ordering::Relaxed);
    let data_offset = config.data_offset.load(Ordering::Relaxed);
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
