//! The ring commands (`send`, `recv`, `gc`, and rings in `ls` and `stat`)
//! as a user at a shell sees them: real `shmkit` processes talking through
//! real rings.
//!
//! Each test names its rings `cli-ring-PID-N` ([`TestRing`]), so tests
//! running at once and other runs never meet, and removes them when it ends,
//! even by a panic. Child processes are killed when a test ends
//! ([`Running`]). Nothing waits by sleeping: a test that needs another
//! process to have done something reads that process's output until it
//! shows.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use serde_json::Value;
use shmkit::{Key, Segment};

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");

// ---------------------------------------------------------------------------
// Rings and processes the tests own

/// A ring name used by one test only; dropping it removes the ring's
/// segment, if any.
struct TestRing(String);

impl TestRing {
    fn new() -> TestRing {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestRing(format!("cli-ring-{}-{n}", std::process::id()))
    }

    fn name(&self) -> &str {
        &self.0
    }

    /// The ring's segment as a KEY: `/shmkit.ring.NAME`.
    fn key(&self) -> String {
        format!("{}{}", shmkit::ring::SEGMENT_PREFIX, self.0)
    }

    /// `/dev/shm/shmkit.ring.NAME`.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm{}", self.key()))
    }

    fn exists(&self) -> bool {
        self.path().exists()
    }
}

impl Drop for TestRing {
    fn drop(&mut self) {
        remove_ring(&self.key());
    }
}

fn remove_ring(key: &str) {
    if let Ok(segment) = Segment::open(&Key::posix(key).expect("a valid name")) {
        let _ = segment.remove();
    }
}

/// A `shmkit` process; dropping it kills and reaps it if it still runs.
struct Running {
    child: Option<Child>,
    feeder: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts `shmkit ARGS…` with its standard input, output and error as
    /// pipes.
    fn spawn(args: &[&str]) -> Running {
        let child = Command::new(SHMKIT)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run shmkit {args:?}: {e}"));
        Running {
            child: Some(child),
            feeder: None,
        }
    }

    /// Starts `shmkit ARGS…` with `input` written to it from a thread, then
    /// its standard input closed.
    fn spawn_with_input(args: &[&str], input: Vec<u8>) -> Running {
        let mut running = Running::spawn(args);
        let mut stdin = running.stdin();
        // The program may stop reading early (an error): not a test failure.
        running.feeder = Some(std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        }));
        running
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("still running")
    }

    fn pid(&mut self) -> u32 {
        self.child().id()
    }

    fn stdin(&mut self) -> ChildStdin {
        self.child().stdin.take().expect("a pipe")
    }

    fn stdout(&mut self) -> ChildStdout {
        self.child().stdout.take().expect("a pipe")
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let child = self.child();
        child.kill().expect("kill");
        child.wait().expect("reap");
    }

    /// Waits for the exit and collects what is left of its output.
    fn finish(mut self) -> Output {
        let output = self
            .child
            .take()
            .expect("still running")
            .wait_with_output()
            .expect("wait for shmkit");
        if let Some(feeder) = self.feeder.take() {
            feeder.join().expect("the input thread");
        }
        output
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn shmkit(args: &[&str]) -> Output {
    Running::spawn(args).finish()
}

fn shmkit_with_input(args: &[&str], input: &[u8]) -> Output {
    Running::spawn_with_input(args, input.to_vec()).finish()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success with nothing on stderr; returns stdout.
#[track_caller]
fn succeeded(output: &Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "shmkit failed with {}: {}",
        output.status,
        text(&output.stderr)
    );
    assert!(output.stderr.is_empty(), "stderr: {}", text(&output.stderr));
    output.stdout.clone()
}

#[track_caller]
fn succeeded_text(output: &Output) -> String {
    text(&succeeded(output))
}

/// Asserts failure with `code` and a one-line `shmkit: ` message containing
/// `fragment`; returns the message.
#[track_caller]
fn failed(output: &Output, code: i32, fragment: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("shmkit: "), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains(fragment), "{fragment:?} not in {stderr:?}");
    for bad in ["panicked", "Os {", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad:?} in {stderr:?}");
    }
    stderr
}

#[track_caller]
fn json(output: &Output) -> Value {
    serde_json::from_slice(&succeeded(output)).expect("valid JSON")
}

/// `1\n2\n…N\n`, as `seq 1 N` prints.
fn seq(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Pseudo-random bytes (xorshift64*), all 256 values, newlines included.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Reads lines from `reader` until `n` have come; returns them.
fn read_lines(reader: &mut impl BufRead, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read a line");
            assert!(line.ends_with('\n'), "the output ended early: {line:?}");
            line.trim_end().to_owned()
        })
        .collect()
}

/// The row of the RINGS table of `ls` for ring `name`, split into columns
/// (which are two or more spaces apart; `123 (dead)` is one cell).
fn ring_row(ls: &str, name: &str) -> Option<Vec<String>> {
    let rings = ls.split("\nRINGS\n").nth(1)?;
    let mut lines = rings.lines();
    assert!(lines.next()?.starts_with("NAME"), "{rings}");
    lines
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(name))
}

/// The value of the line `  name: value` of the `ring:` section of `stat`.
fn ring_field(stat: &str, name: &str) -> String {
    let section = stat
        .split("\nring:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no ring section in {stat}"));
    section
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {section}"))
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------
// send | recv

/// The acceptance test, `seq 1 N | shmkit send q` and `shmkit recv q`, with
/// the receiver started `recv_first` or second; the input is larger than the
/// ring, so both wait for each other along the way.
fn seq_through_a_ring(recv_first: bool) {
    let ring = TestRing::new();
    let input = seq(200_000);
    let spawn_send = || Running::spawn_with_input(&["send", ring.name()], input.clone());
    let spawn_recv = || Running::spawn(&["recv", ring.name()]);
    let (send, recv) = if recv_first {
        let recv = spawn_recv();
        (spawn_send(), recv)
    } else {
        let send = spawn_send();
        (send, spawn_recv())
    };
    let received = succeeded(&recv.finish());
    assert_eq!(succeeded(&send.finish()), b"");
    assert!(
        received == input,
        "recv printed {} bytes, not the {} sent",
        received.len(),
        input.len()
    );
    assert!(!ring.exists(), "the finished ring removes itself");
}

#[test]
fn seq_through_a_ring_with_recv_started_first() {
    seq_through_a_ring(true);
}

#[test]
fn seq_through_a_ring_with_send_started_first() {
    seq_through_a_ring(false);
}

#[test]
fn recv_after_send_has_finished_gets_every_line() {
    // The ring holds all of it: send closes and exits before recv starts.
    let ring = TestRing::new();
    let input = seq(50_000);
    let sent = shmkit_with_input(&["send", ring.name(), "--capacity", "4M"], &input);
    assert_eq!(succeeded(&sent), b"");
    assert!(ring.exists(), "the ring waits for its consumer");
    assert!(succeeded(&shmkit(&["recv", ring.name()])) == input);
    assert!(!ring.exists());
}

#[test]
fn lines_of_every_length_through_a_small_ring() {
    // Lines of 0 to 2000 bytes through a 4 KiB ring (largest message 2032):
    // many wrap-arounds, empty messages, waiting on both sides.
    let ring = TestRing::new();
    let mut input = Vec::new();
    for (i, length) in random_bytes(1000, 7).iter().enumerate() {
        let length = usize::from(*length) * 2000 / 255;
        input.extend((0..length).map(|j| b'a' + ((i + j) % 26) as u8));
        input.push(b'\n');
    }
    let recv = Running::spawn(&["recv", ring.name(), "--capacity", "4K"]);
    let send = Running::spawn_with_input(&["send", ring.name(), "--capacity", "4K"], input.clone());
    let received = succeeded(&recv.finish());
    succeeded(&send.finish());
    assert!(received == input);
}

#[test]
fn a_last_line_without_a_newline_is_sent() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(&["send", ring.name()], b"one\n\nthree"));
    assert_eq!(
        succeeded_text(&shmkit(&["recv", ring.name()])),
        "one\n\nthree\n"
    );
}

#[test]
fn raw_send_and_recv_copy_binary_data_unchanged() {
    // 3 MB of every byte value, newlines included, through a 64 KiB ring:
    // `send --raw` commits each read of its input as one message, and
    // `recv --raw` writes messages with nothing between them.
    let ring = TestRing::new();
    let input = random_bytes(3 << 20, 42);
    assert!(input.contains(&b'\n') && input.contains(&0));
    let recv = Running::spawn(&["recv", ring.name(), "--raw", "--capacity", "64K"]);
    let send = Running::spawn_with_input(
        &["send", ring.name(), "--raw", "--capacity", "64K"],
        input.clone(),
    );
    let received = succeeded(&recv.finish());
    succeeded(&send.finish());
    assert!(
        received == input,
        "received {} bytes, sent {}",
        received.len(),
        input.len()
    );
    assert!(!ring.exists());
}

#[test]
fn raw_input_that_ends_after_a_wrap_leaves_no_ring() {
    // In a 4 KiB ring (largest message 2032 bytes), 2100 bytes written at
    // once (atomically: under PIPE_BUF) are read as 2032 and 68, so the
    // grant that finds the end of the input starts with a padding record
    // at the wrap, and is aborted. The ring must still end finished.
    let ring = TestRing::new();
    let input = random_bytes(2100, 3);
    let recv = Running::spawn(&["recv", ring.name(), "--raw", "--capacity", "4K"]);
    let send = Running::spawn_with_input(
        &["send", ring.name(), "--raw", "--capacity", "4K"],
        input.clone(),
    );
    assert!(succeeded(&recv.finish()) == input);
    succeeded(&send.finish());
    assert!(!ring.exists(), "a closed, drained ring removes itself");
}

#[test]
fn raw_send_without_raw_recv_prints_a_newline_after_each_chunk() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(
        &["send", ring.name(), "--raw"],
        b"no newline",
    ));
    assert_eq!(
        succeeded_text(&shmkit(&["recv", ring.name()])),
        "no newline\n"
    );
}

// ---------------------------------------------------------------------------
// recv --count, --timeout

#[test]
fn recv_count_takes_n_messages_and_leaves_the_rest() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(&["send", ring.name()], &seq(10)));
    let first = shmkit(&["recv", ring.name(), "--count", "3"]);
    assert_eq!(succeeded_text(&first), "1\n2\n3\n");
    let none = shmkit(&["recv", ring.name(), "--count", "0"]);
    assert_eq!(succeeded_text(&none), "");
    let status = json(&shmkit(&["stat", "--ring", ring.name(), "--json"]));
    assert_eq!(status["ring"]["sent"], 10);
    assert_eq!(status["ring"]["received"], 3);
    let rest = shmkit(&["recv", ring.name(), "--count", "100"]);
    assert_eq!(succeeded_text(&rest), "4\n5\n6\n7\n8\n9\n10\n");
    assert!(!ring.exists());
}

#[test]
fn recv_timeout_on_an_empty_ring_fails() {
    let ring = TestRing::new();
    let output = shmkit(&["recv", ring.name(), "--timeout", "0.2"]);
    failed(
        &output,
        1,
        &format!("timed out: no message on ring {} within 0.2 s", ring.name()),
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn recv_timeout_does_not_fire_while_messages_come() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(&["send", ring.name()], b"a\nb\n"));
    let output = shmkit(&["recv", ring.name(), "--timeout", "30"]);
    assert_eq!(succeeded_text(&output), "a\nb\n");
}

// ---------------------------------------------------------------------------
// Dead peers and gc

#[test]
fn recv_reports_peer_gone_when_the_producer_is_killed() {
    let ring = TestRing::new();
    let mut send = Running::spawn(&["send", ring.name()]);
    let mut recv = Running::spawn(&["recv", ring.name()]);
    let mut to_send = send.stdin();
    to_send.write_all(b"one\ntwo\nthree\n").expect("write");
    to_send.flush().expect("flush");
    let mut received = BufReader::new(recv.stdout());
    // recv flushes when the ring runs empty: the lines come at once.
    assert_eq!(read_lines(&mut received, 3), ["one", "two", "three"]);

    // Both ends held by live processes, as stat shows them.
    let (send_pid, recv_pid) = (send.pid(), recv.pid());
    let status = json(&shmkit(&["stat", "--ring", ring.name(), "--json"]));
    let live = serde_json::json!({"producer": {"pid": send_pid, "alive": true},
                                  "consumer": {"pid": recv_pid, "alive": true}});
    assert_eq!(status["ring"]["producer"], live["producer"], "{status}");
    assert_eq!(status["ring"]["consumer"], live["consumer"], "{status}");
    assert_eq!(status["ring"]["state"], "open");

    send.kill();
    let mut rest = Vec::new();
    received.read_to_end(&mut rest).expect("read the rest");
    assert_eq!(text(&rest), "");
    failed(
        &recv.finish(),
        1,
        &format!(
            "peer gone: the producer of ring {} (pid {send_pid}) died",
            ring.name()
        ),
    );
    drop(to_send);
}

#[test]
fn send_reports_peer_gone_when_the_consumer_is_killed() {
    let ring = TestRing::new();
    let mut recv = Running::spawn(&["recv", ring.name(), "--capacity", "4K"]);
    let mut send = Running::spawn(&["send", ring.name(), "--capacity", "4K"]);
    let mut to_send = send.stdin();
    to_send.write_all(b"first\n").expect("write");
    to_send.flush().expect("flush");
    let mut received = BufReader::new(recv.stdout());
    assert_eq!(read_lines(&mut received, 1), ["first"]);
    let recv_pid = recv.pid();
    recv.kill();
    // Far more than the ring holds: send waits for room, and finds the
    // consumer dead.
    let feeder = std::thread::spawn(move || {
        let _ = to_send.write_all(&seq(100_000));
    });
    failed(
        &send.finish(),
        1,
        &format!(
            "peer gone: the consumer of ring {} (pid {recv_pid}) died",
            ring.name()
        ),
    );
    feeder.join().expect("the input thread");
}

#[test]
fn gc_lists_then_removes_a_ring_whose_producer_was_killed() {
    let ring = TestRing::new();
    let name = ring.name();
    // recv --count 2 exits once two lines are through: by then send holds
    // the ring; then it dies without closing it.
    let recv = Running::spawn(&["recv", name, "--count", "2"]);
    let mut send = Running::spawn(&["send", name]);
    let mut to_send = send.stdin();
    to_send.write_all(b"a\nb\nc\n").expect("write");
    to_send.flush().expect("flush");
    assert_eq!(succeeded_text(&recv.finish()), "a\nb\n");
    let send_pid = send.pid();
    send.kill();
    drop(to_send);

    let ls = succeeded_text(&shmkit(&["ls"]));
    let row = ring_row(&ls, name).unwrap_or_else(|| panic!("{name} not in {ls}"));
    assert_eq!(
        row[5..],
        [format!("{send_pid} (dead)"), "-".into(), "abandoned".into()]
    );

    // Other tests' rings may be listed too: look at ours only.
    let listed = format!("ring {name}: abandoned (producer pid {send_pid} dead, consumer none)\n");
    let dry_run = succeeded_text(&shmkit(&["gc", name]));
    assert!(
        dry_run.contains(&format!("would remove {listed}")),
        "{dry_run}"
    );
    assert!(dry_run.contains("nothing was removed"), "{dry_run}");
    assert!(ring.exists(), "a dry run removes nothing");

    // Named, so that rings of tests running at the same time stay.
    let removed = succeeded_text(&shmkit(&["gc", "--force", name]));
    assert_eq!(removed, format!("removed {listed}"));
    assert!(!ring.exists());
    failed(
        &shmkit(&["gc", name]),
        1,
        &format!("no ring, topic or service is named {name}"),
    );
}

#[test]
fn gc_leaves_rings_with_a_live_end() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(&["send", ring.name()], b"kept\n"));
    // Closed cleanly, not yet read: nobody died, so it is no garbage.
    let kept = succeeded_text(&shmkit(&["gc", "--force", ring.name()]));
    assert!(kept.contains("is not garbage"), "{kept}");
    assert!(ring.exists());
    assert_eq!(succeeded_text(&shmkit(&["recv", ring.name()])), "kept\n");
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn a_line_longer_than_the_largest_message_is_an_error() {
    // A 4 KiB ring carries messages of up to 2032 bytes: a line of 2032
    // bytes goes through, one of 3000 does not.
    let ring = TestRing::new();
    let longest = "y".repeat(2032);
    let mut input = format!("short\n{longest}\nalso short\n").into_bytes();
    input.extend([b'x'; 3000]);
    input.extend(b"\nafter\n");
    let output = shmkit_with_input(&["send", ring.name(), "--capacity", "4K"], &input);
    failed(
        &output,
        1,
        &format!(
            "line 4 of standard input is 3000 bytes long, more than the 2032 bytes of the \
             largest message ring {} carries; the 3 lines before it were sent",
            ring.name()
        ),
    );
    // The lines before it went through; the stream was left unfinished,
    // and the consumer that reads it says so.
    let recv = shmkit(&["recv", ring.name()]);
    assert_eq!(
        text(&recv.stdout),
        format!("short\n{longest}\nalso short\n")
    );
    failed(&recv, 1, "without finishing the stream");
    assert!(!ring.exists(), "the consumer removes the ring it read");
}

/// A `send` that fails (a line too long) while a `recv` reads: the `recv`
/// prints every line before the failure, then fails saying the producer did
/// not finish, so that `recv > file` in a pipeline cannot pass a cut-off
/// stream for a whole one; and nothing is left in /dev/shm.
#[test]
fn a_send_that_fails_leaves_its_recv_failing_after_the_lines_before() {
    let ring = TestRing::new();
    let recv = Running::spawn(&["recv", ring.name(), "--capacity", "4K"]);
    let mut input = b"short\n".to_vec();
    input.extend([b'a'; 3000]);
    input.extend(b"\nafter\n");
    let send = shmkit_with_input(&["send", ring.name(), "--capacity", "4K"], &input);
    let message = failed(&send, 1, "line 2 of standard input is 3000 bytes long");
    for fix in ["`--capacity`", "`--raw`"] {
        assert!(message.contains(fix), "{message}");
    }
    let received = recv.finish();
    assert_eq!(text(&received.stdout), "short\n");
    failed(
        &received,
        1,
        &format!("the producer of ring {} (pid ", ring.name()),
    );
    failed(&received, 1, "without finishing the stream");
    assert!(!ring.exists(), "nothing is left in /dev/shm");
}

#[test]
fn bad_names_capacities_and_timeouts_are_usage_errors() {
    let ring = TestRing::new();
    let cases: [(&[&str], &str); 5] = [
        (&["send", ring.name(), "--capacity", "1000"], "power of two"),
        (&["recv", ring.name(), "--capacity", "2K"], "power of two"),
        (&["send", ".hidden"], "ring name \".hidden\""),
        (&["recv", "a/b"], "ring name \"a/b\""),
        (&["stat", "--ring", "x", "--id", "1"], "cannot be used with"),
    ];
    for (args, fragment) in cases {
        let output = shmkit(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }
    for timeout in ["-1", "soon", "1e400"] {
        let output = shmkit(&["recv", ring.name(), "--timeout", timeout]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    }
    assert!(!ring.exists(), "nothing was created");
}

#[test]
fn a_second_producer_is_refused_while_the_first_runs() {
    let ring = TestRing::new();
    let mut first = Running::spawn(&["send", ring.name()]);
    let mut recv = Running::spawn(&["recv", ring.name(), "--count", "1"]);
    let mut to_first = first.stdin();
    to_first.write_all(b"hello\n").expect("write");
    to_first.flush().expect("flush");
    assert_eq!(read_lines(&mut BufReader::new(recv.stdout()), 1), ["hello"]);
    let first_pid = first.pid();
    failed(
        &shmkit_with_input(&["send", ring.name()], b"intruder\n"),
        1,
        &format!(
            "ring {} already has a producer: pid {first_pid}, still running",
            ring.name()
        ),
    );
    drop(to_first);
    succeeded(&first.finish());
    succeeded(&recv.finish());
}

#[test]
fn recv_into_a_closed_pipe_exits_0_quietly() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(
        &["send", ring.name(), "--capacity", "4M"],
        &seq(100_000),
    ));
    let mut recv = Running::spawn(&["recv", ring.name()]);
    let mut stdout = recv.stdout();
    let mut first = [0; 2];
    stdout.read_exact(&mut first).expect("two bytes");
    assert_eq!(&first, b"1\n");
    drop(stdout); // like `head -c 2`
    let output = recv.finish();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

// ---------------------------------------------------------------------------
// ls and stat

#[test]
fn ls_and_stat_show_a_ring() {
    let ring = TestRing::new();
    let name = ring.name();
    succeeded(&shmkit_with_input(
        &["send", name, "--capacity", "64K"],
        b"1\n22\n333\n",
    ));

    let ls = succeeded_text(&shmkit(&["ls"]));
    let row = ring_row(&ls, name).unwrap_or_else(|| panic!("{name} not in {ls}"));
    // Three records of 8 header bytes and 8 rounded-up payload bytes.
    assert_eq!(row, [name, "65536", "48", "3", "0", "-", "-", "closed"]);

    let all = json(&shmkit(&["ls", "--json"]));
    let segments = all.as_array().expect("ls --json is still an array");
    let ours = segments
        .iter()
        .find(|s| s["key"] == ring.key().as_str())
        .unwrap_or_else(|| panic!("{} not in {all}", ring.key()));
    assert_eq!(ours["kind"], "posix");
    let expected = serde_json::json!({
        "name": name, "capacity": 65536, "max_message": 32752,
        "bytes_in_flight": 48, "sent": 3, "received": 0, "closed": true,
        "producer": null, "consumer": null, "state": "closed",
    });
    assert_eq!(ours["ring"], expected);

    let stat = succeeded_text(&shmkit(&["stat", &ring.key()]));
    assert!(stat.starts_with("kind:     posix\n"), "{stat}");
    for (field, value) in [
        ("name", name),
        ("state", "closed"),
        ("capacity", "65536 bytes"),
        ("max message", "32752 bytes"),
        ("in flight", "48 bytes"),
        ("sent", "3"),
        ("received", "0"),
        ("producer", "none"),
        ("consumer", "none"),
    ] {
        assert_eq!(ring_field(&stat, field), value, "{stat}");
    }
    assert_eq!(succeeded_text(&shmkit(&["stat", "--ring", name])), stat);

    let by_key = json(&shmkit(&["stat", &ring.key(), "--json"]));
    assert_eq!(by_key["ring"], expected);
    assert_eq!(by_key["size"], 65536 + 512, "{by_key}");
    let by_name = json(&shmkit(&["stat", "--ring", name, "--json"]));
    assert_eq!(by_name["ring"], expected);

    assert_eq!(succeeded_text(&shmkit(&["recv", name])), "1\n22\n333\n");
    failed(
        &shmkit(&["stat", "--ring", name]),
        1,
        &format!("no shared-memory segment {}", ring.key()),
    );
}

#[test]
fn stat_of_a_segment_that_is_no_ring_has_no_ring_section() {
    let key = format!("/shmkit-cli-ring-test-{}", std::process::id());
    let _cleanup = RemoveOnDrop(key.clone());
    succeeded(&shmkit(&["create", &key, "--size", "4K"]));
    let stat = succeeded_text(&shmkit(&["stat", &key]));
    assert!(!stat.contains("ring:"), "{stat}");
    assert_eq!(
        json(&shmkit(&["stat", &key, "--json"]))["ring"],
        Value::Null
    );
}

/// Removes the POSIX segment `/name` when dropped.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        remove_ring(&self.0);
    }
}

#[test]
fn stat_of_a_segment_named_like_a_ring_that_is_none_says_so() {
    let ring = TestRing::new();
    succeeded(&shmkit(&["create", &ring.key(), "--size", "4K"]));
    let stat = succeeded_text(&shmkit(&["stat", "--ring", ring.name()]));
    assert!(
        stat.contains("ring:     unreadable: corrupt shared memory: ring "),
        "{stat}"
    );
    assert_eq!(
        json(&shmkit(&["stat", "--ring", ring.name(), "--json"]))["ring"],
        Value::Null
    );
    let ls = succeeded_text(&shmkit(&["ls"]));
    let row = ring_row(&ls, ring.name()).unwrap_or_else(|| panic!("not in {ls}"));
    assert_eq!(row.last().map(String::as_str), Some("unreadable"));
}

#[test]
fn help_lists_the_ring_commands() {
    let help = succeeded_text(&shmkit(&["--help"]));
    for command in ["send", "recv", "gc", "NAME names a message ring"] {
        assert!(help.contains(command), "{command:?} not in {help}");
    }
    for hidden in ["__demo-producer", "__demo-consumer"] {
        assert!(!help.contains(hidden), "{help}");
    }
}

// ---------------------------------------------------------------------------
// Lifecycle: empty streams, leaving consumers, timeouts, signals, half-made
// rings (issue 8, points 2, 3 and 11; issue 15, defects 2 to 5 and 11)

/// Sends `signal` to the process `pid` (a child this test started).
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
}

/// Whether ring `name` has a live `end` ("producer" or "consumer").
fn has_live(name: &str, end: &str) -> bool {
    shmkit::ring::status(name).is_ok_and(|status| {
        let end = if end == "producer" {
            status.producer
        } else {
            status.consumer
        };
        end.is_some_and(|end| end.alive)
    })
}

/// A `recv` that holds a ring no producer has come to waits for one by
/// looking at the ring's status now and then (`arrival`): it takes the
/// stream of a producer that comes later, also one that came, sent and
/// closed between two looks (the ring holds it), and `--count` leaves the
/// rest for the next consumer, as ever.
#[test]
fn recv_waiting_for_a_producer_gets_the_stream_of_one_that_comes() {
    let ring = TestRing::new();
    let recv = Running::spawn(&["recv", ring.name()]);
    wait_for("recv to hold the ring", || {
        has_live(ring.name(), "consumer")
    });
    succeeded(&shmkit_with_input(&["send", ring.name()], b"one\ntwo\n"));
    assert_eq!(succeeded_text(&recv.finish()), "one\ntwo\n");
    assert!(!ring.exists());

    let recv = Running::spawn(&["recv", ring.name(), "--count", "1"]);
    wait_for("recv to hold the ring", || {
        has_live(ring.name(), "consumer")
    });
    let send = Running::spawn_with_input(&["send", ring.name()], b"first\nsecond\n".to_vec());
    assert_eq!(succeeded_text(&recv.finish()), "first\n");
    assert_eq!(succeeded(&send.finish()), b"");
    assert_eq!(succeeded_text(&shmkit(&["recv", ring.name()])), "second\n");
    assert!(!ring.exists());
}

#[test]
fn an_empty_stream_reaches_a_consumer_that_starts_later() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(&["send", ring.name()], b""));
    assert!(ring.exists(), "the end of the stream waits for a consumer");
    assert_eq!(succeeded_text(&shmkit(&["recv", ring.name()])), "");
    assert!(!ring.exists());

    // A first line too long: nothing was sent, and the stream is left
    // unfinished, which its consumer reports after reading nothing.
    let long = vec![b'x'; 5000];
    let output = shmkit_with_input(&["send", ring.name(), "--capacity", "4K"], &long);
    failed(&output, 1, "nothing was sent");
    let recv = shmkit(&["recv", ring.name()]);
    assert_eq!(text(&recv.stdout), "");
    failed(&recv, 1, "without finishing the stream");
    assert!(!ring.exists());
}

#[test]
fn send_fails_soon_after_its_consumer_left() {
    let ring = TestRing::new();
    let recv = Running::spawn(&["recv", ring.name(), "--count", "1", "--capacity", "4K"]);
    let send = Running::spawn_with_input(&["send", ring.name(), "--capacity", "4K"], seq(200_000));
    assert_eq!(succeeded_text(&recv.finish()), "1\n");
    // The ring fills; its consumer has gone: an error, not a wait forever.
    failed(
        &send.finish(),
        1,
        &format!("the consumer of ring {} left", ring.name()),
    );
}

#[test]
fn send_timeout_fails_when_nobody_reads() {
    let ring = TestRing::new();
    let args = ["send", ring.name(), "--capacity", "4K", "--timeout", "0.2"];
    let output = shmkit_with_input(&args, &seq(10_000));
    failed(
        &output,
        1,
        &format!("timed out: no room on ring {} within 0.2 s", ring.name()),
    );
    // What was sent stays for a consumer, which then learns that the
    // stream was cut short, and removes the ring.
    let recv = shmkit(&["recv", ring.name()]);
    let got = text(&recv.stdout);
    assert!(got.starts_with("1\n2\n"), "{got}");
    assert!(
        text(&seq(10_000)).starts_with(&got),
        "whole lines, in order"
    );
    assert!(
        got.len() < seq(10_000).len(),
        "a 4 KiB ring cannot hold all"
    );
    failed(&recv, 1, "without finishing the stream");
    assert!(!ring.exists());
}

#[test]
fn a_signal_ends_recv_cleanly_and_leaves_no_ring() {
    for stop in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let ring = TestRing::new();
        let mut recv = Running::spawn(&["recv", ring.name()]);
        let pid = recv.pid();
        wait_for("recv to hold the ring", || {
            has_live(ring.name(), "consumer")
        });
        signal(pid, stop);
        let output = recv.finish();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(output.status.signal(), Some(stop), "{output:?}");
        assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
        assert!(
            !ring.exists(),
            "a consumer stopped by a signal left its ring"
        );
    }
}

#[test]
fn a_signal_closes_send_cleanly() {
    let ring = TestRing::new();
    let mut consumer = shmkit::ring::Consumer::open(ring.name()).expect("open");
    let mut send = Running::spawn(&["send", ring.name()]);
    let mut to_send = send.stdin();
    to_send.write_all(b"before\n").expect("write");
    to_send.flush().expect("flush");
    let mut buf = [0; 64];
    let n = consumer.recv(&mut buf).expect("a line");
    assert_eq!(&buf[..n], b"before");
    // send now waits in a read of its standard input.
    signal(send.pid(), libc::SIGINT);
    match consumer.recv(&mut buf) {
        Err(shmkit::Error::Closed { .. }) => {}
        other => panic!("after SIGINT on send: {other:?}"),
    }
    let output = send.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(output.status.signal(), Some(libc::SIGINT));
    drop(to_send);
    drop(consumer);
    assert!(!ring.exists());
}

#[test]
fn recv_count_0_and_timeouts_leave_no_ring() {
    let ring = TestRing::new();
    assert_eq!(
        succeeded_text(&shmkit(&["recv", ring.name(), "--count", "0"])),
        ""
    );
    assert!(!ring.exists(), "recv --count 0 left a ring");

    // A half-made ring (its creator died before sizing it): made again at
    // once, so the timeout is what ends the wait.
    std::fs::File::create(ring.path()).expect("create");
    let output = shmkit(&["recv", ring.name(), "--timeout", "0.2"]);
    failed(&output, 1, "timed out: no message");
    assert!(!ring.exists());
}

#[test]
fn gc_names_a_half_made_ring_and_removes_it() {
    let ring = TestRing::new();
    std::fs::File::create(ring.path()).expect("create");
    let listed = succeeded_text(&shmkit(&["gc", ring.name()]));
    assert!(
        listed.contains(&format!("would remove ring {}: half-made", ring.name())),
        "{listed}"
    );
    let removed = succeeded_text(&shmkit(&["gc", "--force", ring.name()]));
    assert!(
        removed.starts_with(&format!("removed ring {}: half-made", ring.name())),
        "{removed}"
    );
    assert!(!ring.exists());
    failed(
        &shmkit(&["gc", ring.name()]),
        1,
        &format!("no ring, topic or service is named {}", ring.name()),
    );
}

#[test]
fn a_capacity_that_differs_from_the_existing_rings_is_an_error() {
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(
        &["send", ring.name(), "--capacity", "4K"],
        b"a\n",
    ));
    failed(
        &shmkit(&["recv", ring.name(), "--capacity", "8K"]),
        1,
        &format!(
            "ring {} exists with capacity 4096, not the 8192 asked for",
            ring.name()
        ),
    );
    assert_eq!(succeeded_text(&shmkit(&["recv", ring.name()])), "a\n");
}

/// Polls `done` until it holds; panics after a minute. This waits for a
/// state another process reaches; it is no sleep standing in for one.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < give_up,
            "gave up waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// A ring shared between users: its last end is uid 65534, which may not
/// remove root's file in the sticky /dev/shm. It says what it left and
/// why, and still succeeds; root's gc then collects the ring as finished.
#[test]
fn a_ring_its_last_end_may_not_remove_is_reported_and_collected_by_its_owner() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run shmkit as uid 65534");
        return;
    }
    let ring = TestRing::new();
    succeeded(&shmkit_with_input(
        &["send", ring.name(), "--mode", "666"],
        b"shared\n",
    ));
    let output = {
        use std::os::unix::process::CommandExt;
        Command::new(SHMKIT)
            .args(["recv", ring.name(), "--trust", "0"])
            .gid(65534)
            .uid(65534)
            .output()
            .expect("run shmkit as uid 65534")
    };
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(text(&output.stdout), "shared\n");
    assert!(
        stderr.contains(&format!("ring {} was left in /dev/shm", ring.name()))
            && stderr.contains("permission denied"),
        "{stderr}"
    );
    assert!(ring.exists());
    let removed = succeeded_text(&shmkit(&["gc", "--force", ring.name()]));
    assert!(
        removed.starts_with(&format!("removed ring {}: finished", ring.name())),
        "{removed}"
    );
    assert!(!ring.exists());
}
