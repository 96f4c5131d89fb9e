//! The message ring under SIGKILL: either end killed at random moments
//! (streaming, asleep on a full or empty ring, holding a grant), takeover of
//! the dead end, and garbage collection of abandoned rings.
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! its segment even if the test fails. Nothing here sleeps to synchronise:
//! children report on stdout, and a test that waits for another process to
//! reach a state polls that state in shared memory. Blocking calls rely on
//! the ring's dead-peer detection; a watchdog aborts the run rather than let
//! a broken test hang.

mod processes;
mod ring_layout;
mod roles;
mod sequence;

use std::sync::Mutex;
use std::time::Duration;

use shmkit::ring::{self, Action, Consumer, EndpointStatus, Producer, Reason, Removal, Scope};
use shmkit::{Error, Mode, ReadWrite, Segment};

use processes::{
    ring_exists, ring_key, unique_keys, unique_ring_name, wait_until, Cleanup, Peer, RingCleanup,
    Watchdog,
};
use ring_layout::{
    map_ring, record_size, sleeping, CONSUMER_SLEEPING_AT, LONG, PRODUCER_SLEEPING_AT, SMALL,
    SMALL_MAX, TAIL_AT,
};
use roles::{receive, send_and_receive, send_one, Plan};
use sequence::{Checker, Rng, Sequence, Shape};

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    roles::run_child();
}

/// Serialises this binary's calls to `collect_garbage`: one call maps each
/// ring for a moment to read it, which makes a concurrent call skip it.
fn gc_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    let pid = peer.pid();
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
            assert!(
                matches!(consumer.try_recv(&mut buf), Err(Error::Empty { .. })),
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
            place,
            peer: "producer",
            pid: gone,
        } => assert_eq!((place, gone), (format!("ring {name}"), pid)),
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
            producer.close().unwrap();
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
            // The consumer, leaving a drained ring with no producer, removed
            // it; collecting it finds it gone.
            let _gc = gc_lock();
            let collected = ring::collect_garbage(Scope::Name(&name), Action::Remove);
            assert!(
                !ring_exists(&name) && matches!(collected, Err(Error::NotFound { .. })),
                "a ring whose producer died and consumer left is gone ({collected:?})"
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
    let pid = peer.pid();

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
            place,
            peer: "consumer",
            pid: gone,
        }) => assert_eq!((place, gone), (format!("ring {name}"), pid)),
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
    let pid = peer.pid();
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
        let first = match consumer.try_recv(&mut buf) {
            Ok(n) => (reported..=reported + 1)
                .find(|&first| {
                    sequence.message(first, &mut message);
                    buf[..n] == message
                })
                .unwrap_or_else(|| panic!("the first message after {reported} reported")),
            Err(Error::Empty { .. }) => sent,
            Err(other) => panic!("the new consumer's first receive: {other}"),
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

/// A consumer killed holding a read grant has not handed the message back:
/// the consumer that takes over gets it again, with the same sequence
/// number, so an application can tell it saw it already. What `recv`
/// returned before is not delivered again.
#[test]
fn a_message_delivered_again_keeps_its_sequence_number() {
    let _watchdog = Watchdog::new("the sequence number test", Duration::from_secs(60));
    let name = unique_ring_name("sequence");
    let _cleanup = RingCleanup(name.clone());
    let plan = Plan::new(&name, SMALL, 13, Shape::Fixed(100));
    let sequence = plan.sequence();
    let mut producer = Producer::open_with(&name, &plan.options()).unwrap();
    let mut message = Vec::new();
    for n in 0..3 {
        send_one(&mut producer, &sequence, n, &mut message).unwrap();
    }
    let mut peer = Peer::spawn("consume", &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    peer.send("recv 1");
    assert_eq!(peer.expect_line(), "next 1");
    peer.send("read-and-hold");
    let held: u64 = peer
        .expect_line()
        .strip_prefix("holding ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(held > 0, "message 1 comes after message 0's record");
    peer.kill(true);

    let mut consumer = Consumer::open_with(&name, &plan.options()).unwrap();
    assert_eq!(consumer.last_sequence(), None);
    let mut checker = Checker::new(sequence);
    checker.next = 1;
    let grant = consumer.read().unwrap();
    assert_eq!(grant.sequence(), held, "the same message, the same number");
    checker.check(&grant);
    drop(grant);
    assert_eq!(consumer.last_sequence(), Some(held));
    let mut buf = vec![0; SMALL_MAX];
    let n = consumer.recv(&mut buf).unwrap();
    checker.check(&buf[..n]);
    let after = consumer.last_sequence().unwrap();
    assert!(after > held, "{after} after {held}");
}

/// `collect_garbage` removes a ring whose producer died once its consumer
/// has left, and a segment with the ring prefix that is no ring (corrupt),
/// and nothing else: not a ring whose end a live process holds, not a
/// segment of another name.
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
        assert!(Segment::open(&other).is_ok(), "a segment that is no ring");
    };
    let collect = |name: &str, action| ring::collect_garbage(Scope::Name(name), action).unwrap();
    {
        let _gc = gc_lock();
        assert_eq!(collect(&live, Action::Remove), [], "a live producer's ring");
        assert_eq!(collect(&dead, Action::Remove), [], "a live consumer's ring");
        drop(fake_segment);
        let corrupt = collect(&fake, Action::Remove);
        assert!(
            matches!(&corrupt[..], [g] if matches!(g.reason, Reason::Corrupt(_)) && g.removal == Removal::Removed),
            "{corrupt:?}"
        );
        assert!(
            !ring_exists(&fake),
            "a corrupt ring nobody maps is collected"
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
    let listed = collect(&orphan, Action::DryRun);
    let found = listed[0].status.as_ref().expect("a readable ring");
    assert_eq!(
        (&listed[0].reason, &listed[0].removal),
        (&Reason::Abandoned, &Removal::NotAsked)
    );
    assert!(found.abandoned() && found.consumer.is_none());
    assert!(ring_exists(&orphan), "a dry run removed it");
    collect(&orphan, Action::Remove);
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
