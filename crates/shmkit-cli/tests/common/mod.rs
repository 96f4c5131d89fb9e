//! What the `shmkit` binary's tests share: segments named for one test
//! only, and running programs and checking what they print.
//!
//! Every test names its segments by this process's id and a counter
//! ([`TestKey`]), so that tests running at once, and other test runs, never
//! meet; and every segment a test makes is removed by a guard when the test
//! ends, even by a panic.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use shmkit::{Key, Segment};

pub const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");

// ---------------------------------------------------------------------------
// Segments the tests own

/// A key or name used by one test only; dropping it removes the segment it
/// names, if any.
pub struct TestKey(pub Key);

impl TestKey {
    pub fn next() -> u32 {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        assert!(n < 256, "more than 256 test keys: widen the counter's bits");
        n
    }

    /// `0x5Cpppp nn`: 0x5C, the low 16 bits of the pid, the counter.
    pub fn sysv() -> TestKey {
        let key = 0x5C00_0000 | (std::process::id() & 0xffff) << 8 | TestKey::next();
        TestKey(Key::SysV(key))
    }

    /// `/shmkit-cli-test-PID-N`.
    pub fn posix() -> TestKey {
        let name = format!(
            "/shmkit-cli-test-{}-{}",
            std::process::id(),
            TestKey::next()
        );
        TestKey(Key::posix(&name).expect("a valid name"))
    }

    /// The KEY argument: `0x5c00....` or `/name`.
    pub fn arg(&self) -> String {
        self.0.to_string()
    }

    /// The POSIX name without its slash, as Python wants it.
    pub fn bare_name(&self) -> String {
        self.arg().trim_start_matches('/').to_owned()
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

/// A System V segment known by id only (private key, or removed by key);
/// dropping it removes the segment, if it is still there.
pub struct TestId(pub i32);

impl Drop for TestId {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open_id(self.0) {
            let _ = segment.remove();
        }
    }
}

/// Removes every System V segment that process `pid` created: what a
/// crashed `shmkit demo` would leave.
pub struct CreatedBy(pub u32);

impl Drop for CreatedBy {
    fn drop(&mut self) {
        for stat in shmkit::list().unwrap_or_default() {
            if let (Some(cpid), Some(id)) = (stat.cpid, stat.id) {
                if cpid == self.0 {
                    drop(TestId(id));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running programs

pub fn run(program: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        // A writer thread, so that a program that prints before it has read
        // everything cannot deadlock us. It may stop reading early (an
        // error), so a failed write is not a test failure.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    child.wait_with_output().expect("wait for the program")
}

pub fn shmkit(args: &[&str]) -> Output {
    run(SHMKIT, args, None)
}

pub fn shmkit_with_input(args: &[&str], input: &[u8]) -> Output {
    run(SHMKIT, args, Some(input))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "shmkit failed with {}: {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Asserts failure with `code`, a `shmkit: ` message containing `fragment`
/// and nothing on stdout; returns the message.
#[track_caller]
pub fn failed(output: &Output, code: i32, fragment: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("shmkit: "), "stderr: {stderr}");
    assert!(stderr.contains(fragment), "{fragment:?} not in {stderr:?}");
    assert_no_crash(&stderr);
    assert!(output.stdout.is_empty(), "stdout: {}", text(&output.stdout));
    stderr
}

/// Asserts that clap refused the command line (exit 2, `error: …`
/// containing `fragment`).
#[track_caller]
pub fn refused_by_clap(output: &Output, fragment: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(stderr.contains(fragment), "{fragment:?} not in {stderr:?}");
}

#[track_caller]
pub fn assert_no_crash(stderr: &str) {
    for bad in ["panicked", "Os {", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad:?} in {stderr:?}");
    }
}

#[track_caller]
pub fn json(output: &Output) -> Value {
    serde_json::from_str(&succeeded(output)).expect("valid JSON")
}

/// `shmkit create KEY --size SIZE …` and the id it prints.
#[track_caller]
pub fn create_sysv(key: &TestKey, size: &str, extra: &[&str]) -> i32 {
    let k = key.arg();
    let mut args = vec!["create", &k, "--size", size];
    args.extend_from_slice(extra);
    succeeded(&shmkit(&args))
        .trim()
        .parse()
        .expect("create prints the id")
}

/// The `ls` row whose KEY column is `key`, split into columns.
pub fn ls_row(ls: &str, key: &str) -> Option<Vec<String>> {
    ls.lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|columns| columns.get(1).map(String::as_str) == Some(key))
}

/// The `stat` text line `name: value`'s value.
pub fn stat_field(stat: &str, name: &str) -> String {
    stat.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {stat}"))
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------
// Running as another user

/// `shmkit ARGS` as uid and gid 65534 (nobody, no supplementary groups),
/// or `None` (and a printed reason) when this process is not root.
pub fn shmkit_as_nobody(args: &[&str]) -> Option<Output> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: dropping to uid 65534 needs root (CI runs as root)");
        return None;
    }
    let mut command = Command::new(SHMKIT);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the child calls only setgroups,
    // setresgid and setresuid, which are async-signal-safe, and touches no
    // memory another thread of this process could hold locked.
    unsafe {
        command.pre_exec(|| {
            let nobody = 65534;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(nobody, nobody, nobody) != 0
                || libc::setresuid(nobody, nobody, nobody) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Some(command.output().expect("run shmkit as uid 65534"))
}

// ---------------------------------------------------------------------------
// How often a waiting process wakes

/// The times process `pid`'s main thread gave up its CPU by itself
/// (`voluntary_ctxt_switches` in /proc/PID/status): one per sleep it woke
/// from.
pub fn voluntary_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("a voluntary_ctxt_switches line")
}

/// The wake-ups of process `pid` over 1.5 s: a measurement's window, not a
/// wait for anything. The library's waits nap 20 ms at a time (75 in such
/// a window); a command waiting for a peer's arrival sleeps 20 ms, 40,
/// 80 ... up to 500 ms (a dozen at most, with its first slice of naps).
pub fn wake_ups_in_a_window(pid: u32) -> u64 {
    let before = voluntary_switches(pid);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    voluntary_switches(pid) - before
}
