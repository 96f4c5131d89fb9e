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

use shmkit::{Key, Segment};

/// The environment variable that carries a child's role.
pub const ROLE: &str = "SHMKIT_TEST_ROLE";

/// A fresh System V key and POSIX name for each call, unique across the
/// tests of this run (the counter) and across concurrent runs (the pid).
pub fn unique_keys() -> [Key; 2] {
    static COUNTER: AtomicU32 = AtomicU32::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let sysv = 0x5a00_0000 | (pid & 0xffff) << 8 | (n & 0xff);
    let posix = format!("/shmkit-test-{pid}-{n}");
    [Key::SysV(sysv as i32), Key::posix(&posix).unwrap()]
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
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env("SHMKIT_TEST_ARGS", args)
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
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
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

    /// Sends one command line to the child.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
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
