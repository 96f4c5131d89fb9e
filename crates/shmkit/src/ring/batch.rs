//! The batch verbs, which amortise the per-message cost of a stream: a
//! producer commits many records with one Release ([`WriteBatch`],
//! [`Producer::send_batch`]; rule 9 of `protocol`), and a consumer hands
//! back the space of many with one update of `head`
//! ([`Consumer::drain`], [`Consumer::drain_while`]).

use super::layout::record_size;
use super::protocol::Slot;
use super::{Consumer, Producer, WriteGrant};
use crate::error::Result;

/// A batch stops growing at this share of the data area in
/// [`Producer::send_batch`], so that the consumer reads one part while the
/// producer writes the next.
const GROUP_SHARE: u64 = 16;

impl Producer {
    /// Sends every message of `messages`, in order, waiting while the ring
    /// is full; returns how many were sent. Consecutive messages are
    /// committed together, as many as fit (up to a sixteenth of the data
    /// area, and never across its end), with one index update and one
    /// wake-up check for the lot: the same stream as one
    /// [`send`](Producer::send) per message, for a fraction of the cost.
    ///
    /// # Errors
    ///
    /// As [`send`](Producer::send). A message longer than
    /// [`max_message`](Producer::max_message) fails with
    /// [`Error::TooLarge`](crate::Error::TooLarge) after the messages
    /// before it were sent.
    ///
    /// ```
    /// use shmkit::ring::{Consumer, Producer};
    ///
    /// let name = format!("doc-send-batch-{}", std::process::id());
    /// let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// assert_eq!(producer.send_batch(["one", "two", "three"])?, 3);
    /// let mut seen = Vec::new();
    /// consumer.drain(|message| seen.push(message.to_vec()))?;
    /// assert_eq!(seen, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_batch<I>(&mut self, messages: I) -> Result<usize>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let group = (self.shared.ring.capacity() / GROUP_SHARE).max(1);
        let mut messages = messages.into_iter();
        let mut sent = 0;
        let mut next = messages.next();
        while let Some(message) = next.take() {
            // The first of a group waits for room, as `send` does.
            let message = message.as_ref();
            let WriteGrant { slot, .. } = self.grant(message.len())?;
            let mut batch = WriteBatch::starting_with(self, slot, message);
            let outcome = loop {
                next = messages.next();
                let Some(message) = &next else {
                    break Ok(());
                };
                // Kept in `next` for the next group, if not taken here.
                if batch.bytes() >= group {
                    break Ok(());
                }
                match batch.try_push(message.as_ref()) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(err) => break Err(err),
                }
            };
            sent += batch.commit();
            outcome?;
        }
        Ok(sent)
    }

    /// Starts a batch: messages written into the ring one after the other
    /// and published together by [`WriteBatch::commit`], with one index
    /// update and one wake-up check. The consumer sees none of them before
    /// the commit, and all of them after it.
    ///
    /// ```
    /// use shmkit::ring::{Consumer, Producer};
    ///
    /// let name = format!("doc-batch-{}", std::process::id());
    /// let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// let mut batch = producer.batch();
    /// assert!(batch.try_push(b"copied in")?);
    /// if let Some(bytes) = batch.try_grant(7)? {
    ///     bytes.copy_from_slice(b"in situ"); // written in place
    /// }
    /// assert_eq!(batch.commit(), 2);
    /// assert_eq!(&*consumer.read()?, b"copied in");
    /// assert_eq!(&*consumer.read()?, b"in situ");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn batch(&mut self) -> WriteBatch<'_> {
        WriteBatch {
            producer: self,
            first: None,
            end: 0,
            limit: 0,
            count: 0,
        }
    }
}

/// Messages written into the ring, not yet published: see
/// [`Producer::batch`]. Dropping it (or [`abort`](WriteBatch::abort))
/// discards them.
///
/// A batch never waits: [`try_push`](WriteBatch::try_push) and
/// [`try_grant`](WriteBatch::try_grant) say when a message does not fit
/// now, in the free space before the end of the data area (a batch never
/// wraps round it, except that its first message may start a new lap).
/// Commit, then start the next batch.
#[must_use = "a batch that is not committed sends nothing"]
#[derive(Debug)]
pub struct WriteBatch<'a> {
    producer: &'a mut Producer,
    /// The first message, reserved at the tail; its word is written last.
    first: Option<Slot>,
    /// The position after the last message.
    end: u64,
    /// Where the next message may end at most without a new look at the
    /// consumer's `head` (`RingRef::batch_limit`).
    limit: u64,
    count: usize,
}

impl WriteBatch<'_> {
    /// A batch whose first message, reserved at `slot`, is `message`.
    fn starting_with<'a>(producer: &'a mut Producer, slot: Slot, message: &[u8]) -> WriteBatch<'a> {
        let end = slot.position + record_size(slot.len);
        let limit = producer.shared.ring.batch_limit(&producer.cursor, end);
        let mut batch = WriteBatch {
            producer,
            first: Some(slot),
            end,
            limit,
            count: 1,
        };
        batch.payload(slot).copy_from_slice(message);
        batch
    }

    /// Adds a message of `len` bytes and gives its bytes to write in
    /// place, if it fits now; `Ok(None)` if not. The bytes are the
    /// producer's until the commit (what they held before is unspecified).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`](crate::Error::TooLarge) if `len` is more than
    /// [`Producer::max_message`]; [`Error::Corrupt`](crate::Error::Corrupt)
    /// if the consumer's index in shared memory is impossible;
    /// [`Error::Truncated`](crate::Error::Truncated) if a peer shrank the
    /// ring's file.
    #[inline]
    pub fn try_grant(&mut self, len: usize) -> Result<Option<&mut [u8]>> {
        let ring = self.producer.shared.ring;
        let len = len as u64;
        // The common case: room after the last message, as last seen.
        if self.first.is_some()
            && len <= ring.max_message()
            && self.end + record_size(len) <= self.limit
        {
            let slot = Slot {
                position: self.end,
                len,
            };
            self.append(slot);
            return Ok(Some(self.payload(slot)));
        }
        self.try_grant_slow(len)
    }

    /// The rest of `try_grant`: the batch's first message, or one beyond
    /// the room last seen. Out of line, so that each message's path stays
    /// short.
    #[cold]
    #[inline(never)]
    fn try_grant_slow(&mut self, len: u64) -> Result<Option<&mut [u8]>> {
        let ring = self.producer.shared.ring;
        let (shared, cursor) = (&self.producer.shared, &mut self.producer.cursor);
        shared.intact()?;
        let slot = match self.first {
            None => ring.reserve(cursor, len),
            Some(_) => ring.reserve_after(cursor, self.end, len),
        };
        // A head zeroed by a cut inside the first page is no damage.
        let slot = slot.map_err(|e| shared.explain(e))?;
        let Some(slot) = slot else {
            return Ok(None);
        };
        if self.first.is_none() {
            // Its word is written by the commit.
            self.first = Some(slot);
            self.end = slot.position + record_size(slot.len);
            self.count = 1;
        } else {
            self.append(slot);
        }
        self.limit = ring.batch_limit(&self.producer.cursor, self.end);
        Ok(Some(self.payload(slot)))
    }

    /// Adds a message after the first at `slot`, which fits.
    #[inline]
    fn append(&mut self, slot: Slot) {
        // Relaxed: published with the first message's word (rule 9).
        self.producer.shared.ring.stage(slot);
        self.end = slot.position + record_size(slot.len);
        self.count += 1;
    }

    /// Adds a copy of `message` if it fits now; `Ok(false)` if not.
    ///
    /// # Errors
    ///
    /// As [`try_grant`](WriteBatch::try_grant).
    #[inline]
    pub fn try_push(&mut self, message: &[u8]) -> Result<bool> {
        match self.try_grant(message.len())? {
            Some(bytes) => {
                bytes.copy_from_slice(message);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Publishes every message of the batch; returns how many.
    pub fn commit(self) -> usize {
        if let Some(first) = self.first {
            let producer = self.producer;
            producer.shared.ring.commit_batch(
                &mut producer.cursor,
                first,
                self.end,
                self.count as u64,
            );
        }
        self.count
    }

    /// Discards the batch; the consumer sees none of it.
    pub fn abort(self) {}

    /// Bytes of the ring the batch takes.
    #[inline]
    fn bytes(&self) -> u64 {
        self.first.map_or(0, |first| self.end - first.position)
    }

    #[inline]
    fn payload(&mut self, slot: Slot) -> &mut [u8] {
        // SAFETY: the slot lies inside the data area (`reserve` and
        // `reserve_after` checked it) and belongs to this producer until
        // the commit publishes it (rules 2 and 9); `&mut self` makes this
        // the only reference to it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.producer.shared.ring.payload(slot),
                slot.len as usize,
            )
        }
    }
}

impl Consumer {
    /// Hands the messages in the ring now to `f`, in order, while `f`
    /// returns true, then gives their space back with one update of the
    /// ring's index (and one wake-up check); returns how many it took. The
    /// message for which `f` returns false stays in the ring, the next
    /// one to be read. Does not wait; reads at most one lap, as
    /// [`drain`](Consumer::drain).
    ///
    /// ```
    /// use shmkit::ring::{Consumer, Producer};
    ///
    /// let name = format!("doc-drain-while-{}", std::process::id());
    /// let mut producer = Producer::open(&name)?;
    /// let mut consumer = Consumer::open(&name)?;
    /// producer.send_batch(["one", "two", "three"])?;
    /// let mut first_two = Vec::new();
    /// let taken = consumer.drain_while(|message| {
    ///     if first_two.len() == 2 {
    ///         return false;
    ///     }
    ///     first_two.push(message.to_vec());
    ///     true
    /// })?;
    /// assert_eq!(taken, 2);
    /// assert_eq!(first_two, [b"one".to_vec(), b"two".to_vec()]);
    /// assert_eq!(&*consumer.read()?, b"three");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn drain_while(&mut self, mut f: impl FnMut(&[u8]) -> bool) -> Result<usize> {
        self.drain_slots(|_, message| f(message))
    }
}
