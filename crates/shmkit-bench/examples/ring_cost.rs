//! Fixed amounts of ring work, for counting what they cost rather than
//! timing them: instructions under `valgrind --tool=callgrind`, system
//! calls under `perf stat` or `strace -c`. Timing on a shared machine says
//! little; these counts do not depend on it.
//!
//! ```text
//! ring_cost one-thread SIZE COUNT [BATCH]   # COUNT send+recv in one thread; with BATCH,
//!                                           # send_batch of BATCH messages, then drain
//! ring_cost stream SIZE COUNT WAITING [BATCH]   # COUNT messages to a consumer process;
//!                                               # WAITING: spin, adaptive or a spin in µs
//! ring_cost sides spin|block|batch SIZE COUNT   # shmkit bench's own stream loops
//!                                           # (sender, then receiver) in one thread:
//!                                           # count each side with callgrind's inclusive
//!                                           # cost of StreamSides::send and ::receive
//!                                           # (block: the rings shmkit-async awaits)
//! ring_cost bench-blocks spin|block|batch SIZE BLOCKS PER_BLOCK
//!                                           # those loops between two pinned processes,
//!                                           # timed as `blocks` times its stream
//! ring_cost park SECONDS                    # a consumer parked on an empty ring
//!                                           # (Adaptive waiting, its producer
//!                                           # alive): the CPU time it used
//! ring_cost blocks SIZE BLOCKS PER_BLOCK WAITING   # a stream to a consumer process
//!                                           # that reads every byte, the two
//!                                           # pinned to CPUs 0 and 1: the median
//!                                           # rate of its blocks of PER_BLOCK,
//!                                           # and memcpy's, measured the same way
//! ring_cost ab SIZE ROUNDS                  # round trips to a peer process, in
//!                                           # blocks that alternate two ways of
//!                                           # sending (see `ab`)
//! ```
//!
//! Per message, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out.
//!
//! `blocks` and `ab` are for timing on a busy machine: the median of many
//! short blocks leaves out the ones another process's time slice cut into,
//! which a stream's total over its elapsed time does not. `ab`, where two runs cannot be compared:
//! it alternates, every 1000 round trips, a send through `Producer::send`,
//! one through a grant filled front to back, and the latency floor (one
//! cache line bounced, as `shmkit bench` measures it), in the same two
//! processes, and prints each one's median round trip and its ratio to
//! the floor.

use std::process::{Command, Stdio};
use std::time::Duration;

use shmkit::ring::{Consumer, Options, Producer, Waiting, SEGMENT_PREFIX};
use shmkit::{Key, Segment};
use shmkit_bench::cost::{pin, RemoveSegment};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.first().map(String::as_str) {
        Some("one-thread") => one_thread(arg(1), arg(2), args.get(3).map(|_| arg(3))),
        Some("stream") => stream(
            arg(1),
            arg(2),
            waiting(args.get(3).unwrap_or_else(|| usage())),
            args.get(4).map(|_| arg(4)),
        ),
        Some("consume") => consume(&args[1], arg(2), arg(3), waiting(&args[4]), args.len() > 5),
        Some("ab") => ab(arg(1), arg(2)),
        Some("park") => park(arg(1)),
        Some("blocks") => blocks(arg(1), arg(2), arg(3), &args[4], None),
        Some("blocks-consume") => blocks(arg(1), arg(2), arg(3), &args[4], Some(&args[5])),
        Some("echo") => echo(&args[1], arg(2)),
        Some("sides") => sides(args.get(1).map(String::as_str), arg(2), arg(3)),
        Some("bench-blocks") => bench_blocks(&args[1], arg(2), arg(3), arg(4), None),
        Some("bench-blocks-receive") => {
            bench_blocks(&args[1], arg(2), arg(3), arg(4), Some(&args[5]))
        }
        _ => usage(),
    }
}

fn bench_transport(name: Option<&str>) -> shmkit_bench::Transport {
    match name {
        Some("spin") => shmkit_bench::Transport::ShmkitSpin,
        Some("block") => shmkit_bench::Transport::ShmkitBlock,
        Some("batch") => shmkit_bench::Transport::ShmkitBatch,
        _ => usage(),
    }
}

/// `bench-blocks`: the bench's own stream loops between two pinned
/// processes, timed in blocks as `blocks` times a plain stream.
fn bench_blocks(which: &str, size: usize, blocks: usize, per_block: usize, ring: Option<&str>) {
    let transport = bench_transport(Some(which));
    let total = (blocks * per_block) as u64;
    let Some(name) = ring else {
        pin(0);
        let name = format!("ring-cost-{}", std::process::id());
        let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .args(["bench-blocks-receive", which])
            .args([size, blocks, per_block].map(|n| n.to_string()))
            .arg(&name)
            .spawn()
            .expect("the receiver");
        shmkit_bench::cost::send_blocks(transport, size, &name, total).expect("send");
        assert!(child.wait().expect("the receiver ends").success());
        return;
    };
    pin(1);
    let mut rates =
        shmkit_bench::cost::receive_blocks(transport, size, name, blocks as u64, per_block as u64)
            .expect("receive");
    // The first tenth warms up.
    let mut rates = rates.split_off(blocks / 10);
    rates.sort_unstable_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{size} B, {which} (the bench's loops): median of {} blocks of {per_block}: {:.2} M msgs/s",
        rates.len(),
        median / 1e6
    );
}

fn sides(transport: Option<&str>, size: usize, count: usize) {
    let transport = match transport {
        Some("spin") | Some("block") | Some("batch") => bench_transport(transport),
        _ => usage(),
    };
    let mut sides = shmkit_bench::cost::StreamSides::new(transport, size, count as u64)
        .expect("a ring for the stream");
    let sent = sides.send();
    let received = sides.receive();
    assert_eq!((sent, received), (count as u64, count as u64));
}

fn usage() -> ! {
    eprintln!(
        "usage: ring_cost one-thread SIZE COUNT [BATCH] | stream SIZE COUNT WAITING [BATCH] \
         | blocks SIZE BLOCKS PER_BLOCK WAITING | park SECONDS | ab SIZE ROUNDS \
         | sides spin|block|batch SIZE COUNT | bench-blocks spin|block|batch SIZE BLOCKS PER_BLOCK"
    );
    std::process::exit(2)
}

fn waiting(text: &str) -> Waiting {
    match text {
        "spin" => Waiting::BusyPoll,
        "adaptive" => Waiting::Adaptive,
        micros => Waiting::SpinThenSleep(Duration::from_micros(
            micros.parse().unwrap_or_else(|_| usage()),
        )),
    }
}

fn one_thread(size: usize, count: usize, batch: Option<usize>) {
    let name = format!("ring-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let options = Options::default().waiting(Waiting::BusyPoll);
    let mut producer = Producer::open_with(&name, &options).expect("a producer");
    let mut consumer = Consumer::open_with(&name, &options).expect("a consumer");
    let message = vec![0x5a_u8; size];
    let mut buf = vec![0_u8; size];
    let mut sum: u64 = 0;
    match batch {
        None => {
            for _ in 0..count {
                producer.send(std::hint::black_box(&message)).expect("send");
                let n = consumer.recv(&mut buf).expect("recv");
                sum = sum.wrapping_add(u64::from(buf[n - 1]));
            }
        }
        Some(batch) => {
            for _ in 0..count / batch {
                let sent = producer
                    .send_batch(std::iter::repeat_n(&message, batch))
                    .expect("send_batch");
                assert_eq!(sent, batch);
                consumer
                    .drain(|bytes| {
                        buf.copy_from_slice(bytes);
                        sum = sum.wrapping_add(u64::from(buf[size - 1]));
                    })
                    .expect("drain");
            }
        }
    }
    println!("{sum}");
}

fn stream(size: usize, count: usize, waiting_mode: Waiting, batch: Option<usize>) {
    let name = format!("ring-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let options = Options::default().waiting(waiting_mode);
    let mut producer = Producer::open_with(&name, &options).expect("a producer");
    let mode = std::env::args().nth(4).expect("a waiting mode");
    let mut child = Command::new(std::env::current_exe().expect("this program"))
        .args([
            "consume",
            &name,
            &size.to_string(),
            &count.to_string(),
            &mode,
        ])
        .args(batch.map(|_| "drain"))
        .stdout(Stdio::inherit())
        .spawn()
        .expect("the consumer");
    let message = vec![0x5a_u8; size];
    match batch {
        None => {
            for _ in 0..count {
                producer.send(&message).expect("send");
            }
        }
        Some(batch) => {
            let sent = producer
                .send_batch(std::iter::repeat_n(&message, count))
                .expect("send_batch");
            assert_eq!(sent, count);
            let _ = batch;
        }
    }
    producer.close().expect("close the ring");
    assert!(child.wait().expect("the consumer ends").success());
}

fn consume(name: &str, size: usize, count: usize, waiting_mode: Waiting, drain: bool) {
    let options = Options::default().waiting(waiting_mode);
    let mut consumer = Consumer::open_with(name, &options).expect("a consumer");
    let mut buf = vec![0_u8; size];
    let mut received = 0;
    let mut sum: u64 = 0;
    while received < count {
        if drain {
            let n = consumer
                .drain(|bytes| {
                    buf.copy_from_slice(bytes);
                    sum = sum.wrapping_add(u64::from(buf[size - 1]));
                })
                .expect("drain");
            received += n;
            if n > 0 {
                continue;
            }
        }
        let message = consumer.read().expect("read");
        sum = sum.wrapping_add(u64::from(message[size - 1]));
        received += 1;
    }
    println!("received {received} ({sum})");
}

/// Round trips in blocks of this many, alternating the ways.
const AB_BLOCK: usize = 1000;

/// Sends `message` the way its first byte says: 0 through `Producer::send`,
/// 1 through a grant filled front to back.
fn send_as(producer: &mut Producer, message: &[u8]) {
    if message[0] == 0 {
        producer.send(message).expect("send");
    } else {
        let mut grant = producer.grant(message.len()).expect("grant");
        grant.copy_from_slice(message);
        grant.commit();
    }
}

/// The latency floor's cell: one cache line of a segment of its own,
/// which both processes bounce (as `shmkit bench` measures the floor).
fn floor_cell(name: &str, create: bool) -> (Segment, shmkit::Attachment<shmkit::ReadWrite>) {
    let key = Key::posix(&format!("/{name}-floor")).expect("a valid name");
    let segment = if create {
        Segment::create(&key, 4096, shmkit::Mode::OWNER_ONLY).expect("the floor segment")
    } else {
        Segment::open(&key).expect("the floor segment")
    };
    let mapping = segment.attach(shmkit::ReadWrite).expect("a mapping");
    (segment, mapping)
}

fn bounce(cell: &std::sync::atomic::AtomicU64, from: u64, to: u64) {
    use std::sync::atomic::Ordering;
    while cell.load(Ordering::Acquire) != from {
        std::hint::spin_loop();
    }
    cell.store(to, Ordering::Release);
}

fn ab(size: usize, rounds: usize) {
    let name = format!("ring-cost-{}", std::process::id());
    let (there, back) = (format!("{name}-there"), format!("{name}-back"));
    let (_remove_there, _remove_back) = (
        RemoveSegment::new(SEGMENT_PREFIX, &there),
        RemoveSegment::new(SEGMENT_PREFIX, &back),
    );
    let (floor_segment, floor) = floor_cell(&name, true);
    let cell = floor.atomic_u64(0).expect("the cell");
    let options = Options::default().waiting(Waiting::BusyPoll);
    let mut producer = Producer::open_with(&there, &options).expect("a producer");
    let mut consumer = Consumer::open_with(&back, &options).expect("a consumer");
    let mut child = Command::new(std::env::current_exe().expect("this program"))
        .args(["echo", &name, &rounds.to_string()])
        .spawn()
        .expect("the peer");
    let mut message = vec![0x5a_u8; size.max(1)];
    let mut times: [Vec<u64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut ping = 0;
    for round in 0..rounds {
        let way = (round / AB_BLOCK) % 3;
        let start;
        if way == 2 {
            if round % AB_BLOCK == 0 {
                message[0] = 2;
                producer.send(&message).expect("send");
            }
            start = std::time::Instant::now();
            cell.store(ping + 1, std::sync::atomic::Ordering::Release);
            bounce(cell, ping + 2, ping + 2);
            ping += 2;
        } else {
            message[0] = way as u8;
            start = std::time::Instant::now();
            send_as(&mut producer, &message);
            let reply = consumer.read().expect("the reply");
            assert_eq!(reply.len(), message.len());
            drop(reply);
        }
        let elapsed = start.elapsed().as_nanos() as u64;
        // The first block of each way warms up.
        if round >= 3 * AB_BLOCK {
            times[way].push(elapsed);
        }
    }
    assert!(child.wait().expect("the peer ends").success());
    let _ = floor_segment.remove();
    let median = |times: &mut Vec<u64>| {
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    };
    let [send, grant, floor] = times.each_mut().map(median);
    let f = floor.max(1) as f64;
    println!(
        "{size} B round trip p50: floor {floor} ns, send {send} ns ({:.2}x), front-to-back grant {grant} ns ({:.2}x)",
        send as f64 / f,
        grant as f64 / f
    );
}

fn echo(name: &str, rounds: usize) {
    let (there, back) = (format!("{name}-there"), format!("{name}-back"));
    let (_floor_segment, floor) = floor_cell(name, false);
    let cell = floor.atomic_u64(0).expect("the cell");
    let options = Options::default().waiting(Waiting::BusyPoll);
    let mut consumer = Consumer::open_with(&there, &options).expect("a consumer");
    let mut producer = Producer::open_with(&back, &options).expect("a producer");
    let mut round = 0;
    let mut ping = 0;
    while round < rounds {
        let message = consumer.read().expect("a message");
        if message[0] == 2 {
            drop(message);
            for _ in 0..AB_BLOCK.min(rounds - round) {
                bounce(cell, ping + 1, ping + 2);
                ping += 2;
            }
            round += AB_BLOCK;
            continue;
        }
        send_as(&mut producer, &message);
        round += 1;
    }
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Duration {
    // SAFETY: all zeroes is a valid timespec, which clock_gettime fills.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to our own timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn park(seconds: usize) {
    let name = format!("ring-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let _producer = Producer::open(&name).expect("a producer");
    let mut consumer = Consumer::open(&name).expect("a consumer");
    let wall = std::time::Instant::now();
    let before = thread_cpu_time();
    let waited = consumer.recv_timeout(&mut [0; 16], Duration::from_secs(seconds as u64));
    assert!(
        matches!(waited, Err(shmkit::Error::Timeout { .. })),
        "{waited:?}"
    );
    let used = thread_cpu_time() - before;
    let wall = wall.elapsed();
    println!(
        "a consumer parked for {wall:.2?} used {used:.2?} of CPU ({:.3} %)",
        100.0 * used.as_secs_f64() / wall.as_secs_f64()
    );
}

/// Pins this process to `cpu` (as `shmkit bench` pins its two processes).
/// The median rate of blocks of `per_block` copies of `size` bytes from
/// one buffer into another in this process, hot in cache: the reference
/// `shmkit bench` divides by (`÷memcpy`).
fn memcpy_blocks(size: usize, blocks: usize, per_block: usize) {
    let source = vec![0x5a_u8; size];
    let mut target = vec![0_u8; size];
    let mut rates = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let start = std::time::Instant::now();
        for _ in 0..per_block {
            target.copy_from_slice(std::hint::black_box(&source));
            std::hint::black_box(&mut target);
        }
        rates.push(per_block as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_unstable_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{size} B, memcpy in one process: median of {blocks} blocks of {per_block}: \
         {:.2} M msgs/s, {:.2} GB/s",
        median / 1e6,
        median * size as f64 / 1e9
    );
}

fn blocks(size: usize, blocks: usize, per_block: usize, mode: &str, ring: Option<&str>) {
    let options = Options::default().waiting(waiting(mode));
    let total = blocks * per_block;
    let Some(name) = ring else {
        pin(0);
        memcpy_blocks(size, blocks, per_block);
        let name = format!("ring-cost-{}", std::process::id());
        let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
        let mut producer = Producer::open_with(&name, &options).expect("a producer");
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .arg("blocks-consume")
            .args([size, blocks, per_block].map(|n| n.to_string()))
            .args([mode, &name])
            .spawn()
            .expect("the consumer");
        let message = vec![0x5a_u8; size];
        for _ in 0..total {
            producer.send(&message).expect("send");
        }
        producer.close().expect("close the ring");
        assert!(child.wait().expect("the consumer ends").success());
        return;
    };
    pin(1);
    let mut consumer = Consumer::open_with(name, &options).expect("a consumer");
    let mut rates = Vec::with_capacity(blocks);
    let mut sum: u64 = 0;
    for block in 0..blocks {
        let start = std::time::Instant::now();
        for _ in 0..per_block {
            let message = consumer.read().expect("read");
            for word in message.chunks_exact(8) {
                sum = sum.wrapping_add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
            }
        }
        // The first tenth warms up.
        if block >= blocks / 10 {
            rates.push(per_block as f64 / start.elapsed().as_secs_f64());
        }
    }
    rates.sort_unstable_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{size} B, {mode}: median of {} blocks of {per_block}: {:.2} M msgs/s, {:.2} GB/s ({sum})",
        rates.len(),
        median / 1e6,
        median * size as f64 / 1e9
    );
}
