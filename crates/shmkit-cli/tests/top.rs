//! `shmkit top` watching a live ring: as a script sees it (`--once`, text
//! and JSON), and as a person does, driven in tmux (send-keys to type,
//! capture-pane to read the screen).
//!
//! Each test streams messages through a ring of its own, named by this
//! process's id and the test, from two threads of this process; the ring
//! is closed and removed when the test ends, even by a panic.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use shmkit::ring::{Consumer, Producer};
use shmkit::{Key, Segment};

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");

/// How long a test waits for top to show what it expects before failing:
/// generous, since the machine is shared.
const PATIENCE: Duration = Duration::from_secs(30);

/// Removes ring NAME's segment when dropped, if it is still there: the
/// ring removes itself once both ends left, so this is for a test that
/// panicked half-way.
struct RingSegment(String);

impl Drop for RingSegment {
    fn drop(&mut self) {
        if let Ok(key) = Key::posix(&format!("/shmkit.ring.{}", self.0)) {
            if let Ok(segment) = Segment::open(&key) {
                let _ = segment.remove();
            }
        }
    }
}

/// A ring with messages flowing through it, about a thousand a second,
/// until it is dropped.
struct LiveRing {
    name: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _segment: RingSegment,
}

impl LiveRing {
    fn start(test: &str) -> LiveRing {
        let name = format!("top-test-{}-{test}", std::process::id());
        let mut producer = Producer::open(&name).expect("open the producer");
        let mut consumer = Consumer::open(&name).expect("open the consumer");
        let stop = Arc::new(AtomicBool::new(false));
        let sending = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    producer.send(&[7; 64]).expect("send");
                    // Pacing, not synchronisation: a steady, small load.
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Dropping the producer closes the ring.
            })
        };
        let receiving = std::thread::spawn(move || {
            let mut buf = vec![0; consumer.max_message()];
            loop {
                match consumer.recv_timeout(&mut buf, Duration::from_millis(100)) {
                    Ok(_) | Err(shmkit::Error::Timeout { .. }) => {}
                    Err(shmkit::Error::Closed { .. }) => return,
                    Err(err) => panic!("recv: {err}"),
                }
            }
        });
        LiveRing {
            _segment: RingSegment(name.clone()),
            name,
            stop,
            threads: vec![sending, receiving],
        }
    }
}

impl Drop for LiveRing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

#[track_caller]
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The MSG/S column (the sixth) of the line whose NAME column (the second)
/// is `name`, if there is such a line and the column is a number.
fn messages_per_second(screen: &str, name: &str) -> Option<u64> {
    screen
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|columns| columns.get(1) == Some(&name))
        .and_then(|columns| columns.get(5)?.parse().ok())
}

#[test]
fn top_once_shows_a_live_ring_and_its_rate() {
    let ring = LiveRing::start("once");
    let once = &["top", "--once", "--interval", "0.5", "--filter", &ring.name];
    let text = succeeded(&run(SHMKIT, once));
    let mut lines = text.lines();
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "KIND", "NAME", "SIZE", "RESIDENT", "ATTACH", "MSG/S", "BYTES/S", "FILL", "STATE"
        ]),
        "{text}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(row[..3], ["ring", ring.name.as_str(), "1.0M"], "{text}");
    assert!(
        row[5].parse::<u64>().expect("MSG/S is a number") > 0,
        "{text}"
    );
    assert_eq!(row[8], "open", "{text}");

    let mut args = once.to_vec();
    args.push("--json");
    let snapshot: Value = serde_json::from_str(&succeeded(&run(SHMKIT, &args))).expect("JSON");
    let object = &snapshot["objects"][0];
    assert_eq!(object["kind"], "ring");
    assert_eq!(object["name"], ring.name.as_str());
    assert!(
        object["messages_per_sec"].as_f64().expect("a rate") > 0.0,
        "{snapshot}"
    );
    assert!(
        object["bytes_per_sec"].as_f64().expect("a rate") > 0.0,
        "{snapshot}"
    );
    let members = object["members"].as_array().expect("members");
    let roles: Vec<&Value> = members.iter().map(|m| &m["role"]).collect();
    assert_eq!(roles, ["producer", "consumer"], "{snapshot}");
    for member in members {
        assert_eq!(member["pid"], std::process::id());
        assert_eq!(member["alive"], true);
    }
}

/// A tmux server of this test's own (`tmux -L NAME`), killed when dropped.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["-L", self.0.as_str()];
        all.extend_from_slice(args);
        run("tmux", &all)
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Waits until the screen shows what `done` looks for; returns it.
    #[track_caller]
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "top did not show {what} within {PATIENCE:?}:\n{screen}"
            );
            // Polling the screen, which has no event to wait on.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Whether tmux is there; outside CI, says why a test skips if not.
fn have_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI must have tmux: .ci/run installs it"
    );
    eprintln!("skipped: tmux is not installed (apt-get install tmux; .ci/run does in CI)");
    false
}

#[test]
fn top_in_tmux_shows_a_live_ring_and_its_rate_sorts_filters_and_quits_on_q() {
    if !have_tmux() {
        return;
    }
    let ring = LiveRing::start("tmux");
    let tmux = Tmux(format!("shmkit-top-test-{}", std::process::id()));
    let command = format!("'{SHMKIT}' top --interval 0.5 --filter '{}'", ring.name);
    succeeded(&tmux.run(&["new-session", "-d", "-x", "200", "-y", "30", &command]));

    let screen = tmux.wait_for("the ring with a rate above 0", |screen| {
        messages_per_second(screen, &ring.name).is_some_and(|rate| rate > 0)
    });
    assert!(screen.contains("MSG/S"), "{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    assert!(screen.contains("shmkit top: 1 object, every"), "{screen}");

    succeeded(&tmux.run(&["send-keys", "m"]));
    tmux.wait_for("the sort by messages/s", |screen| {
        screen.contains("sort: Messages desc")
    });

    succeeded(&tmux.run(&["send-keys", "/", "zzz-none", "Enter"]));
    let filtered = tmux.wait_for("the new filter", |screen| {
        screen.contains("0 objects") && screen.contains("filter: zzz-none")
    });
    assert!(!filtered.contains(&ring.name), "{filtered}");

    succeeded(&tmux.run(&["send-keys", "q"]));
    let deadline = Instant::now() + PATIENCE;
    while tmux.run(&["has-session"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "q did not quit top:\n{}",
            tmux.screen()
        );
        // Polling: tmux tells of a session's end only when asked.
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn top_without_a_terminal_says_to_use_once() {
    let output = run(SHMKIT, &["top"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("shmkit: top draws on a terminal") && stderr.contains("top --once"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// `timeout` (without `--foreground`) runs `top` in a process group of
/// its own, outside the terminal's foreground group, where setting the
/// terminal up would be interrupted by SIGTTOU: `top` says so first. The
/// terminal is `script`'s pseudo-terminal; the `; echo` keeps the shell
/// from exec'ing `timeout` as the session leader, which could not leave
/// the foreground group. No race: `top` checks before it touches the
/// terminal; the 60 s bound only ends a `top` that would not.
#[test]
fn top_outside_the_foreground_process_group_says_so() {
    let Ok(script) = Command::new("script").arg("--version").output() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must have script"
        );
        eprintln!("skipped: script (util-linux) is not installed");
        return;
    };
    assert!(script.status.success());
    let command = format!("timeout 60 '{SHMKIT}' top; echo exit $?");
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains(
            "shmkit: top: not the terminal's foreground process group (run it in the \
             foreground, or `timeout --foreground`)"
        ),
        "{screen}"
    );
    assert!(screen.contains("exit 1"), "{screen}");
    assert!(
        !screen.contains("\x1b[?1049h"),
        "the terminal was not set up: {screen}"
    );
}

#[test]
fn top_writes_nothing_into_the_rings_it_watches() {
    // An idle ring whose header and records would show any write.
    let name = format!("top-test-{}-idle", std::process::id());
    let key = format!("/shmkit.ring.{name}");
    let _segment = RingSegment(name.clone());
    let mut producer = Producer::open(&name).expect("open the producer");
    for message in [&b"one"[..], b"two", b"three"] {
        producer.send(message).expect("send");
    }
    let bytes = || succeeded(&run(SHMKIT, &["read", &key, "--len", "4096"]));
    let before = bytes();
    let once = ["top", "--once", "--interval", "0.2", "--filter", &name];
    let snapshot: Value =
        serde_json::from_str(&succeeded(&run(SHMKIT, &[&once[..], &["--json"]].concat())))
            .expect("JSON");
    assert_eq!(snapshot["objects"][0]["messages_total"], 3, "{snapshot}");
    assert_eq!(
        snapshot["objects"][0]["messages_per_sec"], 0.0,
        "{snapshot}"
    );
    assert_eq!(bytes(), before, "top changed the ring's bytes");
    drop(producer);
}

#[test]
fn top_marks_a_dead_producer() {
    let name = format!("top-test-{}-dead", std::process::id());
    let _segment = RingSegment(name.clone());
    let mut send = Command::new(SHMKIT)
        .args(["send", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start shmkit send");
    let mut input = send.stdin.take().expect("its stdin");
    std::io::Write::write_all(&mut input, b"last words\n").expect("write a line");
    std::io::Write::flush(&mut input).expect("flush");
    // Wait until the line is in the ring, then kill the producer by its pid.
    let deadline = Instant::now() + PATIENCE;
    while !shmkit::ring::status(&name).is_ok_and(|ring| ring.sent == 1) {
        assert!(Instant::now() < deadline, "send never sent its line");
        // Polling: the ring has no event for "a message was sent" that an
        // outsider may wait on.
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = send.id();
    send.kill().expect("kill shmkit send");
    send.wait().expect("reap it");
    drop(input);

    let once = ["top", "--once", "--interval", "0.1", "--filter", &name];
    let text = succeeded(&run(SHMKIT, &once));
    assert!(text.contains(&format!("producer {pid} DEAD")), "{text}");
    let snapshot: Value =
        serde_json::from_str(&succeeded(&run(SHMKIT, &[&once[..], &["--json"]].concat())))
            .expect("JSON");
    let object = &snapshot["objects"][0];
    assert_eq!(object["state"], "abandoned", "{snapshot}");
    assert_eq!(
        object["members"],
        serde_json::json!([{"role": "producer", "pid": pid, "alive": false, "lag_bytes": null}])
    );
}

#[test]
fn top_shows_a_topic_with_its_members_and_a_subscriber_lag() {
    let name = format!("top-test-{}-topic", std::process::id());
    let key = Key::posix(&format!("/shmkit.topic.{name}")).expect("a valid name");
    struct RemoveTopic(Key);
    impl Drop for RemoveTopic {
        fn drop(&mut self) {
            if let Ok(segment) = Segment::open(&self.0) {
                let _ = segment.remove();
            }
        }
    }
    let _segment = RemoveTopic(key);
    let subscriber = shmkit::topic::Subscriber::open(&name).expect("subscribe");
    let mut publisher = shmkit::topic::Publisher::open(&name).expect("publish");
    for _ in 0..5 {
        publisher.send(&[1; 100]).expect("publish");
    }
    let once = ["top", "--once", "--interval", "0.1", "--filter", &name];
    let snapshot: Value =
        serde_json::from_str(&succeeded(&run(SHMKIT, &[&once[..], &["--json"]].concat())))
            .expect("JSON");
    let object = &snapshot["objects"][0];
    assert_eq!(object["kind"], "topic", "{snapshot}");
    assert_eq!(object["messages_total"], 5, "{snapshot}");
    let members = object["members"].as_array().expect("members");
    let roles: Vec<&Value> = members.iter().map(|m| &m["role"]).collect();
    assert_eq!(roles, ["publisher", "subscriber"], "{snapshot}");
    let lag = members[1]["lag_bytes"].as_u64().expect("a lag");
    assert!(lag >= 500, "five 100-byte messages unread: {snapshot}");
    assert_eq!(object["bytes_in_flight"], lag);

    let text = succeeded(&run(SHMKIT, &once));
    assert!(text.contains("open, 1 pub, 1 sub, lag "), "{text}");
    drop((publisher, subscriber));
}

#[test]
fn top_shows_a_service_with_its_server_clients_and_calls_in_flight() {
    let name = format!("top-test-{}-service", std::process::id());
    let key = Key::posix(&format!("/shmkit.service.{name}")).expect("a valid name");
    struct RemoveService(Key);
    impl Drop for RemoveService {
        fn drop(&mut self) {
            if let Ok(segment) = Segment::open(&self.0) {
                let _ = segment.remove();
            }
        }
    }
    let _segment = RemoveService(key);
    let mut server = shmkit::service::Server::open(&name).expect("serve");
    let mut client = shmkit::service::Client::connect(&name).expect("connect");
    let answered = client.send_request(b"answered").expect("call");
    let _waiting = client.send_request(b"still waiting").expect("call");
    let request = server.try_recv_request().expect("the first request");
    request.reply(b"done").expect("reply");
    assert_eq!(&*client.wait(answered).expect("its response"), b"done");

    let once = ["top", "--once", "--interval", "0.1", "--filter", &name];
    let snapshot: Value =
        serde_json::from_str(&succeeded(&run(SHMKIT, &[&once[..], &["--json"]].concat())))
            .expect("JSON");
    let object = &snapshot["objects"][0];
    assert_eq!(object["kind"], "service", "{snapshot}");
    assert_eq!(object["state"], "open", "{snapshot}");
    assert_eq!(object["messages_total"], 1, "{snapshot}");
    assert_eq!(object["calls_in_flight"], 1, "{snapshot}");
    let members = object["members"].as_array().expect("members");
    let roles: Vec<&Value> = members.iter().map(|m| &m["role"]).collect();
    assert_eq!(roles, ["server", "client"], "{snapshot}");
    assert!(
        members.iter().all(|m| m["pid"] == std::process::id()),
        "{snapshot}"
    );

    let text = succeeded(&run(SHMKIT, &once));
    assert!(text.contains("open, 1 client, 1 in flight"), "{text}");
    drop((client, server));
}

#[test]
fn top_in_tmux_restores_the_terminal_when_sigterm_stops_it() {
    if !have_tmux() {
        return;
    }
    let ring = LiveRing::start("sigterm");
    let tmux = Tmux(format!("shmkit-top-sigterm-test-{}", std::process::id()));
    // exec: the pane's process is top itself; the pane stays after it ends.
    let command = format!("exec '{SHMKIT}' top --filter '{}'", ring.name);
    succeeded(&tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "20",
        &command,
        ";",
        "set-option",
        "remain-on-exit",
        "on",
    ]));
    tmux.wait_for("the ring", |screen| screen.contains(&ring.name));
    let pane = |format: &str| {
        let output = tmux.run(&["display-message", "-p", format]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let pid: i32 = pane("#{pane_pid}").parse().expect("the pane's pid");
    // SAFETY: kill(2) with a pid this test's tmux pane runs; it touches no
    // memory of this process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    // How it ended: tmux says once it has reaped the process; until then
    // (tmux 3.3 sometimes leaves it a zombie for long) the kernel's
    // exit_code, the last field of /proc/PID/stat, does.
    let ended = || -> Option<String> {
        let signal = pane("#{pane_dead_signal}");
        if !signal.is_empty() {
            return Some(format!("signal {signal}"));
        }
        let status = pane("#{pane_dead_status}");
        if !status.is_empty() {
            return Some(format!("status {status}"));
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        if fields.first() != Some(&"Z") {
            return None;
        }
        let code: i32 = fields.last()?.parse().ok()?;
        Some(match code & 0x7f {
            0 => format!("status {}", code >> 8),
            signal => format!("signal {signal}"),
        })
    };
    let deadline = Instant::now() + PATIENCE;
    let how = loop {
        if let Some(how) = ended() {
            break how;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop top:\n{}",
            tmux.screen()
        );
        // Polling: tmux tells of a pane's end only when asked.
        std::thread::sleep(Duration::from_millis(100));
    };
    // It died of the signal, as the shell expects, after leaving the
    // alternate screen: the table is gone from the pane.
    assert_eq!(how, "signal 15", "{}", tmux.screen());
    let screen = tmux.screen();
    assert!(
        !screen.contains("MSG/S"),
        "the view was left on the terminal:\n{screen}"
    );
}
