//! The service commands (`serve`, `call`, and services in `ls`, `stat` and
//! `gc`) as a user at a shell sees them: real `shmkit` processes.
//!
//! Each test names its services `cli-service-PID-N` and removes them when
//! it ends, even by a panic; child processes are killed by their pid when
//! a test ends. Nothing waits by sleeping: `call` waits for a server by
//! itself, and a test that needs another process to have done something
//! polls the service's status until it shows.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::{Key, Segment};

#[allow(dead_code)]
mod common;

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");

/// A service name used by one test only; dropping it removes the service.
struct TestService(String);

impl TestService {
    fn new() -> TestService {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestService(format!("cli-service-{}-{n}", std::process::id()))
    }

    fn key(&self) -> Key {
        Key::posix(&format!("{}{}", shmkit::service::SEGMENT_PREFIX, self.0)).unwrap()
    }

    fn exists(&self) -> bool {
        Segment::open(&self.key()).is_ok()
    }
}

impl Drop for TestService {
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn shmkit(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(SHMKIT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls the service's status until `done` holds (a minute at most).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

/// Stops `serve` as a shell's Ctrl-C would, and returns its output.
fn interrupt(serve: Running) -> Output {
    // SAFETY: kill(2) on the pid of our own child, which we have not reaped.
    let sent = unsafe { libc::kill(serve.0.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    finish(serve)
}

/// Waits for a guarded child to exit by itself, and returns its output.
fn finish(mut running: Running) -> Output {
    let child = std::mem::replace(
        &mut running.0,
        Command::new("true").spawn().unwrap(), // reaped by the guard
    );
    child.wait_with_output().unwrap()
}

#[test]
fn serve_runs_a_command_and_call_prints_its_answers() {
    let service = TestService::new();
    let name = service.0.as_str();
    let serve = spawn(&["serve", name, "--", "sed", "-u", r"s/.*/\U&/"]);
    let output = shmkit(&["call", name, "hello"], b"");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "HELLO\n");
    let output = shmkit(&["call", name, "two words", "three"], b"");
    assert_eq!(text(&output.stdout), "TWO WORDS\nTHREE\n");
    let output = shmkit(&["call", name], b"from\nstandard input\n");
    assert_eq!(text(&output.stdout), "FROM\nSTANDARD INPUT\n");
    let output = shmkit(&["call", name, "--timeout", "30", "in time"], b"");
    assert_eq!(text(&output.stdout), "IN TIME\n");

    let ls = text(&shmkit(&["ls"], b"").stdout);
    let row = ls
        .lines()
        .skip_while(|line| *line != "SERVICES")
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{ls}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], serve.0.id().to_string(), "{row}");
    assert_eq!(&cells[2..], ["0/32", "0", "6", "0"], "{row}");
    let stat = text(&shmkit(&["stat", &format!("/shmkit.service.{name}")], b"").stdout);
    assert!(
        stat.contains(&format!(
            "service {name}: server pid {}, alive; 6 requests received, 6 answered",
            serve.0.id()
        )),
        "{stat}"
    );

    let stopped = interrupt(serve);
    // It cleaned up, then died of the signal, as a shell expects.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(stopped.status.signal(), Some(libc::SIGINT), "{stopped:?}");
    assert_eq!(text(&stopped.stderr), "");
    assert!(!service.exists(), "serve, the last member, removed it");
}

#[test]
fn serve_fails_pending_calls_when_its_command_exits() {
    let service = TestService::new();
    let name = service.0.as_str();
    // Answers one line, then exits.
    let serve = spawn(&[
        "serve",
        name,
        "--",
        "sh",
        "-c",
        "read line; echo \"got $line\"",
    ]);
    let output = shmkit(&["call", name, "one", "two"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "got one\n");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "shmkit: service {name} closed: its server stopped before answering"
        )),
        "{stderr}"
    );
    let serve = finish(serve);
    assert_eq!(serve.status.code(), Some(1));
    let stderr = text(&serve.stderr);
    assert!(
        stderr.contains("the command") && stderr.contains("pending calls fail"),
        "{stderr}"
    );
    assert!(!service.exists());
}

/// A `call` to a service no server has come to waits for one by looking
/// at the service's status in doubling sleeps (`arrival`), not in the
/// library's naps of 20 ms, and gets the answer of a server that comes.
#[test]
fn a_call_waiting_for_a_server_wakes_seldom_and_gets_its_answer() {
    let service = TestService::new();
    let name = service.0.as_str();
    let call = spawn(&["call", name, "hello"]);
    wait_until("the client connected", || {
        shmkit::service::status(name).is_ok_and(|status| !status.clients.is_empty())
    });
    let wake_ups = common::wake_ups_in_a_window(call.0.id());
    assert!(wake_ups < 30, "{wake_ups} wake-ups in 1.5 s");
    let serve = spawn(&["serve", name, "--", "sed", "-u", r"s/.*/\U&/"]);
    let output = finish(call);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "HELLO\n");
    let stopped = interrupt(serve);
    assert_eq!(text(&stopped.stderr), "");
}

#[test]
fn call_times_out_without_a_server_and_serve_needs_a_command() {
    let service = TestService::new();
    let name = service.0.as_str();
    let output = shmkit(&["call", name, "--timeout", "0.05", "anyone?"], b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "shmkit: timed out: no answer from service {name} within 0.05 s"
        )),
        "{stderr}"
    );
    assert!(!service.exists(), "the client, its last member, removed it");
    let output = shmkit(&["serve", name], b"");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn gc_collects_a_service_whose_client_was_killed() {
    let service = TestService::new();
    let name = service.0.as_str();
    // No server: the call waits, holding a client slot.
    let mut caller = spawn(&["call", name, "waiting"]);
    wait_until("the call is in flight", || {
        shmkit::service::status(name).is_ok_and(|s| s.in_flight() == 1)
    });
    let dry = text(&shmkit(&["gc", name], b"").stdout);
    assert_eq!(
        dry,
        format!(
            "service {name} is not garbage: a live process is a member of it or maps it (or is \
             joining or leaving it)\n"
        ),
        "a live client's service is not garbage"
    );
    caller.0.kill().unwrap();
    caller.0.wait().unwrap();
    let dry = text(&shmkit(&["gc", name], b"").stdout);
    assert_eq!(
        dry,
        format!(
            "would remove service {name}: abandoned (a member died, and none is alive)\n\
             (nothing was removed: `shmkit gc --force` removes them)\n"
        )
    );
    assert!(service.exists());
    let forced = shmkit(&["gc", "--force", name], b"");
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(
        text(&forced.stdout),
        format!("removed service {name}: abandoned (a member died, and none is alive)\n")
    );
    assert!(!service.exists());
}

#[test]
fn ls_and_stat_show_a_services_clients_and_calls_in_flight_as_text_and_json() {
    let service = TestService::new();
    let name = service.0.as_str();
    let key = format!("/shmkit.service.{name}");
    // No server: the call waits, its client holding slot 0, one call in flight.
    let mut caller = spawn(&["call", name, "waiting"]);
    let pid = caller.0.id();
    wait_until("the call is in flight", || {
        shmkit::service::status(name).is_ok_and(|s| s.in_flight() == 1)
    });

    let ls = text(&shmkit(&["ls"], b"").stdout);
    let row = ls
        .lines()
        .skip_while(|line| *line != "SERVICES")
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{ls}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..], ["-", "1/32", "1", "0", "0"], "{row}");
    let stat = text(&shmkit(&["stat", &key], b"").stdout);
    assert!(
        stat.contains(&format!("service {name}: server none yet;")),
        "{stat}"
    );
    assert!(
        stat.contains(&format!(
            "  client 0: pid {pid}, alive, 1 calls, 1 in flight\n"
        )),
        "{stat}"
    );

    let json = |args: &[&str]| -> serde_json::Value {
        let output = shmkit(args, b"");
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    // `stat --service NAME` is `stat` of the service's segment.
    let by_name = text(&shmkit(&["stat", "--service", name], b"").stdout);
    assert!(by_name.contains(&format!("key:      {key}\n")), "{by_name}");
    assert!(
        by_name.contains(&format!("service {name}: server none yet;")),
        "{by_name}"
    );

    let stat = json(&["stat", &key, "--json"]);
    assert_eq!(
        json(&["stat", "--service", name, "--json"])["service"],
        stat["service"]
    );
    let described = &stat["service"];
    assert_eq!(described["name"], name, "{stat}");
    assert_eq!(described["server"], serde_json::Value::Null);
    assert_eq!(
        (
            described["max_clients"].as_u64(),
            described["in_flight"].as_u64()
        ),
        (Some(32), Some(1))
    );
    assert_eq!(described["abandoned"], false);
    let clients = described["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{described}");
    assert_eq!(clients[0]["pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(
        (
            clients[0]["slot"].as_u64(),
            clients[0]["in_flight"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(clients[0]["alive"], true);
    let all = json(&["ls", "--json"]);
    let listed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|segment| segment["key"] == key.as_str())
        .unwrap_or_else(|| panic!("no {key} in {all}"));
    assert_eq!(listed["service"]["in_flight"].as_u64(), Some(1), "{listed}");
    assert_eq!(listed["ring"], serde_json::Value::Null);

    // Killed: its slot shows it dead, and the service abandoned.
    caller.0.kill().unwrap();
    caller.0.wait().unwrap();
    let stat = text(&shmkit(&["stat", &key], b"").stdout);
    assert!(
        stat.contains(&format!("  client 0: pid {pid}, dead,")),
        "{stat}"
    );
    let stat = json(&["stat", &key, "--json"]);
    assert_eq!(stat["service"]["clients"][0]["alive"], false, "{stat}");
    assert_eq!(stat["service"]["abandoned"], true);
}

#[test]
fn rm_all_kind_service_removes_services_alone_live_ones_too() {
    // A name no other test's begins with: `rm --all --prefix` takes every
    // segment whose name starts so, and the other tests of this binary
    // run at the same time under `cli-service-PID-`.
    let service = TestService(format!("cli-rm-kind-{}", std::process::id()));
    let key = format!("{}{}", shmkit::service::SEGMENT_PREFIX, service.0);
    let prefix = key.clone();
    // A live server: this process holds the service and maps it.
    let server = shmkit::service::Server::open(&service.0).unwrap();
    // A ring of the same name, which is no service.
    let ring = RingGuard(service.0.clone());
    drop(shmkit::ring::Producer::open(&ring.0).unwrap());
    let ring_key = format!("{}{}", shmkit::ring::SEGMENT_PREFIX, ring.0);
    let nothing = "no segment matched; nothing was removed\n";
    let rm = |kind: &str, prefix: &str| {
        let output = shmkit(
            &["rm", "--all", "--kind", kind, "--prefix", prefix, "-v"],
            b"",
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };

    // The other kinds do not take a service, nor --kind service a ring.
    for kind in ["ring", "topic", "sysv"] {
        assert_eq!(rm(kind, &prefix), nothing, "--kind {kind}");
    }
    assert_eq!(rm("service", &ring_key), nothing);
    assert!(service.exists());

    // Removed though it is live, as `--kind ring` removes a live ring. (How
    // many processes are attached is not asserted: a child that another
    // test forks holds this process's mappings until it execs.)
    let removed = rm("service", &prefix);
    assert!(
        removed.starts_with(&format!("removed {key}; its memory stays until the "))
            && removed.lines().count() == 1,
        "{removed}"
    );
    assert!(!service.exists());
    assert!(shmkit::ring::status(&ring.0).is_ok(), "the ring stays");
    drop(server);
}

/// Removes ring NAME when dropped.
struct RingGuard(String);

impl Drop for RingGuard {
    fn drop(&mut self) {
        let _ = shmkit::ring::remove(&self.0);
    }
}
