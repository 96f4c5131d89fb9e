//! Fuzzes a topic's readers of shared bytes: a valid topic (two publisher
//! lanes of 4 KiB, four subscriber places, a few messages) has the input
//! laid over it, from the offset its first byte picks (0: the header, 512:
//! the lane headers, 768: the subscriber table, 4096: the first lane), and
//! then a new subscriber and a new publisher open it and receive and send.
//! When bit 3 of the first byte is set, the first publisher leaves before
//! the new one opens, so that the new one takes over the first lane: it
//! walks that lane's records from `head` through `tail` to the first empty
//! word (format version 2 commits a record by its word, so a dead
//! publisher's last records may lie past `tail`).
//! Whatever the bytes, every call must return or fail cleanly: no panic, no
//! out-of-bounds access, no hang. Each input's topic is made and removed
//! (`/dev/shm/shmkit.topic.fuzz-PID`); a run that crashed leaves one, which
//! the next run removes.
//!
//! Run: `cargo fuzz run -s none topic_open_read`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::topic::{Options, Policy, Publisher, Subscriber};
use shmkit::{Key, ReadWrite, Segment};

const PREFIX: &str = "shmkit.topic.fuzz-";

fuzz_target!(|data: &[u8]| {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| shmkit_fuzz::remove_leftovers(PREFIX));

    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let at = [0usize, 512, 768, 4096][usize::from(pick % 4)];
    let policy = if pick & 4 == 0 {
        Policy::Block
    } else {
        Policy::DropOldest
    };
    let options = Options::default()
        .capacity(4096)
        .max_publishers(2)
        .max_subscribers(4)
        .policy(policy)
        .history(u32::from(pick >> 4));
    let name = format!("fuzz-{}", std::process::id());
    let key = Key::posix(&format!("/{PREFIX}{}", std::process::id())).unwrap();
    if let Ok(old) = Segment::open(&key) {
        let _ = old.remove();
    }
    {
        let keeper = Subscriber::open_with(&name, &options).unwrap();
        let mut publisher = Publisher::open_with(&name, &options).unwrap();
        for n in 0u64..12 {
            let _ = publisher.try_send(&n.to_le_bytes().repeat(n as usize * 5));
        }
        let segment = Segment::open(&key).unwrap();
        let memory = segment.attach(ReadWrite).unwrap();
        let n = bytes.len().min(memory.len() - at);
        let mut image = vec![0u8; n];
        image.copy_from_slice(&bytes[..n]);
        if at == 0 && image.len() >= 8 && image[..8] == [0; 8] {
            // A zero magic means "not initialised yet": opening waits for it.
            image[..8].copy_from_slice(b"SHMKTOPC");
        }
        memory.write_at(at, &image).unwrap();
        let mut buf = vec![0u8; 4096];
        if let Ok(mut subscriber) = Subscriber::open_with(&name, &options) {
            for _ in 0..64 {
                match subscriber.try_recv(&mut buf) {
                    Ok(_) | Err(shmkit::Error::Lagged { .. }) => {}
                    Err(_) => break,
                }
            }
        }
        let mut publisher = Some(publisher);
        if pick & 8 != 0 {
            drop(publisher.take());
        }
        if let Ok(mut second) = Publisher::open_with(&name, &options) {
            let _ = second.try_send(b"after");
            if let Ok(mut subscriber) = Subscriber::open_with(&name, &options) {
                let _ = subscriber.try_recv(&mut buf);
            }
        }
        if let Some(publisher) = &mut publisher {
            let _ = publisher.try_send(b"still");
        }
        drop((publisher, keeper));
    }
    if let Ok(segment) = Segment::open(&key) {
        let _ = segment.remove();
    }
});
