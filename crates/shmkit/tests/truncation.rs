//! A segment shrunk under its users, and a full `/dev/shm`: errors, never
//! SIGBUS (docs/ARCHITECTURE.md, memory rules 5 and 8; issue 8.5).
//!
//! A process that touches a page a peer truncated away would die of
//! SIGBUS; these tests pass only if every such process instead gets an
//! error and exits normally.

mod processes;

use std::time::Duration;

use processes::{args, is_root, report, unique_ring_name, Peer, RingCleanup, ROLE};
use shmkit::offset::ManagedSegment;
use shmkit::ring::{Consumer, Options, Producer};
use shmkit::{Error, Key, Mode, ReadOnly, ReadWrite, Segment};

/// Child processes enter here.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "send-until-error" => {
            let mut producer = Producer::open_with(&args(), &ring_options()).unwrap();
            report("open");
            let mut message = vec![0u8; 3000];
            for n in 0u64.. {
                message.resize(100 + (n as usize * 997) % 2900, n as u8);
                match producer.send_timeout(&message, Duration::from_secs(30)) {
                    Ok(()) if n == 0 => report("sending"),
                    Ok(()) => {}
                    Err(err) => {
                        report(&format!("error {}", kind(&err)));
                        return;
                    }
                }
            }
        }
        "recv-until-error" => {
            let mut consumer = Consumer::open_with(&args(), &ring_options()).unwrap();
            report("open");
            let mut buf = vec![0u8; 4096];
            for n in 0u64.. {
                match consumer.recv_timeout(&mut buf, Duration::from_secs(30)) {
                    Ok(_) if n == 0 => report("receiving"),
                    Ok(_) => {}
                    Err(err) => {
                        report(&format!("error {}", kind(&err)));
                        return;
                    }
                }
            }
        }
        "fill-shm" => fill_shm(),
        other => panic!("unknown role {other}"),
    }
}

/// The error's variant, as the parent checks it.
fn kind(err: &Error) -> String {
    match err {
        Error::Truncated { .. } => "Truncated".to_owned(),
        Error::Closed { .. } => "Closed".to_owned(),
        Error::PeerGone { .. } => "PeerGone".to_owned(),
        other => format!("other: {other}"),
    }
}

const CAPACITY: u64 = 1 << 16;
/// The ring's file: a 512-byte header, then the data area.
const RING_FILE: u64 = 512 + CAPACITY;

fn ring_options() -> Options {
    Options::default().capacity(CAPACITY)
}

/// `/dev/shm/shmkit.ring.NAME`, shrunk (or grown) to `len` bytes as a
/// hostile peer with write access would.
fn truncate_ring(name: &str, len: u64) {
    let Key::Posix(posix) = processes::ring_key(name) else {
        unreachable!("rings are POSIX segments")
    };
    truncate(&posix.path(), len);
}

fn truncate(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn live_ring_truncated_to(len: u64) {
    let name = unique_ring_name("truncated");
    let _cleanup = RingCleanup(name.clone());
    let mut consumer = Peer::spawn("recv-until-error", &name, None);
    assert_eq!(consumer.expect_line(), "open");
    let mut producer = Peer::spawn("send-until-error", &name, None);
    assert_eq!(producer.expect_line(), "open");
    assert_eq!(producer.expect_line(), "sending");
    assert_eq!(consumer.expect_line(), "receiving");

    truncate_ring(&name, len);

    // Each side ends with an error: Truncated once it touched a lost page;
    // the consumer may instead see the producer's close (after it left on
    // its own Truncated) if every record it still had was intact.
    let from_producer = producer.expect_line();
    let from_consumer = consumer.expect_line();
    assert_eq!(from_producer, "error Truncated", "truncated to {len}");
    assert!(
        ["error Truncated", "error Closed", "error PeerGone"].contains(&from_consumer.as_str()),
        "truncated to {len}: consumer: {from_consumer}"
    );
    // Neither died of SIGBUS (finish asserts a normal, successful exit).
    producer.finish();
    consumer.finish();
}

#[test]
fn a_live_ring_truncated_to_zero_gives_both_peers_errors() {
    live_ring_truncated_to(0);
}

#[test]
fn a_live_ring_truncated_to_half_gives_both_peers_errors() {
    live_ring_truncated_to(RING_FILE / 2);
}

#[test]
fn a_live_ring_truncated_to_256_bytes_gives_both_peers_errors() {
    live_ring_truncated_to(256);
}

/// A cut inside the first page zeroes the consumer's `head` without a
/// fault; a batch that then looks at it must report the cut, not the
/// impossible head as damage (`Corrupt`).
#[test]
fn a_batch_on_a_ring_cut_inside_its_first_page_is_told_it_was_truncated() {
    let name = unique_ring_name("batch-truncated");
    let _cleanup = RingCleanup(name.clone());
    let mut producer = Producer::open_with(&name, &ring_options()).unwrap();
    let mut consumer = Consumer::open_with(&name, &ring_options()).unwrap();
    let message = [7u8; 1000];
    let mut buf = [0u8; 1000];
    // More than a lap, so that a zeroed head is more than a capacity behind
    // the tail...
    for _ in 0..2 * CAPACITY / 1000 {
        producer.send(&message).unwrap();
        consumer.recv(&mut buf).unwrap();
    }
    // ...then full, so that the next reservation loads the head.
    let full = loop {
        if let Err(err) = producer.try_send(&message) {
            break err;
        }
    };
    assert!(matches!(full, Error::Full { .. }), "{full}");

    truncate_ring(&name, 256);

    let err = producer.batch().try_push(&message).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                size: 256,
                expected: RING_FILE,
                ..
            }
        ),
        "{err}"
    );
}

/// A message whose copy into the ring runs onto a page a peer cut away is
/// `Truncated` to its sender and never committed: the consumer gets every
/// message before it, whole, and then no record at all (not the damaged
/// one, whose bytes went to a zero page only the sender sees).
#[test]
fn a_send_that_runs_onto_a_cut_page_commits_nothing() {
    type Send = fn(&mut Producer, &[u8]) -> Result<(), Error>;
    let verbs: [(&str, Send); 3] = [
        ("send", |p, m| p.send(m)),
        ("try_send", |p, m| p.try_send(m)),
        ("send_timeout", |p, m| {
            p.send_timeout(m, Duration::from_secs(60))
        }),
    ];
    for (verb, send) in verbs {
        let name = unique_ring_name(&format!("{verb}-cut"));
        let _cleanup = RingCleanup(name.clone());
        let mut producer = Producer::open_with(&name, &ring_options()).unwrap();
        let mut consumer = Consumer::open_with(&name, &ring_options()).unwrap();
        // Cut in the middle of a page of the data area: the rest of that
        // page still maps (and the consumer sees what is written there),
        // the pages after it fault.
        truncate_ring(&name, RING_FILE / 2);
        let mut message = [0u8; 1000];
        let mut sent = 0u8;
        let err = loop {
            message.fill(sent);
            match send(&mut producer, &message) {
                Ok(()) => sent += 1,
                Err(err) => break err,
            }
        };
        assert!(matches!(err, Error::Truncated { .. }), "{verb}: {err}");
        assert!(sent > 0, "the first page of the data area still maps");
        let mut buf = [0u8; 1000];
        for n in 0..sent {
            assert_eq!(consumer.try_recv(&mut buf).unwrap(), 1000);
            assert!(buf.iter().all(|&byte| byte == n), "{verb}: message {n}");
        }
        let after = consumer.try_recv(&mut buf).unwrap_err();
        assert!(matches!(after, Error::Empty { .. }), "{verb}: {after}");
    }
}

#[test]
fn a_fresh_opener_of_a_truncated_ring_is_told_it_is_too_small() {
    let name = unique_ring_name("fresh-truncated");
    let _cleanup = RingCleanup(name.clone());
    let producer = Producer::open_with(&name, &ring_options()).unwrap();
    for len in [RING_FILE / 2, 256] {
        truncate_ring(&name, len);
        match Consumer::open_with(&name, &ring_options()) {
            Err(Error::Truncated { size, expected, .. }) => {
                assert_eq!(size, len);
                assert!(expected > len, "{expected}");
            }
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
    drop(producer); // its header writes land on page 0, still there
}

#[test]
fn attachment_reads_and_writes_past_a_shrunk_end_are_errors() {
    let key = Key::posix(&format!("/shmkit-test-shrunk-{}", std::process::id())).unwrap();
    let _cleanup = processes::Cleanup(key.clone());
    let segment = Segment::create(&key, 4 * 4096, Mode::OWNER_ONLY).unwrap();
    let writer = segment.attach(ReadWrite).unwrap();
    let reader = segment.attach(ReadOnly).unwrap();
    writer.write_at(0, b"kept").unwrap();
    let Key::Posix(posix) = &key else {
        unreachable!()
    };
    truncate(&posix.path(), 4096);

    // The first page is still there, and nothing has faulted yet.
    let mut buf = [0u8; 4];
    reader.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"kept");

    let err = writer.write_at(3 * 4096, b"lost").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                size: 4096,
                expected: 16384,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&key.to_string()), "{err}");
    let err = reader.read_at(2 * 4096, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert_eq!(buf, [0; 4], "a lost page reads as zeros");
    // The damage is remembered: even intact bytes are refused from now on.
    assert!(matches!(
        reader.read_at(0, &mut buf),
        Err(Error::Truncated { .. })
    ));
    // A new attachment maps only what is left.
    let fresh = segment.attach(ReadOnly).unwrap();
    assert_eq!(fresh.len(), 4096);
    fresh.check_intact().unwrap();
}

#[test]
fn a_truncated_managed_heap_gives_errors() {
    let key = Key::posix(&format!("/shmkit-test-heap-shrunk-{}", std::process::id())).unwrap();
    let _cleanup = processes::Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    let numbers = heap.vector::<u64>("numbers").unwrap();
    numbers.extend_from_slice(&[7; 4000]).unwrap(); // 32 KB: past page 1
    let Key::Posix(posix) = &key else {
        unreachable!()
    };
    truncate(&posix.path(), 8192);
    let err = numbers.to_vec().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                size: 8192,
                expected: 65536,
                ..
            }
        ),
        "{err}"
    );
    match ManagedSegment::open(&key) {
        Err(Error::Truncated { size: 8192, .. }) => {}
        other => panic!("opening the truncated heap: {other:?}"),
    }
}

/// In a private mount namespace with a 20 MiB tmpfs on /dev/shm: 10 MiB
/// of other data, then segments that do not fit in what is left.
fn fill_shm() {
    let other = Key::posix("/shmkit-test-filler").unwrap();
    Segment::create(&other, 10 << 20, Mode::OWNER_ONLY).unwrap();
    match Segment::create(
        &Key::posix("/shmkit-test-too-big").unwrap(),
        16 << 20,
        Mode::OWNER_ONLY,
    ) {
        Err(Error::TooLarge { size, limit, .. }) => {
            report(&format!("segment TooLarge {size} over {limit}"))
        }
        other => report(&format!("segment {other:?}")),
    }
    let ring = Producer::open_with("big", &Options::default().capacity(16 << 20));
    match ring {
        Err(Error::TooLarge { .. }) => report("ring TooLarge"),
        other => report(&format!("ring {other:?}")),
    }
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    report(&format!("left {}", left.join(",")));
}

#[test]
fn a_full_dev_shm_is_an_error_at_creation_not_a_sigbus_later() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs in a mount namespace needs root (CI runs as root)");
        return;
    }
    // The tmpfs exists only in the child's mount namespace, and goes with it.
    let script = r#"mount -t tmpfs -o size=20m shmkit-test /dev/shm && exec "$0" "$@""#;
    let mut peer = Peer::spawn_under(&["unshare", "-m", "sh", "-c", script], "fill-shm", "", None);
    let line = peer.expect_line();
    let (_, rest) = line
        .split_once("segment TooLarge 16777216 over ")
        .unwrap_or_else(|| panic!("{line}"));
    let limit: u64 = rest.parse().unwrap();
    assert!(
        limit < 10_500_000 && limit > 9_500_000,
        "free space {limit}"
    );
    assert_eq!(peer.expect_line(), "ring TooLarge");
    assert_eq!(
        peer.expect_line(),
        "left shmkit-test-filler",
        "failed creations leave nothing"
    );
    peer.finish();
}

/// A typed channel never decodes a message whose bytes ran onto a page a
/// peer cut away (they read as zeros): the receive says Truncated, and
/// keeps the message.
#[test]
fn a_typed_message_cut_in_two_is_truncated_not_decoded() {
    use shmkit::channel::{Receiver, Sender};
    let name = unique_ring_name("typed-cut");
    let _cleanup = RingCleanup(name.clone());
    let mut tx = Sender::<Vec<u8>>::open_with(&name, &ring_options()).unwrap();
    let mut rx = Receiver::<Vec<u8>>::open_with(&name, &ring_options()).unwrap();
    let messages: Vec<Vec<u8>> = (1..=3u8).map(|n| vec![n; 3000]).collect();
    for message in &messages {
        tx.send(message).unwrap();
    }
    // Records of about 3 KiB from data offset 0 (file offset 512): the
    // third starts below file offset 8192 and ends past it.
    truncate_ring(&name, 8192);
    assert_eq!(rx.recv().unwrap(), messages[0]);
    assert_eq!(rx.recv().unwrap(), messages[1]);
    let err = rx.recv().unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    // The cut message was not consumed, as a ring's own recv keeps it:
    // the consumer's `received` word (docs/FORMAT.md, byte 272) says two.
    let file = std::fs::read(format!("/dev/shm/shmkit.ring.{name}")).unwrap();
    let received = u64::from_le_bytes(file[272..280].try_into().unwrap());
    assert_eq!(received, 2);
}
