//! The receiving end of a ring and its read grants.

use super::*;

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
    pub(super) cursor: ConsumerCursor,
    pub(super) waiter: Waiter,
    pub(super) shared: Shared,
    pub(super) last_sequence: Option<u64>,
    /// The size of the last message record read (0 before the first):
    /// the next one is likely as long (see `RingRef::prefetch_record`).
    /// Kept, not computed from `head` and `last_sequence`, which differ
    /// by the padding too after a wrap.
    pub(super) last_size: u64,
    pub(super) slip: Slip,
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
    ///
    /// # Errors
    ///
    /// As [`Consumer::open`]; [`Error::InvalidArgument`] for a capacity that
    /// is not a power of two in range; [`Error::TooLarge`] for a maximum
    /// message that the ring's capacity (given, default when creating, or
    /// the existing ring's) cannot carry (see [`Options`]).
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
            slip: Slip::new(),
            shared,
            last_sequence: None,
            last_size: 0,
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

    pub(super) fn finish(&mut self) -> Result<()> {
        self.shared
            .leave(|shared| !endpoint::is_held(&shared.segment, End::Producer) && shared.drained())
    }

    /// Records that the consumer was told of the close, so that a new
    /// producer may reopen the ring; passes any error on.
    pub(super) fn told(&self, err: Error) -> Error {
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
    #[inline(always)]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self.shared.ring.peek_message(&self.cursor) {
            Some(slot) if slot.len <= buf.len() as u64 => self.copy_out(slot, buf),
            _ => self.recv_until(buf, None),
        }
    }

    /// The rest of `recv`: no message at once (or one too long for
    /// `buf`). Out of line, so that the path of every message stays short.
    #[cold]
    #[inline(never)]
    fn recv_until(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        let slot = self.next_until(deadline)?;
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
        self.recv_until(buf, Some(Instant::now() + timeout))
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
        let message = self.read()?;
        message.copy_to(buf);
        message.copied_intact()?;
        Ok(buf.len())
    }

    /// The next message, read in place, waiting while the ring is empty.
    /// Its space is handed back when the grant is dropped or released.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGrant<'_>> {
        let slot = match self.shared.ring.peek_message(&self.cursor) {
            Some(slot) => slot,
            None => self.next_until(None)?,
        };
        // The record word's load was this verb's access so far; the
        // payload's are the caller's, checked at the next verb.
        self.shared.intact()?;
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
        // As in `read`.
        self.shared.intact()?;
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
    pub(super) fn drain_slots(&mut self, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<usize> {
        self.shared.intact()?;
        let ring = self.shared.ring;
        let head_before = self.cursor.head;
        // The last message taken, noted in a local (a register) rather
        // than in `self` per message.
        let mut last = None;
        let count = ring.drain_while(&mut self.cursor, |slot| {
            // SAFETY: a committed record inside the data area (record_at
            // checked it), which the producer leaves alone until the head
            // passes it, after `f` returns (rule 2).
            let message =
                unsafe { std::slice::from_raw_parts(ring.payload(slot), slot.len as usize) };
            let taken = f(slot.position, message);
            if taken {
                last = Some(slot);
            }
            taken
        });
        if let Some(slot) = last {
            self.last_sequence = Some(slot.position);
            self.last_size = layout::record_size(slot.len);
        }
        // Whatever moved the head (messages, padding, or what was read
        // before a corrupt record) freed space a producer may wait for.
        if self.cursor.head != head_before {
            ring.wake_producer();
        }
        // Messages read from pages a peer truncated away were zeros.
        let count = count
            .map_err(|e| self.shared.explain(e))
            .and_then(|n| self.shared.intact().map(|()| n));
        count.map(|n| n as usize)
    }

    #[inline(always)]
    pub(super) fn copy_out(&mut self, slot: Slot, buf: &mut [u8]) -> Result<usize> {
        let len = slot.len as usize;
        if len > buf.len() {
            return Err(Error::TooLarge {
                what: "message",
                size: slot.len,
                limit: buf.len() as u64,
            });
        }
        // SAFETY: as in `drain_slots`; `buf` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.shared.ring.payload(slot), buf.as_mut_ptr(), len)
        };
        // Zeros from pages a peer truncated away are not the message. The
        // only check of a `recv`: it follows every access (the record
        // word's load, then the copy), and a fault flag set before is
        // still set.
        self.shared.intact()?;
        self.shared.ring.release(&mut self.cursor, slot);
        self.last_sequence = Some(slot.position);
        self.last_size = layout::record_size(slot.len);
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

    pub(super) fn try_next(&mut self) -> Result<Slot> {
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
                place: self.shared.place.clone(),
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

    /// The next message, waiting until `deadline` while there is none.
    /// Checks the fault flag only while it waits: the callers check it
    /// after their last access to the message (`read` after the word's
    /// load, `copy_out` after the copy), so that a message takes one check.
    /// Out of line: the verbs try `RingRef::peek_message` first.
    #[cold]
    #[inline(never)]
    pub(super) fn next_until(&mut self, deadline: Option<Instant>) -> Result<Slot> {
        // The common case, a message at once, without the waiter's set-up.
        match self.shared.ring.peek(&mut self.cursor) {
            Ok(Some(slot)) => Ok(slot),
            Ok(None) => self.wait_for_message(deadline),
            Err(err) => Err(self.shared.explain(err)),
        }
    }

    /// The rest of `next_until` when the ring is empty: kept out of line,
    /// so that the path of every message stays short.
    #[cold]
    #[inline(never)]
    fn wait_for_message(&mut self, deadline: Option<Instant>) -> Result<Slot> {
        if self.waiter.looks_first(deadline) {
            if let Some(slot) = self.first_looks() {
                return Ok(slot);
            }
        }
        let shared = &self.shared;
        let cursor = &mut self.cursor;
        let header = shared.header();
        let expected_size = self.last_size;
        let next = self.waiter.wait(
            &header.wait,
            &header.wait.consumer_sleeping,
            deadline,
            &shared.place,
            || {
                let found = shared.ring.peek(cursor).map_err(|e| shared.explain(e));
                if let Ok(None) = &found {
                    shared.ring.prefetch_record(cursor.head, expected_size);
                }
                found
            },
            || {
                shared
                    .still_sized()
                    .and_then(|()| shared.producer_finished())
            },
        );
        next.map_err(|err| self.told(err))
    }
}

impl Consumer {
    /// The first polls of a wait, inlined, returning a message straight
    /// from the loop (`wait::spin_first`); padding or a corrupt word ends
    /// them too (`None`), for `peek` in the waiter's polls to sort out.
    /// They follow the consumer's pause ([`Slip`]), which lets a producer
    /// in full flow get whole lines ahead. The blocking wait and the async
    /// receive (`message_soon`) begin so.
    #[inline(always)]
    pub(super) fn first_looks(&mut self) -> Option<Slot> {
        let (ring, cursor, expected) = (self.shared.ring, &self.cursor, self.last_size);
        let look = || match ring.look_at_head(cursor, expected) {
            Head::Empty => None,
            other => Some(other),
        };
        self.slip.pause(cursor.head, expected);
        let at_once = look();
        // Padding (once a lap) or a corrupt word is no message found.
        self.slip.ended(matches!(at_once, Some(Head::Message(_))));
        let first = at_once.or_else(|| wait::spin_first(look));
        match first {
            Some(Head::Message(slot)) => Some(slot),
            _ => None,
        }
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
    pub(super) consumer: &'a mut Consumer,
    pub(super) slot: Slot,
}

impl ReadGrant<'_> {
    /// Hands the message's space back to the producer.
    #[inline]
    pub fn release(self) {}

    /// The message's sequence number (see [`Consumer`]): the same if it is
    /// delivered again after this process dies holding the grant.
    pub fn sequence(&self) -> u64 {
        self.slot.position
    }

    /// The message's length in bytes (without forming a slice over it).
    #[inline]
    pub fn len(&self) -> usize {
        self.slot.len as usize
    }

    /// Whether the message is empty (a message may have 0 bytes).
    pub fn is_empty(&self) -> bool {
        self.slot.len == 0
    }

    /// After a copy out of the grant (through [`as_ptr`](ReadGrant::as_ptr)
    /// or the slice): `Err(Truncated)`, and the message kept, as `recv`
    /// keeps it, if the copy ran onto a page a peer cut away, whose zeros
    /// are not the message; else the grant is released. For a caller that
    /// copies messages out itself, as `recv` and `recv_vec` do.
    ///
    /// ```
    /// # use shmkit::ring::{Consumer, Producer};
    /// # let name = format!("doc-copied-intact-{}", std::process::id());
    /// # let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// producer.send(b"kept")?;
    /// let message = consumer.read()?;
    /// let copy = message.to_vec();
    /// message.copied_intact()?; // released only now
    /// assert_eq!(copy, b"kept");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn copied_intact(self) -> Result<()> {
        match self.consumer.shared.intact() {
            Ok(()) => Ok(()),
            Err(err) => {
                // Not released: nothing of a faulted copy is taken.
                std::mem::forget(self);
                Err(err)
            }
        }
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
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.consumer.shared.ring.payload(self.slot)
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];

    #[inline]
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
        consumer.last_size = layout::record_size(self.slot.len);
        consumer.shared.ring.wake_producer();
    }
}
