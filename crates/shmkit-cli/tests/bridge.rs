//! `shmkit bridge` between two hosts on one machine: two network
//! namespaces joined by a veth pair, each with its own `/dev/shm` (the
//! `netns` module), so that nothing crosses except through the bridges.
//!
//! They need root (to make namespaces) and `ip` (iproute2) and `nsenter`
//! (util-linux), which `.ci/run` installs; as another user each test says
//! it is skipped and why. Every test makes its own hosts (named by pid and
//! a counter) and every program it starts in them is killed, and the
//! namespaces deleted, when the test ends, also by a panic.

#[path = "../../shmkit-bridge/examples/netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use netns::Hosts;

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");
/// Generous bounds for what should take a second or two (a loaded
/// machine is slow, never wrong).
const DEADLINE: Duration = Duration::from_secs(180);
/// The topic every test uses (each test's hosts have their own /dev/shm).
const TOPIC: &str = "t";
/// The environment variable that makes this binary the sequence printer.
const ROLE: &str = "SHMKIT_BRIDGE_TEST_ROLE";

fn hosts(test: &str) -> Option<Hosts> {
    if !netns::root() {
        eprintln!(
            "skipped {test}: it makes network namespaces, which needs root (CI runs as root)"
        );
        return None;
    }
    Some(Hosts::new().expect("making two hosts (needs ip from iproute2 and nsenter)"))
}

/// A running bridge and the lines it prints on stderr.
struct Bridge {
    child: Child,
    lines: Receiver<String>,
    /// The origin id its `started` line gave.
    origin: String,
}

impl Bridge {
    fn start(hosts: &Hosts, host: usize) -> Bridge {
        let endpoint = format!("tcp/{}:7447", hosts.addresses[0]);
        let mut command = hosts.command(host, SHMKIT);
        command.args(["bridge", TOPIC]);
        if host == 0 {
            command.args(["--listen", &endpoint]);
        } else {
            command.args(["--connect", &endpoint]);
        }
        let mut child = hosts
            .spawn(command.stderr(Stdio::piped()))
            .expect("starting shmkit bridge");
        let (sender, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().expect("piped"));
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("host {host}: {line}");
                let _ = sender.send(line);
            }
        });
        let mut bridge = Bridge {
            child,
            lines,
            origin: String::new(),
        };
        let started = bridge.wait_for("started: origin ");
        bridge.origin = started
            .split("origin ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .expect("an origin")
            .to_owned();
        bridge
    }

    /// Waits for a line containing `needle`, and returns it.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!("no bridge line with {needle:?}: {err}"),
            }
        }
    }
}

/// Bridges on both hosts, once each sees the other's subscription.
fn bridges(hosts: &Hosts) -> [Bridge; 2] {
    let pair = [Bridge::start(hosts, 0), Bridge::start(hosts, 1)];
    for bridge in &pair {
        bridge.wait_for("remote bridges present");
    }
    pair
}

/// `shmkit stat` of the topic in `host`.
fn stat(hosts: &Hosts, host: usize) -> String {
    let output = hosts
        .command(host, SHMKIT)
        .args(["stat", &format!("/shmkit.topic.{TOPIC}")])
        .output()
        .expect("running shmkit stat");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `shmkit stat` of the topic in `host` shows `needle`.
fn wait_for_stat(hosts: &Hosts, host: usize, needle: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = stat(hosts, host);
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "never {needle:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(20)); // polling a condition
    }
}

/// Waits until the topic in `host` has `count` live subscribers (so a
/// subscriber started there has joined before anything is published).
fn wait_for_subscribers(hosts: &Hosts, host: usize, count: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = stat(hosts, host);
        let alive = text
            .lines()
            .filter(|l| l.starts_with("  subscriber ") && l.contains("alive"))
            .count();
        if alive >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} subscribers never joined:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling a condition
    }
}

/// A program whose standard output a thread reads as it comes (so that
/// a full pipe never holds the program, and through the topic its
/// publishers, back).
struct Running {
    child: Child,
    output: std::thread::JoinHandle<std::io::Result<String>>,
}

impl Running {
    fn start(hosts: &Hosts, command: &mut Command) -> Running {
        let mut child = hosts
            .spawn(command.stdout(Stdio::piped()))
            .expect("starting a program in a host");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let output = std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).map(|_| text)
        });
        Running { child, output }
    }

    /// Waits for it to exit successfully (killing it after the deadline);
    /// its standard output.
    fn finish(mut self, what: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                assert!(status.success(), "{what} failed: {status}");
                return self.output.join().expect("reader").expect("reading stdout");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{what} did not finish within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10)); // polling a condition
        }
    }
}

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .expect("writing");
    let output = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn seq(from: u64, to: u64) -> String {
    (from..=to).map(|n| format!("{n}\n")).collect()
}

#[test]
fn seq_through_the_bridges_has_the_digest_of_seq() {
    let Some(hosts) = hosts("seq_through_the_bridges_has_the_digest_of_seq") else {
        return;
    };
    let _bridges = bridges(&hosts);
    let sub = Running::start(
        &hosts,
        hosts
            .command(1, "sh")
            .args(["-c", &format!("{SHMKIT} sub {TOPIC} | sha256sum")]),
    );
    wait_for_subscribers(&hosts, 1, 2); // the bridge's and shmkit sub's
    let publish = Running::start(
        &hosts,
        hosts
            .command(0, "sh")
            .args(["-c", &format!("seq 1 100000 | {SHMKIT} pub {TOPIC}")]),
    );
    publish.finish("seq | shmkit pub");
    let digest = sub.finish("shmkit sub | sha256sum");
    assert_eq!(digest, sha256(seq(1, 100000).as_bytes()));

    // `stat` shows the bridge as a member: its relay of host 0's publisher
    // 1 (which carried that publisher's numbering: 100000 messages) and
    // its subscriber.
    let text = stat(&hosts, 1);
    let relay = text
        .lines()
        .find(|l| l.contains("bridge relay of host"))
        .unwrap_or_else(|| panic!("no relay in stat:\n{text}"));
    assert!(relay.ends_with(" publisher 1"), "{relay}");
    assert!(relay.contains("100000 messages published"), "{relay}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("  subscriber ") && l.ends_with(", bridge")),
        "no bridge subscriber in stat:\n{text}"
    );
}

#[test]
fn both_directions_at_once() {
    let Some(hosts) = hosts("both_directions_at_once") else {
        return;
    };
    let _bridges = bridges(&hosts);
    let subs: Vec<Running> = (0..2)
        .map(|host| Running::start(&hosts, hosts.command(host, SHMKIT).args(["sub", TOPIC])))
        .collect();
    for host in 0..2 {
        wait_for_subscribers(&hosts, host, 2);
    }
    // Host 0 publishes a1..a100000, host 1 b1..b100000, at the same time.
    let pubs: Vec<Running> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(host, prefix)| {
            let script = format!("seq -f '{prefix}%.0f' 1 100000 | {SHMKIT} pub {TOPIC}");
            Running::start(&hosts, hosts.command(host, "sh").args(["-c", &script]))
        })
        .collect();
    for publish in pubs {
        publish.finish("shmkit pub");
    }
    for (host, sub) in subs.into_iter().enumerate() {
        let text = sub.finish("shmkit sub");
        // Each subscriber has both streams, each whole and in its order,
        // once: the local one and the other host's (nothing looped back).
        for prefix in ["a", "b"] {
            let got: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
            let want: Vec<String> = (1..=100000).map(|n| format!("{prefix}{n}")).collect();
            assert!(
                got == want,
                "host {host}: {} lines of {prefix}, not {prefix}1..{prefix}100000 in order",
                got.len()
            );
        }
        assert_eq!(text.lines().count(), 200000, "host {host}");
    }
}

/// The role of this binary that prints, for each message of the topic,
/// `msg PUBLISHER SEQUENCE PAYLOAD` and, for each new publisher, `origin
/// PUBLISHER HOST REMOTE-ID` (from `topic::status`), until every publisher
/// closed.
#[test]
fn sequence_printer_role() {
    if std::env::var_os(ROLE).is_none() {
        return; // only a role, when run by the tests below
    }
    use shmkit::topic::{status, Subscriber};
    let mut subscriber = Subscriber::open(TOPIC).expect("subscribing");
    let mut out = std::io::stdout().lock();
    writeln!(out, "joined").expect("stdout");
    let mut buf = vec![0u8; subscriber.max_message()];
    let mut seen = std::collections::HashSet::new();
    loop {
        match subscriber.recv(&mut buf) {
            Ok(got) => {
                if seen.insert(got.publisher) {
                    let origin = status(TOPIC)
                        .expect("status")
                        .publishers
                        .iter()
                        .find(|p| p.id == got.publisher)
                        .and_then(|p| p.origin);
                    let origin = origin.map_or("local".to_owned(), |o| {
                        format!("{:#x} {}", o.host, o.publisher)
                    });
                    writeln!(out, "origin {} {origin}", got.publisher).expect("stdout");
                }
                let payload = String::from_utf8_lossy(&buf[..got.len]);
                writeln!(out, "msg {} {} {payload}", got.publisher, got.sequence).expect("stdout");
            }
            Err(shmkit::Error::Closed { .. }) => break,
            // Also when a relay is killed with its bridge: its subscribers
            // wait for the restarted bridge, never see PeerGone.
            Err(err) => panic!("receiving: {err}"),
        }
    }
}

#[test]
fn the_sending_bridge_killed_mid_stream_restarts_and_carries_on() {
    if let Some(hosts) = hosts("the_sending_bridge_killed_mid_stream_restarts_and_carries_on") {
        kill_and_restart(&hosts, 0);
    }
}

#[test]
fn the_receiving_bridge_killed_mid_stream_restarts_and_carries_on() {
    if let Some(hosts) = hosts("the_receiving_bridge_killed_mid_stream_restarts_and_carries_on") {
        kill_and_restart(&hosts, 1);
    }
}

#[test]
fn a_receiving_bridge_restarted_after_the_publisher_ended_ends_its_subscribers() {
    let test = "a_receiving_bridge_restarted_after_the_publisher_ended_ends_its_subscribers";
    if let Some(hosts) = hosts(test) {
        kill_and_restart(&hosts, RECEIVER_DOWN_AT_END);
    }
}

/// `kill_and_restart`'s victim: the receiving bridge (host 1), which is
/// restarted only after the publisher wrote everything and ended.
const RECEIVER_DOWN_AT_END: usize = 2;

/// Host 0 publishes 1..=100000 to a sequence printer and `shmkit sub` on
/// host 1; after 20000 arrived, the bridge of host `victim` is killed with
/// kill -9 and restarted, and only then are 50001..=100000 written (for
/// `RECEIVER_DOWN_AT_END`: written, and the publisher ended, before host
/// 1's bridge is restarted).
fn kill_and_restart(hosts: &Hosts, victim: usize) {
    let down_at_end = victim == RECEIVER_DOWN_AT_END;
    let victim = victim.min(1);
    let mut pair: Vec<Bridge> = bridges(hosts).into();
    let mut printer = hosts
        .spawn(
            hosts
                .command(1, std::env::current_exe().expect("this test binary"))
                .args(["--exact", "sequence_printer_role", "--nocapture"])
                .env(ROLE, "1")
                .stdout(Stdio::piped()),
        )
        .expect("starting the sequence printer");
    let (to_test, lines) = mpsc::channel();
    let stdout = BufReader::new(printer.stdout.take().expect("piped"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = to_test.send(line);
        }
    });
    // `None` once the printer ended.
    let next_line = move || match lines.recv_timeout(DEADLINE) {
        Ok(line) => Some(line),
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the printer said nothing for {DEADLINE:?}"),
    };
    while !next_line().expect("the printer ended").ends_with("joined") {}
    // And `shmkit sub`, which must see what the printer sees and end well.
    let sub = Running::start(hosts, hosts.command(1, SHMKIT).args(["sub", TOPIC]));
    wait_for_subscribers(hosts, 1, 3); // the bridge's, the printer, sub
    let mut publish = hosts
        .spawn(
            hosts
                .command(0, SHMKIT)
                .args(["pub", TOPIC])
                .stdin(Stdio::piped()),
        )
        .expect("starting shmkit pub");
    let mut input = publish.stdin.take().expect("piped");
    input.write_all(seq(1, 50000).as_bytes()).expect("writing");
    input.flush().expect("flushing");

    // Once host 1 has 20000 messages, kill a bridge mid-stream.
    let mut got: Vec<String> = Vec::new();
    while got.iter().filter(|l| l.starts_with("msg ")).count() < 20000 {
        got.push(next_line().expect("the printer ended early"));
    }
    let mut killed = pair.remove(victim);
    let survivor = pair.remove(0);
    killed.child.kill().expect("kill -9 the bridge");
    killed.child.wait().expect("reaping the bridge");
    // Nothing local went down with it.
    assert!(
        publish.try_wait().expect("pub").is_none(),
        "shmkit pub died"
    );
    assert!(
        printer.try_wait().expect("printer").is_none(),
        "the printer died"
    );
    survivor.wait_for("no remote bridge");
    let mut finish_publishing = Some(move || {
        input
            .write_all(seq(50001, 100000).as_bytes())
            .expect("writing");
        drop(input);
        let status = publish.wait().expect("pub");
        assert!(status.success(), "shmkit pub: {status}");
    });
    if down_at_end {
        // Nobody on host 1 hears these: lost. Its subscribers still wait
        // for the killed relay.
        finish_publishing.take().expect("once")();
        wait_for_stat(hosts, 0, "lag 0 bytes"); // host 0's bridge read all
    }

    // Restarted, it reconnects (with the same origin) and carries on.
    let restarted = Bridge::start(hosts, victim);
    assert_eq!(restarted.origin, killed.origin, "a host's origin id");
    restarted.wait_for("remote bridges present");
    survivor.wait_for("remote bridges present");
    // With `down_at_end`, host 0's roster says its publisher stopped: the
    // restarted bridge closes the orphaned relay, and host 1's subscribers
    // end (the printer's end below).
    if let Some(finish_publishing) = finish_publishing.take() {
        finish_publishing();
    }
    // To its end (the test harness's own lines among them).
    while let Some(line) = next_line() {
        got.push(line);
    }

    // Exactly what the README says: each message with its original
    // sequence number, in order, nothing repeated; lost, only messages
    // the killed bridge held and those sent while no bridge could carry
    // them: 1..=k, then m..=100000. One relay, the same local publisher
    // before and after, if the sending bridge was killed; a second one
    // (a new local id) for the same remote publisher if the receiving
    // bridge was, since its relay died with it.
    let host0 = if victim == 0 { &restarted } else { &survivor };
    let host0 = u64::from_str_radix(host0.origin.trim_start_matches("0x"), 16).expect("hex");
    let origins: Vec<&String> = got.iter().filter(|l| l.starts_with("origin ")).collect();
    let relays = if down_at_end { 1 } else { 1 + victim };
    assert_eq!(origins.len(), relays, "relays: {origins:?}");
    for origin in &origins {
        assert!(
            origin.ends_with(&format!(" {host0:#x} 1")),
            "a relay of host 0's publisher 1: {origin}"
        );
    }
    let numbers: Vec<u64> = got
        .iter()
        .filter_map(|l| l.strip_prefix("msg "))
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let (sequence, payload): (u64, u64) = (
                fields[1].parse().expect("sequence"),
                fields[2].parse().expect("payload"),
            );
            assert_eq!(sequence + 1, payload, "the original sequence number");
            payload
        })
        .collect();
    let gaps: Vec<(u64, u64)> = numbers
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] > w[0]),
        "in order, none repeated"
    );
    assert_eq!(numbers.first(), Some(&1));
    if down_at_end {
        let last = *numbers.last().expect("messages");
        assert!((20000..=50000).contains(&last), "ended at {last}");
        assert!(gaps.is_empty(), "no gap before the end: {gaps:?}");
    } else {
        assert_eq!(numbers.last(), Some(&100000));
    }
    assert!(gaps.len() <= 1, "one gap at most: {gaps:?}");
    if let Some(&(k, m)) = gaps.first() {
        assert!(k >= 20000 && m <= 50001, "lost {}..{m}", k + 1);
        eprintln!("lost {} messages ({}..={})", m - k - 1, k + 1, m - 1);
    }
    assert!(printer.wait().expect("printer").success(), "the printer");
    let printed: Vec<u64> = sub
        .finish("shmkit sub")
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    assert_eq!(printed, numbers, "shmkit sub printed what the printer got");
}
