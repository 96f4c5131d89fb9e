//! Typed topics (`channel::Publisher` and `channel::Subscriber`): every
//! codec, many publishers and subscribers, another process, a message of
//! another type or codec (`WrongType`, consumed), one that does not decode
//! (`Corrupt`), a value too large, and a lossy topic's exact `Lagged`.

mod processes;

use std::collections::BTreeMap;
use std::time::Duration;

use shmkit::channel::{Plain, Publisher, Rkyv, Subscriber};
use shmkit::topic::{self, Options, Policy};
use shmkit::Error;

use processes::{args, next_command, report, unique_ring_name, Peer, TopicCleanup, Watchdog, ROLE};

#[derive(
    serde::Serialize,
    serde::Deserialize,
    Debug,
    PartialEq,
    Clone,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
struct Reading {
    sensor: String,
    values: Vec<u32>,
}

fn reading(sensor: &str, n: u32) -> Reading {
    Reading {
        sensor: sensor.to_owned(),
        values: (0..n % 7).map(|k| n * 10 + k).collect(),
    }
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = args();
    match role.as_str() {
        "publish-readings" => {
            let mut publisher = Publisher::<Reading>::open(&name).unwrap();
            report(&format!("ready {}", publisher.id()));
            assert_eq!(next_command(), "go");
            for n in 0..1000 {
                publisher.send(&reading("child", n)).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn two_publishers_two_subscribers_postcard_every_value_in_order() {
    let name = unique_ring_name("typed-topic-many");
    let _cleanup = TopicCleanup(name.clone());
    let options = Options::default().capacity(1 << 14);
    let mut subscribers: Vec<Subscriber<Reading>> = (0..2)
        .map(|_| Subscriber::open_with(&name, &options).unwrap())
        .collect();
    let mut a = Publisher::<Reading>::open_with(&name, &options).unwrap();
    let mut b = Publisher::<Reading>::open_with(&name, &options).unwrap();
    let sensors = BTreeMap::from([(a.id(), "a"), (b.id(), "b")]);
    for n in 0..50 {
        a.send(&reading("a", n)).unwrap();
        b.try_send(&reading("b", n)).unwrap();
    }
    a.close();
    b.close();
    for subscriber in &mut subscribers {
        let mut next = BTreeMap::new();
        loop {
            match subscriber.recv() {
                Ok((received, value)) => {
                    let sensor = sensors[&received.publisher];
                    let n = next.entry(received.publisher).or_insert(0u64);
                    assert_eq!(received.sequence, *n);
                    assert_eq!(value, reading(sensor, *n as u32));
                    *n += 1;
                }
                Err(Error::Closed { .. }) => break,
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(next.values().collect::<Vec<_>>(), [&50, &50]);
    }
}

#[test]
fn rkyv_and_plain_values_arrive_as_their_codec_gives_them() {
    let name = unique_ring_name("typed-topic-rkyv");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::<Reading, Rkyv>::open(&name).unwrap();
    let mut publisher = Publisher::<Reading, Rkyv>::open(&name).unwrap();
    publisher.send(&reading("r", 12)).unwrap();
    let (received, archived) = subscriber.recv().unwrap();
    assert_eq!(archived.sensor, "r");
    assert_eq!(archived.values.len(), 5);
    assert_eq!(archived.values[4], 124);
    assert_eq!(received.sequence, 0);

    let name = unique_ring_name("typed-topic-plain");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::<[u64; 3], Plain>::open(&name).unwrap();
    let mut publisher = Publisher::<[u64; 3], Plain>::open(&name).unwrap();
    publisher.send(&[1, 2, 3]).unwrap();
    publisher
        .send_timeout(&[4, 5, 6], Duration::from_secs(60))
        .unwrap();
    assert_eq!(subscriber.recv().unwrap().1, [1, 2, 3]);
    assert_eq!(
        subscriber.recv_timeout(Duration::from_secs(60)).unwrap().1,
        [4, 5, 6]
    );
    assert!(matches!(subscriber.try_recv(), Err(Error::Empty { .. })));
}

#[test]
fn another_type_or_codec_is_wrong_type_named_and_consumed() {
    let name = unique_ring_name("typed-topic-wrong-type");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::<u32>::open(&name).unwrap();
    let mut strings = Publisher::<String>::open(&name).unwrap();
    let mut plain = Publisher::<u32, Plain>::open(&name).unwrap();
    let mut right = Publisher::<u32>::open(&name).unwrap();
    strings.send(&"seven".to_owned()).unwrap();
    plain.send(&7).unwrap();
    right.send(&7).unwrap();
    let mut wrong = Vec::new();
    let mut got = Vec::new();
    for _ in 0..3 {
        match subscriber.recv() {
            Ok((_, value)) => got.push(value),
            Err(Error::WrongType {
                place,
                expected,
                found,
            }) => {
                assert_eq!(place, format!("topic {name}"));
                assert_eq!(expected, "postcard u32");
                wrong.push(found);
            }
            Err(other) => panic!("{other}"),
        }
    }
    wrong.sort();
    assert_eq!(wrong, ["plain u32", "postcard alloc::string::String"]);
    assert_eq!(got, [7]);
    assert!(matches!(subscriber.try_recv(), Err(Error::Empty { .. })));
}

#[test]
fn a_late_subscriber_names_an_unknown_type_by_its_tag() {
    let name = unique_ring_name("typed-topic-late");
    let _cleanup = TopicCleanup(name.clone());
    let options = Options::default().history(4);
    let mut strings = Publisher::<String>::open_with(&name, &options).unwrap();
    strings.send(&"named".to_owned()).unwrap(); // carries the type's name
    strings.send(&"tagged".to_owned()).unwrap(); // only its tag
    let mut late = Subscriber::<u32>::open_with(&name, &options.clone().history(4)).unwrap();
    let first = late.recv().unwrap_err();
    assert!(
        matches!(&first, Error::WrongType { found, .. } if found == "postcard alloc::string::String"),
        "{first}"
    );
    // The name was learnt from the first: the second is named too.
    let second = late.recv().unwrap_err();
    assert!(
        matches!(&second, Error::WrongType { found, .. } if found == "postcard alloc::string::String"),
        "{second}"
    );
    let mut later = Subscriber::<u32>::open_with(&name, &options).unwrap();
    later.recv().unwrap_err(); // the named one, from history
    strings.send(&"third".to_owned()).unwrap();
    let mut latest = Subscriber::<u64>::open_with(&name, &options.receive_history(false)).unwrap();
    strings.send(&"fourth".to_owned()).unwrap();
    let unknown = latest.recv().unwrap_err();
    assert!(
        matches!(&unknown, Error::WrongType { found, .. } if found.starts_with("of an unknown type (tag 0x")),
        "{unknown}"
    );
}

#[test]
fn bytes_that_do_not_decode_are_corrupt_and_consumed() {
    let name = unique_ring_name("typed-topic-corrupt");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::<String>::open(&name).unwrap();
    let mut raw = topic::Publisher::open(&name).unwrap();
    raw.send(b"short").unwrap(); // shorter than a tag
    let mut typed = Publisher::<String>::open(&name).unwrap();
    typed.send(&"fine".to_owned()).unwrap();
    let err = subscriber.recv().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(why) if why.contains(&format!("topic {name}"))
            && why.contains("too short for its 8-byte type tag")),
        "{err}"
    );
    assert_eq!(subscriber.recv().unwrap().1, "fine");
}

#[test]
fn a_value_too_large_is_refused_with_both_numbers() {
    let name = unique_ring_name("typed-topic-too-large");
    let _cleanup = TopicCleanup(name.clone());
    let options = Options::default().capacity(4096);
    let mut publisher = Publisher::<Vec<u8>>::open_with(&name, &options).unwrap();
    let limit = publisher.max_message();
    assert_eq!(limit, 2048 - 32 - 8);
    let big = vec![0u8; limit];
    match publisher.send(&big) {
        Err(Error::TooLarge { size, limit: l, .. }) => {
            assert_eq!((size, l), (limit as u64 + 2, limit as u64));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lagging_typed_subscriber_is_told_exactly_what_it_missed() {
    let name = unique_ring_name("typed-topic-lagged");
    let _cleanup = TopicCleanup(name.clone());
    let options = Options::default().capacity(4096).policy(Policy::DropOldest);
    let mut subscriber = Subscriber::<u64, Plain>::open_with(&name, &options).unwrap();
    let mut publisher = Publisher::<u64, Plain>::open_with(&name, &options).unwrap();
    for n in 0..1000u64 {
        publisher.send(&n).unwrap();
    }
    let missed = match subscriber.recv() {
        Err(Error::Lagged {
            missed,
            publisher: p,
            ..
        }) => {
            assert_eq!(p, publisher.id());
            missed
        }
        other => panic!("{other:?}"),
    };
    let (received, first) = subscriber.recv().unwrap();
    assert_eq!(first, missed, "continues with the oldest still there");
    assert_eq!(received.sequence, missed);
    let mut last = first;
    while let Ok((_, value)) = subscriber.try_recv() {
        assert_eq!(value, last + 1);
        last = value;
    }
    assert_eq!(last, 999);
}

#[test]
fn a_typed_publisher_in_another_process() {
    let _watchdog = Watchdog::new("typed topic between processes", Duration::from_secs(120));
    let name = unique_ring_name("typed-topic-process");
    let _cleanup = TopicCleanup(name.clone());
    let mut subscriber = Subscriber::<Reading>::open(&name).unwrap();
    let mut child = Peer::spawn("publish-readings", &name, None);
    let id: u64 = child.expect_line()["ready ".len()..].parse().unwrap();
    child.send("go");
    for n in 0..1000 {
        let (received, value) = subscriber.recv().unwrap();
        assert_eq!((received.publisher, received.sequence), (id, n as u64));
        assert_eq!(value, reading("child", n));
    }
    child.finish();
    assert!(matches!(subscriber.recv(), Err(Error::Closed { .. })));
}
