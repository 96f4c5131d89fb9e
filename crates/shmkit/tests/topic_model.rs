//! Topics in one process: every publish and receive verb against a model of
//! the lane format (proptest), for both back-pressure policies, with
//! wrap-around and lapping; history for late joiners; closing; and corrupt
//! headers and records.
//!
//! Every test uses its own topic (`test-TAG-PID-N`) and a guard that
//! removes its segment even if the test fails.

mod processes;
mod sequence;

use std::time::Duration;

use proptest::prelude::*;
use shmkit::topic::{self, Options, Policy, Publisher, Subscriber};
use shmkit::{Error, ReadWrite, Segment};

use processes::{topic_exists, topic_key, unique_ring_name, TopicCleanup, Watchdog};
use sequence::{config, mix, Rng};

const CAPACITY: u64 = 4096;
const MAX: usize = 600;

fn record_size(len: usize) -> u64 {
    (32 + len as u64).div_ceil(8) * 8
}

fn payload(publisher: usize, sequence: u64, len: usize) -> Vec<u8> {
    Rng::new(mix(publisher as u64, sequence)).bytes(len)
}

/// A record in a model lane.
#[derive(Clone, Debug)]
enum Rec {
    Padding {
        start: u64,
        size: u64,
    },
    Message {
        start: u64,
        size: u64,
        sequence: u64,
        lane_sequence: u64,
        len: usize,
    },
}

impl Rec {
    fn start(&self) -> u64 {
        match self {
            Rec::Padding { start, .. } | Rec::Message { start, .. } => *start,
        }
    }
    fn end(&self) -> u64 {
        match self {
            Rec::Padding { start, size } | Rec::Message { start, size, .. } => start + size,
        }
    }
}

/// One publisher's lane, by the rules of `topic/lane.rs`.
#[derive(Debug, Default)]
struct LaneModel {
    cursor_tail: u64,
    reserve: u64,
    head: u64,
    records: Vec<Rec>,
    sequence: u64,
}

impl LaneModel {
    /// The record committed at `position`, if any: none at the tail,
    /// where the lane holds the empty word (rule 3 of `topic/lane.rs`).
    fn record_at(&self, position: u64) -> Option<&Rec> {
        let record = self.records.iter().find(|r| r.start() == position);
        assert!(
            record.is_some() || position == self.cursor_tail,
            "a record starts at every boundary below the tail"
        );
        record
    }
}

/// One subscriber's view of one lane.
#[derive(Clone, Debug, Default)]
struct Cursor {
    position: u64,
    /// The position stored in the subscriber's entry (rule 11 of
    /// `topic/lane.rs`: on a Block topic per message; on a drop-oldest one
    /// when it leaves the lane's batch).
    shared: u64,
    /// Its fast path reads below this.
    limit: u64,
    expected: u64,
    lapped: bool,
}

/// One subscriber: a cursor per lane, the lane it reads now, and whether
/// its last look found one lane in use.
#[derive(Clone, Debug)]
struct Reader {
    cursors: Vec<Cursor>,
    current: usize,
    single: bool,
}

#[derive(Debug)]
struct Model {
    lossy: bool,
    lanes: Vec<LaneModel>,
    subscribers: Vec<Reader>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Empty,
    Message {
        lane: usize,
        sequence: u64,
        len: usize,
    },
    Lagged {
        lane: usize,
        missed: u64,
    },
    Full,
}

impl Model {
    /// A grant of `granted` bytes committed with `len` (`granted >= len`).
    fn send(&mut self, lane: usize, granted: usize, len: usize) -> Outcome {
        let lossy = self.lossy;
        let floor = self
            .subscribers
            .iter()
            .map(|reader| reader.cursors[lane].shared)
            .min();
        let l = &mut self.lanes[lane];
        let size = record_size(granted);
        let to_end = CAPACITY - l.cursor_tail % CAPACITY;
        let padding = if size > to_end { to_end } else { 0 };
        // With the empty word after the record (rule 3).
        let end = l.cursor_tail + padding + size + 8;
        if lossy {
            if end > l.reserve {
                let oldest = end.saturating_sub(CAPACITY);
                while l.head < oldest && l.head < l.cursor_tail {
                    l.head = l.record_at(l.head).unwrap().end();
                }
                l.reserve = end;
            }
        } else if end > floor.unwrap_or(l.cursor_tail) + CAPACITY {
            return Outcome::Full;
        }
        if padding > 0 {
            l.records.push(Rec::Padding {
                start: l.cursor_tail,
                size: padding,
            });
            l.cursor_tail += padding;
        }
        let size = record_size(len);
        let lane_sequence = l
            .records
            .iter()
            .filter(|r| matches!(r, Rec::Message { .. }))
            .count() as u64;
        l.records.push(Rec::Message {
            start: l.cursor_tail,
            size,
            sequence: l.sequence,
            lane_sequence,
            len,
        });
        l.sequence += 1;
        l.cursor_tail += size;
        Outcome::Message {
            lane,
            sequence: l.sequence - 1,
            len,
        }
    }

    /// What the subscriber's next receive into a buffer of `room` bytes
    /// finds; it moves past a message that fits (one that does not stays,
    /// as with a short buffer). First the current lane's batch (a quarter
    /// lane, with one lane in use; nothing with more); then, after storing
    /// the current lane's position, every lane from the one after it.
    fn recv(&mut self, s: usize, room: usize) -> Outcome {
        let used = self.lanes.len();
        let lossy = self.lossy;
        let reader = &mut self.subscribers[s];
        let lapped = |l: &LaneModel, position: u64| {
            lossy && l.reserve >= CAPACITY && l.reserve - CAPACITY > position
        };
        // The fast path: a message in the batch.
        let i = reader.current;
        let l = &self.lanes[i];
        let c = &mut reader.cursors[i];
        if c.position < c.limit && lapped(l, c.position) {
            // The receive finds it lapped (after its copy, or at once if
            // the bytes it read there are no record) and resyncs now.
            c.position = l.head;
            c.limit = 0;
            c.lapped = true;
        }
        if c.position < c.limit {
            if let Some(Rec::Message {
                sequence,
                lane_sequence,
                len,
                start,
                size,
            }) = l.record_at(c.position).cloned()
            {
                if len <= room {
                    c.position = start + size;
                    c.expected = lane_sequence + 1;
                    if !lossy {
                        c.shared = c.position; // a Block subscriber's, at once
                    }
                }
                return Outcome::Message {
                    lane: i,
                    sequence,
                    len,
                };
            }
        }
        // The slow path: store the current lane's position, then look.
        c.shared = c.position;
        reader.single = used == 1;
        for k in 0..used {
            let i = (reader.current + 1 + k) % used;
            let l = &self.lanes[i];
            let c = &mut reader.cursors[i];
            loop {
                if lapped(l, c.position) {
                    c.position = l.head;
                    c.limit = 0;
                    c.lapped = true;
                    continue;
                }
                match l.record_at(c.position).cloned() {
                    None => break,
                    Some(Rec::Padding { start, size }) => c.position = start + size,
                    Some(Rec::Message {
                        sequence,
                        lane_sequence,
                        len,
                        start,
                        size,
                    }) => {
                        if c.lapped {
                            c.lapped = false;
                            let missed = lane_sequence.saturating_sub(c.expected);
                            c.expected = lane_sequence;
                            if missed > 0 {
                                return Outcome::Lagged { lane: i, missed };
                            }
                        }
                        reader.current = i;
                        c.limit = if reader.single {
                            start + CAPACITY / 4
                        } else {
                            0
                        };
                        if len <= room {
                            c.position = start + size;
                            c.expected = lane_sequence + 1;
                            if !lossy {
                                c.shared = c.position;
                            }
                        }
                        return Outcome::Message {
                            lane: i,
                            sequence,
                            len,
                        };
                    }
                }
            }
        }
        Outcome::Empty
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send {
        publisher: usize,
        len: usize,
        verb: u8,
    },
    Recv {
        subscriber: usize,
        verb: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..=MAX, 0..4u8).prop_map(|(publisher, len, verb)| Op::Send {
            publisher,
            len,
            verb
        }),
        (0..2usize, 0..5u8).prop_map(|(subscriber, verb)| Op::Recv { subscriber, verb }),
    ]
}

fn options(policy: Policy) -> Options {
    Options::default()
        .capacity(CAPACITY)
        .max_message(MAX as u64)
        .max_publishers(2)
        .max_subscribers(4)
        .policy(policy)
}

/// Runs `ops` on a real topic of `lanes` publishers (an op's publisher
/// is taken modulo `lanes`) and on the model, comparing every outcome.
fn run(policy: Policy, lanes: usize, ops: &[Op]) {
    let name = unique_ring_name("topic-model");
    let _cleanup = TopicCleanup(name.clone());
    let options = options(policy);
    let mut publishers: Vec<Publisher> = (0..lanes)
        .map(|_| Publisher::open_with(&name, &options).unwrap())
        .collect();
    let mut subscribers: Vec<Subscriber> = (0..2)
        .map(|_| Subscriber::open_with(&name, &options).unwrap())
        .collect();
    let ids: Vec<u64> = publishers.iter().map(Publisher::id).collect();
    let mut model = Model {
        lossy: policy == Policy::DropOldest,
        lanes: (0..lanes).map(|_| LaneModel::default()).collect(),
        subscribers: (0..2)
            .map(|_| Reader {
                cursors: vec![Cursor::default(); lanes],
                // The first look starts at lane 0, the one after the last.
                current: lanes - 1,
                single: false,
            })
            .collect(),
    };
    let mut buf = vec![0u8; MAX];
    for op in ops {
        match *op {
            Op::Send {
                publisher,
                len,
                verb,
            } => {
                let publisher = publisher % lanes;
                let granted = if verb == 2 { MAX } else { len };
                let expected = model.send(publisher, granted, len);
                let p = &mut publishers[publisher];
                let sequence = model.lanes[publisher].sequence.saturating_sub(1);
                let message = payload(publisher, sequence, len);
                let got = match verb {
                    0 => p.try_send(&message),
                    1 => p.try_grant(len).map(|mut grant| {
                        grant.copy_from_slice(&message);
                        grant.commit();
                    }),
                    2 => p.try_grant(MAX).map(|mut grant| {
                        grant[..len].copy_from_slice(&message);
                        grant.commit_len(len);
                    }),
                    _ => match p.try_grant(len) {
                        // An aborted grant first: it changes nothing.
                        Ok(grant) => {
                            grant.abort();
                            p.try_send(&message)
                        }
                        Err(err) => Err(err),
                    },
                };
                match (expected, got) {
                    (Outcome::Full, Err(Error::Full { .. })) => {}
                    (Outcome::Message { .. }, Ok(())) => {}
                    (expected, got) => panic!("send: model {expected:?}, topic {got:?}"),
                }
            }
            Op::Recv { subscriber, verb } => {
                let s = &mut subscribers[subscriber];
                let short = verb == 4;
                let got = match verb {
                    0 | 4 => {
                        let into = if short { &mut buf[..10] } else { &mut buf[..] };
                        s.try_recv(into)
                            .map(|r| (r, into[..r.len.min(into.len())].to_vec()))
                    }
                    1 => s.try_read().map(|guard| {
                        let r = shmkit::topic::Received {
                            len: guard.len(),
                            publisher: guard.publisher(),
                            sequence: guard.sequence(),
                        };
                        (r, guard.to_vec())
                    }),
                    2 => match s.recv_timeout(&mut buf, Duration::ZERO) {
                        Err(Error::Timeout { .. }) => Err(Error::Empty {
                            place: String::new(),
                        }),
                        other => other.map(|r| (r, buf[..r.len].to_vec())),
                    },
                    _ => s.try_recv(&mut buf).map(|r| (r, buf[..r.len].to_vec())),
                };
                let room = if short { 10 } else { MAX };
                let expected = match model.recv(subscriber, room) {
                    // The receive leaves the message.
                    Outcome::Message { len, .. } if len > room => None,
                    other => Some(other),
                };
                match (expected, got) {
                    (None, Err(Error::TooLarge { .. })) => {}
                    (Some(Outcome::Empty), Err(Error::Empty { .. })) => {}
                    (
                        Some(Outcome::Lagged { lane, missed }),
                        Err(Error::Lagged {
                            publisher,
                            missed: got,
                            ..
                        }),
                    ) => {
                        assert_eq!((ids[lane], missed), (publisher, got), "lagged");
                    }
                    (
                        Some(Outcome::Message {
                            lane,
                            sequence,
                            len,
                        }),
                        Ok((r, bytes)),
                    ) => {
                        assert_eq!((r.publisher, r.sequence, r.len), (ids[lane], sequence, len));
                        assert_eq!(bytes, payload(lane, sequence, len), "payload");
                    }
                    (expected, got) => panic!(
                        "recv verb {verb}: model {expected:?}, topic {:?}",
                        got.map(|(r, _)| r)
                    ),
                }
            }
        }
    }
    drop(publishers);
    drop(subscribers);
    assert!(!topic_exists(&name), "the last member removes the topic");
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn block_topics_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        run(Policy::Block, 2, &ops);
    }

    #[test]
    fn one_lane_block_topics_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        run(Policy::Block, 1, &ops);
    }

    #[test]
    fn one_lane_drop_oldest_topics_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        run(Policy::DropOldest, 1, &ops);
    }

    #[test]
    fn drop_oldest_topics_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        run(Policy::DropOldest, 2, &ops);
    }
}

#[test]
fn a_lapped_subscriber_is_told_exactly_how_many_it_missed() {
    let name = unique_ring_name("topic-lapped");
    let _cleanup = TopicCleanup(name.clone());
    let options = options(Policy::DropOldest);
    let mut subscriber = Subscriber::open_with(&name, &options).unwrap();
    let mut publisher = Publisher::open_with(&name, &options).unwrap();
    // 32-byte payloads make 64-byte records: 64 would fill a lane
    // exactly, but the empty word after the last takes the oldest's first
    // word (rule 3 of `topic/lane.rs`), so 63 are left.
    for n in 0u64..1000 {
        publisher.send(&n.to_le_bytes().repeat(4)).unwrap();
    }
    let mut buf = [0u8; 64];
    match subscriber.try_recv(&mut buf) {
        Err(Error::Lagged {
            missed,
            publisher: id,
            ..
        }) => assert_eq!((missed, id), (1000 - 63, publisher.id())),
        other => panic!("expected Lagged, got {other:?}"),
    }
    for n in 1000 - 63..1000u64 {
        let got = subscriber.try_recv(&mut buf).unwrap();
        assert_eq!((got.sequence, &buf[..8]), (n, &n.to_le_bytes()[..]));
    }
    assert!(matches!(
        subscriber.try_recv(&mut buf),
        Err(Error::Empty { .. })
    ));
    let status = topic::status(&name).unwrap();
    assert_eq!(status.subscribers[0].missed, 1000 - 63);
    assert_eq!(status.subscribers[0].received, 63);
}

/// A subscriber reading one lane that never runs empty still looks at the
/// other lanes within a quarter lane (`topic/merge.rs`): a publisher that
/// opens meanwhile is read, on both policies.
#[test]
fn a_lane_opened_while_another_never_runs_empty_is_read_within_a_quarter_lane() {
    for policy in [Policy::Block, Policy::DropOldest] {
        let name = unique_ring_name("topic-new-lane");
        let _cleanup = TopicCleanup(name.clone());
        let options = options(policy);
        let mut subscriber = Subscriber::open_with(&name, &options).unwrap();
        let mut busy = Publisher::open_with(&name, &options).unwrap();
        let mut buf = [0u8; 8];
        // Two ahead, so that lane 0 is never empty when a receive looks.
        busy.send(&0u64.to_le_bytes()).unwrap();
        busy.send(&1u64.to_le_bytes()).unwrap();
        assert_eq!(subscriber.try_recv(&mut buf).unwrap().sequence, 0);
        let mut late = Publisher::open_with(&name, &options).unwrap();
        late.send(b"late").unwrap();
        // 8-byte messages are 40-byte records: a quarter lane is 26 of
        // them.
        let bound = (CAPACITY / 4 / record_size(8) + 2) as usize;
        let mut found = None;
        for n in 2..2 + bound as u64 * 2 {
            busy.send(&n.to_le_bytes()).unwrap();
            let got = subscriber.try_recv(&mut buf).unwrap();
            if got.publisher == late.id() {
                found = Some(n - 2);
                break;
            }
        }
        let receives = found.unwrap_or_else(|| panic!("{policy:?}: the late lane was never read"));
        assert!(
            receives as usize <= bound,
            "{policy:?}: after {receives} receives"
        );
    }
}

#[test]
fn a_late_subscriber_first_receives_the_history() {
    let name = unique_ring_name("topic-history");
    let _cleanup = TopicCleanup(name.clone());
    for policy in [Policy::Block, Policy::DropOldest] {
        let options = options(policy).history(5);
        let mut publisher = Publisher::open_with(&name, &options).unwrap();
        for n in 0u64..20 {
            publisher.send(&n.to_le_bytes()).unwrap();
        }
        let mut late = Subscriber::open_with(&name, &options).unwrap();
        let mut fresh =
            Subscriber::open_with(&name, &options.clone().receive_history(false)).unwrap();
        publisher.send(&20u64.to_le_bytes()).unwrap();
        let mut buf = [0u8; 8];
        for n in 15u64..=20 {
            let got = late.try_recv(&mut buf).unwrap();
            assert_eq!(
                (got.sequence, u64::from_le_bytes(buf)),
                (n, n),
                "{policy:?}"
            );
        }
        assert!(matches!(late.try_recv(&mut buf), Err(Error::Empty { .. })));
        assert_eq!(fresh.try_recv(&mut buf).unwrap().sequence, 20);
        assert!(matches!(fresh.try_recv(&mut buf), Err(Error::Empty { .. })));
        drop((publisher, late, fresh));
        assert!(!topic_exists(&name));
    }
}

#[test]
fn subscribers_see_the_end_once_every_publisher_closed() {
    let _watchdog = Watchdog::new("topic close", Duration::from_secs(60));
    let name = unique_ring_name("topic-close");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::open(&name).unwrap();
    let mut buf = [0u8; 16];
    // No publisher yet: nothing has ended.
    assert!(matches!(
        subscriber.recv_timeout(&mut buf, Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    let mut a = Publisher::open(&name).unwrap();
    let mut b = Publisher::open(&name).unwrap();
    a.send(b"a0").unwrap();
    a.close();
    b.send(b"b0").unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let r = subscriber.recv(&mut buf).unwrap();
        got.push(buf[..r.len].to_vec());
    }
    got.sort();
    assert_eq!(got, [b"a0".to_vec(), b"b0".to_vec()]);
    assert!(matches!(
        subscriber.recv_timeout(&mut buf, Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    drop(b);
    assert!(matches!(
        subscriber.recv(&mut buf),
        Err(Error::Closed { .. })
    ));
    // A new publisher reuses a closed lane, and the stream goes on.
    let mut c = Publisher::open(&name).unwrap();
    c.send(b"c0").unwrap();
    let r = subscriber.recv(&mut buf).unwrap();
    assert_eq!(
        (&buf[..r.len], r.sequence, r.publisher),
        (&b"c0"[..], 0, c.id())
    );
}

#[test]
fn a_topic_has_only_as_many_places_as_it_was_made_with() {
    let name = unique_ring_name("topic-places");
    let _cleanup = TopicCleanup(name.clone());
    let options = options(Policy::Block);
    let _publishers: Vec<_> = (0..2)
        .map(|_| Publisher::open_with(&name, &options).unwrap())
        .collect();
    match Publisher::open_with(&name, &options) {
        Err(Error::TopicFull {
            members: "publishers",
            max: 2,
            ..
        }) => {}
        other => panic!("a third publisher: {other:?}"),
    }
    let many = Options::default().max_subscribers(64).capacity(CAPACITY);
    let name = unique_ring_name("topic-64");
    let _cleanup = TopicCleanup(name.clone());
    let mut publisher = Publisher::open_with(&name, &many).unwrap();
    let mut subscribers: Vec<_> = (0..64)
        .map(|_| Subscriber::open_with(&name, &many).unwrap())
        .collect();
    assert!(matches!(
        Subscriber::open_with(&name, &many),
        Err(Error::TopicFull { max: 64, .. })
    ));
    publisher.send(b"to all").unwrap();
    let mut buf = [0u8; 8];
    for s in &mut subscribers {
        let r = s.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"to all");
    }
}

#[test]
fn bad_names_and_options_are_refused() {
    for bad in ["", ".hidden", "a/b", "sp ace"] {
        assert!(matches!(
            Publisher::open(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    let name = unique_ring_name("topic-options");
    for options in [
        Options::default().capacity(1000),
        Options::default().max_publishers(0),
        Options::default().max_subscribers(5000),
        Options::default().capacity(4096).max_message(4096),
    ] {
        assert!(
            Subscriber::open_with(&name, &options).is_err(),
            "{options:?}"
        );
    }
    assert!(!topic_exists(&name));
}

/// Writes `bytes` at `offset` of topic `name`'s segment.
fn poke(name: &str, offset: usize, bytes: &[u8]) {
    let segment = Segment::open(&topic_key(name)).unwrap();
    segment
        .attach(ReadWrite)
        .unwrap()
        .write_at(offset, bytes)
        .unwrap();
}

#[test]
fn corrupt_headers_are_refused() {
    let cases: [(usize, &[u8], &str); 6] = [
        (0, b"NOTTOPIC", "magic"),
        // Version 1 lanes leave stale words past their tail, which version
        // 2 subscribers would read as records (rule 3 of `topic/lane.rs`).
        (8, &1u32.to_le_bytes(), "version"),
        (16, &1000u64.to_le_bytes(), "capacity"),
        (32, &1000u32.to_le_bytes(), "publishers"),
        (40, &7u32.to_le_bytes(), "policy"),
        (72, &(1u64 << 40).to_le_bytes(), "size"),
    ];
    for (offset, bytes, what) in cases {
        let name = unique_ring_name("topic-corrupt-header");
        let _cleanup = TopicCleanup(name.clone());
        let keeper = Subscriber::open_with(&name, &options(Policy::Block)).unwrap();
        poke(&name, offset, bytes);
        match Publisher::open(&name) {
            Err(Error::VersionMismatch { .. }) if what == "version" => {}
            Err(Error::Corrupt(_)) if what != "version" => {}
            other => panic!("{what}: {other:?}"),
        }
        if what == "version" {
            assert!(matches!(
                Subscriber::open(&name),
                Err(Error::VersionMismatch { .. })
            ));
        }
        assert!(topic::status(&name).is_err(), "{what}");
        drop(keeper);
    }
}

#[test]
fn corrupt_records_and_positions_are_errors_not_crashes() {
    for policy in [Policy::Block, Policy::DropOldest] {
        let name = unique_ring_name("topic-corrupt-record");
        let _cleanup = TopicCleanup(name.clone());
        let options = options(policy);
        let mut subscriber = Subscriber::open_with(&name, &options).unwrap();
        let mut publisher = Publisher::open_with(&name, &options).unwrap();
        publisher.send(b"fine").unwrap();
        publisher.send(b"also fine").unwrap();
        // Lanes start at 4096 in this geometry (2 publishers, 4
        // subscribers): give the first record a huge length.
        let lanes = 4096;
        poke(&name, lanes, &u64::MAX.to_le_bytes());
        let mut buf = [0u8; 64];
        assert!(
            matches!(subscriber.try_recv(&mut buf), Err(Error::Corrupt(_))),
            "{policy:?}"
        );
        // A tail far past the records (lane header at 512).
        poke(&name, 512, &(1u64 << 61).to_le_bytes());
        let mut late = Subscriber::open_with(&name, &options);
        if let Ok(late) = &mut late {
            assert!(late.try_recv(&mut buf).is_err());
        }
        // An odd tail.
        poke(&name, 512, &13u64.to_le_bytes());
        assert!(Subscriber::open_with(&name, &options).is_err());
        assert!(subscriber.try_recv(&mut buf).is_err());
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Arbitrary bytes over a lane and its header never panic a subscriber.
    #[test]
    fn hostile_lanes_never_panic(garbage in proptest::collection::vec(any::<u8>(), 0..512), at in 0usize..4096) {
        let name = unique_ring_name("topic-hostile");
        let _cleanup = TopicCleanup(name.clone());
        for policy in [Policy::Block, Policy::DropOldest] {
            let options = options(policy);
            let mut subscriber = Subscriber::open_with(&name, &options).unwrap();
            let mut publisher = Publisher::open_with(&name, &options).unwrap();
            for n in 0u64..40 {
                let _ = publisher.try_send(&n.to_le_bytes().repeat(n as usize % 9));
            }
            poke(&name, 4096 + at.min(4096 - garbage.len().min(4096)), &garbage);
            poke(&name, 512, &garbage[..garbage.len().min(128)]);
            let mut buf = [0u8; MAX];
            for _ in 0..100 {
                match subscriber.try_recv(&mut buf) {
                    Ok(_) | Err(Error::Lagged { .. }) => {}
                    Err(_) => break,
                }
            }
            let _ = publisher.try_send(b"after");
            drop(publisher);
            drop(subscriber);
            let _ = Segment::open(&topic_key(&name)).map(|s| s.remove());
        }
    }
}
