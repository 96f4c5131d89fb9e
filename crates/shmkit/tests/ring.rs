//! The message ring, tested from outside: every send and receive verb
//! against a model of the format (proptest, one process); deterministic
//! streams and a stress run across two processes; SIGKILL of either end at
//! random moments, takeover of a dead end, and garbage collection; corrupt
//! headers and records, and arbitrary bytes, which must give errors, never
//! a panic or a hang.
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! its segment even if the test fails. Nothing here sleeps to synchronise:
//! children report on stdout, and a test that waits for another process to
//! reach a state polls that state in shared memory. Blocking calls rely on
//! the ring's dead-peer detection; a watchdog aborts the run rather than let
//! a broken test hang.

mod processes;

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;
use shmkit::ring::{self, Consumer, EndpointStatus, Options, Producer, Waiting};
use shmkit::{Attachment, Error, Mode, ReadWrite, Segment};

use processes::{
    args, next_command, report, ring_exists, ring_key, unique_keys, unique_ring_name, wait_until,
    Cleanup, Peer, RingCleanup, ROLE,
};

// ---------------------------------------------------------------------------
// The byte layout, as docs/FORMAT.md draws it.

const MAGIC: u64 = u64::from_le_bytes(*b"SHMKRING");
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
const FLAGS_AT: usize = 12;
const CAPACITY_AT: usize = 16;
const MAX_MESSAGE_AT: usize = 24;
const DATA_OFFSET_AT: usize = 32;
const TAIL_AT: usize = 128;
const PRODUCER_OWNER_AT: usize = 136;
const HEAD_AT: usize = 256;
const CONSUMER_OWNER_AT: usize = 264;
const CONSUMER_SLEEPING_AT: usize = 384;
const PRODUCER_SLEEPING_AT: usize = 388;
const CLOSED_AT: usize = 392;
const HEADER: usize = 512;

const KIND_EMPTY: u32 = 0;
const KIND_MESSAGE: u32 = 1;
const KIND_PADDING: u32 = 2;

/// Bytes a record of `len` payload bytes takes: its word, the payload,
/// padding to 8.
fn record_size(len: usize) -> u64 {
    (8 + len as u64 + 7) & !7
}

fn record_word(len: u32, kind: u32) -> u64 {
    u64::from(kind) << 32 | u64::from(len)
}

/// The small ring most tests use: 4 KiB, so that records wrap constantly.
const SMALL: u64 = 4096;

fn small_ring() -> Options {
    Options::default().capacity(SMALL)
}

/// `SMALL / 2 - 16`, the largest message of a 4 KiB ring.
const SMALL_MAX: usize = 2032;

/// Generous bound for `*_timeout` calls that are expected to succeed.
const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Deterministic randomness and message streams.

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ splitmix64(b))
}

/// xorshift64: enough randomness for test data, and reproducible.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed, 0x5eed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// The checksum at the end of every message of 16 bytes or more: FNV-1a
/// over 8-byte words (word-wise to keep debug builds quick), then the
/// leftover bytes.
fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap());
        hash = (hash ^ word).wrapping_mul(PRIME).rotate_left(29);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    hash
}

/// How the lengths of a [`Sequence`] are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// 0 to max, often the edges (0, max, just under max, tiny).
    Random,
    /// Mostly 16 to 48 bytes, every 1009th close to max.
    Stress,
    /// Always this length.
    Fixed(usize),
}

/// A deterministic stream of messages: message `n`'s length and bytes
/// follow from `(seed, n)`, so the receiver knows exactly what to expect.
/// A message of 16 bytes or more starts with `n` and ends with the
/// checksum of the rest, so that a stray one names itself.
#[derive(Clone, Copy, Debug)]
struct Sequence {
    seed: u64,
    max: usize,
    shape: Shape,
}

impl Sequence {
    fn len(&self, n: u64) -> usize {
        let r = mix(self.seed, n);
        let max = self.max as u64;
        let len = match self.shape {
            Shape::Fixed(len) => len as u64,
            Shape::Stress if n % 1009 == 1008 => max.saturating_sub((r >> 8) % 64),
            Shape::Stress => 16 + (r >> 8) % 33,
            Shape::Random => match r % 16 {
                0 => 0,
                1 => max,
                2 => max.saturating_sub((r >> 8) % 16),
                3..=6 => (r >> 8) % 24,
                _ => (r >> 8) % (max + 1),
            },
        };
        len.min(max) as usize
    }

    fn message(&self, n: u64, out: &mut Vec<u8>) {
        let len = self.len(n);
        let mut rng = Rng::new(mix(self.seed ^ 0xc0ff_ee00, n));
        out.clear();
        while out.len() < len {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        out.truncate(len);
        if len >= 16 {
            out[..8].copy_from_slice(&n.to_le_bytes());
            let sum = checksum(&out[..len - 8]);
            out[len - 8..].copy_from_slice(&sum.to_le_bytes());
        }
    }
}

/// Checks that received messages are the sequence, in order, whole.
struct Checker {
    sequence: Sequence,
    next: u64,
    expected: Vec<u8>,
}

impl Checker {
    fn new(sequence: Sequence) -> Checker {
        Checker {
            sequence,
            next: 0,
            expected: Vec::new(),
        }
    }

    fn check(&mut self, got: &[u8]) {
        let n = self.next;
        let intact = if self.sequence.shape == Shape::Stress {
            // Quicker: the length, the sequence number and the checksum
            // (every stress message has 16 bytes or more).
            got.len() == self.sequence.len(n)
                && got[..8] == n.to_le_bytes()
                && got[got.len() - 8..] == checksum(&got[..got.len() - 8]).to_le_bytes()
        } else {
            self.sequence.message(n, &mut self.expected);
            *got == self.expected[..]
        };
        if !intact {
            self.sequence.message(n, &mut self.expected);
            let mut what = format!(
                "message {n} is wrong: {} bytes, expected {}",
                got.len(),
                self.expected.len()
            );
            if got.len() >= 16 {
                let seq = u64::from_le_bytes(got[..8].try_into().unwrap());
                let sum = u64::from_le_bytes(got[got.len() - 8..].try_into().unwrap());
                let intact = sum == checksum(&got[..got.len() - 8]);
                what += &format!("; it says it is message {seq}, checksum valid: {intact}");
            }
            panic!("{what}");
        }
        self.next += 1;
    }
}

/// Aborts the whole test run if it is not dropped within `limit`: a hang
/// in a ring call becomes a loud failure instead of a stuck CI job.
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

impl Watchdog {
    fn new(what: &'static str, limit: Duration) -> Watchdog {
        let (done, wait) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                // Straight to the stream: libtest would capture eprintln!,
                // and the abort would lose it.
                use std::io::Write;
                let message = format!("watchdog: {what} still running after {limit:?}; aborting\n");
                let _ = std::io::stderr().write_all(message.as_bytes());
                std::process::abort();
            }
        });
        Watchdog(done)
    }
}

/// Proptest's settings here: `cases` cases, drawn with its XorShift
/// generator (its default, ChaCha, dominates the run time of a debug build).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// 1. Every verb against a model of the format, in one process.

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
}

#[derive(Clone, Debug)]
enum Op {
    Put(Size, Put),
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
    ];
    prop_oneof![
        6 => (size_strategy(), put).prop_map(|(size, put)| Op::Put(size, put)),
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
                        consumer.try_read().unwrap().is_none(),
                        "try_read of an empty ring"
                    )
                }
                Take::Drain => assert_eq!(consumer.drain(|m| panic!("drained {m:?}")).unwrap(), 0),
                _ => assert_eq!(
                    consumer.try_recv(&mut buf).unwrap(),
                    None,
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
                let n = consumer.try_recv(&mut buf).unwrap().expect("a message");
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
                let grant = consumer.try_read().unwrap().expect("a message");
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
                        consumer.try_recv(&mut buf[..short]).map(|n| n.unwrap_or(0)),
                    ] {
                        match result {
                            Err(Error::TooLarge { size, limit, .. }) => {
                                assert_eq!((size, limit), (expected.len() as u64, short as u64))
                            }
                            other => panic!("expected TooLarge: {other:?}"),
                        }
                    }
                }
                let n = consumer.try_recv(&mut buf).unwrap().expect("still there");
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
            Ok(Some(n)) => assert_eq!(Some(&buf[..n]), model.pop().as_deref()),
            Err(Error::Closed { ring }) => {
                assert_eq!(ring, name);
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
    assert!(matches!(
        Producer::open_with(&name, &options),
        Err(Error::Closed { .. })
    ));
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

// ---------------------------------------------------------------------------
// Child processes: this test binary again, in a role.

/// What a child is told: the ring, its capacity, the sequence, and a count
/// (and for some roles one more number).
#[derive(Clone, Debug)]
struct Plan {
    name: String,
    capacity: u64,
    seed: u64,
    shape: Shape,
    count: u64,
    extra: u64,
}

impl Plan {
    fn new(name: &str, capacity: u64, seed: u64, shape: Shape) -> Plan {
        Plan {
            name: name.to_owned(),
            capacity,
            seed,
            shape,
            count: u64::MAX,
            extra: 0,
        }
    }

    fn options(&self) -> Options {
        Options::default().capacity(self.capacity)
    }

    fn sequence(&self) -> Sequence {
        Sequence {
            seed: self.seed,
            max: self.options().max_message_len() as usize,
            shape: self.shape,
        }
    }

    fn to_args(&self) -> String {
        let shape = match self.shape {
            Shape::Random => "random".to_owned(),
            Shape::Stress => "stress".to_owned(),
            Shape::Fixed(len) => format!("fixed-{len}"),
        };
        format!(
            "{} {} {} {shape} {} {}",
            self.name, self.capacity, self.seed, self.count, self.extra
        )
    }

    fn from_args(args: &str) -> Plan {
        let words: Vec<&str> = args.split(' ').collect();
        let shape = match words[3] {
            "random" => Shape::Random,
            "stress" => Shape::Stress,
            fixed => Shape::Fixed(fixed.strip_prefix("fixed-").unwrap().parse().unwrap()),
        };
        Plan {
            name: words[0].to_owned(),
            capacity: words[1].parse().unwrap(),
            seed: words[2].parse().unwrap(),
            shape,
            count: words[4].parse().unwrap(),
            extra: words[5].parse().unwrap(),
        }
    }
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let plan = Plan::from_args(&args());
    match role.as_str() {
        "produce" => produce(&plan),
        "grant-and-hold" => grant_and_hold(&plan),
        "consume" => consume(&plan),
        other => panic!("unknown role {other}"),
    }
}

/// Sends message `n` of `sequence` with one of the producer's verbs, chosen
/// by `n`; some messages are preceded by a grant that is aborted.
fn send_one(
    producer: &mut Producer,
    sequence: &Sequence,
    n: u64,
    message: &mut Vec<u8>,
) -> Result<(), Error> {
    sequence.message(n, message);
    let max = producer.max_message();
    let r = mix(sequence.seed ^ 0x5e4d, n);
    // A grant of the largest size waits for half the ring to be free: rare
    // in the stress run, which is about volume.
    let verb = if sequence.shape == Shape::Stress {
        r % 1024
    } else {
        r % 8
    };
    match verb {
        0 => {
            let mut grant = producer.grant(message.len())?;
            grant.copy_from_slice(message);
            grant.commit();
        }
        1 => {
            let mut grant = producer.grant(max)?;
            grant[..message.len()].copy_from_slice(message);
            grant.commit_len(message.len());
        }
        2 => {
            let mut grant = producer.grant(max.min(message.len() + 64))?;
            grant.fill(0x01);
            grant.abort();
            producer.send(message)?;
        }
        3 => match producer.try_send(message) {
            Err(Error::Full { .. }) => producer.send(message)?,
            other => other?,
        },
        4 => producer.send_timeout(message, LONG)?,
        _ => producer.send(message)?,
    }
    Ok(())
}

/// Role: sends `count` messages of the sequence, then closes.
fn produce(plan: &Plan) {
    let mut producer = Producer::open_with(&plan.name, &plan.options()).unwrap();
    report("ready");
    let sequence = plan.sequence();
    let mut message = Vec::new();
    for n in 0..plan.count {
        send_one(&mut producer, &sequence, n, &mut message).unwrap();
    }
    producer.close();
    report("closed");
}

/// Role: sends `count` messages, then holds a grant of `extra` bytes
/// without committing it until stdin closes.
fn grant_and_hold(plan: &Plan) {
    let mut producer = Producer::open_with(&plan.name, &plan.options()).unwrap();
    report("ready");
    let sequence = plan.sequence();
    let mut message = Vec::new();
    for n in 0..plan.count {
        send_one(&mut producer, &sequence, n, &mut message).unwrap();
    }
    let mut grant = producer.grant(plan.extra as usize).unwrap();
    grant.fill(0x01);
    report("granted");
    next_command();
    grant.abort();
}

/// Role: receives and checks the sequence on command: `recv N`, or
/// `recv-forever quiet|verbose` (verbose reports `got N` for each).
fn consume(plan: &Plan) {
    let mut consumer = Consumer::open_with(&plan.name, &plan.options()).unwrap();
    let mut checker = Checker::new(plan.sequence());
    let mut buf = vec![0; consumer.max_message()];
    report("ready");
    loop {
        let command = next_command();
        match command.split(' ').collect::<Vec<_>>()[..] {
            ["recv", count] => {
                for _ in 0..count.parse::<u64>().unwrap() {
                    let n = consumer.recv(&mut buf).unwrap();
                    checker.check(&buf[..n]);
                }
                report(&format!("next {}", checker.next));
            }
            ["recv-forever", how] => {
                report("receiving");
                while let Ok(n) = consumer.recv(&mut buf) {
                    checker.check(&buf[..n]);
                    if how == "verbose" {
                        report(&format!("got {}", checker.next - 1));
                    }
                }
                return;
            }
            [""] => return, // stdin closed
            _ => panic!("unknown command {command:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Parent-side helpers.

/// Receives the next message(s) with a verb chosen by `checker.next`;
/// returns how many it took (`drain` may take several).
fn receive(consumer: &mut Consumer, checker: &mut Checker, buf: &mut [u8]) -> Result<u64, Error> {
    match checker.next % 6 {
        0 => {
            let grant = consumer.read()?;
            checker.check(&grant);
            grant.release();
        }
        1 => {
            let taken = consumer.drain(|m| checker.check(m))?;
            if taken > 0 {
                return Ok(taken as u64);
            }
            let n = consumer.recv(buf)?;
            checker.check(&buf[..n]);
        }
        2 => match consumer.try_recv(buf)? {
            Some(n) => checker.check(&buf[..n]),
            None => {
                let n = consumer.recv_timeout(buf, LONG)?;
                checker.check(&buf[..n]);
            }
        },
        3 => {
            let grant = consumer.read_timeout(LONG)?;
            checker.check(&grant);
        }
        _ => {
            let n = consumer.recv(buf)?;
            checker.check(&buf[..n]);
        }
    }
    Ok(1)
}

/// In one thread, sends messages `range` of the checker's sequence and
/// receives them: receives whenever the ring is full, then the rest; the
/// ring is empty afterwards.
fn send_and_receive(
    producer: &mut Producer,
    consumer: &mut Consumer,
    checker: &mut Checker,
    range: std::ops::Range<u64>,
) {
    let sequence = checker.sequence;
    let mut message = Vec::new();
    let mut buf = vec![0; consumer.max_message()];
    for n in range.clone() {
        sequence.message(n, &mut message);
        loop {
            match producer.try_send(&message) {
                Ok(()) => break,
                Err(Error::Full { .. }) => {
                    receive(consumer, checker, &mut buf).unwrap();
                }
                Err(other) => panic!("sending message {n}: {other}"),
            }
        }
    }
    while checker.next < range.end {
        receive(consumer, checker, &mut buf).unwrap();
    }
    assert_eq!(
        consumer.try_recv(&mut buf).unwrap(),
        None,
        "no extra message"
    );
}

/// A mapping of ring `name`'s header, to watch its futex words.
fn map_ring(name: &str) -> Attachment<ReadWrite> {
    Segment::open(&ring_key(name))
        .unwrap()
        .attach(ReadWrite)
        .unwrap()
}

/// Whether the side whose `*_sleeping` word is at `offset` sleeps on it.
fn sleeping(ring: &Attachment<ReadWrite>, offset: usize) -> bool {
    ring.atomic_u32(offset)
        .unwrap()
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1
}

/// Serialises this binary's calls to `collect_garbage`: one call maps each
/// ring for a moment to read it, which makes a concurrent call skip it.
fn gc_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// 2 and 3. Streams across two processes.

/// A child producer sends the plan's sequence with every verb; the parent
/// receives it with every verb: all of it, whole, in order, then Closed;
/// the counts agree, and the ring is gone once both ends have left.
fn stream_from_a_child(plan: &Plan) {
    let _cleanup = RingCleanup(plan.name.clone());
    let mut consumer = Consumer::open_with(&plan.name, &plan.options()).unwrap();
    let mut peer = Peer::spawn("produce", &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    let mut checker = Checker::new(plan.sequence());
    let mut buf = vec![0; consumer.max_message()];
    while checker.next < plan.count {
        receive(&mut consumer, &mut checker, &mut buf).unwrap();
    }
    match consumer.recv(&mut buf) {
        Err(Error::Closed { ring }) => assert_eq!(ring, plan.name),
        other => panic!("after the last message: {other:?}"),
    }
    assert_eq!(peer.expect_line(), "closed");
    peer.finish();
    let status = ring::status(&plan.name).unwrap();
    assert_eq!((status.sent, status.received), (plan.count, plan.count));
    assert!(status.closed && status.producer.is_none());
    assert_eq!(
        status.consumer,
        Some(EndpointStatus {
            pid: std::process::id(),
            alive: true
        })
    );
    drop(consumer);
    assert!(!ring_exists(&plan.name), "both ends left: the ring is gone");
}

#[test]
fn a_random_sequence_crosses_processes_intact_and_in_order() {
    let _watchdog = Watchdog::new("a 20000-message stream", Duration::from_secs(120));
    let mut plan = Plan::new(&unique_ring_name("stream"), SMALL, 42, Shape::Random);
    plan.count = 20_000;
    stream_from_a_child(&plan);
}

proptest! {
    #![proptest_config(config(8))]

    /// The same with a few random seeds, lengths and capacities.
    #[test]
    fn random_sequences_cross_processes(
        seed in any::<u64>(),
        count in 0u64..3000,
        capacity in prop_oneof![Just(4096u64), Just(16384), Just(1 << 20)],
        fixed in prop::option::of(0usize..=2032),
    ) {
        let _watchdog = Watchdog::new("a random stream", Duration::from_secs(120));
        let shape = fixed.map_or(Shape::Random, Shape::Fixed);
        let mut plan = Plan::new(&unique_ring_name("streams"), capacity, seed, shape);
        plan.count = count;
        stream_from_a_child(&plan);
    }
}

/// Three million messages (or `SHMKIT_STRESS_MESSAGES`) with sequence
/// numbers and checksums, mostly 16 to 48 bytes, every 1009th close to the
/// largest, through a 64 KiB ring. (About 2 s in a debug build on two idle
/// cores; much longer when something else keeps a core busy, as the two
/// processes then take turns.)
#[test]
fn stress_three_million_messages_across_processes() {
    let _watchdog = Watchdog::new("the stress run", Duration::from_secs(600));
    let mut plan = Plan::new(&unique_ring_name("stress"), 1 << 16, 7, Shape::Stress);
    plan.count = std::env::var("SHMKIT_STRESS_MESSAGES").map_or(3_000_000, |v| v.parse().unwrap());
    stream_from_a_child(&plan);
}

// ---------------------------------------------------------------------------
// 4. SIGKILL at random moments, takeover, garbage collection.

/// When the parent kills its child producer.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// After receiving this many messages, while the producer streams.
    Running(u64),
    /// After receiving this many, once the producer sleeps on the full ring.
    BlockedOnFull(u64),
    /// The producer sent this many, then holds an uncommitted grant of
    /// `len` bytes.
    HoldingGrant { sent: u64, len: u64 },
}

/// What the parent does after the producer died and everything it
/// committed was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Afterwards {
    /// Opens a new producer on the ring and streams on.
    TakeOver,
    /// Leaves, and has `collect_garbage` remove the abandoned ring.
    Collect,
}

/// A child producer streams the sequence; the parent receives some, kills
/// it at `point`, and keeps receiving: every message the producer
/// committed, whole and in order, then `PeerGone` naming it.
fn kill_the_producer(seed: u64, shape: Shape, point: KillPoint, reap: bool, then: Afterwards) {
    let _watchdog = Watchdog::new("a killed-producer round", Duration::from_secs(120));
    let name = unique_ring_name("killed-producer");
    let _cleanup = RingCleanup(name.clone());
    let mut plan = Plan::new(&name, SMALL, seed, shape);
    let mut consumer = Consumer::open_with(&name, &plan.options()).unwrap();
    let header = map_ring(&name);
    let (role, receive_first) = match point {
        KillPoint::HoldingGrant { sent, len } => {
            plan.count = sent;
            plan.extra = len;
            ("grant-and-hold", sent)
        }
        KillPoint::Running(n) | KillPoint::BlockedOnFull(n) => ("produce", n),
    };
    let mut peer = Peer::spawn(role, &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    let pid = peer.pid() as u32;
    let mut checker = Checker::new(plan.sequence());
    let mut buf = vec![0; SMALL_MAX];
    while checker.next < receive_first {
        receive(&mut consumer, &mut checker, &mut buf).unwrap();
    }
    match point {
        KillPoint::Running(_) => {}
        KillPoint::BlockedOnFull(_) => wait_until("the producer sleeps on the full ring", || {
            sleeping(&header, PRODUCER_SLEEPING_AT)
        }),
        KillPoint::HoldingGrant { .. } => {
            assert_eq!(peer.expect_line(), "granted");
            assert_eq!(
                consumer.try_recv(&mut buf).unwrap(),
                None,
                "an uncommitted grant is invisible"
            );
            match Producer::open_with(&name, &plan.options()) {
                Err(Error::InUse {
                    endpoint: "producer",
                    pid: holder,
                    ..
                }) => assert_eq!(holder, pid),
                other => panic!("a second producer while the first lives: {other:?}"),
            }
        }
    }
    peer.kill(reap);

    let end = loop {
        if let Err(end) = receive(&mut consumer, &mut checker, &mut buf) {
            break end;
        }
    };
    match end {
        Error::PeerGone {
            ring,
            peer: "producer",
            pid: gone,
        } => assert_eq!((ring, gone), (name.clone(), pid)),
        other => panic!("after the producer's death: {other}"),
    }
    assert!(
        matches!(consumer.try_recv(&mut buf), Err(Error::PeerGone { .. })),
        "PeerGone again"
    );
    assert!(matches!(
        consumer.recv_timeout(&mut buf, Duration::ZERO),
        Err(Error::PeerGone { .. })
    ));
    let received = checker.next;
    assert!(received >= receive_first);
    let status = ring::status(&name).unwrap();
    assert!(
        status.sent <= received && received <= status.sent + 1,
        "{received} received, the producer published {} sent ({point:?})",
        status.sent
    );
    assert_eq!(status.received, received);
    assert_eq!(status.producer, Some(EndpointStatus { pid, alive: false }));
    assert!(!status.abandoned(), "its consumer is alive");

    match then {
        Afterwards::TakeOver => {
            let mut producer = Producer::open_with(&name, &plan.options()).unwrap();
            let status = ring::status(&name).unwrap();
            assert_eq!(status.producer.map(|p| p.pid), Some(std::process::id()));
            send_and_receive(
                &mut producer,
                &mut consumer,
                &mut checker,
                received..received + 300,
            );
            producer.close();
            assert!(matches!(consumer.recv(&mut buf), Err(Error::Closed { .. })));
            drop(consumer);
            assert!(
                !ring_exists(&name),
                "a taken-over ring is removed like any other"
            );
        }
        Afterwards::Collect => {
            drop(consumer);
            drop(header);
            let _gc = gc_lock();
            let collected = ring::collect_garbage(true).unwrap();
            assert!(
                !ring_exists(&name),
                "collect_garbage removes a ring whose producer died and consumer left ({collected:?})"
            );
        }
    }
}

/// Kills at random points (seeded): while the producer streams or right
/// after it started, and while it sleeps on a full ring; the dead child is
/// reaped or left a zombie; then a new producer takes over, or the ring is
/// collected as garbage.
#[test]
fn a_killed_producer_leaves_every_commit_readable() {
    let mut rng = Rng::new(2024);
    for round in 0..8 {
        let point = match round % 4 {
            0 => KillPoint::Running(rng.below(2000)),
            1 => KillPoint::BlockedOnFull(rng.below(200)),
            2 => KillPoint::Running(rng.below(20)),
            _ => KillPoint::Running(0),
        };
        let then = if rng.below(2) == 0 {
            Afterwards::TakeOver
        } else {
            Afterwards::Collect
        };
        kill_the_producer(rng.next(), Shape::Random, point, round % 2 == 0, then);
    }
}

/// Killed while holding a grant: nothing of it is ever seen. With 36
/// records of 112 bytes the tail is 64 bytes before the end, so the grant
/// of 200 bytes first commits a padding record, which the consumer skips
/// before the producer dies; the new producer must still find the tail.
#[test]
fn a_producer_killed_holding_a_grant_is_taken_over() {
    for (sent, len) in [(10, 200), (36, 200), (36, 8), (0, 2032)] {
        let point = KillPoint::HoldingGrant { sent, len };
        kill_the_producer(5, Shape::Fixed(100), point, true, Afterwards::TakeOver);
    }
    kill_the_producer(
        6,
        Shape::Fixed(100),
        KillPoint::HoldingGrant { sent: 36, len: 200 },
        false,
        Afterwards::Collect,
    );
}

/// Sends messages `from..` with `try_send` until the ring is full;
/// returns the first one that did not fit.
fn fill(producer: &mut Producer, sequence: &Sequence, from: u64) -> u64 {
    let mut message = Vec::new();
    for n in from.. {
        sequence.message(n, &mut message);
        match producer.try_send(&message) {
            Ok(()) => {}
            Err(Error::Full { .. }) => return n,
            Err(other) => panic!("filling: {other}"),
        }
    }
    unreachable!()
}

/// The parent produces into a full ring while a child consumes slowly, on
/// command; a send blocked on the full ring returns `PeerGone` naming the
/// child once it is killed.
#[test]
fn a_producer_blocked_on_a_killed_consumer_gets_peer_gone() {
    let _watchdog = Watchdog::new("the killed-consumer test", Duration::from_secs(120));
    let name = unique_ring_name("killed-consumer");
    let _cleanup = RingCleanup(name.clone());
    let plan = Plan::new(&name, SMALL, 11, Shape::Random);
    let sequence = plan.sequence();
    let mut producer = Producer::open_with(&name, &plan.options()).unwrap();
    let header = map_ring(&name);
    let mut peer = Peer::spawn("consume", &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    let pid = peer.pid() as u32;

    let mut next = fill(&mut producer, &sequence, 0);
    peer.send("recv 2");
    assert_eq!(peer.expect_line(), "next 2");
    next = fill(&mut producer, &sequence, next);
    match Consumer::open_with(&name, &plan.options()) {
        Err(Error::InUse {
            endpoint: "consumer",
            pid: holder,
            ..
        }) => assert_eq!(holder, pid),
        other => panic!("a second consumer while the first lives: {other:?}"),
    }

    let mut message = Vec::new();
    sequence.message(next, &mut message);
    let blocked = std::thread::scope(|scope| {
        let sender = scope.spawn(|| producer.send_timeout(&message, LONG));
        wait_until("the producer sleeps on the full ring", || {
            sleeping(&header, PRODUCER_SLEEPING_AT)
        });
        peer.kill(true);
        sender.join().unwrap()
    });
    match blocked {
        Err(Error::PeerGone {
            ring,
            peer: "consumer",
            pid: gone,
        }) => assert_eq!((ring, gone), (name.clone(), pid)),
        other => panic!("a send blocked on a dead consumer: {other:?}"),
    }
    assert!(matches!(
        producer.send(&message),
        Err(Error::PeerGone { .. })
    ));
    assert!(matches!(
        producer.send_timeout(&message, Duration::ZERO),
        Err(Error::PeerGone { .. })
    ));
    let status = ring::status(&name).unwrap();
    assert_eq!(status.consumer, Some(EndpointStatus { pid, alive: false }));
    assert_eq!(status.received, 2);
}

/// A consumer killed while it waits in `recv` on an empty ring is replaced
/// by a new one, which resumes at the published head: the head is
/// published with every message, so nothing is delivered twice or lost.
#[test]
fn a_killed_consumer_is_taken_over_without_duplicates() {
    let _watchdog = Watchdog::new("the consumer takeover test", Duration::from_secs(120));
    let name = unique_ring_name("consumer-takeover");
    let _cleanup = RingCleanup(name.clone());
    let plan = Plan::new(&name, SMALL, 12, Shape::Random);
    let sequence = plan.sequence();
    let mut producer = Producer::open_with(&name, &plan.options()).unwrap();
    let header = map_ring(&name);
    let mut peer = Peer::spawn("consume", &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    let pid = peer.pid() as u32;
    peer.send("recv-forever verbose");
    assert_eq!(peer.expect_line(), "receiving");
    let mut message = Vec::new();
    let sent = 300;
    for n in 0..sent {
        send_one(&mut producer, &sequence, n, &mut message).unwrap();
    }
    for n in 0..sent {
        assert_eq!(peer.expect_line(), format!("got {n}"));
    }
    wait_until("the consumer sleeps on the empty ring", || {
        sleeping(&header, CONSUMER_SLEEPING_AT)
    });
    for second in [
        Consumer::open_with(&name, &plan.options()).map(drop),
        Producer::open_with(&name, &plan.options()).map(drop),
    ] {
        match second {
            Err(Error::InUse { pid: holder, .. }) => {
                assert!(holder == pid || holder == std::process::id())
            }
            other => panic!("a second end while the first lives: {other:?}"),
        }
    }
    peer.kill(true);
    let status = ring::status(&name).unwrap();
    assert_eq!(status.consumer, Some(EndpointStatus { pid, alive: false }));

    let mut consumer = Consumer::open_with(&name, &plan.options()).unwrap();
    let mut checker = Checker::new(sequence);
    checker.next = sent;
    send_and_receive(&mut producer, &mut consumer, &mut checker, sent..sent + 300);
    assert_eq!(ring::status(&name).unwrap().received, sent + 300);
}

/// The same with kills at random moments while the consumer is busy: the
/// child reports each message after `recv` returned it, so the new consumer
/// starts right after the last report, or one later if the child died
/// between `recv` and its report. Never earlier: no duplicates.
#[test]
fn a_consumer_killed_at_random_moments_is_taken_over() {
    let _watchdog = Watchdog::new("the consumer kill rounds", Duration::from_secs(120));
    let mut rng = Rng::new(99);
    for round in 0..6 {
        let name = unique_ring_name("consumer-kill");
        let _cleanup = RingCleanup(name.clone());
        let plan = Plan::new(&name, SMALL, rng.next(), Shape::Random);
        let sequence = plan.sequence();
        let mut producer = Producer::open_with(&name, &plan.options()).unwrap();
        let mut peer = Peer::spawn("consume", &plan.to_args(), None);
        assert_eq!(peer.expect_line(), "ready");
        peer.send("recv-forever verbose");
        assert_eq!(peer.expect_line(), "receiving");
        let sent = rng.below(1000) + 1;
        let mut message = Vec::new();
        for n in 0..sent {
            send_one(&mut producer, &sequence, n, &mut message).unwrap();
        }
        peer.kill(round % 2 == 0);
        let reported = peer.remaining_lines();
        for (n, line) in reported.iter().enumerate() {
            assert_eq!(*line, format!("got {n}"));
        }
        let reported = reported.len() as u64;

        let mut consumer = Consumer::open_with(&name, &plan.options()).unwrap();
        let mut checker = Checker::new(sequence);
        let mut buf = vec![0; SMALL_MAX];
        let first = match consumer.try_recv(&mut buf).unwrap() {
            Some(n) => (reported..=reported + 1)
                .find(|&first| {
                    sequence.message(first, &mut message);
                    buf[..n] == message
                })
                .unwrap_or_else(|| panic!("the first message after {reported} reported")),
            None => sent,
        };
        assert!(
            first == reported || first == reported + 1,
            "{reported} reported, the new consumer starts at {first}"
        );
        checker.next = first;
        if first < sent {
            checker.check(&buf[..message.len()]);
        }
        while checker.next < sent {
            receive(&mut consumer, &mut checker, &mut buf).unwrap();
        }
        send_and_receive(&mut producer, &mut consumer, &mut checker, sent..sent + 50);
    }
}

/// `collect_garbage` removes a ring whose producer died once its consumer
/// has left, and nothing else: not a ring whose end a live process holds,
/// not a segment of another name, not a segment with the ring prefix that
/// is no ring.
#[test]
fn garbage_collection_takes_only_abandoned_rings() {
    let _watchdog = Watchdog::new("the garbage collection test", Duration::from_secs(120));
    // A live child producer and no consumer.
    let live = unique_ring_name("gc-live");
    let _live_cleanup = RingCleanup(live.clone());
    let live_plan = Plan::new(&live, SMALL, 1, Shape::Random);
    let mut live_peer = Peer::spawn("produce", &live_plan.to_args(), None);
    assert_eq!(live_peer.expect_line(), "ready");

    // A producer that dies while we consume (left a zombie).
    let dead = unique_ring_name("gc-dead");
    let _dead_cleanup = RingCleanup(dead.clone());
    let dead_plan = Plan::new(&dead, SMALL, 2, Shape::Random);
    let mut consumer = Consumer::open_with(&dead, &dead_plan.options()).unwrap();
    let mut dead_peer = Peer::spawn("produce", &dead_plan.to_args(), None);
    assert_eq!(dead_peer.expect_line(), "ready");
    let mut checker = Checker::new(dead_plan.sequence());
    let mut buf = vec![0; SMALL_MAX];
    while checker.next < 10 {
        receive(&mut consumer, &mut checker, &mut buf).unwrap();
    }
    dead_peer.kill(false);

    // Not rings.
    let [_, other] = unique_keys();
    let _other_cleanup = Cleanup(other.clone());
    Segment::create(&other, 4096, Mode::OWNER_ONLY).unwrap();
    let fake = unique_ring_name("gc-fake");
    let _fake_cleanup = RingCleanup(fake.clone());
    let fake_segment = Segment::create(&ring_key(&fake), 4608, Mode::OWNER_ONLY).unwrap();
    fake_segment
        .attach(ReadWrite)
        .unwrap()
        .write_at(0, &[0xa5; 4608])
        .unwrap();

    let survivors = |also_dead: bool| {
        assert!(ring_exists(&live), "a ring with a live producer");
        assert_eq!(ring_exists(&dead), also_dead);
        assert!(
            ring_exists(&fake),
            "a segment with the ring prefix that is no ring"
        );
        assert!(Segment::open(&other).is_ok(), "a segment that is no ring");
    };
    {
        let _gc = gc_lock();
        let collected = ring::collect_garbage(true).unwrap();
        assert!(
            collected
                .iter()
                .all(|r| [&live, &dead, &fake].iter().all(|n| **n != r.name)),
            "{collected:?}"
        );
    }
    survivors(true);
    let status = ring::status(&live).unwrap();
    assert!(status.producer.unwrap().alive && !status.abandoned());

    // Drained after the producer died: the last reader removes the ring
    // on its way out, since nothing more can ever be read from it.
    let end = loop {
        if let Err(end) = receive(&mut consumer, &mut checker, &mut buf) {
            break end;
        }
    };
    assert!(matches!(end, Error::PeerGone { .. }), "{end}");
    drop(consumer);
    assert!(
        !ring_exists(&dead),
        "a drained ring of a dead producer outlived its reader"
    );

    // A producer that dies before any consumer came: abandoned, with
    // messages in it. A dry run lists it and leaves it; --force removes it.
    let orphan = unique_ring_name("gc-orphan");
    let _orphan_cleanup = RingCleanup(orphan.clone());
    let mut orphan_plan = Plan::new(&orphan, SMALL, 3, Shape::Fixed(100));
    orphan_plan.count = 3;
    orphan_plan.extra = 100;
    let mut orphan_peer = Peer::spawn("grant-and-hold", &orphan_plan.to_args(), None);
    assert_eq!(orphan_peer.expect_line(), "ready");
    assert_eq!(orphan_peer.expect_line(), "granted");
    orphan_peer.kill(false);
    let _gc = gc_lock();
    let listed = ring::collect_garbage(false).unwrap();
    let found = listed.iter().find(|r| r.name == orphan).expect("listed");
    assert!(found.abandoned() && found.consumer.is_none());
    assert!(ring_exists(&orphan), "a dry run removed it");
    ring::collect_garbage(true).unwrap();
    assert!(!ring_exists(&orphan));
    survivors(false);
    drop(live_peer);
}

/// The state a producer leaves if it dies between storing a record's word
/// and publishing the tail after it, when the consumer has already read
/// the record: the consumer's head is past the published tail. A new
/// producer must take over from there, not call the ring corrupt.
#[test]
fn a_new_producer_recovers_a_tail_published_late() {
    let _watchdog = Watchdog::new("the late tail test", Duration::from_secs(60));
    let name = unique_ring_name("late-tail");
    let _cleanup = RingCleanup(name.clone());
    let mut plan = Plan::new(&name, SMALL, 3, Shape::Fixed(100));
    plan.count = 3;
    plan.extra = 8;
    let mut consumer = Consumer::open_with(&name, &plan.options()).unwrap();
    let header = map_ring(&name);
    let mut peer = Peer::spawn("grant-and-hold", &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    let mut checker = Checker::new(plan.sequence());
    let mut buf = vec![0; SMALL_MAX];
    while checker.next < 3 {
        receive(&mut consumer, &mut checker, &mut buf).unwrap();
    }
    assert_eq!(peer.expect_line(), "granted");
    peer.kill(true);
    // Records of 112 bytes: the third ends at 336; "die" before its tail.
    header
        .write_at(TAIL_AT, &(2 * record_size(100)).to_le_bytes())
        .unwrap();
    assert!(matches!(
        consumer.recv(&mut buf),
        Err(Error::PeerGone { .. })
    ));
    let mut producer = Producer::open_with(&name, &plan.options()).unwrap();
    send_and_receive(&mut producer, &mut consumer, &mut checker, 3..40);
}

// ---------------------------------------------------------------------------
// 5. Corrupt shared memory: errors, never a panic, an out-of-bounds read or
// a hang.

/// A ring segment written by hand, as a C program would from
/// docs/FORMAT.md: a valid header for a 4 KiB data area, data all zero.
struct Handmade {
    name: String,
    memory: Attachment<ReadWrite>,
    _cleanup: RingCleanup,
}

impl Handmade {
    fn new(tag: &str) -> Handmade {
        let name = unique_ring_name(tag);
        let cleanup = RingCleanup(name.clone());
        let segment =
            Segment::create(&ring_key(&name), HEADER as u64 + SMALL, Mode::OWNER_ONLY).unwrap();
        let ring = Handmade {
            name,
            memory: segment.attach(ReadWrite).unwrap(),
            _cleanup: cleanup,
        };
        ring.put_u32(VERSION_AT, 1);
        ring.put_u64(CAPACITY_AT, SMALL);
        ring.put_u64(MAX_MESSAGE_AT, SMALL_MAX as u64);
        ring.put_u64(DATA_OFFSET_AT, HEADER as u64);
        ring.put_u64(MAGIC_AT, MAGIC);
        ring
    }

    fn put_u64(&self, offset: usize, value: u64) {
        self.memory.write_at(offset, &value.to_le_bytes()).unwrap();
    }

    fn put_u32(&self, offset: usize, value: u32) {
        self.memory.write_at(offset, &value.to_le_bytes()).unwrap();
    }

    /// A record word at `offset` in the data area.
    fn put_record(&self, offset: u64, len: u32, kind: u32) {
        self.put_u64(HEADER + offset as usize, record_word(len, kind));
    }

    /// Positions `head` and `tail` both at `position`.
    fn put_positions(&self, position: u64) {
        self.put_u64(HEAD_AT, position);
        self.put_u64(TAIL_AT, position);
    }

    fn consumer(&self) -> Result<Consumer, Error> {
        Consumer::open_with(&self.name, &small_ring())
    }

    fn producer(&self) -> Result<Producer, Error> {
        Producer::open_with(&self.name, &small_ring())
    }
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) -> String {
    match result {
        Err(Error::Corrupt(message)) => message,
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_handmade_ring_is_read_like_any_other() {
    let _watchdog = Watchdog::new("a corrupt ring test", Duration::from_secs(60));
    let ring = Handmade::new("handmade");
    // One message "hi" at offset 0, committed as rule 4 says: the next
    // word (offset 16) is empty.
    ring.memory.write_at(HEADER + 8, b"hi").unwrap();
    ring.put_record(0, 2, KIND_MESSAGE);
    ring.put_u64(TAIL_AT, 16);
    let mut consumer = ring.consumer().unwrap();
    let mut buf = [0; 8];
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), Some(2));
    assert_eq!(&buf[..2], b"hi");
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), None);
    let mut producer = ring.producer().unwrap();
    producer.send(b"back").unwrap();
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), Some(4));
}

/// A way to spoil a hand-made ring.
type Corruption = Box<dyn Fn(&Handmade)>;

/// Every header field that is off makes both ends refuse the ring.
#[test]
fn corrupt_headers_are_refused() {
    let _watchdog = Watchdog::new("a corrupt ring test", Duration::from_secs(60));
    let mut cases: Vec<(&str, Corruption)> = vec![
        ("wrong magic", Box::new(|r| r.put_u64(MAGIC_AT, 0x1234))),
        ("nonzero flags", Box::new(|r| r.put_u32(FLAGS_AT, 1))),
        ("data offset", Box::new(|r| r.put_u64(DATA_OFFSET_AT, 1024))),
        ("data offset 0", Box::new(|r| r.put_u64(DATA_OFFSET_AT, 0))),
    ];
    for capacity in [0, 8, 2048, 4095, 4097, 3 << 10, 1 << 41, u64::MAX] {
        cases.push((
            "capacity",
            Box::new(move |r: &Handmade| r.put_u64(CAPACITY_AT, capacity)),
        ));
    }
    for max in [SMALL_MAX as u64 + 1, SMALL, u64::MAX, 1 << 32] {
        cases.push((
            "max_message",
            Box::new(move |r: &Handmade| r.put_u64(MAX_MESSAGE_AT, max)),
        ));
    }
    for (what, corrupt) in cases {
        let ring = Handmade::new("bad-header");
        corrupt(&ring);
        let message = expect_corrupt(ring.consumer(), what);
        assert!(message.contains(&ring.name), "{message}");
        expect_corrupt(ring.producer(), what);
        expect_corrupt(ring::status(&ring.name), what);
    }
    // A valid capacity that the file is too small for: it was shrunk.
    let ring = Handmade::new("bad-header");
    ring.put_u64(CAPACITY_AT, 8192);
    let results = [
        ring.consumer().map(drop),
        ring.producer().map(drop),
        ring::status(&ring.name).map(drop),
    ];
    for result in results {
        assert!(matches!(result, Err(Error::Truncated { .. })), "{result:?}");
    }
    let ring = Handmade::new("bad-version");
    ring.put_u32(VERSION_AT, 2);
    for result in [
        ring.consumer().map(drop),
        ring.producer().map(drop),
        ring::status(&ring.name).map(drop),
    ] {
        match result {
            Err(Error::VersionMismatch {
                segment,
                found: 2,
                expected: 1,
            }) => assert_eq!(segment, format!("ring {}", ring.name)),
            other => panic!("version 2: {other:?}"),
        }
    }
}

/// A segment whose creator died before writing the magic is refused after
/// a bounded wait (5 s); one smaller than a header, at once.
#[test]
fn an_uninitialised_ring_is_refused_after_a_bounded_wait() {
    let _watchdog = Watchdog::new("the uninitialised ring test", Duration::from_secs(60));
    let ring = Handmade::new("uninitialised");
    ring.put_u64(MAGIC_AT, 0);
    let tiny = unique_ring_name("tiny");
    let _tiny_cleanup = RingCleanup(tiny.clone());
    Segment::create(&ring_key(&tiny), 100, Mode::OWNER_ONLY).unwrap();
    std::thread::scope(|scope| {
        let consumer = scope.spawn(|| ring.consumer().map(drop));
        let producer = scope.spawn(|| Producer::open_with(&tiny, &small_ring()).map(drop));
        let message = expect_corrupt(consumer.join().unwrap(), "no magic");
        assert!(message.contains("creator died"), "{message}");
        // Sized, but smaller than a header: shrunk, said at once.
        match producer.join().unwrap() {
            Err(Error::Truncated { size: 100, .. }) => {}
            other => panic!("a segment smaller than a header: {other:?}"),
        }
    });
}

/// A bad record word makes every receive verb return Corrupt, and the
/// consumer reads nothing outside the data area; a new producer, which
/// walks the records from the published tail, refuses it too.
#[test]
fn corrupt_records_are_reported_not_read() {
    let _watchdog = Watchdog::new("a corrupt ring test", Duration::from_secs(60));
    let end = SMALL;
    let cases: Vec<(&str, u64, Corruption)> = vec![
        ("unknown type", 0, Box::new(|r| r.put_record(0, 0, 3))),
        (
            "type in the high bits",
            0,
            Box::new(|r| r.put_record(0, 4, 1 << 31)),
        ),
        (
            "empty with a length",
            0,
            Box::new(|r| r.put_record(0, 5, KIND_EMPTY)),
        ),
        (
            "longer than max_message",
            0,
            Box::new(|r| r.put_record(0, SMALL_MAX as u32 + 1, KIND_MESSAGE)),
        ),
        (
            "length u32::MAX",
            0,
            Box::new(|r| r.put_record(0, u32::MAX, KIND_MESSAGE)),
        ),
        (
            "past the end of the data area",
            end - 200,
            Box::new(move |r| r.put_record(end - 200, 200, KIND_MESSAGE)),
        ),
        (
            "one byte past the end",
            end - 16,
            Box::new(move |r| r.put_record(end - 16, 9, KIND_MESSAGE)),
        ),
        (
            "padding too short",
            0,
            Box::new(|r| r.put_record(0, 100, KIND_PADDING)),
        ),
        (
            "padding too long",
            end - 64,
            Box::new(move |r| r.put_record(end - 64, 64, KIND_PADDING)),
        ),
        (
            "padding of a whole lap",
            0,
            Box::new(move |r| r.put_record(0, (end - 8) as u32, KIND_PADDING)),
        ),
        (
            "valid padding, then garbage at offset 0",
            end - 64,
            Box::new(move |r| {
                r.put_record(end - 64, 56, KIND_PADDING);
                r.put_record(0, 7, 9);
            }),
        ),
    ];
    let mut buf = vec![0; SMALL as usize];
    for (what, position, corrupt) in cases {
        let ring = Handmade::new("bad-record");
        ring.put_positions(position);
        corrupt(&ring);
        let mut consumer = ring.consumer().unwrap();
        expect_corrupt(consumer.try_recv(&mut buf), what);
        expect_corrupt(consumer.recv(&mut buf), what);
        expect_corrupt(consumer.recv_timeout(&mut buf, LONG), what);
        expect_corrupt(consumer.read().map(|g| g.len()), what);
        expect_corrupt(consumer.try_read().map(|g| g.map(|g| g.len())), what);
        expect_corrupt(consumer.drain(|_| ()), what);
        expect_corrupt(ring.producer(), what);
    }
}

/// The consumer's head moved far from the tail by someone else: the
/// producer's next look at it says Corrupt, in every send verb, instead of
/// writing over unread records or waiting forever; a new producer or
/// consumer refuses impossible positions too.
#[test]
fn impossible_positions_are_corrupt() {
    let _watchdog = Watchdog::new("the positions test", Duration::from_secs(60));
    // Ahead of the tail, or more than a lap behind it (positions compare
    // modulo 2^64, so u64::MAX - 7 would be a plausible 8 bytes before 0).
    for head in [1 << 30, 4096 * 3, (u64::MAX - (1 << 20)) & !7] {
        let name = unique_ring_name("bad-head");
        let _cleanup = RingCleanup(name.clone());
        let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
        let memory = map_ring(&name);
        memory.write_at(HEAD_AT, &head.to_le_bytes()).unwrap();
        let message = [7u8; 100];
        let result = (0..100).try_for_each(|_| producer.try_send(&message));
        expect_corrupt(result, "try_send");
        expect_corrupt(producer.send(&message), "send");
        expect_corrupt(producer.grant(10).map(|g| g.len()), "grant");
    }
    for (head, tail) in [
        (4, 4),
        (4092, 4092),
        (0, 4),
        (1, 1),
        (u64::MAX - 7, u64::MAX - 7),
        (1 << 63, 1 << 63),
        (0, 8192),
        (8192, 0),
    ] {
        let ring = Handmade::new("bad-positions");
        ring.put_u64(HEAD_AT, head);
        ring.put_u64(TAIL_AT, tail);
        let what = format!("head {head}, tail {tail}");
        expect_corrupt(ring.producer(), &what);
        if head % 8 != 0 || head > u64::MAX / 2 {
            expect_corrupt(ring.consumer(), &what);
        }
    }
}

/// Valid-looking records all around the data area (every word a message of
/// length 0) make an endless stream: `try_recv` gives one at a time, and
/// `drain` returns after at most one lap instead of never.
#[test]
fn an_endless_stream_of_records_does_not_trap_drain() {
    let _watchdog = Watchdog::new("the endless stream test", Duration::from_secs(60));
    let ring = Handmade::new("endless");
    for offset in (0..SMALL).step_by(8) {
        ring.put_record(offset, 0, KIND_MESSAGE);
    }
    let mut consumer = ring.consumer().unwrap();
    let taken = consumer.drain(|m| assert!(m.is_empty())).unwrap();
    assert!(taken > 0 && taken as u64 <= SMALL / 8, "{taken}");
    assert_eq!(consumer.try_recv(&mut []).unwrap(), Some(0));
}

/// A ring image for the arbitrary-bytes property: header fields from sets
/// of plausible and implausible values, record words sprinkled over random
/// data.
#[derive(Debug, Clone)]
struct Image {
    fields: Vec<(usize, u64)>,
    data: Vec<u8>,
    records: Vec<(usize, u64)>,
}

fn position_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..4096).prop_map(|p| p * 8),
        0u64..40_000,
        (0u64..64).prop_map(|k| u64::MAX - k),
        any::<u64>(),
    ]
}

fn record_word_strategy() -> impl Strategy<Value = u64> {
    let len = prop_oneof![0u32..64, 2000u32..2100, 4000u32..4100, any::<u32>()];
    let kind = prop_oneof![4 => 0u32..4, 1 => any::<u32>()];
    (len, kind).prop_map(|(len, kind)| record_word(len, kind))
}

fn image_strategy() -> impl Strategy<Value = Image> {
    let fields = (
        prop_oneof![3 => Just(MAGIC), 1 => any::<u64>().prop_map(|m| m | 1)],
        prop_oneof![3 => Just(1u64), 1 => any::<u32>().prop_map(u64::from)],
        prop_oneof![3 => Just(0u64), 1 => any::<u32>().prop_map(u64::from)],
        prop_oneof![3 => Just(SMALL), 1 => Just(2048u64), 1 => any::<u64>()],
        prop_oneof![2 => 0u64..=2032, 1 => Just(2032u64), 1 => any::<u64>()],
        prop_oneof![3 => Just(HEADER as u64), 1 => any::<u64>()],
        (position_strategy(), position_strategy()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (prop_oneof![Just(0u64), Just(1), any::<u64>()], any::<u64>()),
    );
    (
        fields,
        prop::collection::vec(any::<u8>(), SMALL as usize),
        prop::collection::vec((0usize..512, record_word_strategy()), 0..64),
    )
        .prop_map(
            |(
                (magic, version, flags, capacity, max, data_offset, (head, tail), owners, wait),
                data,
                records,
            )| {
                let (producer_owner, sent, consumer_owner, received) = owners;
                let (closed, sleeping) = wait;
                Image {
                    fields: vec![
                        (MAGIC_AT, magic),
                        (VERSION_AT, version | flags << 32),
                        (CAPACITY_AT, capacity),
                        (MAX_MESSAGE_AT, max),
                        (DATA_OFFSET_AT, data_offset),
                        (TAIL_AT, tail),
                        (PRODUCER_OWNER_AT, producer_owner),
                        (TAIL_AT + 16, sent),
                        (HEAD_AT, head),
                        (CONSUMER_OWNER_AT, consumer_owner),
                        (HEAD_AT + 16, received),
                        (CONSUMER_SLEEPING_AT, sleeping),
                        (CLOSED_AT, closed),
                    ],
                    data,
                    records: records.into_iter().map(|(i, w)| (i * 8, w)).collect(),
                }
            },
        )
}

/// Whatever the bytes, the open, receive and send paths return Ok or Err:
/// the test fails on a panic (and the watchdog on a hang).
fn exercise(name: &str) {
    let mut buf = vec![0u8; SMALL as usize];
    if let Ok(mut consumer) = Consumer::open_with(name, &small_ring()) {
        for _ in 0..2 * SMALL {
            match consumer.try_recv(&mut buf) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = consumer.recv_timeout(&mut buf, Duration::from_millis(1));
        let _ = consumer.try_read().map(|g| g.map(|g| g.len()));
        let _ = consumer
            .read_timeout(Duration::from_millis(1))
            .map(|g| g.len());
        let _ = consumer.drain(|_| ());
        let _ = consumer.recv_timeout(&mut buf[..1], Duration::from_millis(1));
    }
    if let Ok(mut producer) = Producer::open_with(name, &small_ring()) {
        for len in [0, 1, 9, 100, 2032, 2033, 4096] {
            let _ = producer.try_send(&buf[..len]);
            let _ = producer.send_timeout(&buf[..len], Duration::from_millis(1));
        }
        if let Ok(grant) = producer.try_grant(50) {
            grant.commit_len(20);
        }
    }
    let _ = ring::status(name);
}

/// A fresh segment named `tag-PID-N` holding `bytes` (its magic forced
/// nonzero: a zero magic means "not initialised yet", which waits 5 s).
fn write_image(tag: &str, bytes: &[u8]) -> (String, RingCleanup, Attachment<ReadWrite>) {
    let name = unique_ring_name(tag);
    let cleanup = RingCleanup(name.clone());
    let segment = Segment::create(&ring_key(&name), bytes.len() as u64, Mode::OWNER_ONLY).unwrap();
    let memory = segment.attach(ReadWrite).unwrap();
    memory.write_at(0, bytes).unwrap();
    if bytes[..8] == [0; 8] {
        memory.write_at(0, &[1]).unwrap();
    }
    (name, cleanup, memory)
}

proptest! {
    #![proptest_config(config(256))]

    /// Plausible and implausible header fields over random data with
    /// record words sprinkled in.
    #[test]
    fn arbitrary_ring_images_never_panic(image in image_strategy()) {
        let _watchdog = Watchdog::new("an arbitrary image", Duration::from_secs(60));
        let mut bytes = vec![0u8; HEADER];
        bytes.extend_from_slice(&image.data);
        for (offset, value) in image.fields.iter().chain(
            image.records.iter().map(|(at, word)| (HEADER + at, *word)).collect::<Vec<_>>().iter()
        ) {
            bytes[*offset..*offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        let (name, _cleanup, _memory) = write_image("image", &bytes);
        exercise(&name);
    }

    /// Random bytes over the whole segment.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), HEADER + SMALL as usize)) {
        let _watchdog = Watchdog::new("random bytes", Duration::from_secs(60));
        let (name, _cleanup, _memory) = write_image("bytes", &bytes);
        exercise(&name);
    }

    /// Random words written at random places of a ring in use, while both
    /// ends are open, then more traffic and new ends.
    #[test]
    fn random_words_over_a_ring_in_use_never_panic(
        seed in any::<u64>(),
        sent in 0usize..40,
        words in prop::collection::vec(
            (0usize..(HEADER + SMALL as usize - 8),
             prop_oneof![position_strategy(), record_word_strategy(), any::<u64>()],
             any::<bool>()),
            1..8),
    ) {
        let _watchdog = Watchdog::new("random words", Duration::from_secs(60));
        let name = unique_ring_name("words");
        let _cleanup = RingCleanup(name.clone());
        let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
        let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
        let memory = map_ring(&name);
        let sequence = Sequence { seed, max: SMALL_MAX, shape: Shape::Random };
        let mut message = Vec::new();
        let mut buf = vec![0u8; SMALL as usize];
        for n in 0..sent as u64 {
            sequence.message(n, &mut message);
            if producer.try_send(&message).is_err() {
                let _ = consumer.try_recv(&mut buf);
            }
        }
        for (offset, value, aligned) in words {
            let offset = if aligned { offset & !7 } else { offset };
            // A zero magic would only mean "wait 5 s for the creator".
            let value = if offset < 8 && value == 0 { 1 } else { value };
            memory.write_at(offset, &value.to_le_bytes()).unwrap();
        }
        for n in 0..20 {
            sequence.message(n, &mut message);
            let _ = producer.try_send(&message);
            let _ = consumer.try_recv(&mut buf);
            let _ = consumer.drain(|_| ());
        }
        drop(producer);
        drop(consumer);
        exercise(&name);
    }
}

/// The message counts in the header are shared memory too: counts at the
/// top of their range wrap, they do not stop the ring.
#[test]
fn counts_at_their_limit_wrap() {
    let _watchdog = Watchdog::new("a corrupt ring test", Duration::from_secs(60));
    let ring = Handmade::new("counts");
    ring.put_u64(TAIL_AT + 16, u64::MAX);
    ring.put_u64(HEAD_AT + 16, u64::MAX);
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    producer.send(b"one").unwrap();
    let mut buf = [0; 8];
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), Some(3));
    let status = ring::status(&ring.name).unwrap();
    assert_eq!((status.sent, status.received), (0, 0));
}

/// A record's length is 32 bits, so no ring carries a message of 4 GiB or
/// more, whatever its capacity (checked without making such a ring).
#[test]
fn the_largest_message_fits_a_record_word() {
    let huge = Options::default().capacity(1 << 40);
    assert_eq!(huge.max_message_len(), u64::from(u32::MAX));
    let too_large = huge.max_message(1 << 32);
    match Producer::open_with(&unique_ring_name("never-made"), &too_large) {
        Err(Error::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (1 << 32, u64::from(u32::MAX)))
        }
        other => panic!("a 4 GiB maximum message: {other:?}"),
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
        producer.close();
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
    producer.close();
    // The blocking forms too (they look at the peer within 20 ms).
    assert!(matches!(consumer.recv(&mut buf), Err(Error::Closed { .. })));
    assert!(matches!(
        consumer.read().map(|g| g.len()),
        Err(Error::Closed { .. })
    ));
}
