//! The sending end of a ring and its write grants.

use super::*;

/// The sending end of a ring.
///
/// Dropping it closes the stream: the consumer gets every message sent,
/// then [`Error::Closed`].
#[derive(Debug)]
pub struct Producer {
    pub(super) cursor: ProducerCursor,
    pub(super) waiter: Waiter,
    pub(super) consumers: ConsumersSeen,
    pub(super) wait_for_new_consumer: bool,
    pub(super) shared: Shared,
}

/// What a producer knew of consumers when it opened, to tell later that
/// its consumer left.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConsumersSeen {
    /// The header's `joined` count then.
    pub(super) joined: u64,
    /// Whether a consumer held the ring then (or had died holding it).
    pub(super) present: bool,
}

impl ConsumersSeen {
    /// Whether a consumer came (or was there) and is gone now.
    pub(super) fn one_left(self, header: &Header, segment: &Segment) -> bool {
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
    ///
    /// # Errors
    ///
    /// As [`Producer::open`]; [`Error::InvalidArgument`] for a capacity that
    /// is not a power of two in range; [`Error::TooLarge`] for a maximum
    /// message that the ring's capacity (given, default when creating, or
    /// the existing ring's) cannot carry (see [`Options`]).
    pub fn open_with(name: &str, options: &Options) -> Result<Producer> {
        let (shared, (cursor, consumers)) =
            Shared::open(name, options, End::Producer, |ring, segment| {
                let header = ring.header();
                let closed = header.wait.closed.load(Ordering::SeqCst);
                let told = closed == CLOSE_SEEN || !endpoint::is_held(segment, End::Consumer);
                if closed != OPEN && !(told && drained(ring)) {
                    return Err(Error::Closed {
                        place: FORMAT.place(name),
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
    #[inline(always)]
    pub fn send(&mut self, message: &[u8]) -> Result<()> {
        match self
            .shared
            .ring
            .reserve_fast(&self.cursor, message.len() as u64)
        {
            Some(slot) => self.fill_and_commit_slot(slot, message),
            None => self.send_until(message),
        }
    }

    /// The rest of `send`: no room at once as last seen (or a wrap, or an
    /// error). Out of line, so that the path of every message stays short.
    #[cold]
    #[inline(never)]
    fn send_until(&mut self, message: &[u8]) -> Result<()> {
        let slot = self.reserve_until(message.len(), None)?;
        self.fill_and_commit_slot(slot, message)
    }

    /// Copies `message` into the reserved `slot` and commits it.
    #[inline(always)]
    pub(super) fn fill_and_commit_slot(&mut self, slot: Slot, message: &[u8]) -> Result<()> {
        let len = message.len();
        debug_assert_eq!(len as u64, slot.len, "a slot reserved for the message");
        let ring = self.shared.ring;
        // SAFETY: the slot was reserved for `message.len()` bytes (every
        // caller reserves it for this message), which are in the data area
        // and this producer's until the commit (rule 2); `message` is ours.
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), ring.payload(slot), len) };
        // The one check of a `send`, after its accesses: a record whose
        // bytes went to a page a peer cut away is not committed (nor is
        // anything after it: the fault flag stays set).
        self.shared.intact()?;
        ring.commit(&mut self.cursor, slot, len as u64);
        Ok(())
    }

    /// Sends one message if there is room now, else [`Error::Full`].
    pub fn try_send(&mut self, message: &[u8]) -> Result<()> {
        let slot = self.try_grant(message.len())?.slot;
        self.fill_and_commit_slot(slot, message)
    }

    /// Sends one message, waiting at most `timeout` for room
    /// ([`Error::Timeout`] after that).
    pub fn send_timeout(&mut self, message: &[u8], timeout: Duration) -> Result<()> {
        let slot = self.grant_timeout(message.len(), timeout)?.slot;
        self.fill_and_commit_slot(slot, message)
    }

    /// Reserves `len` bytes in the ring to write a message in place,
    /// waiting while the ring is full. Nothing is visible to the consumer
    /// until [`WriteGrant::commit`].
    #[inline]
    pub fn grant(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        // As in `grant_until`.
        self.shared.intact()?;
        let slot = match self.shared.ring.reserve_fast(&self.cursor, len as u64) {
            Some(slot) => slot,
            None => self.reserve_until(len, None)?,
        };
        Ok(WriteGrant {
            producer: self,
            slot,
        })
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
                    place: self.shared.place.clone(),
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
    pub(super) fn grant_until(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<WriteGrant<'_>> {
        // Before the caller writes: a fault of an earlier access is
        // reported now, one of its own writes at the next verb.
        self.shared.intact()?;
        let slot = self.reserve_until(len, deadline)?;
        Ok(WriteGrant {
            producer: self,
            slot,
        })
    }

    /// Room for a record of `len` bytes, waiting until `deadline` while
    /// there is none. Checks the fault flag only while it waits: callers
    /// check it (`send` after its copy, `grant_until` before the caller's
    /// writes). Out of line: `send` and `grant` try
    /// `RingRef::reserve_fast` first.
    #[cold]
    #[inline(never)]
    fn reserve_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<Slot> {
        // The common case, room at once, without the waiter's set-up.
        match self.shared.ring.reserve(&mut self.cursor, len as u64) {
            Ok(Some(slot)) => {
                self.let_consumer_ahead(len, deadline);
                Ok(slot)
            }
            Ok(None) => self.wait_for_room(len, deadline),
            Err(err) => Err(self.shared.explain(err)),
        }
    }

    /// The rest of `grant_until` when the ring is full: kept out of line,
    /// so that the path of every message stays short.
    ///
    /// For a small message it first looks at the consumer's `head` only
    /// every [`PAUSES_PER_LOOK`] pauses, for [`UNHURRIED_LOOKS`] looks: a
    /// full ring is a consumer with a ring of messages to read, which the
    /// producer does not keep waiting by noticing room a microsecond late,
    /// but which it slows down by looking after every pause: each look
    /// that finds a new `head` takes the line from the consumer, whose
    /// next store of `head` (once per message) must fetch it back, a
    /// transfer between the CPUs that costs a small message's consumer
    /// more than the message. A stream whose consumer was the slower side
    /// kept the ring full and paid that per message (`ring_cost
    /// bench-blocks spin 64`, the median rate of blocks: 26–67 M msgs/s,
    /// median 41, with a look per pause; 33–70, median 53, so). Then it
    /// waits as ever, looking after every pause and sleeping as `Waiting`
    /// says.
    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self, len: usize, deadline: Option<Instant>) -> Result<Slot> {
        if self.waiter.looks_first(deadline) {
            if let Some(slot) = self.reserve_unhurried(len)? {
                return Ok(slot);
            }
        }
        let shared = &self.shared;
        let cursor = &mut self.cursor;
        let header = shared.header();
        let (consumers, wait_for_new) = (self.consumers, self.wait_for_new_consumer);
        self.waiter.wait(
            &header.wait,
            &header.wait.producer_sleeping,
            deadline,
            &shared.place,
            || {
                let reserved = shared.ring.reserve(cursor, len as u64);
                reserved.map_err(|e| shared.explain(e))
            },
            || {
                shared
                    .still_sized()
                    .and_then(|()| consumer_gone(shared, consumers, wait_for_new))
            },
        )
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

    pub(super) fn finish(&mut self) -> Result<()> {
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

impl Producer {
    /// With room for `len` bytes reserved, but little more (less than
    /// [`SLACK`] beyond the record, as the producer last saw `head`):
    /// pauses as [`wait_for_room`](Producer::wait_for_room)'s unhurried
    /// looks do, until the consumer is that far ahead or the looks run out.
    /// A stream whose consumer is the slower side otherwise settles with
    /// the producer right behind it: each message's reservation reloads
    /// `head`, finds the one record just freed, and takes the line of
    /// `head` from the consumer, which stores it again at once. The
    /// reserved room stays the producer's meanwhile (the consumer only
    /// frees more). Not for a message over [`UNHURRIED_MAX_LEN`], or when
    /// this producer may not spin or its deadline has passed; a deadline
    /// that passes meanwhile is overrun by at most the looks (16 times 32
    /// pauses), as in `wait_for_room`. The first test takes `head` as last
    /// seen: after a reservation that did not look again (at a wrap), a
    /// stale view may cost one look needlessly, once a lap.
    pub(crate) fn let_consumer_ahead(&mut self, len: usize, deadline: Option<Instant>) {
        let (ring, cursor) = (self.shared.ring, &mut self.cursor);
        let slack = SLACK.min(ring.capacity() / 4);
        if len > UNHURRIED_MAX_LEN
            || !ring.is_tight(cursor, len as u64, slack)
            || !self.waiter.looks_first(deadline)
        {
            return;
        }
        // The consumer got ahead or the looks ran out: either way, on.
        let _ = unhurried_looks(|| {
            ring.reload_head(cursor);
            Ok((!ring.is_tight(cursor, len as u64, slack)).then_some(()))
        });
    }

    /// The first looks of a wait for room for `len` bytes, unhurried (see
    /// `wait_for_room`; the async producer, `crate::aio`, looks so too).
    pub(super) fn reserve_unhurried(&mut self, len: usize) -> Result<Option<Slot>> {
        if len > UNHURRIED_MAX_LEN {
            return Ok(None);
        }
        let (shared, cursor) = (&self.shared, &mut self.cursor);
        unhurried_looks(|| {
            let reserved = shared.ring.reserve(cursor, len as u64);
            reserved.map_err(|e| shared.explain(e))
        })
    }
}

/// Up to [`UNHURRIED_LOOKS`] looks, each after [`PAUSES_PER_LOOK`] pauses,
/// until one finds what it looks for: the unhurried looks of a producer
/// that found the ring full (`reserve_unhurried`) or little room beyond
/// its reservation (`let_consumer_ahead`).
fn unhurried_looks<T>(mut look: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    for _ in 0..UNHURRIED_LOOKS {
        for _ in 0..PAUSES_PER_LOOK {
            std::hint::spin_loop();
        }
        if let Some(found) = look()? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Pauses between two looks at the consumer's `head` while the ring is
/// full, at first (see `Producer::wait_for_room`).
const PAUSES_PER_LOOK: u32 = 32;

/// How many looks the producer takes that way before it waits as ever: a
/// few tens of microseconds, after which the consumer is more likely
/// stalled than busy (and its liveness is looked at). None under loom,
/// whose model explores every look.
const UNHURRIED_LOOKS: u32 = if cfg!(loom) { 0 } else { 16 };

/// How far ahead of a producer that found little room its consumer should
/// get before the producer goes on (`Producer::let_consumer_ahead`), at
/// most a quarter of the ring: 64 cache lines. The bench's 64 B streams
/// (shmkit-spin and shmkit-block, whose consumer is the slower side) ran
/// at 61-68 M msgs/s without this wait, 74-87 M with 1 KiB and 94-102 M
/// with 4 KiB, three runs each in turn.
const SLACK: u64 = 4096;

/// The longest message whose producer waits for room that way: beyond a
/// few KiB, the consumer's store of `head` per message is a small part of
/// its time.
const UNHURRIED_MAX_LEN: usize = 4096;

/// For a waiting producer: `Err` once its consumer is gone and will not
/// come back for it.
pub(super) fn consumer_gone(
    shared: &Shared,
    consumers: ConsumersSeen,
    wait_for_new: bool,
) -> Result<()> {
    // No `intact` here: the waiter's `still_sized` has just checked.
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
    pub(super) producer: &'a mut Producer,
    pub(super) slot: Slot,
}

impl WriteGrant<'_> {
    /// Publishes the whole reserved length as one message.
    #[inline]
    pub fn commit(self) {
        let producer = &mut *self.producer;
        let (ring, slot) = (producer.shared.ring, self.slot);
        ring.commit(&mut producer.cursor, slot, slot.len);
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
    #[inline]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.producer.shared.ring.payload(self.slot)
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];

    #[inline]
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
    #[inline]
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
