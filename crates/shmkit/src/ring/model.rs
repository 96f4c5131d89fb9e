//! A loom model of the ring protocol: the record words, `head`, the close
//! flag and the futex wake-ups, under every interleaving loom explores.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p
//! shmkit --lib --release ring::model`.
//!
//! Payload bytes are modelled by loom cells (one per 8-byte word), which the
//! test writes and reads where the protocol says the payload is, so loom
//! also checks that every payload write happens before its read, and every
//! read before the producer overwrites the space on the next lap.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use loom::cell::UnsafeCell;

use super::layout::{
    record_size, Config, ConsumerLine, Header, ProducerLine, WaitLine, MAGIC, RECORD_HEADER,
    VERSION,
};
use super::protocol::{ConsumerCursor, ProducerCursor, RingRef, Slot};
use super::wait::{Waiter, Waiting};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A tiny data area, so that three messages wrap and fill it.
const CAPACITY: u64 = 64;
const WORDS: usize = (CAPACITY / 8) as usize;

struct Model {
    header: Header,
    words: Vec<AtomicU64>,
    payload: Vec<UnsafeCell<u64>>,
}

impl Model {
    fn new() -> Arc<Model> {
        let zero64 = || AtomicU64::new(0);
        let zero32 = || AtomicU32::new(0);
        Arc::new(Model {
            header: Header {
                config: Config {
                    magic: AtomicU64::new(MAGIC),
                    version: AtomicU32::new(VERSION),
                    flags: zero32(),
                    capacity: AtomicU64::new(CAPACITY),
                    max_message: AtomicU64::new(super::layout::max_message_for(CAPACITY)),
                    data_offset: AtomicU64::new(512),
                },
                producer: ProducerLine {
                    tail: zero64(),
                    owner: zero64(),
                    sent: zero64(),
                },
                consumer: ConsumerLine {
                    head: zero64(),
                    owner: zero64(),
                    received: zero64(),
                    joined: zero64(),
                },
                wait: WaitLine {
                    consumer_sleeping: zero32(),
                    producer_sleeping: zero32(),
                    closed: zero32(),
                    full_fences: zero32(),
                    woken_at: zero64(),
                    removed: zero32(),
                },
            },
            words: (0..WORDS).map(|_| zero64()).collect(),
            payload: (0..WORDS).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    fn ring(&self) -> RingRef {
        // SAFETY: every copy of the view is used by a thread that holds an
        // Arc of this model; `words` has CAPACITY / 8 atomics; the data
        // pointer is never dereferenced in the model (payload goes through
        // `payload` cells).
        unsafe {
            RingRef::new_model(
                NonNull::from(&self.header),
                NonNull::dangling(),
                NonNull::new_unchecked(self.words.as_ptr().cast_mut()),
                CAPACITY,
                super::layout::max_message_for(CAPACITY),
            )
        }
    }

    /// The payload cells of a record.
    fn cells(&self, slot: Slot) -> std::ops::Range<usize> {
        let first = ((slot.position % CAPACITY + RECORD_HEADER) / 8) as usize;
        first..first + ((record_size(slot.len) - RECORD_HEADER) / 8) as usize
    }
}

fn waiter() -> Waiter {
    Waiter::new(Waiting::SpinThenSleep(Duration::ZERO))
}

/// Message lengths: the third needs padding and the space of the first two.
const LENGTHS: [u64; 3] = [12, 16, 9];

#[test]
fn messages_arrive_whole_in_order_and_then_closed() {
    loom::model(|| {
        let model = Model::new();

        let producer_model = Arc::clone(&model);
        let producer = loom::thread::spawn(move || {
            let model = &*producer_model;
            let ring = model.ring();
            let wait = &model.header.wait;
            let mut cursor = ProducerCursor {
                tail: 0,
                cached_head: 0,
            };
            let mut waiter = waiter();
            for (i, &len) in LENGTHS.iter().enumerate() {
                let slot = waiter
                    .wait(
                        wait,
                        &wait.producer_sleeping,
                        None,
                        "model",
                        || ring.reserve(&mut cursor, len),
                        || Ok(()),
                    )
                    .unwrap();
                for cell in model.cells(slot) {
                    // SAFETY: rule 2 gives this space to the producer until
                    // commit; loom checks that claim.
                    model.payload[cell].with_mut(|p| unsafe { *p = i as u64 + 1 });
                }
                ring.commit(&mut cursor, slot, len);
            }
            // As `Producer::drop` does.
            wait.closed.store(1, Ordering::SeqCst);
            ring.wake_consumer();
        });

        let ring = model.ring();
        let wait = &model.header.wait;
        let mut cursor = ConsumerCursor { head: 0 };
        let mut waiter = waiter();
        for (i, &len) in LENGTHS.iter().enumerate() {
            let slot = waiter
                .wait(
                    wait,
                    &wait.consumer_sleeping,
                    None,
                    "model",
                    || ring.peek(&mut cursor),
                    || Ok(()),
                )
                .unwrap();
            assert_eq!(slot.len, len);
            for cell in model.cells(slot) {
                // SAFETY: a committed record belongs to the consumer until
                // released (rule 2); loom checks that claim.
                let value = model.payload[cell].with(|p| unsafe { *p });
                assert_eq!(value, i as u64 + 1, "message {i} arrived torn or stale");
            }
            ring.release(&mut cursor, slot);
            ring.wake_producer();
        }
        // The close is seen, and only after every message.
        waiter
            .wait(
                wait,
                &wait.consumer_sleeping,
                None,
                "model",
                || {
                    assert!(ring.peek(&mut cursor).unwrap().is_none());
                    Ok((wait.closed.load(Ordering::Acquire) != 0).then_some(()))
                },
                || Ok(()),
            )
            .unwrap();
        producer.join().unwrap();
        assert_eq!(model.header.producer.sent.load(Ordering::Relaxed), 3);
        assert_eq!(model.header.consumer.received.load(Ordering::Relaxed), 3);
    });
}

/// Rule 9: the first two messages committed as one batch (one Release),
/// the third, which needs padding and their space, on its own; the
/// consumer drains. It must see the batch whole or not at all, each
/// message intact, and the third after them.
#[test]
fn a_batch_arrives_whole_with_one_release() {
    loom::model(|| {
        let model = Model::new();

        let producer_model = Arc::clone(&model);
        let producer = loom::thread::spawn(move || {
            let model = &*producer_model;
            let ring = model.ring();
            let wait = &model.header.wait;
            let mut cursor = ProducerCursor {
                tail: 0,
                cached_head: 0,
            };
            let write = |slot: Slot, i: usize| {
                for cell in model.cells(slot) {
                    // SAFETY: rules 2 and 9 give this space to the producer
                    // until the batch commits; loom checks that claim.
                    model.payload[cell].with_mut(|p| unsafe { *p = i as u64 + 1 });
                }
            };
            let first = ring.reserve(&mut cursor, LENGTHS[0]).unwrap().unwrap();
            write(first, 0);
            let end = first.position + record_size(first.len);
            let second = ring
                .reserve_after(&mut cursor, end, LENGTHS[1])
                .unwrap()
                .expect("the empty ring has room for both");
            write(second, 1);
            ring.stage(second);
            let end = second.position + record_size(second.len);
            ring.commit_batch(&mut cursor, first, end, 2);
            // The third does not fit after them without wrapping.
            let tail = cursor.tail;
            assert!(ring
                .reserve_after(&mut cursor, tail, LENGTHS[2])
                .unwrap()
                .is_none());
            let mut waiter = waiter();
            let third = waiter
                .wait(
                    wait,
                    &wait.producer_sleeping,
                    None,
                    "model",
                    || ring.reserve(&mut cursor, LENGTHS[2]),
                    || Ok(()),
                )
                .unwrap();
            write(third, 2);
            ring.commit(&mut cursor, third, LENGTHS[2]);
        });

        let ring = model.ring();
        let wait = &model.header.wait;
        let mut cursor = ConsumerCursor { head: 0 };
        let mut waiter = waiter();
        let mut seen = 0;
        while seen < LENGTHS.len() {
            let drained = waiter
                .wait(
                    wait,
                    &wait.consumer_sleeping,
                    None,
                    "model",
                    || {
                        let mut batch = Vec::new();
                        ring.drain(&mut cursor, |slot| {
                            let i = seen + batch.len();
                            assert_eq!(slot.len, LENGTHS[i]);
                            for cell in model.cells(slot) {
                                // SAFETY: a committed record belongs to the
                                // consumer until released (rule 2).
                                let value = model.payload[cell].with(|p| unsafe { *p });
                                assert_eq!(value, i as u64 + 1, "message {i} torn or stale");
                            }
                            batch.push(i);
                        })?;
                        Ok((!batch.is_empty()).then_some(batch))
                    },
                    || Ok(()),
                )
                .unwrap();
            // The batch is never seen in part.
            assert!(seen != 0 || drained.len() >= 2, "half a batch: {drained:?}");
            seen += drained.len();
            ring.wake_producer();
        }
        producer.join().unwrap();
        assert_eq!(model.header.producer.sent.load(Ordering::Relaxed), 3);
        assert_eq!(model.header.consumer.received.load(Ordering::Relaxed), 3);
    });
}
