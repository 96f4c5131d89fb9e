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
//! async_cost blocks SIZE BLOCKS PER_BLOCK WAY   # a stream to a consumer
//!                                        # process, the two pinned to CPUs 0
//!                                        # and 1, both sides WAY: the median
//!                                        # rate of the consumer's blocks of
//!                                        # PER_BLOCK (as `ring_cost blocks`)
//! ```
//!
//! `blocks` is for timing on a busy machine: the median of many short
//! blocks leaves out the ones another process's time slice cut into. Run
//! `block` and `async` one after the other, more than once, and compare.
//!
//! Per message, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out. The async loop runs in
//! one task of a current-thread runtime, as a tokio program's loop would,
//! so tokio's cooperative budget makes it yield every 128 verbs, as it
//! would there.

use shmkit::aio::{AsyncConsumer, AsyncProducer};
use shmkit::ring::{Consumer, Producer, SEGMENT_PREFIX};
use shmkit_bench::cost::{pin, RemoveSegment};

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
        (Some("blocks"), Some(_)) if args.len() == 5 => {
            blocks(arg(1), arg(2), arg(3), &args[4], None);
        }
        (Some("blocks-consume"), Some(_)) => {
            blocks(arg(1), arg(2), arg(3), &args[4], Some(&args[5]))
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: async_cost one-thread SIZE COUNT async|block | blocks SIZE BLOCKS PER_BLOCK async|block"
    );
    std::process::exit(2)
}

fn one_thread_async(size: usize, count: usize) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
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
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
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

/// Pins this process to `cpu` (as `shmkit bench` pins its two processes).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
}

/// The producer (no `ring`: it makes one and starts the consumer) or the
/// consumer of a stream of `blocks * per_block` messages, both `way`.
fn blocks(size: usize, blocks: usize, per_block: usize, way: &str, ring: Option<&str>) {
    let total = blocks * per_block;
    let Some(name) = ring else {
        pin(0);
        let name = format!("async-cost-{}", std::process::id());
        let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
        let producer = Producer::open(&name).expect("a producer");
        let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
            .arg("blocks-consume")
            .args([size, blocks, per_block].map(|n| n.to_string()))
            .args([way, &name])
            .spawn()
            .expect("the consumer");
        let message = vec![0x5a_u8; size];
        if way == "async" {
            let mut producer = AsyncProducer::from(producer);
            runtime().block_on(async {
                for _ in 0..total {
                    let mut grant = producer.grant(size).await.expect("grant");
                    grant.copy_from_slice(&message);
                    grant.commit();
                }
            });
            producer.into_inner().close().expect("close the ring");
        } else {
            let mut producer = producer;
            for _ in 0..total {
                let mut grant = producer.grant(size).expect("grant");
                grant.copy_from_slice(&message);
                grant.commit();
            }
            producer.close().expect("close the ring");
        }
        assert!(child.wait().expect("the consumer ends").success());
        return;
    };
    pin(1);
    let consumer = Consumer::open(name).expect("a consumer");
    let mut rates = Vec::with_capacity(blocks);
    let mut sum: u64 = 0;
    let mut add = |message: &[u8]| {
        for word in message.chunks_exact(8) {
            sum = sum.wrapping_add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
    };
    if way == "async" {
        let mut consumer = AsyncConsumer::from(consumer);
        runtime().block_on(async {
            for block in 0..blocks {
                let start = std::time::Instant::now();
                for _ in 0..per_block {
                    add(&consumer.read().await.expect("read"));
                }
                if block >= blocks / 10 {
                    rates.push(per_block as f64 / start.elapsed().as_secs_f64());
                }
            }
        });
    } else {
        let mut consumer = consumer;
        for block in 0..blocks {
            let start = std::time::Instant::now();
            for _ in 0..per_block {
                add(&consumer.read().expect("read"));
            }
            // The first tenth warms up.
            if block >= blocks / 10 {
                rates.push(per_block as f64 / start.elapsed().as_secs_f64());
            }
        }
    }
    rates.sort_unstable_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{size} B, {way}: median of {} blocks of {per_block}: {:.2} M msgs/s ({sum})",
        rates.len(),
        median / 1e6
    );
}
