//! Fuzzes the consumer's side of a ring: opening a ring segment whose
//! bytes are the input, and reading messages out of it. Whatever the bytes,
//! `Consumer::open`, the receiving verbs and dropping the consumer must
//! return or fail cleanly: no panic, no out-of-bounds access (the
//! sanitizers watch), no hang.
//!
//! Each input is laid over the image of a valid, empty ring with a 4 KiB
//! data area, from the offset its first byte picks (its two low bits): 0
//! (the whole header), 128 (all but the configuration line), 256 (the
//! consumer's and wait lines on) or 512 (the records only), so that most
//! inputs get past the header checks to the records. The next two bits
//! pick the verbs: `try_recv`; `try_read`; or the blocking `recv` and
//! `read`, whose fast paths (`peek_message`) the other two never take.
//! For those the image's `closed` word is set afterwards, so that an empty
//! ring ends the loop with `Closed` instead of a wait for a producer. The image lives in a POSIX segment
//! named after this process (`/dev/shm/shmkit.ring.fuzz-PID`). The segment
//! is made and removed for every input, so a run leaves nothing behind when
//! it ends, however it ends (libFuzzer exits without running destructors).
//! Only a crash in the middle of an input can leave one: the next run
//! removes segments of fuzz processes that no longer exist.
//!
//! Run: `cargo fuzz run -s none ring_open_read` (or with the default
//! address sanitizer on a nightly toolchain).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::ring::Consumer;
use shmkit::{Key, Mode, ReadWrite, Segment};

/// Offsets from docs/FORMAT.md.
const HEADER: usize = 512;
const CAPACITY: usize = 4096;
const SIZE: usize = HEADER + CAPACITY;
const PREFIX: &str = "shmkit.ring.fuzz-";
/// The wait line's `closed` word (1: the producer closed the stream).
const CLOSED: usize = 384 + 8;

/// A valid ring header: magic, version 2, flags 0, capacity 4096,
/// max_message 2032, data_offset 512; everything else zero.
fn template() -> Vec<u8> {
    let mut image = vec![0u8; SIZE];
    image[0..8].copy_from_slice(b"SHMKRING");
    image[8..12].copy_from_slice(&2u32.to_le_bytes());
    image[16..24].copy_from_slice(&(CAPACITY as u64).to_le_bytes());
    image[24..32].copy_from_slice(&(CAPACITY as u64 / 2 - 16).to_le_bytes());
    image[32..40].copy_from_slice(&(HEADER as u64).to_le_bytes());
    image
}

fuzz_target!(|data: &[u8]| {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| shmkit_fuzz::remove_leftovers(PREFIX));

    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let at = [0, 128, 256, HEADER][usize::from(pick % 4)];
    let verbs = (pick >> 2) % 4;
    let mut image = template();
    let n = bytes.len().min(SIZE - at);
    image[at..at + n].copy_from_slice(&bytes[..n]);
    if verbs >= 2 {
        image[CLOSED..CLOSED + 4].copy_from_slice(&1u32.to_le_bytes());
    }
    if image[..8] == [0; 8] {
        // A zero magic means "the creator has not finished": opening waits
        // (5 s) for it, which is a timeout, not a parse.
        return;
    }

    let name = format!("fuzz-{}", std::process::id());
    let key = Key::posix(&format!("/{PREFIX}{}", std::process::id())).unwrap();
    // Left by an input that crashed, or by a pid reused from a crashed run.
    if let Ok(old) = Segment::open(&key) {
        let _ = old.remove();
    }
    let segment = Segment::create(&key, SIZE as u64, Mode::OWNER_ONLY).unwrap();
    {
        let memory = segment.attach(ReadWrite).unwrap();
        memory.write_at(0, &image).unwrap();
        if let Ok(mut consumer) = Consumer::open(&name) {
            let mut buf = vec![0u8; CAPACITY];
            // Corrupt records may go round the ring forever: bound the loop.
            for round in 0..2 * CAPACITY {
                let received = match verbs {
                    0 => consumer.try_recv(&mut buf).map(drop),
                    1 => consumer.try_read().map(|message| {
                        std::hint::black_box(message.first().copied());
                    }),
                    _ if round % 2 == 0 => consumer.recv(&mut buf).map(drop),
                    _ => consumer.read().map(|message| {
                        std::hint::black_box(message.last().copied());
                    }),
                };
                if received.is_err() {
                    break;
                }
            }
            let _ = consumer.drain(|_| ());
        }
    }
    // Dropping the consumer may have removed it already (a closed, drained
    // ring); either way it is gone now.
    let _ = segment.remove();
});
