//! `shmkit bench` as a script uses it: a short run (`--messages`, a hidden
//! option for tests) that must print valid JSON with every record, leave
//! nothing behind, and fail clearly when a stream loses a message (the
//! hidden `--inject-skip`). No assertion here is about speed.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");

/// What a run without `--transports` measures.
const TRANSPORTS: &[&str] = &[
    "shmkit-spin",
    "shmkit-block",
    "shmkit-batch",
    "shmkit-service",
    "shmkit-async",
    "shmkit-topic",
    "shmkit-topic-fanin",
    "pipe",
    "uds-stream",
    "uds-seqpacket",
    "tcp",
    "mq",
    #[cfg(feature = "iceoryx2")]
    "iceoryx2",
    #[cfg(feature = "iceoryx2")]
    "iceoryx2-event",
    "bare-slots",
];

/// Runs `shmkit bench ARGS…` to the end and checks that it left no ring,
/// segment or message queue named after its pid.
fn bench(args: &[&str]) -> Output {
    let child = Command::new(SHMKIT)
        .arg("bench")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shmkit bench");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for shmkit bench");
    let left = leftovers(pid);
    assert!(left.is_empty(), "shmkit bench left {left:?} behind");
    output
}

/// Files in /dev/shm (and /dev/mqueue, if mounted) that a bench with this
/// pid made: its rings `shmkit.ring.bench-PID-…`, its floor segment,
/// queues and iceoryx2 domains `shmkit-bench-PID-…`; and an iceoryx2
/// domain's folder in the temporary directory.
fn leftovers(pid: u32) -> Vec<String> {
    let ring = format!("shmkit.ring.bench-{pid}-");
    let service = format!("shmkit.service.bench-{pid}-");
    let topic = format!("shmkit.topic.bench-{pid}-");
    let other = format!("shmkit-bench-{pid}-");
    let temp = std::env::temp_dir();
    [
        "/dev/shm",
        "/dev/mqueue",
        temp.to_str().expect("a UTF-8 path"),
    ]
    .into_iter()
    .filter(|dir| Path::new(dir).is_dir())
    .flat_map(|dir| std::fs::read_dir(dir).expect("list the directory"))
    .map(|entry| entry.expect("a directory entry").file_name())
    .map(|name| name.to_string_lossy().into_owned())
    .filter(|name| {
        [&ring, &service, &topic, &other]
            .iter()
            .any(|p| name.starts_with(*p))
    })
    .collect()
}

fn number(record: &Value, field: &str) -> f64 {
    record[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is a number in {record}"))
}

#[test]
fn a_short_run_prints_a_record_for_every_transport_and_reference() {
    let output = bench(&["--quick", "--sizes", "64", "--messages", "2000", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}: {stderr}", output.status);
    let records: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is one JSON value ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let records = records.as_array().expect("an array");

    let fields: HashSet<&str> = [
        "transport",
        "size",
        "rtt_p50_ns",
        "rtt_p99_ns",
        "rtt_p999_ns",
        "msgs_per_sec",
        "bytes_per_sec",
    ]
    .into();
    for record in records {
        let keys: HashSet<&str> = record
            .as_object()
            .expect("each record is an object")
            .keys()
            .map(String::as_str)
            .collect();
        let streamed = record["msgs_per_sec"].is_number() && record["transport"] != "memcpy";
        let mut expected = fields.clone();
        if streamed {
            expected.insert("stream_trials");
        }
        assert_eq!(keys, expected, "{record}");
        assert_eq!(record["size"], 64, "{record}");
    }
    let find = |name: &str| {
        let found: Vec<&Value> = records.iter().filter(|r| r["transport"] == name).collect();
        assert_eq!(found.len(), 1, "one record for {name} in {records:?}");
        found[0]
    };

    let floor = find("floor");
    for field in ["rtt_p50_ns", "rtt_p99_ns", "rtt_p999_ns"] {
        assert!(number(floor, field) > 0.0, "{floor}");
    }
    assert!(floor["msgs_per_sec"].is_null() && floor["bytes_per_sec"].is_null());
    let memcpy = find("memcpy");
    assert!(memcpy["rtt_p50_ns"].is_null(), "{memcpy}");
    let bytes = number(memcpy, "bytes_per_sec");
    let copies = number(memcpy, "msgs_per_sec");
    assert!(
        copies > 0.0 && (bytes - copies * 64.0).abs() <= 64.0,
        "{memcpy}"
    );
    for &transport in TRANSPORTS {
        let record = find(transport);
        if transport == "shmkit-batch" || transport == "bare-slots" {
            // The batch's round trip is shmkit-spin's: not measured twice;
            // the bare slots are a reference for streams.
            assert!(record["rtt_p50_ns"].is_null(), "{record}");
        } else {
            let p50 = number(record, "rtt_p50_ns");
            let p99 = number(record, "rtt_p99_ns");
            let p999 = number(record, "rtt_p999_ns");
            assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{record}");
        }
        if transport == "shmkit-service" {
            // Calls only: a service has no one-way stream.
            assert!(record["msgs_per_sec"].is_null(), "{record}");
            continue;
        }
        assert!(number(record, "msgs_per_sec") > 0.0, "{record}");
        assert!(number(record, "bytes_per_sec") > 0.0, "{record}");
        // Five rounds, each between two floors; the figure is their median.
        let trials = record["stream_trials"].as_array().expect("stream_trials");
        assert_eq!(trials.len(), 5, "{record}");
        let mut rates: Vec<f64> = trials.iter().map(|t| number(t, "msgs_per_sec")).collect();
        assert!(
            trials
                .iter()
                .all(|t| number(t, "floor_before_ns") > 0.0 && number(t, "floor_after_ns") > 0.0),
            "{record}"
        );
        rates.sort_by(f64::total_cmp);
        assert!(rates[0] > 0.0, "{record}");
        assert!(
            (number(record, "msgs_per_sec") - rates[2]).abs() <= 1.0,
            "{record}"
        );
    }
    assert_eq!(records.len(), TRANSPORTS.len() + 2, "{records:?}");
}

/// At 64 KiB the bare slots are 16: a stream of 1,000 goes round them
/// about sixty times, every lap's flags checked by the receiver's check of
/// each message's number; a skipped number fails it.
#[test]
fn the_bare_slots_go_round_and_a_lost_message_fails_them() {
    let args = [
        "--sizes",
        "64K",
        "--messages",
        "1000",
        "--transports",
        "bare-slots",
    ];
    let output = bench(&[&args[..], &["--json"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}: {stderr}", output.status);
    let records: Value = serde_json::from_slice(&output.stdout).expect("one JSON value");
    let slots = records
        .as_array()
        .expect("an array")
        .iter()
        .find(|r| r["transport"] == "bare-slots")
        .expect("a record for bare-slots");
    assert!(slots["rtt_p50_ns"].is_null(), "{slots}");
    assert!(number(slots, "msgs_per_sec") > 0.0, "{slots}");

    let output = bench(&[&args[..], &["--inject-skip"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bare-slots stream of 64 KiB")
            && stderr.contains("lost, repeated or reordered"),
        "{stderr}"
    );
}

#[test]
fn a_lost_message_fails_the_run() {
    for transport in ["pipe", "shmkit-spin", "shmkit-batch", "shmkit-topic-fanin"] {
        let output = bench(&[
            "--sizes",
            "64",
            "--messages",
            "1000",
            "--transports",
            transport,
            "--inject-skip",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{transport}: {stderr}");
        assert!(
            stderr.contains(&format!("{transport} stream of 64 B"))
                && stderr.contains("lost, repeated or reordered"),
            "{transport}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{transport}: no table after a failure"
        );
    }
}

#[test]
fn sizes_without_room_for_a_sequence_number_are_refused() {
    let output = bench(&["--sizes", "4"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--sizes"));
}

/// The iceoryx2 peers (feature `iceoryx2`) in quick mode, as CI runs them:
/// each measured both ways, and nothing of their domains left behind.
#[cfg(feature = "iceoryx2")]
#[test]
fn iceoryx2_is_measured_like_every_transport() {
    let output = bench(&[
        "--quick",
        "--sizes",
        "64",
        "--transports",
        "iceoryx2,iceoryx2-event",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {}: {stderr}", output.status);
    let records: Value = serde_json::from_slice(&output.stdout).expect("one JSON value");
    let records = records.as_array().expect("an array");
    for transport in ["iceoryx2", "iceoryx2-event"] {
        let record = records
            .iter()
            .find(|r| r["transport"] == transport)
            .unwrap_or_else(|| panic!("a record for {transport} in {records:?}"));
        let p50 = number(record, "rtt_p50_ns");
        assert!(0.0 < p50 && p50 <= number(record, "rtt_p99_ns"), "{record}");
        assert!(number(record, "msgs_per_sec") > 0.0, "{record}");
    }
}
