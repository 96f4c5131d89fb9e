//! The ring protocol: how the producer writes records and the consumer reads
//! them, over a header and a data area in memory both can write.
//!
//! # Rules
//!
//! 1. Positions are byte counts since the ring was created (`u64`, never
//!    wrapping in practice); a position's offset in the data area is
//!    `position & (capacity - 1)`, and the capacity is a power of two.
//! 2. The consumer owns the bytes from `head` to the producer's last commit;
//!    the producer owns the rest, from its tail up to `head + capacity`. Each
//!    side writes only what it owns, so payload bytes need no atomics.
//! 3. A record starts at a multiple of 8 with one 8-byte word: payload length
//!    in the low 32 bits, type in the high 32 (0 empty, 1 message, 2 padding).
//!    The payload follows; the record's size is rounded up to 8.
//! 4. The producer commits a record by storing its word with Release, after
//!    writing the payload and after storing an empty word where the next
//!    record will start. So the word at the producer's tail is always empty,
//!    and the consumer never mistakes an old lap's bytes for a record.
//!    (The producer keeps 8 bytes free for that word: it never fills the
//!    ring completely.)
//! 5. A record never wraps. When it does not fit before the end of the data
//!    area, the producer first commits a padding record to the end, and the
//!    record starts at offset 0.
//! 6. The consumer reads the word at `head` with Acquire, validates it (a
//!    corrupt word is an error, never an out-of-bounds read), reads the
//!    payload, then stores the new `head` with Release, handing the space
//!    back (a batch drain stores it once, after the batch).
//! 7. The producer keeps a cached copy of `head` and reloads it (Acquire)
//!    only when the copy shows too little space.
//! 8. A side that waits sets its `*_sleeping` word to 1, issues a heavy
//!    fence (`membarrier`: a barrier on every CPU running an endpoint),
//!    checks once more, and sleeps on the word with a futex. The other
//!    side, after publishing (rule 4 or 6), issues a light fence (compiler
//!    only) and makes a wake-up system call only if that word is 1. The
//!    pair orders each side's store before its load, so at least one side
//!    sees the other's store: either the waiter sees the new record or
//!    space, or the publisher sees the waiter (Dekker's pattern with an
//!    asymmetric fence, as in liburcu and Folly; the futex re-checks the
//!    word under the kernel's lock, so a wake between check and sleep is
//!    not lost). The publisher runs this on every message and the sleeper
//!    rarely, so the cost goes where it is rare. If an endpoint cannot use
//!    membarrier, `full_fences` is set and both sides use SeqCst fences.
//! 9. A batch commits several records with one Release: the producer
//!    writes each record after the first (payload, then its word, Relaxed),
//!    then the empty word after the last, then the first record's word
//!    with Release. The consumer only reads a word once the record before
//!    it was published, so it reaches the later words through the first
//!    one's Acquire, and sees nothing of a batch before all of it. A batch
//!    never wraps: only its first record may need padding (rule 5), and it
//!    ends before a record that would. Until it commits, the word at the
//!    tail stays empty (rule 4), so a producer that dies mid-batch leaves
//!    nothing a consumer or `recover_tail` would take for a record.

use std::ptr::NonNull;

use super::layout::{
    record_size, record_word, split_record_word, Header, KIND_EMPTY, KIND_MESSAGE, KIND_PADDING,
    RECORD_ALIGN, RECORD_HEADER,
};
use crate::error::{Error, Result};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A view of one ring: its header and data area, with the configuration
/// validated once when the ring was opened.
///
/// # Invariants
///
/// `header` and `data` point into a mapping that outlives this value (the
/// endpoint that owns it also owns the mapping); `data` has `capacity`
/// bytes, 8-byte aligned; `capacity` is a power of two and
/// `max_message <= layout::max_message_for(capacity)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingRef {
    header: NonNull<Header>,
    data: NonNull<u8>,
    capacity: u64,
    max_message: u64,
    /// The data area as 8-byte words, where record words are. The same
    /// address as `data`, except in the loom model, whose atomics are not 8
    /// bytes wide and so live in an array of their own.
    words: NonNull<AtomicU64>,
}

// SAFETY: the view only reaches shared memory through atomics and through
// regions that rule 2 gives to one side at a time; which thread of the
// process holds it does not matter.
unsafe impl Send for RingRef {}

/// Where a reserved record is: its position and payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub position: u64,
    pub len: u64,
}

/// The producer's private state (rule 7).
#[derive(Debug)]
pub(crate) struct ProducerCursor {
    pub tail: u64,
    pub cached_head: u64,
}

/// The consumer's private state.
#[derive(Debug)]
pub(crate) struct ConsumerCursor {
    pub head: u64,
}

/// Checks a position read from shared memory when an endpoint opens: a
/// multiple of 8 (rule 3; `word` relies on it) and below 2^63, so that
/// adding record sizes to it never overflows (rule 1: a ring would need
/// centuries to get there).
pub(crate) fn check_position(position: u64, what: &str) -> Result<()> {
    if !position.is_multiple_of(RECORD_ALIGN) || position >= 1 << 63 {
        return Err(Error::Corrupt(format!(
            "ring {what} {position} is not a position (a multiple of 8 below 2^63)"
        )));
    }
    Ok(())
}

impl RingRef {
    /// # Safety
    ///
    /// - `header` and `data` are valid for the lifetime of every copy of the
    ///   returned value, `data` for `capacity` bytes and 8-byte aligned.
    /// - `capacity` is a power of two and `max_message <=
    ///   layout::max_message_for(capacity)`.
    pub(crate) unsafe fn new(
        header: NonNull<Header>,
        data: NonNull<u8>,
        capacity: u64,
        max_message: u64,
    ) -> RingRef {
        RingRef {
            header,
            data,
            capacity,
            max_message,
            words: data.cast(),
        }
    }

    /// The loom model's ring: `words` has `capacity / 8` atomics.
    ///
    /// # Safety
    ///
    /// As for `new`, and `words` is valid as long as `header`.
    #[cfg(loom)]
    pub(crate) unsafe fn new_model(
        header: NonNull<Header>,
        data: NonNull<u8>,
        words: NonNull<AtomicU64>,
        capacity: u64,
        max_message: u64,
    ) -> RingRef {
        RingRef {
            header,
            data,
            capacity,
            max_message,
            words,
        }
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: valid for our lifetime (type invariant); every field is an
        // atomic, so a shared reference is sound while other processes write.
        unsafe { self.header.as_ref() }
    }

    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline]
    pub(crate) fn max_message(&self) -> u64 {
        self.max_message
    }

    #[inline]
    fn offset(&self, position: u64) -> u64 {
        position & (self.capacity - 1)
    }

    /// The record word at `position`.
    #[inline]
    fn word(&self, position: u64) -> &AtomicU64 {
        let index = self.offset(position) / 8;
        // SAFETY: offset < capacity and is a multiple of 8 (positions are,
        // rule 3: they start from `check_position` and grow by record
        // sizes), and `words` is the 8-aligned data area (or the model's
        // array of capacity / 8 atomics), so this is an atomic inside it;
        // record words are only ever accessed atomically.
        unsafe { &*self.words.as_ptr().add(index as usize) }
    }

    /// The payload bytes of the record at `slot`.
    #[inline]
    pub(crate) fn payload(&self, slot: Slot) -> *mut u8 {
        let offset = self.offset(slot.position) + RECORD_HEADER;
        debug_assert!(offset + slot.len <= self.capacity);
        // SAFETY: slots come from reserve or peek, which check that the
        // record lies inside the data area.
        unsafe { self.data.as_ptr().add(offset as usize) }
    }

    /// Bytes the producer may still use, from its view of `head`. Errors if
    /// the consumer's `head` is impossible (rule 2: it is never ahead of the
    /// tail nor more than a capacity behind).
    #[inline]
    fn free(&self, cursor: &ProducerCursor) -> Result<u64> {
        let used = cursor.tail.wrapping_sub(cursor.cached_head);
        if used > self.capacity {
            return Err(head_out_of_range(cursor, self.capacity));
        }
        Ok(self.capacity - used)
    }

    /// Whether the ring, as the producer last saw its `head`, has less
    /// free room than a record of `len` bytes and `slack` more: a producer
    /// right behind its consumer (see `Producer::let_consumer_ahead`). An
    /// impossible `head` is not tight: `reserve` reports it.
    #[inline]
    pub(crate) fn is_tight(&self, cursor: &ProducerCursor, len: u64, slack: u64) -> bool {
        self.free(cursor)
            .is_ok_and(|free| free < record_size(len) + RECORD_HEADER + slack)
    }

    /// Takes a fresh look at the consumer's `head` (rule 7).
    #[inline]
    pub(crate) fn reload_head(&self, cursor: &mut ProducerCursor) {
        // Acquire, as in `reserve`.
        cursor.cached_head = self.header().consumer.head.load(Ordering::Acquire);
    }

    /// Reserves room for a record of `len` payload bytes at the producer's
    /// tail, committing a padding record first if it would wrap (rule 5).
    /// `Ok(None)` when the ring is too full for now.
    #[inline]
    pub(crate) fn reserve(&self, cursor: &mut ProducerCursor, len: u64) -> Result<Option<Slot>> {
        if len > self.max_message {
            return Err(too_large(len, self.max_message));
        }
        let size = record_size(len);
        let to_end = self.capacity - self.offset(cursor.tail);
        let padding = if size > to_end { to_end } else { 0 };
        // Rule 4: keep room for the empty word after the record.
        let needed = padding + size + RECORD_HEADER;
        if self.free(cursor)? < needed {
            // Rule 7. Acquire: pairs with the consumer's Release of `head`
            // in `release`, so its reads of the freed bytes are done before
            // we overwrite them.
            cursor.cached_head = self.header().consumer.head.load(Ordering::Acquire);
            if self.free(cursor)? < needed {
                return Ok(None);
            }
        }
        if padding > 0 {
            self.pad(cursor, padding);
        }
        Ok(Some(Slot {
            position: cursor.tail,
            len,
        }))
    }

    /// [`reserve`](RingRef::reserve)'s common case alone: room for a
    /// record of `len` bytes at the tail as of the cached `head`, without
    /// padding. `None` for everything else (too long, a wrap, too little
    /// room as last seen, an impossible `head`), which `reserve` then
    /// sorts out. Small enough to inline into every send.
    #[inline(always)]
    pub(crate) fn reserve_fast(&self, cursor: &ProducerCursor, len: u64) -> Option<Slot> {
        if len > self.max_message {
            return None;
        }
        let size = record_size(len);
        let used = cursor.tail.wrapping_sub(cursor.cached_head);
        // Rule 4: room for the empty word after the record too; rule 5:
        // no wrap (a record may end at the end of the data area).
        let fits = size <= self.capacity - self.offset(cursor.tail)
            && used <= self.capacity
            && size + RECORD_HEADER <= self.capacity - used;
        fits.then_some(Slot {
            position: cursor.tail,
            len,
        })
    }

    /// Commits a padding record of `padding` bytes at the tail, to the end
    /// of the data area (rule 5). Once a lap: out of the path of every
    /// message.
    #[cold]
    #[inline(never)]
    fn pad(&self, cursor: &mut ProducerCursor, padding: u64) {
        // Rule 4 for the padding: the word at offset 0 must read empty
        // before the padding that leads to it is visible.
        self.word(cursor.tail + padding).store(0, Ordering::Relaxed);
        let word = record_word((padding - RECORD_HEADER) as u32, KIND_PADDING);
        // Release: publishes the empty word at offset 0; pairs with the
        // Acquire in `peek`.
        self.word(cursor.tail).store(word, Ordering::Release);
        cursor.tail += padding;
        // Relaxed, as in `commit`. Published now, not with the record,
        // because the grant may be aborted: the consumer skips this
        // padding either way, and `head` must never pass the published
        // tail for good (`Shared::leave` compares them, `status`
        // subtracts them).
        self.header()
            .producer
            .tail
            .store(cursor.tail, Ordering::Relaxed);
    }

    /// Commits a record reserved at the tail, with `len` payload bytes
    /// written (at most the reserved length), and wakes a sleeping consumer.
    #[inline]
    pub(crate) fn commit(&self, cursor: &mut ProducerCursor, slot: Slot, len: u64) {
        debug_assert!(slot.position == cursor.tail && len <= slot.len);
        let next = slot.position + record_size(len);
        // Rule 4: the next record's word reads empty before this one is seen.
        self.word(next).store(0, Ordering::Relaxed);
        // Release: publishes the payload and the empty word after it; pairs
        // with the Acquire load of the word in `peek`.
        self.word(slot.position)
            .store(record_word(len as u32, KIND_MESSAGE), Ordering::Release);
        cursor.tail = next;
        let producer = &self.header().producer;
        // Relaxed: the tail and the count are for `stat` and for a producer
        // taking over after a crash, which re-reads the records themselves.
        producer.tail.store(next, Ordering::Relaxed);
        // Wrapping: the count is in shared memory, so it may be anything.
        let sent = producer.sent.load(Ordering::Relaxed).wrapping_add(1);
        producer.sent.store(sent, Ordering::Relaxed);
        self.wake_if_sleeping(&self.header().wait.consumer_sleeping);
    }

    /// What the word at `position` says, validated (rule 6).
    #[inline]
    fn record_at(&self, position: u64) -> Result<Record> {
        // Acquire: pairs with the Release in `commit` (and in `reserve` for
        // padding), so the payload is visible before it is read.
        let word = self.word(position).load(Ordering::Acquire);
        let (len, kind) = split_record_word(word);
        let len = u64::from(len);
        let offset = self.offset(position);
        match kind {
            KIND_EMPTY if len == 0 => Ok(Record::Empty),
            KIND_MESSAGE
                if len <= self.max_message && offset + record_size(len) <= self.capacity =>
            {
                Ok(Record::Message(Slot { position, len }))
            }
            // Never at offset 0, where every record fits (rule 5): so a
            // padding record is always followed by another kind, and
            // `peek` skips at most one.
            KIND_PADDING if offset > 0 && offset + RECORD_HEADER + len == self.capacity => {
                Ok(Record::Padding {
                    next: position + RECORD_HEADER + len,
                })
            }
            _ => Err(bad_record(word, position, offset)),
        }
    }

    /// [`peek`](RingRef::peek)'s common case alone: the message at the
    /// consumer's head if its word says there is a valid one. `None` for
    /// everything else (nothing yet, padding, a corrupt word), which
    /// `peek` then sorts out, loading the word again: each path validates
    /// the copy it uses (rule 6). Small enough to inline into every receive.
    #[inline(always)]
    pub(crate) fn peek_message(&self, cursor: &ConsumerCursor) -> Option<Slot> {
        self.message_at(cursor.head)
    }

    /// The message at `position` if the word there says there is a valid
    /// one; `None` for anything else, which `record_at` sorts out.
    #[inline(always)]
    fn message_at(&self, position: u64) -> Option<Slot> {
        // Acquire, as in `record_at`.
        let word = self.word(position).load(Ordering::Acquire);
        self.message_in(word, position)
    }

    /// A waiting consumer's look at its head, small enough to inline into
    /// a spin loop: the message there, or that the word is still empty
    /// (after asking for the rest of a record of `expected` bytes, see
    /// [`prefetch_record`](RingRef::prefetch_record)), or that it is
    /// something else (padding, a corrupt word), which `peek` sorts out.
    #[inline(always)]
    pub(crate) fn look_at_head(&self, cursor: &ConsumerCursor, expected: u64) -> Head {
        // Acquire, as in `record_at`.
        let word = self.word(cursor.head).load(Ordering::Acquire);
        if word == 0 {
            self.prefetch_record(cursor.head, expected);
            return Head::Empty;
        }
        match self.message_in(word, cursor.head) {
            Some(slot) => Head::Message(slot),
            None => Head::Other,
        }
    }

    /// The message `word`, loaded at `position`, says is there, if it is a
    /// valid one (rule 6).
    #[inline(always)]
    fn message_in(&self, word: u64, position: u64) -> Option<Slot> {
        let (len, kind) = split_record_word(word);
        let len = u64::from(len);
        let valid = kind == KIND_MESSAGE
            && len <= self.max_message
            && self.offset(position) + record_size(len) <= self.capacity;
        valid.then_some(Slot { position, len })
    }

    /// The next message at the consumer's head, skipping padding.
    /// `Ok(None)` when nothing is committed yet.
    #[inline]
    pub(crate) fn peek(&self, cursor: &mut ConsumerCursor) -> Result<Option<Slot>> {
        loop {
            match self.record_at(cursor.head)? {
                Record::Empty => return Ok(None),
                Record::Message(slot) => return Ok(Some(slot)),
                Record::Padding { next } => self.advance(cursor, next, 0),
            }
        }
    }

    /// For a consumer waiting at `position`: asks the CPU to fetch the
    /// cache lines after the first of a record of `size` bytes there (the
    /// size of the one before, for a guess). The wait polls the record
    /// word, so its line comes over when the word is written; the rest of
    /// a small record would come only when the payload is read, a second
    /// transfer between the CPUs one after the other. Fetched while
    /// polling, it comes beside the word's line (the producer writes the
    /// record before its word, so what the lines hold when the word is seen
    /// is final, and a line fetched too early is fetched again by the
    /// coherence protocol, never read stale). Only a hint: records up to
    /// four lines, inside the data area, and nothing under loom.
    #[inline]
    pub(crate) fn prefetch_record(&self, position: u64, size: u64) {
        const LINE: u64 = 64;
        let offset = self.offset(position);
        if size > 4 * LINE || offset + size > self.capacity {
            return;
        }
        let mut line = (offset & !(LINE - 1)) + LINE;
        while line < offset + size {
            prefetch(self.data.as_ptr().wrapping_add(line as usize));
            line += LINE;
        }
    }

    /// Hands the space of a read message back to the producer.
    #[inline]
    pub(crate) fn release(&self, cursor: &mut ConsumerCursor, slot: Slot) {
        debug_assert_eq!(slot.position, cursor.head);
        self.advance(cursor, slot.position + record_size(slot.len), 1);
    }

    /// Hands every message from the consumer's head on (at most one lap,
    /// so that a corrupt ring of records going round forever cannot keep
    /// it busy) to `f`, then publishes the new head once: one index update
    /// for the batch. On a corrupt record, what was read before it is
    /// still released, then the error returned. (Only the loom model
    /// drains without a stop condition.)
    #[cfg(loom)]
    pub(crate) fn drain(
        &self,
        cursor: &mut ConsumerCursor,
        mut f: impl FnMut(Slot),
    ) -> Result<u64> {
        self.drain_while(cursor, |slot| {
            f(slot);
            true
        })
    }

    /// [`drain`](RingRef::drain), while `f` returns true: the message for
    /// which it returns false is not released. Inlined whole into the
    /// caller's loop, with `f`: per message, one word's check and `f`;
    /// what is not a message (the end, padding, a corrupt word) is sorted
    /// out of line.
    #[inline(always)]
    pub(crate) fn drain_while(
        &self,
        cursor: &mut ConsumerCursor,
        mut f: impl FnMut(Slot) -> bool,
    ) -> Result<u64> {
        let start = cursor.head;
        let mut position = start;
        let mut count = 0;
        let mut outcome = Ok(());
        while position.wrapping_sub(start) < self.capacity {
            // A message, the common case, without building a `Record`.
            let slot = match self.message_at(position) {
                Some(slot) => slot,
                None => match self.not_a_message(position) {
                    Ok(Record::Empty) => break,
                    Ok(Record::Padding { next }) => {
                        position = next;
                        continue;
                    }
                    Ok(Record::Message(slot)) => slot,
                    Err(err) => {
                        outcome = Err(err);
                        break;
                    }
                },
            };
            if !f(slot) {
                break;
            }
            position = slot.position + record_size(slot.len);
            count += 1;
        }
        if position != start {
            self.advance(cursor, position, count);
        }
        outcome.map(|()| count)
    }

    /// For `drain_while`: the record at `position`, which `message_at` did
    /// not take for a message (the word may have changed since: it is
    /// loaded and checked again). Out of line, once a batch.
    #[cold]
    #[inline(never)]
    fn not_a_message(&self, position: u64) -> Result<Record> {
        self.record_at(position)
    }

    /// Moves `head` to `new_head` after `messages` messages were read.
    #[inline]
    fn advance(&self, cursor: &mut ConsumerCursor, new_head: u64, messages: u64) {
        cursor.head = new_head;
        let consumer = &self.header().consumer;
        // Release: our reads of the freed bytes happen before the producer
        // reuses them; pairs with the Acquire reload of `head` in `reserve`.
        consumer.head.store(new_head, Ordering::Release);
        if messages > 0 {
            // Wrapping: the count is in shared memory, so it may be anything.
            let received = consumer.received.load(Ordering::Relaxed);
            consumer
                .received
                .store(received.wrapping_add(messages), Ordering::Relaxed);
        }
    }

    /// Wakes a producer that sleeps for space; called after `release`s.
    #[inline]
    pub(crate) fn wake_producer(&self) {
        self.wake_if_sleeping(&self.header().wait.producer_sleeping);
    }

    /// Wakes a consumer that sleeps for records (after a close, say).
    #[inline]
    pub(crate) fn wake_consumer(&self) {
        self.wake_if_sleeping(&self.header().wait.consumer_sleeping);
    }

    /// The publishing half of rule 8 (shared with topics: see `wait`).
    #[inline]
    fn wake_if_sleeping(&self, sleeping: &AtomicU32) {
        super::wait::wake_if_sleeping(&self.header().wait, sleeping);
    }

    /// After a producer died: finds the true tail by walking committed
    /// records from the published one, which may lag by the records
    /// committed just before the crash (rule 4 guarantees the walk stops at
    /// the first uncommitted word).
    ///
    /// The consumer may already have read those records, so its `head` may
    /// be ahead of the published tail (by less than a lap); the walk then
    /// starts at `head`, which is on a record boundary.
    pub(crate) fn recover_tail(&self, published_tail: u64, head: u64) -> Result<u64> {
        check_position(published_tail, "tail")?;
        check_position(head, "head")?;
        let start = if head.wrapping_sub(published_tail) <= self.capacity {
            head
        } else {
            published_tail
        };
        if start.wrapping_sub(head) > self.capacity {
            return Err(Error::Corrupt(format!(
                "ring tail {published_tail} is not within {} bytes after head {head}",
                self.capacity
            )));
        }
        let mut tail = start;
        loop {
            if tail.wrapping_sub(head) >= self.capacity {
                return Err(Error::Corrupt(
                    "ring records run past a full lap".to_owned(),
                ));
            }
            tail = match self.record_at(tail)? {
                Record::Empty => return Ok(tail),
                Record::Message(slot) => slot.position + record_size(slot.len),
                Record::Padding { next } => next,
            };
        }
    }
}

/// Batches (rule 9).
impl RingRef {
    /// How far records appended to a batch that has reached `end` may go
    /// (a record may end at this position, not beyond): to the end of the
    /// data area's lap (a batch never wraps), and short of the space free
    /// as of the cached `head` by the empty word after it (rule 4).
    #[inline]
    pub(crate) fn batch_limit(&self, cursor: &ProducerCursor, end: u64) -> u64 {
        let lap_end = end - self.offset(end) + self.capacity;
        lap_end.min(cursor.cached_head + self.capacity - RECORD_HEADER)
    }

    /// Reserves room for a record of `len` payload bytes at `end`, the
    /// position after the records already in a batch that starts at the
    /// producer's tail: only if it fits before the end of the data area
    /// (a batch never wraps) and in the space free now, with the empty word
    /// after it. `Ok(None)` if it does not.
    pub(crate) fn reserve_after(
        &self,
        cursor: &mut ProducerCursor,
        end: u64,
        len: u64,
    ) -> Result<Option<Slot>> {
        if len > self.max_message {
            return Err(too_large(len, self.max_message));
        }
        debug_assert!(end.wrapping_sub(cursor.tail) <= self.capacity);
        let record_end = end + record_size(len);
        if record_end > self.batch_limit(cursor, end) {
            // Rule 7, as in `reserve`; `free` checks the head it loaded.
            cursor.cached_head = self.header().consumer.head.load(Ordering::Acquire);
            self.free(cursor)?;
            if record_end > self.batch_limit(cursor, end) {
                return Ok(None);
            }
        }
        Ok(Some(Slot { position: end, len }))
    }

    /// Writes the word of a record after a batch's first, its payload
    /// written: Relaxed, published by the first record's Release in
    /// `commit_batch`.
    #[inline]
    pub(crate) fn stage(&self, slot: Slot) {
        self.word(slot.position).store(
            record_word(slot.len as u32, KIND_MESSAGE),
            Ordering::Relaxed,
        );
    }

    /// Commits a batch: `first`, reserved at the tail with its payload
    /// written, and the records staged after it up to `end`, `count` in
    /// all; then wakes a sleeping consumer. One Release, one tail update,
    /// one wake-up check for the whole batch.
    #[inline]
    pub(crate) fn commit_batch(
        &self,
        cursor: &mut ProducerCursor,
        first: Slot,
        end: u64,
        count: u64,
    ) {
        debug_assert!(first.position == cursor.tail && end > first.position);
        // Rule 4: the word after the batch reads empty before any of it is
        // seen.
        self.word(end).store(0, Ordering::Relaxed);
        // Release: publishes every payload and staged word of the batch and
        // the empty word after it; pairs with the Acquire in `record_at`.
        self.word(first.position).store(
            record_word(first.len as u32, KIND_MESSAGE),
            Ordering::Release,
        );
        cursor.tail = end;
        let producer = &self.header().producer;
        // Relaxed, as in `commit`.
        producer.tail.store(end, Ordering::Relaxed);
        let sent = producer.sent.load(Ordering::Relaxed).wrapping_add(count);
        producer.sent.store(sent, Ordering::Relaxed);
        self.wake_if_sleeping(&self.header().wait.consumer_sleeping);
    }
}

// The errors of the per-message paths, out of line: building them (a
// formatted string) would otherwise cost every message stack space and
// spilled registers.

#[cold]
#[inline(never)]
fn too_large(len: u64, limit: u64) -> Error {
    Error::TooLarge {
        what: "message",
        size: len,
        limit,
    }
}

#[cold]
#[inline(never)]
fn bad_record(word: u64, position: u64, offset: u64) -> Error {
    Error::Corrupt(format!(
        "record word {word:#018x} at position {position} (offset {offset}) is not a valid record"
    ))
}

#[cold]
#[inline(never)]
fn head_out_of_range(cursor: &ProducerCursor, capacity: u64) -> Error {
    Error::Corrupt(format!(
        "ring head {} is not within {capacity} bytes before tail {}",
        cursor.cached_head, cursor.tail
    ))
}

/// A hint to fetch the cache line at `address` for reading; no effect on
/// what any load returns, and never a fault. (Topics' subscribers use it
/// too: `topic::lane`.)
#[inline(always)]
pub(crate) fn prefetch(address: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: a prefetch is only a hint: it reads nothing into the program
    // and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = address;
}

/// What a waiting consumer finds at its head
/// ([`RingRef::look_at_head`]).
pub(crate) enum Head {
    Message(Slot),
    Empty,
    Other,
}

/// A record word, decoded.
enum Record {
    Empty,
    Message(Slot),
    Padding { next: u64 },
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    use proptest::prelude::*;

    use super::*;
    use crate::ring::layout::{max_message_for, HEADER_SIZE};

    const CAPACITY: u64 = 4096;

    /// A zeroed header and data area in this process's memory, for the
    /// protocol's pure parts (no other process, no mapping).
    struct Memory {
        base: NonNull<u8>,
        layout: Layout,
    }

    impl Memory {
        fn new() -> Memory {
            let layout = Layout::from_size_align((HEADER_SIZE + CAPACITY) as usize, 4096).unwrap();
            // SAFETY: a layout of nonzero size.
            let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("memory");
            Memory { base, layout }
        }

        fn ring(&self) -> RingRef {
            // SAFETY: `base` holds a zeroed (valid) Header and CAPACITY
            // bytes after it, 4096-aligned, for as long as `self`; the
            // capacity is a power of two and the maximum message is the
            // largest it allows.
            unsafe {
                RingRef::new(
                    self.base.cast(),
                    NonNull::new_unchecked(self.base.as_ptr().add(HEADER_SIZE as usize)),
                    CAPACITY,
                    max_message_for(CAPACITY),
                )
            }
        }
    }

    impl Drop for Memory {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.base.as_ptr(), self.layout) };
        }
    }

    #[test]
    fn a_producer_is_tight_behind_its_consumer_until_it_sees_the_slack_freed() {
        let memory = Memory::new();
        let ring = memory.ring();
        // 3 KiB written, none read: 1 KiB free, as last seen.
        let mut cursor = ProducerCursor {
            tail: 3072,
            cached_head: 0,
        };
        // A 64 B record (72 bytes and the empty word after it) and 512
        // more fit in 1 KiB; 1 KiB more does not.
        assert!(!ring.is_tight(&cursor, 64, 512));
        assert!(ring.is_tight(&cursor, 64, 1024));
        // The consumer reads 1 KiB: tight until the producer looks.
        ring.header().consumer.head.store(1024, Ordering::Release);
        assert!(ring.is_tight(&cursor, 64, 1024));
        ring.reload_head(&mut cursor);
        assert_eq!(cursor.cached_head, 1024);
        assert!(!ring.is_tight(&cursor, 64, 1024));
        // An impossible head is for `reserve` to report, not tight.
        cursor.cached_head = 8192;
        assert!(!ring.is_tight(&cursor, 64, 1024));
    }

    proptest! {
        /// The inlined fast paths (a waiting consumer's look at its head
        /// too) agree with the full ones wherever they answer, and
        /// answer for hostile positions and words without overflowing or
        /// reaching outside the data area.
        #[test]
        fn the_fast_paths_agree_with_the_full_ones(
            tail in (0u64..1 << 20).prop_map(|t| t * 8),
            behind in prop_oneof![0u64..=CAPACITY / 8, any::<u64>().prop_map(|b| b / 8)],
            len in prop_oneof![0u64..=2 * CAPACITY, any::<u64>()],
            word in prop_oneof![
                (0u32..=3, 0u32..=CAPACITY as u32).prop_map(|(k, l)| record_word(l, k)),
                any::<u64>(),
            ],
        ) {
            let memory = Memory::new();
            let ring = memory.ring();
            let cursor = ProducerCursor { tail, cached_head: tail.wrapping_sub(behind * 8) };
            if let Some(slot) = ring.reserve_fast(&cursor, len) {
                prop_assert_eq!(slot, Slot { position: tail, len });
                let offset = tail & (CAPACITY - 1);
                prop_assert!(offset + record_size(len) <= CAPACITY);
                // The full path, with its cached head and no reload, finds
                // the same room without padding.
                let mut full = ProducerCursor { tail, cached_head: cursor.cached_head };
                prop_assert_eq!(ring.reserve(&mut full, len).unwrap(), Some(slot));
                prop_assert_eq!(full.tail, tail);
            }

            let position = tail;
            ring.word(position).store(word, Ordering::Relaxed);
            let consumer = ConsumerCursor { head: position };
            let fast = ring.peek_message(&consumer);
            let look = ring.look_at_head(&consumer, len);
            match ring.record_at(position) {
                Ok(Record::Message(slot)) => {
                    prop_assert_eq!(fast, Some(slot));
                    prop_assert!(matches!(look, Head::Message(s) if s == slot));
                }
                Ok(Record::Empty) => {
                    prop_assert_eq!(fast, None);
                    prop_assert!(matches!(look, Head::Empty));
                }
                _ => {
                    prop_assert_eq!(fast, None);
                    prop_assert!(matches!(look, Head::Other));
                }
            }
        }
    }
}
