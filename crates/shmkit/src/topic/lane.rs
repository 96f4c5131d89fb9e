//! The lane protocol: how one publisher writes records into its lane, and
//! how any number of subscribers read them, over memory all can write.
//!
//! # Rules (format version 2)
//!
//! 1. A lane has one writer, its publisher (the holder of the lane's lock).
//!    Positions are byte counts since the lane was created; a position's
//!    offset is `position & (capacity - 1)`. Every position is a multiple
//!    of 8 and, in the lane header, `head <= tail <= reserve` and
//!    `reserve - head <= capacity`.
//! 2. A record starts at a multiple of 8 with four words: length | kind
//!    (0 empty, 1 message, 2 padding), publisher id, publisher sequence,
//!    lane sequence; the payload follows, and the record's size is rounded
//!    up to 8. A record never wraps: one that does not fit before the end
//!    of the lane is preceded by a padding record (its first word only) to
//!    the end.
//! 3. A record is committed by its first word, as a ring's (rule 4 of
//!    `ring::protocol`): the publisher writes the payload and the other
//!    three words, stores an empty word (0) where the next record will
//!    start, then stores the record's first word with Release. So the word
//!    at the end of the committed records is always empty, and a reader
//!    that loads a record word with Acquire sees the record whole. (The
//!    publisher keeps 8 bytes for that word: it never fills a lane
//!    completely.) Padding is committed the same way, when it is reserved,
//!    after the empty word at offset 0. A partial record of a dead
//!    publisher is never read: its first word is still the empty one.
//! 4. After the word, the publisher stores `tail` past the record (Release,
//!    inside the `version` seqlock of rule 10): for joiners, status and the
//!    next publisher of the lane, never for a subscriber's receive. A
//!    publisher that died between a record's word and `tail` left a
//!    committed record past `tail` that subscribers may have read: the next
//!    publisher of the lane finds the true tail by walking the records from
//!    `tail` to the first empty word, and continues there.
//! 5. `head` is the oldest record still whole. Before writing up to a new
//!    `reserve`, the publisher moves `head` past every record that starts
//!    before `reserve - capacity` (walking its own records) and stores it
//!    with Release, so `head` is always a committed record boundary (or the
//!    tail) a joiner or a lapped reader can start from, and one that loads
//!    it with Acquire sees the record there whole.
//! 6. `reserve` is a seqlock counter: the publisher stores it (Release on
//!    a drop-oldest lane, after `head`) and then issues a Release fence
//!    before writing any byte below it (the empty word included). A
//!    subscriber of a drop-oldest topic reads a record (its word with
//!    Acquire, the rest relaxed), issues an Acquire fence and loads
//!    `reserve` (Acquire): if `reserve - capacity > position`, the bytes
//!    may be a newer lap's (its word too, whatever it says), and it
//!    discards them (it was lapped). Otherwise they are the record
//!    committed there: no newer lap wrote them, and the only older values
//!    of that word, which the empty word stored before the previous
//!    record's commit replaced, are not visible to a reader that got there
//!    through that record or through `head` (rule 5). Lengths are checked
//!    against the lane before any byte is read. (Boehm, "Can seqlocks get
//!    along with programming language memory models?", 2012.)
//! 7. A lapped subscriber resumes at `head` and reports how many messages
//!    it missed: the lane sequence of the first record it reads there,
//!    minus the one it expected. An empty word on a drop-oldest lane is
//!    checked against laps as a record is (it may be a newer lap's).
//! 8. Block topics: the publisher writes below `reserve` only up to the
//!    slowest active subscriber's position plus `capacity` (its empty
//!    word included), so the word at a Block subscriber's position is
//!    empty or the record committed there. It raises `reserve` with
//!    SeqCst and then loads the subscribers' states and positions with
//!    SeqCst; a joining subscriber stores its positions and state with
//!    SeqCst and then loads `reserve` (SeqCst), and moves to `head` if its
//!    position is below `reserve - capacity`. Of the two store-then-load
//!    pairs one sees the other (Dekker), so the publisher never overwrites
//!    what a subscriber that joined still has to read. Positions that are
//!    impossible (past the tail or over a lane behind) do not hold the
//!    publisher back.
//! 9. History: the publisher stores in `history_start` the position of
//!    the oldest of its last N messages still whole; a joiner that asks for
//!    history starts there (or at `head`, whichever is later).
//! 10. `version` is a seqlock counter over the pair (`tail`,
//!     `lane_sequence`): the publisher makes it odd before it stores them
//!     and even after. A joiner reads the pair between two equal even
//!     readings, so it knows the lane sequence of the first message it may
//!     receive, and can count exactly what it missed if it is lapped before
//!     it reads one (rule 7). After a publisher died, the records decide
//!     (the last message's lane sequence + 1).
//! 11. A subscriber stores its position in a lane (Release, after its reads
//!     of the records below it: rule 8) and wakes a sleeping publisher: on
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
    kind_word, record_size, split_kind_word, LaneHeader, KIND_EMPTY, KIND_MESSAGE, KIND_PADDING,
    RECORD_ALIGN, RECORD_HEADER,
};
use crate::error::{Error, Result};
use crate::sync::{fence, AtomicU64, Ordering};

/// The empty word after the last record (rule 3).
pub(crate) const EMPTY_WORD: u64 = RECORD_ALIGN;

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
// the byte copies rules 3, 6 and 8 allow; which thread holds it does not
// matter.
unsafe impl Send for LaneRef {}

/// A record read (not yet validated against laps, for drop-oldest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// The empty word: nothing committed here (yet).
    Empty,
    /// A message: where its payload is, and what it says about itself.
    Message(Meta),
    /// Padding: the next record is at `next`.
    Padding { next: u64 },
}

/// What a message record says about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Records (with the empty word after them) may be written below this
    /// without looking again: `reserve`, and on a Block topic no more than
    /// the slowest subscriber's position plus `capacity`.
    pub limit: u64,
    pub id: u64,
    pub sequence: u64,
    pub lane_sequence: u64,
    /// The even value of the lane's `version` (rule 10).
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
#[inline(never)]
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

    /// Word `k` (0 to 3) of the record header at `position`, which lies
    /// inside the lane: the index is computed once for the four (the
    /// compiler cannot fold `(position + 8k) & mask` into `position & mask`
    /// + 8k, which holds only because a record never wraps).
    #[inline(always)]
    fn record_word(&self, position: u64, k: usize) -> &AtomicU64 {
        debug_assert!(k < 4 && self.offset(position) + RECORD_HEADER <= self.capacity);
        let index = self.offset(position) as usize / 8 + k;
        // SAFETY: a record's header lies inside the lane (the callers
        // validated the record, or reserved it: rule 2), so index <
        // capacity / 8, inside `words`.
        unsafe { &*self.words.as_ptr().add(index) }
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
    /// with relaxed atomic loads (rule 6: the publisher may be overwriting
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

    /// For a subscriber polling the word at `position`: asks the CPU to
    /// fetch the cache lines after the word's of a record of `size` bytes
    /// there (the size of the one before, for a guess), as the ring's
    /// consumer does (`RingRef::prefetch_record`): the poll brings the
    /// word's line when the record is committed, and the payload's would
    /// come only when it is read, a second transfer after the first. A line
    /// fetched too early is fetched again by the coherence protocol, never
    /// read stale. Only a hint: records up to four lines, inside the lane.
    #[inline]
    pub(crate) fn prefetch_record(&self, position: u64, size: u64) {
        const LINE: u64 = 64;
        let offset = self.offset(position);
        if size > 4 * LINE || offset + size > self.capacity {
            return;
        }
        let base = self.words.as_ptr().cast::<u8>();
        let mut line = (offset & !(LINE - 1)) + LINE;
        while line < offset + size {
            crate::ring::protocol::prefetch(base.wrapping_add(line as usize));
            line += LINE;
        }
    }

    /// Whether a message of `len` bytes at `position` lies inside the lane
    /// and within the topic's maximum (rule 2).
    #[inline(always)]
    fn message_fits(&self, position: u64, len: u64) -> bool {
        len <= self.max_message && self.offset(position) + record_size(len) <= self.capacity
    }

    /// The meta words of a message record whose first word was validated.
    #[inline(always)]
    fn meta(&self, position: u64, len: u64, lane_sequence: bool) -> Meta {
        Meta {
            position,
            len,
            publisher: self.record_word(position, 1).load(Ordering::Relaxed),
            sequence: self.record_word(position, 2).load(Ordering::Relaxed),
            lane_sequence: if lane_sequence {
                self.record_word(position, 3).load(Ordering::Relaxed)
            } else {
                0
            },
        }
    }

    /// Reads and validates the record at `position` from its word (rule
    /// 3): never reads outside the lane, whatever the words say. The word
    /// is loaded with Acquire (pairs with the Release in `commit` and
    /// `pad`), the rest relaxed; drop-oldest callers check `reserve` after
    /// (rule 6).
    #[inline]
    pub(crate) fn record_at(&self, position: u64) -> Result<Record> {
        let word = self.word(position).load(Ordering::Acquire);
        let (len, kind) = split_kind_word(word);
        let len = u64::from(len);
        let offset = self.offset(position);
        match kind {
            KIND_EMPTY if len == 0 => Ok(Record::Empty),
            KIND_MESSAGE if self.message_fits(position, len) => {
                Ok(Record::Message(self.meta(position, len, true)))
            }
            // Never at offset 0, where every record fits (rule 2): a
            // padding record is always followed by another kind.
            KIND_PADDING if offset > 0 && offset + 8 + len == self.capacity => {
                Ok(Record::Padding {
                    next: position + 8 + len,
                })
            }
            _ => Err(bad_record(word, position, offset)),
        }
    }

    /// The message record at `position`, validated from its first word as
    /// [`record_at`](LaneRef::record_at) validates it, or `None` for
    /// anything else (nothing yet, padding, a bad record, which `record_at`
    /// then tells apart): a subscriber's fast path, the ring's
    /// `peek_message` with two meta words. Its lane sequence is loaded only
    /// for `lossy` readers, the only ones that count what they missed.
    #[inline(always)]
    pub(crate) fn message_at(&self, position: u64, lossy: bool) -> Option<Meta> {
        // The view's fields and the record's index are taken before the
        // Acquire load, after which the compiler would load them again.
        let lane = *self;
        let offset = lane.offset(position);
        let words = lane.words.as_ptr();
        let index = offset as usize / 8;
        // Acquire, as in `record_at`.
        // SAFETY: offset < capacity (a mask of it), so index < capacity / 8,
        // inside `words` (type invariant).
        let word = unsafe { &*words.add(index) }.load(Ordering::Acquire);
        let (len, kind) = split_kind_word(word);
        let len = u64::from(len);
        let valid = kind == KIND_MESSAGE
            && len <= lane.max_message
            && offset + record_size(len) <= lane.capacity;
        if !valid {
            return None;
        }
        // SAFETY: the record's header lies inside the lane (checked just
        // above: offset + record_size(len) <= capacity, and a record's size
        // covers its header), so index + 3 < capacity / 8.
        let meta_word = |k: usize| unsafe { &*words.add(index + k) }.load(Ordering::Relaxed);
        Some(Meta {
            position,
            len,
            publisher: meta_word(1),
            sequence: meta_word(2),
            lane_sequence: if lossy { meta_word(3) } else { 0 },
        })
    }

    /// Reads and validates the record at `position`, which must be below
    /// `tail`, a published tail (rule 4): the walks of joiners and of the
    /// publisher's `head`, over records that are all committed.
    fn record_below(&self, position: u64, tail: u64) -> Result<Record> {
        let record = self.record_at(position)?;
        let end = match record {
            Record::Empty => position,
            Record::Message(meta) => meta.next(),
            Record::Padding { next } => next,
        };
        if end <= position || end > tail {
            let word = self.word(position).load(Ordering::Relaxed);
            return Err(bad_record(word, position, self.offset(position)));
        }
        Ok(record)
    }

    /// The end of the record at `position` (below `tail`), validated from
    /// its first word alone: a step of the publisher's walk of `head`
    /// (rule 5), over its own records.
    #[inline(always)]
    fn end_of(&self, position: u64, tail: u64) -> Result<u64> {
        let word = self.word(position).load(Ordering::Relaxed);
        let (len, kind) = split_kind_word(word);
        let len = u64::from(len);
        let offset = self.offset(position);
        let end = match kind {
            KIND_MESSAGE if self.message_fits(position, len) => position + record_size(len),
            KIND_PADDING if offset > 0 && offset + 8 + len == self.capacity => position + 8 + len,
            _ => return Err(bad_record(word, position, offset)),
        };
        if end > tail {
            return Err(bad_record(word, position, offset));
        }
        Ok(end)
    }

    /// Whether bytes at `position` may have been overwritten since the
    /// caller read them (rule 6).
    #[inline]
    pub(crate) fn overwritten(&self, position: u64) -> bool {
        // Acquire fence: our reads of the record happen before the load of
        // `reserve`; pairs with the Release fence after the publisher's
        // store of `reserve` in `make_room`.
        fence(Ordering::Acquire);
        // Acquire: pairs with the Release store of `reserve` (drop-oldest).
        let reserve = self.header().reserve.load(Ordering::Acquire);
        reserve.wrapping_sub(self.capacity) > position && reserve >= self.capacity
    }

    /// The published `tail`, checked (rule 1).
    #[inline]
    pub(crate) fn tail(&self) -> Result<u64> {
        // Acquire: pairs with the Release in `publish_tail`: the records
        // below it are visible.
        let tail = self.header().tail.load(Ordering::Acquire);
        check_position(tail, "tail")?;
        Ok(tail)
    }

    /// The published `head`, checked against `tail` (rule 1).
    pub(crate) fn head(&self, tail: u64) -> Result<u64> {
        let head = self.head_now()?;
        if head > tail || tail - head > self.capacity {
            return Err(Error::Corrupt(format!(
                "topic lane head {head} is not within {} bytes before tail {tail}",
                self.capacity
            )));
        }
        Ok(head)
    }

    /// The published `head`, loaded before `tail` and checked against it,
    /// for a reader while the publisher may be at work: both only grow and
    /// `head <= tail` holds at every instant, so in this order `head` past
    /// `tail` is corruption, whereas `tail - head` may exceed a lane if the
    /// publisher lapped the lane between the two loads.
    pub(crate) fn head_before_tail(&self) -> Result<u64> {
        let head = self.head_now()?;
        in_order(head, self.tail()?)?;
        Ok(head)
    }

    /// The published `head`, checked to be a position (rule 1).
    fn head_now(&self) -> Result<u64> {
        // Acquire: pairs with the Release in `make_room`: the record at
        // `head` is visible whole (rule 5).
        let head = self.header().head.load(Ordering::Acquire);
        check_position(head, "head")?;
        Ok(head)
    }

    /// Where a joiner starts, and the lane sequence of the first message
    /// it may receive there (rules 9, 10): the oldest retained message when
    /// it asks for history, else the tail. `alive` says whether the lane's
    /// publisher still lives (asked only if its update seems stuck).
    pub(crate) fn join(&self, history: bool, alive: impl Fn() -> bool) -> Result<(u64, u64)> {
        // `head` before `tail`, as in `head_before_tail`: in this order a
        // live publisher cannot make `head` pass the `tail` we read.
        let head = if history {
            Some(self.head_now()?)
        } else {
            None
        };
        let (tail, sequence) = self.consistent_tail(alive)?;
        let Some(head) = head else {
            return Ok((tail, sequence));
        };
        in_order(head, tail)?;
        if tail - head > self.capacity {
            // Lapped while we looked: what `head` named is gone; no history.
            return Ok((tail, sequence));
        }
        // Acquire: pairs with the Release store in `keep_history`: the
        // record there is visible whole.
        let start = self.header().history_start.load(Ordering::Acquire);
        let mut position = if check_position(start, "history start").is_err() || start < head {
            head
        } else if start > tail {
            // Stored after a `tail` newer than ours: the latest messages
            // all lie past our `tail`, and are read as new from there.
            tail
        } else {
            start
        };
        // The first retained message's own lane sequence; if it is already
        // being overwritten, no history: start at the tail.
        while position < tail {
            let record = self.record_below(position, tail);
            if self.overwritten(position) {
                return Ok((tail, sequence));
            }
            match record? {
                Record::Padding { next } => position = next,
                Record::Message(meta) => return Ok((position, meta.lane_sequence)),
                Record::Empty => unreachable!("record_below refuses an empty word"),
            }
        }
        Ok((tail, sequence))
    }

    /// `tail` and the lane sequence of a record there, consistent (rule 10).
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
                    position = match self.record_below(position, tail)? {
                        Record::Message(meta) => {
                            sequence = meta.lane_sequence.wrapping_add(1);
                            meta.next()
                        }
                        Record::Padding { next } => next,
                        Record::Empty => unreachable!("record_below refuses an empty word"),
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
    /// earlier publishers committed: checks the header, walks the records
    /// from `head` to `tail` (which validates them and finds the history)
    /// and on to the first empty word (rule 4: a predecessor may have died
    /// between a record's word and its store of `tail`), and publishes that
    /// true tail.
    pub(crate) fn take_over(&self, id: u64, history_depth: usize) -> Result<PublisherCursor> {
        let header = self.header();
        let tail = self.tail()?;
        let head = self.head(tail)?;
        // Relaxed: the predecessor's; we write below it without a
        // `make_room` of our own. A lapped drop-oldest reader that reads
        // one of our writes still sees this `reserve` (rule 6) through the
        // Release fence in the `publish_tail` below, which comes before
        // any such write, and read-read coherence with this load: keep
        // that fence first.
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
        loop {
            // Below `tail` every record is committed; past it, records are
            // committed up to the empty word, which lies below `reserve`
            // (rule 3: it was raised past the empty word before any write).
            // A lane never reserved past `tail` (a new one) has nothing
            // past it.
            let record = if position < tail {
                self.record_below(position, tail)?
            } else if position + EMPTY_WORD <= reserve {
                self.record_at(position)?
            } else if position == tail {
                Record::Empty
            } else {
                return Err(Error::Corrupt(format!(
                    "topic lane records from tail {tail} run to reserve {reserve} without an empty word"
                )));
            };
            position = match record {
                Record::Empty => break,
                Record::Padding { next } => next,
                Record::Message(meta) => {
                    // Rule 10: a predecessor may have died between its
                    // stores of `tail` and `lane_sequence`, or before.
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
        let version = header.version.load(Ordering::Relaxed);
        let mut cursor = PublisherCursor {
            tail: position,
            reserve,
            head,
            limit: position,
            id,
            sequence: 0,
            lane_sequence,
            version: version.wrapping_add(version & 1),
            history,
            history_depth,
        };
        // Also makes an odd version (a predecessor that died mid-update)
        // even again.
        self.publish_tail(&mut cursor);
        if history_depth > 0 {
            let start = cursor.history.front().copied().unwrap_or(cursor.tail);
            header.history_start.store(start, Ordering::Release);
        }
        Ok(cursor)
    }

    /// Where a record of `len` bytes goes if it fits below the cursor's
    /// `limit` without padding: what [`reserve`](LaneRef::reserve) returns
    /// then, found from the publisher's own cursor alone (no shared word is
    /// read), so a publisher's fast path.
    #[inline(always)]
    pub(crate) fn fits(&self, cursor: &PublisherCursor, len: u64) -> Option<Slot> {
        // `len` first: a record size of an absurd length would overflow.
        let fits = len <= self.max_message
            && cursor.tail + record_size(len) + EMPTY_WORD <= cursor.limit
            && self.offset(cursor.tail) + record_size(len) <= self.capacity;
        fits.then_some(Slot {
            position: cursor.tail,
            len,
        })
    }

    /// Reserves room for a record of `len` bytes and the empty word after
    /// it (rules 2, 3, 5, 6, 8). For a drop-oldest lane (`positions` is
    /// `None`) it always succeeds; for a Block lane `positions(tail)`
    /// yields the slowest active subscriber's position (`None` if there is
    /// none), and `Ok(None)` means not enough room yet.
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
        // Rule 3: the empty word after the record is written too.
        let end = cursor.tail + padding + size + EMPTY_WORD;
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
                    // Rule 8: raise `reserve` generously (a quarter lane),
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
            self.pad(cursor, padding);
        }
        Ok(Some(Slot {
            position: cursor.tail,
            len,
        }))
    }

    /// Commits a padding record of `padding` bytes at the tail, to the end
    /// of the lane (rules 2, 3), and publishes the tail after it (so that
    /// `head`, which may move past the padding, never passes `tail`). Once
    /// a lap: out of the path of every message.
    #[cold]
    #[inline(never)]
    fn pad(&self, cursor: &mut PublisherCursor, padding: u64) {
        // Rule 3: the word at offset 0 reads empty before the padding that
        // leads to it is visible.
        self.word(cursor.tail + padding).store(0, Ordering::Relaxed);
        let word = kind_word((padding - 8) as u32, KIND_PADDING);
        // Release: publishes the empty word at offset 0; pairs with the
        // Acquire in `record_at`.
        self.word(cursor.tail).store(word, Ordering::Release);
        cursor.tail += padding;
        self.publish_tail(cursor);
    }

    /// Moves `head` (rule 5) and raises `reserve` to `reserve` (rule 6),
    /// storing it with `order` (Release for drop-oldest, SeqCst for Block:
    /// rule 8).
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
        // Release: the record at `head` (committed) is visible to whoever
        // loads it with Acquire (rule 5); and it is ordered before the
        // Release (drop-oldest) or SeqCst (Block) store of `reserve` below,
        // which a lapped subscriber loads with Acquire before it reads
        // `head` (rule 6).
        header.head.store(cursor.head, Ordering::Release);
        header.history_start.store(
            cursor.history.front().copied().unwrap_or(cursor.tail),
            Ordering::Release,
        );
        cursor.reserve = reserve;
        header.reserve.store(reserve, order);
        // Release fence: the store of `reserve` happens before every write
        // below it that follows; pairs with the Acquire fence in
        // `overwritten` (rule 6).
        fence(Ordering::Release);
        Ok(())
    }

    /// Commits the record reserved at `slot` with `len` bytes written
    /// (rules 3, 4); the caller wakes subscribers.
    #[inline]
    pub(crate) fn commit(&self, cursor: &mut PublisherCursor, slot: Slot, len: u64) {
        debug_assert!(slot.position == cursor.tail && len <= slot.len);
        let p = slot.position;
        let next = p + record_size(len);
        self.record_word(p, 1).store(cursor.id, Ordering::Relaxed);
        self.record_word(p, 2)
            .store(cursor.sequence, Ordering::Relaxed);
        self.record_word(p, 3)
            .store(cursor.lane_sequence, Ordering::Relaxed);
        // Rule 3: the next record's word reads empty before this one is
        // seen.
        self.word(next).store(0, Ordering::Relaxed);
        // Release: publishes the payload, the words above and the empty
        // word; pairs with the Acquire in `message_at` and `record_at`.
        self.record_word(p, 0)
            .store(kind_word(len as u32, KIND_MESSAGE), Ordering::Release);
        cursor.tail = next;
        // Wrapping: both counts were read from shared memory when this
        // publisher took its lane, and a hostile value must not panic.
        cursor.sequence = cursor.sequence.wrapping_add(1);
        cursor.lane_sequence = cursor.lane_sequence.wrapping_add(1);
        self.publish_tail(cursor);
        self.header()
            .published
            .store(cursor.sequence, Ordering::Relaxed);
        // A topic without history has no joiner that reads `history_start`
        // (rule 9): no store per message.
        if cursor.history_depth > 0 {
            self.keep_history(cursor, p);
        }
    }

    /// Stores the cursor's tail and lane sequence inside the `version`
    /// seqlock (rules 4, 10). The lane header's line stays in the
    /// publisher's cache: no subscriber reads it per message.
    #[inline(always)]
    fn publish_tail(&self, cursor: &mut PublisherCursor) {
        let header = self.header();
        // Rule 10: odd while the pair changes. Relaxed, then a Release
        // fence: the odd value is visible before either store below; pairs
        // with the Acquire fence in `consistent_tail`. (`take_over` relies
        // on this fence for rule 6 too.)
        header
            .version
            .store(cursor.version.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // Release: the records below it are visible to a joiner that loads
        // it with Acquire (`tail`).
        header.tail.store(cursor.tail, Ordering::Release);
        header
            .lane_sequence
            .store(cursor.lane_sequence, Ordering::Relaxed);
        cursor.version = cursor.version.wrapping_add(2);
        // Release: the pair is stored before the even value; pairs with the
        // Acquire load of `version` in `consistent_tail`.
        header.version.store(cursor.version, Ordering::Release);
    }

    /// Rule 9: `p` is the newest of the last `history_depth` messages.
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
    /// The subscriber's fast path reads the record at `position` while it
    /// is below this (0 sends every read through `next`): `merge` bounds
    /// how long it reads one lane without looking at the others.
    pub limit: u64,
    /// The position last stored in the subscriber's entry (rule 11).
    pub published: u64,
    /// The lane sequence of the next message, once one was read.
    pub expected: Option<u64>,
    /// Set when a lap moved the position (rule 7), until the next message.
    pub lapped: bool,
}

impl LaneCursor {
    /// A cursor at `position`, expecting the lane sequence `expected`
    /// there, which its entry also holds.
    pub(crate) fn at(position: u64, expected: Option<u64>) -> LaneCursor {
        LaneCursor {
            position,
            limit: 0,
            published: position,
            expected,
            lapped: false,
        }
    }
}

/// What a subscriber finds next in a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Empty,
    Message(Meta),
    /// Rule 7: this many messages were overwritten before they were read.
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
    /// (drop-oldest), a record (or empty word) found overwritten moves the
    /// cursor to `head` (rules 6, 7); without, the lane cannot be
    /// overwritten under a subscriber (rule 8), so a bad record is
    /// corruption. The caller copies a drop-oldest message and then checks
    /// [`overwritten`] again.
    #[inline]
    pub(crate) fn next(&self, cursor: &mut LaneCursor, lossy: bool) -> Result<Next> {
        let mut resyncs = 0;
        loop {
            let record = self.record_at(cursor.position);
            let lapped = lossy && self.overwritten(cursor.position);
            match record {
                _ if lapped => {
                    resyncs += 1;
                    self.resync(cursor)?;
                    if resyncs >= MAX_RESYNCS {
                        return Ok(Next::Empty);
                    }
                }
                Err(err) => return Err(err),
                Ok(Record::Empty) => return Ok(Next::Empty),
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

    /// Rule 7: moves a lapped cursor to `head`.
    #[cold]
    pub(crate) fn resync(&self, cursor: &mut LaneCursor) -> Result<()> {
        cursor.position = self.head_now()?;
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

/// `head` loaded before `tail` (both only grow, and `head <= tail` at
/// every instant): past it, the lane is corrupt.
fn in_order(head: u64, tail: u64) -> Result<()> {
    if head > tail {
        return Err(Error::Corrupt(format!(
            "topic lane head {head} is past tail {tail}"
        )));
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    use proptest::prelude::*;

    use super::*;
    use crate::topic::layout::{max_message_for, LANE_HEADER_SIZE};

    const CAPACITY: u64 = 4096;

    /// A zeroed lane header and data area in this process's memory.
    struct Memory {
        base: NonNull<u8>,
        layout: Layout,
    }

    impl Memory {
        fn new() -> Memory {
            let layout =
                Layout::from_size_align((LANE_HEADER_SIZE + CAPACITY) as usize, 4096).unwrap();
            // SAFETY: a layout of nonzero size.
            let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("memory");
            Memory { base, layout }
        }

        fn lane(&self) -> LaneRef {
            // SAFETY: `base` holds a zeroed (valid) lane header and CAPACITY
            // bytes after it, 128-aligned, for as long as `self`; the
            // capacity is a power of two and the maximum message is the
            // largest it allows.
            unsafe {
                LaneRef::new(
                    self.base.cast(),
                    NonNull::new_unchecked(self.base.as_ptr().add(LANE_HEADER_SIZE as usize))
                        .cast(),
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

    /// A joiner asking for history reads `head`, then `tail`, then
    /// `history_start` while the publisher goes on: `head` more than a lane
    /// behind that `tail` (lapped between the loads) or `history_start`
    /// past it (stored after a newer tail) start it at the tail; only
    /// `head` past `tail` is corrupt.
    #[test]
    fn a_joiner_that_saw_the_publisher_move_on_starts_at_the_tail() {
        let memory = Memory::new();
        let lane = memory.lane();
        let mut cursor = lane.take_over(1, 4).unwrap();
        for len in [10, 20, 30] {
            let slot = lane.reserve(&mut cursor, len, None).unwrap().unwrap();
            lane.commit(&mut cursor, slot, len);
        }
        let (tail, sequence) = (cursor.tail, cursor.lane_sequence);
        let header = lane.header();
        header.history_start.store(tail + 64, Ordering::Relaxed);
        assert_eq!(lane.join(true, || true).unwrap(), (tail, sequence));

        let far = 3 * CAPACITY;
        header.tail.store(far, Ordering::Relaxed);
        header.head.store(0, Ordering::Relaxed);
        assert_eq!(lane.join(true, || true).unwrap(), (far, sequence));

        header.head.store(far + 8, Ordering::Relaxed);
        let err = lane.join(true, || true).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
    }

    proptest! {
        /// The subscriber's fast path agrees with `record_at` wherever it
        /// answers, for any word at any position, and never describes a
        /// record outside the lane.
        #[test]
        fn the_fast_path_agrees_with_record_at(
            position in (0u64..1 << 20).prop_map(|p| p * 8),
            word in prop_oneof![
                (0u32..=3, 0u32..=CAPACITY as u32).prop_map(|(k, l)| kind_word(l, k)),
                any::<u64>(),
            ],
        ) {
            let memory = Memory::new();
            let lane = memory.lane();
            lane.word(position).store(word, Ordering::Relaxed);
            let fast = lane.message_at(position, true);
            match lane.record_at(position) {
                Ok(Record::Message(meta)) => {
                    prop_assert_eq!(fast, Some(meta));
                    prop_assert!(lane.offset(position) + record_size(meta.len) <= CAPACITY);
                }
                Ok(Record::Empty) => prop_assert_eq!((fast, word), (None, 0)),
                _ => prop_assert_eq!(fast, None),
            }
        }

        /// Rule 4: whatever published tail a publisher died with (any
        /// record boundary from `head` to the true tail), the next one
        /// finds the true tail and the next lane sequence, over wraps and
        /// padding.
        #[test]
        fn a_taker_over_recovers_every_committed_record(
            lens in proptest::collection::vec(0u64..700, 1..60),
            back in 0usize..60,
        ) {
            let memory = Memory::new();
            let lane = memory.lane();
            let mut cursor = lane.take_over(1, 0).unwrap();
            let mut boundaries = Vec::new();
            for &len in &lens {
                let slot = lane.reserve(&mut cursor, len, None).unwrap().unwrap();
                boundaries.push((slot.position, cursor.lane_sequence));
                lane.commit(&mut cursor, slot, len);
            }
            let (tail, lane_sequence) = (cursor.tail, cursor.lane_sequence);
            let head = lane.header().head.load(Ordering::Relaxed);
            let kept: Vec<_> = boundaries.into_iter().filter(|&(p, _)| p >= head).collect();
            let (published, sequence) = kept[kept.len() - 1 - back.min(kept.len() - 1)];
            lane.header().tail.store(published, Ordering::Relaxed);
            lane.header().lane_sequence.store(sequence, Ordering::Relaxed);
            let next = lane.take_over(2, 0).unwrap();
            prop_assert_eq!((next.tail, next.lane_sequence), (tail, lane_sequence));
            prop_assert_eq!(lane.header().tail.load(Ordering::Relaxed), tail);
            prop_assert_eq!(lane.header().version.load(Ordering::Relaxed) & 1, 0);
        }
    }
}
