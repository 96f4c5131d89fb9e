//! The ring's child processes (this test binary again, in a role) and the
//! parent's side of a stream: receiving with every verb, checking as it goes.

#![allow(dead_code)] // each test binary uses a different part

use shmkit::ring::{Consumer, Options, Producer};
use shmkit::Error;

use crate::processes::{args, next_command, report, ROLE};
use crate::ring_layout::LONG;
use crate::sequence::{mix, Checker, Sequence, Shape};

/// What a child is told: the ring, its capacity, the sequence, and a count
/// (and for some roles one more number).
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub capacity: u64,
    pub seed: u64,
    pub shape: Shape,
    pub count: u64,
    pub extra: u64,
}

impl Plan {
    pub fn new(name: &str, capacity: u64, seed: u64, shape: Shape) -> Plan {
        Plan {
            name: name.to_owned(),
            capacity,
            seed,
            shape,
            count: u64::MAX,
            extra: 0,
        }
    }

    pub fn options(&self) -> Options {
        Options::default().capacity(self.capacity)
    }

    pub fn sequence(&self) -> Sequence {
        Sequence {
            seed: self.seed,
            max: self.options().max_message_len() as usize,
            shape: self.shape,
        }
    }

    pub fn to_args(&self) -> String {
        let shape = match self.shape {
            Shape::Random => "random".to_owned(),
            Shape::Stress => "stress".to_owned(),
            Shape::Numbered => "numbered".to_owned(),
            Shape::Fixed(len) => format!("fixed-{len}"),
        };
        format!(
            "{} {} {} {shape} {} {}",
            self.name, self.capacity, self.seed, self.count, self.extra
        )
    }

    pub fn from_args(args: &str) -> Plan {
        let words: Vec<&str> = args.split(' ').collect();
        let shape = match words[3] {
            "random" => Shape::Random,
            "stress" => Shape::Stress,
            "numbered" => Shape::Numbered,
            fixed => Shape::Fixed(fixed.strip_prefix("fixed-").unwrap().parse().unwrap()),
        };
        Plan {
            name: words[0].to_owned(),
            capacity: words[1].parse().unwrap(),
            seed: words[2].parse().unwrap(),
            shape,
            count: words[4].parse().unwrap(),
            extra: words[5].parse().unwrap(),
        }
    }
}

/// Runs the role a parent gave this process; returns at once in a normal
/// test run. A test binary that spawns children calls it from its `child`
/// test.
pub fn run_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let plan = Plan::from_args(&args());
    match role.as_str() {
        "produce" => produce(&plan),
        "grant-and-hold" => grant_and_hold(&plan),
        "consume" => consume(&plan),
        other => panic!("unknown role {other}"),
    }
}

/// Sends message `n` of `sequence` with one of the producer's verbs, chosen
/// by `n`; some messages are preceded by a grant that is aborted.
pub fn send_one(
    producer: &mut Producer,
    sequence: &Sequence,
    n: u64,
    message: &mut Vec<u8>,
) -> Result<(), Error> {
    sequence.message(n, message);
    let max = producer.max_message();
    let r = mix(sequence.seed ^ 0x5e4d, n);
    // A grant of the largest size waits for half the ring to be free: rare
    // in the stress run, which is about volume.
    let verb = if sequence.shape == Shape::Stress {
        r % 1024
    } else {
        r % 8
    };
    match verb {
        0 => {
            let mut grant = producer.grant(message.len())?;
            grant.copy_from_slice(message);
            grant.commit();
        }
        1 => {
            let mut grant = producer.grant(max)?;
            grant[..message.len()].copy_from_slice(message);
            grant.commit_len(message.len());
        }
        2 => {
            let mut grant = producer.grant(max.min(message.len() + 64))?;
            grant.fill(0x01);
            grant.abort();
            producer.send(message)?;
        }
        3 => match producer.try_send(message) {
            Err(Error::Full { .. }) => producer.send(message)?,
            other => other?,
        },
        4 => producer.send_timeout(message, LONG)?,
        _ => producer.send(message)?,
    }
    Ok(())
}

/// Role: sends `count` messages of the sequence, then closes.
pub fn produce(plan: &Plan) {
    let mut producer = Producer::open_with(&plan.name, &plan.options()).unwrap();
    report("ready");
    let sequence = plan.sequence();
    let mut message = Vec::new();
    for n in 0..plan.count {
        send_one(&mut producer, &sequence, n, &mut message).unwrap();
    }
    producer.close().unwrap();
    report("closed");
}

/// Role: sends `count` messages, then holds a grant of `extra` bytes
/// without committing it until stdin closes.
pub fn grant_and_hold(plan: &Plan) {
    let mut producer = Producer::open_with(&plan.name, &plan.options()).unwrap();
    report("ready");
    let sequence = plan.sequence();
    let mut message = Vec::new();
    for n in 0..plan.count {
        send_one(&mut producer, &sequence, n, &mut message).unwrap();
    }
    let mut grant = producer.grant(plan.extra as usize).unwrap();
    grant.fill(0x01);
    report("granted");
    next_command();
    grant.abort();
}

/// Role: receives and checks the sequence on command: `recv N`,
/// `read-and-hold` (reports `holding SEQUENCE` with the grant's sequence
/// number and keeps the grant until the next command), or
/// `recv-forever quiet|verbose` (verbose reports `got N` for each).
pub fn consume(plan: &Plan) {
    let mut consumer = Consumer::open_with(&plan.name, &plan.options()).unwrap();
    let mut checker = Checker::new(plan.sequence());
    let mut buf = vec![0; consumer.max_message()];
    report("ready");
    loop {
        let command = next_command();
        match command.split(' ').collect::<Vec<_>>()[..] {
            ["recv", count] => {
                for _ in 0..count.parse::<u64>().unwrap() {
                    let n = consumer.recv(&mut buf).unwrap();
                    checker.check(&buf[..n]);
                }
                report(&format!("next {}", checker.next));
            }
            ["read-and-hold"] => {
                let grant = consumer.read().unwrap();
                checker.check(&grant);
                report(&format!("holding {}", grant.sequence()));
                next_command();
                return;
            }
            ["recv-forever", how] => {
                report("receiving");
                while let Ok(n) = consumer.recv(&mut buf) {
                    checker.check(&buf[..n]);
                    if how == "verbose" {
                        report(&format!("got {}", checker.next - 1));
                    }
                }
                return;
            }
            [""] => return, // stdin closed
            _ => panic!("unknown command {command:?}"),
        }
    }
}

/// Receives the next message(s) with a verb chosen by `checker.next`;
/// returns how many it took (`drain` may take several).
pub fn receive(
    consumer: &mut Consumer,
    checker: &mut Checker,
    buf: &mut [u8],
) -> Result<u64, Error> {
    match checker.next % 6 {
        0 => {
            let grant = consumer.read()?;
            checker.check(&grant);
            grant.release();
        }
        1 => {
            let taken = consumer.drain(|m| checker.check(m))?;
            if taken > 0 {
                return Ok(taken as u64);
            }
            let n = consumer.recv(buf)?;
            checker.check(&buf[..n]);
        }
        2 => match consumer.try_recv(buf) {
            Ok(n) => checker.check(&buf[..n]),
            Err(Error::Empty { .. }) => {
                let n = consumer.recv_timeout(buf, LONG)?;
                checker.check(&buf[..n]);
            }
            Err(other) => return Err(other),
        },
        3 => {
            let grant = consumer.read_timeout(LONG)?;
            checker.check(&grant);
        }
        _ => {
            let n = consumer.recv(buf)?;
            checker.check(&buf[..n]);
        }
    }
    Ok(1)
}

/// In one thread, sends messages `range` of the checker's sequence and
/// receives them: receives whenever the ring is full, then the rest; the
/// ring is empty afterwards.
pub fn send_and_receive(
    producer: &mut Producer,
    consumer: &mut Consumer,
    checker: &mut Checker,
    range: std::ops::Range<u64>,
) {
    let sequence = checker.sequence;
    let mut message = Vec::new();
    let mut buf = vec![0; consumer.max_message()];
    for n in range.clone() {
        sequence.message(n, &mut message);
        loop {
            match producer.try_send(&message) {
                Ok(()) => break,
                Err(Error::Full { .. }) => {
                    receive(consumer, checker, &mut buf).unwrap();
                }
                Err(other) => panic!("sending message {n}: {other}"),
            }
        }
    }
    while checker.next < range.end {
        receive(consumer, checker, &mut buf).unwrap();
    }
    assert!(
        matches!(consumer.try_recv(&mut buf), Err(Error::Empty { .. })),
        "no extra message"
    );
}
