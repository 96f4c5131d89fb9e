//! A fixed amount of topic work, for counting what it costs rather than
//! timing it (as `ring_cost` does for the ring): instructions under
//! `valgrind --tool=callgrind`, which do not depend on how busy the
//! machine is.
//!
//! ```text
//! topic_cost one-thread SIZE COUNT [LANES]   # COUNT send+recv in one thread, the
//!                                            # sends taking turns over LANES publishers
//! topic_cost sides SIZE COUNT                # shmkit bench's own stream loops over
//!                                            # `shmkit-topic`, the sender's then the
//!                                            # receiver's: StreamSides::send, ::receive
//! ```
//!
//! Per message, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out. Compare with
//! `ring_cost one-thread SIZE COUNT`.

use shmkit::topic::{Options, Publisher, Subscriber, Waiting};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.first().map(String::as_str) {
        Some("one-thread") => one_thread(arg(1), arg(2), args.get(3).map_or(1, |_| arg(3))),
        Some("sides") => sides(arg(1), arg(2)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: topic_cost one-thread SIZE COUNT [LANES] | sides SIZE COUNT");
    std::process::exit(2)
}

/// Each side of `shmkit bench`'s stream over `shmkit-topic`, one after the
/// other (as `ring_cost sides` for the rings).
fn sides(size: usize, count: usize) {
    let mut sides = shmkit_bench::cost::StreamSides::new(
        shmkit_bench::Transport::ShmkitTopic,
        size,
        count as u64,
    )
    .expect("a topic for the stream");
    let sent = sides.send();
    let received = sides.receive();
    assert_eq!((sent, received), (count as u64, count as u64));
}

/// The bench's topic (`shmkit-topic`): lanes of 1 MiB, Block, busy-polling.
fn one_thread(size: usize, count: usize, lanes: usize) {
    let name = format!("topic-cost-{}", std::process::id());
    let options = Options::default()
        .capacity(1 << 20)
        .max_publishers(2)
        .max_subscribers(1)
        .waiting(Waiting::BusyPoll);
    let mut subscriber = Subscriber::open_with(&name, &options).expect("a subscriber");
    let mut publishers: Vec<Publisher> = (0..lanes)
        .map(|_| Publisher::open_with(&name, &options).expect("a publisher"))
        .collect();
    let message = vec![0x5a_u8; size];
    let mut buf = vec![0_u8; size];
    let mut sum: u64 = 0;
    for n in 0..count {
        publishers[n % lanes]
            .send(std::hint::black_box(&message))
            .expect("send");
        let received = subscriber.recv(&mut buf).expect("recv");
        sum = sum.wrapping_add(u64::from(buf[received.len - 1]));
    }
    println!("{sum}");
}
