//! A topic's segment from birth to removal: a creator killed while it makes
//! topics leaves nothing half made, a half-made file someone else left at a
//! topic's name is replaced by the next opener and collected by gc, a topic
//! its last member may not remove is collected by gc as finished, and a
//! truncated topic gives `Error::Truncated` to its members, never a crash.
//!
//! Children are this test binary in a role (see `processes`).

mod processes;

use std::time::Duration;

use shmkit::ring::{Action, Reason, Removal, Scope};
use shmkit::topic::{self, Options, Publisher, Subscriber};
use shmkit::{Error, Mode, Segment, Trust};

use processes::{
    args, next_command, report, topic_exists, topic_key, unique_ring_name, Peer, TopicCleanup,
    Watchdog, ROLE,
};

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = args();
    match role.as_str() {
        // Makes and removes the topic over and over (each publisher is its
        // only member, so its drop removes it), until killed.
        "create-forever" => {
            for round in 0u64.. {
                drop(Publisher::open_with(&name, &small()).unwrap());
                if round == 0 {
                    report("looping");
                }
            }
        }
        // Maps the file at the topic's name until told to go.
        "map-and-hold" => {
            let segment = Segment::open(&topic_key(&name)).unwrap();
            let _mapping = segment.attach(shmkit::ReadWrite).unwrap();
            report("mapped");
            next_command();
        }
        // Publishes one message, then leaves when told to.
        "publish-then-leave" => {
            let options = shared().trust(Trust::me().user(0));
            let mut publisher = Publisher::open_with(&name, &options).unwrap();
            publisher.send(b"from another user").unwrap();
            report("published");
            next_command();
            drop(publisher);
            report("left");
        }
        other => panic!("unknown role {other}"),
    }
}

fn small() -> Options {
    Options::default()
        .capacity(4096)
        .max_publishers(2)
        .max_subscribers(4)
}

/// [`small`], readable and writable by every user.
fn shared() -> Options {
    small().mode(Mode::new(0o666))
}

/// The path of topic `name`'s file in /dev/shm.
fn path(name: &str) -> std::path::PathBuf {
    match topic_key(name) {
        shmkit::Key::Posix(posix) => posix.path(),
        shmkit::Key::SysV(_) => unreachable!("topics are POSIX segments"),
    }
}

#[test]
fn a_creator_killed_while_making_topics_leaves_nothing_half_made() {
    let _watchdog = Watchdog::new("creator killed mid-creation", Duration::from_secs(120));
    for _ in 0..5 {
        let name = unique_ring_name("topic-killed-creator");
        let _cleanup = TopicCleanup(name.clone());
        let mut creator = Peer::spawn("create-forever", &name, None);
        assert_eq!(creator.expect_line(), "looping");
        creator.kill(true);
        // Whatever it was doing, the name holds a whole topic or nothing.
        if topic_exists(&name) {
            for garbage in topic::collect_garbage(Scope::Name(&name), Action::DryRun).unwrap() {
                assert!(
                    matches!(garbage.reason, Reason::Abandoned | Reason::Finished),
                    "{:?}",
                    garbage.reason
                );
            }
        }
        let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
        let mut publisher = Publisher::open_with(&name, &small()).unwrap();
        publisher.send(b"after the kill").unwrap();
        assert_eq!(&*subscriber.read().unwrap(), b"after the kill");
        drop((subscriber, publisher));
        assert!(!topic_exists(&name), "its last member removes it");
    }
}

#[test]
fn a_half_made_file_at_a_topics_name_is_replaced_by_its_opener() {
    for size in [0u64, 1 << 16] {
        let name = unique_ring_name("topic-half-made");
        let _cleanup = TopicCleanup(name.clone());
        // What another program (or an old creator) may leave: no magic.
        let file = std::fs::File::create(path(&name)).unwrap();
        file.set_len(size).unwrap();
        drop(file);
        let mut publisher = Publisher::open_with(&name, &small()).unwrap();
        let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
        publisher.send(b"whole").unwrap();
        assert_eq!(&*subscriber.read().unwrap(), b"whole");
    }
}

#[test]
fn a_half_made_file_another_process_maps_is_corrupt_and_stays() {
    let name = unique_ring_name("topic-half-made-mapped");
    let _cleanup = TopicCleanup(name.clone());
    let key = topic_key(&name);
    drop(Segment::create(&key, 1 << 16, Mode::OWNER_ONLY).unwrap());
    let mut mapper = Peer::spawn("map-and-hold", &name, None);
    assert_eq!(mapper.expect_line(), "mapped");
    let err = Publisher::open_with(&name, &small()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(why) if why.contains("never initialised")
            && why.contains(&format!("process {}", mapper.pid()))),
        "{err}"
    );
    assert!(topic_exists(&name), "a file in use is left alone");
    assert!(topic::collect_garbage(Scope::Name(&name), Action::Remove)
        .unwrap()
        .is_empty());
    mapper.finish();
    // Once nobody maps it, the opener replaces it.
    let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
    let mut publisher = Publisher::open_with(&name, &small()).unwrap();
    publisher.send(b"whole").unwrap();
    assert_eq!(&*subscriber.read().unwrap(), b"whole");
}

#[test]
fn gc_collects_a_half_made_topic_and_only_it() {
    let name = unique_ring_name("topic-gc-half-made");
    let _cleanup = TopicCleanup(name.clone());
    let file = std::fs::File::create(path(&name)).unwrap();
    file.set_len(1 << 16).unwrap();
    drop(file);
    let other = unique_ring_name("topic-gc-live");
    let _other_cleanup = TopicCleanup(other.clone());
    let _live = Subscriber::open_with(&other, &small()).unwrap();

    let listed = topic::collect_garbage(Scope::Name(&name), Action::DryRun).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, Reason::HalfMade(1 << 16));
    assert_eq!(listed[0].removal, Removal::NotAsked);
    assert!(topic::collect_garbage(Scope::Name(&other), Action::Remove)
        .unwrap()
        .is_empty());

    let removed = topic::collect_garbage(Scope::Name(&name), Action::Remove).unwrap();
    assert_eq!(removed[0].removal, Removal::Removed);
    assert!(!topic_exists(&name));
    assert!(topic_exists(&other), "a live topic stays");
}

/// Root's topic whose last member is uid 65534: `/dev/shm` is sticky, so
/// that member may not remove it as it leaves, and gc collects it as
/// finished, not abandoned, since nobody died.
#[test]
fn another_users_topic_that_its_last_member_cannot_remove_is_collected_as_finished() {
    if !processes::is_root() {
        eprintln!("skipped: needs root to run a child as uid 65534");
        return;
    }
    let _watchdog = Watchdog::new("the shared topic test", Duration::from_secs(60));
    let name = unique_ring_name("topic-shared");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::open_with(&name, &shared()).unwrap();
    let mut peer = Peer::spawn("publish-then-leave", &name, Some((65534, 65534)));
    assert_eq!(peer.expect_line(), "published");
    assert_eq!(&*subscriber.read().unwrap(), b"from another user");
    drop(subscriber);
    assert!(topic_exists(&name), "its publisher is still there");
    peer.send("leave");
    assert_eq!(peer.expect_line(), "left");
    peer.finish();
    assert!(topic_exists(&name), "not the publisher's to remove");
    let status = topic::status(&name).unwrap();
    assert!(
        status.publishers.iter().all(|p| p.closed) && status.subscribers.is_empty(),
        "{status:?}"
    );
    assert!(!status.abandoned(), "nobody died: {status:?}");

    let found = topic::collect_garbage(Scope::Name(&name), Action::DryRun).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (&found[0].reason, &found[0].removal),
        (&Reason::Finished, &Removal::NotAsked)
    );
    let removed = topic::collect_garbage(Scope::Name(&name), Action::Remove).unwrap();
    assert_eq!(removed[0].removal, Removal::Removed);
    assert!(!topic_exists(&name));
}

/// Cuts topic `name`'s file to `size` bytes, as any process that may
/// write it can.
fn truncate(name: &str, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path(name))
        .unwrap()
        .set_len(size)
        .unwrap();
}

fn is_truncated(result: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::Truncated { .. }))
}

#[test]
fn a_topic_truncated_to_nothing_is_truncated_for_every_verb() {
    let name = unique_ring_name("topic-truncated-empty");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
    let mut publisher = Publisher::open_with(&name, &small()).unwrap();
    publisher.send(b"before").unwrap();
    truncate(&name, 0);
    let mut buf = [0u8; 64];
    let err = publisher.send(b"after").unwrap_err();
    assert!(matches!(err, Error::Truncated { size: 0, .. }), "{err}");
    assert!(is_truncated(publisher.try_send(b"after")));
    assert!(is_truncated(subscriber.try_recv(&mut buf)));
    assert!(is_truncated(subscriber.recv(&mut buf)));
    assert!(is_truncated(subscriber.try_read().map(|guard| guard.len())));
    assert!(is_truncated(topic::status(&name)));
    assert!(is_truncated(Subscriber::open_with(&name, &small())));
}

#[test]
fn a_topic_cut_inside_its_header_page_wakes_a_waiting_subscriber_with_truncated() {
    let name = unique_ring_name("topic-truncated-header");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
    let publisher = Publisher::open_with(&name, &small()).unwrap();
    // The header's page stays mapped, zeroed past byte 100: no fault.
    truncate(&name, 100);
    let mut buf = [0u8; 64];
    // Not a timeout: the waiting subscriber's peer check sees the cut.
    let err = subscriber
        .recv_timeout(&mut buf, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, Error::Truncated { size: 100, .. }), "{err}");
    drop(publisher);
}

#[test]
fn a_subscriber_never_receives_the_zeros_of_lost_lanes() {
    let name = unique_ring_name("topic-truncated-lanes");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
    let mut publisher = Publisher::open_with(&name, &small()).unwrap();
    for n in 0u8..10 {
        publisher.send(&[n; 40]).unwrap();
    }
    // Keep the header and tables (one page here), lose the lanes.
    truncate(&name, 4096);
    let mut buf = [0u8; 64];
    // The first receive reads a lost page: never its zeros.
    match subscriber.try_recv(&mut buf) {
        Err(Error::Truncated { size: 4096, .. }) => {}
        Ok(received) => panic!("received {:?} of a lost lane", &buf[..received.len]),
        Err(other) => panic!("{other}"),
    }
    assert!(is_truncated(subscriber.try_recv(&mut buf)));
    assert!(is_truncated(publisher.send(b"more")));
}

#[test]
fn errors_name_the_topic_not_a_ring() {
    let name = unique_ring_name("topic-error-words");
    let _cleanup = TopicCleanup(name.clone());
    let place = format!("topic {name}");
    let mut subscriber = Subscriber::open_with(&name, &small()).unwrap();
    let mut publisher = Publisher::open_with(&name, &small()).unwrap();
    let mut buf = [0u8; 64];

    let empty = subscriber.try_recv(&mut buf).unwrap_err();
    assert!(
        matches!(&empty, Error::Empty { place: p } if *p == place),
        "{empty:?}"
    );
    assert_eq!(empty.to_string(), format!("{place} is empty"));

    let timeout = subscriber
        .recv_timeout(&mut buf, Duration::from_millis(1))
        .unwrap_err();
    assert!(
        matches!(&timeout, Error::Timeout { place: p, .. } if *p == place),
        "{timeout:?}"
    );
    assert!(
        timeout
            .to_string()
            .ends_with(&format!("waiting on {place}")),
        "{timeout}"
    );

    let full = loop {
        match publisher.try_send(&[1; 40]) {
            Ok(()) => continue,
            Err(err) => break err,
        }
    };
    assert!(
        matches!(&full, Error::Full { place: p, .. } if *p == place),
        "{full:?}"
    );
    assert!(
        full.to_string().starts_with(&format!("{place} is full: ")),
        "{full}"
    );

    drop(publisher);
    let closed = loop {
        match subscriber.recv(&mut buf) {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert!(
        matches!(&closed, Error::Closed { place: p } if *p == place),
        "{closed:?}"
    );
    assert_eq!(closed.to_string(), format!("{place} is closed"));
}

/// This process's start time in clock ticks (field 22 of /proc/self/stat).
fn start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn members_record_their_start_time_beside_their_pid() {
    let name = unique_ring_name("topic-owner-word");
    let _cleanup = TopicCleanup(name.clone());
    let _subscriber = Subscriber::open_with(&name, &small()).unwrap();
    let _publisher = Publisher::open_with(&name, &small()).unwrap();
    let bytes = std::fs::read(path(&name)).unwrap();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    // docs/FORMAT.md: lane 0's owner at 512 + 48, subscriber 0's at
    // 512 + 2 × 128 + 8 for two publisher places.
    let expected = (start_time() & 0xffff_ffff) << 32 | u64::from(std::process::id());
    assert_eq!(word(560), expected, "the publisher's owner word");
    assert_eq!(word(776), expected, "the subscriber's owner word");
    let status = topic::status(&name).unwrap();
    assert_eq!(status.publishers[0].pid, std::process::id());
    assert_eq!(status.subscribers[0].pid, std::process::id());
}

/// A Block subscriber gives back the space of every message as it takes
/// it (recv, read or read_timeout), so that a publisher waiting for room
/// never waits on a subscriber that took its messages and then blocked
/// on something else (two topics each way between two processes would
/// otherwise deadlock).
#[test]
fn a_block_subscriber_gives_back_what_it_received_at_once() {
    let name = unique_ring_name("topic-gives-back");
    let _cleanup = TopicCleanup(name.clone());
    let options = Options::default().capacity(64 * 1024);
    let mut subscriber = Subscriber::open_with(&name, &options).unwrap();
    let mut publisher = Publisher::open_with(&name, &options).unwrap();
    let lag = |name: &str| topic::status(name).unwrap().subscribers[0].lag_bytes;
    for _ in 0..3 {
        publisher.send(&[7u8; 100]).unwrap();
    }
    assert!(lag(&name) > 0, "three messages wait");
    let mut buf = [0u8; 100];
    subscriber.recv(&mut buf).unwrap();
    drop(subscriber.read().unwrap());
    drop(subscriber.read_timeout(Duration::from_secs(60)).unwrap());
    assert_eq!(lag(&name), 0, "all three given back, none stored later");
    assert_eq!(topic::status(&name).unwrap().subscribers[0].received, 3);
}

/// `opened` failed with the `OptionMismatch` of `option` on `place`: the
/// value asked for, the topic's, and a message naming it.
fn assert_mismatch<T>(
    opened: Result<T, Error>,
    place: &str,
    option: &str,
    asked: &str,
    found: &str,
) {
    let Err(err) = opened else {
        panic!("{option}: expected OptionMismatch, it opened");
    };
    let Error::OptionMismatch {
        place: p,
        option: o,
        asked: a,
        found: f,
    } = &err
    else {
        panic!("{option}: expected OptionMismatch, got {err:?}");
    };
    assert_eq!((&**p, *o, &**a, &**f), (place, option, asked, found));
    assert_eq!(
        err.to_string(),
        format!("{place} exists with {option} {found}, not the {asked} asked for")
    );
}

/// Options given to open an existing topic must match it, for publishers
/// and subscribers, raw and typed; options not given take the topic's
/// own; a member's own options (waiting, receive_history, trust) are free;
/// and a refused opener takes no place and leaves the topic as it was.
#[test]
fn options_that_differ_from_the_existing_topic_are_refused() {
    use shmkit::topic::Policy;
    use shmkit::topic::Waiting;

    let name = unique_ring_name("topic-options");
    let _cleanup = TopicCleanup(name.clone());
    let place = format!("topic {name}");
    let made = small()
        .max_message(1000)
        .policy(Policy::DropOldest)
        .history(3)
        .mode(Mode::OWNER_ONLY);
    let creator = Publisher::open_with(&name, &made).unwrap();
    let cases: [(&str, Options, &str, &str); 7] = [
        (
            "capacity",
            Options::default().capacity(8192),
            "8192",
            "4096",
        ),
        (
            "maximum message",
            Options::default().max_message(999),
            "999",
            "1000",
        ),
        (
            "maximum publishers",
            Options::default().max_publishers(8),
            "8",
            "2",
        ),
        (
            "maximum subscribers",
            Options::default().max_subscribers(64),
            "64",
            "4",
        ),
        (
            "policy",
            Options::default().policy(Policy::Block),
            "Block",
            "DropOldest",
        ),
        ("history", Options::default().history(0), "0", "3"),
        (
            "mode",
            Options::default().mode(Mode::new(0o660)),
            "0660",
            "0600",
        ),
    ];
    // More refused subscribers than the topic has places: none takes one.
    for (option, options, asked, found) in &cases {
        assert_mismatch(
            Subscriber::open_with(&name, options),
            &place,
            option,
            asked,
            found,
        );
        assert_mismatch(
            Publisher::open_with(&name, options),
            &place,
            option,
            asked,
            found,
        );
        assert_mismatch(
            shmkit::channel::Subscriber::<u32>::open_with(&name, options),
            &place,
            option,
            asked,
            found,
        );
        assert_mismatch(
            shmkit::channel::Publisher::<u32>::open_with(&name, options),
            &place,
            option,
            asked,
            found,
        );
    }
    // Every option given and the topic's, one wrong among the right ones.
    assert_mismatch(
        Subscriber::open_with(&name, &made.clone().history(4)),
        &place,
        "history",
        "4",
        "3",
    );
    let status = topic::status(&name).unwrap();
    assert_eq!((status.publishers.len(), status.subscribers.len()), (1, 0));

    // Nothing given: the topic's own, not the defaults.
    let mut defaults = Subscriber::open(&name).unwrap();
    assert_eq!(defaults.policy(), Policy::DropOldest);
    assert_eq!(defaults.max_message(), 1000);
    // All given and the topic's, with a member's own options of its own.
    let own = made
        .clone()
        .waiting(Waiting::BusyPoll)
        .receive_history(false)
        .trust(shmkit::Trust::me());
    let mut same = Subscriber::open_with(&name, &own).unwrap();
    let typed = shmkit::channel::Subscriber::<u32>::open_with(&name, &made).unwrap();
    let mut second = Publisher::open_with(&name, &made).unwrap();
    assert_eq!(second.max_message(), 1000);
    second.send(b"after").unwrap();
    let mut buf = [0u8; 16];
    for subscriber in [&mut defaults, &mut same] {
        let got = subscriber.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"after");
    }
    let status = topic::status(&name).unwrap();
    assert_eq!((status.publishers.len(), status.subscribers.len()), (2, 3));
    assert_eq!((status.capacity, status.history), (4096, 3));
    drop((creator, second, typed));
}

/// `open` failed with `TooLarge` for a maximum message of `size` over
/// `limit`.
fn assert_too_large<T>(opened: Result<T, Error>, size: u64, limit: u64) {
    match opened {
        Err(Error::TooLarge {
            what: "maximum message",
            size: s,
            limit: l,
        }) => assert_eq!((s, l), (size, limit)),
        Err(other) => panic!("expected TooLarge of {size} over {limit}, got {other:?}"),
        Ok(_) => panic!("expected TooLarge of {size} over {limit}, it opened"),
    }
}

/// A maximum message given without a capacity is checked against the
/// lanes the open uses: an existing topic's own, not the default 256 KiB
/// (a `max_message(200_000)` alone used to be refused as `TooLarge` even
/// when the topic's lanes carried it). Over what the topic's lanes carry
/// it is `TooLarge`, as creating a topic of that capacity says; within
/// them but not the topic's, `OptionMismatch`. Creating with it alone
/// still fails when the default lanes cannot carry it, and makes nothing.
#[test]
fn a_maximum_message_alone_is_checked_against_the_existing_topics_lanes() {
    const BIG: u64 = 1 << 20;
    let name = unique_ring_name("topic-max-message-alone");
    let _cleanup = TopicCleanup(name.clone());
    let place = format!("topic {name}");
    let default_limit = Options::default().max_message_len();
    let big_limit = Options::default().capacity(BIG).max_message_len();
    let own = 200_000;
    assert!(default_limit < own && own < big_limit);
    let made = Options::default()
        .capacity(BIG)
        .max_message(own)
        .max_publishers(2)
        .max_subscribers(4);
    let publisher = Publisher::open_with(&name, &made).unwrap();

    let alone = Options::default().max_message(own);
    let subscriber = Subscriber::open_with(&name, &alone).unwrap();
    assert_eq!(subscriber.max_message() as u64, own);
    let second = Publisher::open_with(&name, &alone).unwrap();
    assert_eq!(second.max_message() as u64, own);
    drop((subscriber, second));
    let members = |name: &str| {
        let status = topic::status(name).unwrap();
        (status.publishers.len(), status.subscribers.len())
    };
    let before = members(&name);

    // Over the topic's own lanes: what a create of that capacity says.
    let over = big_limit + 1;
    let fresh = unique_ring_name("topic-max-message-alone-fresh");
    let _fresh_cleanup = TopicCleanup(fresh.clone());
    assert_too_large(
        Publisher::open_with(&fresh, &made.clone().max_message(over)),
        over,
        big_limit,
    );
    assert_too_large(
        Subscriber::open_with(&name, &Options::default().max_message(over)),
        over,
        big_limit,
    );
    // Within them but not the topic's own: a mismatch.
    assert_mismatch(
        Subscriber::open_with(&name, &Options::default().max_message(own + 1)),
        &place,
        "maximum message",
        &(own + 1).to_string(),
        &own.to_string(),
    );
    // A capacity given that differs is named first, whatever the message.
    assert_mismatch(
        Subscriber::open_with(
            &name,
            &Options::default().capacity(1 << 16).max_message(100),
        ),
        &place,
        "capacity",
        "65536",
        &BIG.to_string(),
    );
    // The refusals took no place.
    assert_eq!(members(&name), before);

    // Creating with the maximum message alone: against the default lanes,
    // as before, and nothing is made.
    assert_too_large(Subscriber::open_with(&fresh, &alone), own, default_limit);
    assert!(!topic_exists(&fresh));
    drop(publisher);
}

/// An opener that creates the topic is not checked against anything; a
/// topic made with defaults accepts the defaults given explicitly.
#[test]
fn the_defaults_given_explicitly_match_a_topic_made_without_options() {
    use shmkit::topic::Policy;

    let name = unique_ring_name("topic-options-defaults");
    let _cleanup = TopicCleanup(name.clone());
    let _creator = Publisher::open(&name).unwrap();
    let explicit = Options::default()
        .capacity(1 << 18)
        .max_publishers(8)
        .max_subscribers(64)
        .policy(Policy::Block)
        .history(0)
        .mode(Mode::OWNER_ONLY);
    let subscriber = Subscriber::open_with(&name, &explicit).unwrap();
    assert_eq!(subscriber.max_message() as u64, explicit.max_message_len());
    assert_mismatch(
        Subscriber::open_with(&name, &Options::default().max_message(100)),
        &format!("topic {name}"),
        "maximum message",
        "100",
        &explicit.max_message_len().to_string(),
    );
}
