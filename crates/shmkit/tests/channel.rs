//! Typed channels, tested from outside: records with strings, vectors, a
//! nested struct, an enum and an option cross between two processes with
//! the postcard and rkyv codecs, plain values with the plain codec; a
//! hostile process's tampered archives and undecodable postcard are
//! rejected as corrupt while the next good message still arrives; oversized
//! values, a wrong type or codec (named on both sides), a codec of the
//! test's own, the end of a stream (closed, or the sender killed) and the
//! wire format's framing.
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! its segment even if the test fails; tests whose channel ends cleanly also
//! check that the channel removed its ring itself. Children report on
//! stdout; nothing sleeps to synchronise.

mod processes;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmkit::channel::{Codec, CodecError, Plain, Receiver, Rkyv, Sender, Writer};
use shmkit::ring::{Consumer, Options, Producer};
use shmkit::Error;

use processes::{
    args, next_command, report, ring_exists, unique_ring_name, Peer, RingCleanup, ROLE,
};

// ---------------------------------------------------------------------------
// The message types and a deterministic stream of them.

#[derive(
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Debug,
    PartialEq,
)]
#[rkyv(compare(PartialEq), derive(Debug))]
struct Point {
    x: f64,
    y: f64,
}

#[derive(
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Debug,
    PartialEq,
)]
#[rkyv(compare(PartialEq), derive(Debug))]
enum Kind {
    Empty,
    Text(String),
    Pair { a: u32, b: Vec<u8> },
}

#[derive(
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Debug,
    PartialEq,
)]
#[rkyv(compare(PartialEq), derive(Debug))]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    samples: Vec<i32>,
    origin: Point,
    kind: Kind,
    note: Option<String>,
}

/// Record `i` of every stream: sizes and variants vary with `i`.
fn record(i: u64) -> Record {
    let n = i as i32;
    Record {
        id: i,
        name: format!("record-{i}"),
        tags: (0..i % 4).map(|t| format!("tag-{t}-of-{i}")).collect(),
        samples: (0..n % 50).map(|s| s.wrapping_mul(n) - 7).collect(),
        origin: Point {
            x: i as f64 * 0.5,
            y: -(i as f64),
        },
        kind: match i % 3 {
            0 => Kind::Empty,
            1 => Kind::Text("é".repeat((i % 20) as usize)),
            _ => Kind::Pair {
                a: i as u32,
                b: vec![i as u8; (i % 7) as usize],
            },
        },
        note: i.is_multiple_of(5).then(|| format!("every fifth: {i}")),
    }
}

/// A small ring, so that the streams wrap around and the sender waits.
fn small_ring() -> Options {
    Options::default().capacity(16 << 10)
}

/// Generous bound for receives that are expected to succeed.
const LONG: Duration = Duration::from_secs(60);

/// FNV-1a 64 of `text`, little-endian.
fn fnv1a(text: &str) -> [u8; 8] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash.to_le_bytes()
}

/// The type tag of the wire format (see `shmkit::channel`): FNV-1a 64 of
/// `shmkit.channel.v1 <codec> <type name>`, little-endian. Written out
/// here so that the test pins the format rather than trusting the library.
fn tag<T>(codec: &str) -> [u8; 8] {
    fnv1a(&format!(
        "shmkit.channel.v1 {codec} {}",
        std::any::type_name::<T>()
    ))
}

fn tagged(tag: [u8; 8], body: &[u8]) -> Vec<u8> {
    [&tag[..], body].concat()
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, Error>, needle: &str) {
    match result {
        Err(Error::Corrupt(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected Corrupt ({needle}), got {other:?}"),
    }
}

/// Asserts a `WrongType` that names the receiver's type (`mine`) and the
/// message's (`theirs`).
fn expect_wrong_type<T: std::fmt::Debug>(result: Result<T, Error>, mine: &str, theirs: &str) {
    match result {
        Err(Error::WrongType {
            expected, found, ..
        }) => {
            assert!(expected.contains(mine), "{expected:?} lacks {mine:?}");
            assert!(found.contains(theirs), "{found:?} lacks {theirs:?}");
        }
        other => panic!("expected WrongType ({mine}, {theirs}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Child processes.

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let args = args();
    let words: Vec<&str> = args.split(' ').collect();
    match (role.as_str(), &words[..]) {
        ("send", [codec, ring, count, end]) => {
            send_records(codec, ring, count.parse().unwrap(), end)
        }
        ("tamper", [ring]) => send_tampered_archives(ring),
        (other, _) => panic!("unknown role {other} with {args:?}"),
    }
}

/// Sends records `0..count` with `codec`, then either closes the channel
/// (`end` = `close`) or reports and waits to be killed (`hang`).
fn send_records(codec: &str, ring: &str, count: u64, end: &str) {
    match codec {
        "postcard" => {
            let mut tx = Sender::<Record>::open_with(ring, &small_ring()).unwrap();
            for i in 0..count {
                tx.send(&record(i)).unwrap();
            }
            finish(tx, count, end);
        }
        "rkyv" => {
            let mut tx = Sender::<Record, Rkyv>::open_with(ring, &small_ring()).unwrap();
            for i in 0..count {
                tx.send(&record(i)).unwrap();
            }
            finish(tx, count, end);
        }
        other => panic!("unknown codec {other}"),
    }
}

fn finish<S>(sender: S, count: u64, end: &str) {
    match end {
        "close" => {
            drop(sender);
            report(&format!("closed after {count}"));
        }
        "hang" => {
            report(&format!("sent {count}"));
            next_command(); // never comes: the parent kills us
            drop(sender);
        }
        other => panic!("unknown end {other}"),
    }
}

/// A small message for the tampering tests: its archive is the string's
/// bytes followed by the root, one out-of-line `ArchivedString`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
#[rkyv(derive(Debug))]
struct Note {
    text: String,
}

const NOTE_TEXT: &str = "a note long enough to be stored out of line";

/// rkyv 0.8's out-of-line string, the last 8 bytes of a `Note` archive: a
/// little-endian u32 length whose first byte has its top bits `10` (the low
/// 6 bits of the length there, the rest shifted up by 2), then an i32 offset
/// from the string's own position to its bytes. Returns the archive, the
/// root's position and the position of the text; asserts the layout first,
/// so that a change in rkyv fails here instead of tampering with nothing.
fn note_archive() -> (Vec<u8>, usize, usize) {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&Note {
        text: NOTE_TEXT.to_owned(),
    })
    .unwrap()
    .to_vec();
    let root = bytes.len() - 8;
    let len_field = u32::from_le_bytes(bytes[root..root + 4].try_into().unwrap());
    assert_eq!(len_field & 0xc0, 0x80, "not an out-of-line string");
    let len = (len_field & 0x3f) | ((len_field & !0xff) >> 2);
    assert_eq!(len as usize, NOTE_TEXT.len());
    let offset = i32::from_le_bytes(bytes[root + 4..root + 8].try_into().unwrap());
    let text = (root as isize + offset as isize) as usize;
    assert_eq!(&bytes[text..text + NOTE_TEXT.len()], NOTE_TEXT.as_bytes());
    (bytes, root, text)
}

/// The hostile peer: writes records with a plain ring producer, as an rkyv
/// sender of `Note`s would, but tampered. The parent expects
/// exactly this order.
fn send_tampered_archives(ring: &str) {
    let mut producer = Producer::open(ring).unwrap();
    let good = tag::<Note>("rkyv");
    let (archive, root, text) = note_archive();

    producer.send(&tagged(good, &archive)).unwrap();

    // The string's offset points far past the end of the archive.
    let mut past_end = archive.clone();
    past_end[root + 4..root + 8].copy_from_slice(&4096i32.to_le_bytes());
    producer.send(&tagged(good, &past_end)).unwrap();

    // The string's length runs past the end of the archive.
    let mut too_long = archive.clone();
    let len: u32 = 1 << 20;
    let field = (len & 0x3f) | 0x80 | ((len & !0x3f) << 2);
    too_long[root..root + 4].copy_from_slice(&field.to_le_bytes());
    producer.send(&tagged(good, &too_long)).unwrap();

    // The string's bytes are not UTF-8.
    let mut not_utf8 = archive.clone();
    not_utf8[text + 3] = 0xff;
    producer.send(&tagged(good, &not_utf8)).unwrap();

    // Garbage of a plausible size.
    producer.send(&tagged(good, &[0xfe; 64])).unwrap();

    // A tag and no archive at all.
    producer.send(&good).unwrap();

    // A good archive under the postcard codec's tag.
    producer
        .send(&tagged(tag::<Note>("postcard"), &archive))
        .unwrap();

    // Shorter than a tag.
    producer.send(&good[..3]).unwrap();

    // And a good one again, which must still arrive.
    producer.send(&tagged(good, &archive)).unwrap();
    drop(producer);
    report("tampered");
}

// ---------------------------------------------------------------------------
// Across processes.

const STREAM: u64 = 1000;

#[test]
fn postcard_channel_carries_records_between_processes() {
    let ring = unique_ring_name("chan-postcard");
    let _cleanup = RingCleanup(ring.clone());
    let mut rx = Receiver::<Record>::open_with(&ring, &small_ring()).unwrap();
    let sender = Peer::spawn("send", &format!("postcard {ring} {STREAM} close"), None);
    for i in 0..STREAM {
        let got = rx.recv_timeout(LONG).unwrap();
        assert_eq!(got, record(i), "record {i}");
    }
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    sender.finish();
    assert!(!ring_exists(&ring), "the channel left its ring behind");
}

#[test]
fn rkyv_channel_carries_records_between_processes() {
    let ring = unique_ring_name("chan-rkyv");
    let _cleanup = RingCleanup(ring.clone());
    let mut rx = Receiver::<Record, Rkyv>::open_with(&ring, &small_ring()).unwrap();
    let sender = Peer::spawn("send", &format!("rkyv {ring} {STREAM} close"), None);
    for i in 0..STREAM {
        let expected = record(i);
        if i % 2 == 0 {
            // Read in place, field by field where it is interesting.
            let got = rx.recv_timeout(LONG).unwrap();
            assert_eq!(got.id, i);
            assert_eq!(got.name, expected.name);
            assert_eq!(got.tags.len(), expected.tags.len());
            assert_eq!(got.kind, expected.kind);
            assert_eq!(*got, expected, "record {i}");
        } else {
            assert_eq!(
                rx.recv().unwrap().deserialize().unwrap(),
                expected,
                "record {i}"
            );
        }
    }
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    sender.finish();
    assert!(!ring_exists(&ring), "the channel left its ring behind");
}

#[test]
fn tampered_archives_from_another_process_are_rejected() {
    let ring = unique_ring_name("chan-tamper");
    let _cleanup = RingCleanup(ring.clone());
    let mut rx = Receiver::<Note, Rkyv>::open(&ring).unwrap();
    let mut hostile = Peer::spawn("tamper", &ring, None);
    assert_eq!(hostile.expect_line(), "tampered");

    assert_eq!(rx.recv().unwrap().text, NOTE_TEXT);
    expect_corrupt(rx.recv(), "bytecheck rejected"); // offset past the end
    expect_corrupt(rx.recv(), "bytecheck rejected"); // length past the end
    expect_corrupt(rx.recv(), "bytecheck rejected"); // not UTF-8
    expect_corrupt(rx.recv(), "bytecheck rejected"); // garbage
    expect_corrupt(rx.recv(), "bytecheck rejected"); // no archive
    expect_wrong_type(rx.recv(), "rkyv channel::Note", "postcard channel::Note");
    expect_corrupt(rx.recv(), "too short for its 8-byte type tag");
    let note = rx.recv().unwrap().deserialize().unwrap();
    assert_eq!(note.text, NOTE_TEXT);
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    hostile.finish();
    assert!(!ring_exists(&ring), "the channel left its ring behind");
}

#[test]
fn killed_sender_gives_peer_gone_after_every_message() {
    for codec in ["postcard", "rkyv"] {
        let ring = unique_ring_name("chan-killed");
        let _cleanup = RingCleanup(ring.clone());
        let count = 50;
        let mut sender = Peer::spawn("send", &format!("{codec} {ring} {count} hang"), None);
        assert_eq!(sender.expect_line(), format!("sent {count}"));
        let pid = sender.pid();
        sender.kill(true);
        let end = if codec == "postcard" {
            let mut rx = Receiver::<Record>::open_with(&ring, &small_ring()).unwrap();
            for i in 0..count {
                assert_eq!(rx.recv_timeout(LONG).unwrap(), record(i), "{codec} {i}");
            }
            rx.recv_timeout(LONG).unwrap_err()
        } else {
            let mut rx = Receiver::<Record, Rkyv>::open_with(&ring, &small_ring()).unwrap();
            for i in 0..count {
                assert_eq!(*rx.recv_timeout(LONG).unwrap(), record(i), "{codec} {i}");
            }
            rx.recv_timeout(LONG).unwrap_err()
        };
        match end {
            Error::PeerGone {
                peer: "producer",
                pid: gone,
                ..
            } => assert_eq!(gone, pid),
            other => panic!("{codec}: expected PeerGone, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// In one process.

#[test]
fn undecodable_postcard_is_corrupt_and_the_next_message_arrives() {
    let ring = unique_ring_name("chan-postcard");
    let _cleanup = RingCleanup(ring.clone());
    let mut rx = Receiver::<Record>::open(&ring).unwrap();
    let mut raw = Producer::open(&ring).unwrap();
    let good = tag::<Record>("postcard");
    let encoded = postcard::to_stdvec(&record(4)).unwrap();

    raw.send(&tagged(good, &[0xff; 16])).unwrap(); // a varint that never ends
    raw.send(&tagged(good, &encoded[..encoded.len() - 3]))
        .unwrap(); // cut short
    raw.send(&tagged(good, &[&encoded[..], &[0]].concat()))
        .unwrap(); // a byte too many
    raw.send(&tagged(tag::<Point>("postcard"), &encoded))
        .unwrap(); // another type's tag
    raw.send(&tagged(tag::<Record>("rkyv"), &encoded)).unwrap(); // another codec's
    raw.send(&tagged(good, &encoded)).unwrap();
    raw.close().unwrap();

    expect_corrupt(rx.recv(), "does not decode as a postcard");
    expect_corrupt(rx.recv(), "does not decode as a postcard");
    expect_corrupt(rx.recv(), "followed by 1 more");
    expect_wrong_type(rx.recv(), "postcard channel::Record", "unknown type");
    expect_wrong_type(
        rx.recv(),
        "postcard channel::Record",
        "rkyv channel::Record",
    );
    assert_eq!(rx.recv().unwrap(), record(4));
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring), "the channel left its ring behind");
}

#[test]
fn oversized_values_are_too_large_and_send_nothing() {
    let tiny = Options::default().capacity(4096); // largest message 2032
    let limit = 2032 - 8;

    let ring = unique_ring_name("chan-large-postcard");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Vec<u8>>::open_with(&ring, &tiny).unwrap();
    let mut rx = Receiver::<Vec<u8>>::open_with(&ring, &tiny).unwrap();
    assert_eq!(tx.max_message(), limit);
    // A 2-byte varint length and the bytes.
    match tx.send(&vec![1; limit]) {
        Err(Error::TooLarge { size, limit: l, .. }) => {
            assert_eq!((size, l), (limit as u64 + 2, limit as u64))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        tx.try_send(&vec![1; 5000]),
        Err(Error::TooLarge { .. })
    ));
    tx.send(&vec![2; limit - 2]).unwrap(); // exactly the limit
    tx.close();
    assert_eq!(rx.recv().unwrap(), vec![2; limit - 2]);
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring));

    let ring = unique_ring_name("chan-large-rkyv");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Vec<u8>, Rkyv>::open_with(&ring, &tiny).unwrap();
    let mut rx = Receiver::<Vec<u8>, Rkyv>::open_with(&ring, &tiny).unwrap();
    assert!(matches!(
        tx.send(&vec![1; limit]),
        Err(Error::TooLarge { limit: l, .. }) if l == limit as u64
    ));
    tx.send(&vec![2; 100]).unwrap();
    tx.close();
    assert_eq!(rx.recv().unwrap().as_slice(), &[2; 100][..]);
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring));
}

#[test]
fn receivers_get_everything_then_closed_after_the_sender_drops() {
    let ring = unique_ring_name("chan-closed-postcard");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Record>::open(&ring).unwrap();
    let mut rx = Receiver::<Record>::open(&ring).unwrap();
    for i in 0..3 {
        tx.send(&record(i)).unwrap();
    }
    drop(tx);
    for i in 0..3 {
        assert_eq!(rx.try_recv().unwrap(), record(i));
    }
    for _ in 0..2 {
        assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
        assert!(matches!(rx.try_recv(), Err(Error::Closed { .. })));
    }
    drop(rx);
    assert!(!ring_exists(&ring));

    let ring = unique_ring_name("chan-closed-rkyv");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Record, Rkyv>::open(&ring).unwrap();
    let mut rx = Receiver::<Record, Rkyv>::open(&ring).unwrap();
    for i in 0..3 {
        tx.send(&record(i)).unwrap();
    }
    drop(tx);
    for i in 0..3 {
        assert_eq!(*rx.try_recv().unwrap(), record(i));
    }
    for _ in 0..2 {
        assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
        assert!(matches!(rx.try_recv(), Err(Error::Closed { .. })));
    }
    drop(rx);
    assert!(!ring_exists(&ring));
}

/// Two programs that each define the same struct send and expect two
/// types (`std::any::type_name` has the path); the error says so.
#[test]
fn one_name_under_two_paths_is_a_wrong_type_that_says_so() {
    mod sender {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Order {
            pub id: u32,
        }
    }
    mod receiver {
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        pub struct Order {
            pub id: u32,
        }
    }
    let ring = unique_ring_name("chan-two-paths");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<sender::Order>::open(&ring).unwrap();
    let mut rx = Receiver::<receiver::Order>::open(&ring).unwrap();
    tx.send(&sender::Order { id: 1 }).unwrap();
    let err = rx.recv().expect_err("another type");
    let text = err.to_string();
    assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
    assert!(
        text.contains("receiver::Order")
            && text.contains("sender::Order")
            && text.contains("define the type in a crate both programs use"),
        "{text}"
    );
    // Another type altogether gets no such hint.
    let other_ring = unique_ring_name("chan-other");
    let _cleanup_other = RingCleanup(other_ring.clone());
    let mut tx = Sender::<Record>::open(&other_ring).unwrap();
    let mut rx = Receiver::<Point>::open(&other_ring).unwrap();
    tx.send(&record(1)).unwrap();
    let text = rx.recv().expect_err("another type").to_string();
    assert!(!text.contains("two paths"), "{text}");
}

/// A receiver of another type or codec gets `WrongType`, naming its own
/// type and the sender's: from the first message (which names it), from
/// memory after that, and from the built-in codecs' names when the
/// receiver never saw the first message.
#[test]
fn another_type_or_codec_is_a_wrong_type_naming_both() {
    let ring = unique_ring_name("chan-mismatch");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Record>::open(&ring).unwrap();
    let mut rx = Receiver::<Point>::open(&ring).unwrap();
    tx.send(&record(1)).unwrap();
    tx.send(&record(2)).unwrap();
    tx.send(&record(3)).unwrap();
    expect_wrong_type(
        rx.recv(),
        "postcard channel::Point",
        "postcard channel::Record",
    );
    expect_wrong_type(
        rx.recv(),
        "postcard channel::Point",
        "postcard channel::Record",
    );
    drop(rx); // a new receiver never saw the name
    let mut rx = Receiver::<Point>::open(&ring).unwrap();
    expect_wrong_type(rx.recv(), "postcard channel::Point", "unknown type (tag 0x");
    tx.close();
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring));

    let ring = unique_ring_name("chan-codec");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Record>::open(&ring).unwrap();
    tx.send(&record(1)).unwrap();
    tx.send(&record(2)).unwrap();
    let mut rx = Receiver::<Record, Rkyv>::open(&ring).unwrap();
    expect_wrong_type(
        rx.recv(),
        "rkyv channel::Record",
        "postcard channel::Record",
    );
    drop(rx);
    let mut rx = Receiver::<Record, Rkyv>::open(&ring).unwrap();
    // Not named on the wire, but the same type in a built-in codec.
    expect_wrong_type(
        rx.recv(),
        "rkyv channel::Record",
        "postcard channel::Record",
    );
    tx.close();
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring));
}

/// Each end of a channel has one holder at a time: a second sender or
/// receiver while the first lives is `InUse`, naming this process.
#[test]
fn a_second_sender_or_receiver_is_in_use() {
    let ring = unique_ring_name("chan-in-use");
    let _cleanup = RingCleanup(ring.clone());
    let tx = Sender::<u32>::open(&ring).unwrap();
    let rx = Receiver::<u32>::open(&ring).unwrap();
    for result in [
        Sender::<u32>::open(&ring).map(drop),
        Receiver::<u32>::open(&ring).map(drop),
    ] {
        match result {
            Err(Error::InUse { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected InUse, got {other:?}"),
        }
    }
    drop(tx);
    drop(rx);
    assert!(!ring_exists(&ring));
}

/// A fixed-layout message for the plain codec.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Sample {
    seq: u64,
    value: f64,
    channel: [u16; 4],
}

// SAFETY: repr(C), 8 + 8 + 8 bytes with no padding, any bits are valid,
// alignment 8.
unsafe impl shmkit::offset::Plain for Sample {}

#[test]
fn plain_values_cross_as_their_bytes_and_a_wrong_length_is_corrupt() {
    let ring = unique_ring_name("chan-plain");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Sample, Plain>::open_with(&ring, &small_ring()).unwrap();
    let mut rx = Receiver::<Sample, Plain>::open_with(&ring, &small_ring()).unwrap();
    assert_eq!(tx.encoded_len(&sample(0)).unwrap(), 24);
    // Enough to wrap the 16 KiB ring several times; receive when it is full.
    let mut next = 0;
    let mut take = |got: Sample| {
        assert_eq!(got, sample(next), "in order, intact");
        next += 1;
    };
    for i in 0..3000 {
        match tx.try_send(&sample(i)) {
            Ok(()) => {}
            Err(Error::Full { .. }) => {
                take(rx.try_recv().unwrap());
                tx.send(&sample(i)).unwrap();
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    drop(tx);
    loop {
        match rx.try_recv() {
            Ok(got) => take(got),
            Err(Error::Closed { .. }) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    let last = next.checked_sub(1);
    assert_eq!(last, Some(2999));
    drop(rx);
    assert!(!ring_exists(&ring));

    // A body one byte short, from a raw producer, under the right tag.
    let ring = unique_ring_name("chan-plain-short");
    let _cleanup = RingCleanup(ring.clone());
    let mut rx = Receiver::<Sample, Plain>::open(&ring).unwrap();
    let mut raw = Producer::open(&ring).unwrap();
    raw.send(&tagged(tag::<Sample>("plain"), &[0; 23])).unwrap();
    raw.close().unwrap();
    expect_corrupt(rx.recv(), "a body of 23 bytes is not one of 24");
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
}

fn sample(i: u64) -> Sample {
    Sample {
        seq: i,
        value: i as f64 / 3.0,
        channel: [i as u16, 1, 2, 3],
    }
}

/// A codec of the test's own: lines of text, refused unless ASCII.
#[derive(Default)]
struct Ascii;

impl Codec<String> for Ascii {
    const NAME: &'static str = "ascii";
    type Value<'a> = &'a str;

    fn encoded_len(&mut self, value: &String) -> Result<usize, CodecError> {
        if value.is_ascii() {
            Ok(value.len())
        } else {
            Err(format!("{value:?} is not ASCII").into())
        }
    }

    fn encode(&mut self, value: &String, out: &mut Writer<'_>) -> Result<(), CodecError> {
        out.write(value.as_bytes())
    }

    fn decode<'a>(&self, body: &'a [u8]) -> Result<&'a str, CodecError> {
        if !body.is_ascii() {
            return Err("not ASCII".into());
        }
        Ok(std::str::from_utf8(body)?)
    }
}

/// A codec that measures one length and writes another.
#[derive(Default)]
struct Liar;

impl Codec<u32> for Liar {
    const NAME: &'static str = "liar";
    type Value<'a> = u32;

    fn encoded_len(&mut self, _: &u32) -> Result<usize, CodecError> {
        Ok(8)
    }

    fn encode(&mut self, value: &u32, out: &mut Writer<'_>) -> Result<(), CodecError> {
        out.write(&value.to_le_bytes())
    }

    fn decode(&self, body: &[u8]) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(body.try_into()?))
    }
}

#[test]
fn a_codec_of_ones_own_plugs_in_and_its_errors_say_so() {
    let ring = unique_ring_name("chan-own-codec");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<String, Ascii>::open(&ring).unwrap();
    let mut rx = Receiver::<String, Ascii>::open(&ring).unwrap();
    tx.send(&"plain text".to_owned()).unwrap();
    match tx.send(&"naïve".to_owned()) {
        Err(Error::InvalidArgument(why)) => {
            assert!(why.contains("ascii alloc::string::String") && why.contains("not ASCII"))
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), "plain text");
    assert!(
        matches!(rx.try_recv(), Err(Error::Empty { .. })),
        "nothing else was sent"
    );
    drop(tx);
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring));

    let ring = unique_ring_name("chan-liar");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<u32, Liar>::open(&ring).unwrap();
    let mut rx = Receiver::<u32, Liar>::open(&ring).unwrap();
    match tx.send(&7) {
        Err(Error::InvalidArgument(why)) => {
            assert!(
                why.contains("wrote 4 bytes") && why.contains("measuring 8"),
                "{why}"
            )
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(
        matches!(rx.try_recv(), Err(Error::Empty { .. })),
        "the grant was aborted"
    );
}

#[test]
fn empty_channels_wait_time_out_and_fill_up() {
    let tiny = Options::default().capacity(4096);
    let ring = unique_ring_name("chan-waits");
    let _cleanup = RingCleanup(ring.clone());
    let mut tx = Sender::<Vec<u8>, Rkyv>::open_with(&ring, &tiny).unwrap();
    let mut rx = Receiver::<Vec<u8>, Rkyv>::open_with(&ring, &tiny).unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::Empty { .. })));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    let mut sent = 0;
    loop {
        match tx.try_send(&vec![sent as u8; 900]) {
            Ok(()) => sent += 1,
            Err(Error::Full { .. }) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        sent >= 2,
        "a 4 KiB ring holds at least two 900-byte messages"
    );
    assert!(matches!(
        tx.send_timeout(&vec![0; 900], Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    tx.close();
    for i in 0..sent {
        assert_eq!(rx.recv().unwrap().as_slice(), &vec![i as u8; 900][..]);
    }
    assert!(matches!(rx.recv(), Err(Error::Closed { .. })));
    drop(rx);
    assert!(!ring_exists(&ring));
}

/// The wire format of `docs/FORMAT.md`: a sender's first message names
/// its type (marker, tag, name length, name, body); the others carry the
/// tag and the body.
#[test]
fn messages_carry_the_documented_framing() {
    fn named(tag: [u8; 8], name: &str, body: &[u8]) -> Vec<u8> {
        let marker = fnv1a("shmkit.channel.v1 named");
        let len = (name.len() as u16).to_le_bytes();
        [&marker[..], &tag, &len, name.as_bytes(), body].concat()
    }
    let record_name = format!("{} channel::Record", "postcard");

    let ring = unique_ring_name("chan-format");
    let _cleanup = RingCleanup(ring.clone());
    let mut raw = Consumer::open(&ring).unwrap();
    let mut tx = Sender::<Record>::open(&ring).unwrap();
    tx.send(&record(3)).unwrap();
    tx.send(&record(4)).unwrap();
    let body = |i| postcard::to_stdvec(&record(i)).unwrap();
    assert_eq!(
        *raw.read().unwrap(),
        named(tag::<Record>("postcard"), &record_name, &body(3))[..]
    );
    assert_eq!(
        *raw.read().unwrap(),
        tagged(tag::<Record>("postcard"), &body(4))[..]
    );
    drop(tx); // closes the ring for good: the next sender needs a new one
    assert!(matches!(raw.read(), Err(Error::Closed { .. })));
    drop(raw);
    assert!(!ring_exists(&ring));

    let ring = unique_ring_name("chan-format");
    let _cleanup = RingCleanup(ring.clone());
    let mut raw = Consumer::open(&ring).unwrap();
    let mut tx = Sender::<Record, Rkyv>::open(&ring).unwrap();
    tx.send(&record(3)).unwrap();
    tx.send(&record(3)).unwrap();
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&record(3)).unwrap();
    assert_eq!(
        *raw.read().unwrap(),
        named(tag::<Record>("rkyv"), "rkyv channel::Record", &archive)[..]
    );
    assert_eq!(
        *raw.read().unwrap(),
        tagged(tag::<Record>("rkyv"), &archive)[..]
    );
    drop(tx);
    assert!(matches!(raw.read(), Err(Error::Closed { .. })));
    drop(raw);
    assert!(!ring_exists(&ring));

    let ring = unique_ring_name("chan-format");
    let _cleanup = RingCleanup(ring.clone());
    let mut raw = Consumer::open(&ring).unwrap();
    let mut tx = Sender::<Sample, Plain>::open(&ring).unwrap();
    tx.send(&sample(1)).unwrap();
    tx.send(&sample(2)).unwrap();
    let bytes = |s: Sample| {
        let mut b = s.seq.to_ne_bytes().to_vec();
        b.extend(s.value.to_ne_bytes());
        b.extend(s.channel.iter().flat_map(|c| c.to_ne_bytes()));
        b
    };
    assert_eq!(
        *raw.read().unwrap(),
        named(
            tag::<Sample>("plain"),
            "plain channel::Sample",
            &bytes(sample(1))
        )[..]
    );
    assert_eq!(
        *raw.read().unwrap(),
        tagged(tag::<Sample>("plain"), &bytes(sample(2)))[..]
    );
    drop(tx);
    drop(raw);
    assert!(!ring_exists(&ring));
}
