//! A loom model of the lane protocol (`lane.rs`): a publisher's reserve
//! and commit, a subscriber's reads and its position, on a Block lane that
//! wraps: the publisher never overwrites what the subscriber has not read,
//! and every record is whole and in order. (`subscribe(.., true)` drives
//! the drop-oldest path; its model does not finish within the bound yet.)
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
        let slot = loop {
            let got = if lossy {
                lane.reserve(&mut cursor, 8, None).unwrap()
            } else {
                let mut slowest = |_tail| Some(model.position.load(Ordering::SeqCst));
                lane.reserve(&mut cursor, 8, Some(&mut slowest)).unwrap()
            };
            match got {
                Some(slot) => break slot,
                None => loom::thread::yield_now(),
            }
        };
        lane.store_payload_word(slot.position, cursor.lane_sequence);
        lane.commit(&mut cursor, slot, 8);
    }
    model.done.store(1, Ordering::SeqCst);
}

/// Reads until the publisher is done and the lane is empty; returns the
/// lane sequences delivered and the number reported missed.
fn subscribe(model: &Model, lossy: bool) -> (Vec<u64>, u64) {
    let lane = model.lane();
    let mut cursor = LaneCursor {
        position: 0,
        tail: 0,
        expected: Some(0),
        lapped: false,
    };
    let mut got = Vec::new();
    let mut missed = 0;
    loop {
        // Looked at before the lane, so that an empty lane after it means
        // everything was read.
        let done = model.done.load(Ordering::SeqCst) == 1;
        match lane.next(&mut cursor, lossy).unwrap() {
            Next::Empty if done => break,
            Next::Empty => loom::thread::yield_now(),
            Next::Lagged { missed: n, .. } => missed += n,
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
                got.push(meta.lane_sequence);
                LaneRef::consumed(&mut cursor, &meta);
                // Release in the real code; SeqCst here pairs with the
                // model's SeqCst load in `slowest`.
                model.position.store(cursor.position, Ordering::SeqCst);
            }
        }
    }
    (got, missed)
}

#[test]
fn block_lanes_deliver_everything_in_order() {
    loom::model(|| {
        let model = Model::new();
        let publisher = {
            let model = Arc::clone(&model);
            loom::thread::spawn(move || publish(&model, false))
        };
        let (got, missed) = subscribe(&model, false);
        publisher.join().unwrap();
        assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>());
        assert_eq!(missed, 0);
    });
}
