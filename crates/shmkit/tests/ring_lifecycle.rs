//! The ring's lifecycle: how rings are made, joined, reopened, left and
//! removed, and how an end learns that the other is gone.
//!
//! - A ring removed under an opener is never written to: the opener moves
//!   to the ring at the name (issue 8, point 1); removal is exact.
//! - A half-made ring is made again at once, and gc lists and removes it
//!   (8.2); a ring nobody will use goes when its last end leaves (8.3).
//! - Another user's ring that its last end cannot remove is reported and
//!   collected by its owner (8.4).
//! - A live end in another pid namespace is never taken over (8.6).
//! - A closed, drained ring reopens (8.7); a producer whose consumer left
//!   fails once the ring is full, unless it waits for a new one (8.11).
//! - Options that differ from an existing ring's are refused; gc is scoped
//!   by name or prefix (issue 9).
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! it even if the test fails; nothing sleeps to synchronise.

mod processes;
mod ring_layout;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use shmkit::ring::{self, Action, Consumer, Options, Producer, Reason, Removal, Scope};
use shmkit::{Error, Mode, Segment, Trust};

use processes::{
    args, is_root, next_command, report, ring_exists, ring_key, unique_ring_name, wait_until, Peer,
    RingCleanup, Watchdog, ROLE,
};
use ring_layout::{small_ring, SMALL, SMALL_MAX};

/// Where the `removed` word of the header is (docs/FORMAT.md).
const REMOVED_AT: usize = 408;

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = args();
    match role.as_str() {
        // Holds the producer end until told to go (or its stdin closes).
        "hold-producer" => {
            let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
            producer.send(b"from the child").unwrap();
            report("ready");
            next_command();
            producer.close().unwrap();
            report("closed");
        }
        // Reads another user's ring to its end, then says how leaving went.
        "read-to-end" => {
            let options = small_ring().trust(Trust::me().user(0));
            let mut consumer = Consumer::open_with(&name, &options).unwrap();
            let mut buf = [0; 64];
            let n = consumer.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"shared");
            assert!(matches!(consumer.recv(&mut buf), Err(Error::Closed { .. })));
            match consumer.close() {
                Ok(()) => report("removed"),
                Err(err) => report(&format!("left: {err}")),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// The path of ring `name`'s file.
fn ring_path(name: &str) -> String {
    format!("/dev/shm{}{name}", ring::SEGMENT_PREFIX)
}

/// Takes the gate of the ring now at `name` (byte 0 of its file, an OFD
/// lock), as an opener, a leaver or a remover would; held until dropped.
fn hold_gate(name: &str) -> OwnedFd {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ring_path(name))
        .unwrap();
    // SAFETY: a zeroed `struct flock` is valid; F_OFD_SETLKW reads it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 1;
    // SAFETY: the descriptor is open; `lock` is a valid `struct flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &lock) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    file.into()
}

/// How many mappings of ring `name`'s current segment this process has.
fn my_mappings(name: &str) -> usize {
    let me = std::process::id();
    Segment::open(&ring_key(name))
        .and_then(|segment| segment.stat())
        .map_or(0, |stat| {
            stat.attachers.iter().filter(|a| a.pid == me).count()
        })
}

fn recv_text(consumer: &mut Consumer) -> Result<String, Error> {
    let mut buf = vec![0; SMALL_MAX];
    let n = consumer.recv_timeout(&mut buf, Duration::from_secs(60))?;
    Ok(String::from_utf8(buf[..n].to_vec()).unwrap())
}

// ---------------------------------------------------------------------------
// 8.1: removal under an opener, exact removal.

/// The race of issue 8.1, in the order that lost messages: an opener has
/// mapped the ring, and before it claims its end the ring is removed (its
/// remover checked it first). The opener must not write into the removed
/// ring: it goes back to the name, and makes a new ring there, which a
/// consumer then reads.
#[test]
fn an_opener_whose_ring_is_removed_under_it_moves_to_the_new_one() {
    let _watchdog = Watchdog::new("the removed-under-an-opener test", Duration::from_secs(60));
    let name = unique_ring_name("removed-under");
    let _cleanup = RingCleanup(name.clone());
    Producer::open_with(&name, &small_ring())
        .unwrap()
        .close()
        .unwrap();
    let gate = hold_gate(&name);
    std::thread::scope(|scope| {
        let opener = scope.spawn(|| {
            let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
            producer.send(b"after the removal").unwrap();
            producer
        });
        wait_until("the opener maps the old ring", || my_mappings(&name) >= 1);
        // The remover's part, under the gate: unlink, then mark removed.
        let old = Segment::open(&ring_key(&name)).unwrap();
        let header = old.attach(shmkit::ReadWrite).unwrap();
        old.remove().unwrap();
        header
            .atomic_u32(REMOVED_AT)
            .unwrap()
            .store(1, std::sync::atomic::Ordering::SeqCst);
        drop(header);
        drop(gate);
        let producer = opener.join().unwrap();
        assert!(producer.created(), "the opener made a new ring");
        assert!(ring_exists(&name));
        let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
        assert_eq!(recv_text(&mut consumer).unwrap(), "after the removal");
        producer.close().unwrap();
        assert!(matches!(
            recv_text(&mut consumer),
            Err(Error::Closed { .. })
        ));
    });
    assert!(!ring_exists(&name), "the last end removed it");
}

/// The same race with the real parties: a consumer leaving a ring with no
/// producer (which removes it) and a producer opening it, released at the
/// same moment from the gate. Whichever goes first, what the producer
/// sends reaches the ring at the name.
#[test]
fn a_leaving_consumer_and_an_opening_producer_never_lose_a_message() {
    let _watchdog = Watchdog::new("the leave/open race test", Duration::from_secs(60));
    for _ in 0..20 {
        let name = unique_ring_name("leave-open");
        let _cleanup = RingCleanup(name.clone());
        let consumer = Consumer::open_with(&name, &small_ring()).unwrap();
        let gate = hold_gate(&name);
        std::thread::scope(|scope| {
            let opener = scope.spawn(|| Producer::open_with(&name, &small_ring()).unwrap());
            wait_until("the opener maps the ring", || my_mappings(&name) >= 2);
            let leaver = scope.spawn(move || consumer.close());
            drop(gate);
            let mut producer = opener.join().unwrap();
            leaver.join().unwrap().unwrap();
            producer.send(b"kept").unwrap();
            producer.close().unwrap();
        });
        let mut reader = Consumer::open_with(&name, &small_ring()).unwrap();
        assert_eq!(recv_text(&mut reader).unwrap(), "kept");
        assert!(matches!(recv_text(&mut reader), Err(Error::Closed { .. })));
        drop(reader);
        assert!(!ring_exists(&name));
    }
}

/// A handle on a removed ring never removes the newer ring of its name.
#[test]
fn removal_by_name_leaves_a_newer_ring_alone() {
    let name = unique_ring_name("newer");
    let _cleanup = RingCleanup(name.clone());
    Producer::open_with(&name, &small_ring())
        .unwrap()
        .close()
        .unwrap();
    let old = Segment::open(&ring_key(&name)).unwrap();
    ring::remove(&name).unwrap();
    assert!(matches!(ring::remove(&name), Err(Error::NotFound { .. })));
    let newer = Producer::open_with(&name, &small_ring()).unwrap();
    assert!(newer.created());
    assert!(matches!(old.remove(), Err(Error::NotFound { .. })));
    assert!(ring_exists(&name), "the newer ring is still there");
    match ring::remove(&name) {
        Err(Error::InUse {
            endpoint: "producer",
            pid,
            ..
        }) => assert_eq!(pid, std::process::id()),
        other => panic!("removing a ring in use: {other:?}"),
    }
    assert_eq!(
        ring::collect_garbage(Scope::Name(&name), Action::Remove).unwrap(),
        [],
        "a ring in use is no garbage"
    );
    newer.close().unwrap();
    ring::remove(&name).unwrap();
}

// ---------------------------------------------------------------------------
// 8.2 and 8.3: half-made rings, rings nobody will use.

/// A ring file that its creator never sized, and one it sized but never
/// gave a header: the next opener makes the ring again at once.
#[test]
fn a_half_made_ring_is_made_again_at_once() {
    let _watchdog = Watchdog::new("the half-made ring test", Duration::from_secs(60));
    for size in [0, 512 + SMALL] {
        let name = unique_ring_name("half-made");
        let _cleanup = RingCleanup(name.clone());
        let file = std::fs::File::create(ring_path(&name)).unwrap();
        file.set_len(size).unwrap();
        drop(file);
        let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
        assert!(consumer.created(), "made again");
        assert_eq!(consumer.capacity(), SMALL as usize);
        assert!(matches!(
            consumer.recv_timeout(&mut [0; 8], Duration::ZERO),
            Err(Error::Timeout { .. })
        ));
        drop(consumer);
        assert!(!ring_exists(&name), "an unused ring goes with its consumer");
    }
}

/// gc lists a half-made ring with its reason, and removes it when asked.
#[test]
fn gc_lists_and_removes_a_half_made_ring() {
    let prefix = unique_ring_name("gc-scope");
    let half_made = format!("{prefix}-a");
    let in_use = format!("{prefix}-b");
    let cut = format!("{prefix}-c");
    let _cleanups = [
        RingCleanup(half_made.clone()),
        RingCleanup(in_use.clone()),
        RingCleanup(cut.clone()),
    ];
    std::fs::File::create(ring_path(&half_made)).unwrap();
    let producer = Producer::open_with(&in_use, &small_ring()).unwrap();

    // Cut to less than a header: corrupt, and said so.
    std::fs::File::create(ring_path(&cut))
        .unwrap()
        .set_len(100)
        .unwrap();
    let found = ring::collect_garbage(Scope::Name(&cut), Action::Remove).unwrap();
    assert!(
        matches!(&found[0].reason, Reason::Corrupt(why) if why.contains("truncated to 100 bytes")),
        "{found:?}"
    );
    assert!(!ring_exists(&cut));

    let listed = ring::collect_garbage(Scope::Prefix(&prefix), Action::DryRun).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, half_made);
    assert_eq!(listed[0].reason, Reason::HalfMade(0));
    assert_eq!(listed[0].removal, Removal::NotAsked);
    assert!(listed[0].reason.to_string().contains("half-made"));
    assert!(ring_exists(&half_made), "a dry run removes nothing");

    let removed = ring::collect_garbage(Scope::Name(&half_made), Action::Remove).unwrap();
    assert_eq!(removed[0].removal, Removal::Removed);
    assert!(!ring_exists(&half_made));
    assert!(matches!(
        ring::collect_garbage(Scope::Name(&half_made), Action::Remove),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        ring::collect_garbage(Scope::Prefix(&prefix), Action::Remove).unwrap(),
        []
    );
    assert!(ring_exists(&in_use));
    producer.close().unwrap();
}

/// A consumer that leaves a ring no producer ever opened removes it; a
/// producer's empty stream waits for a consumer that comes later.
#[test]
fn rings_go_when_nothing_more_can_be_read() {
    let name = unique_ring_name("unused");
    let _cleanup = RingCleanup(name.clone());
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    assert!(matches!(
        consumer.recv_timeout(&mut [0; 8], Duration::from_millis(1)),
        Err(Error::Timeout { .. })
    ));
    consumer.close().unwrap();
    assert!(!ring_exists(&name), "nobody will use it");

    // An empty stream: closed before any consumer came.
    Producer::open_with(&name, &small_ring())
        .unwrap()
        .close()
        .unwrap();
    assert!(
        ring_exists(&name),
        "the end of the stream is for a consumer to come"
    );
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    assert!(!consumer.created());
    assert!(matches!(
        recv_text(&mut consumer),
        Err(Error::Closed { .. })
    ));
    drop(consumer);
    assert!(!ring_exists(&name));

    // A consumer read everything and left; the producer closes after.
    let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    producer.send(b"one").unwrap();
    assert_eq!(recv_text(&mut consumer).unwrap(), "one");
    consumer.close().unwrap();
    assert!(ring_exists(&name), "its producer is still there");
    producer.close().unwrap();
    assert!(!ring_exists(&name), "its stream was read");
}

// ---------------------------------------------------------------------------
// 8.4: another user's ring.

/// uid 65534 reads root's shared ring to its end; `/dev/shm` is sticky, so
/// it may not remove it: its close says so, and gc run as the owner
/// collects the ring as finished.
#[test]
fn another_users_ring_that_its_last_end_cannot_remove_is_reported_and_collected() {
    if !is_root() {
        eprintln!("skipped: needs root to run a child as uid 65534");
        return;
    }
    let _watchdog = Watchdog::new("the shared ring test", Duration::from_secs(60));
    let name = unique_ring_name("shared");
    let _cleanup = RingCleanup(name.clone());
    let mut producer = Producer::open_with(&name, &small_ring().mode(Mode::new(0o666))).unwrap();
    producer.send(b"shared").unwrap();
    producer.close().unwrap();
    let mut peer = Peer::spawn("read-to-end", &name, Some((65534, 65534)));
    let outcome = peer.expect_line();
    assert!(
        outcome.starts_with("left: permission denied") && outcome.contains("removal"),
        "{outcome}"
    );
    peer.finish();
    assert!(ring_exists(&name), "not the reader's to remove");
    let found = ring::collect_garbage(Scope::Name(&name), Action::DryRun).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reason, Reason::Finished);
    let removed = ring::collect_garbage(Scope::Name(&name), Action::Remove).unwrap();
    assert_eq!(removed[0].removal, Removal::Removed);
    assert!(!ring_exists(&name));

    // Or the owner's next endpoint removes it as it leaves.
    let mut producer = Producer::open_with(&name, &small_ring().mode(Mode::new(0o666))).unwrap();
    producer.send(b"shared").unwrap();
    producer.close().unwrap();
    let mut peer = Peer::spawn("read-to-end", &name, Some((65534, 65534)));
    assert!(peer.expect_line().starts_with("left: "));
    peer.finish();
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    assert!(matches!(
        recv_text(&mut consumer),
        Err(Error::Closed { .. })
    ));
    consumer.close().unwrap();
    assert!(!ring_exists(&name), "the owner's consumer removed it");
}

// ---------------------------------------------------------------------------
// 8.6: liveness across pid namespaces.

/// A producer in another pid namespace (its pid means nothing here) holds
/// its end: a second producer is refused, status shows it alive, gc leaves
/// the ring; once it has closed, a new producer opens the ring.
#[test]
fn a_live_producer_in_another_pid_namespace_is_not_taken_over() {
    if !is_root() {
        eprintln!("skipped: needs root for unshare -pf");
        return;
    }
    let _watchdog = Watchdog::new("the pid namespace test", Duration::from_secs(60));
    let name = unique_ring_name("pidns");
    let _cleanup = RingCleanup(name.clone());
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new("unshare")
        .args(["-pf", "--mount-proc", "--kill-child"])
        .arg(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, "hold-producer")
        .env("SHMKIT_TEST_ARGS", &name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let expect = |stdout: &mut std::io::BufReader<_>, line: &mut String, what: &str| loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(stdout, line).unwrap() > 0,
            "child exited"
        );
        if line.contains(&format!("@@ {what}")) {
            break;
        }
    };
    expect(&mut stdout, &mut line, "ready");

    assert!(
        matches!(
            Producer::open_with(&name, &small_ring()),
            Err(Error::InUse {
                endpoint: "producer",
                ..
            })
        ),
        "a live producer was taken over"
    );
    let status = ring::status(&name).unwrap();
    assert!(status.producer.unwrap().alive, "{status:?}");
    assert_eq!(
        ring::collect_garbage(Scope::Name(&name), Action::Remove).unwrap(),
        []
    );
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    assert_eq!(recv_text(&mut consumer).unwrap(), "from the child");

    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "close").unwrap();
    expect(&mut stdout, &mut line, "closed");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(matches!(
        recv_text(&mut consumer),
        Err(Error::Closed { .. })
    ));
    let producer = Producer::open_with(&name, &small_ring()).unwrap();
    assert!(!producer.created(), "the closed, drained ring reopens");
    drop(producer);
    drop(consumer);
}

// ---------------------------------------------------------------------------
// 8.7: a clean close, then a new producer.

/// After a clean close and a full read, a new producer reopens the ring and
/// the consumer reads on; a close not yet read keeps new producers out.
#[test]
fn a_closed_drained_ring_reopens_for_a_new_producer() {
    let name = unique_ring_name("reopen");
    let _cleanup = RingCleanup(name.clone());
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
    producer.send(b"first").unwrap();
    producer.close().unwrap();
    assert!(
        matches!(
            Producer::open_with(&name, &small_ring()),
            Err(Error::Closed { .. })
        ),
        "the consumer has not read the first stream"
    );
    assert_eq!(recv_text(&mut consumer).unwrap(), "first");
    // Blocking calls report the end at once, not after a nap.
    assert!(matches!(
        consumer.recv(&mut [0; 8]),
        Err(Error::Closed { .. })
    ));
    assert!(matches!(consumer.read(), Err(Error::Closed { .. })));

    let mut second = Producer::open_with(&name, &small_ring()).unwrap();
    assert!(!second.created());
    second.send(b"second").unwrap();
    assert_eq!(recv_text(&mut consumer).unwrap(), "second");
    second.close().unwrap();
    assert!(matches!(
        recv_text(&mut consumer),
        Err(Error::Closed { .. })
    ));
    drop(consumer);
    assert!(!ring_exists(&name));
}

/// A consumer asleep on an empty ring wakes with `Closed` when the
/// producer closes it.
#[test]
fn a_sleeping_consumer_wakes_to_a_close() {
    let _watchdog = Watchdog::new("the sleeping consumer test", Duration::from_secs(60));
    let name = unique_ring_name("sleeper");
    let _cleanup = RingCleanup(name.clone());
    let mut consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    let producer = Producer::open_with(&name, &small_ring()).unwrap();
    let header = ring_layout::map_ring(&name);
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| consumer.recv(&mut [0; 8]).map(drop));
        wait_until("the consumer sleeps", || {
            ring_layout::sleeping(&header, ring_layout::CONSUMER_SLEEPING_AT)
        });
        producer.close().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(Error::Closed { .. })));
    });
}

/// This thread's CPU time so far, in clock ticks (utime + stime of
/// `/proc/thread-self/stat`).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The name (field 2) is in parentheses and may hold spaces: count the
    // fields after it; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A consumer parked on an empty ring for a second, its producer alive,
/// uses almost no CPU: it spins about as long as a wake-up costs, then
/// sleeps on the futex, waking every 20 ms to look at its peer (issue 14).
/// The bound is generous (a spinning consumer would use all the second,
/// a parked one uses about a millisecond: `ring_cost park` measures it);
/// the default waiting, `Adaptive`, is what is checked.
#[test]
fn a_parked_consumer_uses_almost_no_cpu() {
    let name = unique_ring_name("parked");
    let _cleanup = RingCleanup(name.clone());
    let _producer = Producer::open(&name).unwrap();
    let mut consumer = Consumer::open(&name).unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let before = thread_cpu_ticks();
    let started = std::time::Instant::now();
    match consumer.recv_timeout(&mut [0; 16], Duration::from_secs(1)) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("a parked consumer got {other:?}"),
    }
    let parked = started.elapsed();
    let used = thread_cpu_ticks() - before;
    assert!(parked >= Duration::from_secs(1), "parked for {parked:?}");
    assert!(
        used * 10 < ticks_per_second,
        "a consumer parked for {parked:?} used {used} of {ticks_per_second} ticks a second"
    );
}

// ---------------------------------------------------------------------------
// 8.11: a producer whose consumer left.

/// Filling a ring whose consumer left cleanly is `PeerLeft`, not a wait
/// without end; a producer that asked to wait for a new consumer waits,
/// and the new consumer gets every message.
#[test]
fn a_producer_whose_consumer_left_fails_once_the_ring_is_full() {
    let _watchdog = Watchdog::new("the consumer-left test", Duration::from_secs(60));
    let name = unique_ring_name("consumer-left");
    let _cleanup = RingCleanup(name.clone());
    let consumer = Consumer::open_with(&name, &small_ring()).unwrap();
    let mut producer = Producer::open_with(&name, &small_ring()).unwrap();
    consumer.close().unwrap();
    let message = [7u8; 1000];
    let mut sent = 0;
    let end = loop {
        match producer.send(&message) {
            Ok(()) => sent += 1,
            Err(end) => break end,
        }
    };
    assert!(sent >= 3, "{sent} sent before the ring was full");
    match end {
        Error::PeerLeft { ring, peer } => {
            assert_eq!((ring.as_str(), peer), (name.as_str(), "consumer"))
        }
        other => panic!("a full ring without its consumer: {other:?}"),
    }
    producer.close().unwrap();
    assert!(
        ring_exists(&name),
        "what was sent stays for the next consumer"
    );

    // The next consumer reads it all, and the end.
    let mut reader = Consumer::open_with(&name, &small_ring()).unwrap();
    for _ in 0..sent {
        assert_eq!(recv_text(&mut reader).unwrap().len(), 1000);
    }
    assert!(matches!(recv_text(&mut reader), Err(Error::Closed { .. })));

    // A producer that waits for a new consumer instead.
    let patient = small_ring().wait_for_new_consumer(true);
    let mut producer = Producer::open_with(&name, &patient).unwrap();
    assert!(!producer.created(), "the read stream reopens");
    reader.close().unwrap();
    let mut filled = 0;
    while producer.try_send(&message).is_ok() {
        filled += 1;
    }
    assert!(matches!(
        producer.send_timeout(&message, Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    std::thread::scope(|scope| {
        let newcomer = scope.spawn(|| {
            let mut newcomer = Consumer::open_with(&name, &small_ring()).unwrap();
            let mut count = 0;
            while recv_text(&mut newcomer).is_ok() {
                count += 1;
            }
            count
        });
        producer.send(&message).unwrap();
        producer.close().unwrap();
        assert_eq!(newcomer.join().unwrap(), filled + 1);
    });
    assert!(!ring_exists(&name));
}

/// A producer that never had a consumer waits for the first one (either
/// end may start first): a full ring is a timeout, not `PeerLeft`; but once
/// someone removes the ring from /dev/shm, no consumer can come, and it
/// fails even though it asked to wait.
#[test]
fn a_producer_that_never_had_a_consumer_waits_for_one() {
    let _watchdog = Watchdog::new("the no-consumer test", Duration::from_secs(60));
    let name = unique_ring_name("no-consumer-yet");
    let _cleanup = RingCleanup(name.clone());
    let patient = small_ring().wait_for_new_consumer(true);
    let mut producer = Producer::open_with(&name, &patient).unwrap();
    while producer.try_send(&[1; 100]).is_ok() {}
    assert!(matches!(
        producer.send_timeout(&[1; 100], Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    Segment::open(&ring_key(&name)).unwrap().remove().unwrap();
    assert!(matches!(
        producer.send(&[1; 100]),
        Err(Error::PeerLeft {
            peer: "consumer",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------
// Issue 9: options of a second opener.

/// Options given to open an existing ring must match it; options not given
/// take the ring's own.
#[test]
fn options_that_differ_from_the_existing_ring_are_refused() {
    let name = unique_ring_name("options");
    let _cleanup = RingCleanup(name.clone());
    let producer = Producer::open_with(&name, &small_ring()).unwrap();
    assert!(producer.created());
    let cases: [(&str, Options); 3] = [
        ("capacity", Options::default().capacity(2 * SMALL)),
        ("maximum message", Options::default().max_message(100)),
        ("mode", Options::default().mode(Mode::new(0o660))),
    ];
    for (option, options) in cases {
        match Consumer::open_with(&name, &options) {
            Err(err @ Error::OptionMismatch { .. }) => {
                let Error::OptionMismatch { option: which, .. } = &err else {
                    unreachable!()
                };
                assert_eq!(*which, option);
                assert!(
                    matches!(&err, Error::OptionMismatch { place, .. } if *place == format!("ring {name}")),
                    "{err:?}"
                );
                assert!(
                    err.to_string()
                        .starts_with(&format!("ring {name} exists with {option} ")),
                    "{err}"
                );
            }
            other => panic!("{option}: {other:?}"),
        }
    }
    let consumer = Consumer::open_with(&name, &Options::default()).unwrap();
    assert!(!consumer.created());
    assert_eq!(
        (consumer.capacity(), consumer.max_message()),
        (SMALL as usize, SMALL_MAX)
    );
    let same = small_ring()
        .max_message(SMALL_MAX as u64)
        .mode(Mode::OWNER_ONLY);
    drop(consumer);
    drop(Consumer::open_with(&name, &same).unwrap());
    producer.close().unwrap();
}

/// `open` failed with `TooLarge` for a maximum message of `size` over
/// `limit`.
fn assert_too_large<T: std::fmt::Debug>(opened: Result<T, Error>, size: u64, limit: u64) {
    match opened {
        Err(Error::TooLarge {
            what: "maximum message",
            size: s,
            limit: l,
        }) => assert_eq!((s, l), (size, limit)),
        other => panic!("expected TooLarge of {size} over {limit}, got {other:?}"),
    }
}

/// A maximum message given without a capacity is checked against the
/// capacity the open uses: an existing ring's own, not the default's (it
/// used to be refused as `TooLarge` against the default 1 MiB ring even
/// when the existing ring carried it). Over what the ring's capacity
/// carries it is `TooLarge`, as creating a ring of that capacity says;
/// within it but not the ring's, `OptionMismatch`. Creating with it alone
/// still fails when the default capacity cannot carry it, and makes
/// nothing.
#[test]
fn a_maximum_message_alone_is_checked_against_the_existing_rings_capacity() {
    const BIG: u64 = 1 << 22;
    let name = unique_ring_name("max-message-alone");
    let _cleanup = RingCleanup(name.clone());
    let default_limit = Options::default().max_message_len();
    let big_limit = Options::default().capacity(BIG).max_message_len();
    // Over what the default capacity carries, within the big ring's.
    let own = default_limit + 1000;
    assert!(own < big_limit);
    let producer =
        Producer::open_with(&name, &Options::default().capacity(BIG).max_message(own)).unwrap();
    assert!(producer.created());

    let consumer = Consumer::open_with(&name, &Options::default().max_message(own)).unwrap();
    assert!(!consumer.created());
    assert_eq!(
        (consumer.capacity(), consumer.max_message()),
        (BIG as usize, own as usize)
    );
    drop(consumer);

    // Over the ring's own limit: what a create of that capacity says.
    let over = big_limit + 1;
    let fresh = unique_ring_name("max-message-alone-fresh");
    let _fresh_cleanup = RingCleanup(fresh.clone());
    assert_too_large(
        Producer::open_with(&fresh, &Options::default().capacity(BIG).max_message(over)),
        over,
        big_limit,
    );
    assert_too_large(
        Consumer::open_with(&name, &Options::default().max_message(over)),
        over,
        big_limit,
    );
    // Over what any ring carries: refused before the ring is looked for.
    let widest = Options::default().capacity(1 << 40).max_message_len();
    assert_too_large(
        Consumer::open_with(&name, &Options::default().max_message(u64::MAX)),
        u64::MAX,
        widest,
    );
    // Within the ring's limit but not its own: a mismatch.
    match Consumer::open_with(&name, &Options::default().max_message(own + 1)) {
        Err(Error::OptionMismatch {
            option,
            asked,
            found,
            ..
        }) => assert_eq!(
            (option, asked, found),
            ("maximum message", (own + 1).to_string(), own.to_string())
        ),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // A capacity given that differs is named first, whatever the message.
    match Consumer::open_with(
        &name,
        &Options::default().capacity(1 << 16).max_message(100),
    ) {
        Err(Error::OptionMismatch { option, .. }) => assert_eq!(option, "capacity"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // The refusals took no end: the consumer's end is free.
    drop(Consumer::open_with(&name, &Options::default()).unwrap());

    // Creating with the maximum message alone: against the default
    // capacity, as before, and nothing is made.
    assert_too_large(
        Producer::open_with(&fresh, &Options::default().max_message(own)),
        own,
        default_limit,
    );
    assert!(!ring_exists(&fresh));
    producer.close().unwrap();
}

/// gc goes on when rings vanish between its look at them and its removal
/// (issue 15.1: it used to abort with `NotFound`): another thread keeps
/// making half-made rings under the prefix and removing them again, while
/// gc collects the prefix over and over, until the churn has done its
/// rounds.
#[test]
fn gc_tolerates_rings_vanishing_under_it() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const ROUNDS: u64 = 2000;
    let prefix = unique_ring_name("gc-vanishing");
    let names: Vec<String> = (0..4).map(|i| format!("{prefix}-{i}")).collect();
    let _cleanups: Vec<RingCleanup> = names.iter().cloned().map(RingCleanup).collect();
    let rounds = Arc::new(AtomicU64::new(0));
    let churn = {
        let (names, rounds) = (names.clone(), rounds.clone());
        std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                // Either may fail: gc may have taken a file first.
                for name in &names {
                    let _ = std::fs::File::create(ring_path(name));
                }
                for name in &names {
                    let _ = std::fs::remove_file(ring_path(name));
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut runs, mut collected) = (0u64, 0usize);
    while rounds.load(Ordering::Relaxed) < ROUNDS {
        match ring::collect_garbage(Scope::Prefix(&prefix), Action::Remove) {
            Ok(found) => collected += found.len(),
            Err(err) => panic!("gc of rings that come and go failed: {err}"),
        }
        runs += 1;
    }
    churn.join().unwrap();
    println!("gc ran {runs} times over {ROUNDS} rounds of churn and collected {collected}");
}
