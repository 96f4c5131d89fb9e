//! Attacks through `/dev/shm` on the library (issue 17, docs/SECURITY.md).
//!
//! An attacker running as uid 65534 puts a symlink to a file of the
//! victim's, a dangling symlink, a FIFO, a directory, a socket, or a
//! squatted ring, topic, heap or segment at a name the victim is about to create
//! or open; root adds a bind mount of a file on another file system and a
//! hard link to another segment of the victim's. The victim, running as
//! root or as uid 65533, must get a clear error at once (a watchdog ends it
//! after 20 s: a hang fails the test), no file outside `/dev/shm` may
//! change, and nothing the victim sends may reach the attacker.
//!
//! Every scenario runs in a private mount namespace with its own tmpfs at
//! `/dev/shm` (tests/sandbox), so nothing is left behind. Needs root (to
//! set uids and mount); otherwise the tests say so and pass.

mod processes;
mod sandbox;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use processes::{args, is_root, next_command, report, Peer, ROLE};
use shmkit::offset::ManagedSegment;
use shmkit::ring::{Consumer, Options, Producer};
use shmkit::{Error, Key, Mode, ReadWrite, Segment, Trust};

const ATTACKER: (u32, u32) = (65534, 65534);
const OTHER_USER: (u32, u32) = (65533, 65533);
/// What the victim sends or stores; it must never reach the attacker.
const SECRET: &[u8] = b"victim-secret-4f1c";
/// How long one victim operation may take before it counts as a hang.
const WATCHDOG: Duration = Duration::from_secs(20);

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "sandbox-attacks" => attacks(args().parse().unwrap()),
        "sandbox-group" => group_sharing(),
        "attacker" => attacker(),
        "victim" | "member" => victim(),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn attacks_on_a_root_victim_get_clear_errors_and_change_nothing() {
    run_sandbox("sandbox-attacks", "0");
}

#[test]
fn attacks_on_another_unprivileged_user_get_clear_errors_and_change_nothing() {
    run_sandbox("sandbox-attacks", &OTHER_USER.0.to_string());
}

#[test]
fn two_users_in_a_group_share_a_ring_and_a_third_is_refused() {
    run_sandbox("sandbox-group", "");
}

fn run_sandbox(role: &str, args: &str) {
    if !is_root() {
        eprintln!("skipped: needs root to set uids and mount a private /dev/shm");
        return;
    }
    let mut sandbox = Peer::spawn(role, args, None);
    match sandbox.expect_line().as_str() {
        "done" => {}
        skipped if skipped.starts_with("skipped") => eprintln!("{skipped}"),
        other => panic!("the scenario reported {other}"),
    }
    sandbox.finish();
}

/// What the attacker puts at a name before the victim comes.
#[derive(Clone, Copy, Debug)]
enum Attack {
    SymlinkToVictimFile,
    DanglingSymlink,
    Fifo,
    Directory,
    Socket,
    /// Root only: a file of another file system bind-mounted at the name.
    ForeignFileSystem,
    /// Root only (fs.protected_hardlinks stops users): a second name of
    /// another of the victim's own segments.
    HardLink,
}

/// A library call that creates or opens a name, as the victim makes it.
const ENTRY_POINTS: [&str; 7] = [
    "producer",
    "consumer",
    "status",
    "open",
    "create",
    "open-or-create",
    "managed",
];

/// The word the error must contain for each attack.
fn found_word(attack: Attack) -> &'static str {
    match attack {
        Attack::SymlinkToVictimFile | Attack::DanglingSymlink => "symbolic link",
        Attack::Fifo => "FIFO",
        Attack::Directory => "directory",
        Attack::Socket => "socket",
        Attack::ForeignFileSystem => "not tmpfs",
        Attack::HardLink => "hard links",
    }
}

/// The file a name leads to: a ring's segment for the ring entry points.
fn path_for(entry: &str, name: &str) -> String {
    match entry {
        "producer" | "consumer" | "status" => format!("/dev/shm/shmkit.ring.{name}"),
        _ => format!("/dev/shm/{name}"),
    }
}

/// The scenario, as root in a private /dev/shm: every attack against every
/// entry point, then the squatters, against a victim of uid `victim_uid`.
fn attacks(victim_uid: u32) {
    if let Err(why) = sandbox::enter_private_dev_shm() {
        report(&format!("skipped: {why}"));
        return;
    }
    eprintln!("kernel protections: {}", sandbox::protections());
    let outside = sandbox::OutsideDir::new(&format!("lib-{victim_uid}"));
    let victim_file = outside.0.join("victim-file");
    std::fs::write(&victim_file, b"the victim's own data\n").unwrap();
    std::os::unix::fs::chown(&victim_file, Some(victim_uid), Some(victim_uid)).unwrap();
    let foreign_file = outside.0.join("file-on-disk");
    std::fs::write(&foreign_file, vec![0u8; 4096]).unwrap();
    std::fs::set_permissions(
        &foreign_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let dangling_target = outside.0.join("dangling-target");
    let before = std::fs::metadata(&victim_file).unwrap();

    let mut attacker = Peer::spawn("attacker", "", Some(ATTACKER));
    let victim_ids = (victim_uid != 0).then_some((victim_uid, victim_uid));
    let mut victim = Peer::spawn("victim", "", victim_ids);
    // A segment of the victim's own, for the hard link.
    let own = "victim-own";
    assert_eq!(ask(&mut victim, &format!("create {own}")), "ok");
    let made = std::fs::metadata(format!("/dev/shm/{own}")).unwrap();
    assert_eq!(
        made.uid(),
        victim_uid,
        "the victim runs as uid {victim_uid}"
    );

    let attacks = [
        Attack::SymlinkToVictimFile,
        Attack::DanglingSymlink,
        Attack::Fifo,
        Attack::Directory,
        Attack::Socket,
        Attack::ForeignFileSystem,
        Attack::HardLink,
    ];
    let mut mounts = Vec::new();
    for (i, attack) in attacks.into_iter().enumerate() {
        for entry in ENTRY_POINTS {
            let name = format!("a{i}-{entry}");
            let path = path_for(entry, &name);
            match attack {
                Attack::SymlinkToVictimFile => ask_ok(
                    &mut attacker,
                    &format!("symlink {path} {}", victim_file.display()),
                ),
                Attack::DanglingSymlink => ask_ok(
                    &mut attacker,
                    &format!("symlink {path} {}", dangling_target.display()),
                ),
                Attack::Fifo => ask_ok(&mut attacker, &format!("fifo {path}")),
                Attack::Directory => ask_ok(&mut attacker, &format!("dir {path}")),
                Attack::Socket => ask_ok(&mut attacker, &format!("socket {path}")),
                Attack::ForeignFileSystem => {
                    std::fs::write(&path, b"").unwrap();
                    rustix::mount::mount_bind(&foreign_file, &path).unwrap();
                    mounts.push(path.clone());
                }
                Attack::HardLink => {
                    std::fs::hard_link(format!("/dev/shm/{own}"), &path).unwrap();
                }
            }
            let answer = ask(&mut victim, &format!("{entry} {name}"));
            let (variant, word) = if entry == "create" {
                // An exclusive create just finds the name taken.
                ("err AlreadyExists ", "already exists")
            } else {
                ("err NotASegment ", found_word(attack))
            };
            assert!(
                answer.starts_with(variant) && answer.contains(word),
                "{attack:?} then {entry}: expected {variant}… {word}, got {answer}"
            );
        }
    }
    for path in mounts {
        rustix::mount::unmount(&path, rustix::mount::UnmountFlags::empty()).unwrap();
    }

    // Squatters: the attacker makes the ring, heap or segment first, with
    // mode 0666 so that the victim could use it.
    ask_ok(&mut attacker, "ring-producer squat-p");
    for entry in ["producer", "consumer"] {
        let answer = ask(&mut victim, &format!("{entry} squat-p"));
        assert!(
            answer.starts_with("err UntrustedOwner") && answer.contains("uid 65534"),
            "{entry} of a squatted ring: {answer}"
        );
    }
    ask_ok(&mut attacker, "ring-consumer squat-c");
    let answer = ask(&mut victim, "producer squat-c");
    assert!(answer.starts_with("err UntrustedOwner"), "{answer}");
    assert_eq!(ask(&mut attacker, "drain squat-c"), "received 0");
    ask_ok(&mut attacker, "topic-publisher squat-t");
    for entry in ["publisher", "subscriber"] {
        let answer = ask(&mut victim, &format!("{entry} squat-t"));
        assert!(
            answer.starts_with("err UntrustedOwner") && answer.contains("uid 65534"),
            "{entry} of a squatted topic: {answer}"
        );
    }
    ask_ok(&mut attacker, "heap squat-heap");
    let answer = ask(&mut victim, "managed squat-heap");
    assert!(answer.starts_with("err UntrustedOwner"), "{answer}");
    ask_ok(&mut attacker, "segment squat-segment");
    assert_eq!(
        ask(&mut victim, "open-or-create squat-segment"),
        "foreign uid 65534 (not written)"
    );

    // A squatted System V key (in the scenario's own IPC namespace): no
    // name to trick, but `open_or_create` says whose segment it got.
    ask_ok(&mut attacker, "sysv-segment 0x5ec00017");
    assert_eq!(
        ask(&mut victim, "open-or-create 0x5ec00017"),
        "foreign uid 65534 (not written)"
    );

    attacker.finish();
    victim.finish();
    let after = std::fs::metadata(&victim_file).unwrap();
    assert_eq!(
        std::fs::read(&victim_file).unwrap(),
        b"the victim's own data\n",
        "the victim's file outside /dev/shm changed"
    );
    assert_eq!(
        (after.size(), after.mtime(), after.mtime_nsec(), after.ino()),
        (
            before.size(),
            before.mtime(),
            before.mtime_nsec(),
            before.ino()
        )
    );
    assert!(!dangling_target.exists(), "a dangling symlink was followed");
    assert_eq!(
        std::fs::read(&foreign_file).unwrap(),
        vec![0u8; 4096],
        "the file on another file system was written"
    );
    assert_eq!(sandbox::files_containing(SECRET), Vec::<String>::new());
    report("done");
}

/// The attacker (uid 65534): makes what each command says, reports `ok`,
/// and keeps every ring, heap and socket it made until its input ends.
fn attacker() {
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut consumers = std::collections::HashMap::new();
    let squat_mode = || Options::default().mode(Mode::new(0o666));
    loop {
        let command = next_command();
        if command.is_empty() {
            return;
        }
        let words: Vec<&str> = command.split(' ').collect();
        match words[..] {
            ["symlink", path, target] => std::os::unix::fs::symlink(target, path).unwrap(),
            ["fifo", path] => rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o666),
                0,
            )
            .unwrap(),
            ["dir", path] => std::fs::create_dir(path).unwrap(),
            ["socket", path] => held.push(Box::new(
                std::os::unix::net::UnixListener::bind(path).unwrap(),
            )),
            ["ring-producer", name] => {
                let mut producer = Producer::open_with(name, &squat_mode()).unwrap();
                producer.send(b"forged by the attacker").unwrap();
                held.push(Box::new(producer));
            }
            ["ring-consumer", name] => {
                consumers.insert(
                    name.to_owned(),
                    Consumer::open_with(name, &squat_mode()).unwrap(),
                );
            }
            ["drain", name] => {
                let consumer = consumers.get_mut(name).unwrap();
                let mut received = 0;
                let mut buf = vec![0; consumer.max_message()];
                loop {
                    match consumer.try_recv(&mut buf) {
                        Ok(n) => assert!(!buf[..n].windows(SECRET.len()).any(|w| w == SECRET)),
                        Err(Error::Empty { .. }) => break,
                        Err(err) => panic!("attacker: {err}"),
                    }
                    received += 1;
                }
                report(&format!("received {received}"));
                continue;
            }
            ["topic-publisher", name] => {
                let options = shmkit::topic::Options::default().mode(Mode::new(0o666));
                let mut publisher = shmkit::topic::Publisher::open_with(name, &options).unwrap();
                publisher.send(b"forged by the attacker").unwrap();
                held.push(Box::new(publisher));
            }
            ["heap", name] => {
                let key = Key::posix(&format!("/{name}")).unwrap();
                held.push(Box::new(
                    ManagedSegment::create(&key, 1 << 16, Mode::new(0o666)).unwrap(),
                ));
            }
            ["segment", name] => {
                let key = Key::posix(&format!("/{name}")).unwrap();
                Segment::create(&key, 4096, Mode::new(0o666)).unwrap();
            }
            ["sysv-segment", key] => {
                Segment::create(&key.parse().unwrap(), 4096, Mode::new(0o666)).unwrap();
            }
            _ => panic!("attacker: unknown command {command}"),
        }
        report("ok");
    }
}

/// A victim (root, or uid 65533), or a group member: runs each command,
/// reports `ok …`, `foreign …` or `err VARIANT message`. Each command must
/// end within the watchdog's time.
fn victim() {
    loop {
        let command = next_command();
        if command.is_empty() {
            return;
        }
        let (entry, name) = command.split_once(' ').unwrap();
        let (done, watched) = std::sync::mpsc::channel::<()>();
        let watched_command = command.clone();
        let watchdog = std::thread::spawn(move || {
            if watched.recv_timeout(WATCHDOG).is_err() {
                eprintln!("victim: {watched_command} still running after {WATCHDOG:?}");
                std::process::exit(3);
            }
        });
        let answer = match run_entry(entry, name) {
            Ok(answer) => answer,
            Err(err) => {
                let variant = format!("{err:?}");
                let variant = variant.split([' ', '(', '{']).next().unwrap().to_owned();
                format!("err {variant} {err}")
            }
        };
        done.send(()).unwrap();
        watchdog.join().unwrap();
        report(&answer);
    }
}

/// Producers a group member keeps until it exits.
static HELD: std::sync::Mutex<Vec<Producer>> = std::sync::Mutex::new(Vec::new());

fn run_entry(entry: &str, name: &str) -> shmkit::Result<String> {
    // A name that parses as a key (0x…) is a System V key.
    let key = || match name.parse::<Key>() {
        Ok(key @ Key::SysV(_)) => Ok(key),
        _ => Key::posix(&format!("/{name}")),
    };
    match entry {
        "producer" => Producer::open(name)?.send(SECRET)?,
        "consumer" => {
            let mut consumer = Consumer::open(name)?;
            let mut buf = vec![0; consumer.max_message()];
            match consumer.try_recv(&mut buf) {
                Ok(n) => return Ok(format!("received {n} bytes")),
                Err(Error::Empty { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        "publisher" => shmkit::topic::Publisher::open(name)?.send(SECRET)?,
        "subscriber" => {
            let mut subscriber = shmkit::topic::Subscriber::open(name)?;
            let mut buf = vec![0; subscriber.max_message()];
            if subscriber.try_recv(&mut buf).is_ok() {
                return Ok("received a forged message".to_owned());
            }
        }
        "status" => drop(shmkit::ring::status(name)?),
        "open" => Segment::open(&key()?)?
            .attach(ReadWrite)?
            .write_at(0, SECRET)?,
        "create" => drop(Segment::create(&key()?, 4096, Mode::OWNER_ONLY)?),
        "open-or-create" => {
            let opened = Segment::open_or_create(&key()?, 4096, Mode::OWNER_ONLY)?;
            if !opened.is_mine() {
                return Ok(format!("foreign uid {} (not written)", opened.owner.uid));
            }
            opened.segment.attach(ReadWrite)?.write_at(0, SECRET)?;
        }
        "managed" => {
            let heap =
                ManagedSegment::open_or_create(&key()?, 1 << 16, Mode::OWNER_ONLY, &Trust::me())?;
            heap.text("secret")?
                .push_str(std::str::from_utf8(SECRET).unwrap())?;
        }
        "join-group-ring" => {
            // name: RING GID; a member trusting the group receives one message.
            let (ring, gid) = name.split_once(' ').unwrap();
            let options = Options::default().trust(Trust::me().group(gid.parse().unwrap()));
            let mut consumer = Consumer::open_with(ring, &options)?;
            let mut buf = vec![0; consumer.max_message()];
            let n = consumer.recv_timeout(&mut buf, WATCHDOG / 2)?;
            return Ok(format!("received {}", String::from_utf8_lossy(&buf[..n])));
        }
        "join-untrusting" => drop(Consumer::open(name)?),
        "produce-for-group" => {
            let (ring, gid) = name.split_once(' ').unwrap();
            let options = Options::default()
                .mode(Mode::new(0o660))
                .group(gid.parse().unwrap());
            let mut producer = Producer::open_with(ring, &options)?;
            producer.send(b"hello, group")?;
            // Held open (not closed) until this process exits.
            HELD.lock().unwrap().push(producer);
        }
        other => panic!("victim: unknown entry point {other}"),
    }
    Ok("ok".to_owned())
}

/// Sends `command` and returns the answer.
fn ask(peer: &mut Peer, command: &str) -> String {
    peer.send(command);
    peer.expect_line()
}

fn ask_ok(peer: &mut Peer, command: &str) {
    assert_eq!(ask(peer, command), "ok", "{command}");
}

/// Group sharing (README recipe): A (uid 65532) makes ring `shared` for
/// group 65530 with mode 0660; B (uid 65531, same group) joins it by
/// trusting the group and receives; C (uid 65534, not in the group) is
/// refused by the kernel; B without trusting the group is refused by
/// shmkit.
fn group_sharing() {
    const GROUP: u32 = 65530;
    if let Err(why) = sandbox::enter_private_dev_shm() {
        report(&format!("skipped: {why}"));
        return;
    }
    let mut a = Peer::spawn("member", "", Some((65532, GROUP)));
    let mut b = Peer::spawn("member", "", Some((65531, GROUP)));
    let mut c = Peer::spawn("member", "", Some(ATTACKER));
    assert_eq!(
        ask(&mut a, &format!("produce-for-group shared {GROUP}")),
        "ok"
    );
    let meta = std::fs::metadata("/dev/shm/shmkit.ring.shared").unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65532, GROUP, 0o660)
    );

    let refused = ask(&mut c, &format!("join-group-ring shared {GROUP}"));
    assert!(refused.starts_with("err PermissionDenied"), "{refused}");
    let refused = ask(&mut c, "producer shared");
    assert!(refused.starts_with("err PermissionDenied"), "{refused}");
    let refused = ask(&mut b, "join-untrusting shared");
    assert!(
        refused.starts_with("err UntrustedOwner") && refused.contains("uid 65532"),
        "{refused}"
    );
    assert_eq!(
        ask(&mut b, &format!("join-group-ring shared {GROUP}")),
        "received hello, group"
    );
    for peer in [a, b, c] {
        peer.finish();
    }
    report("done");
}

#[test]
fn errors_say_what_was_found_and_whom_to_trust() {
    let found = Error::NotASegment {
        segment: "/jobs".to_owned(),
        found: "a FIFO (named pipe)".to_owned(),
    };
    assert!(
        found.to_string().contains("/dev/shm/jobs is a FIFO"),
        "{found}"
    );
    let untrusted = Error::UntrustedOwner {
        segment: "ring jobs".to_owned(),
        uid: 65534,
        gid: 65534,
        me: 0,
    };
    let text = untrusted.to_string();
    assert!(text.starts_with("ring jobs belongs to uid 65534"), "{text}");
    assert!(text.contains("Options::trust"), "{text}");
}
