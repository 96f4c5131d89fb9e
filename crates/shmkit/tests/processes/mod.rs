//! Helpers for tests that run real child processes.
//!
//! A test spawns this same test binary, filtered to the `child` test, with a
//! role in `SHMKIT_TEST_ROLE`; the child reports on stdout in lines starting
//! with `@@ ` (libtest prints its own lines around them) and waits for
//! commands on stdin, so the two sides step in lock-step without sleeps.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmkit::{Key, Segment};

/// The environment variable that carries a child's role.
pub const ROLE: &str = "SHMKIT_TEST_ROLE";

/// Numbers the names and keys of one test run.
static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A fresh System V key and POSIX name for each call, unique across the
/// tests of this run (the counter) and across concurrent runs (the pid).
pub fn unique_keys() -> [Key; 2] {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let sysv = 0x5a00_0000 | (pid & 0xffff) << 8 | (n & 0xff);
    let posix = format!("/shmkit-test-{pid}-{n}");
    [Key::SysV(sysv), Key::posix(&posix).unwrap()]
}

/// Removes the segment a test made under `key`, even if the test panics.
pub struct Cleanup(pub Key);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

/// A fresh ring name, unique like [`unique_keys`]: `test-TAG-PID-N`.
pub fn unique_ring_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("test-{tag}-{}-{n}", std::process::id())
}

/// The POSIX key of ring `name`'s segment (`/shmkit.ring.NAME`).
pub fn ring_key(name: &str) -> Key {
    Key::posix(&format!("{}{name}", shmkit::ring::SEGMENT_PREFIX)).unwrap()
}

/// Whether ring `name`'s segment exists (`/dev/shm/shmkit.ring.NAME`).
pub fn ring_exists(name: &str) -> bool {
    match ring_key(name) {
        Key::Posix(posix) => posix.path().exists(),
        Key::SysV(_) => unreachable!("rings are POSIX segments"),
    }
}

/// Removes ring `name`'s segment when dropped, even if the test panics.
pub struct RingCleanup(pub String);

impl Drop for RingCleanup {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&ring_key(&self.0)) {
            let _ = segment.remove();
        }
    }
}

/// Polls `done` until it holds, yielding between tries; panics after a
/// minute, so that a broken test fails instead of hanging. This waits for a
/// state another process reaches, it is not a sleep standing in for one.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

/// Aborts the whole test run if it is not dropped within `limit`: a hang
/// in a ring call becomes a loud failure instead of a stuck CI job.
pub struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

impl Watchdog {
    pub fn new(what: &'static str, limit: Duration) -> Watchdog {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                // Straight to the stream: libtest would capture eprintln!,
                // and the abort would lose it.
                use std::io::Write;
                let message = format!("watchdog: {what} still running after {limit:?}; aborting\n");
                let _ = std::io::stderr().write_all(message.as_bytes());
                std::process::abort();
            }
        });
        Watchdog(done)
    }
}

/// A child process running one role, spoken to line by line.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts this test binary as a child in `role`, with `args` in
    /// `SHMKIT_TEST_ARGS`, running as `uid`/`gid` if given.
    pub fn spawn(role: &str, args: &str, drop_to: Option<(u32, u32)>) -> Peer {
        Peer::spawn_under(&[], role, args, drop_to)
    }

    /// As [`spawn`](Peer::spawn), run by the program `wrapper` (for example
    /// `["unshare", "-pf", "--mount-proc"]`; empty for none).
    pub fn spawn_under(
        wrapper: &[&str],
        role: &str,
        args: &str,
        drop_to: Option<(u32, u32)>,
    ) -> Peer {
        Peer::spawn_full(wrapper, role, args, drop_to, &[])
    }

    /// As [`spawn`](Peer::spawn), with the environment variables `env` set.
    pub fn spawn_with_env(role: &str, args: &str, env: &[(&str, &str)]) -> Peer {
        Peer::spawn_full(&[], role, args, None, env)
    }

    fn spawn_full(
        wrapper: &[&str],
        role: &str,
        args: &str,
        drop_to: Option<(u32, u32)>,
        env: &[(&str, &str)],
    ) -> Peer {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env("SHMKIT_TEST_ARGS", args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some((uid, gid)) = drop_to {
            // std clears the supplementary groups when root sets a uid.
            command.gid(gid).uid(uid);
        }
        let mut child = command.spawn().expect("spawn the test binary as a child");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> shmkit::Pid {
        self.child.id()
    }

    /// The next report of the child (without its `@@ ` prefix); panics if the
    /// child exits first.
    pub fn expect_line(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child exited before reporting");
            // libtest's "test child ... " may precede the report on its line.
            if let Some(at) = line.find("@@ ") {
                return line[at + 3..].trim_end().to_owned();
            }
        }
    }

    /// Every report the child makes until it exits (after a kill, the ones
    /// it made before it died).
    pub fn remaining_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                return lines;
            }
            if let Some(at) = line.find("@@ ") {
                lines.push(line[at + 3..].trim_end().to_owned());
            }
        }
    }

    /// Sends one command line to the child.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Kills the child with SIGKILL (at whatever it is doing) and waits
    /// until it has died: reaped if `reap`, else left a zombie until the
    /// `Peer` is dropped. (Its stdout closes while it exits, before it is a
    /// zombie: EOF alone does not say it is dead.)
    pub fn kill(&mut self, reap: bool) {
        self.child.kill().unwrap();
        if reap {
            use std::os::unix::process::ExitStatusExt;
            let status = self.child.wait().unwrap();
            assert_eq!(status.signal(), Some(9), "child ended otherwise: {status}");
        } else {
            let stat = format!("/proc/{}/stat", self.child.id());
            let tasks = format!("/proc/{}/task", self.child.id());
            // The leader shows Z while its other threads may still be
            // exiting, holding the process's files (and so its locks):
            // wait until they are gone too.
            wait_until("the killed child is a zombie", || {
                let text = std::fs::read_to_string(&stat).unwrap();
                let (_, state) = text.rsplit_once(')').unwrap();
                state.trim_start().starts_with('Z')
                    && std::fs::read_dir(&tasks).map_or(0, Iterator::count) <= 1
            });
        }
    }

    /// Waits for the child and asserts it succeeded.
    pub fn finish(mut self) {
        self.stdin = None; // EOF tells the child to exit
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for Peer {
    /// A test that fails midway must not leave its child waiting forever.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: reports one line to the parent.
pub fn report(line: &str) {
    println!("@@ {line}");
    std::io::stdout().flush().unwrap();
}

/// In a child: waits for the parent's next command.
pub fn next_command() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// In a child: the arguments the parent gave.
pub fn args() -> String {
    std::env::var("SHMKIT_TEST_ARGS").unwrap_or_default()
}

/// Whether this process may set another uid (the permission tests need to).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// The key of topic `name`'s segment.
pub fn topic_key(name: &str) -> Key {
    Key::posix(&format!("{}{name}", shmkit::topic::SEGMENT_PREFIX)).unwrap()
}

/// Whether topic `name`'s segment exists.
pub fn topic_exists(name: &str) -> bool {
    Segment::open(&topic_key(name)).is_ok()
}

/// Removes topic `name`'s segment when dropped, even if the test panics.
pub struct TopicCleanup(pub String);

impl Drop for TopicCleanup {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&topic_key(&self.0)) {
            let _ = segment.remove();
        }
    }
}
