//! The `shmkit` binary's errors as a user sees them: refused sizes and
//! limits, missing and existing keys, key syntax, and exit statuses.

use std::collections::BTreeSet;
use std::process::Output;

use shmkit::Key;

#[allow(dead_code)]
mod common;

use common::{assert_no_crash, create_sysv, failed, run, shmkit, succeeded, text, TestKey, SHMKIT};

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
