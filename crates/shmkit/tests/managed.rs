//! Managed segments across real processes: named objects, containers read
//! at another address, concurrent appends, and corrupt heaps.

mod processes;

use processes::{args, next_command, report, Cleanup, Peer, ROLE};
use proptest::prelude::*;
use shmkit::offset::{ManagedSegment, Plain};
use shmkit::{Error, Key, Mode, ReadWrite, Segment};

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Record {
    id: u64,
    value: f64,
    name: [u8; 16],
}

// SAFETY: repr(C), 8 + 8 + 16 bytes, no padding, any bits valid, align 8.
unsafe impl Plain for Record {}

fn record(id: u64) -> Record {
    let mut name = [0; 16];
    let text = format!("record-{id}");
    name[..text.len()].copy_from_slice(text.as_bytes());
    Record {
        id,
        value: id as f64 * 1.5,
        name,
    }
}

fn unique_key() -> Key {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Key::posix(&format!("/shmkit-test-heap-{}-{n}", std::process::id())).unwrap()
}

/// Child processes enter here.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let key: Key = args().parse().unwrap();
    match role.as_str() {
        "heap-reader" => {
            // A first mapping takes the address the parent's might have had.
            let _first = ManagedSegment::open(&key).unwrap();
            let heap = ManagedSegment::open(&key).unwrap();
            report(&format!("base {:x}", heap.base_address()));
            let records = heap.list::<Record>("records").unwrap().to_vec().unwrap();
            let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
            assert!(
                records.iter().all(|r| *r == record(r.id)),
                "a record arrived damaged"
            );
            report(&format!("records {}", ids.join(",")));
            report(&format!(
                "vec {:?}",
                heap.vector::<u32>("squares").unwrap().to_vec().unwrap()
            ));
            report(&format!(
                "text {}",
                heap.text("motto").unwrap().get().unwrap()
            ));
        }
        "heap-appender" => {
            let heap = ManagedSegment::open(&key).unwrap();
            let list = heap.list::<Record>("shared").unwrap();
            let vec = heap.vector::<u64>("shared-vec").unwrap();
            report("ready");
            assert_eq!(next_command(), "go");
            for i in 0..APPENDS {
                list.push_back(record(1_000_000 + i)).unwrap();
                vec.push(1_000_000 + i).unwrap();
            }
            report("done");
        }
        "heap-updater" => {
            let heap = ManagedSegment::open(&key).unwrap();
            let at = heap.find::<u64>("n").unwrap().unwrap();
            report("ready");
            assert_eq!(next_command(), "go");
            for _ in 0..APPENDS {
                heap.update(at, |n| *n += 1).unwrap();
            }
            report("done");
        }
        "hold-lock" => {
            // Holds the heap's lock inside an update until told to go on,
            // or to die holding it.
            let heap = ManagedSegment::open(&key).unwrap();
            let counter = heap.find_or_create("counter", || 0u64).unwrap();
            heap.update(counter, |n| {
                report("holding");
                if next_command() == "die" {
                    std::process::exit(0); // the lock word still names us
                }
                *n += 1;
            })
            .unwrap();
            report("released");
            let _ = next_command();
        }
        other => panic!("unknown role {other}"),
    }
}

const APPENDS: u64 = 2000;

#[test]
fn another_process_reads_the_structures_at_another_address() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 20, Mode::OWNER_ONLY).unwrap();
    let list = heap.list::<Record>("records").unwrap();
    for id in [3, 1, 4, 1, 5, 9, 2, 6] {
        list.push_back(record(id)).unwrap();
    }
    let squares = heap.vector::<u32>("squares").unwrap();
    for i in 0..100u32 {
        squares.push(i * i).unwrap();
    }
    heap.text("motto")
        .unwrap()
        .set("pointers become offsets — 指针变成偏移")
        .unwrap();

    let mut peer = Peer::spawn("heap-reader", &key.to_string(), None);
    let base = peer.expect_line();
    assert_ne!(
        base,
        format!("base {:x}", heap.base_address()),
        "the child mapped it at our address"
    );
    assert_eq!(peer.expect_line(), "records 3,1,4,1,5,9,2,6");
    let squares: Vec<u32> = (0..100).map(|i| i * i).collect();
    assert_eq!(peer.expect_line(), format!("vec {squares:?}"));
    assert_eq!(
        peer.expect_line(),
        "text pointers become offsets — 指针变成偏移"
    );
    peer.finish();
}

#[test]
fn two_processes_append_concurrently_and_nothing_is_lost() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 4 << 20, Mode::OWNER_ONLY).unwrap();
    let list = heap.list::<Record>("shared").unwrap();
    let vec = heap.vector::<u64>("shared-vec").unwrap();
    list.push_back(record(0)).unwrap();

    let mut peer = Peer::spawn("heap-appender", &key.to_string(), None);
    assert_eq!(peer.expect_line(), "ready");
    peer.send("go");
    for i in 0..APPENDS {
        list.push_back(record(1 + i)).unwrap();
        vec.push(1 + i).unwrap();
    }
    assert_eq!(peer.expect_line(), "done");
    peer.finish();

    let all = list.to_vec().unwrap();
    assert_eq!(all.len() as u64, 1 + 2 * APPENDS);
    assert!(all.iter().all(|r| *r == record(r.id)));
    let mine: Vec<u64> = all
        .iter()
        .map(|r| r.id)
        .filter(|&id| id < 1_000_000)
        .collect();
    let theirs: Vec<u64> = all
        .iter()
        .map(|r| r.id)
        .filter(|&id| id >= 1_000_000)
        .collect();
    assert_eq!(
        mine,
        (0..=APPENDS).collect::<Vec<_>>(),
        "each process's appends stay in order"
    );
    assert_eq!(theirs, (1_000_000..1_000_000 + APPENDS).collect::<Vec<_>>());
    let mut values = vec.to_vec().unwrap();
    values.sort_unstable();
    let mut expected: Vec<u64> = (1..=APPENDS)
        .chain(1_000_000..1_000_000 + APPENDS)
        .collect();
    expected.sort_unstable();
    assert_eq!(values, expected);
}

#[test]
fn one_segment_attached_twice_shows_the_same_structures() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let a = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    let b = ManagedSegment::open(&key).unwrap();
    assert_ne!(a.base_address(), b.base_address());
    a.list::<u64>("l").unwrap().push_back(7).unwrap();
    b.list::<u64>("l").unwrap().push_back(8).unwrap();
    assert_eq!(a.list::<u64>("l").unwrap().to_vec().unwrap(), vec![7, 8]);
    let at = b.find_or_create("pair", || [1u32, 2]).unwrap();
    assert_eq!(a.find::<[u32; 2]>("pair").unwrap(), Some(at));
    a.write(at, [3, 4]).unwrap();
    assert_eq!(b.read(at).unwrap(), [3, 4]);
}

#[test]
fn allocation_reuses_freed_space_and_reports_exhaustion() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 8192, Mode::OWNER_ONLY).unwrap();
    let before = heap.used().unwrap();
    let blocks: Vec<_> = (0..20u64).map(|i| heap.alloc([i; 16]).unwrap()).collect();
    for (i, at) in blocks.iter().enumerate() {
        assert_eq!(heap.read(*at).unwrap(), [i as u64; 16]);
    }
    for at in blocks
        .iter()
        .step_by(2)
        .chain(blocks.iter().skip(1).step_by(2))
    {
        heap.free(*at).unwrap();
    }
    assert_eq!(heap.used().unwrap(), before, "every byte came back");
    // Freed neighbours merged: one allocation of nearly everything fits.
    let big = heap.alloc([0u8; 7000]).unwrap();
    let err = heap.alloc([0u8; 2000]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                what: "allocation",
                ..
            }
        ),
        "{err}"
    );
    heap.free(big).unwrap();
    assert!(
        matches!(heap.free(big), Err(Error::InvalidArgument(_))),
        "double free is refused"
    );
}

#[test]
fn wrong_types_and_names_are_refused() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    heap.find_or_create("n", || 1u64).unwrap();
    assert!(matches!(
        heap.find_or_create("n", || 1u32),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        heap.find::<u64>(""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        heap.find::<u64>(&"x".repeat(65)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(heap.find::<u64>("missing").unwrap(), None);
    assert!(matches!(
        ManagedSegment::create(&unique_key(), 100, Mode::OWNER_ONLY),
        Err(Error::InvalidArgument(_))
    ));
}

/// Overwrites `bytes` at `offset` of the segment behind the heap's back.
fn poke(key: &Key, offset: usize, bytes: &[u8]) {
    Segment::open(key)
        .unwrap()
        .attach(ReadWrite)
        .unwrap()
        .write_at(offset, bytes)
        .unwrap();
}

/// Reads the u64 at `offset` of the segment behind the heap's back.
fn peek(key: &Key, offset: usize) -> u64 {
    let mut bytes = [0; 8];
    let mapping = Segment::open(key)
        .unwrap()
        .attach(shmkit::ReadOnly)
        .unwrap();
    mapping.read_at(offset, &mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}

/// The offset of the newest named object: the directory (at 56) starts
/// with it, and an entry is {next, object, …}.
fn newest_object(key: &Key) -> u64 {
    peek(key, peek(key, 56) as usize + 8)
}

#[test]
fn corrupt_links_give_errors_not_crashes() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    let list = heap.list::<u64>("l").unwrap();
    for i in 0..5 {
        list.push_back(i).unwrap();
    }
    let header = newest_object(&key);
    let (first, last) = (peek(&key, header as usize), peek(&key, header as usize + 8));

    // The last node links back to the first: a loop.
    poke(&key, last as usize, &first.to_le_bytes());
    let err = list.to_vec().unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(_)) && err.to_string().contains("loop"),
        "{err}"
    );

    // A link past the end, then a misaligned one.
    for bad in [1u64 << 40, first + 3, u64::MAX - 7, u64::MAX] {
        poke(&key, last as usize, &bad.to_le_bytes());
        assert!(
            matches!(list.to_vec(), Err(Error::Corrupt(_))),
            "link {bad}"
        );
    }

    // A length longer than the links.
    poke(&key, last as usize, &0u64.to_le_bytes());
    poke(&key, header as usize + 16, &9u64.to_le_bytes());
    assert!(matches!(list.to_vec(), Err(Error::Corrupt(_))));

    // A directory whose entry links to itself.
    let directory = peek(&key, 56);
    poke(&key, directory as usize, &directory.to_le_bytes());
    assert!(matches!(
        heap.find::<u64>("nothing"),
        Err(Error::Corrupt(_))
    ));

    // A free block whose size would run past the end of the address space.
    let free = peek(&key, 48);
    poke(&key, free as usize, &(u64::MAX - 15).to_le_bytes());
    assert!(matches!(heap.alloc(1u64), Err(Error::Corrupt(_))));

    // A free list that goes backwards.
    poke(&key, 48, &8u64.to_le_bytes());
    assert!(matches!(heap.alloc(1u64), Err(Error::Corrupt(_))));
}

#[test]
fn a_segment_without_a_heap_is_refused() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 8192, Mode::OWNER_ONLY).unwrap();
    drop(heap);
    poke(&key, 8, &1u32.to_le_bytes());
    assert!(matches!(
        ManagedSegment::open(&key),
        Err(Error::VersionMismatch { found: 1, .. })
    ));
    poke(&key, 0, b"NOTAHEAP");
    assert!(matches!(ManagedSegment::open(&key), Err(Error::Corrupt(_))));
}

#[test]
fn a_lock_word_naming_a_lease_nobody_holds_does_not_block() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    let list = heap.list::<u64>("l").unwrap();
    list.push_back(1).unwrap();

    // Damage says lease 0x7fff_0000 (no handle has it) holds the lock: it
    // is taken over after a short wait.
    poke(&key, 24, &0x7fff_0000u32.to_le_bytes());
    assert_eq!(list.to_vec().unwrap(), vec![1]);
}

#[test]
fn a_lock_word_naming_a_live_lease_is_busy_not_corrupt() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    let other = ManagedSegment::open(&key).unwrap();
    let list = heap.list::<u64>("l").unwrap();
    list.push_back(1).unwrap();
    // The creator has lease 1 and the second handle lease 2 (the header's
    // counter starts at 0). Say the live second handle holds the lock.
    poke(&key, 24, &2u32.to_le_bytes());
    let err = list.to_vec().unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(err.to_string().contains("busy"), "{err}");
    drop(other); // its lease goes: the lock is recovered
    assert_eq!(list.to_vec().unwrap(), vec![1]);
}

/// A heap with a `counter`, and a child that holds its lock.
fn held_by_child(key: &Key, wrapper: &[&str]) -> (ManagedSegment, Peer) {
    let heap = ManagedSegment::create(key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    heap.find_or_create("counter", || 0u64).unwrap();
    let mut peer = Peer::spawn_under(wrapper, "hold-lock", &key.to_string(), None);
    assert_eq!(peer.expect_line(), "holding");
    (heap, peer)
}

fn counter(heap: &ManagedSegment) -> Result<u64, Error> {
    let at = heap.find::<u64>("counter")?.unwrap();
    heap.read(at)
}

#[test]
fn a_holder_that_keeps_the_lock_over_two_seconds_makes_others_busy() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let (heap, mut peer) = held_by_child(&key, &[]);
    // The child is alive and stuck (as if stopped): retryable, not damage.
    let err = counter(&heap).unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    peer.send("go on");
    assert_eq!(peer.expect_line(), "released");
    assert_eq!(counter(&heap).unwrap(), 1, "the holder's update landed");
    peer.finish();
}

#[test]
fn a_holder_that_dies_holding_the_lock_is_detected() {
    for key in processes::unique_keys() {
        let _cleanup = Cleanup(key.clone());
        let (heap, mut peer) = held_by_child(&key, &[]);
        peer.send("die");
        let _ = peer.remaining_lines(); // its stdout closes as it exits
        drop(peer); // reaped
        assert_eq!(counter(&heap).unwrap(), 0, "{key}: the update never landed");
    }
}

#[test]
fn a_holder_in_another_pid_namespace_is_never_taken_for_dead() {
    if !processes::is_root() {
        eprintln!("skipped: unshare -pf needs root (CI runs as root)");
        return;
    }
    for key in processes::unique_keys() {
        let _cleanup = Cleanup(key.clone());
        let (heap, mut peer) = held_by_child(&key, &["unshare", "-pf", "--mount-proc"]);
        // Its pid (1 in its namespace) means nothing here: the lock is not
        // stolen, the caller is told to retry.
        let err = counter(&heap).unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{key}: {err}");
        // Dying, it is detected: by its lease (POSIX), or because no other
        // process has the segment attached any more (System V).
        peer.send("die");
        let _ = peer.remaining_lines();
        drop(peer);
        assert_eq!(counter(&heap).unwrap(), 0, "{key}");
    }
}

#[test]
fn containers_record_their_kind_and_element_type() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    heap.list::<u64>("list")
        .unwrap()
        .push_back(u64::MAX)
        .unwrap();
    heap.vector::<u8>("bytes").unwrap().push(1).unwrap();
    heap.text("text").unwrap().set("hi").unwrap();
    heap.find_or_create("value", || [0u64; 3]).unwrap();

    let refused = |result: Result<(), Error>, what: &str| {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{what}: {err}");
        err.to_string()
    };
    let text = refused(heap.list::<u32>("list").map(drop), "list of u32 over u64");
    assert!(
        text.contains("asked for a list of u32") && text.contains("found a list"),
        "{text}"
    );
    refused(heap.vector::<u64>("list").map(drop), "vector over list");
    refused(heap.text("list").map(drop), "text over list");
    refused(heap.text("bytes").map(drop), "text over vector of u8");
    refused(
        heap.vector::<u8>("text").map(drop),
        "vector of u8 over text",
    );
    refused(heap.list::<u64>("value").map(drop), "list over a value");
    refused(
        heap.find::<[u64; 3]>("list").map(drop),
        "a value over a list",
    );
    // The right types still work.
    assert_eq!(
        heap.list::<u64>("list").unwrap().to_vec().unwrap(),
        vec![u64::MAX]
    );
    assert_eq!(heap.text("text").unwrap().get().unwrap(), "hi");
    assert!(heap.find::<[u64; 3]>("value").unwrap().is_some());
}

#[test]
fn text_set_never_shows_an_empty_text() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    heap.text("t").unwrap().set("first").unwrap();
    let writer = {
        let key = key.clone();
        std::thread::spawn(move || {
            let heap = ManagedSegment::open(&key).unwrap();
            let text = heap.text("t").unwrap();
            for i in 0..2000 {
                text.set(if i % 2 == 0 { "even" } else { "odd!" }).unwrap();
            }
        })
    };
    let text = heap.text("t").unwrap();
    while !writer.is_finished() {
        let now = text.get().unwrap();
        assert!(["first", "even", "odd!"].contains(&now.as_str()), "{now:?}");
    }
    writer.join().unwrap();
}

#[test]
fn updates_from_two_processes_are_never_lost() {
    let key = unique_key();
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap();
    let at = heap.find_or_create("n", || 0u64).unwrap();
    let mut peer = Peer::spawn("heap-updater", &key.to_string(), None);
    assert_eq!(peer.expect_line(), "ready");
    peer.send("go");
    for _ in 0..APPENDS {
        heap.update(at, |n| *n += 1).unwrap();
    }
    assert_eq!(peer.expect_line(), "done");
    peer.finish();
    assert_eq!(heap.read(at).unwrap(), 2 * APPENDS);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes anywhere in a heap: every operation returns Ok or an
    /// error, never panics or reads out of bounds.
    #[test]
    fn random_damage_never_panics(writes in prop::collection::vec((0usize..8192, prop::collection::vec(any::<u8>(), 1..24)), 1..8)) {
        let key = unique_key();
        let _cleanup = Cleanup(key.clone());
        let heap = ManagedSegment::create(&key, 8192, Mode::OWNER_ONLY).unwrap();
        let list = heap.list::<u64>("l").unwrap();
        let vec = heap.vector::<u32>("v").unwrap();
        let text = heap.text("s").unwrap();
        for i in 0..10 {
            list.push_back(i).unwrap();
            vec.push(i as u32).unwrap();
        }
        text.set("hello").unwrap();
        for (offset, bytes) in &writes {
            let end = (offset + bytes.len()).min(8192);
            poke(&key, *offset, &bytes[..end - offset]);
        }
        let _ = list.to_vec();
        let _ = list.push_back(99);
        let _ = vec.to_vec();
        let _ = vec.push(7);
        let _ = vec.get(3);
        let _ = text.get();
        let _ = text.push_str("more");
        let _ = heap.alloc([1u64; 4]).and_then(|at| heap.free(at));
        let _ = heap.find_or_create("fresh", || 5u64);
        let _ = ManagedSegment::open(&key).map(|h| h.used());
    }
}
