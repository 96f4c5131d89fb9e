//! Topics between real processes: two publishers and three subscribers in
//! both start orders, checking every message's sequence and checksum; a
//! Block subscriber killed with SIGKILL; a publisher killed in the middle
//! of a message; and a lossy subscriber stopped with SIGSTOP, which after
//! SIGCONT reports exactly how many messages it missed.
//!
//! Children are this test binary in a role (see `processes`); they report
//! on stdout and take commands on stdin, so nothing sleeps to synchronise.
//! Every test uses its own topic and a guard that removes it even if the
//! test fails; a watchdog aborts a test that hangs.

mod processes;
mod sequence;

use std::collections::BTreeMap;
use std::time::Duration;

use shmkit::topic::{self, Options, Origin, Policy, Publisher, Subscriber};
use shmkit::{Error, ReadWrite, Segment};

use processes::{
    args, next_command, report, topic_exists, topic_key, unique_ring_name, wait_until, Peer,
    TopicCleanup, Watchdog, ROLE,
};
use sequence::{checksum, mix, Rng};

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let words: Vec<String> = args().split(' ').map(str::to_owned).collect();
    let name = &words[0];
    let options = options(&words[1], words[2].parse().unwrap());
    match role.as_str() {
        "publish" => publish(
            name,
            &options,
            words[3].parse().unwrap(),
            words[4].parse().unwrap(),
        ),
        "subscribe" => subscribe(name, &options),
        "relay-and-hold" => relay_and_hold(name, &options),
        "subscribe-and-hold" => {
            let _subscriber = Subscriber::open_with(name, &options).unwrap();
            report("ready");
            next_command();
        }
        other => panic!("unknown role {other}"),
    }
}

fn options(policy: &str, capacity: u64) -> Options {
    let policy = match policy {
        "block" => Policy::Block,
        _ => Policy::DropOldest,
    };
    Options::default()
        .capacity(capacity)
        .max_message(512)
        .max_publishers(2)
        .max_subscribers(8)
        .policy(policy)
}

/// A message of stream `seed`: the seed, `n`, `random` random bytes, and a
/// checksum of all before it.
fn build(seed: u64, n: u64, random: usize) -> Vec<u8> {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes.extend(Rng::new(mix(seed, n)).bytes(random));
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// Message `n` of the stream with `seed`: 24 to 512 bytes.
fn message(seed: u64, n: u64) -> Vec<u8> {
    build(seed, n, (mix(seed, n) % 489) as usize)
}

/// Checks a received message against what its publisher sent (its own
/// stream, sequence and checksum): returns the stream's seed.
fn check(bytes: &[u8], sequence: u64) -> u64 {
    assert!(bytes.len() >= 24, "a message of {} bytes", bytes.len());
    let seed = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let n = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(
        n, sequence,
        "the publisher's sequence number names the message"
    );
    assert_eq!(
        bytes,
        build(seed, n, bytes.len() - 24),
        "message {n} of stream {seed:#x}"
    );
    seed
}

/// Role: opens a publisher, reports `ready ID`, waits for `go`, publishes
/// `count` messages of stream `seed` with a mix of verbs, closes; with
/// `hold` (count given as `K+hold`) it instead grants a message and fills
/// half of it after the K, reports `granted` and waits to be killed.
fn publish(name: &str, options: &Options, seed: u64, count: String) {
    let (count, hold) = match count.strip_suffix("+hold") {
        Some(k) => (k.parse::<u64>().unwrap(), true),
        None => (count.parse::<u64>().unwrap(), false),
    };
    let mut publisher = Publisher::open_with(name, options).unwrap();
    report(&format!("ready {}", publisher.id()));
    assert_eq!(next_command(), "go");
    for n in 0..count {
        let bytes = message(seed, n);
        match n % 3 {
            0 => publisher.send(&bytes).unwrap(),
            1 => {
                let mut grant = publisher.grant(bytes.len()).unwrap();
                grant.copy_from_slice(&bytes);
                grant.commit();
            }
            _ => {
                let mut grant = publisher.grant(512).unwrap();
                grant[..bytes.len()].copy_from_slice(&bytes);
                grant.commit_len(bytes.len());
            }
        }
    }
    if hold {
        let mut grant = publisher.grant(400).unwrap();
        grant[..200].fill(0xee);
        report("granted");
        next_command();
        unreachable!("killed while holding the grant");
    }
    publisher.close();
    report("closed");
}

/// Role: receives until every publisher has ended, checking each message,
/// with every receive verb; counts what lossy topics report missed.
/// Reports `ready`, then `done` with per-publisher counts
/// (`ID:COUNT,...`), the number missed, and how the stream ended.
fn subscribe(name: &str, options: &Options) {
    let mut subscriber = Subscriber::open_with(name, options).unwrap();
    report("ready");
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let mut missed = 0;
    let mut buf = vec![0u8; 512];
    let mut lagged = false;
    let end = loop {
        let got = match next.values().sum::<u64>() % 3 {
            0 => subscriber
                .recv(&mut buf)
                .map(|r| (r, buf[..r.len].to_vec())),
            1 => subscriber
                .read()
                .map(|g| ((g.publisher(), g.sequence()), g.to_vec()))
                .map(|((publisher, sequence), bytes)| {
                    (
                        topic::Received {
                            len: bytes.len(),
                            publisher,
                            sequence,
                        },
                        bytes,
                    )
                }),
            _ => match subscriber.try_recv(&mut buf) {
                Err(Error::Empty { .. }) => continue,
                other => other.map(|r| (r, buf[..r.len].to_vec())),
            },
        };
        match got {
            Ok((received, bytes)) => {
                check(&bytes, received.sequence);
                let expected = next.entry(received.publisher).or_insert(received.sequence);
                if !lagged {
                    assert_eq!(received.sequence, *expected, "in order, none lost");
                }
                lagged = false;
                *expected = received.sequence + 1;
            }
            Err(Error::Lagged { missed: n, .. }) => {
                missed += n;
                lagged = true;
            }
            Err(Error::Closed { .. }) => break "closed".to_owned(),
            Err(Error::PeerGone { pid, .. }) => break format!("gone-{pid}"),
            Err(other) => panic!("receiving: {other}"),
        }
    };
    let counts: Vec<String> = next.iter().map(|(id, n)| format!("{id}:{n}")).collect();
    report(&format!("done {} {missed} {end}", counts.join(",")));
}

/// Parses a subscriber's `done` report.
fn done(line: &str) -> (BTreeMap<u64, u64>, u64, String) {
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[0], "done", "{line}");
    let counts = words[1]
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|pair| {
            let (id, n) = pair.split_once(':').unwrap();
            (id.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    (counts, words[2].parse().unwrap(), words[3].to_owned())
}

fn many_to_many(subscribers_first: bool, policy: &str) {
    let _watchdog = Watchdog::new("2 publishers x 3 subscribers", Duration::from_secs(300));
    let name = unique_ring_name("topic-2x3");
    let _cleanup = TopicCleanup(name.clone());
    let count = 3000;
    let common = format!("{name} {policy} 8192");
    let spawn_subscribers = || -> Vec<Peer> {
        let mut peers: Vec<Peer> = (0..3)
            .map(|_| Peer::spawn("subscribe", &common, None))
            .collect();
        for peer in &mut peers {
            assert_eq!(peer.expect_line(), "ready");
        }
        peers
    };
    let mut subscribers = if subscribers_first {
        spawn_subscribers()
    } else {
        Vec::new()
    };
    let mut publishers: Vec<(Peer, u64)> = (0..2u64)
        .map(|k| {
            let args = format!("{common} {} {count}", 0x5eed_0000 + k);
            let mut peer = Peer::spawn("publish", &args, None);
            let ready = peer.expect_line();
            let id = ready.strip_prefix("ready ").unwrap().parse().unwrap();
            (peer, id)
        })
        .collect();
    if !subscribers_first {
        subscribers = spawn_subscribers();
    }
    for (peer, _) in &mut publishers {
        peer.send("go");
    }
    for (peer, _) in &mut publishers {
        assert_eq!(peer.expect_line(), "closed");
    }
    for mut peer in subscribers {
        let (counts, missed, end) = done(&peer.expect_line());
        assert_eq!((missed, end.as_str()), (0, "closed"));
        let expected: BTreeMap<u64, u64> = publishers.iter().map(|(_, id)| (*id, count)).collect();
        assert_eq!(counts, expected, "every message of every publisher");
        peer.finish();
    }
    for (peer, _) in publishers {
        peer.finish();
    }
    assert!(!topic_exists(&name), "the last member removed the topic");
}

#[test]
fn two_publishers_three_subscribers_subscribers_first() {
    many_to_many(true, "block");
}

#[test]
fn two_publishers_three_subscribers_publishers_first() {
    many_to_many(false, "block");
}

#[test]
fn a_killed_block_subscriber_stops_holding_publishers_back() {
    let _watchdog = Watchdog::new("killed Block subscriber", Duration::from_secs(120));
    let name = unique_ring_name("topic-killed-subscriber");
    let _cleanup = TopicCleanup(name.clone());
    let options = options("block", 4096);
    let mut live = Subscriber::open_with(&name, &options).unwrap();
    let mut holder = Peer::spawn("subscribe-and-hold", &format!("{name} block 4096"), None);
    assert_eq!(holder.expect_line(), "ready");
    let mut publisher = Publisher::open_with(&name, &options).unwrap();
    let mut buf = vec![0u8; 512];
    let mut sent = 0u64;
    let mut received = 0u64;
    // Fill the lane: the holder reads nothing, the live one everything.
    loop {
        match publisher.try_send(&message(7, sent)) {
            Ok(()) => sent += 1,
            Err(Error::Full { .. }) => break,
            Err(other) => panic!("{other}"),
        }
        while let Ok(r) = live.try_recv(&mut buf) {
            assert_eq!(check(&buf[..r.len], r.sequence), 7);
            received += 1;
        }
    }
    assert!(matches!(
        publisher.send_timeout(&message(7, sent), Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    let pid = holder.pid();
    assert!(topic::status(&name)
        .unwrap()
        .subscribers
        .iter()
        .any(|s| s.pid == pid && s.alive));
    holder.kill(true);
    // Blocking sends go on once the dead holder's place is reclaimed
    // (within a peer check); the watchdog bounds the time.
    for _ in 0..200 {
        publisher.send(&message(7, sent)).unwrap();
        sent += 1;
        while let Ok(r) = live.try_recv(&mut buf) {
            assert_eq!(r.sequence, received);
            check(&buf[..r.len], r.sequence);
            received += 1;
        }
    }
    while received < sent {
        let r = live.recv(&mut buf).unwrap();
        assert_eq!(r.sequence, received);
        received += 1;
    }
    let status = topic::status(&name).unwrap();
    assert!(
        status.subscribers.iter().all(|s| s.pid != pid),
        "{status:?}"
    );
}

#[test]
fn a_publisher_killed_mid_message_blocks_and_tears_nothing() {
    let _watchdog = Watchdog::new("killed publisher", Duration::from_secs(120));
    let name = unique_ring_name("topic-killed-publisher");
    let _cleanup = TopicCleanup(name.clone());
    let common = format!("{name} block 8192");
    let options = options("block", 8192);
    let mut mine = Subscriber::open_with(&name, &options).unwrap();
    let mut theirs = Peer::spawn("subscribe", &common, None);
    assert_eq!(theirs.expect_line(), "ready");
    let mut other = Publisher::open_with(&name, &options).unwrap();
    // Few enough to fit the lane before this process reads any.
    let dying_count = 10;
    let mut dying = Peer::spawn("publish", &format!("{common} 77 {dying_count}+hold"), None);
    let dying_id: u64 = dying
        .expect_line()
        .strip_prefix("ready ")
        .unwrap()
        .parse()
        .unwrap();
    dying.send("go");
    assert_eq!(dying.expect_line(), "granted");
    let dead_pid = dying.pid();
    dying.kill(true);
    // The other publisher goes on, and so does every subscriber (this
    // one reads whenever the lane is full: the topic blocks).
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 512];
    let mut take = |subscriber: &mut Subscriber, counts: &mut BTreeMap<u64, u64>, wait: bool| {
        let got = if wait {
            subscriber.recv(&mut buf)
        } else {
            subscriber.try_recv(&mut buf)
        };
        got.map(|r| {
            check(&buf[..r.len], r.sequence);
            let n = counts.entry(r.publisher).or_default();
            assert_eq!(r.sequence, *n, "in order, none lost");
            *n += 1;
        })
    };
    let mut send_all = |publisher: &mut Publisher, seed: u64, counts: &mut BTreeMap<u64, u64>| {
        for n in 0..500 {
            let bytes = message(seed, n);
            // Full: read what this process can; if it has read
            // everything, the other subscriber holds the lane: wait.
            while let Err(Error::Full { .. }) = publisher.try_send(&bytes) {
                match take(&mut mine, counts, false) {
                    Ok(()) => {}
                    Err(Error::Empty { .. }) => {
                        publisher.send(&bytes).unwrap();
                        break;
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        }
    };
    send_all(&mut other, 88, &mut counts);
    // A new publisher takes the dead one's lane (there are two).
    let mut successor = Publisher::open_with(&name, &options).unwrap();
    send_all(&mut successor, 99, &mut counts);
    let (other_id, successor_id) = (other.id(), successor.id());
    drop(other);
    drop(successor);
    let end = loop {
        if let Err(end) = take(&mut mine, &mut counts, true) {
            break end;
        }
    };
    assert!(matches!(end, Error::Closed { .. }), "{end}");
    let expected = BTreeMap::from([
        (dying_id, dying_count),
        (other_id, 500),
        (successor_id, 500),
    ]);
    assert_eq!(counts, expected);
    let (theirs_counts, _, theirs_end) = done(&theirs.expect_line());
    assert_eq!((theirs_counts, theirs_end.as_str()), (expected, "closed"));
    theirs.finish();
    assert_ne!(dead_pid, 0);
}

/// The bytes a record of a `len`-byte message takes in a lane.
fn record_size(len: usize) -> u64 {
    (32 + len as u64).div_ceil(8) * 8
}

/// A publisher killed after it committed records by their words but
/// before it stored `tail` past them (rule 4 of `topic/lane.rs`): the lane
/// header's `tail` and `lane_sequence` are set back two records, as such a
/// death leaves them (the child itself is killed holding a half-written
/// grant after its last record). Subscribers, in this process and
/// another, still get every message it committed, whole and in order; the
/// publisher that takes the lane over walks the records from `tail` to the
/// empty word and continues there, overwriting nothing committed.
#[test]
fn a_publisher_killed_between_a_records_word_and_tail_loses_none_of_it() {
    let _watchdog = Watchdog::new("publisher killed before its tail", Duration::from_secs(120));
    let name = unique_ring_name("topic-killed-before-tail");
    let _cleanup = TopicCleanup(name.clone());
    let common = format!("{name} block 16384");
    let options = options("block", 16384);
    let mut mine = Subscriber::open_with(&name, &options).unwrap();
    let mut theirs = Peer::spawn("subscribe", &common, None);
    assert_eq!(theirs.expect_line(), "ready");
    let count = 10;
    let mut dying = Peer::spawn("publish", &format!("{common} 77 {count}+hold"), None);
    let dying_id: u64 = dying
        .expect_line()
        .strip_prefix("ready ")
        .unwrap()
        .parse()
        .unwrap();
    dying.send("go");
    assert_eq!(dying.expect_line(), "granted");
    // Lane 0 (the first publisher's), whose header is at 512: tail at
    // +0, lane_sequence at +64. Ten records of at most 544 bytes fit its
    // 16 KiB without a wrap.
    assert_eq!(topic::status(&name).unwrap().publishers[0].id, dying_id);
    let kept = count - 2;
    let tail: u64 = (0..kept).map(|n| record_size(message(77, n).len())).sum();
    let memory = Segment::open(&topic_key(&name))
        .unwrap()
        .attach(ReadWrite)
        .unwrap();
    memory.write_at(512, &tail.to_le_bytes()).unwrap();
    memory.write_at(512 + 64, &kept.to_le_bytes()).unwrap();
    // A live publisher (lane 1, sending nothing) through the death, so
    // that the other subscriber, which may have read all ten already, does
    // not end with PeerGone while no lane has a live publisher.
    let keeper = Publisher::open_with(&name, &options).unwrap();
    dying.kill(true);
    // Its successor takes the dead lane, before this process read any of
    // it: were it to continue from the published tail, it would overwrite
    // the last two records.
    let mut successor = Publisher::open_with(&name, &options).unwrap();
    let status = topic::status(&name).unwrap();
    assert_eq!(status.publishers[0].id, successor.id(), "the dead lane");
    assert_eq!(status.publishers[0].lane_messages, count, "recovered");
    for n in 0..3 {
        successor.send(&message(99, n)).unwrap();
    }
    let successor_id = successor.id();
    drop((successor, keeper));
    let mut buf = vec![0u8; 512];
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let end = loop {
        match mine.recv(&mut buf) {
            Ok(r) => {
                let seed = check(&buf[..r.len], r.sequence);
                assert_eq!(seed, if r.publisher == dying_id { 77 } else { 99 });
                let n = counts.entry(r.publisher).or_default();
                assert_eq!(r.sequence, *n, "in order, none lost");
                *n += 1;
            }
            Err(end) => break end,
        }
    };
    assert!(matches!(end, Error::Closed { .. }), "{end}");
    let expected = BTreeMap::from([(dying_id, count), (successor_id, 3)]);
    assert_eq!(counts, expected);
    let (theirs_counts, _, theirs_end) = done(&theirs.expect_line());
    assert_eq!((theirs_counts, theirs_end.as_str()), (expected, "closed"));
    theirs.finish();
}

#[test]
fn a_stopped_lossy_subscriber_never_blocks_and_reports_exactly_what_it_missed() {
    let _watchdog = Watchdog::new("stopped lossy subscriber", Duration::from_secs(120));
    let name = unique_ring_name("topic-stopped");
    let _cleanup = TopicCleanup(name.clone());
    let options = options("lossy", 4096);
    let mut publisher = Publisher::open_with(&name, &options).unwrap();
    let mut peer = Peer::spawn("subscribe", &format!("{name} lossy 4096"), None);
    assert_eq!(peer.expect_line(), "ready");
    // 32-byte messages are 64-byte records: 63 of them and the empty word
    // after the last fill the lane (rule 3 of `topic/lane.rs`).
    let sized = |n: u64| build(0, n, 8);
    for n in 0..10 {
        publisher.try_send(&sized(n)).unwrap();
    }
    let pid = peer.pid();
    wait_until("the subscriber read the first ten", || {
        topic::status(&name).unwrap().subscribers[0].received == 10
    });
    // SAFETY: kill(2) on our own child's pid, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    wait_until("the subscriber is stopped", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('T')
    });
    for n in 10..1010 {
        // Never Full, never waits.
        publisher.try_send(&sized(n)).unwrap();
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    publisher.close();
    let (counts, missed, end) = done(&peer.expect_line());
    assert_eq!(end, "closed");
    assert_eq!(missed, 1000 - 63, "exactly the overwritten ones");
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [1010]);
    peer.finish();
}

/// The origin the relays of `a_killed_relay_*` relay.
const RELAYED: Origin = Origin {
    host: 7,
    publisher: 1,
};

/// Role: a relay of `RELAYED` (what a bridge opens) that sends messages
/// 0..3 of stream 55, reports `sent` and waits to be killed.
fn relay_and_hold(name: &str, options: &Options) {
    let mut relay = Publisher::open_with(name, &options.clone().relay(RELAYED)).unwrap();
    for n in 0..3 {
        relay.send(&message(55, n)).unwrap();
    }
    report("sent");
    next_command();
}

#[test]
fn a_killed_relay_is_waited_for_until_a_relay_of_its_origin_closes() {
    let _watchdog = Watchdog::new("killed relay", Duration::from_secs(120));
    let name = unique_ring_name("topic-killed-relay");
    let _cleanup = TopicCleanup(name.clone());
    let options = options("block", 8192);
    let mut subscriber = Subscriber::open_with(&name, &options).unwrap();
    let mut relay = Peer::spawn("relay-and-hold", &format!("{name} block 8192"), None);
    assert_eq!(relay.expect_line(), "sent");
    relay.kill(true);
    let mut buf = vec![0u8; 512];
    for n in 0..3 {
        let got = subscriber.recv(&mut buf).unwrap();
        assert_eq!(
            (check(&buf[..got.len], got.sequence), got.sequence),
            (55, n)
        );
    }
    // Its bridge may come back: not PeerGone, but waiting.
    let wait = Duration::from_millis(100);
    let err = subscriber.recv_timeout(&mut buf, wait).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");

    // A relay of another origin does not end it.
    let other = Origin {
        publisher: 2,
        ..RELAYED
    };
    drop(Publisher::open_with(&name, &options.clone().relay(other)).unwrap());
    let err = subscriber.recv_timeout(&mut buf, wait).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");

    // The restarted bridge's relay of the same origin carries on, and its
    // close is the end.
    let mut successor = Publisher::open_with(&name, &options.clone().relay(RELAYED)).unwrap();
    successor.set_sequence(3).unwrap();
    successor.send(&message(55, 3)).unwrap();
    drop(successor);
    let got = subscriber.recv(&mut buf).unwrap();
    assert_eq!(
        (check(&buf[..got.len], got.sequence), got.sequence),
        (55, 3)
    );
    let end = subscriber.recv(&mut buf).unwrap_err();
    assert!(matches!(end, Error::Closed { .. }), "{end}");
}
