//! Fuzzes the producer's side of a ring: opening a ring as its producer,
//! which recovers the tail a dead producer left by walking its records,
//! then sending into it. Two kinds of input, chosen by the first byte:
//!
//! - **A crash** (even first byte): the rest describes a ring as a producer
//!   that died would leave it, built by the rules of docs/FORMAT.md: records
//!   of the lengths the input gives, from a start position anywhere in the
//!   first laps, over stale bytes of an older lap, with padding where a
//!   record would wrap; the consumer's head after some of them; the
//!   published tail behind the true one by some records (the producer died
//!   after storing their words, before publishing the tail), or behind the
//!   head (the consumer read what was never published). The oracle: the
//!   new producer opens, finds the true tail, and a message it sends
//!   arrives after exactly the unread records, in order; nothing is lost,
//!   repeated or invented.
//! - **Hostile bytes** (odd first byte): the rest is laid over a valid empty
//!   ring from offset 128 (the producer's line on) or 512 (the records
//!   only). `Producer::open`, sending with every verb, and a consumer
//!   draining afterwards must return or fail cleanly: no panic, no
//!   out-of-bounds access, no hang.
//!
//! The ring is a POSIX segment named after this process
//! (`/dev/shm/shmkit.ring.fuzz-producer-PID`), made and removed for every
//! input, as in `ring_open_read`. Its configuration line is copied from a
//! ring the library makes once at the start, so the target follows the
//! format version.
//!
//! Run: `cargo fuzz run -s none ring_producer_open`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::ring::{Consumer, Options, Producer};
use shmkit::{Key, Mode, ReadWrite, Segment};

/// Offsets and constants from docs/FORMAT.md.
const HEADER: usize = 512;
const CAPACITY: u64 = 4096;
const MAX_MESSAGE: u64 = CAPACITY / 2 - 16;
const SIZE: usize = HEADER + CAPACITY as usize;
const TAIL_AT: usize = 128;
const SENT_AT: usize = 144;
const HEAD_AT: usize = 256;
const RECEIVED_AT: usize = 272;
const KIND_MESSAGE: u64 = 1;
const KIND_PADDING: u64 = 2;
const PREFIX: &str = "shmkit.ring.fuzz-producer-";
const TEMPLATE_PREFIX: &str = "shmkit.ring.fuzz-producer-template-";

/// A valid, empty ring: the configuration line of a ring this library just
/// made (so the format version is whatever it writes), everything else zero.
fn template() -> Vec<u8> {
    static CONFIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let name = format!("fuzz-producer-template-{}", std::process::id());
        let producer = Producer::open_with(&name, &options()).unwrap();
        let key = Key::posix(&format!("/shmkit.ring.{name}")).unwrap();
        let segment = Segment::open(&key).unwrap();
        let mut config = vec![0u8; 128];
        segment
            .attach(ReadWrite)
            .unwrap()
            .read_at(0, &mut config)
            .unwrap();
        drop(producer);
        let _ = segment.remove();
        assert_eq!(&config[..8], b"SHMKRING");
        assert_eq!(config[16..24], CAPACITY.to_le_bytes());
        assert_eq!(config[24..32], MAX_MESSAGE.to_le_bytes());
        config
    });
    let mut image = vec![0u8; SIZE];
    image[..128].copy_from_slice(config);
    image
}

fn put_u64(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn record_size(len: u64) -> u64 {
    (8 + len + 7) & !7
}

fn offset(position: u64) -> usize {
    HEADER + (position % CAPACITY) as usize
}

/// Message `i`'s bytes: its number, then a pattern, so that a message
/// read in the wrong place or twice shows.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

/// Reads input bytes as small numbers, 0 once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
}

/// What a dead producer left, and what the oracle expects of it.
struct Crash {
    image: Vec<u8>,
    /// The messages not yet read, in order.
    unread: Vec<Vec<u8>>,
    /// Free bytes after the true tail (rule 4 keeps 8 of them).
    free: u64,
}

fn crash(input: &mut Input) -> Crash {
    let mut image = template();
    // Stale bytes of an older lap everywhere (bounded by the input).
    let stale = input.byte();
    for (i, byte) in image[HEADER..].iter_mut().enumerate() {
        *byte = stale.wrapping_mul(i as u8 | 1);
    }
    let start = u64::from(input.u16()) * 8;
    let count = usize::from(input.byte() % 24);
    let mut tail = start;
    let mut records = Vec::new(); // (position after the record, message)
    let mut messages = Vec::new();
    for i in 0..count {
        let len = u64::from(input.u16()) % (MAX_MESSAGE + 1);
        let size = record_size(len);
        let to_end = CAPACITY - tail % CAPACITY;
        let padding = if size > to_end { to_end } else { 0 };
        if tail + padding + size + 8 - start > CAPACITY {
            break; // full: the producer would have waited
        }
        if padding > 0 {
            put_u64(&mut image, offset(tail), KIND_PADDING << 32 | (padding - 8));
            tail += padding;
            records.push((tail, None));
        }
        let bytes = message(i, len as usize);
        put_u64(&mut image, offset(tail), KIND_MESSAGE << 32 | len);
        let at = offset(tail) + 8;
        image[at..at + len as usize].copy_from_slice(&bytes);
        tail += size;
        records.push((tail, Some(messages.len())));
        messages.push(bytes);
    }
    // Rule 4: the word at the tail is empty.
    put_u64(&mut image, offset(tail), 0);
    // The consumer read some records: its head is after one of them.
    let read = usize::from(input.byte()) % (records.len() + 1);
    let head = if read == 0 {
        start
    } else {
        records[read - 1].0
    };
    let unread_from = records[..read]
        .iter()
        .rev()
        .find_map(|&(_, m)| m)
        .map_or(0, |m| m + 1);
    // The producer died with its tail published some records back (before
    // or after the head).
    let lag = usize::from(input.byte()) % (records.len() + 1);
    let published = match records.len() - lag {
        0 => start,
        n => records[n - 1].0,
    };
    put_u64(&mut image, TAIL_AT, published);
    put_u64(&mut image, HEAD_AT, head);
    put_u64(&mut image, SENT_AT, u64::from(input.byte()));
    put_u64(&mut image, RECEIVED_AT, u64::from(input.byte()));
    Crash {
        image,
        unread: messages[unread_from..].to_vec(),
        free: CAPACITY - (tail - head),
    }
}

/// Makes the ring segment holding `image`, runs `f` on the ring's name,
/// and removes the segment.
fn with_ring(image: &[u8], f: impl FnOnce(&str)) {
    let name = format!("fuzz-producer-{}", std::process::id());
    let key = Key::posix(&format!("/{PREFIX}{}", std::process::id())).unwrap();
    // Left by an input that crashed, or by a pid reused from a crashed run.
    if let Ok(old) = Segment::open(&key) {
        let _ = old.remove();
    }
    let segment = Segment::create(&key, SIZE as u64, Mode::OWNER_ONLY).unwrap();
    segment
        .attach(ReadWrite)
        .unwrap()
        .write_at(0, image)
        .unwrap();
    f(&name);
    // A closed, drained ring may have removed itself; either way it is
    // gone now.
    let _ = segment.remove();
}

fn options() -> Options {
    Options::default().capacity(CAPACITY)
}

fn check_crash(input: &mut Input) {
    let crash = crash(input);
    let len = u64::from(input.u16()) % (MAX_MESSAGE + 1);
    let new = message(255, len as usize);
    with_ring(&crash.image, |name| {
        let mut producer = Producer::open_with(name, &options())
            .unwrap_or_else(|err| panic!("a producer could not take over a crashed ring: {err}"));
        let fits_at_once = record_size(len) * 2 + 8 <= crash.free;
        match producer.try_send(&new) {
            Ok(()) => {}
            // Room depends on where the tail is (padding): only a message
            // that fits wherever it lands must go in.
            Err(shmkit::Error::Full { .. }) if !fits_at_once => {
                drop(producer);
                return;
            }
            Err(err) => panic!(
                "sending {len} bytes after recovery, {} free: {err}",
                crash.free
            ),
        }
        let mut consumer = Consumer::open_with(name, &options()).unwrap();
        let mut got = Vec::new();
        let taken = consumer.drain(|m| got.push(m.to_vec())).unwrap();
        assert_eq!(taken, got.len());
        let mut expected = crash.unread.clone();
        expected.push(new.clone());
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            expected.iter().map(Vec::len).collect::<Vec<_>>(),
            "the lengths of what arrived after the takeover"
        );
        assert!(got == expected, "what arrived after the takeover");
        drop(producer);
        drop(consumer);
    });
}

fn check_hostile(at: usize, bytes: &[u8]) {
    let mut image = template();
    let n = bytes.len().min(SIZE - at);
    image[at..at + n].copy_from_slice(&bytes[..n]);
    with_ring(&image, |name| {
        if let Ok(mut producer) = Producer::open_with(name, &options()) {
            let payload = [0x5au8; MAX_MESSAGE as usize + 1];
            for len in [0, 1, 9, 100, 1000, 2032, 2033] {
                let _ = producer.try_send(&payload[..len]);
            }
            let _ = producer.send_timeout(&payload[..64], std::time::Duration::ZERO);
            if let Ok(grant) = producer.try_grant(300) {
                grant.commit_len(20);
            }
            if let Ok(grant) = producer.try_grant(2000) {
                grant.abort();
            }
            drop(producer);
        }
        if let Ok(mut consumer) = Consumer::open_with(name, &options()) {
            let _ = consumer.drain(|_| ());
        }
    });
}

fuzz_target!(|data: &[u8]| {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        shmkit_fuzz::remove_leftovers(PREFIX);
        shmkit_fuzz::remove_leftovers(TEMPLATE_PREFIX);
    });

    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        check_crash(&mut Input(rest));
    } else {
        check_hostile([TAIL_AT, HEADER][usize::from(pick / 2 % 2)], rest);
    }
});
