//! Throughput and round trip between two hosts (network namespaces with a
//! `/dev/shm` each, the `netns` module) through two bridges, beside zenoh's
//! own publish–subscribe between the same namespaces: the bridge's cost over
//! the engine it uses.
//!
//! ```text
//! sudo cargo run --release -p shmkit-bridge --example bench [-- MESSAGES SIZE ROUNDS]
//! ```
//!
//! Defaults: 200000 messages of 64 bytes, 2000 round trips. Each side is
//! this program again, started in its host with a role. Needs root.

#[path = "netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::topic::{Publisher, Subscriber};
use shmkit_bridge::{Bridge, Event};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

const PORT: u16 = 7447;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(role) = args.get(1).filter(|a| a.starts_with("role-")) {
        return run_role(role, &args[2..]);
    }
    let number = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (messages, size, rounds) = (number(1, 200_000), number(2, 64), number(3, 2000));
    if !netns::root() {
        eprintln!("bench: needs root (it makes network namespaces)");
        std::process::exit(1);
    }
    let hosts = netns::Hosts::new().expect("making two hosts");
    let listen = format!("tcp/{}:{PORT}", hosts.addresses[0]);
    println!(
        "{messages} messages of {size} bytes, {rounds} round trips, between two network namespaces"
    );
    println!(
        "{:<8} {:>14} {:>10} {:>12} {:>12}",
        "path", "messages/s", "MB/s", "rtt median", "rtt p99"
    );
    for path in ["zenoh", "bridge"]
        .into_iter()
        .filter(|p| std::env::var("BENCH_ONLY").map_or(true, |o| o == *p))
    {
        let tput = pair(
            &hosts,
            &listen,
            &format!("role-{path}-source"),
            &format!("role-{path}-sink"),
            messages,
            size,
        );
        let rate: f64 = tput.parse().expect("a rate");
        let rtt = pair(
            &hosts,
            &listen,
            &format!("role-{path}-ping"),
            &format!("role-{path}-pong"),
            rounds,
            size,
        );
        let (median, p99) = rtt.split_once(' ').expect("two times");
        println!(
            "{path:<8} {rate:>14.0} {:>10.1} {:>9} µs {:>9} µs",
            rate * size as f64 / 1e6,
            median,
            p99
        );
    }
}

/// Runs `first` in host 0 and `second` in host 1; `second` says `ready`,
/// then `first` is told `go`; the result is `first`'s or `second`'s
/// `result` line.
fn pair(
    hosts: &netns::Hosts,
    listen: &str,
    first: &str,
    second: &str,
    count: u64,
    size: u64,
) -> String {
    let exe = std::env::current_exe().expect("this program");
    let start = |host: usize, role: &str| -> (Child, mpsc::Receiver<String>) {
        let mut child = hosts
            .spawn(
                hosts
                    .command(host, &exe)
                    .args([role, listen, &count.to_string(), &size.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped()),
            )
            .expect("starting a role");
        let (sender, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        (child, lines)
    };
    let wait = |lines: &mpsc::Receiver<String>, prefix: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(300))
                .expect("a role went quiet");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    };
    let (mut a, a_lines) = start(0, first);
    wait(&a_lines, "listening");
    let (mut b, b_lines) = start(1, second);
    wait(&b_lines, "ready");
    writeln!(a.stdin.as_mut().expect("piped"), "go").expect("go");
    let got = if first.ends_with("ping") {
        wait(&a_lines, "result")
    } else {
        wait(&b_lines, "result")
    };
    drop(a.stdin.take());
    drop(b.stdin.take());
    let _ = a.wait();
    let _ = b.wait();
    got
}

fn zenoh_session(listen: &str, is_listener: bool) -> zenoh::Session {
    let mut config = zenoh::Config::default();
    let endpoints = format!("[{listen:?}]");
    let (here, there) = if is_listener {
        ("listen/endpoints", "connect/endpoints")
    } else {
        ("connect/endpoints", "listen/endpoints")
    };
    for (key, value) in [
        ("mode", "\"peer\""),
        ("scouting/multicast/enabled", "false"),
        (here, endpoints.as_str()),
        (there, "[]"),
    ] {
        config.insert_json5(key, value).expect("zenoh config");
    }
    zenoh::open(config).wait().expect("zenoh session")
}

/// A bridge of `topic` in a thread; returns once it sees the other host.
fn bridge(topic: &str, listen: &str, is_listener: bool, stop: &'static AtomicBool) {
    let mut bridge = Bridge::new(topic);
    bridge = if is_listener {
        bridge.listen(listen)
    } else {
        bridge.connect(listen)
    };
    let (present, seen) = mpsc::channel();
    std::thread::spawn(move || {
        bridge
            .run(&|| stop.load(Ordering::Relaxed), &mut |event| {
                if std::env::var_os("BENCH_VERBOSE").is_some() {
                    eprintln!("bridge: {event}");
                }
                if event == (Event::Remote { present: true }) {
                    let _ = present.send(());
                }
            })
            .expect("the bridge failed");
    });
    if is_listener {
        println!("listening");
    }
    seen.recv().expect("the bridge stopped");
}

/// Waits until some other host's session subscribes to what `publisher`
/// puts.
fn wait_for_subscriber(publisher: &zenoh::pubsub::Publisher<'_>) {
    while !publisher
        .matching_status()
        .wait()
        .expect("matching")
        .matching()
    {
        std::thread::sleep(Duration::from_millis(10)); // polling a condition
    }
}

fn wait_for_go(stdin: &mut impl BufRead) {
    let mut line = String::new();
    stdin.read_line(&mut line).expect("go");
}

fn run_role(role: &str, args: &[String]) {
    static STOP: AtomicBool = AtomicBool::new(false);
    let listen = args[0].as_str();
    let count: u64 = args[1].parse().expect("count");
    let size: usize = args[2].parse().expect("size");
    let mut stdin = std::io::stdin().lock();
    let message = vec![0x5a_u8; size];
    // A topic per measurement: nothing left of the one before.
    let topic = if role.ends_with("source") || role.ends_with("sink") {
        "bench-throughput"
    } else {
        "bench-round-trip"
    };
    match role {
        "role-bridge-source" | "role-bridge-ping" => {
            let mut publisher = Publisher::open(topic).expect("publisher");
            // Only the ping reads: a subscriber nobody reads would hold a
            // Block topic's publisher back.
            let mut subscriber = role
                .ends_with("ping")
                .then(|| Subscriber::open(topic).expect("subscriber"));
            bridge(topic, listen, true, &STOP);
            wait_for_go(&mut stdin);
            if let Some(subscriber) = &mut subscriber {
                let mut buf = vec![0u8; subscriber.max_message()];
                let mut times = Vec::new();
                for _ in 0..count {
                    let start = Instant::now();
                    publisher.send(&message).expect("send");
                    loop {
                        let got = subscriber.recv(&mut buf).expect("recv");
                        if got.publisher != publisher.id() {
                            break;
                        }
                    }
                    times.push(start.elapsed());
                }
                report_times(&mut times);
            } else {
                for _ in 0..count {
                    publisher.send(&message).expect("send");
                }
            }
        }
        "role-bridge-sink" | "role-bridge-pong" => {
            let mut subscriber = Subscriber::open(topic).expect("subscriber");
            let mut publisher = Publisher::open(topic).expect("publisher");
            bridge(topic, listen, false, &STOP);
            println!("ready");
            let mut buf = vec![0u8; subscriber.max_message()];
            let mut first = None;
            let mut got_count = 0;
            while got_count < count {
                let got = subscriber.recv(&mut buf).expect("recv");
                if got.publisher == publisher.id() {
                    continue;
                }
                first.get_or_insert_with(Instant::now);
                got_count += 1;
                if role.ends_with("pong") {
                    publisher.send(&buf[..got.len]).expect("send");
                }
            }
            if role.ends_with("sink") {
                let elapsed = first.expect("one message").elapsed().as_secs_f64();
                println!("result {}", (count - 1) as f64 / elapsed);
            }
        }
        "role-zenoh-source" | "role-zenoh-ping" => {
            let session = zenoh_session(listen, true);
            let publisher = session
                .declare_publisher("bench/ping")
                .congestion_control(CongestionControl::Block)
                .wait()
                .expect("publisher");
            let pong = session
                .declare_subscriber("bench/pong")
                .wait()
                .expect("subscriber");
            println!("listening");
            wait_for_subscriber(&publisher);
            wait_for_go(&mut stdin);
            if role.ends_with("source") {
                for _ in 0..count {
                    publisher.put(&message[..]).wait().expect("put");
                }
            } else {
                let mut times = Vec::new();
                for _ in 0..count {
                    let start = Instant::now();
                    publisher.put(&message[..]).wait().expect("put");
                    pong.recv().expect("pong");
                    times.push(start.elapsed());
                }
                report_times(&mut times);
            }
        }
        "role-zenoh-sink" | "role-zenoh-pong" => {
            let session = zenoh_session(listen, false);
            let ping = session
                .declare_subscriber("bench/ping")
                .wait()
                .expect("subscriber");
            let publisher = session
                .declare_publisher("bench/pong")
                .congestion_control(CongestionControl::Block)
                .wait()
                .expect("publisher");
            if role.ends_with("pong") {
                wait_for_subscriber(&publisher);
            }
            println!("ready");
            let mut first = None;
            for _ in 0..count {
                let sample = ping.recv().expect("ping");
                first.get_or_insert_with(Instant::now);
                if role.ends_with("pong") {
                    publisher.put(sample.payload().clone()).wait().expect("put");
                }
            }
            if role.ends_with("sink") {
                let elapsed = first.expect("one message").elapsed().as_secs_f64();
                println!("result {}", (count - 1) as f64 / elapsed);
            }
        }
        other => panic!("unknown role {other}"),
    }
    // Until the end of stdin: an in-process bridge must go on forwarding
    // what this role published last.
    wait_for_go(&mut stdin);
    STOP.store(true, Ordering::Relaxed);
}

fn report_times(times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_micros();
    println!("result {} {}", at(0.5), at(0.99));
}
