//! The message ring in one process: every send and receive verb against a
//! model of the format (proptest), the edge placements at the end of the
//! data area, the format's limits, and short timeouts.
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! its segment even if the test fails; a watchdog aborts the run rather than
//! let a broken test hang.

mod processes;
mod ring_layout;
mod sequence;

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use shmkit::ring::{self, Consumer, Options, Producer, Waiting};
use shmkit::Error;

use processes::{ring_exists, unique_ring_name, RingCleanup, Watchdog};
use ring_layout::{record_size, small_ring, LONG, SMALL};
use sequence::{config, Rng};

/// One record in the model: padding to the end of the data area, or a
/// message.
enum Record {
    Padding(u64),
    Message(Vec<u8>),
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::Padding(size) => write!(f, "padding of {size}"),
            Record::Message(bytes) => write!(f, "message of {}", bytes.len()),
        }
    }
}

/// What the ring must hold, by the rules of docs/FORMAT.md: positions,
/// records, padding at the wrap, 8 bytes kept free after the last record.
#[derive(Debug)]
struct Model {
    capacity: u64,
    head: u64,
    tail: u64,
    records: VecDeque<Record>,
    sent: u64,
    received: u64,
}

impl Model {
    fn new(capacity: u64) -> Model {
        Model {
            capacity,
            head: 0,
            tail: 0,
            records: VecDeque::new(),
            sent: 0,
            received: 0,
        }
    }

    fn to_end(&self) -> u64 {
        self.capacity - self.tail % self.capacity
    }

    fn free(&self) -> u64 {
        self.capacity - (self.tail - self.head)
    }

    /// The padding a record of `len` bytes needs first, if it fits now.
    fn placement(&self, len: usize) -> Option<u64> {
        let size = record_size(len);
        let padding = if size > self.to_end() {
            self.to_end()
        } else {
            0
        };
        (padding + size + 8 <= self.free()).then_some(padding)
    }

    /// A grant: commits the padding, if any, at once (it stays when the
    /// grant is aborted).
    fn reserve(&mut self, len: usize) {
        let padding = self.placement(len).expect("reserve only what fits");
        if padding > 0 {
            self.records.push_back(Record::Padding(padding));
            self.tail += padding;
        }
    }

    fn commit(&mut self, message: &[u8]) {
        self.tail += record_size(message.len());
        self.records.push_back(Record::Message(message.to_vec()));
        self.sent += 1;
    }

    /// The next message, skipping padding as the consumer's every look does.
    fn front(&mut self) -> Option<&[u8]> {
        while let Some(Record::Padding(padding)) = self.records.front() {
            self.head += padding;
            self.records.pop_front();
        }
        match self.records.front() {
            Some(Record::Message(message)) => Some(message),
            _ => None,
        }
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        self.front()?;
        let Some(Record::Message(message)) = self.records.pop_front() else {
            unreachable!("front() found a message");
        };
        self.head += record_size(message.len());
        self.received += 1;
        Some(message)
    }
}

/// A message length, some of them chosen where the ring's tail is.
#[derive(Clone, Debug)]
enum Size {
    Exact(usize),
    /// The record ends exactly at the end of the data area.
    ToEnd,
    /// The record leaves 8 bytes before the end: the next one needs a
    /// padding record of 8 bytes.
    LeaveEight,
    /// One byte more than fits before the end: padding, then offset 0.
    JustOver,
    Max,
    OverMax,
}

impl Size {
    fn resolve(&self, model: &Model, max: usize) -> usize {
        let to_end = model.to_end() as usize;
        let wanted = match *self {
            Size::Exact(len) => len % (max + 1),
            Size::ToEnd => to_end - 8,
            Size::LeaveEight => to_end.saturating_sub(16),
            Size::JustOver => to_end - 7,
            Size::Max => max,
            Size::OverMax => return max + 1,
        };
        if wanted > max {
            wanted % (max + 1)
        } else {
            wanted
        }
    }
}

/// How a message is put into the ring.
#[derive(Clone, Copy, Debug)]
enum Put {
    Send,
    TrySend,
    SendTimeout,
    Grant,
    TryGrant,
    GrantTimeout,
    /// Grant the length, commit this many bytes less.
    CommitShorter(usize),
    Abort,
    DropGrant,
}

/// How messages are taken out.
#[derive(Clone, Copy, Debug)]
enum Take {
    Recv,
    TryRecv,
    RecvTimeout,
    Read,
    TryRead,
    ReadTimeout,
    /// A buffer one byte too short, then a big enough one.
    ShortBuffer,
    Drain,
    /// `drain_while`, stopping after this many.
    DrainWhile(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Put(Size, Put),
    /// A `WriteBatch` of these messages, pushed until one does not fit,
    /// then committed (or, if true, aborted).
    Batch(Vec<Size>, bool),
    /// `send_batch` of as many of these as fit now (it would wait for
    /// the rest), and of the first too large one after them, if any.
    SendBatch(Vec<Size>),
    /// `try_send` until the ring is full.
    Fill(Size),
    /// Take up to this many messages.
    Take(Take, usize),
}

fn size_strategy() -> impl Strategy<Value = Size> {
    prop_oneof![
        4 => (0usize..=4096).prop_map(Size::Exact),
        2 => (0usize..=24).prop_map(Size::Exact),
        1 => Just(Size::ToEnd),
        1 => Just(Size::LeaveEight),
        1 => Just(Size::JustOver),
        1 => Just(Size::Max),
        1 => Just(Size::OverMax),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let put = prop_oneof![
        Just(Put::Send),
        Just(Put::TrySend),
        Just(Put::SendTimeout),
        Just(Put::Grant),
        Just(Put::TryGrant),
        Just(Put::GrantTimeout),
        (1usize..24).prop_map(Put::CommitShorter),
        Just(Put::Abort),
        Just(Put::DropGrant),
    ];
    let take = prop_oneof![
        Just(Take::Recv),
        Just(Take::TryRecv),
        Just(Take::RecvTimeout),
        Just(Take::Read),
        Just(Take::TryRead),
        Just(Take::ReadTimeout),
        Just(Take::ShortBuffer),
        Just(Take::Drain),
        (0usize..6).prop_map(Take::DrainWhile),
    ];
    let sizes = || prop::collection::vec(size_strategy(), 1..12);
    prop_oneof![
        6 => (size_strategy(), put).prop_map(|(size, put)| Op::Put(size, put)),
        2 => (sizes(), prop::bool::weighted(0.2)).prop_map(|(sizes, abort)| Op::Batch(sizes, abort)),
        2 => sizes().prop_map(Op::SendBatch),
        1 => size_strategy().prop_map(Op::Fill),
        5 => (take, 1usize..8).prop_map(|(take, n)| Op::Take(take, n)),
    ]
}

fn expect_full(result: Result<impl std::fmt::Debug, Error>, model: &Model, len: usize) {
    match result {
        Err(Error::Full { needed, free, .. }) => {
            assert_eq!(needed, record_size(len) + 8, "needed bytes in Full");
            assert_eq!(free, model.free(), "free bytes in Full");
        }
        other => panic!("expected Full for {len} bytes, {model:?}: {other:?}"),
    }
}

fn expect_timeout(result: Result<impl std::fmt::Debug, Error>) {
    assert!(
        matches!(result, Err(Error::Timeout { .. })),
        "expected Timeout: {result:?}"
    );
}

fn put_one(
    producer: &mut Producer,
    model: &mut Model,
    rng: &mut Rng,
    size: &Size,
    put: Put,
    max: usize,
) -> bool {
    let len = size.resolve(model, max);
    let message = rng.bytes(len);
    if len > max {
        let too_large = |r: Result<(), Error>| match r {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (len as u64, max as u64))
            }
            other => panic!("expected TooLarge for {len} > {max}: {other:?}"),
        };
        too_large(producer.try_send(&message));
        too_large(producer.send(&message));
        too_large(producer.grant(len).map(|g| g.abort()));
        too_large(producer.try_grant(len).map(|g| g.abort()));
        return false;
    }
    let fits = model.placement(len).is_some();
    if !fits {
        match put {
            Put::SendTimeout => expect_timeout(producer.send_timeout(&message, Duration::ZERO)),
            Put::GrantTimeout => expect_timeout(
                producer
                    .grant_timeout(len, Duration::from_millis(1))
                    .map(|g| g.len()),
            ),
            Put::Grant | Put::TryGrant | Put::Abort => {
                expect_full(producer.try_grant(len).map(|g| g.len()), model, len)
            }
            _ => expect_full(producer.try_send(&message), model, len),
        }
        return false;
    }
    model.reserve(len);
    match put {
        Put::Send => producer.send(&message).unwrap(),
        Put::TrySend => producer.try_send(&message).unwrap(),
        Put::SendTimeout => producer.send_timeout(&message, LONG).unwrap(),
        Put::Grant | Put::TryGrant | Put::GrantTimeout => {
            let mut grant = match put {
                Put::Grant => producer.grant(len).unwrap(),
                Put::TryGrant => producer.try_grant(len).unwrap(),
                _ => producer.grant_timeout(len, LONG).unwrap(),
            };
            assert_eq!(grant.len(), len);
            grant.copy_from_slice(&message);
            grant.commit();
        }
        Put::CommitShorter(less) => {
            let mut grant = producer.grant(len).unwrap();
            grant.fill(0xee);
            let short = len.saturating_sub(less);
            grant[..short].copy_from_slice(&message[..short]);
            grant.commit_len(short);
            model.commit(&message[..short]);
            return true;
        }
        Put::Abort | Put::DropGrant => {
            let mut grant = producer.grant(len).unwrap();
            // Looks like a record to anyone who would read it anyway.
            grant.fill(0x01);
            if matches!(put, Put::Abort) {
                grant.abort();
            } else {
                drop(grant);
            }
            return true;
        }
    }
    model.commit(&message);
    true
}

/// A `WriteBatch`: the first message goes where a grant would (padding
/// first, if need be), each later one only right after the one before,
/// without wrapping; the consumer sees none before the commit.
fn put_batch(
    producer: &mut Producer,
    consumer: &mut Consumer,
    model: &mut Model,
    rng: &mut Rng,
    sizes: &[Size],
    abort: bool,
    max: usize,
) {
    let mut batch = producer.batch();
    let mut staged = Vec::new();
    let mut padding = None;
    for size in sizes {
        let len = size.resolve(model, max);
        let message = rng.bytes(len);
        let result = batch.try_push(&message);
        if len > max {
            assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
            break;
        }
        let placement = model.placement(len);
        let fits = match padding {
            None => placement.is_some(),
            Some(_) => placement == Some(0),
        };
        assert_eq!(
            result.unwrap(),
            fits,
            "a batch takes {len} bytes iff they fit: {model:?}"
        );
        if !fits {
            break;
        }
        if padding.is_none() {
            padding = Some(placement.expect("fits"));
            model.reserve(len);
        }
        // The model's tail goes on, so that the next placement is right.
        model.tail += record_size(len);
        staged.push(message);
    }
    assert_eq!(batch.len(), staged.len());
    assert_eq!(batch.is_empty(), staged.is_empty());
    // Nothing of it is visible yet. (Like every look, this skips the
    // padding before the next message.)
    assert_eq!(consumer.drain_while(|_| false).unwrap(), 0);
    model.front();
    // Back to the tail before the batch; `commit` applies it again.
    model.tail -= staged.iter().map(|m| record_size(m.len())).sum::<u64>();
    if abort {
        batch.abort();
        return;
    }
    assert_eq!(batch.commit(), staged.len());
    for message in &staged {
        model.commit(message);
    }
}

/// `send_batch` of the messages that fit now, and of one too large after
/// them if it comes next: the stream is as if sent one by one.
fn send_batch(
    producer: &mut Producer,
    model: &mut Model,
    rng: &mut Rng,
    sizes: &[Size],
    max: usize,
) {
    let mut messages = Vec::new();
    let mut too_large = false;
    for size in sizes {
        let len = size.resolve(model, max);
        let message = rng.bytes(len);
        if len > max {
            messages.push(message);
            too_large = true;
            break;
        }
        if model.placement(len).is_none() {
            break;
        }
        model.reserve(len);
        model.commit(&message);
        messages.push(message);
    }
    let result = producer.send_batch(&messages);
    if too_large {
        assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    } else {
        assert_eq!(result.unwrap(), messages.len());
    }
}

fn take_some(consumer: &mut Consumer, model: &mut Model, take: Take, count: usize) {
    let mut buf = vec![0u8; SMALL as usize];
    for _ in 0..count {
        let Some(expected) = model.front().map(<[u8]>::to_vec) else {
            // Empty: every verb must say so without waiting for long.
            match take {
                Take::RecvTimeout => {
                    expect_timeout(consumer.recv_timeout(&mut buf, Duration::ZERO))
                }
                Take::ReadTimeout => expect_timeout(
                    consumer
                        .read_timeout(Duration::from_millis(1))
                        .map(|g| g.len()),
                ),
                Take::Read | Take::TryRead => {
                    assert!(
                        matches!(consumer.try_read(), Err(Error::Empty { .. })),
                        "try_read of an empty ring"
                    )
                }
                Take::Drain | Take::DrainWhile(_) => {
                    assert_eq!(consumer.drain(|m| panic!("drained {m:?}")).unwrap(), 0);
                    assert_eq!(
                        consumer.drain_while(|m| panic!("drained {m:?}")).unwrap(),
                        0
                    );
                }
                _ => assert!(
                    matches!(consumer.try_recv(&mut buf), Err(Error::Empty { .. })),
                    "try_recv of an empty ring"
                ),
            }
            return;
        };
        match take {
            Take::Recv => {
                let n = consumer.recv(&mut buf).unwrap();
                assert_eq!(buf[..n], expected);
            }
            Take::TryRecv => {
                let n = consumer.try_recv(&mut buf).expect("a message");
                assert_eq!(buf[..n], expected);
            }
            Take::RecvTimeout => {
                let n = consumer.recv_timeout(&mut buf, LONG).unwrap();
                assert_eq!(buf[..n], expected);
            }
            Take::Read => {
                let grant = consumer.read().unwrap();
                assert_eq!(*grant, expected);
                grant.release();
            }
            Take::TryRead => {
                let grant = consumer.try_read().expect("a message");
                assert_eq!(*grant, expected);
            }
            Take::ReadTimeout => {
                let grant = consumer.read_timeout(LONG).unwrap();
                assert_eq!(*grant, expected);
            }
            Take::ShortBuffer => {
                if let Some(short) = expected.len().checked_sub(1) {
                    for result in [
                        consumer.recv(&mut buf[..short]),
                        consumer.try_recv(&mut buf[..short]),
                    ] {
                        match result {
                            Err(Error::TooLarge { size, limit, .. }) => {
                                assert_eq!((size, limit), (expected.len() as u64, short as u64))
                            }
                            other => panic!("expected TooLarge: {other:?}"),
                        }
                    }
                }
                let n = consumer.try_recv(&mut buf).expect("still there");
                assert_eq!(buf[..n], expected);
            }
            Take::Drain => {
                let mut drained = Vec::new();
                let n = consumer.drain(|m| drained.push(m.to_vec())).unwrap();
                assert_eq!(n, drained.len());
                let mut all = Vec::new();
                while let Some(message) = model.pop() {
                    all.push(message);
                }
                assert_eq!(drained, all, "drain hands over every message, in order");
                return;
            }
            Take::DrainWhile(most) => {
                let mut drained = Vec::new();
                let n = consumer
                    .drain_while(|m| {
                        if drained.len() == most {
                            return false;
                        }
                        drained.push(m.to_vec());
                        true
                    })
                    .unwrap();
                assert_eq!(n, drained.len());
                assert!(n <= most);
                for message in &drained {
                    assert_eq!(
                        model.pop().as_ref(),
                        Some(message),
                        "drain_while keeps the order"
                    );
                }
                // It skipped the padding before the message it left.
                model.front();
                // Stopped early only for `most`: the next stays, unread.
                if n < most {
                    assert!(model.front().is_none(), "drain_while stopped early");
                }
                return;
            }
        }
        assert_eq!(model.pop().as_deref(), Some(&expected[..]));
    }
}

fn check_status(name: &str, model: &Model) {
    let status = ring::status(name).unwrap();
    assert_eq!(
        (status.sent, status.received, status.bytes_in_flight),
        (model.sent, model.received, model.tail - model.head),
        "status (sent, received, bytes in flight) against the model {model:?}"
    );
}

fn run_model(capacity: u64, max_message: Option<u64>, seed: u64, ops: &[Op]) {
    let _watchdog = Watchdog::new("a model case", Duration::from_secs(60));
    let name = unique_ring_name("model");
    let _cleanup = RingCleanup(name.clone());
    let mut options = Options::default().capacity(capacity);
    if let Some(max) = max_message {
        options = options.max_message(max);
    }
    let mut producer = Producer::open_with(&name, &options).unwrap();
    let mut consumer = Consumer::open_with(&name, &options).unwrap();
    let max = producer.max_message();
    assert_eq!(max as u64, options.max_message_len());
    assert_eq!(consumer.max_message(), max);
    assert_eq!(producer.capacity() as u64, capacity);
    let me = std::process::id();
    for result in [
        Producer::open_with(&name, &options).map(drop),
        Consumer::open_with(&name, &options).map(drop),
    ] {
        match result {
            Err(Error::InUse { pid, .. }) => assert_eq!(pid, me),
            other => panic!("a second end of a held ring: {other:?}"),
        }
    }

    let mut model = Model::new(capacity);
    let mut rng = Rng::new(seed);
    for op in ops {
        match op {
            Op::Put(size, put) => {
                put_one(&mut producer, &mut model, &mut rng, size, *put, max);
            }
            Op::Batch(sizes, abort) => put_batch(
                &mut producer,
                &mut consumer,
                &mut model,
                &mut rng,
                sizes,
                *abort,
                max,
            ),
            Op::SendBatch(sizes) => send_batch(&mut producer, &mut model, &mut rng, sizes, max),
            Op::Fill(size) => {
                for _ in 0..10_000 {
                    if !put_one(&mut producer, &mut model, &mut rng, size, Put::TrySend, max) {
                        break;
                    }
                }
            }
            Op::Take(take, count) => take_some(&mut consumer, &mut model, *take, *count),
        }
        check_status(&name, &model);
    }

    // Closing: everything sent arrives, then Closed, and the ring goes.
    drop(producer);
    let mut buf = vec![0u8; capacity as usize];
    loop {
        match consumer.try_recv(&mut buf) {
            Ok(n) => assert_eq!(Some(&buf[..n]), model.pop().as_deref()),
            Err(Error::Closed { place }) => {
                assert_eq!(place, format!("ring {name}"));
                break;
            }
            other => panic!("after close: {other:?}"),
        }
    }
    assert!(model.front().is_none(), "messages lost: {model:?}");
    check_status(&name, &model);
    assert!(matches!(
        consumer.recv_timeout(&mut buf, Duration::ZERO),
        Err(Error::Closed { .. })
    ));
    assert!(matches!(consumer.try_read(), Err(Error::Closed { .. })));
    assert!(matches!(consumer.drain(|_| ()), Ok(0)));
    // Closed, drained and the consumer told: a new producer may reopen it.
    let reopened = Producer::open_with(&name, &options).unwrap();
    assert!(!reopened.created());
    reopened.close().unwrap();
    drop(consumer);
    assert!(
        !ring_exists(&name),
        "the last end to leave a closed, drained ring removes it"
    );
}

proptest! {
    #![proptest_config(config(256))]

    /// Random interleavings of every send and receive verb on a 4 or 8 KiB
    /// ring (so records wrap and pad all the time) against the model:
    /// messages arrive whole and in order, aborted grants are never seen,
    /// Full/None/Timeout exactly when the format says so, and the status
    /// counts agree.
    #[test]
    fn every_verb_agrees_with_the_model(
        capacity in prop_oneof![Just(4096u64), Just(8192)],
        max_message in prop_oneof![3 => Just(None), 1 => (0u64..=300).prop_map(Some)],
        seed in any::<u64>(),
        ops in prop::collection::vec(op_strategy(), 1..200),
    ) {
        run_model(capacity, max_message, seed, &ops);
    }
}

/// The edge placements once each, deterministically: a record ending
/// exactly at the end of the data area, one needing 8 bytes of padding, a
/// padding record left by an aborted grant, the largest message at every
/// offset.
#[test]
fn records_at_the_end_of_the_data_area() {
    let mut ops = Vec::new();
    for _ in 0..3 {
        ops.push(Op::Put(Size::ToEnd, Put::Send));
        ops.push(Op::Take(Take::Drain, 1));
        ops.push(Op::Put(Size::Exact(100), Put::Send));
        ops.push(Op::Put(Size::LeaveEight, Put::Grant));
        ops.push(Op::Take(Take::Recv, 2));
        ops.push(Op::Put(Size::Exact(9), Put::Send)); // pads 8 bytes
        ops.push(Op::Take(Take::Read, 1));
        ops.push(Op::Put(Size::JustOver, Put::Abort)); // the padding stays
        ops.push(Op::Take(Take::TryRecv, 1));
        ops.push(Op::Put(Size::Max, Put::Send));
        ops.push(Op::Fill(Size::Exact(0)));
        ops.push(Op::Take(Take::Drain, 1));
    }
    for _ in 0..40 {
        ops.push(Op::Put(Size::Max, Put::GrantTimeout));
        ops.push(Op::Put(Size::Exact(3), Put::Send));
        ops.push(Op::Take(Take::ShortBuffer, 2));
    }
    ops.push(Op::Put(Size::JustOver, Put::DropGrant));
    run_model(SMALL, None, 1, &ops);

    // A grant that needs padding, aborted as the last act before closing:
    // the padding is published, so the drained ring is still removed.
    let wrap_then_abort = [
        Op::Put(Size::Max, Put::Send),
        Op::Take(Take::Recv, 1),
        Op::Put(Size::Max, Put::Send),
        Op::Take(Take::Recv, 1),
        Op::Put(Size::JustOver, Put::Abort),
        Op::Take(Take::TryRecv, 1),
    ];
    run_model(SMALL, None, 2, &wrap_then_abort);
    run_model(SMALL, None, 3, &wrap_then_abort[..5]);
}

/// A record's length is 32 bits, and so is the padding record's that may
/// come before the largest record, so no ring carries a message of more
/// than 4 GiB - 8, whatever its capacity (checked without making such a
/// ring).
#[test]
fn the_largest_message_fits_a_record_word() {
    let widest = (1 << 32) - 8;
    let huge = Options::default().capacity(1 << 40);
    assert_eq!(huge.max_message_len(), widest);
    let too_large = huge.max_message(widest + 1);
    match Producer::open_with(&unique_ring_name("never-made"), &too_large) {
        Err(Error::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (widest + 1, widest))
        }
        other => panic!("a maximum message of 4 GiB - 7: {other:?}"),
    }
}

/// Timeouts that end before a waiting endpoint's next peer check (which
/// comes every 20 ms while it spins, and a busy-polling endpoint only
/// spins) still report the end of the stream: a consumer that polls with a
/// short timeout in a loop learns that the producer closed, instead of
/// timing out forever.
#[test]
fn short_timeouts_report_closed() {
    let _watchdog = Watchdog::new("the short timeouts test", Duration::from_secs(60));
    for waiting in [Waiting::Adaptive, Waiting::BusyPoll] {
        let name = unique_ring_name("short-timeouts");
        let _cleanup = RingCleanup(name.clone());
        let options = small_ring().waiting(waiting);
        let producer = Producer::open_with(&name, &options).unwrap();
        let mut consumer = Consumer::open_with(&name, &options).unwrap();
        let mut buf = [0; 8];
        let short = Duration::from_millis(5);
        expect_timeout(consumer.recv_timeout(&mut buf, short));
        producer.close().unwrap();
        for _ in 0..3 {
            assert!(matches!(
                consumer.recv_timeout(&mut buf, short),
                Err(Error::Closed { .. })
            ));
            assert!(matches!(
                consumer.read_timeout(Duration::ZERO).map(|g| g.len()),
                Err(Error::Closed { .. })
            ));
        }
    }
    let name = unique_ring_name("short-timeouts");
    let _cleanup = RingCleanup(name.clone());
    let producer = Producer::open_with(&name, &small_ring()).unwrap();
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    let mut buf = [0; 8];
    producer.close().unwrap();
    // The blocking forms too (they look at the peer within 20 ms).
    assert!(matches!(consumer.recv(&mut buf), Err(Error::Closed { .. })));
    assert!(matches!(
        consumer.read().map(|g| g.len()),
        Err(Error::Closed { .. })
    ));
}
