//! The message ring over corrupt shared memory: hand-made rings as a C
//! program would write them, corrupt headers, records and positions, and
//! arbitrary bytes, which must give errors, never a panic, an out-of-bounds
//! read or a hang.
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! its segment even if the test fails; a watchdog aborts the run rather than
//! let a broken test hang.

mod processes;
mod ring_layout;
mod sequence;

use std::time::Duration;

use proptest::prelude::*;
use shmkit::ring::{self, Consumer, Producer};
use shmkit::{Attachment, Error, Mode, ReadWrite, Segment};

use processes::{ring_key, unique_ring_name, RingCleanup, Watchdog};
use ring_layout::{
    map_ring, record_word, small_ring, CAPACITY_AT, CLOSED_AT, CONSUMER_OWNER_AT,
    CONSUMER_SLEEPING_AT, DATA_OFFSET_AT, FLAGS_AT, HEADER, HEAD_AT, KIND_EMPTY, KIND_MESSAGE,
    KIND_PADDING, LONG, MAGIC, MAGIC_AT, MAX_MESSAGE_AT, PRODUCER_OWNER_AT, SMALL, SMALL_MAX,
    TAIL_AT, VERSION_AT,
};
use sequence::{config, Sequence, Shape};

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
        ring.put_u32(VERSION_AT, 2);
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
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], b"hi");
    assert!(matches!(
        consumer.try_recv(&mut buf),
        Err(Error::Empty { .. })
    ));
    let mut producer = ring.producer().unwrap();
    producer.send(b"back").unwrap();
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), 4);
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
    ring.put_u32(VERSION_AT, 3);
    for result in [
        ring.consumer().map(drop),
        ring.producer().map(drop),
        ring::status(&ring.name).map(drop),
    ] {
        match result {
            Err(Error::VersionMismatch {
                segment,
                found: 3,
                expected: 2,
            }) => assert_eq!(segment, format!("ring {}", ring.name)),
            other => panic!("version 3: {other:?}"),
        }
    }
}

/// A segment smaller than a header but not empty was shrunk (a creator
/// that died leaves 0 bytes, or the full size without a header): it is
/// `Truncated`, at once. Half-made rings are made again at once: see
/// ring_lifecycle.rs.
#[test]
fn a_segment_smaller_than_a_header_is_truncated_at_once() {
    let tiny = unique_ring_name("tiny");
    let _tiny_cleanup = RingCleanup(tiny.clone());
    Segment::create(&ring_key(&tiny), 100, Mode::OWNER_ONLY).unwrap();
    match Producer::open_with(&tiny, &small_ring()).map(drop) {
        Err(Error::Truncated { size: 100, .. }) => {}
        other => panic!("a segment smaller than a header: {other:?}"),
    }
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
        expect_corrupt(consumer.try_read().map(|g| g.len()), what);
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
    assert_eq!(consumer.try_recv(&mut []).unwrap(), 0);
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
        prop_oneof![3 => Just(2u64), 1 => any::<u32>().prop_map(u64::from)],
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
            if consumer.try_recv(&mut buf).is_err() {
                break;
            }
        }
        let _ = consumer.recv_timeout(&mut buf, Duration::from_millis(1));
        let _ = consumer.try_read().map(|g| g.len());
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
    assert_eq!(consumer.try_recv(&mut buf).unwrap(), 3);
    let status = ring::status(&ring.name).unwrap();
    assert_eq!((status.sent, status.received), (0, 0));
}
