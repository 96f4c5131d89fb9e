//! Fuzzes a managed segment's heap: opening a segment whose bytes are the
//! input and using its directory, allocator, list, vector and string. Every
//! call must return a value or an error: no panic, no out-of-bounds access,
//! no endless walk.
//!
//! Each input is laid over the image of a valid heap (a list, a vector and
//! a string in an 8 KiB segment) from the offset its first byte picks: 0
//! (the header) or 128, 1024, 4096 (the blocks). The lock words are then
//! cleared: a lock word naming a lease nobody holds makes every call wait
//! 20 ms for the holder's liveness check, and one naming this run's own
//! lease 2 s before `Busy`, which is a wait, not a parse (the proptest in
//! tests/managed.rs covers damaged lock words); so is a zero magic, which
//! opening waits 5 s for. The
//! segment is `/dev/shm/shmkit-fuzz-heap-PID`, made and removed for every
//! input; a run that crashes midway leaves one, which the next run removes.
//!
//! Run: `cargo fuzz run -s none managed_heap`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shmkit::offset::ManagedSegment;
use shmkit::{Key, Mode, ReadOnly, ReadWrite, Segment};

const SIZE: usize = 8192;
const PREFIX: &str = "shmkit-fuzz-heap-";

fn key() -> Key {
    Key::posix(&format!("/{PREFIX}{}", std::process::id())).unwrap()
}

fn remove(key: &Key) {
    if let Ok(segment) = Segment::open(key) {
        let _ = segment.remove();
    }
}

/// The bytes of a valid heap with one of each container.
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        shmkit_fuzz::remove_leftovers(PREFIX);
        let key = key();
        remove(&key);
        let heap = ManagedSegment::create(&key, SIZE as u64, Mode::OWNER_ONLY).unwrap();
        let list = heap.list::<u64>("list").unwrap();
        let vec = heap.vector::<u32>("vec").unwrap();
        for i in 0..8 {
            list.push_back(i).unwrap();
            vec.push(i as u32).unwrap();
        }
        heap.text("text").unwrap().set("héllo").unwrap();
        let mut bytes = vec![0; SIZE];
        Segment::open(&key)
            .unwrap()
            .attach(ReadOnly)
            .unwrap()
            .read_at(0, &mut bytes)
            .unwrap();
        remove(&key);
        bytes
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let at = [0, 128, 1024, 4096][usize::from(pick % 4)];
    let mut image = template().to_vec();
    let n = bytes.len().min(SIZE - at);
    image[at..at + n].copy_from_slice(&bytes[..n]);
    image[24..40].fill(0); // the lock word, waiters and holder's start time
    image[80..88].fill(0); // the holder's pid namespace
    if image[..8] == [0; 8] {
        // A zero magic means "the creator has not finished": opening waits
        // (5 s) for it, which is a timeout, not a parse.
        return;
    }

    let key = key();
    remove(&key);
    let segment = Segment::create(&key, SIZE as u64, Mode::OWNER_ONLY).unwrap();
    segment
        .attach(ReadWrite)
        .unwrap()
        .write_at(0, &image)
        .unwrap();
    if let Ok(heap) = ManagedSegment::open(&key) {
        if let Ok(list) = heap.list::<u64>("list") {
            let _ = list.to_vec();
            let _ = list.push_back(9);
        }
        if let Ok(vec) = heap.vector::<u32>("vec") {
            let _ = vec.to_vec();
            let _ = vec.get(3);
            let _ = vec.push(9);
        }
        if let Ok(text) = heap.text("text") {
            let _ = text.get();
            let _ = text.push_str("!");
            let _ = text.set("new");
        }
        if let Ok(at) = heap.alloc([7u64; 4]) {
            let _ = heap.read(at);
            let _ = heap.update(at, |v| v[0] += 1);
            let _ = heap.free(at);
        }
        let _ = heap.used();
    }
    let _ = segment.remove();
});
