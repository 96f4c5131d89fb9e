//! Segments across real processes: attach counts, kernel timestamps,
//! deferred removal, permissions as an unprivileged user, and bad input.

mod processes;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use processes::{args, is_root, next_command, report, unique_keys, Cleanup, Peer, ROLE};
use shmkit::{list, Access, Error, Key, Kind, Mode, ReadOnly, ReadWrite, Segment};

/// Held by every test of this file. A child this process forks (to run a
/// peer) holds copies of its mappings and System V attachments until it
/// execs, so a test counting attachers could count another test's child
/// (seen once: nattch 2 where 1 was right); the tests here take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let key: Key = args().parse().unwrap();
    match role.as_str() {
        "holder" => holder(&key),
        "probe" => probe(&key),
        "watcher" => watcher(&key),
        other => panic!("unknown role {other}"),
    }
}

/// Attaches, writes, reads and detaches on command.
fn holder(key: &Key) {
    let mut attachment = None;
    loop {
        let command = next_command();
        let words: Vec<&str> = command.splitn(3, ' ').collect();
        match words[..] {
            ["attach"] => {
                let a = Segment::open(key).unwrap().attach(ReadWrite).unwrap();
                report(&format!("attached {:x}", a.as_ptr() as usize));
                attachment = Some(a);
            }
            ["write", offset, text] => {
                let a = attachment.as_ref().unwrap();
                a.write_at(offset.parse().unwrap(), text.as_bytes())
                    .unwrap();
                report("written");
            }
            ["read", offset, len] => {
                let mut buf = vec![0; len.parse().unwrap()];
                let a = attachment.as_ref().unwrap();
                a.read_at(offset.parse().unwrap(), &mut buf).unwrap();
                report(&String::from_utf8(buf).unwrap());
            }
            ["detach"] => {
                attachment = None;
                report("detached");
            }
            [""] => return, // stdin closed
            _ => panic!("unknown command {command:?}"),
        }
    }
}

/// Attaches read-only and reports the 64-bit atomic at an offset on command.
fn watcher(key: &Key) {
    let attachment = Segment::open(key).unwrap().attach(ReadOnly).unwrap();
    report("watching");
    loop {
        let command = next_command();
        match command.split(' ').collect::<Vec<_>>()[..] {
            ["load", offset] => {
                let value = attachment
                    .load_u64(offset.parse().unwrap(), Ordering::Acquire)
                    .unwrap();
                report(&format!("{value:#x}"));
            }
            [""] => return, // stdin closed
            _ => panic!("unknown command {command:?}"),
        }
    }
}

/// Reports what this (unprivileged) process may do with the segment.
fn probe(key: &Key) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ids: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
        .collect();
    let outcome = |result: Result<(), Error>| match result {
        Ok(()) => "ok".to_owned(),
        Err(Error::PermissionDenied { .. }) => "denied".to_owned(),
        Err(other) => format!("error:{other}"),
    };
    let segment = Segment::open(key);
    let ro = outcome(
        segment
            .as_ref()
            .map_err(clone_err)
            .and_then(|s| s.attach(ReadOnly).map(drop)),
    );
    let rw = outcome(
        segment
            .as_ref()
            .map_err(clone_err)
            .and_then(|s| s.attach(ReadWrite).map(drop)),
    );
    let chmod = outcome(
        segment
            .as_ref()
            .map_err(clone_err)
            .and_then(|s| s.set_mode(Mode::new(0o666))),
    );
    report(&format!(
        "{} | ro={ro} rw={rw} chmod={chmod}",
        ids.join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    ));
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::PermissionDenied { segment, access } => Error::PermissionDenied {
            segment: segment.clone(),
            access: *access,
        },
        other => Error::InvalidArgument(other.to_string()),
    }
}

fn whole_seconds_ago(seconds: u64) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() - seconds)
}

fn two_processes_share_bytes(key: Key) {
    let _cleanup = Cleanup(key.clone());
    let started = whole_seconds_ago(0);
    let segment = Segment::create(&key, 4096, Mode::new(0o600)).unwrap();
    let mine = segment.attach(ReadWrite).unwrap();
    assert_eq!(segment.stat().unwrap().nattch, 1);

    let mut peer = Peer::spawn("holder", &key.to_string(), None);
    peer.send("attach");
    let peer_addr = peer.expect_line();
    peer.send("write 8 hello from the child");
    assert_eq!(peer.expect_line(), "written");

    let mut buf = [0; 20];
    mine.read_at(8, &mut buf).unwrap();
    assert_eq!(&buf, b"hello from the child");
    mine.write_at(100, b"and back").unwrap();
    peer.send("read 100 8");
    assert_eq!(peer.expect_line(), "and back");

    let stat = segment.stat().unwrap();
    assert_eq!(stat.nattch, 2);
    let pids: Vec<shmkit::Pid> = stat.attachers.iter().map(|m| m.pid).collect();
    assert!(pids.contains(&peer.pid()), "{pids:?}");
    assert!(pids.contains(&std::process::id()), "{pids:?}");
    let child_mapping = stat.attachers.iter().find(|m| m.pid == peer.pid()).unwrap();
    assert_eq!(format!("attached {:x}", child_mapping.start), peer_addr);
    assert_eq!(child_mapping.perms, "rw-s");
    assert!(child_mapping.end - child_mapping.start >= 4096);
    if key.is_sysv() {
        assert_eq!(
            stat.lpid,
            Some(peer.pid()),
            "the last attach was the child's"
        );
        assert!(stat.atime.unwrap() >= started);
        assert_eq!(stat.dtime, None, "nobody detached yet");
        assert_eq!(stat.cpid, Some(std::process::id()));
    }

    peer.send("detach");
    assert_eq!(peer.expect_line(), "detached");
    let stat = segment.stat().unwrap();
    assert_eq!(stat.nattch, 1);
    assert!(stat.attachers.iter().all(|m| m.pid != peer.pid()));
    if key.is_sysv() {
        assert_eq!(
            stat.lpid,
            Some(peer.pid()),
            "the last detach was the child's"
        );
        assert!(stat.dtime.unwrap() >= started);
    }
    peer.finish();

    drop(mine);
    let stat = segment.stat().unwrap();
    assert_eq!(stat.nattch, 0);
    if key.is_sysv() {
        assert_eq!(stat.lpid, Some(std::process::id()));
    }
    segment.remove().unwrap();
}

trait KeyKind {
    fn is_sysv(&self) -> bool;
}

impl KeyKind for Key {
    fn is_sysv(&self) -> bool {
        matches!(self, Key::SysV(_))
    }
}

#[test]
fn sysv_two_processes_share_bytes_and_counts() {
    let _serial = one_at_a_time();
    let [sysv, _] = unique_keys();
    two_processes_share_bytes(sysv);
}

#[test]
fn posix_two_processes_share_bytes_and_counts() {
    let _serial = one_at_a_time();
    let [_, posix] = unique_keys();
    two_processes_share_bytes(posix);
}

fn removal_is_deferred(key: Key) {
    let _cleanup = Cleanup(key.clone());
    let segment = Segment::create(&key, 8192, Mode::new(0o600)).unwrap();
    let mine = segment.attach(ReadWrite).unwrap();
    let mut peer = Peer::spawn("holder", &key.to_string(), None);
    peer.send("attach");
    peer.expect_line();

    segment.remove().unwrap();
    assert!(
        matches!(Segment::open(&key), Err(Error::NotFound { .. })),
        "the key no longer finds it"
    );
    let stat = segment.stat().unwrap();
    assert!(stat.removed);
    assert_eq!(stat.nattch, 2);

    // Both holders keep reading and writing the removed segment.
    peer.send("write 4000 still here");
    assert_eq!(peer.expect_line(), "written");
    let mut buf = [0; 10];
    mine.read_at(4000, &mut buf).unwrap();
    assert_eq!(&buf, b"still here");
    mine.write_at(0, b"me too").unwrap();
    peer.send("read 0 6");
    assert_eq!(peer.expect_line(), "me too");

    peer.send("detach");
    peer.expect_line();
    peer.finish();
    assert_eq!(segment.stat().unwrap().nattch, 1);
    drop(mine);

    match key {
        Key::SysV(_) => {
            let id = segment.id().unwrap();
            assert!(matches!(Segment::open_id(id), Err(Error::NotFound { .. })));
            assert!(
                list().unwrap().iter().all(|s| s.id != Some(id)),
                "freed at the last detach"
            );
        }
        Key::Posix(ref name) => {
            assert!(!name.path().exists());
            assert!(list().unwrap().iter().all(|s| s.key != key));
        }
    }
}

#[test]
fn sysv_removal_waits_for_the_last_detach() {
    let _serial = one_at_a_time();
    let [sysv, _] = unique_keys();
    removal_is_deferred(sysv);
}

#[test]
fn posix_removal_waits_for_the_last_detach() {
    let _serial = one_at_a_time();
    let [_, posix] = unique_keys();
    removal_is_deferred(posix);
}

#[test]
fn one_segment_attached_twice_has_two_addresses() {
    let _serial = one_at_a_time();
    for key in unique_keys() {
        let _cleanup = Cleanup(key.clone());
        let segment = Segment::create(&key, 4096, Mode::new(0o600)).unwrap();
        let a = segment.attach(ReadWrite).unwrap();
        let b = segment.attach(ReadOnly).unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        a.write_at(4090, b"twice!").unwrap();
        let mut buf = [0; 6];
        b.read_at(4090, &mut buf).unwrap();
        assert_eq!(&buf, b"twice!");
        let counter = a.atomic_u64(64).unwrap();
        counter.fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        let mut raw = [0; 8];
        b.read_at(64, &mut raw).unwrap();
        assert_eq!(u64::from_ne_bytes(raw), 7);
        let stat = segment.stat().unwrap();
        assert_eq!(stat.nattch, 2);
        let mine: Vec<_> = stat
            .attachers
            .iter()
            .filter(|m| m.pid == std::process::id())
            .collect();
        assert_eq!(mine.len(), 2);
        assert!(mine.iter().any(|m| m.perms == "r--s"));
        drop((a, b));
        segment.remove().unwrap();
    }
}

/// Runs the probe as uid/gid 65534 and returns its `ro=… rw=… chmod=…`.
fn probe_as_nobody(key: &Key) -> String {
    let mut peer = Peer::spawn("probe", &key.to_string(), Some((65534, 65534)));
    let line = peer.expect_line();
    peer.finish();
    let (ids, outcome) = line.split_once(" | ").unwrap();
    assert!(ids.contains("Uid: 65534 65534 65534 65534"), "{ids}");
    assert!(ids.contains("Gid: 65534 65534 65534 65534"), "{ids}");
    assert!(
        ids.ends_with("Groups:") || ids.ends_with("Groups: 65534"),
        "supplementary groups kept: {ids}"
    );
    outcome.to_owned()
}

#[test]
fn permissions_apply_to_an_unprivileged_process() {
    let _serial = one_at_a_time();
    if !is_root() {
        eprintln!("skipped: dropping to uid 65534 needs root (CI runs as root)");
        return;
    }
    for key in unique_keys() {
        let _cleanup = Cleanup(key.clone());
        let segment = Segment::create(&key, 4096, Mode::new(0o600)).unwrap();
        assert_eq!(
            probe_as_nobody(&key),
            "ro=denied rw=denied chmod=denied",
            "{key}: 0600 of root"
        );

        segment.set_mode(Mode::new(0o644)).unwrap();
        assert_eq!(segment.stat().unwrap().mode, Mode::new(0o644));
        assert_eq!(
            probe_as_nobody(&key),
            "ro=ok rw=denied chmod=denied",
            "{key}: 0644 of root"
        );

        segment.set_mode(Mode::new(0o666)).unwrap();
        assert_eq!(
            probe_as_nobody(&key),
            "ro=ok rw=ok chmod=denied",
            "{key}: 0666 of root"
        );

        segment.set_mode(Mode::new(0o600)).unwrap();
        segment.set_owner(65534, 65534).unwrap();
        let stat = segment.stat().unwrap();
        assert_eq!((stat.uid, stat.gid), (65534, 65534));
        assert_eq!(
            probe_as_nobody(&key),
            "ro=ok rw=ok chmod=ok",
            "{key}: 0600 given to nobody"
        );
        assert_eq!(
            segment.stat().unwrap().mode,
            Mode::new(0o666),
            "nobody changed the mode"
        );
        segment.remove().unwrap();
    }
}

#[test]
fn permission_denied_names_the_segment_and_the_access() {
    let _serial = one_at_a_time();
    let err = Error::PermissionDenied {
        segment: "key 0x00001234 (id 5)".to_owned(),
        access: Access::AttachReadWrite,
    };
    assert_eq!(
        err.to_string(),
        "permission denied: read-write attach of shared-memory segment key 0x00001234 (id 5)"
    );
}

#[test]
fn bad_input_gives_distinct_errors() {
    let _serial = one_at_a_time();
    for key in unique_keys() {
        let _cleanup = Cleanup(key.clone());
        let err = Segment::create(&key, 0, Mode::OWNER_ONLY).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("at least 1 byte"), "{err}");

        let err = Segment::create(&key, u64::MAX, Mode::OWNER_ONLY).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { size: u64::MAX, .. }),
            "{err}"
        );

        let err = Segment::open(&key).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains(&key.to_string()), "{err}");

        let segment = Segment::create(&key, 100, Mode::OWNER_ONLY).unwrap();
        let err = Segment::create(&key, 100, Mode::OWNER_ONLY).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        let err = Segment::open_or_create(&key, 200, Mode::OWNER_ONLY).unwrap_err();
        assert!(err.to_string().contains("exists with 100 bytes"), "{err}");
        let again = Segment::open_or_create(&key, 50, Mode::OWNER_ONLY).unwrap();
        assert!(!again.created && again.is_mine());
        assert_eq!(again.segment.size().unwrap(), 100);

        let attachment = segment.attach(ReadWrite).unwrap();
        let err = attachment.write_at(95, b"too long").unwrap_err();
        assert!(
            matches!(
                err,
                Error::OutOfBounds {
                    offset: 95,
                    len: 8,
                    size: 100
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "bytes 95..103 are outside the segment's 100 bytes"
        );
        assert!(attachment.read_at(usize::MAX, &mut [0; 2]).is_err());
        assert!(matches!(
            attachment.atomic_u64(3),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            attachment.atomic_u32(100),
            Err(Error::OutOfBounds { .. })
        ));
        drop(attachment);
        segment.remove().unwrap();
    }
    assert!(matches!(Key::posix("/a/b"), Err(Error::InvalidName { .. })));
    assert!(matches!(
        Segment::open(&Key::PRIVATE),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Segment::open_id(i32::MAX),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn private_segments_are_new_each_time_and_found_by_id() {
    let _serial = one_at_a_time();
    let a = Segment::create(&Key::PRIVATE, 64, Mode::OWNER_ONLY).unwrap();
    let b = Segment::open_or_create(&Key::PRIVATE, 64, Mode::OWNER_ONLY).unwrap();
    assert!(b.created);
    let b = b.segment;
    let (a_id, b_id) = (a.id().unwrap(), b.id().unwrap());
    assert_ne!(a_id, b_id);
    let again = Segment::open_id(a_id).unwrap();
    again.attach(ReadWrite).unwrap().write_at(0, b"x").unwrap();
    let mut buf = [0];
    a.attach(ReadOnly).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"x");
    a.remove().unwrap();
    b.remove().unwrap();
}

#[test]
fn segments_print_as_messages_name_them() {
    let _serial = one_at_a_time();
    let keys = unique_keys();
    let _cleanups = keys.clone().map(Cleanup);
    let sysv = Segment::create(&keys[0], 100, Mode::OWNER_ONLY).unwrap();
    let id = sysv.id().unwrap();
    assert_eq!(sysv.to_string(), format!("key {} (id {id})", keys[0]));
    let posix = Segment::create(&keys[1], 100, Mode::OWNER_ONLY).unwrap();
    assert_eq!(posix.to_string(), keys[1].to_string());

    // Removed but still attached, the segment is found by id only, and the
    // kernel reports its key as 0: it prints as a private segment does.
    let held = sysv.attach(ReadOnly).unwrap();
    sysv.remove().unwrap();
    assert_eq!(
        Segment::open_id(id).unwrap().to_string(),
        format!("id {id}")
    );
    drop(held);

    // The library's errors name segments the same way.
    let err = sysv.attach(ReadOnly).unwrap_err();
    assert!(err.to_string().contains(&sysv.to_string()), "{err}");
    posix.remove().unwrap();
}

/// A process with a read-only attachment watches an atomic that another
/// process publishes: `load_u64` through `ReadOnly` sees each store.
#[test]
fn read_only_attachments_load_atomics_another_process_stores() {
    let _serial = one_at_a_time();
    for key in unique_keys() {
        let _cleanup = Cleanup(key.clone());
        let segment = Segment::create(&key, 4096, Mode::OWNER_ONLY).unwrap();
        let writer = segment.attach(ReadWrite).unwrap();
        let word = writer.atomic_u64(512).unwrap();
        let mut watcher = Peer::spawn("watcher", &key.to_string(), None);
        assert_eq!(watcher.expect_line(), "watching");
        for value in [0x1234_5678_9abc_def0u64, u64::MAX, 0] {
            // Release: pairs with the watcher's Acquire load.
            word.store(value, Ordering::Release);
            watcher.send("load 512");
            assert_eq!(watcher.expect_line(), format!("{value:#x}"), "{key}");
        }
        watcher.finish();
        drop(writer);
        segment.remove().unwrap();
    }
}

/// Keys at or above 0x80000000 (negative as C's `key_t`) are keys like any
/// other: created, found, listed and printed without a cast.
#[test]
fn keys_with_the_top_bit_set_are_ordinary_keys() {
    let _serial = one_at_a_time();
    let Key::SysV(low) = unique_keys()[0].clone() else {
        unreachable!("the first unique key is System V")
    };
    let key = Key::SysV(low | 0x8000_0000);
    let _cleanup = Cleanup(key.clone());
    let created = Segment::create(&key, 100, Mode::OWNER_ONLY).unwrap();
    let found = Segment::open(&key).unwrap();
    assert_eq!((found.id(), found.key()), (created.id(), key.clone()));
    assert_eq!(key.to_string().parse::<Key>().unwrap(), key);
    assert!(key.to_string().starts_with("0x"), "{key}");
    let listed = list().unwrap();
    let row = listed.iter().find(|s| s.id == created.id()).unwrap();
    assert_eq!(row.key, key, "the kernel's key, read back from /proc");
    assert_eq!(created.stat().unwrap().key, key);
    created.remove().unwrap();
}

#[test]
fn list_shows_both_kinds_with_their_state() {
    let _serial = one_at_a_time();
    let keys = unique_keys();
    let _cleanups = keys.clone().map(Cleanup);
    let sysv = Segment::create(&keys[0], 5000, Mode::new(0o640)).unwrap();
    let posix = Segment::create(&keys[1], 6000, Mode::new(0o604)).unwrap();
    let held = posix.attach(ReadOnly).unwrap();
    let all = list().unwrap();
    let s = all.iter().find(|s| s.id == sysv.id()).unwrap();
    assert_eq!(
        (s.kind, &s.key, s.size, s.mode, s.nattch),
        (Kind::SysV, &keys[0], 5000, Mode::new(0o640), 0)
    );
    let p = all.iter().find(|s| s.key == keys[1]).unwrap();
    assert_eq!(
        (p.kind, p.size, p.mode, p.nattch, p.id),
        (Kind::Posix, 6000, Mode::new(0o604), 1, None)
    );
    assert_eq!(p.attachers[0].pid, std::process::id());
    drop(held);
    sysv.remove().unwrap();
    posix.remove().unwrap();
}

#[test]
fn ftok_matches_the_c_library() {
    let _serial = one_at_a_time();
    let dir = std::env::temp_dir();
    let script = format!(
        "import ctypes; print(ctypes.CDLL(None).ftok(b'{}', 0x53))",
        dir.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_c: i32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Key::ftok(&dir, 0x53).unwrap(), Key::SysV(from_c as u32));
}
