//! Attacks through `/dev/shm` on the `shmkit` command (issue 17,
//! docs/SECURITY.md): the attacker (uid 65534) puts a symlink to a file of
//! the victim's, a dangling symlink, a FIFO, a directory or a socket (and
//! root a bind mount from another file system) at the name of every
//! command that opens one, or squats a ring or segment first. The victim
//! (root, or uid 65533) must get a clear error within a watchdog's 20 s,
//! no file outside `/dev/shm` may change, and nothing the victim sends may
//! reach the attacker. `ls` and `gc` must skip the traps.
//!
//! Each scenario runs in a child with its own mount namespace and a private
//! tmpfs at `/dev/shm` (the library's tests/sandbox), so nothing is left
//! behind. Needs root; otherwise the tests say so and pass.

#[path = "../../shmkit/tests/sandbox/mod.rs"]
mod sandbox;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SHMKIT: &str = env!("CARGO_BIN_EXE_shmkit");
/// The environment variables that make this test binary a scenario.
const ROLE: &str = "SHMKIT_ATTACK_ROLE";
const VICTIM: &str = "SHMKIT_ATTACK_VICTIM";
const ATTACKER: (u32, u32) = (65534, 65534);
const OTHER_USER: u32 = 65533;
const SECRET: &str = "victim-secret-9b2e";
/// How long one command may take before it counts as a hang.
const WATCHDOG: Duration = Duration::from_secs(20);

/// The entry point of the scenarios; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    if let Err(why) = sandbox::enter_private_dev_shm() {
        println!("@@ skipped: {why}");
        return;
    }
    eprintln!("kernel protections: {}", sandbox::protections());
    match role.as_str() {
        "attacks" => attacks(std::env::var(VICTIM).unwrap().parse().unwrap()),
        "group" => group_sharing(),
        other => panic!("unknown role {other}"),
    }
    println!("@@ done");
}

#[test]
fn cli_attacks_on_a_root_victim_get_clear_errors_and_change_nothing() {
    run_scenario("attacks", 0);
}

#[test]
fn cli_attacks_on_another_unprivileged_user_get_clear_errors_and_change_nothing() {
    run_scenario("attacks", OTHER_USER);
}

#[test]
fn cli_two_users_in_a_group_share_a_ring_and_a_third_is_refused() {
    run_scenario("group", 0);
}

fn run_scenario(role: &str, victim: u32) {
    if !is_root() {
        eprintln!("skipped: needs root to set uids and mount a private /dev/shm");
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(VICTIM, victim.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(skipped) = stdout.lines().find(|l| l.starts_with("@@ skipped")) {
        eprintln!("{}", &skipped[3..]);
        return;
    }
    assert!(
        output.status.success() && stdout.contains("@@ done"),
        "scenario {role} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `program args` as `user` (uid, gid; `None` for root) with `input`
/// on stdin; kills it and fails if it runs longer than the watchdog allows.
fn run_as(user: Option<(u32, u32)>, program: &str, args: &[&str], input: &str) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = user {
        // std clears the supplementary groups when root sets a uid.
        command.gid(gid).uid(uid);
    }
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    std::thread::spawn(move || {
        // A command that fails before reading closes the pipe: fine.
        let _ = stdin.write_all(input.as_bytes());
    });
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output().unwrap()));
    match finished.recv_timeout(WATCHDOG) {
        Ok(output) => output,
        Err(_) => {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("{program} {args:?} still running after {WATCHDOG:?}");
        }
    }
}

fn shmkit_as(user: Option<(u32, u32)>, args: &[&str], input: &str) -> Output {
    run_as(user, SHMKIT, args, input)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that the command failed with exit status 1 and a message on
/// stderr containing every one of `words`; returns stderr.
#[track_caller]
fn failed_saying(output: &Output, words: &[&str], what: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{what}: {word:?} not in {stderr:?}");
    }
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr
}

/// The commands that open a name, with where their file is: a ring's
/// segment (`ring`) or a plain POSIX segment.
const COMMANDS: [(&str, &[&str], bool); 8] = [
    ("send", &["send", "NAME"], true),
    ("recv", &["recv", "NAME", "--timeout", "1"], true),
    ("stat-ring", &["stat", "--ring", "NAME"], true),
    ("stat", &["stat", "/NAME"], false),
    ("read", &["read", "/NAME"], false),
    ("write", &["write", "/NAME"], false),
    ("create", &["create", "/NAME", "--size", "4096"], false),
    ("rm", &["rm", "/NAME"], false),
];

#[derive(Clone, Copy, Debug)]
enum Trap {
    SymlinkToVictimFile,
    DanglingSymlink,
    Fifo,
    Directory,
    Socket,
    ForeignFileSystem,
}

fn found_word(trap: Trap) -> &'static str {
    match trap {
        Trap::SymlinkToVictimFile | Trap::DanglingSymlink => "is a symbolic link",
        Trap::Fifo => "is a FIFO",
        Trap::Directory => "is a directory",
        Trap::Socket => "is a socket",
        Trap::ForeignFileSystem => "not tmpfs",
    }
}

fn attacks(victim_uid: u32) {
    let victim = (victim_uid != 0).then_some((victim_uid, victim_uid));
    let outside = sandbox::OutsideDir::new(&format!("cli-{victim_uid}"));
    let victim_file = outside.0.join("victim-file");
    std::fs::write(&victim_file, b"the victim's own data\n").unwrap();
    std::os::unix::fs::chown(&victim_file, Some(victim_uid), Some(victim_uid)).unwrap();
    let before = std::fs::metadata(&victim_file).unwrap();
    let dangling = outside.0.join("dangling-target");
    let foreign_file = outside.0.join("file-on-disk");
    std::fs::write(&foreign_file, vec![0u8; 4096]).unwrap();
    std::fs::set_permissions(
        &foreign_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();

    let traps = [
        Trap::SymlinkToVictimFile,
        Trap::DanglingSymlink,
        Trap::Fifo,
        Trap::Directory,
        Trap::Socket,
        Trap::ForeignFileSystem,
    ];
    let mut mounts = Vec::new();
    for (i, trap) in traps.into_iter().enumerate() {
        for (tag, args, ring) in COMMANDS {
            let name = format!("t{i}-{tag}");
            let path = if ring {
                format!("/dev/shm/shmkit.ring.{name}")
            } else {
                format!("/dev/shm/{name}")
            };
            let set_up = match trap {
                Trap::SymlinkToVictimFile => run_as(
                    Some(ATTACKER),
                    "ln",
                    &["-s", victim_file.to_str().unwrap(), &path],
                    "",
                ),
                Trap::DanglingSymlink => run_as(
                    Some(ATTACKER),
                    "ln",
                    &["-s", dangling.to_str().unwrap(), &path],
                    "",
                ),
                Trap::Fifo => run_as(Some(ATTACKER), "mkfifo", &[&path], ""),
                Trap::Directory => run_as(Some(ATTACKER), "mkdir", &[&path], ""),
                Trap::Socket => run_as(
                    Some(ATTACKER),
                    "python3",
                    &[
                        "-c",
                        "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
                        &path,
                    ],
                    "",
                ),
                Trap::ForeignFileSystem => {
                    std::fs::write(&path, b"").unwrap();
                    rustix::mount::mount_bind(&foreign_file, &path).unwrap();
                    mounts.push(path.clone());
                    run_as(None, "true", &[], "")
                }
            };
            assert!(
                set_up.status.success(),
                "{trap:?}: {}",
                text(&set_up.stderr)
            );
            let args: Vec<String> = args.iter().map(|a| a.replace("NAME", &name)).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = shmkit_as(victim, &args, &format!("{SECRET}\n"));
            let what = format!("{trap:?} then shmkit {args:?}");
            failed_saying(
                &output,
                &["not a shared-memory segment", found_word(trap)],
                &what,
            );
            assert!(output.stdout.is_empty(), "{what}: {}", text(&output.stdout));
        }
    }
    // Listing skips every trap without opening it.
    for args in [&["ls"][..], &["ls", "--json"], &["gc"]] {
        let output = shmkit_as(victim, args, "");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(!stdout.contains("t0-"), "{args:?} listed a trap: {stdout}");
    }
    for path in mounts {
        rustix::mount::unmount(&path, rustix::mount::UnmountFlags::empty()).unwrap();
    }

    // A squatted ring: the attacker's own stream, mode 0666.
    let output = shmkit_as(
        Some(ATTACKER),
        &["send", "squat", "--mode", "666"],
        "forged by the attacker\n",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = shmkit_as(victim, &["recv", "squat", "--timeout", "1"], "");
    failed_saying(
        &output,
        &["ring squat belongs to user", "uid 65534", "--trust"],
        "recv of a squatted ring",
    );
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let output = shmkit_as(victim, &["send", "squat"], &format!("{SECRET}\n"));
    failed_saying(
        &output,
        &["uid 65534", "--trust"],
        "send to a squatted ring",
    );
    // Trusting the owner is the way to join it anyway.
    let output = shmkit_as(
        victim,
        &["recv", "squat", "--trust", "65534", "--timeout", "5"],
        "",
    );
    assert_eq!(text(&output.stdout), "forged by the attacker\n");

    // A squatted ring name holding a plain segment the attacker can read.
    let output = shmkit_as(
        Some(ATTACKER),
        &[
            "create",
            "/shmkit.ring.squat2",
            "--size",
            "8192",
            "--mode",
            "666",
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = shmkit_as(victim, &["send", "squat2"], &format!("{SECRET}\n"));
    failed_saying(&output, &["uid 65534"], "send to a squatted segment");
    let output = shmkit_as(Some(ATTACKER), &["read", "/shmkit.ring.squat2"], "");
    assert!(output.status.success());
    assert!(!text(&output.stdout).contains(SECRET));

    // A squatted plain segment: `create` says whose it is.
    let output = shmkit_as(
        Some(ATTACKER),
        &["create", "/squat3", "--size", "4096", "--mode", "666"],
        "",
    );
    assert!(output.status.success());
    let output = shmkit_as(victim, &["create", "/squat3", "--size", "4096"], "");
    assert!(output.status.success());
    assert!(
        text(&output.stderr).contains("belongs to uid 65534"),
        "{}",
        text(&output.stderr)
    );

    let after = std::fs::metadata(&victim_file).unwrap();
    assert_eq!(
        std::fs::read(&victim_file).unwrap(),
        b"the victim's own data\n"
    );
    assert_eq!(
        (after.size(), after.mtime(), after.mtime_nsec()),
        (before.size(), before.mtime(), before.mtime_nsec())
    );
    assert!(!dangling.exists(), "a dangling symlink was followed");
    assert_eq!(std::fs::read(&foreign_file).unwrap(), vec![0u8; 4096]);
    assert_eq!(
        sandbox::files_containing(SECRET.as_bytes()),
        Vec::<String>::new()
    );
}

/// The README's recipe: A (uid 65532) sends on a ring for group 65530
/// (mode 0660); C (uid 65534, not in the group) is refused by the kernel;
/// B (uid 65531, in the group) is refused until it trusts the group, then
/// receives. The owner removes the ring.
fn group_sharing() {
    const GROUP: u32 = 65530;
    let a = Some((65532, GROUP));
    let b = Some((65531, GROUP));
    let group = GROUP.to_string();
    let trust = format!("group:{GROUP}");
    let output = shmkit_as(
        a,
        &["send", "shared", "--mode", "660", "--group", &group],
        "hello, group\n",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let meta = std::fs::metadata("/dev/shm/shmkit.ring.shared").unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65532, GROUP, 0o660)
    );

    let output = shmkit_as(
        Some(ATTACKER),
        &["recv", "shared", "--trust", &trust, "--timeout", "1"],
        "",
    );
    failed_saying(&output, &["permission denied"], "an outsider's recv");
    let output = shmkit_as(b, &["recv", "shared", "--timeout", "1"], "");
    failed_saying(
        &output,
        &[
            "ring shared belongs to uid 65532",
            "--trust 65532",
            "--trust group:65530",
        ],
        "a member's recv without --trust",
    );
    let output = shmkit_as(
        b,
        &["recv", "shared", "--trust", &trust, "--timeout", "5"],
        "",
    );
    assert_eq!(
        text(&output.stdout),
        "hello, group\n",
        "{}",
        text(&output.stderr)
    );
    assert!(output.status.success());
    // Closed and read to the end, but /dev/shm is sticky: only the owner
    // (or root) may remove the ring's segment, so B's attempt to leave it
    // removed failed, and the owner removes it.
    let path = std::path::Path::new("/dev/shm/shmkit.ring.shared");
    assert!(path.exists());
    let output = shmkit_as(a, &["rm", "/shmkit.ring.shared"], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!path.exists());
}
