//! The ring's hot paths in one process, for numbers that CI runs can
//! compare (`cargo bench -p shmkit --bench ring`; add `-- --quick` for a
//! short run). Between two processes, see `shmkit bench`.
//!
//! - `send_recv/SIZE`: one thread sends a message (copy in) and receives it
//!   (copy out), alternately: the whole cost of a message without another
//!   core in the way.
//! - `grant_read/SIZE`: the zero-copy verbs, alternately in one thread:
//!   grant, write the first 8 bytes in place, commit; read in place, load
//!   the first 8 bytes, release. The protocol's own cost, copies aside.
//! - `drain/64x64`: 64 messages of 64 bytes sent, then handed over by one
//!   `Consumer::drain` whose closure reads every byte.
//! - `stream_two_threads/64`: this thread streams 64-byte messages to a
//!   consumer thread (both busy-polling) that reads each in place and sums
//!   its bytes: the cross-core cost, noisier than the rest (it includes a
//!   thread start per sample).
//!
//! Each case uses a ring of its own, named `criterion-PID-N`, removed when
//! the case ends.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmkit::ring::{Consumer, Options, Producer, Waiting, SEGMENT_PREFIX};
use shmkit::{Key, Segment};

const SIZES: [usize; 4] = [8, 64, 1024, 65536];

/// Both ends of a fresh busy-polling ring; dropping it removes the ring.
struct Ring {
    producer: Producer,
    consumer: Consumer,
    // Declared last: removes the ring after both ends left it.
    _remove: RemoveRing,
}

impl Ring {
    fn new() -> Ring {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("criterion-{}-{n}", std::process::id());
        let remove =
            RemoveRing(Key::posix(&format!("{SEGMENT_PREFIX}{name}")).expect("a valid name"));
        let options = Options::default().waiting(Waiting::BusyPoll);
        Ring {
            producer: Producer::open_with(&name, &options).expect("open the producer"),
            consumer: Consumer::open_with(&name, &options).expect("open the consumer"),
            _remove: remove,
        }
    }
}

/// Removes a ring's segment when dropped. The ring removes itself once
/// both ends left it drained; this is for a case that panicked half-way.
struct RemoveRing(Key);

impl Drop for RemoveRing {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

fn send_recv(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_recv");
    for size in SIZES {
        let mut ring = Ring::new();
        let message = vec![0x5a_u8; size];
        let mut buf = vec![0_u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                ring.producer.send(black_box(&message)).unwrap();
                let n = ring.consumer.recv(&mut buf).unwrap();
                black_box(&buf[..n]);
            })
        });
    }
    group.finish();
}

fn grant_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("grant_read");
    for size in SIZES {
        let mut ring = Ring::new();
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            let mut sequence: u64 = 0;
            b.iter(|| {
                let mut grant = ring.producer.grant(size).unwrap();
                grant[..8].copy_from_slice(&sequence.to_le_bytes());
                grant.commit();
                let message = ring.consumer.read().unwrap();
                black_box(&message[..8]);
                message.release();
                sequence += 1;
            })
        });
    }
    group.finish();
}

fn drain(c: &mut Criterion) {
    const BATCH: usize = 64;
    const SIZE: usize = 64;
    let mut group = c.benchmark_group("drain");
    let mut ring = Ring::new();
    let message = [0x5a_u8; SIZE];
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("{BATCH}x{SIZE}"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                ring.producer.send(&message).unwrap();
            }
            let mut sum: u64 = 0;
            let drained = ring
                .consumer
                .drain(|bytes| {
                    sum = bytes
                        .iter()
                        .fold(sum, |sum, &byte| sum.wrapping_add(u64::from(byte)));
                })
                .unwrap();
            assert_eq!(drained, BATCH);
            black_box(sum);
        })
    });
    group.finish();
}

fn stream_two_threads(c: &mut Criterion) {
    const SIZE: usize = 64;
    let mut group = c.benchmark_group("stream_two_threads");
    group.throughput(Throughput::Elements(1));
    pin(0);
    // One ring for every sample, its pages touched by a lap first, so that
    // no sample pays for first touches.
    let Ring {
        mut producer,
        consumer,
        _remove,
    } = Ring::new();
    let mut consumer = Some(consumer);
    let message = [0x5a_u8; SIZE];
    let mut buf = [0_u8; SIZE];
    for _ in 0..2 * producer.capacity() / SIZE {
        producer.send(&message).unwrap();
        consumer.as_mut().unwrap().recv(&mut buf).unwrap();
    }
    group.bench_function(BenchmarkId::from_parameter(SIZE), |b| {
        b.iter_custom(|messages| {
            let mut reader_end = consumer.take().expect("the consumer is back");
            let start = Instant::now();
            let reader = std::thread::spawn(move || {
                pin(1);
                let mut sum: u64 = 0;
                for _ in 0..messages {
                    let message = reader_end.read().unwrap();
                    sum = message
                        .iter()
                        .fold(sum, |sum, &byte| sum.wrapping_add(u64::from(byte)));
                }
                black_box(sum);
                reader_end
            });
            for _ in 0..messages {
                producer.send(&message).unwrap();
            }
            consumer = Some(reader.join().expect("the consumer thread"));
            start.elapsed()
        })
    });
    group.finish();
    drop((producer, consumer));
}

/// Pins the calling thread to `cpu` if the machine has it (the two threads
/// of a stream must not share a CPU: each busy-polls).
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

criterion_group!(benches, send_recv, grant_read, drain, stream_two_threads);
criterion_main!(benches);
