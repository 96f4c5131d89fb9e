//! `examples/async_pipeline.rs` run as a user runs it: a tokio program that
//! receives from two rings and a topic with `tokio::select!` and forwards
//! to a third ring, fed by a blocking process it starts. The test checks
//! what comes out, in order per input, and that the example leaves nothing
//! in /dev/shm.
//!
//! The example's binary is the one `cargo test` builds beside this test
//! (`target/<profile>/examples/async_pipeline`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The example's binary, built by `cargo test` next to this test's.
fn example() -> PathBuf {
    let test = std::env::current_exe().expect("this test's path");
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let example = profile_dir.join("examples").join("async_pipeline");
    assert!(
        example.exists(),
        "{} is missing: `cargo test -p shmkit --features tokio` builds it",
        example.display()
    );
    example
}

/// The files under /dev/shm whose names hold `needle`.
fn shm_files_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains(needle))
        .collect()
}

#[test]
fn the_async_pipeline_example_forwards_two_rings_and_a_topic_in_order_and_leaves_nothing() {
    let running = Command::new(example())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the example");
    let pid = running.id();
    let child = running.wait_with_output().expect("the example ends");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "the example failed: {}\n{stdout}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for (tag, what) in [
        ("left", "order"),
        ("right", "payment"),
        ("topic", "price tick"),
    ] {
        let from_it: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|line| line.starts_with(&format!("{tag}: ")))
            .collect();
        let expected: Vec<String> = (0..3).map(|n| format!("{tag}: {what} {n}")).collect();
        assert_eq!(from_it, expected, "what came out of {tag}:\n{stdout}");
    }
    assert_eq!(lines.last(), Some(&"forwarded 9 messages"), "{stdout}");
    assert_eq!(lines.len(), 10, "nothing else came out:\n{stdout}");
    // Its rings and topic are named for its pid.
    let leftovers: Vec<String> = shm_files_with("example-pipeline-")
        .into_iter()
        .filter(|name| name.ends_with(&format!("-{pid}")))
        .collect();
    assert!(leftovers.is_empty(), "left in /dev/shm: {leftovers:?}");
}
