//! `shmkit demo`, and `shmkit` when standard output is closed early.

use std::io::Read;
use std::process::{Command, Stdio};

use shmkit::{Key, Segment};

#[allow(dead_code)]
mod common;

use common::{failed, run, shmkit, succeeded, text, CreatedBy, TestKey, SHMKIT};

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
