//! The `shmkit` binary alongside programs we did not write: `ipcs`, `ipcrm`
//! and Python see and make the same segments it does.

use shmkit::{ReadOnly, Segment};

#[allow(dead_code)]
mod common;

use common::{create_sysv, failed, json, run, shmkit, stat_field, succeeded, text, TestKey};

/// Held by every test of this file. A child this process forks inherits
/// its System V attachments until it execs, so another test's child could
/// be counted as an attacher of a segment one test holds (`nattch` 2, two
/// attachers, or a removed segment that outlives its detach); the tests
/// here count attachers, so they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Interoperation with programs we did not write

#[test]
fn ipcs_shows_a_segment_created_by_shmkit() {
    let _serial = one_at_a_time();
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
    let _serial = one_at_a_time();
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
    let _serial = one_at_a_time();
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
    let _serial = one_at_a_time();
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
    let _serial = one_at_a_time();
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
