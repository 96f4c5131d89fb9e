//! Fixed amounts of async ring work, for counting what the adapters of
//! `shmkit::aio` cost per message rather than timing them: instructions
//! under `valgrind --tool=callgrind`.
//!
//! ```text
//! async_cost one-thread SIZE COUNT WAY   # COUNT grant+commit, read in one
//!                                        # thread; WAY: async (AsyncProducer,
//!                                        # AsyncConsumer in one tokio task) or
//!                                        # block (the blocking endpoints, the
//!                                        # same loop without tokio)
//! ```
//!
//! Per message, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out. The async loop runs in
//! one task of a current-thread runtime, as a tokio program's loop would,
//! so tokio's cooperative budget makes it yield every 128 verbs, as it
//! would there.

use shmkit::aio::{AsyncConsumer, AsyncProducer};
use shmkit::ring::{Consumer, Producer, SEGMENT_PREFIX};
use shmkit::{Key, Segment};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match (
        args.first().map(String::as_str),
        args.get(3).map(String::as_str),
    ) {
        (Some("one-thread"), Some("async")) => one_thread_async(arg(1), arg(2)),
        (Some("one-thread"), Some("block")) => one_thread_block(arg(1), arg(2)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: async_cost one-thread SIZE COUNT async|block");
    std::process::exit(2)
}

/// Removes the ring's segment when dropped, however the run ends.
struct RemoveRing(Key);

impl RemoveRing {
    fn new(name: &str) -> RemoveRing {
        RemoveRing(Key::posix(&format!("{SEGMENT_PREFIX}{name}")).expect("a valid name"))
    }
}

impl Drop for RemoveRing {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

fn one_thread_async(size: usize, count: usize) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveRing::new(&name);
    let mut producer = AsyncProducer::open(&name).expect("a producer");
    let mut consumer = AsyncConsumer::open(&name).expect("a consumer");
    let message = vec![0x5a_u8; size];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let sum = runtime.block_on(async {
        let mut sum: u64 = 0;
        for _ in 0..count {
            let mut grant = producer.grant(size).await.expect("grant");
            grant.copy_from_slice(std::hint::black_box(&message));
            grant.commit();
            let got = consumer.read().await.expect("read");
            sum = sum.wrapping_add(u64::from(got[size - 1]));
        }
        sum
    });
    println!("{sum}");
}

fn one_thread_block(size: usize, count: usize) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveRing::new(&name);
    let mut producer = Producer::open(&name).expect("a producer");
    let mut consumer = Consumer::open(&name).expect("a consumer");
    let message = vec![0x5a_u8; size];
    let mut sum: u64 = 0;
    for _ in 0..count {
        let mut grant = producer.grant(size).expect("grant");
        grant.copy_from_slice(std::hint::black_box(&message));
        grant.commit();
        let got = consumer.read().expect("read");
        sum = sum.wrapping_add(u64::from(got[size - 1]));
    }
    println!("{sum}");
}
