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
//! ```
//!
//! Per message, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out.

use std::process::{Command, Stdio};
use std::time::Duration;

use shmkit::ring::{Consumer, Options, Producer, Waiting, SEGMENT_PREFIX};
use shmkit::{Key, Segment};

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
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: ring_cost one-thread SIZE COUNT [BATCH] | stream SIZE COUNT WAITING [BATCH]");
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

fn one_thread(size: usize, count: usize, batch: Option<usize>) {
    let name = format!("ring-cost-{}", std::process::id());
    let _remove = RemoveRing::new(&name);
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
    let _remove = RemoveRing::new(&name);
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
