//! Fan-out: one publisher, four blocking subscribers, each its own process,
//! on one Block topic. Prints the messages per second each subscriber
//! received (every message, in order, its sequence checked), and the
//! publisher's rate.
//!
//! ```text
//! cargo run --release -p shmkit --example topic_fan_out [MESSAGES] [SIZE] [SUBSCRIBERS]
//! ```
//!
//! The subscribers wait as the library does by default (`Waiting::Adaptive`:
//! spin about as long as a wake-up costs, then sleep on the topic's futex),
//! so with more members than CPUs they take turns instead of burning the
//! CPU a publisher needs. A publish wakes every sleeper with one system
//! call. On a machine with two CPUs, five busy processes share two: the
//! figure is what the topic achieves there, not what four CPUs of
//! subscribers would.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use shmkit::topic::{Options, Publisher, Subscriber};

fn options() -> Options {
    Options::default()
        .capacity(1 << 20)
        .max_publishers(1)
        .max_subscribers(8)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("subscriber") {
        return subscriber(&args[2], args[3].parse()?, args[4].parse()?);
    }
    let messages: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let size: usize = args.get(2).map_or(Ok(64), |a| a.parse())?;
    let subscribers: usize = args.get(3).map_or(Ok(4), |a| a.parse())?;
    assert!(size >= 8, "a message carries its 8-byte sequence number");
    let name = format!("example-fan-out-{}", std::process::id());
    let mut publisher = Publisher::open_with(&name, &options())?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..subscribers {
        let mut child = Command::new(&exe)
            .args([
                "subscriber",
                &name,
                &messages.to_string(),
                &size.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert_eq!(line.trim(), "ready", "a subscriber failed to join");
        children.push((child, out));
    }
    let mut message = vec![0x5au8; size];
    let start = Instant::now();
    for n in 0..messages {
        message[..8].copy_from_slice(&n.to_le_bytes());
        publisher.send(&message)?;
    }
    let published = start.elapsed();
    drop(publisher); // closes the stream: the subscribers finish
    println!(
        "fan-out: 1 publisher, {subscribers} blocking subscribers, {messages} messages of {size} B"
    );
    println!(
        "publisher: {:.2} M msgs/s",
        messages as f64 / published.as_secs_f64() / 1e6
    );
    for (i, (mut child, mut out)) in children.into_iter().enumerate() {
        let mut line = String::new();
        out.read_line(&mut line)?;
        let nanos: f64 = line.trim().parse()?;
        assert!(child.wait()?.success(), "subscriber {i} failed");
        println!(
            "subscriber {i}: {:.2} M msgs/s",
            messages as f64 / (nanos / 1e9) / 1e6
        );
    }
    Ok(())
}

/// A subscriber process: joins, says `ready`, receives and checks every
/// message, then prints the nanoseconds from its first message to its last.
fn subscriber(name: &str, messages: u64, size: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut subscriber = Subscriber::open_with(name, &options())?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut start = None;
    for n in 0..messages {
        let message = subscriber.read()?;
        start.get_or_insert_with(Instant::now);
        assert_eq!(message.len(), size);
        assert_eq!(message[..8], n.to_le_bytes(), "message {n} out of order");
    }
    let elapsed = start.map_or(0, |start| start.elapsed().as_nanos());
    writeln!(stdout, "{elapsed}")?;
    Ok(())
}
