//! The `shmkit` binary as a user and other programs see it: real processes,
//! real segments, and tools we did not write (`ipcs`, `ipcrm`, Python).
//!
//! Every test names its segments by this process's id and a counter
//! ([`TestKey`]), so that tests running at once, and other test runs, never
//! meet; and every segment a test makes is removed by a guard when the test
//! ends, even by a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use shmkit::{Key, ReadOnly, Segment};

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");

// ---------------------------------------------------------------------------
// Segments the tests own

/// A key or name used by one test only; dropping it removes the segment it
/// names, if any.
struct TestKey(Key);

impl TestKey {
    fn next() -> u32 {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        assert!(n < 256, "more than 256 test keys: widen the counter's bits");
        n
    }

    /// `0x5Cpppp nn`: 0x5C, the low 16 bits of the pid, the counter.
    fn sysv() -> TestKey {
        let key = 0x5C00_0000 | (std::process::id() & 0xffff) << 8 | TestKey::next();
        TestKey(Key::SysV(key))
    }

    /// `/shmkit-cli-test-PID-N`.
    fn posix() -> TestKey {
        let name = format!(
            "/shmkit-cli-test-{}-{}",
            std::process::id(),
            TestKey::next()
        );
        TestKey(Key::posix(&name).expect("a valid name"))
    }

    /// The KEY argument: `0x5c00....` or `/name`.
    fn arg(&self) -> String {
        self.0.to_string()
    }

    /// The POSIX name without its slash, as Python wants it.
    fn bare_name(&self) -> String {
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
struct TestId(i32);

impl Drop for TestId {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open_id(self.0) {
            let _ = segment.remove();
        }
    }
}

/// Removes every System V segment that process `pid` created: what a
/// crashed `shmkit demo` would leave.
struct CreatedBy(u32);

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

fn run(program: &str, args: &[&str], input: Option<&[u8]>) -> Output {
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

fn shmkit(args: &[&str]) -> Output {
    run(SHMKIT, args, None)
}

fn shmkit_with_input(args: &[&str], input: &[u8]) -> Output {
    run(SHMKIT, args, Some(input))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
fn succeeded(output: &Output) -> String {
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
fn failed(output: &Output, code: i32, fragment: &str) -> String {
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
fn refused_by_clap(output: &Output, fragment: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(stderr.contains(fragment), "{fragment:?} not in {stderr:?}");
}

#[track_caller]
fn assert_no_crash(stderr: &str) {
    for bad in ["panicked", "Os {", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad:?} in {stderr:?}");
    }
}

#[track_caller]
fn json(output: &Output) -> Value {
    serde_json::from_str(&succeeded(output)).expect("valid JSON")
}

/// `shmkit create KEY --size SIZE …` and the id it prints.
#[track_caller]
fn create_sysv(key: &TestKey, size: &str, extra: &[&str]) -> i32 {
    let k = key.arg();
    let mut args = vec!["create", &k, "--size", size];
    args.extend_from_slice(extra);
    succeeded(&shmkit(&args))
        .trim()
        .parse()
        .expect("create prints the id")
}

/// The `ls` row whose KEY column is `key`, split into columns.
fn ls_row(ls: &str, key: &str) -> Option<Vec<String>> {
    ls.lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|columns| columns.get(1).map(String::as_str) == Some(key))
}

/// The `stat` text line `name: value`'s value.
fn stat_field(stat: &str, name: &str) -> String {
    stat.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {stat}"))
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------
// create, ls, stat, rm

#[test]
fn sysv_create_ls_stat_rm_round_trip() {
    let key = TestKey::sysv();
    let k = key.arg();
    let id = create_sysv(&key, "4096", &["--mode", "640"]);

    let ls = succeeded(&shmkit(&["ls"]));
    assert!(ls.starts_with("KIND"), "{ls}");
    let row = ls_row(&ls, &k).unwrap_or_else(|| panic!("{k} not in {ls}"));
    assert_eq!(row[0], "sysv");
    assert_eq!(row[2], id.to_string());
    assert_eq!(row[4..7], ["640", "4096", "0"]);
    assert_eq!(row.len(), 7, "no status: {row:?}");

    let all = json(&shmkit(&["ls", "--json"]));
    let listed = all
        .as_array()
        .expect("an array")
        .iter()
        .find(|s| s["key"] == k.as_str())
        .unwrap_or_else(|| panic!("{k} not in {all}"));
    assert_eq!(listed["id"], id);
    assert_eq!(listed["size"], 4096);
    assert_eq!(listed["mode"], 0o640);
    assert_eq!(listed["mode_octal"], "640");
    assert_eq!(listed["nattch"], 0);

    let stat = succeeded(&shmkit(&["stat", &k]));
    assert_eq!(stat_field(&stat, "kind"), "sysv");
    assert_eq!(stat_field(&stat, "key"), k);
    assert_eq!(stat_field(&stat, "id"), id.to_string());
    assert_eq!(stat_field(&stat, "size"), "4096 bytes");
    assert_eq!(stat_field(&stat, "mode"), "640 (rw-r-----)");
    assert_eq!(stat_field(&stat, "nattch"), "0");
    assert_eq!(stat_field(&stat, "atime"), "never");
    assert_eq!(stat_field(&stat, "mtime"), "-");
    assert!(stat_field(&stat, "ctime").ends_with('Z'), "{stat}");
    assert_eq!(stat_field(&stat, "removed"), "no");
    assert_eq!(stat_field(&stat, "attachers"), "none");

    let by_key = json(&shmkit(&["stat", &k, "--json"]));
    assert_eq!(by_key["kind"], "sysv");
    assert_eq!(by_key["key"], k.as_str());
    assert_eq!(by_key["id"], id);
    assert_eq!(by_key["size"], 4096);
    assert_eq!(by_key["mode"], 0o640);
    assert_eq!(by_key["mode_octal"], "640");
    assert_eq!(by_key["mode_symbolic"], "rw-r-----");
    assert_eq!(by_key["nattch"], 0);
    assert_eq!(by_key["removed"], false);
    assert_eq!(by_key["sysv_attach_time"], Value::Null);
    assert!(by_key["sysv_change_time"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(by_key["file_change_time"], Value::Null);
    assert!(by_key["creator_pid"].as_i64().is_some_and(|pid| pid > 0));
    assert_eq!(by_key["attachers"], serde_json::json!([]));
    let by_id = json(&shmkit(&["stat", "--id", &id.to_string(), "--json"]));
    assert_eq!(by_id, by_key);

    // Without --exclusive, create opens what is there.
    assert_eq!(create_sysv(&key, "100", &[]), id);

    assert_eq!(succeeded(&shmkit(&["rm", &k])), "");
    failed(&shmkit(&["stat", &k]), 1, "no shared-memory segment");
    assert!(ls_row(&succeeded(&shmkit(&["ls"])), &k).is_none());
}

#[test]
fn posix_create_ls_stat_rm_round_trip() {
    let name = TestKey::posix();
    let n = name.arg();
    let created = succeeded(&shmkit(&["create", &n, "--size", "8K", "--mode", "0644"]));
    assert_eq!(created, format!("{n}\n"));

    let ls = succeeded(&shmkit(&["ls"]));
    let row = ls_row(&ls, &n).unwrap_or_else(|| panic!("{n} not in {ls}"));
    assert_eq!(row[0], "posix");
    assert_eq!(row[2], "-");
    assert_eq!(row[4..7], ["644", "8192", "0"]);

    let all = json(&shmkit(&["ls", "--json"]));
    let listed = all
        .as_array()
        .expect("an array")
        .iter()
        .find(|s| s["key"] == n.as_str())
        .unwrap_or_else(|| panic!("{n} not in {all}"));
    assert_eq!(listed["kind"], "posix");
    assert_eq!(listed["size"], 8192);
    assert_eq!(listed["mode"], 0o644);
    assert_eq!(listed["nattch"], 0);

    let stat = succeeded(&shmkit(&["stat", &n]));
    assert_eq!(stat_field(&stat, "kind"), "posix");
    assert_eq!(stat_field(&stat, "id"), "-");
    assert_eq!(stat_field(&stat, "size"), "8192 bytes");
    assert_eq!(stat_field(&stat, "mode"), "644 (rw-r--r--)");
    assert_eq!(stat_field(&stat, "cpid"), "-");
    assert_eq!(stat_field(&stat, "dtime"), "-");

    let stat = json(&shmkit(&["stat", &n, "--json"]));
    assert_eq!(stat["kind"], "posix");
    assert_eq!(stat["key"], n.as_str());
    assert_eq!(stat["id"], Value::Null);
    assert_eq!(stat["size"], 8192);
    assert_eq!(stat["mode"], 0o644);
    assert_eq!(stat["mode_symbolic"], "rw-r--r--");
    assert_eq!(stat["nattch"], 0);
    assert_eq!(stat["creator_pid"], Value::Null);
    assert_eq!(stat["sysv_change_time"], Value::Null);
    assert!(stat["file_change_time"].as_u64().is_some_and(|t| t > 0));

    assert_eq!(succeeded(&shmkit(&["rm", &n])), "");
    failed(&shmkit(&["stat", &n]), 1, "no shared-memory segment");
}

#[test]
fn private_key_creates_a_new_segment_each_time() {
    let first = TestId(
        succeeded(&shmkit(&["create", "private", "--size", "1K"]))
            .trim()
            .parse()
            .expect("an id"),
    );
    let second = TestId(
        succeeded(&shmkit(&["create", "0", "--size", "1K", "--mode", "600"]))
            .trim()
            .parse()
            .expect("an id"),
    );
    assert_ne!(first.0, second.0);
    let stat = json(&shmkit(&["stat", "--id", &first.0.to_string(), "--json"]));
    assert_eq!(stat["key"], "0x00000000");
    assert_eq!(stat["size"], 1024);
    failed(&shmkit(&["stat", "private"]), 1, "open it by id");
    failed(
        &shmkit(&["read", "--id", &first.0.to_string(), "--offset", "2000"]),
        1,
        &format!(
            "offset 2000 is past the end of segment id {}, which has 1024 bytes",
            first.0
        ),
    );

    // rm takes several segments at once.
    let (a, b) = (first.0.to_string(), second.0.to_string());
    succeeded(&shmkit(&["rm", "--id", &a, "--id", &b]));
    failed(
        &shmkit(&["stat", "--id", &a]),
        1,
        &format!("no shared-memory segment id {a}"),
    );
    failed(
        &shmkit(&["stat", "--id", &b]),
        1,
        "no shared-memory segment",
    );
}

#[test]
fn rm_reports_every_failure_and_removes_the_rest() {
    let key = TestKey::sysv();
    let (missing, name) = (TestKey::posix(), TestKey::posix());
    create_sysv(&key, "100", &[]);
    succeeded(&shmkit(&["create", &name.arg(), "--size", "100"]));
    let output = shmkit(&["rm", &key.arg(), &missing.arg(), &name.arg()]);
    let stderr = failed(
        &output,
        1,
        &format!("no shared-memory segment {}", missing.arg()),
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    failed(
        &shmkit(&["stat", &key.arg()]),
        1,
        "no shared-memory segment",
    );
    failed(
        &shmkit(&["stat", &name.arg()]),
        1,
        "no shared-memory segment",
    );
}

// ---------------------------------------------------------------------------
// write and read

fn write_then_read(key: TestKey) {
    let k = key.arg();
    succeeded(&shmkit(&["create", &k, "--size", "64"]));
    let message = b"hello, shared world";
    assert_eq!(
        succeeded(&shmkit_with_input(
            &["write", &k, "--offset", "10"],
            message
        )),
        ""
    );

    let part = shmkit(&["read", &k, "--offset", "10", "--len", "19"]);
    assert_eq!(succeeded(&part).as_bytes(), message);

    let whole = shmkit(&["read", &k]);
    assert!(whole.status.success());
    let mut expected = vec![0u8; 64];
    expected[10..29].copy_from_slice(message);
    assert_eq!(whole.stdout, expected);

    let tail = shmkit(&["read", &k, "--offset", "60"]);
    assert!(tail.status.success());
    assert_eq!(tail.stdout, [0; 4]);
    let nothing = shmkit(&["read", &k, "--offset", "64"]);
    assert!(nothing.status.success());
    assert!(nothing.stdout.is_empty());

    // Exactly filling the rest of the segment is fine.
    succeeded(&shmkit_with_input(
        &["write", &k, "--offset", "60"],
        b"TAIL",
    ));
    let tail = shmkit(&["read", &k, "--offset", "56"]);
    assert_eq!(tail.stdout, b"\0\0\0\0TAIL");
}

#[test]
fn write_then_read_sysv() {
    write_then_read(TestKey::sysv());
}

#[test]
fn write_then_read_posix() {
    write_then_read(TestKey::posix());
}

#[test]
fn write_and_read_by_id() {
    let key = TestKey::sysv();
    let id = create_sysv(&key, "32", &[]).to_string();
    succeeded(&shmkit_with_input(&["write", "--id", &id], b"by id"));
    let read = shmkit(&["read", "--id", &id, "--len", "5"]);
    assert_eq!(succeeded(&read), "by id");
    failed(
        &shmkit(&["read", "--id", &id, "--len", "33"]),
        1,
        &format!(
            "cannot read 33 bytes at offset 0 of segment key {} (id {id}): ",
            key.arg()
        ),
    );
}

fn writing_past_the_end_changes_nothing(key: TestKey) {
    let k = key.arg();
    succeeded(&shmkit(&["create", &k, "--size", "16"]));
    succeeded(&shmkit_with_input(&["write", &k], b"0123456789abcdef"));

    let message = failed(
        &shmkit_with_input(&["write", &k, "--offset", "12"], b"XXXXXXXX"),
        1,
        "does not fit",
    );
    for number in ["offset 12", "16 bytes", "at most 4", "nothing was written"] {
        assert!(message.contains(number), "{number:?} not in {message}");
    }
    failed(
        &shmkit_with_input(&["write", &k, "--offset", "17"], b"X"),
        1,
        "offset 17 is past the end",
    );
    failed(
        &shmkit_with_input(&["write", &k], &[b'Y'; 17]),
        1,
        "at most 16",
    );
    assert_eq!(succeeded(&shmkit(&["read", &k])), "0123456789abcdef");
}

#[test]
fn writing_past_the_end_fails_and_changes_nothing_sysv() {
    writing_past_the_end_changes_nothing(TestKey::sysv());
}

#[test]
fn writing_past_the_end_fails_and_changes_nothing_posix() {
    writing_past_the_end_changes_nothing(TestKey::posix());
}

#[test]
fn reading_out_of_range_fails() {
    let name = TestKey::posix();
    let n = name.arg();
    succeeded(&shmkit(&["create", &n, "--size", "16"]));
    failed(
        &shmkit(&["read", &n, "--offset", "10", "--len", "10"]),
        1,
        "bytes 10..20 are outside the segment's 16 bytes",
    );
    failed(
        &shmkit(&["read", &n, "--offset", "17"]),
        1,
        "offset 17 is past the end",
    );
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn size_zero_is_refused() {
    let key = TestKey::sysv();
    failed(
        &shmkit(&["create", &key.arg(), "--size", "0"]),
        1,
        "must be at least 1 byte, not 0",
    );
}

#[test]
fn sysv_size_over_the_limit_is_refused() {
    let key = TestKey::sysv();
    let output = shmkit(&["create", &key.arg(), "--size", "1000000000000000000"]);
    // Refused either by shmkit's check against kernel.shmmax and
    // kernel.shmall, or, when those are larger (Linux's defaults are near
    // 2^64), by the kernel, which cannot reserve that much memory.
    let message = failed(&output, 1, "1000000000000000000 bytes");
    assert!(
        message.contains("segment size of 1000000000000000000 bytes is over the limit of")
            || message.contains(&format!(
                "creating key {}: the kernel could not reserve 1000000000000000000 bytes of memory for it: ",
                key.arg()
            )),
        "{message}"
    );
    failed(
        &shmkit(&["stat", &key.arg()]),
        1,
        "no shared-memory segment",
    );
}

/// Runs `script` with `sh` in a new IPC namespace (`unshare --ipc`), with
/// `$1` the shmkit binary and `$P` the page size. The namespace has its own
/// System V segments and limits, so the script may lower the limits; its
/// segments vanish with it. `None` if this process may not make a namespace
/// and set its limits (it needs root, and `/proc/sys` writable).
fn in_new_ipc_namespace(script: &str) -> Option<(Output, u64)> {
    let probe = "cat /proc/sys/kernel/shmmni > /proc/sys/kernel/shmmni";
    let allowed = run("unshare", &["--ipc", "sh", "-c", probe], None);
    if !allowed.status.success() {
        return None;
    }
    let page = text(&run("getconf", &["PAGESIZE"], None).stdout);
    let page: u64 = page.trim().parse().expect("getconf PAGESIZE");
    let script = format!("P={page}; {script}");
    Some((
        run(
            "unshare",
            &["--ipc", "sh", "-c", &script, "sh", SHMKIT],
            None,
        ),
        page,
    ))
}

#[test]
fn sysv_system_wide_limits_are_named() {
    // One segment over kernel.shmall pages: refused before shmget.
    let Some((output, page)) = in_new_ipc_namespace(
        r#"echo 4 > /proc/sys/kernel/shmall && "$1" create 0x51 --size $((5 * P))"#,
    ) else {
        eprintln!(
            "skipped: making an IPC namespace and setting its limits needs root (CI runs as root)"
        );
        return;
    };
    failed(
        &output,
        1,
        &format!(
            "segment size of {} bytes is over the limit of {} bytes, the limit being kernel.shmall",
            5 * page,
            4 * page
        ),
    );

    // Each fits, both do not: shmget says ENOSPC, and shmkit says why.
    let (output, _) = in_new_ipc_namespace(
        r#"echo 4 > /proc/sys/kernel/shmall &&
           "$1" create 0x51 --size $((2 * P)) >/dev/null &&
           "$1" create 0x52 --size $((3 * P))"#,
    )
    .expect("a namespace");
    failed(
        &output,
        1,
        &format!(
            "creating key 0x00000052 of {} bytes: the system-wide limit kernel.shmall is 4 pages \
             of {page} bytes; segments use 2 already, and this one needs 3 more: ",
            3 * page
        ),
    );

    let (output, _) = in_new_ipc_namespace(
        r#"echo 2 > /proc/sys/kernel/shmmni &&
           "$1" create private --size 1K >/dev/null &&
           "$1" create private --size 1K >/dev/null &&
           "$1" create private --size 1K"#,
    )
    .expect("a namespace");
    failed(
        &output,
        1,
        "creating key 0x00000000 of 1024 bytes: the system-wide limit kernel.shmmni is 2 segments, \
         and there are 2 already: ",
    );
}

#[test]
fn posix_size_over_the_capacity_of_dev_shm_is_refused() {
    let name = TestKey::posix();
    failed(
        &shmkit(&["create", &name.arg(), "--size", "1000000000000000000"]),
        1,
        "segment size of 1000000000000000000 bytes is over the limit of",
    );
    failed(
        &shmkit(&["create", &name.arg(), "--size", "1000000000000000000"]),
        1,
        "the limit being the size of the /dev/shm file system (a tmpfs) (see `shmkit ls --limits`)",
    );
    failed(
        &shmkit(&["stat", &name.arg()]),
        1,
        "no shared-memory segment",
    );
}

#[test]
fn exclusive_create_of_an_existing_key_is_refused() {
    for key in [TestKey::sysv(), TestKey::posix()] {
        let k = key.arg();
        succeeded(&shmkit(&["create", &k, "--size", "100"]));
        let expected = match key.0 {
            Key::SysV(_) => format!("shared-memory segment key {k} already exists"),
            Key::Posix(_) => format!("shared-memory segment {k} already exists"),
        };
        failed(
            &shmkit(&["create", &k, "--size", "100", "--exclusive"]),
            1,
            &expected,
        );
    }
}

#[test]
fn stat_and_rm_of_a_missing_key_say_not_found() {
    let (key, name) = (TestKey::sysv(), TestKey::posix());
    for k in [key.arg(), name.arg()] {
        for command in ["stat", "rm", "read"] {
            failed(&shmkit(&[command, &k]), 1, "no shared-memory segment");
        }
    }
    failed(
        &shmkit(&["stat", &key.arg()]),
        1,
        &format!("no shared-memory segment key {}", key.arg()),
    );
}

#[test]
fn malformed_posix_name_is_a_usage_error() {
    failed(
        &shmkit(&["stat", "/a/b"]),
        2,
        "invalid POSIX shared-memory name \"/a/b\": must not contain '/' after the first character",
    );
}

#[test]
fn bad_key_syntax_is_a_usage_error() {
    failed(&shmkit(&["stat", "12zork"]), 2, "\"12zork\" is not a key");
    failed(
        &shmkit(&["create", "0x100000000", "--size", "1"]),
        2,
        "is not a key",
    );
    let ftok = failed(
        &shmkit(&["stat", "ftok:/surely/not/here:1"]),
        1,
        "ftok of /surely/not/here: there is no such file; ftok derives a key from an existing file",
    );
    assert!(!ftok.contains("os error"), "{ftok}");
}

#[test]
fn keys_with_a_sign_after_0x_are_usage_errors() {
    for bad in ["0x-1", "0x+5", "+5", "0x"] {
        failed(&shmkit(&["stat", bad]), 2, &format!("{bad:?} is not a key"));
    }
}

#[test]
fn a_posix_name_longer_than_shm_open_takes_is_a_usage_error() {
    let longest =
        TestKey(Key::posix(&format!("/{}", "n".repeat(254))).expect("254 bytes is a valid name"));
    succeeded(&shmkit(&["create", &longest.arg(), "--size", "1K"]));
    succeeded(&shmkit(&["rm", &longest.arg()]));
    let too_long = format!("/{}", "n".repeat(255));
    let message = failed(
        &shmkit(&["create", &too_long, "--size", "1K"]),
        2,
        "must be at most 254 bytes after the '/'",
    );
    assert!(!message.contains("os error"), "{message}");
}

#[test]
fn error_messages_differ_by_cause() {
    let key = TestKey::sysv();
    let k = key.arg();
    create_sysv(&key, "100", &[]);
    let missing = TestKey::sysv();
    let messages = [
        shmkit(&["create", &missing.arg(), "--size", "0"]),
        shmkit(&["create", &k, "--size", "100", "--exclusive"]),
        shmkit(&["stat", &missing.arg()]),
        shmkit(&["stat", "/a/b"]),
        shmkit(&["stat", "zork"]),
        shmkit(&["read", &k, "--offset", "200"]),
    ]
    .map(|output| {
        let stderr = text(&output.stderr);
        // Compare the wording, not the keys in it.
        stderr.replace(&k, "KEY").replace(&missing.arg(), "KEY")
    });
    let distinct: BTreeSet<&String> = messages.iter().collect();
    assert_eq!(distinct.len(), messages.len(), "{messages:#?}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 6] = [
        &["create", "0x1234"],
        &["create", "0x1234", "--size", "12Q"],
        &["create", "0x1234", "--size", "1", "--mode", "999"],
        &["stat"],
        &["stat", "0x1234", "--id", "5"],
        &["frobnicate"],
    ];
    for args in cases {
        let output = shmkit(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_no_crash(&stderr);
    }
}

#[test]
fn help_documents_the_exit_status() {
    let help = succeeded(&shmkit(&["--help"]));
    for line in [
        "Exit status:",
        "0  success",
        "1  the operation failed",
        "2  the command line is wrong",
    ] {
        assert!(help.contains(line), "{line:?} not in {help}");
    }
    for hidden in ["__demo-child", "__demo-producer", "__demo-consumer"] {
        assert!(!help.contains(hidden), "{help}");
    }
}

// ---------------------------------------------------------------------------
// Interoperation with programs we did not write

#[test]
fn ipcs_shows_a_segment_created_by_shmkit() {
    let key = TestKey::sysv();
    let id = create_sysv(&key, "12345", &["--mode", "640"]);
    let ipcs = run("ipcs", &["-m"], None);
    let listing = text(&ipcs.stdout);
    let row = listing
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|columns| columns.first() == Some(&key.arg().as_str()))
        .unwrap_or_else(|| panic!("{} not in {listing}", key.arg()));
    // key shmid owner perms bytes nattch
    assert_eq!(row[1], id.to_string());
    assert_eq!(row[3..6], ["640", "12345", "0"]);
}

const PYTHON_SYSV: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmdt.argtypes = [ctypes.c_void_p]
key, size, data = int(sys.argv[1], 0), int(sys.argv[2]), sys.argv[3].encode()
IPC_CREAT, IPC_EXCL = 0o1000, 0o2000
shmid = libc.shmget(key, size, IPC_CREAT | IPC_EXCL | 0o644)
if shmid < 0:
    sys.exit("shmget: " + os.strerror(ctypes.get_errno()))
addr = libc.shmat(shmid, None, 0)
if addr is None or addr == ctypes.c_void_p(-1).value:
    sys.exit("shmat: " + os.strerror(ctypes.get_errno()))
ctypes.memmove(addr, data, len(data))
libc.shmdt(addr)
print(shmid)
"#;

#[test]
fn shmkit_reads_a_sysv_segment_python_created() {
    let key = TestKey::sysv();
    let message = "written by Python through ctypes";
    let python = run(
        "python3",
        &["-c", PYTHON_SYSV, &key.arg(), "5000", message],
        None,
    );
    assert!(python.status.success(), "{}", text(&python.stderr));
    let id = text(&python.stdout).trim().to_owned();

    let len = message.len().to_string();
    assert_eq!(
        succeeded(&shmkit(&["read", &key.arg(), "--len", &len])),
        message
    );
    assert_eq!(
        succeeded(&shmkit(&["read", "--id", &id, "--len", &len])),
        message
    );
    let stat = json(&shmkit(&["stat", &key.arg(), "--json"]));
    assert_eq!(stat["id"].to_string(), id);
    assert_eq!(stat["size"], 5000);
    assert_eq!(stat["mode"], 0o644);
    assert_eq!(stat["nattch"], 0);
    assert!(
        stat["sysv_detach_time"].as_u64().is_some(),
        "Python detached: {stat}"
    );
}

const PYTHON_POSIX: &str = r#"
import sys
from multiprocessing import resource_tracker, shared_memory
name, size, data = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
shm = shared_memory.SharedMemory(name=name, create=True, size=size)
shm.buf[:len(data)] = data
# Leave the segment for shmkit: the tracker would unlink it at exit.
resource_tracker.unregister(shm._name, "shared_memory")
shm.close()
"#;

#[test]
fn shmkit_reads_a_posix_segment_python_created() {
    let name = TestKey::posix();
    let message = "written by Python's multiprocessing.shared_memory";
    let python = run(
        "python3",
        &["-c", PYTHON_POSIX, &name.bare_name(), "3000", message],
        None,
    );
    assert!(python.status.success(), "{}", text(&python.stderr));

    let len = message.len().to_string();
    assert_eq!(
        succeeded(&shmkit(&["read", &name.arg(), "--len", &len])),
        message
    );
    let stat = json(&shmkit(&["stat", &name.arg(), "--json"]));
    assert_eq!(stat["kind"], "posix");
    assert_eq!(stat["size"], 3000);
}

#[test]
fn ipcrm_of_an_attached_segment_shows_as_dest() {
    let key = TestKey::sysv();
    let id = create_sysv(&key, "4096", &[]);
    let id_text = id.to_string();
    let segment = Segment::open_id(id).expect("open by id");
    let mapping = segment.attach(ReadOnly).expect("attach");

    let ipcrm = run("ipcrm", &["-m", &id_text], None);
    assert!(ipcrm.status.success(), "{}", text(&ipcrm.stderr));

    let stat = json(&shmkit(&["stat", "--id", &id_text, "--json"]));
    assert_eq!(stat["removed"], true);
    assert_eq!(stat["nattch"], 1);
    assert_eq!(stat["key"], "0x00000000");
    let attachers = stat["attachers"].as_array().expect("an array");
    assert_eq!(attachers.len(), 1, "{stat}");
    assert_eq!(attachers[0]["pid"], std::process::id());
    // Addresses in one form everywhere: 0x and lower-case hex.
    assert_eq!(
        attachers[0]["start"],
        format!("{:#x}", mapping.as_ptr() as u64)
    );

    let text_stat = succeeded(&shmkit(&["stat", "--id", &id_text]));
    assert!(stat_field(&text_stat, "removed").starts_with("yes (dest"));
    let ls = succeeded(&shmkit(&["ls"]));
    let row = ls
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|columns| columns.get(2) == Some(&id_text.as_str()))
        .unwrap_or_else(|| panic!("id {id} not in {ls}"));
    assert_eq!(row.last(), Some(&"dest"), "{row:?}");
    failed(
        &shmkit(&["stat", &key.arg()]),
        1,
        "no shared-memory segment",
    );

    drop(mapping);
    failed(
        &shmkit(&["stat", "--id", &id_text]),
        1,
        "no shared-memory segment",
    );
}

#[test]
fn ipcrm_by_key_makes_stat_report_not_found() {
    let key = TestKey::sysv();
    create_sysv(&key, "4096", &[]);
    let ipcrm = run("ipcrm", &["-M", &key.arg()], None);
    assert!(ipcrm.status.success(), "{}", text(&ipcrm.stderr));
    failed(
        &shmkit(&["stat", &key.arg()]),
        1,
        &format!("no shared-memory segment key {}", key.arg()),
    );
}

// ---------------------------------------------------------------------------
// demo, and standard output closed early

/// Removes ring `name` when dropped: what a crashed `shmkit demo` would
/// leave.
struct RingOf(String);

impl Drop for RingOf {
    fn drop(&mut self) {
        let key = format!("{}{}", shmkit::ring::SEGMENT_PREFIX, self.0);
        if let Ok(segment) = Segment::open(&Key::posix(&key).expect("a valid name")) {
            let _ = segment.remove();
        }
    }
}

#[test]
fn demo_succeeds_and_leaves_nothing_behind() {
    let demo = Command::new(SHMKIT)
        .args(["demo", "--messages", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmkit demo");
    let _leftovers = CreatedBy(demo.id());
    let ring = format!("demo-{}", demo.id());
    let _ring_leftover = RingOf(ring.clone());
    let demo_pid = demo.id().to_string();
    let output = demo.wait_with_output().expect("wait for the demo");
    let story = succeeded(&output);
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    for step in [
        "nattch 2",
        "nattch 1",
        "removed yes (status dest)",
        "stream 200000 messages of 64 bytes",
        &format!("opened ring {ring}, which created it"),
        "sequence numbers 0 to 199999 in order, every checksum right",
        "200000 messages (12.8 MB) in ",
        "million messages/s",
        "ring status: sent 200000, received 200000, 0 bytes in flight, closed; producer gone",
        &format!("/dev/shm/shmkit.ring.{ring} is gone"),
        "all checks passed",
    ] {
        assert!(story.contains(step), "{step:?} not in {story}");
    }
    let id = story
        .split("segment: id ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no id in {story}"));
    assert!(story.contains(&format!("id {id} is gone")), "{story}");
    failed(
        &shmkit(&["stat", "--id", id]),
        1,
        "no shared-memory segment",
    );
    assert!(
        !std::path::Path::new(&format!("/dev/shm/shmkit.ring.{ring}")).exists(),
        "the demo's ring is left behind"
    );

    // `ipcs -m -p`: shmid owner cpid lpid. Nothing the demo created is left.
    let ipcs = text(&run("ipcs", &["-m", "-p"], None).stdout);
    for line in ipcs.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert!(
            columns.first() != Some(&id) && columns.get(2) != Some(&demo_pid.as_str()),
            "left behind: {line}"
        );
    }
}

#[test]
fn demo_with_a_bad_message_count_is_a_usage_error() {
    let output = shmkit(&["demo", "--messages", "many"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

#[test]
fn read_into_a_closed_pipe_exits_0_quietly() {
    let name = TestKey::posix();
    succeeded(&shmkit(&["create", &name.arg(), "--size", "16M"]));
    let mut reader = Command::new(SHMKIT)
        .args(["read", &name.arg()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmkit read");
    let mut stdout = reader.stdout.take().expect("a pipe");
    let mut first = [0xff; 1];
    stdout.read_exact(&mut first).expect("one byte");
    assert_eq!(first, [0]);
    drop(stdout); // like `head -c 1`
    let output = reader.wait_with_output().expect("wait for shmkit read");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

// ---------------------------------------------------------------------------
// create, stat and rm as issue 15 found them

#[test]
fn create_with_another_mode_on_an_existing_segment_says_so() {
    for key in [TestKey::sysv(), TestKey::posix()] {
        let k = key.arg();
        succeeded(&shmkit(&["create", &k, "--size", "100", "--mode", "600"]));
        let again = shmkit(&["create", &k, "--size", "100", "--mode", "644"]);
        assert!(again.status.success(), "{}", text(&again.stderr));
        let note = text(&again.stderr);
        assert!(
            note.contains("already exists with mode 600, which it keeps: --mode 644 applies only to a new segment"),
            "{note}"
        );
        let stat = json(&shmkit(&["stat", &k, "--json"]));
        assert_eq!(stat["mode_octal"], "600", "the mode is unchanged");
        // The same mode, or none asked for: nothing to say.
        for args in [&["--mode", "600"][..], &[]] {
            let mut command = vec!["create", &k, "--size", "100"];
            command.extend_from_slice(args);
            let quiet = shmkit(&command);
            assert!(quiet.status.success());
            assert_eq!(text(&quiet.stderr), "", "{args:?}");
        }
    }
}

/// `shmkit ARGS` as uid and gid 65534 (nobody, no supplementary groups),
/// or `None` (and a printed reason) when this process is not root.
fn shmkit_as_nobody(args: &[&str]) -> Option<Output> {
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

#[test]
fn unprivileged_stat_shows_the_file_status_and_rm_names_removal() {
    let (name, key) = (TestKey::posix(), TestKey::sysv());
    succeeded(&shmkit(&[
        "create",
        &name.arg(),
        "--size",
        "4K",
        "--mode",
        "600",
    ]));
    create_sysv(&key, "4K", &["--mode", "600"]);
    let Some(stat) = shmkit_as_nobody(&["stat", &name.arg()]) else {
        return;
    };
    let stat = succeeded(&stat);
    assert_eq!(stat_field(&stat, "mode"), "600 (rw-------)");
    assert_eq!(stat_field(&stat, "size"), "4096 bytes");
    assert!(stat_field(&stat, "uid").starts_with('0'), "{stat}");
    let as_json = shmkit_as_nobody(&["stat", &name.arg(), "--json"]).expect("as root");
    assert_eq!(json(&as_json)["size"], 4096);

    for k in [name.arg(), key.arg()] {
        let rm = shmkit_as_nobody(&["rm", &k]).expect("as root");
        failed(
            &rm,
            1,
            "permission denied: removal of shared-memory segment",
        );
        succeeded(&shmkit(&["stat", &k]));
    }
}

#[test]
fn write_streams_its_input() {
    // 64 MiB through a pipe into a 64 MiB segment, with the data segment
    // limited to 32 MiB: holding the input in memory would fail.
    let name = TestKey::posix();
    let size: u64 = 64 << 20;
    succeeded(&shmkit(&[
        "create",
        &name.arg(),
        "--size",
        &size.to_string(),
    ]));
    let script = r#"ulimit -d 32768 && yes abcdefg | head -c "$2" | "$0" write "$1""#;
    let output = run(
        "bash",
        &["-c", script, SHMKIT, &name.arg(), &size.to_string()],
        None,
    );
    succeeded(&output);
    let last = (size - 8).to_string();
    assert_eq!(
        succeeded(&shmkit(&["read", &name.arg(), "--offset", &last])),
        "abcdefg\n"
    );

    // One byte too many through the pipe: nothing is written.
    let other = TestKey::posix();
    succeeded(&shmkit(&["create", &other.arg(), "--size", "64K"]));
    let output = run(
        "bash",
        &["-c", script, SHMKIT, &other.arg(), &(65536 + 1).to_string()],
        None,
    );
    failed(&output, 1, "nothing was written");
    let start = shmkit(&["read", &other.arg(), "--len", "8"]);
    assert_eq!(succeeded(&start).as_bytes(), [0; 8]);

    // A file that is too large is refused before anything is read.
    let path = std::env::temp_dir().join(format!("shmkit-cli-test-{}-write", std::process::id()));
    std::fs::write(&path, vec![b'x'; 65537]).expect("write a temporary file");
    let from_file = Command::new(SHMKIT)
        .args(["write", &other.arg()])
        .stdin(std::fs::File::open(&path).expect("open it"))
        .output()
        .expect("run shmkit");
    std::fs::remove_file(&path).expect("remove the temporary file");
    failed(
        &from_file,
        1,
        "at most 65536 can be written there; nothing was written",
    );
    let start = shmkit(&["read", &other.arg(), "--len", "8"]);
    assert_eq!(succeeded(&start).as_bytes(), [0; 8]);
}

#[test]
fn a_bad_data_offset_says_it_must_be_512() {
    let name = format!("cli-test-{}-offset", std::process::id());
    let segment = TestKey(Key::posix(&format!("/shmkit.ring.{name}")).expect("a valid name"));
    let producer = shmkit::ring::Producer::open(&name).expect("make the ring");
    succeeded(&shmkit_with_input(
        &["write", &segment.arg(), "--offset", "32"],
        &1024u64.to_le_bytes(),
    ));
    let stat = succeeded(&shmkit(&["stat", "--ring", &name]));
    assert!(
        stat.contains("data_offset is 1024; the data area always starts at 512"),
        "{stat}"
    );
    drop(producer);
}

// ---------------------------------------------------------------------------
// Help

#[test]
fn help_works_as_a_subcommand_and_fails_when_it_cannot_be_written() {
    let help = succeeded(&shmkit(&["help", "--help"]));
    assert!(help.contains("Usage: shmkit help [COMMAND]..."), "{help}");
    assert_eq!(
        succeeded(&shmkit(&["help", "rm"])),
        succeeded(&shmkit(&["rm", "--help"]))
    );
    assert_eq!(
        succeeded(&shmkit(&["help"])),
        succeeded(&shmkit(&["--help"]))
    );
    failed(
        &shmkit(&["help", "frobnicate"]),
        2,
        "no such command: shmkit frobnicate",
    );

    let rm = succeeded(&shmkit(&["rm", "--help"]));
    assert!(
        rm.contains("Usage: shmkit rm [-v] <KEY>... [--id <ID>]..."),
        "{rm}"
    );
    assert!(rm.contains("shmkit rm [-v] --all"), "{rm}");

    let full = Command::new(SHMKIT)
        .arg("--help")
        .stdout(std::fs::File::create("/dev/full").expect("open /dev/full"))
        .output()
        .expect("run shmkit");
    assert_eq!(full.status.code(), Some(1));
    assert!(
        text(&full.stderr).starts_with("shmkit: writing standard output: "),
        "{}",
        text(&full.stderr)
    );
}

#[test]
fn completions_and_manual_pages_are_generated() {
    let bash = succeeded(&shmkit(&["completions", "bash"]));
    assert!(bash.contains("_shmkit()"), "{bash}");
    for word in ["ls", "top", "--noheadings", "--limits"] {
        assert!(bash.contains(word), "{word} not in the bash completions");
    }
    assert!(succeeded(&shmkit(&["completions", "zsh"])).starts_with("#compdef shmkit"));
    assert!(succeeded(&shmkit(&["completions", "fish"])).contains("complete -c shmkit"));
    refused_by_clap(&shmkit(&["completions", "tcsh"]), "invalid value 'tcsh'");

    let page = succeeded(&shmkit(&["man"]));
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH shmkit 1"), "{page}");
    assert!(page.contains("shmkit\\-top"), "{page}");

    let dir = std::env::temp_dir().join(format!("shmkit-cli-test-{}-man", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a directory");
    let wrote = shmkit(&["man", "--dir", dir.to_str().expect("UTF-8")]);
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("list it")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    std::fs::remove_dir_all(&dir).expect("remove the directory");
    succeeded(&wrote);
    for page in ["shmkit.1", "shmkit-ls.1", "shmkit-top.1", "shmkit-rm.1"] {
        assert!(pages.contains(page), "{page} not in {pages:?}");
    }
}

// ---------------------------------------------------------------------------
// ls as ipcs and lsipc show segments

/// The `ls --raw` line whose first column is `key`, split at tabs.
fn raw_row(ls: &str, key: &str) -> Vec<String> {
    ls.lines()
        .map(|line| line.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells[0] == key)
        .unwrap_or_else(|| panic!("{key} not in {ls}"))
}

#[test]
fn ls_shows_the_columns_asked_for() {
    let (key, name) = (TestKey::sysv(), TestKey::posix());
    let id = create_sysv(&key, "8K", &["--mode", "640"]);
    succeeded(&shmkit(&[
        "create",
        &name.arg(),
        "--size",
        "3M",
        "--mode",
        "604",
    ]));
    let (k, n) = (key.arg(), name.arg());
    let sysv = json(&shmkit(&["stat", &k, "--json"]));

    let header = succeeded(&shmkit(&["ls", "-p", "-t", "-c"]));
    let header = header.lines().next().expect("a header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "KIND", "KEY", "ID", "OWNER", "GROUP", "CUSER", "CGROUP", "PERMS", "BYTES", "NATTCH",
            "STATUS", "CPID", "LPID", "ATTACHED", "DETACHED", "CHANGED"
        ]
    );

    let columns = "key,id,perms,bytes,cpid,lpid,attached,detached,changed,accessed";
    let raw = succeeded(&shmkit(&[
        "ls",
        "--raw",
        "-o",
        columns,
        "--symbolic",
        "--human",
        "--time-format",
        "epoch",
    ]));
    assert!(
        raw.starts_with("KEY\tID\tPERMS\tBYTES\tCPID\tLPID\tATTACHED\t"),
        "{raw}"
    );
    assert!(
        !raw.contains("RINGS"),
        "no ring table in the raw form: {raw}"
    );
    assert_eq!(
        raw_row(&raw, &k),
        [
            k.clone(),
            id.to_string(),
            "rw-r-----".to_owned(),
            "8.0K".to_owned(),
            sysv["creator_pid"].to_string(),
            "0".to_owned(),
            "never".to_owned(),
            "never".to_owned(),
            sysv["sysv_change_time"].to_string(),
            "-".to_owned(),
        ]
    );
    let posix = raw_row(&raw, &n);
    assert_eq!(posix[1..8], ["-", "rw----r--", "3.0M", "-", "-", "-", "-"]);
    assert!(
        posix[8].parse::<u64>().is_ok() && posix[9].parse::<u64>().is_ok(),
        "{posix:?}"
    );

    let ago = succeeded(&shmkit(&[
        "ls",
        "--raw",
        "--noheadings",
        "-o",
        "key,changed",
        "--time-format",
        "ago",
    ]));
    assert!(!ago.starts_with("KEY"), "{ago}");
    let changed = &raw_row(&ago, &k)[1];
    assert!(
        changed.ends_with('s') || changed.ends_with('m'),
        "{changed}"
    );

    let plain = succeeded(&shmkit(&["ls", "--noheadings"]));
    assert!(!plain.contains("KIND"), "{plain}");
    assert!(ls_row(&plain, &k).is_some(), "{plain}");
}

/// A number from /proc/sys.
fn sysctl(name: &str) -> u64 {
    let path = format!("/proc/sys/kernel/{name}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn ls_limits_and_summary_show_what_ipcs_l_and_u_show() {
    let limits = json(&shmkit(&["ls", "--limits", "--json"]));
    assert_eq!(limits["sysv_max_segments"], sysctl("shmmni"));
    assert_eq!(limits["sysv_max_segment_bytes"], sysctl("shmmax"));
    assert_eq!(limits["sysv_max_total_pages"], sysctl("shmall"));
    let shm_size = limits["posix_size"].as_u64().expect("/dev/shm is mounted");
    assert!(limits["posix_used"].as_u64().expect("a number") <= shm_size);
    let text = succeeded(&shmkit(&["ls", "--limits"]));
    assert!(
        text.contains("System V segments at most (kernel.shmmni):")
            && text.contains(&sysctl("shmmni").to_string()),
        "{text}"
    );
    assert!(text.contains(&format!("{shm_size} bytes")), "{text}");

    let key = TestKey::sysv();
    create_sysv(&key, "8K", &[]);
    let summary = json(&shmkit(&["ls", "--summary", "--json"]));
    assert!(summary["sysv"]["segments"].as_u64().expect("a number") >= 1);
    assert!(summary["sysv"]["bytes"].as_u64().expect("a number") >= 8192);
    let text = succeeded(&shmkit(&["ls", "--summary", "--human"]));
    for line in [
        "System V segments:",
        "System V allocated:",
        "POSIX segments:",
        "message rings:",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
    refused_by_clap(
        &shmkit(&["ls", "--limits", "--summary"]),
        "cannot be used with",
    );
}

// ---------------------------------------------------------------------------
// rm --all

#[test]
fn rm_all_removes_what_the_filters_select_and_says_so() {
    let pid = std::process::id();
    let posix =
        |n: &str| TestKey(Key::posix(&format!("/shmkit-cli-rmall-{pid}-{n}")).expect("a name"));
    let (a, b, keep) = (posix("a"), posix("b"), TestKey::posix());
    let key = TestKey::sysv();
    for name in [&a, &b, &keep] {
        succeeded(&shmkit(&["create", &name.arg(), "--size", "1K"]));
    }
    create_sysv(&key, "1K", &[]);
    let prefix = format!("/shmkit-cli-rmall-{pid}-");

    // The wrong kind selects nothing.
    let none = shmkit(&["rm", "--all", "--kind", "sysv", "--prefix", &prefix, "-v"]);
    assert_eq!(
        succeeded(&none),
        "no segment matched; nothing was removed\n"
    );
    // An owner with no segments selects nothing; an unknown one is an error.
    let nobody = shmkit(&["rm", "--all", "--owner", "4242", "--prefix", &prefix, "-v"]);
    assert_eq!(
        succeeded(&nobody),
        "no segment matched; nothing was removed\n"
    );
    failed(
        &shmkit(&["rm", "--all", "--owner", "surely-no-such-user"]),
        2,
        "no such user",
    );
    refused_by_clap(&shmkit(&["rm", "--kind", "posix"]), "--all");

    let owner = rustix::process::geteuid().as_raw().to_string();
    let removed = shmkit(&[
        "rm", "--all", "--kind", "posix", "--owner", &owner, "--prefix", &prefix, "-v",
    ]);
    assert_eq!(
        succeeded(&removed),
        format!("removed {}\nremoved {}\n", a.arg(), b.arg())
    );
    for name in [&a, &b] {
        failed(
            &shmkit(&["stat", &name.arg()]),
            1,
            "no shared-memory segment",
        );
    }
    succeeded(&shmkit(&["stat", &keep.arg()]));

    // An attached segment goes too, and -v says its memory stays.
    let segment = Segment::open(&key.0).expect("open");
    let mapping = segment.attach(ReadOnly).expect("attach");
    let removed = shmkit(&[
        "rm",
        "--all",
        "--kind",
        "sysv",
        "--prefix",
        &key.arg(),
        "-v",
    ]);
    let id = segment.id().expect("System V");
    assert_eq!(
        succeeded(&removed),
        format!(
            "removed key {} (id {id}); its memory stays until the 1 process attached detaches\n",
            key.arg()
        )
    );
    drop(mapping);
}

// ---------------------------------------------------------------------------
// JSON, against docs/JSON.md

/// The fields docs/JSON.md lists for each object, by its `## name`.
fn documented_fields() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/JSON.md");
    let doc = std::fs::read_to_string(path).expect("docs/JSON.md");
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            current = Some(name.to_owned());
        } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("| `")) {
            let field = rest.split('`').next().expect("a field name").to_owned();
            sections
                .entry(name.clone())
                .or_insert_with(BTreeSet::new)
                .insert(field);
        }
    }
    sections
}

#[track_caller]
fn assert_documented(docs: &BTreeMap<String, BTreeSet<String>>, section: &str, value: &Value) {
    let documented = docs
        .get(section)
        .unwrap_or_else(|| panic!("docs/JSON.md has no section {section}"));
    let actual: BTreeSet<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{section} is not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    assert_eq!(&actual, documented, "{section}: {value}");
    if documented.contains("schema_version") {
        assert_eq!(value["schema_version"], 1, "{section}");
    }
}

#[test]
fn json_outputs_have_exactly_the_documented_fields() {
    let docs = documented_fields();
    let (key, name) = (TestKey::sysv(), TestKey::posix());
    create_sysv(&key, "4K", &[]);
    succeeded(&shmkit(&["create", &name.arg(), "--size", "4K"]));
    let attached = Segment::open(&key.0)
        .expect("open")
        .attach(ReadOnly)
        .expect("attach");
    let ring_name = format!("cli-test-{}-json", std::process::id());
    let ring_segment =
        TestKey(Key::posix(&format!("/shmkit.ring.{ring_name}")).expect("a valid name"));
    let mut producer = shmkit::ring::Producer::open(&ring_name).expect("make a ring");
    producer.send(b"counted").expect("send");

    let sysv = json(&shmkit(&["stat", &key.arg(), "--json"]));
    assert_documented(&docs, "segment", &sysv);
    assert_documented(&docs, "attacher", &sysv["attachers"][0]);
    assert!(sysv["mode"].is_u64() && sysv["size"].is_u64() && sysv["creator_pid"].is_i64());
    let posix = json(&shmkit(&["stat", &name.arg(), "--json"]));
    assert_documented(&docs, "segment", &posix);
    let ring = json(&shmkit(&["stat", "--ring", &ring_name, "--json"]));
    assert_documented(&docs, "segment", &ring);
    assert_documented(&docs, "ring", &ring["ring"]);
    assert_documented(&docs, "endpoint", &ring["ring"]["producer"]);

    let listed = json(&shmkit(&["ls", "--json"]));
    for element in listed.as_array().expect("an array") {
        assert_documented(&docs, "segment", element);
    }

    let limits = json(&shmkit(&["ls", "--limits", "--json"]));
    assert_documented(&docs, "limits", &limits);
    let summary = json(&shmkit(&["ls", "--summary", "--json"]));
    assert_documented(&docs, "summary", &summary);
    assert_documented(&docs, "totals", &summary["sysv"]);
    assert_documented(&docs, "totals", &summary["posix"]);

    let top = json(&shmkit(&[
        "top",
        "--once",
        "--json",
        "--interval",
        "0.1",
        "--filter",
        &ring_name,
    ]));
    assert_documented(&docs, "top", &top);
    let objects = top["objects"].as_array().expect("an array");
    assert_eq!(objects.len(), 1, "{top}");
    assert_documented(&docs, "top object", &objects[0]);
    assert_documented(&docs, "member", &objects[0]["members"][0]);
    assert_eq!(objects[0]["messages_total"], 1);

    drop((producer, attached, ring_segment));
}

#[test]
fn top_as_an_unprivileged_user_shows_what_it_may_read_and_says_what_not() {
    let name = format!("cli-test-{}-top", std::process::id());
    let segment = TestKey(Key::posix(&format!("/shmkit.ring.{name}")).expect("a valid name"));
    // Mode 600, owned by root: uid 65534 may list it but not read it.
    let producer = shmkit::ring::Producer::open(&name).expect("make a ring");
    let once = ["top", "--once", "--interval", "0.1", "--filter", &name];
    let Some(output) = shmkit_as_nobody(&once) else {
        return;
    };
    let text = succeeded(&output);
    let row = text
        .lines()
        .find(|line| line.contains(&name))
        .unwrap_or_else(|| panic!("{name} not in {text}"));
    assert!(row.starts_with("ring "), "{text}");
    assert!(row.ends_with("unreadable: permission denied"), "{text}");
    assert!(
        text.contains(&format!(
            "note: 1 object(s) could not be read by this user: {name} (run as their owner or root"
        )),
        "{text}"
    );
    assert!(
        text.contains("note: POSIX attachers are counted only in this user's processes"),
        "{text}"
    );

    let mut json_args = once.to_vec();
    json_args.push("--json");
    let snapshot = json(&shmkit_as_nobody(&json_args).expect("as root"));
    let object = &snapshot["objects"][0];
    assert_eq!(object["unreadable"], "permission denied", "{snapshot}");
    assert_eq!(object["messages_per_sec"], Value::Null);
    assert_eq!(snapshot["notes"].as_array().map(Vec::len), Some(2));

    // Root reads it.
    let root = json(&shmkit(&json_args));
    assert_eq!(root["objects"][0]["unreadable"], Value::Null, "{root}");
    assert_eq!(root["notes"], serde_json::json!([]));
    drop((producer, segment));
}

#[test]
fn top_once_sorts_and_filters() {
    let pid = std::process::id();
    let posix =
        |n: &str| TestKey(Key::posix(&format!("/shmkit-cli-top-{pid}-{n}")).expect("a name"));
    let (small, large) = (posix("a"), posix("b"));
    succeeded(&shmkit(&["create", &small.arg(), "--size", "3K"]));
    succeeded(&shmkit(&["create", &large.arg(), "--size", "5K"]));
    let filter = format!("/shmkit-cli-top-{pid}-");
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["top", "--once", "--interval", "0.1", "--filter", &filter];
        all.extend_from_slice(args);
        let snapshot = json(&shmkit(&all));
        snapshot["objects"]
            .as_array()
            .expect("an array")
            .iter()
            .map(|o| o["name"].as_str().expect("a name").to_owned())
            .collect()
    };
    assert_eq!(names(&["--json"]), [small.arg(), large.arg()]);
    assert_eq!(
        names(&["--json", "--sort", "size", "--reverse"]),
        [large.arg(), small.arg()]
    );
    assert_eq!(
        names(&["--json", "--sort", "size"]),
        [small.arg(), large.arg()]
    );
    let text = succeeded(&shmkit(&[
        "top",
        "--once",
        "--interval",
        "0.1",
        "--filter",
        &small.arg(),
    ]));
    assert_eq!(text.lines().count(), 2, "a header and one row: {text}");
    assert!(text.contains("3.0K"), "{text}");
}
