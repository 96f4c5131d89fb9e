//! Loom models of the lane protocol (`lane.rs`, format version 2): a
//! publisher's reserve and commit (the payload, the empty word after the
//! record, then the record's word with Release), a subscriber's reads of
//! the record word at its own position (never `tail`) and its position.
//!
//! - On a Block lane that wraps, the publisher never overwrites what the
//!   subscriber has not read, the subscriber never takes an old lap's
//!   word for a record (the empty word comes first), and every record is
//!   whole and in order, with the subscriber storing its position only
//!   when it has read what it saw. The real Block subscriber stores per
//!   message (rule 11); a lazier store only holds the publisher back
//!   longer, so what the model proves of the publisher holds for the real
//!   one.
//! - On a drop-oldest lane, the publisher laps a subscriber that is
//!   reading the oldest record (it overwrites it meanwhile, the empty word
//!   after a new record landing on an old record's word): the subscriber
//!   never delivers torn bytes nor a newer lap's word as the record at its
//!   position, and reports `Lagged` with exactly the number of messages it
//!   lost (rules 6, 7). The lane is filled before the threads start, so
//!   that only the lapping messages race the reader and the model stays
//!   within the bound.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p
//! shmkit --lib --release topic::model`.

use std::ptr::NonNull;
use std::sync::Arc;

use super::lane::{LaneCursor, LaneRef, Next, PublisherCursor};
use super::layout::{max_message_for, LaneHeader};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A lane so small that three 8-byte messages (40-byte records) wrap it.
const CAPACITY: u64 = 128;
const WORDS: usize = (CAPACITY / 8) as usize;
const MESSAGES: u64 = 4;

struct Model {
    header: LaneHeader,
    words: Vec<AtomicU64>,
    /// The subscriber's position (its entry in the subscriber table).
    position: AtomicU64,
    /// 1 once the publisher has committed everything.
    done: AtomicU32,
}

impl Model {
    fn new() -> Arc<Model> {
        let zero = || AtomicU64::new(0);
        Arc::new(Model {
            header: LaneHeader {
                tail: zero(),
                reserve: zero(),
                head: zero(),
                history_start: zero(),
                state: AtomicU32::new(1),
                flags: AtomicU32::new(0),
                publisher: zero(),
                owner: zero(),
                published: zero(),
                lane_sequence: zero(),
                version: zero(),
                origin_host: zero(),
                origin_publisher: zero(),
            },
            words: (0..WORDS).map(|_| zero()).collect(),
            position: zero(),
            done: AtomicU32::new(0),
        })
    }

    fn lane(&self) -> LaneRef {
        // SAFETY: every thread that uses the view holds an Arc of the
        // model; `words` has CAPACITY / 8 atomics; CAPACITY is a power of
        // two and max_message is the one it allows (the model's lane is
        // smaller than a real one's minimum, which only Options enforces).
        unsafe {
            LaneRef::new(
                NonNull::from(&self.header),
                NonNull::new(self.words.as_ptr() as *mut AtomicU64).unwrap(),
                CAPACITY,
                max_message_for(CAPACITY),
            )
        }
    }
}

fn publish(model: &Model, lossy: bool) {
    let lane = model.lane();
    let mut cursor: PublisherCursor = lane.take_over(1, 0).unwrap();
    for _ in 0..MESSAGES {
        publish_one(model, &lane, &mut cursor, lossy);
    }
    model.done.store(1, Ordering::SeqCst);
}

/// Publishes the next message (its payload word is its lane sequence).
fn publish_one(model: &Model, lane: &LaneRef, cursor: &mut PublisherCursor, lossy: bool) {
    let slot = loop {
        let got = if lossy {
            lane.reserve(cursor, 8, None).unwrap()
        } else {
            let mut slowest = |_tail| Some(model.position.load(Ordering::SeqCst));
            lane.reserve(cursor, 8, Some(&mut slowest)).unwrap()
        };
        match got {
            Some(slot) => break slot,
            None => loom::thread::yield_now(),
        }
    };
    lane.store_payload_word(slot.position, cursor.lane_sequence);
    lane.commit(cursor, slot, 8);
}

/// What a subscriber saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Message(u64),
    Lagged(u64),
}

/// Reads until the publisher is done and the lane is empty; returns what
/// it saw: the lane sequences delivered and the counts reported missed.
fn subscribe(model: &Model, lossy: bool) -> Vec<Seen> {
    let lane = model.lane();
    let mut cursor = LaneCursor::at(0, Some(0));
    let mut seen = Vec::new();
    loop {
        // Looked at before the lane, so that an empty lane after it means
        // everything was read.
        let done = model.done.load(Ordering::SeqCst) == 1;
        match lane.next(&mut cursor, lossy).unwrap() {
            Next::Empty if done => break,
            Next::Empty => {
                // The position is stored once the subscriber has read what
                // it saw: lazier than the real Block subscriber's store per
                // message (rule 11), the harder case for the publisher.
                // Release in the real code; SeqCst here pairs with the
                // model's SeqCst load in `slowest`.
                if cursor.published != cursor.position {
                    cursor.published = cursor.position;
                    model.position.store(cursor.position, Ordering::SeqCst);
                }
                loom::thread::yield_now()
            }
            Next::Lagged { missed: n, .. } => seen.push(Seen::Lagged(n)),
            Next::Message(meta) => {
                let mut payload = [0u8; 8];
                lane.copy_payload(meta.position, meta.len, &mut payload);
                if lossy && lane.overwritten(meta.position) {
                    lane.resync(&mut cursor).unwrap();
                    continue;
                }
                assert_eq!(
                    u64::from_le_bytes(payload),
                    meta.lane_sequence,
                    "torn record"
                );
                assert_eq!(meta.sequence, meta.lane_sequence);
                seen.push(Seen::Message(meta.lane_sequence));
                LaneRef::consumed(&mut cursor, &meta, lossy);
            }
        }
    }
    seen
}

#[test]
fn block_lanes_deliver_everything_in_order() {
    loom::model(|| {
        let model = Model::new();
        let publisher = {
            let model = Arc::clone(&model);
            loom::thread::spawn(move || publish(&model, false))
        };
        let seen = subscribe(&model, false);
        publisher.join().unwrap();
        let all: Vec<Seen> = (0..MESSAGES).map(Seen::Message).collect();
        assert_eq!(seen, all);
    });
}

/// Messages in the lane before the threads start: three 40-byte records
/// and the empty word after them fill its 128 bytes.
const PREFILL: u64 = 3;

/// Messages the publisher sends while the subscriber reads: the first pads
/// the lane's end and wraps onto record 0 (its empty word onto record 1's
/// word), the second onto record 1 and 2's word.
const LAPPING: u64 = 2;

#[test]
fn drop_oldest_lanes_report_exactly_what_a_lap_overwrote() {
    loom::model(|| {
        let model = Model::new();
        let lane = model.lane();
        let mut cursor = lane.take_over(1, 0).unwrap();
        for _ in 0..PREFILL {
            publish_one(&model, &lane, &mut cursor, true);
        }
        // The subscriber starts at position 0, reading what is overwritten.
        let publisher = {
            let model = Arc::clone(&model);
            loom::thread::spawn(move || {
                let lane = model.lane();
                for _ in 0..LAPPING {
                    publish_one(&model, &lane, &mut cursor, true);
                }
                model.done.store(1, Ordering::SeqCst);
            })
        };
        let seen = subscribe(&model, true);
        publisher.join().unwrap();
        // Every message is delivered whole or counted missed, exactly once,
        // in order: a lag of n skips exactly n lane sequences.
        let mut expected = 0;
        for event in &seen {
            match *event {
                Seen::Lagged(n) => {
                    assert!(n > 0, "an empty lag in {seen:?}");
                    expected += n;
                }
                Seen::Message(sequence) => {
                    assert_eq!(sequence, expected, "in {seen:?}");
                    expected += 1;
                }
            }
        }
        assert_eq!(expected, PREFILL + LAPPING, "{seen:?}");
        assert_eq!(
            seen.last(),
            Some(&Seen::Message(PREFILL + LAPPING - 1)),
            "{seen:?}"
        );
    });
}
