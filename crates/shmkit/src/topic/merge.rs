//! A subscriber's merge of the lanes: its cursor in each, which lane it
//! reads now, and when it stores its positions (rule 11 of `lane`).
//!
//! With one lane in use, a receive reads the record word at its cursor in
//! that lane (the ring's `peek_message`: a word, checked, and two meta
//! words); on a Block topic it then stores its position (a publisher may
//! wait for that room), on a drop-oldest one nothing. Only after a quarter
//! lane (so that a lane opened meanwhile waits no longer, even if this one
//! never runs empty), when the lane is empty, or when the record there is
//! padding, bad or lapped does it look at the lanes again. With more lanes
//! in use, every receive does that and looks at the lanes round robin from
//! the one after the last it read, so that publishers that take turns are
//! read in turns and none starves the others. Either way every publisher's
//! messages come in its order.

use super::lane::{LaneCursor, LaneRef, Meta, Next};
use super::shared::{Entry, Shared};
use crate::error::{Error, Result};
use crate::ring::wait::wake_if_sleeping;
use crate::sync::Ordering;

/// Which lane a subscriber reads and where it is in each.
#[derive(Debug)]
pub(crate) struct Merge {
    /// One per lane of the table.
    cursors: Vec<LaneCursor>,
    /// The lane the fast path reads (`< cursors.len()`); every other
    /// lane's position is published (rule 11).
    current: usize,
    /// That lane's view (`shared.lanes[current]`), kept here so that the
    /// fast path and a read guard find it without indexing the table.
    lane: LaneRef,
    /// Messages received, stored with the positions.
    received: u64,
    /// Whether the last look found one lane in use: the fast path then
    /// reads a quarter lane of it before it looks again (no other lane to
    /// be fair to; a lane opened meanwhile is seen at the next look).
    single: bool,
    /// The record size of the last message read: what a waiting receive
    /// guesses the next one's to be (`prefetch`).
    last_size: u64,
    /// This subscriber's entry in the table.
    entry: Entry,
}

impl Merge {
    /// `last` is the view of the table's last lane, where the first look
    /// starts after.
    pub(crate) fn new(cursors: Vec<LaneCursor>, entry: Entry, last: LaneRef) -> Merge {
        Merge {
            // The first look starts at lane 0 (the one after the last).
            current: cursors.len() - 1,
            lane: last,
            cursors,
            received: 0,
            single: false,
            last_size: 0,
            entry,
        }
    }

    /// The message at the current lane's cursor, if the cursor is within
    /// the lane's batch and its word says a message is there: the fast
    /// path, one word's load and compares (rule 3 of `lane`).
    #[inline(always)]
    pub(crate) fn peek(&mut self, shared: &Shared) -> Option<(usize, Meta)> {
        let i = self.current;
        let cursor = self.cursors.get(i)?;
        if cursor.position >= cursor.limit {
            return None;
        }
        let meta = self.lane.message_at(cursor.position, shared.lossy())?;
        Some((i, meta))
    }

    /// The lane a message was last found in (`peek` or `poll`), its view:
    /// a read guard's, as nothing moves the merge while the guard lives.
    #[inline(always)]
    pub(crate) fn current(&self) -> (usize, LaneRef) {
        (self.current, self.lane)
    }

    /// Moves past a message of lane `i` that was read: on a drop-oldest
    /// topic stored later (rule 11), on a Block topic at once, since a
    /// publisher may wait for that space while this process blocks on
    /// something else (another topic's room, say) and never receives here
    /// again to store it.
    #[inline(always)]
    pub(crate) fn consume(&mut self, shared: &Shared, i: usize, meta: &Meta) {
        let lossy = shared.lossy();
        let Some(cursor) = self.cursors.get_mut(i) else {
            return;
        };
        super::lane::LaneRef::consumed(cursor, meta, lossy);
        let position = cursor.position;
        self.received = self.received.wrapping_add(1);
        self.last_size = position - meta.position;
        if !lossy {
            // The position moved: stored without `publish`'s check.
            cursor.published = position;
            Self::store_position(shared, self.entry, i, position, self.received, false);
        }
    }

    /// For a receive that waits on an empty look: fetches the rest of the
    /// record it expects at the current lane's cursor (as large as the last
    /// one) while it polls the word there (`LaneRef::prefetch_record`).
    #[inline]
    pub(crate) fn prefetch(&self, shared: &Shared) {
        if let (Some(cursor), Some(lane)) = (
            self.cursors.get(self.current),
            shared.lanes.get(self.current),
        ) {
            lane.prefetch_record(cursor.position, self.last_size);
        }
    }

    /// A drop-oldest record of lane `i` was overwritten while it was read:
    /// back to `head` (rule 7 of `lane`).
    #[cold]
    pub(crate) fn lapped(&mut self, shared: &Shared, i: usize) -> Result<()> {
        shared.lanes[i].resync(&mut self.cursors[i])
    }

    /// Stores the current lane's position and the count of messages
    /// received, if they moved, and then wakes a sleeping Block publisher
    /// (the position may free its space).
    pub(crate) fn publish(&mut self, shared: &Shared) {
        let i = self.current;
        let Some(cursor) = self.cursors.get_mut(i) else {
            return;
        };
        if cursor.published == cursor.position {
            return;
        }
        cursor.published = cursor.position;
        let lossy = shared.lossy();
        Self::store_position(shared, self.entry, i, cursor.position, self.received, lossy);
    }

    /// Stores `position` in lane `i` and the count of messages received in
    /// the entry, then wakes a sleeping Block publisher (rule 11).
    #[inline(always)]
    fn store_position(
        shared: &Shared,
        entry: Entry,
        i: usize,
        position: u64,
        received: u64,
        lossy: bool,
    ) {
        // Both words' addresses and the wait line's before the stores, after
        // which the compiler would load what they come from again.
        let (at, count) = (
            shared.entry_position(entry, i),
            shared.entry_received(entry),
        );
        let wait = &shared.header().wait;
        // Release: our reads of the records below it happen before their
        // publisher reuses the space; pairs with the SeqCst loads in
        // `Shared::slowest`.
        at.store(position, Ordering::Release);
        count.store(received, Ordering::Relaxed);
        if !lossy {
            wake_if_sleeping(wait, &wait.publishers_sleeping);
        }
    }

    /// Publishes the current lane (rule 11), then looks at every lane from
    /// the one after it; `Err(Truncated)` if what it found empty may be a
    /// lost page's zeros. What it finds becomes the current lane's batch.
    pub(crate) fn poll(&mut self, shared: &Shared, index: u32) -> Result<Option<(usize, Meta)>> {
        if shared.lossy() {
            // A record of the batch that the fast path found bad may have
            // been lapped: resync now, as a receive does that copied it
            // and then found it overwritten, so that either way the look
            // goes on in the same order.
            let i = self.current;
            let cursor = &self.cursors[i];
            if cursor.position < cursor.limit && shared.lanes[i].overwritten(cursor.position) {
                self.lapped(shared, i).map_err(|err| shared.explain(err))?;
            }
        }
        self.publish(shared);
        match self.scan(shared, index) {
            // A message was validated; the receive checks the segment after
            // copying it.
            Ok(Some(found)) => Ok(Some(found)),
            Ok(None) => {
                // After the scan (the fault flag stays set): its reads may
                // have met a page the file lost.
                shared.intact()?;
                Ok(None)
            }
            Err(err) => {
                shared.intact()?;
                Err(shared.explain(err))
            }
        }
    }

    fn scan(&mut self, shared: &Shared, index: u32) -> Result<Option<(usize, Meta)>> {
        let used = shared.lanes_used();
        self.single = used == 1;
        let lossy = shared.lossy();
        let mut i = self.current + 1;
        for _ in 0..used {
            if i >= used {
                i = 0;
            }
            let lane = &shared.lanes[i];
            let cursor = &mut self.cursors[i];
            match lane.next(cursor, lossy)? {
                Next::Empty => i += 1,
                Next::Message(meta) => {
                    self.current = i;
                    self.lane = *lane;
                    // One lane: the next quarter lane is read inline,
                    // between stores on a drop-oldest topic (rule 11; from
                    // here, as padding may lie between the published
                    // position and this message). More lanes: the next
                    // receive looks at the next lane first, so that
                    // publishers that take turns are read in turns.
                    cursor.limit = if self.single {
                        meta.position + lane.capacity() / 4
                    } else {
                        0
                    };
                    return Ok(Some((i, meta)));
                }
                Next::Lagged { missed, publisher } => {
                    let entry = shared.subscriber(index);
                    let total = entry.missed.load(Ordering::Relaxed).wrapping_add(missed);
                    entry.missed.store(total, Ordering::Relaxed);
                    return Err(Error::Lagged {
                        topic: shared.name.clone(),
                        publisher,
                        missed,
                    });
                }
            }
        }
        Ok(None)
    }
}
