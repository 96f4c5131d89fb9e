//! A loom model of the service's waking (rule 5 of `protocol`): two
//! clients commit a request each into their own request ring and wake the
//! one server through the shared `server_sleeping` word; the server, which
//! sleeps on that word for a request from any client, answers each into
//! the caller's response ring, where the caller sleeps on its own word.
//! Under every interleaving loom explores, no wake-up is lost (a lost one
//! shows as a deadlock: the modelled futex never times out) and each
//! response reaches the ring of the client that asked.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p
//! shmkit --lib --release service::model`.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use super::layout::WaitLine;
use crate::ring::layout::{
    max_message_for, Config, ConsumerLine, Header, ProducerLine, WaitLine as RingWaitLine, MAGIC,
    VERSION,
};
use crate::ring::protocol::{ConsumerCursor, ProducerCursor, RingRef};
use crate::ring::wait::{wake_if_sleeping, Waiter, Waiting};
use crate::sync::{AtomicU32, AtomicU64};

/// A tiny data area: one call's record each way fits.
const CAPACITY: u64 = 128;
const WORDS: usize = (CAPACITY / 8) as usize;
const CLIENTS: usize = 2;

/// One ring: its header and record words.
struct Ring {
    header: Header,
    words: Vec<AtomicU64>,
}

impl Ring {
    fn new() -> Ring {
        let zero64 = || AtomicU64::new(0);
        let zero32 = || AtomicU32::new(0);
        Ring {
            header: Header {
                config: Config {
                    magic: AtomicU64::new(MAGIC),
                    version: AtomicU32::new(VERSION),
                    flags: zero32(),
                    capacity: AtomicU64::new(CAPACITY),
                    max_message: AtomicU64::new(max_message_for(CAPACITY)),
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
                wait: RingWaitLine {
                    consumer_sleeping: zero32(),
                    producer_sleeping: zero32(),
                    closed: zero32(),
                    full_fences: zero32(),
                    woken_at: zero64(),
                    removed: zero32(),
                },
            },
            words: (0..WORDS).map(|_| zero64()).collect(),
        }
    }

    fn view(&self) -> RingRef {
        // SAFETY: every copy of the view is used by a thread that holds an
        // Arc of the model that owns this ring; `words` has CAPACITY / 8
        // atomics; the data pointer is never dereferenced (the model moves
        // no payload: a record's length names its call).
        unsafe {
            RingRef::new_model(
                NonNull::from(&self.header),
                NonNull::dangling(),
                NonNull::new_unchecked(self.words.as_ptr().cast_mut()),
                CAPACITY,
                max_message_for(CAPACITY),
            )
        }
    }
}

struct Model {
    wait: WaitLine,
    requests: Vec<Ring>,
    responses: Vec<Ring>,
}

fn waiter() -> Waiter {
    Waiter::new(Waiting::SpinThenSleep(Duration::ZERO))
}

/// Client `c`'s request is `8 + c` bytes long, its response `16 + c`.
fn request_len(c: usize) -> u64 {
    8 + c as u64
}

fn response_len(c: usize) -> u64 {
    16 + c as u64
}

#[test]
fn any_clients_request_wakes_the_server_and_each_response_reaches_its_caller() {
    loom::model(|| {
        let model = Arc::new(Model {
            wait: WaitLine {
                server_sleeping: AtomicU32::new(0),
                full_fences: AtomicU32::new(0),
                woken_at: AtomicU64::new(0),
                removed: AtomicU32::new(0),
                _pad: AtomicU32::new(0),
            },
            requests: (0..CLIENTS).map(|_| Ring::new()).collect(),
            responses: (0..CLIENTS).map(|_| Ring::new()).collect(),
        });

        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || {
                    let requests = model.requests[c].view();
                    let mut tail = ProducerCursor {
                        tail: 0,
                        cached_head: 0,
                    };
                    let slot = requests
                        .reserve(&mut tail, request_len(c))
                        .unwrap()
                        .expect("an empty ring has room");
                    requests.commit(&mut tail, slot, request_len(c));
                    // Rule 5: the server sleeps on the service's word.
                    wake_if_sleeping(&model.wait, &model.wait.server_sleeping);
                    let responses = model.responses[c].view();
                    let wait = &model.responses[c].header.wait;
                    let mut head = ConsumerCursor { head: 0 };
                    let response = waiter()
                        .wait(
                            wait,
                            &wait.consumer_sleeping,
                            None,
                            "model",
                            || responses.peek(&mut head),
                            || Ok(()),
                        )
                        .unwrap();
                    assert_eq!(response.len, response_len(c), "another client's response");
                    responses.release(&mut head, response);
                })
            })
            .collect();

        // The server: a request from any client, then its answer.
        let mut heads: Vec<ConsumerCursor> =
            (0..CLIENTS).map(|_| ConsumerCursor { head: 0 }).collect();
        let mut tails: Vec<ProducerCursor> = (0..CLIENTS)
            .map(|_| ProducerCursor {
                tail: 0,
                cached_head: 0,
            })
            .collect();
        let mut waiter = waiter();
        let mut answered = [false; CLIENTS];
        for _ in 0..CLIENTS {
            let (c, request) = waiter
                .wait(
                    &model.wait,
                    &model.wait.server_sleeping,
                    None,
                    "model",
                    || {
                        for (c, head) in heads.iter_mut().enumerate() {
                            if let Some(slot) = model.requests[c].view().peek(head)? {
                                return Ok(Some((c, slot)));
                            }
                        }
                        Ok(None)
                    },
                    || Ok(()),
                )
                .unwrap();
            assert_eq!(request.len, request_len(c));
            assert!(!answered[c], "client {c}'s request taken twice");
            answered[c] = true;
            let requests = model.requests[c].view();
            requests.release(&mut heads[c], request);
            let responses = model.responses[c].view();
            let slot = responses
                .reserve(&mut tails[c], response_len(c))
                .unwrap()
                .expect("an empty ring has room");
            responses.commit(&mut tails[c], slot, response_len(c));
        }
        for client in clients {
            client.join().unwrap();
        }
    });
}
