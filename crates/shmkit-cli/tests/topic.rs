//! The topic commands (`pub`, `sub`, and topics in `ls`, `stat` and `gc`)
//! as a user at a shell sees them: real `shmkit` processes.
//!
//! Each test names its topics `cli-topic-PID-N` and removes them when it
//! ends, even by a panic; child processes are killed when a test ends.
//! Nothing waits by sleeping: a test that needs another process to have
//! done something polls the topic's status until it shows.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmkit::{Key, Segment};

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");
/// The role of the test binary run again as a child (see `child`).
const ROLE: &str = "SHMKIT_CLI_TOPIC_ROLE";

#[allow(dead_code)]
mod common;
#[path = "../../shmkit/tests/sandbox/mod.rs"]
mod sandbox;

/// A topic name used by one test only; dropping it removes the topic.
struct TestTopic(String);

impl TestTopic {
    fn new() -> TestTopic {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestTopic(format!("cli-topic-{}-{n}", std::process::id()))
    }

    fn key(&self) -> Key {
        Key::posix(&format!("{}{}", shmkit::topic::SEGMENT_PREFIX, self.0)).unwrap()
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.key()) {
            let _ = segment.remove();
        }
    }
}

/// A child that is killed (by its pid) and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Running {
    Running(
        Command::new(SHMKIT)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Polls `done` until it holds (panics after a minute): waiting for a state
/// another process reaches, not a sleep standing in for one.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

fn subscribers(name: &str) -> usize {
    shmkit::topic::status(name).map_or(0, |t| t.subscribers.len())
}

fn finish(mut running: Running) -> (bool, String, String) {
    drop(running.0.stdin.take());
    let mut out = String::new();
    let mut err = String::new();
    running
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    running
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = running.0.wait().unwrap();
    (status.success(), out, err)
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn two_subscribers_started_first_both_get_all_of_seq() {
    let topic = TestTopic::new();
    let subs: Vec<Running> = (0..2).map(|_| spawn(&["sub", &topic.0])).collect();
    wait_until("both subscribers joined", || subscribers(&topic.0) == 2);
    let lines: String = (1..=1_000_000).map(|n| format!("{n}\n")).collect();
    let mut publisher = spawn(&["pub", &topic.0]);
    let mut stdin = publisher.0.stdin.take().unwrap();
    let input = lines.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let expected = sha256(lines.as_bytes());
    // Each subscriber's output is read while the others run: a full pipe
    // would stop one, and a Block topic with it.
    let readers: Vec<_> = subs
        .into_iter()
        .map(|sub| std::thread::spawn(move || finish(sub)))
        .collect();
    let outputs: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    feeder.join().unwrap();
    let (ok, _, err) = finish(publisher);
    assert!(ok, "pub failed: {err}");
    for (ok, out, err) in outputs {
        assert!(ok, "sub failed: {err}");
        assert_eq!(sha256(out.as_bytes()), expected);
    }
    assert!(
        Segment::open(&topic.key()).is_err(),
        "the last member removed it"
    );
}

/// A `sub` on a topic no publisher has come to waits for one by looking
/// at the topic's status in doubling sleeps (`arrival`), not in the
/// library's naps of 20 ms, and takes what a publisher that comes sends.
#[test]
fn a_sub_waiting_for_its_first_publisher_wakes_seldom_and_gets_what_it_sends() {
    let topic = TestTopic::new();
    let sub = spawn(&["sub", &topic.0, "--count", "2"]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    let wake_ups = common::wake_ups_in_a_window(sub.0.id());
    assert!(wake_ups < 30, "{wake_ups} wake-ups in 1.5 s");
    let mut publisher = spawn(&["pub", &topic.0]);
    publisher
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\n")
        .unwrap();
    let (ok, out, err) = finish(sub);
    assert!(ok, "sub failed: {err}");
    assert_eq!(out, "one\ntwo\n");
    let (ok, _, err) = finish(publisher);
    assert!(ok, "pub failed: {err}");
}

#[test]
fn a_late_subscriber_starts_with_the_history_unless_told_not_to() {
    let topic = TestTopic::new();
    let mut publisher = spawn(&["pub", &topic.0, "--history", "3"]);
    let mut stdin = publisher.0.stdin.take().unwrap();
    for n in 1..=10 {
        writeln!(stdin, "line {n}").unwrap();
    }
    stdin.flush().unwrap();
    wait_until("ten published", || {
        shmkit::topic::status(&topic.0).is_ok_and(|t| t.published == 10)
    });
    let late = Command::new(SHMKIT)
        .args(["sub", &topic.0, "--count", "3"])
        .output()
        .unwrap();
    assert!(late.status.success());
    assert_eq!(
        String::from_utf8_lossy(&late.stdout),
        "line 8\nline 9\nline 10\n"
    );
    let fresh = spawn(&["sub", &topic.0, "--no-history", "--count", "1"]);
    wait_until("the fresh subscriber joined", || subscribers(&topic.0) == 1);
    writeln!(stdin, "line 11").unwrap();
    stdin.flush().unwrap();
    let (ok, out, _) = finish(fresh);
    assert!(ok);
    assert_eq!(out, "line 11\n");
    drop(stdin);
    assert!(finish(publisher).0);
}

#[test]
fn a_stopped_lossy_subscriber_reports_what_it_missed() {
    let topic = TestTopic::new();
    let mut publisher = spawn(&["pub", &topic.0, "--lossy", "--capacity", "4096"]);
    let mut stdin = publisher.0.stdin.take().unwrap();
    writeln!(stdin, "first").unwrap();
    stdin.flush().unwrap();
    wait_until("the topic exists", || {
        shmkit::topic::status(&topic.0).is_ok_and(|t| t.published == 1)
    });
    let subscriber = spawn(&["sub", &topic.0]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    let pid = subscriber.0.id() as i32;
    // SAFETY: kill(2) on our own child's pid, with a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let total = 2000;
    for n in 0..total {
        writeln!(stdin, "message {n:08}").unwrap();
    }
    stdin.flush().unwrap();
    wait_until("all published", || {
        shmkit::topic::status(&topic.0).is_ok_and(|t| t.published == 1 + total)
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    drop(stdin);
    assert!(finish(publisher).0);
    let (ok, out, err) = finish(subscriber);
    assert!(ok, "{err}");
    let missed: u64 = err
        .lines()
        .filter_map(|l| l.strip_prefix("shmkit: missed ")?.strip_suffix(" messages"))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    let got: Vec<&str> = out.lines().collect();
    assert!(missed > 0, "a lane of 4 KiB cannot hold 2000 messages");
    assert_eq!(got.len() as u64 + missed, total, "{err}");
    let first: u64 = got[0].strip_prefix("message ").unwrap().parse().unwrap();
    assert_eq!(first, missed, "it goes on with the oldest still there");
    assert_eq!(*got.last().unwrap(), format!("message {:08}", total - 1));
}

#[test]
fn ls_and_stat_show_topics_and_gc_collects_dead_ones() {
    let topic = TestTopic::new();
    let mut subscriber = spawn(&["sub", &topic.0]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    let ls = Command::new(SHMKIT).arg("ls").output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("TOPICS"), "{ls}");
    let row = ls.lines().find(|l| l.starts_with(&topic.0)).expect("a row");
    assert!(
        row.contains("block") && row.contains(&subscriber.0.id().to_string()),
        "{row}"
    );
    let key = format!("{}{}", shmkit::topic::SEGMENT_PREFIX, topic.0);
    let stat = Command::new(SHMKIT).args(["stat", &key]).output().unwrap();
    let stat = String::from_utf8_lossy(&stat.stdout);
    assert!(
        stat.contains(&format!("topic {}: policy block", topic.0)),
        "{stat}"
    );
    assert!(stat.contains("subscriber 0: pid"), "{stat}");
    // Alive: not garbage, and gc says so.
    let gc = gc_output(&["gc", "--force", &topic.0]);
    assert!(!gc.contains("removed topic"), "{gc}");
    assert!(
        gc.contains(&format!("topic {} is not garbage", topic.0)),
        "{gc}"
    );
    subscriber.0.kill().unwrap();
    subscriber.0.wait().unwrap();
    let text = gc_output(&["gc", "--force", &topic.0]);
    assert!(
        text.contains(&format!("removed topic {}", topic.0)),
        "{text}"
    );
    assert!(Segment::open(&topic.key()).is_err());
}

/// `stat --json` and `ls --json` show a topic's members and counters, as
/// the text does.
#[test]
fn stat_and_ls_json_show_a_topic_as_the_text_does() {
    let topic = TestTopic::new();
    let subscriber = spawn(&["sub", &topic.0]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    let mut publisher = shmkit::topic::Publisher::open(&topic.0).unwrap();
    for message in ["one", "two", "three"] {
        publisher.send(message.as_bytes()).unwrap();
    }
    wait_until("the subscriber received all three", || {
        shmkit::topic::status(&topic.0).is_ok_and(|t| t.subscribers[0].received == 3)
    });
    let key = format!("{}{}", shmkit::topic::SEGMENT_PREFIX, topic.0);
    let json = |args: &[&str]| -> serde_json::Value {
        let output = Command::new(SHMKIT).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };

    let stat = json(&["stat", &key, "--json"]);
    let t = &stat["topic"];
    assert_eq!(t["name"], topic.0.as_str(), "{stat}");
    assert_eq!(
        (t["policy"].as_str(), t["published"].as_u64()),
        (Some("block"), Some(3))
    );
    assert_eq!(t["capacity"].as_u64(), Some(256 << 10));
    assert_eq!(
        (t["worst_lag_bytes"].as_u64(), &t["abandoned"]),
        (Some(0), &false.into())
    );
    let publishers = t["publishers"].as_array().unwrap();
    assert_eq!(publishers.len(), 1, "{t}");
    let p = &publishers[0];
    assert_eq!(
        p["pid"].as_u64(),
        Some(u64::from(std::process::id())),
        "{p}"
    );
    assert_eq!((&p["alive"], &p["closed"]), (&true.into(), &false.into()));
    assert_eq!(
        (p["published"].as_u64(), &p["origin"]),
        (Some(3), &serde_json::Value::Null)
    );
    let subscribers = t["subscribers"].as_array().unwrap();
    assert_eq!(subscribers.len(), 1, "{t}");
    let s = &subscribers[0];
    assert_eq!(s["pid"].as_u64(), Some(u64::from(subscriber.0.id())), "{s}");
    assert_eq!(
        (s["received"].as_u64(), s["lag_bytes"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!((&s["alive"], &s["bridge"]), (&true.into(), &false.into()));
    assert_eq!(
        (&stat["ring"], &stat["service"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );

    // `ls --json` shows the same topic in its segment's element.
    let all = json(&["ls", "--json"]);
    let listed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|segment| segment["key"] == key.as_str())
        .unwrap_or_else(|| panic!("no {key} in {all}"));
    assert_eq!(listed["topic"], stat["topic"], "{listed}");

    // `stat --topic NAME` is `stat` of the topic's segment, plain and JSON.
    let by_name = json(&["stat", "--topic", &topic.0, "--json"]);
    assert_eq!(
        (&by_name["key"], &by_name["topic"]),
        (&stat["key"], &stat["topic"])
    );
    let text = Command::new(SHMKIT)
        .args(["stat", "--topic", &topic.0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("key:      {key}\n")), "{text}");
    assert!(
        text.contains(&format!(
            "topic {}: policy block, lanes of 262144 bytes, largest message 131040, \
             history 0, 3 messages published\n",
            topic.0
        )),
        "{text}"
    );

    publisher.close();
    drop(subscriber);

    // One object at a time; a topic that is not there is an error.
    let missing = TestTopic::new();
    let output = Command::new(SHMKIT)
        .args(["stat", "--topic", &missing.0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no shared-memory segment {}{}",
            shmkit::topic::SEGMENT_PREFIX,
            missing.0
        )),
        "{stderr}"
    );
    let both = Command::new(SHMKIT)
        .args(["stat", "--topic", &missing.0, "--service", &missing.0])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}

/// `--mode` and `--group` shape a topic that `sub` (or `pub`) creates, as
/// they do a ring that `send` or `recv` creates.
#[test]
fn sub_and_pub_take_the_mode_and_group_of_a_topic_they_create() {
    let topic = TestTopic::new();
    let gid = rustix::process::getgid().as_raw().to_string();
    let subscriber = spawn(&["sub", &topic.0, "--mode", "640", "--group", &gid]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    let stat = Segment::open(&topic.key()).unwrap().stat().unwrap();
    assert_eq!(stat.mode.bits(), 0o640, "{stat:?}");
    assert_eq!(stat.gid.to_string(), gid);
    let help = Command::new(SHMKIT)
        .args(["pub", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--mode", "--group", "--trust"] {
        assert!(help.contains(flag), "pub --help lacks {flag}");
    }
    drop(subscriber);
}

/// A ring name used by one test only; dropping it removes the ring.
struct TestRing(String);

impl TestRing {
    fn new() -> TestRing {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestRing(format!("cli-topic-ring-{}-{n}", std::process::id()))
    }
}

impl Drop for TestRing {
    fn drop(&mut self) {
        let key = format!("{}{}", shmkit::ring::SEGMENT_PREFIX, self.0);
        if let Ok(segment) = Segment::open(&Key::posix(&key).unwrap()) {
            let _ = segment.remove();
        }
    }
}

/// A topic whose only member, a subscriber, was killed.
fn dead_topic() -> TestTopic {
    let topic = TestTopic::new();
    let mut subscriber = spawn(&["sub", &topic.0]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    subscriber.0.kill().unwrap();
    subscriber.0.wait().unwrap();
    topic
}

/// A ring whose producer was killed while it held it.
fn dead_ring() -> TestRing {
    let ring = TestRing::new();
    let mut send = spawn(&["send", &ring.0]);
    wait_until("the producer holds the ring", || {
        shmkit::ring::status(&ring.0).is_ok_and(|s| s.producer.is_some_and(|p| p.alive))
    });
    send.0.kill().unwrap();
    send.0.wait().unwrap();
    ring
}

/// Held by each test of this file that runs `gc`: `gc` looks at each topic
/// under its gate, and skips one whose gate another `gc` holds, so two at
/// once could each miss the other's topic.
static GC: Mutex<()> = Mutex::new(());

fn gc_output(args: &[&str]) -> String {
    let _one_at_a_time = GC.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let gc = Command::new(SHMKIT).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&gc.stdout).into_owned();
    assert!(
        gc.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    text
}

/// A dead topic is something to collect: `gc` without names lists it and
/// does not also say there is nothing to collect. A `gc` without names
/// looks at every topic on the machine, so it runs in a child with a
/// private `/dev/shm` (the library's tests/sandbox), where the only topic
/// is the test's: nothing of other programs is looked at (root only; the
/// test says it skipped otherwise).
#[test]
fn gc_of_a_dead_topic_alone_does_not_say_nothing_to_collect() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to mount a private /dev/shm");
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, "gc-alone")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(skipped) = stdout.lines().find(|l| l.starts_with("@@ skipped")) {
        eprintln!("{}", &skipped[3..]);
        return;
    }
    assert!(
        output.status.success() && stdout.contains("@@ done"),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The test process run again as a child with `ROLE` set: enters a
/// private `/dev/shm` and runs that role; does nothing in a normal run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    if let Err(why) = sandbox::enter_private_dev_shm() {
        println!("@@ skipped: {why}");
        return;
    }
    match role.as_str() {
        "gc-alone" => {
            let topic = dead_topic();
            let text = gc_output(&["gc"]);
            assert!(
                text.contains(&format!("would remove topic {}: abandoned", topic.0)),
                "{text}"
            );
            assert!(!text.contains("nothing to collect"), "{text}");
            assert_eq!(
                text.lines().last(),
                Some("(nothing was removed: `shmkit gc --force` removes them)"),
                "{text}"
            );
        }
        other => panic!("unknown role {other}"),
    }
    println!("@@ done");
}

/// With a dead ring and a dead topic, `gc` lists both, then says once, at
/// the end, that a dry run removed nothing.
#[test]
fn gc_of_a_dead_ring_and_a_dead_topic_prints_the_footer_once_last() {
    let ring = dead_ring();
    let topic = dead_topic();
    let text = gc_output(&["gc", &ring.0, &topic.0]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("would remove ring {}: abandoned", ring.0)),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("would remove topic {}: abandoned", topic.0)),
        "{text}"
    );
    assert_eq!(
        lines[2..],
        ["(nothing was removed: `shmkit gc --force` removes them)"],
        "{text}"
    );
    let removed = gc_output(&["gc", "--force", &ring.0, &topic.0]);
    assert!(!removed.contains("nothing"), "{removed}");
    assert!(Segment::open(&topic.key()).is_err());
}

/// A `pub` that fails (a line too long) leaves its subscriber failing after
/// the lines before, saying the publisher did not finish; the topic goes
/// with its last member.
#[test]
fn a_pub_that_fails_leaves_its_sub_failing_after_the_lines_before() {
    let topic = TestTopic::new();
    let subscriber = spawn(&["sub", &topic.0]);
    wait_until("the subscriber joined", || subscribers(&topic.0) == 1);
    let mut input = b"short\n".to_vec();
    input.extend(vec![b'a'; 300_000]);
    input.extend(b"\nafter\n");
    let mut publisher = spawn(&["pub", &topic.0]);
    let mut stdin = publisher.0.stdin.take().unwrap();
    // pub stops reading at the long line: a failed write is no test failure.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (ok, _, err) = finish(publisher);
    feeder.join().unwrap();
    assert!(
        !ok && err.contains("line 2 of standard input is longer"),
        "{err}"
    );
    assert!(err.contains("`--capacity`"), "{err}");
    let (ok, out, err) = finish(subscriber);
    assert!(!ok, "{err}");
    assert_eq!(out, "short\n");
    assert!(
        err.contains(&format!("the publisher of topic {}", topic.0))
            && err.contains("without finishing the stream"),
        "{err}"
    );
    assert!(Segment::open(&topic.key()).is_err(), "the topic is gone");
}

/// With no subscriber, a `pub` that fails closes the topic as one that
/// succeeds does: nothing is left for a later `sub` to take for a stream
/// cut short.
#[test]
fn a_pub_that_fails_with_no_subscriber_leaves_nothing() {
    let topic = TestTopic::new();
    let mut input = b"short\n".to_vec();
    input.extend(vec![b'a'; 300_000]);
    input.extend(b"\n");
    let mut publisher = spawn(&["pub", &topic.0]);
    let mut stdin = publisher.0.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (ok, _, err) = finish(publisher);
    feeder.join().unwrap();
    assert!(
        !ok && err.contains("line 2 of standard input is longer"),
        "{err}"
    );
    assert!(Segment::open(&topic.key()).is_err(), "the topic is gone");
}

#[test]
fn pub_options_given_for_an_existing_topic_must_match_it() {
    let topic = TestTopic::new();
    let options = shmkit::topic::Options::default().history(2);
    let mut subscriber = shmkit::topic::Subscriber::open_with(&topic.0, &options).unwrap();
    let place = format!("topic {}", topic.0);
    for (args, refused) in [
        (
            &["--lossy"][..],
            "policy Block, not the DropOldest asked for",
        ),
        (&["--history", "5"][..], "history 2, not the 5 asked for"),
        (&["--history", "0"][..], "history 2, not the 0 asked for"),
        (
            &["--capacity", "8K"][..],
            "capacity 262144, not the 8192 asked for",
        ),
    ] {
        let output = Command::new(SHMKIT)
            .args(["pub", &topic.0])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!("shmkit: {place} exists with {refused}\n"),
            "{args:?}"
        );
    }
    // Not given: the topic's own history (and the rest), as before.
    let mut publisher = spawn(&["pub", &topic.0, "--history", "2"]);
    writeln!(publisher.0.stdin.as_mut().unwrap(), "given").unwrap();
    let (ok, _, err) = finish(publisher);
    assert!(ok, "{err}");
    let mut publisher = spawn(&["pub", &topic.0]);
    writeln!(publisher.0.stdin.as_mut().unwrap(), "not given").unwrap();
    let (ok, _, err) = finish(publisher);
    assert!(ok, "{err}");
    let mut buf = [0u8; 64];
    for line in ["given", "not given"] {
        let got = subscriber.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got.len], line.as_bytes());
    }
}
