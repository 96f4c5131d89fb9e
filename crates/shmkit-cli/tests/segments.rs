//! Segments through the `shmkit` binary: create, ls, stat, rm, write and
//! read, ls as ipcs and lsipc show segments, and rm --all.

use std::process::Command;

use serde_json::Value;
use shmkit::{Key, ReadOnly, Segment};

#[allow(dead_code)]
mod common;

use common::{
    create_sysv, failed, json, ls_row, refused_by_clap, run, shmkit, shmkit_as_nobody,
    shmkit_with_input, stat_field, succeeded, text, TestId, TestKey, SHMKIT,
};

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
