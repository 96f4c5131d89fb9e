//! The lane protocol: how one publisher writes records into its lane, and
//! how any number of subscribers read them, over memory all can write.
//!
//! # Rules
//!
//! 1. A lane has one writer, its publisher (the holder of the lane's lock).
//!    Positions are byte counts since the lane was created; a position's
//!    offset is `position & (capacity - 1)`. Every position is a multiple
//!    of 8 and, in the lane header, `head <= tail <= reserve` and
//!    `reserve - head <= capacity`.
//! 2. A record starts at a multiple of 8 with four words: length | kind
//!    (1 message, 2 padding), publisher id, publisher sequence, lane
//!    sequence; the payload follows, and the record's size is rounded up to
//!    8. A record never wraps: one that does not fit before the end of the
//!    lane is preceded by a padding record (its first word only) to the end.
//! 3. The publisher commits by writing the record, then storing `tail`
//!    past it with Release. Subscribers read records only below `tail`
//!    (Acquire), so a partial record of a dead publisher is never read: the
//!    next publisher of the lane writes over it.
//! 4. `head` is the oldest record still whole. Before writing up to a new
//!    `reserve`, the publisher moves `head` past every record that starts
//!    before `reserve - capacity` (walking its own records), so `head` is
//!    always a record boundary a joiner can start from.
//! 5. `reserve` is a seqlock counter: the publisher stores it (Release on
//!    a drop-oldest lane, after `head`) and then issues a Release fence
//!    before writing any byte below it. A subscriber of a drop-oldest topic
//!    reads a record (relaxed atomic loads), issues an Acquire fence and
//!    loads `reserve` (Acquire): if `reserve - capacity > position`, the
//!    bytes may have been overwritten while it read, and it discards them
//!    (it was lapped), and the `head` it then loads is at least the one
//!    stored before that `reserve`. Otherwise they are the record
//!    committed there. (Boehm, "Can seqlocks get along with
//!    programming language memory models?", 2012.)
//! 6. A lapped subscriber resumes at `head` and reports how many messages
//!    it missed: the lane sequence of the first record it reads there,
//!    minus the one it expected.
//! 7. Block topics: the publisher writes below `reserve` only up to the
//!    slowest active subscriber's position plus `capacity`. It raises
//!    `reserve` with SeqCst and then loads the subscribers' states and
//!    positions with SeqCst; a joining subscriber stores its positions and
//!    state with SeqCst and then loads `reserve` (SeqCst), and moves to
//!    `head` if its position is below `reserve - capacity`. Of the two
//!    store-then-load pairs one sees the other (Dekker), so the publisher
//!    never overwrites what a subscriber that joined still has to read.
//!    Positions that are impossible (past `tail` or over a lane behind)
//!    do not hold the publisher back: a subscriber that wrote one finds
//!    itself lapped by rule 5 and moves on.
//! 8. History: the publisher stores in `history_start` the position of
//!    the oldest of its last N messages still whole; a joiner that asks for
//!    history starts there (or at `head`, whichever is later).
//! 9. `version` is a seqlock counter over the pair (`tail`,
//!    `lane_sequence`): the publisher makes it odd before it stores them
//!    and even after. A joiner reads the pair between two equal even
//!    readings, so it knows the lane sequence of the first message it may
//!    receive, and can count exactly what it missed if it is lapped before
//!    it reads one (rule 6). After a publisher died, the records decide
//!    (the last message's lane sequence + 1).
//! 10. A subscriber stores its position in a lane (Release, after its reads
//!     of the records below it: rule 7) and wakes a sleeping publisher: on
//!     a Block topic after every message it takes, since a publisher may
//!     wait for that room while the subscriber's process blocks on
//!     something else; on a drop-oldest topic whenever it looks at the
//!     lanes (`merge`): with one lane in use, after at most a quarter lane
//!     of reading, and before it reports nothing to read or waits; with
//!     more, at every receive. Only the lane it reads now may be ahead of
//!     what it stored.

use std::collections::VecDeque;
use std::ptr::NonNull;

use super::layout::{
    kind_word, record_size, split_kind_word, LaneHeader, KIND_MESSAGE, KIND_PADDING, RECORD_ALIGN,
    RECORD_HEADER,
};
use crate::error::{Error, Result};
use crate::sync::{fence, AtomicU64, Ordering};

/// A view of one lane: its header and data area.
///
/// # Invariants
///
/// `header` and `words` point into a mapping that outlives every copy
/// (the member that owns the view owns the mapping); `words` has
/// `capacity / 8` atomics (the data area, 8-aligned); `capacity` is a
/// power of two and `max_message <= layout::max_message_for(capacity)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaneRef {
    header: NonNull<LaneHeader>,
    words: NonNull<AtomicU64>,
    capacity: u64,
    max_message: u64,
}

// SAFETY: the view reaches shared memory only through atomics and through
// the byte copies rules 3 and 5 allow; which thread holds it does not matter.
unsafe impl Send for LaneRef {}

/// A record read (not yet validated against laps, for drop-oldest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A message: where its payload is, and what it says about itself.
    Message(Meta),
    /// Padding: the next record is at `next`.
    Padding { next: u64 },
}

/// What a message record says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub position: u64,
    pub len: u64,
    pub publisher: u64,
    pub sequence: u64,
    pub lane_sequence: u64,
}

impl Meta {
    /// The position after this record.
    pub(crate) fn next(&self) -> u64 {
        self.position + record_size(self.len)
    }
}

/// A publisher's private state for its lane.
#[derive(Debug)]
pub(crate) struct PublisherCursor {
    pub tail: u64,
    pub reserve: u64,
    pub head: u64,
    /// Block: bytes below this may be written without looking again.
    pub limit: u64,
    pub id: u64,
    pub sequence: u64,
    pub lane_sequence: u64,
    /// The even value of the lane's `version` (rule 9).
    pub version: u64,
    /// Start positions of the last `history_depth` messages.
    pub history: VecDeque<u64>,
    pub history_depth: usize,
}

/// Where a reserved record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub position: u64,
    pub len: u64,
}

#[cold]
fn bad_record(word: u64, position: u64, offset: u64) -> Error {
    Error::Corrupt(format!(
        "topic record word {word:#018x} at lane position {position} (offset {offset}) is not a valid record"
    ))
}

/// Whether a word read from shared memory can be a position (rule 1).
#[inline(always)]
pub(crate) fn is_position(position: u64) -> bool {
    position.is_multiple_of(RECORD_ALIGN) && position < 1 << 62
}

/// Checks a position read from shared memory (rule 1).
#[inline]
pub(crate) fn check_position(position: u64, what: &str) -> Result<()> {
    if is_position(position) {
        Ok(())
    } else {
        Err(not_a_position(position, what))
    }
}

#[cold]
fn not_a_position(position: u64, what: &str) -> Error {
    Error::Corrupt(format!(
        "topic lane {what} {position} is not a position (a multiple of 8 below 2^62)"
    ))
}

impl LaneRef {
    /// # Safety
    ///
    /// - `header` is valid for the lifetime of every copy; `words` is valid
    ///   for `capacity / 8` atomics, as long.
    /// - `capacity` is a power of two, at least 4096, and `max_message <=
    ///   layout::max_message_for(capacity)`.
    pub(crate) unsafe fn new(
        header: NonNull<LaneHeader>,
        words: NonNull<AtomicU64>,
        capacity: u64,
        max_message: u64,
    ) -> LaneRef {
        LaneRef {
            header,
            words,
            capacity,
            max_message,
        }
    }

    #[inline]
    pub(crate) fn header(&self) -> &LaneHeader {
        // SAFETY: valid for our lifetime (type invariant); all atomics.
        unsafe { self.header.as_ref() }
    }

    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline]
    fn offset(&self, position: u64) -> u64 {
        position & (self.capacity - 1)
    }

    /// The 8-byte word at `position` (a multiple of 8).
    #[inline]
    fn word(&self, position: u64) -> &AtomicU64 {
        debug_assert!(position.is_multiple_of(8));
        let index = self.offset(position) / 8;
        // SAFETY: index < capacity / 8, inside `words` (type invariant);
        // positions are multiples of 8 (rule 1: checked when read from
        // shared memory, grown by record sizes).
        unsafe { &*self.words.as_ptr().add(index as usize) }
    }

    /// The payload of a record at `position`, `len` bytes, inside the lane
    /// (the caller validated the record).
    #[inline]
    pub(crate) fn payload(&self, position: u64, len: u64) -> *mut u8 {
        let offset = self.offset(position) + RECORD_HEADER;
        debug_assert!(offset + len <= self.capacity);
        // SAFETY: the record lies inside the data area (validated), so
        // `offset` is within the `capacity` bytes `words` points to.
        unsafe { self.words.as_ptr().cast::<u8>().add(offset as usize) }
    }

    /// The loom model writes a record's first payload word with an atomic
    /// store (its memory is loom's atomics, not bytes).
    #[cfg(all(test, loom))]
    pub(crate) fn store_payload_word(&self, position: u64, value: u64) {
        self.word(position + RECORD_HEADER)
            .store(value, Ordering::Relaxed);
    }

    /// Copies `len` payload bytes of the record at `position` into `out`
    /// with relaxed atomic loads (rule 5: the publisher may be overwriting
    /// them; the caller validates afterwards).
    pub(crate) fn copy_payload(&self, position: u64, len: u64, out: &mut [u8]) {
        let start = position + RECORD_HEADER;
        let mut done = 0usize;
        let len = len as usize;
        while done < len {
            let word = self.word(start + done as u64).load(Ordering::Relaxed);
            let bytes = word.to_le_bytes();
            let take = (len - done).min(8);
            out[done..done + take].copy_from_slice(&bytes[..take]);
            done += take;
        }
    }

    /// Reads and validates the record at `position`, which must be below
    /// `tail` (rule 2): never reads outside the lane, whatever the words
    /// say. Relaxed loads: the caller's Acquire of `tail` ordered them
    /// after the commit (rule 3), and drop-oldest callers check `reserve`
    /// after (rule 5).
    #[inline]
    pub(crate) fn record_at(&self, position: u64, tail: u64) -> Result<Record> {
        let (kind, len, next) = self.bounds(position, tail)?;
        if kind == KIND_PADDING {
            return Ok(Record::Padding { next });
        }
        Ok(Record::Message(Meta {
            position,
            len,
            publisher: self.word(position + 8).load(Ordering::Relaxed),
            sequence: self.word(position + 16).load(Ordering::Relaxed),
            lane_sequence: self.word(position + 24).load(Ordering::Relaxed),
        }))
    }

    /// The message record at `position` (below `tail`), validated from its
    /// first word as [`record_at`](LaneRef::record_at) validates it, or
    /// `None` for padding or a bad record (which `record_at` then tells
    /// apart): a subscriber's fast path. Its lane sequence is loaded only
    /// for `lossy` readers, the only ones that count what they missed.
    #[inline(always)]
    pub(crate) fn message_at(&self, position: u64, tail: u64, lossy: bool) -> Option<Meta> {
        let word = self.word(position).load(Ordering::Relaxed);
        let (len, kind) = split_kind_word(word);
        let len = u64::from(len);
        let end = position + record_size(len);
        let valid = kind == KIND_MESSAGE
            && len <= self.max_message
            && self.offset(position) + record_size(len) <= self.capacity
            && end <= tail;
        if !valid {
            return None;
        }
        Some(Meta {
            position,
            len,
            publisher: self.word(position + 8).load(Ordering::Relaxed),
            sequence: self.word(position + 16).load(Ordering::Relaxed),
            lane_sequence: if lossy {
                self.word(position + 24).load(Ordering::Relaxed)
            } else {
                0
            },
        })
    }

    /// The end of the record at `position` (below `tail`), validated from
    /// its first word alone: a step of the publisher's walk of `head`
    /// (rule 4).
    #[inline(always)]
    fn end_of(&self, position: u64, tail: u64) -> Result<u64> {
        self.bounds(position, tail).map(|(_, _, end)| end)
    }

    /// The kind, length and end of the record at `position` (below
    /// `tail`), validated from its first word alone.
    #[inline(always)]
    fn bounds(&self, position: u64, tail: u64) -> Result<(u32, u64, u64)> {
        let word = self.word(position).load(Ordering::Relaxed);
        let (len, kind) = split_kind_word(word);
        let len = u64::from(len);
        let offset = self.offset(position);
        if kind == KIND_MESSAGE {
            let size = record_size(len);
            if len <= self.max_message && offset + size <= self.capacity && position + size <= tail
            {
                return Ok((kind, len, position + size));
            }
        } else if kind == KIND_PADDING
            && offset > 0
            && offset + 8 + len == self.capacity
            && position + 8 + len <= tail
        {
            return Ok((kind, len, position + 8 + len));
        }
        Err(bad_record(word, position, offset))
    }

    /// Whether bytes at `position` may have been overwritten since the
    /// caller read them (rule 5).
    #[inline]
    pub(crate) fn overwritten(&self, position: u64) -> bool {
        // Acquire fence: our reads of the record happen before the load of
        // `reserve`; pairs with the Release fence after the publisher's
        // store of `reserve` in `make_room`.
        fence(Ordering::Acquire);
        // Acquire: pairs with the Release store of `reserve` (drop-oldest),
        // so that a lapped reader's `resync` then finds `head` at least
        // where the publisher moved it before that store.
        let reserve = self.header().reserve.load(Ordering::Acquire);
        reserve.wrapping_sub(self.capacity) > position && reserve >= self.capacity
    }

    /// The published `tail`, checked (rule 1).
    #[inline]
    pub(crate) fn tail(&self) -> Result<u64> {
        // Acquire: pairs with the Release in `commit`: the records below it
        // are visible.
        let tail = self.header().tail.load(Ordering::Acquire);
        check_position(tail, "tail")?;
        Ok(tail)
    }

    /// The published `head`, checked against `tail` (rule 1).
    pub(crate) fn head(&self, tail: u64) -> Result<u64> {
        let head = self.header().head.load(Ordering::Acquire);
        check_position(head, "head")?;
        if head > tail || tail - head > self.capacity {
            return Err(Error::Corrupt(format!(
                "topic lane head {head} is not within {} bytes before tail {tail}",
                self.capacity
            )));
        }
        Ok(head)
    }

    /// Where a joiner starts, and the lane sequence of the first message
    /// it may receive there (rules 8, 9): the oldest retained message when
    /// it asks for history, else the tail. `alive` says whether the lane's
    /// publisher still lives (asked only if its update seems stuck).
    pub(crate) fn join(&self, history: bool, alive: impl Fn() -> bool) -> Result<(u64, u64)> {
        let (tail, sequence) = self.consistent_tail(alive)?;
        if !history {
            return Ok((tail, sequence));
        }
        let head = self.head(tail)?;
        let start = self.header().history_start.load(Ordering::Acquire);
        let mut position =
            if check_position(start, "history start").is_err() || start > tail || start < head {
                head
            } else {
                start
            };
        // The first retained message's own lane sequence; if it is already
        // being overwritten, no history: start at the tail.
        while position < tail {
            let record = self.record_at(position, tail);
            if self.overwritten(position) {
                return Ok((tail, sequence));
            }
            match record? {
                Record::Padding { next } => position = next,
                Record::Message(meta) => return Ok((position, meta.lane_sequence)),
            }
        }
        Ok((tail, sequence))
    }

    /// `tail` and the lane sequence of a record there, consistent (rule 9).
    fn consistent_tail(&self, alive: impl Fn() -> bool) -> Result<(u64, u64)> {
        let header = self.header();
        for round in 0u32.. {
            // Acquire: pairs with the publisher's Release of the even value.
            let before = header.version.load(Ordering::Acquire);
            if before & 1 == 0 {
                let tail = self.tail()?;
                let sequence = header.lane_sequence.load(Ordering::Relaxed);
                // Acquire fence: the loads above happen before the check;
                // pairs with the Release fence after the odd store.
                fence(Ordering::Acquire);
                if header.version.load(Ordering::Relaxed) == before {
                    return Ok((tail, sequence));
                }
            }
            if round % 1024 == 1023 && !alive() {
                // Died mid-update: nobody writes now; the records decide.
                let tail = self.tail()?;
                let mut sequence = header.lane_sequence.load(Ordering::Relaxed);
                let mut position = self.head(tail)?;
                while position < tail {
                    position = match self.record_at(position, tail)? {
                        Record::Padding { next } => next,
                        Record::Message(meta) => {
                            sequence = meta.lane_sequence.wrapping_add(1);
                            meta.next()
                        }
                    };
                }
                return Ok((tail, sequence));
            }
            if round > 1 << 20 {
                return Err(Error::Corrupt(
                    "topic lane version stays odd while its publisher lives".to_owned(),
                ));
            }
            std::hint::spin_loop();
        }
        unreachable!("the loop above returns")
    }

    // --- the publisher's side -------------------------------------------

    /// A publisher's cursor for a lane it just took, continuing after what
    /// earlier publishers committed: checks the header and walks the
    /// records from `head` to `tail` (which validates them and finds the
    /// history).
    pub(crate) fn take_over(&self, id: u64, history_depth: usize) -> Result<PublisherCursor> {
        let header = self.header();
        let tail = self.tail()?;
        let head = self.head(tail)?;
        let reserve = header.reserve.load(Ordering::Relaxed);
        check_position(reserve, "reserve")?;
        if reserve < tail || reserve - head > self.capacity {
            return Err(Error::Corrupt(format!(
                "topic lane reserve {reserve} is not between tail {tail} and head {head} + {}",
                self.capacity
            )));
        }
        let mut lane_sequence = header.lane_sequence.load(Ordering::Relaxed);
        let mut history = VecDeque::new();
        let mut position = head;
        while position < tail {
            position = match self.record_at(position, tail)? {
                Record::Padding { next } => next,
                Record::Message(meta) => {
                    // Rule 9: a predecessor may have died between its
                    // stores of `tail` and `lane_sequence`.
                    lane_sequence = meta.lane_sequence.wrapping_add(1);
                    if history_depth > 0 {
                        if history.len() == history_depth {
                            history.pop_front();
                        }
                        history.push_back(meta.position);
                    }
                    meta.next()
                }
            };
        }
        if position != tail {
            return Err(Error::Corrupt(format!(
                "topic lane records end at {position}, not at tail {tail}"
            )));
        }
        let version = header.version.load(Ordering::Relaxed);
        let version = version.wrapping_add(version & 1);
        header.version.store(version, Ordering::Relaxed);
        header.lane_sequence.store(lane_sequence, Ordering::Relaxed);
        Ok(PublisherCursor {
            tail,
            reserve,
            head,
            limit: tail,
            id,
            sequence: 0,
            lane_sequence,
            version,
            history,
            history_depth,
        })
    }

    /// Where a record of `len` bytes goes if it fits below the cursor's
    /// `limit` without padding: what [`reserve`](LaneRef::reserve) returns
    /// then, found from the publisher's own cursor alone (no shared word is
    /// read), so a publisher's fast path.
    #[inline(always)]
    pub(crate) fn fits(&self, cursor: &PublisherCursor, len: u64) -> Option<Slot> {
        // `len` first: a record size of an absurd length would overflow.
        let fits = len <= self.max_message
            && cursor.tail + record_size(len) <= cursor.limit
            && self.offset(cursor.tail) + record_size(len) <= self.capacity;
        fits.then_some(Slot {
            position: cursor.tail,
            len,
        })
    }

    /// Reserves room for a record of `len` bytes (rules 2, 4, 5, 7). For a
    /// drop-oldest lane (`positions` is `None`) it always succeeds; for a
    /// Block lane `positions(tail)` yields the slowest active subscriber's
    /// position (`None` if there is none), and `Ok(None)` means not enough
    /// room yet.
    #[inline]
    pub(crate) fn reserve(
        &self,
        cursor: &mut PublisherCursor,
        len: u64,
        positions: Option<&mut dyn FnMut(u64) -> Option<u64>>,
    ) -> Result<Option<Slot>> {
        if len > self.max_message {
            return Err(Error::TooLarge {
                what: "message",
                size: len,
                limit: self.max_message,
            });
        }
        let size = record_size(len);
        let to_end = self.capacity - self.offset(cursor.tail);
        let padding = if size > to_end { to_end } else { 0 };
        let end = cursor.tail + padding + size;
        match positions {
            None => {
                if end > cursor.reserve {
                    self.make_room(cursor, end, Ordering::Release)?;
                }
                // Drop-oldest writes anywhere below `reserve` (`fits`).
                cursor.limit = cursor.reserve;
            }
            Some(slowest) => {
                if end > cursor.limit {
                    // Rule 7: raise `reserve` generously (a quarter lane),
                    // so that the SeqCst store and the scan are rare.
                    let want = end.max(cursor.tail + self.capacity / 4);
                    if want > cursor.reserve {
                        self.make_room(cursor, want, Ordering::SeqCst)?;
                    }
                    let floor = slowest(cursor.tail).unwrap_or(cursor.tail);
                    cursor.limit = cursor.reserve.min(floor + self.capacity);
                    if end > cursor.limit {
                        return Ok(None);
                    }
                }
            }
        }
        if padding > 0 {
            let word = kind_word((padding - 8) as u32, KIND_PADDING);
            // Relaxed: published with the record by `commit` (rule 3).
            self.word(cursor.tail).store(word, Ordering::Relaxed);
            cursor.tail += padding;
        }
        Ok(Some(Slot {
            position: cursor.tail,
            len,
        }))
    }

    /// Moves `head` (rule 4) and raises `reserve` to `reserve` (rule 5),
    /// storing it with `order` (Release for drop-oldest, SeqCst for Block:
    /// rule 7).
    #[inline(never)]
    fn make_room(&self, cursor: &mut PublisherCursor, reserve: u64, order: Ordering) -> Result<()> {
        let header = self.header();
        let oldest = reserve.saturating_sub(self.capacity);
        let (mut head, tail) = (cursor.head, cursor.tail);
        while head < oldest && head < tail {
            head = self.end_of(head, tail)?;
        }
        cursor.head = head;
        while cursor
            .history
            .front()
            .is_some_and(|&start| start < cursor.head)
        {
            cursor.history.pop_front();
        }
        // Relaxed: ordered before the Release (drop-oldest) or SeqCst
        // (Block) store of `reserve` below, which a lapped subscriber loads
        // with Acquire before it reads `head` (rule 5); joiners see it
        // through `tail`'s Release (rule 3).
        header.head.store(cursor.head, Ordering::Relaxed);
        header.history_start.store(
            cursor.history.front().copied().unwrap_or(cursor.tail),
            Ordering::Relaxed,
        );
        cursor.reserve = reserve;
        header.reserve.store(reserve, order);
        // Release fence: the store of `reserve` happens before every write
        // below it that follows; pairs with the Acquire fence in
        // `overwritten` (rule 5).
        fence(Ordering::Release);
        Ok(())
    }

    /// Commits the record reserved at `slot` with `len` bytes written
    /// (rule 3); the caller wakes subscribers.
    #[inline]
    pub(crate) fn commit(&self, cursor: &mut PublisherCursor, slot: Slot, len: u64) {
        debug_assert!(slot.position == cursor.tail && len <= slot.len);
        let p = slot.position;
        self.word(p + 8).store(cursor.id, Ordering::Relaxed);
        self.word(p + 16).store(cursor.sequence, Ordering::Relaxed);
        self.word(p + 24)
            .store(cursor.lane_sequence, Ordering::Relaxed);
        self.word(p)
            .store(kind_word(len as u32, KIND_MESSAGE), Ordering::Relaxed);
        let next = p + record_size(len);
        cursor.tail = next;
        // Wrapping: both counts were read from shared memory when this
        // publisher took its lane, and a hostile value must not panic.
        cursor.sequence = cursor.sequence.wrapping_add(1);
        cursor.lane_sequence = cursor.lane_sequence.wrapping_add(1);
        let header = self.header();
        // Rule 9: odd while the pair changes. Relaxed, then a Release
        // fence: the odd value is visible before either store below; pairs
        // with the Acquire fence in `join`.
        header
            .version
            .store(cursor.version.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // Release: publishes the record; pairs with the Acquire in `tail`.
        header.tail.store(next, Ordering::Release);
        header
            .lane_sequence
            .store(cursor.lane_sequence, Ordering::Relaxed);
        cursor.version = cursor.version.wrapping_add(2);
        // Release: the pair is stored before the even value; pairs with the
        // Acquire load of `version` in `join`.
        header.version.store(cursor.version, Ordering::Release);
        header.published.store(cursor.sequence, Ordering::Relaxed);
        // A topic without history has no joiner that reads `history_start`
        // (rule 8): no store per message.
        if cursor.history_depth > 0 {
            self.keep_history(cursor, p);
        }
    }

    /// Rule 8: `p` is the newest of the last `history_depth` messages.
    #[inline(never)]
    fn keep_history(&self, cursor: &mut PublisherCursor, p: u64) {
        if cursor.history.len() == cursor.history_depth {
            cursor.history.pop_front();
        }
        cursor.history.push_back(p);
        let start = cursor.history.front().copied().unwrap_or(p);
        // Release: the records from `start` to the tail are visible to a
        // joiner that reads it (it also reads `tail`, with Acquire).
        self.header().history_start.store(start, Ordering::Release);
    }
}

// --- the subscriber's side -----------------------------------------------

/// A subscriber's private state for one lane.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaneCursor {
    pub position: u64,
    /// The lane's `tail` as last loaded.
    pub tail: u64,
    /// The subscriber's fast path reads the record at `position` while it
    /// is below this (at most `tail`; 0 sends every read through `next`).
    pub limit: u64,
    /// The position last stored in the subscriber's entry (rule 10).
    pub published: u64,
    /// The lane sequence of the next message, once one was read.
    pub expected: Option<u64>,
    /// Set when a lap moved the position (rule 6), until the next message.
    pub lapped: bool,
}

/// What a subscriber finds next in a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Empty,
    Message(Meta),
    /// Rule 6: this many messages were overwritten before they were read.
    Lagged {
        missed: u64,
        publisher: u64,
    },
}

/// Laps a reader may take in one call before it gives up for now (a
/// publisher that laps it faster than it reads one record).
const MAX_RESYNCS: u32 = 64;

impl LaneRef {
    /// The next message at the cursor, skipping padding. With `lossy`
    /// (drop-oldest), a record found overwritten moves the cursor to `head`
    /// (rules 5, 6); without, the lane cannot be overwritten under a
    /// subscriber (rule 7), so a bad record is corruption. The caller
    /// copies a drop-oldest message and then checks [`overwritten`] again.
    #[inline(always)]
    pub(crate) fn next(&self, cursor: &mut LaneCursor, lossy: bool) -> Result<Next> {
        let mut resyncs = 0;
        loop {
            if cursor.position == cursor.tail {
                cursor.tail = self.tail()?;
                if cursor.position == cursor.tail {
                    // The next record will start here: load its line now,
                    // while polling, so that a commit's two lines (the
                    // record, then `tail`) reach a waiting subscriber
                    // together, not one after the other. The word is not
                    // looked at (rule 3: only bytes below `tail` are read).
                    std::hint::black_box(self.word(cursor.position).load(Ordering::Relaxed));
                    return Ok(Next::Empty);
                }
            }
            let plausible =
                cursor.position < cursor.tail && cursor.tail - cursor.position <= self.capacity;
            let record = if plausible {
                self.record_at(cursor.position, cursor.tail)
            } else {
                Err(Error::Corrupt(format!(
                    "topic lane position {} is not within {} bytes before tail {}",
                    cursor.position, self.capacity, cursor.tail
                )))
            };
            let lapped = lossy && (!plausible || self.overwritten(cursor.position));
            match record {
                _ if lapped => {
                    resyncs += 1;
                    if resyncs > MAX_RESYNCS {
                        cursor.position = cursor.tail;
                        cursor.limit = 0;
                        cursor.lapped = true;
                        return Ok(Next::Empty);
                    }
                    self.resync(cursor)?;
                }
                Err(err) => return Err(err),
                Ok(Record::Padding { next }) => cursor.position = next,
                Ok(Record::Message(meta)) => {
                    if cursor.lapped {
                        cursor.lapped = false;
                        let missed = cursor
                            .expected
                            .map_or(0, |e| meta.lane_sequence.saturating_sub(e));
                        cursor.expected = Some(meta.lane_sequence);
                        if missed > 0 {
                            return Ok(Next::Lagged {
                                missed,
                                publisher: meta.publisher,
                            });
                        }
                    }
                    return Ok(Next::Message(meta));
                }
            }
        }
    }

    /// Rule 6: moves a lapped cursor to `head`.
    #[cold]
    pub(crate) fn resync(&self, cursor: &mut LaneCursor) -> Result<()> {
        cursor.tail = self.tail()?;
        cursor.position = self.head(cursor.tail)?;
        // The next message reports the lap (`next`), never the fast path.
        cursor.limit = 0;
        cursor.lapped = true;
        Ok(())
    }

    /// Moves the cursor past a message that was read. Only a `lossy`
    /// reader counts lane sequences (its meta carries them: `message_at`).
    #[inline(always)]
    pub(crate) fn consumed(cursor: &mut LaneCursor, meta: &Meta, lossy: bool) {
        cursor.position = meta.next();
        if lossy {
            cursor.expected = Some(meta.lane_sequence.wrapping_add(1));
        }
    }
}
