//! The message ring across two processes: deterministic streams with every
//! verb on both sides, and a stress run of three million messages.
//!
//! Every test uses its own ring (`test-TAG-PID-N`) and a guard that removes
//! its segment even if the test fails. Nothing here sleeps to synchronise:
//! children report on stdout; a watchdog aborts the run rather than let a
//! broken test hang.

mod processes;
mod ring_layout;
mod roles;
mod sequence;

use std::time::Duration;

use proptest::prelude::*;
use shmkit::ring::{self, Consumer, EndpointStatus};
use shmkit::Error;

use processes::{ring_exists, unique_ring_name, Peer, RingCleanup, Watchdog};
use ring_layout::SMALL;
use roles::{receive, Plan};
use sequence::{config, Checker, Shape};

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    roles::run_child();
}

/// A child producer sends the plan's sequence with every verb; the parent
/// receives it with every verb: all of it, whole, in order, then Closed;
/// the counts agree, and the ring is gone once both ends have left.
fn stream_from_a_child(plan: &Plan) {
    let _cleanup = RingCleanup(plan.name.clone());
    let mut consumer = Consumer::open_with(&plan.name, &plan.options()).unwrap();
    let mut peer = Peer::spawn("produce", &plan.to_args(), None);
    assert_eq!(peer.expect_line(), "ready");
    let mut checker = Checker::new(plan.sequence());
    let mut buf = vec![0; consumer.max_message()];
    while checker.next < plan.count {
        receive(&mut consumer, &mut checker, &mut buf).unwrap();
    }
    match consumer.recv(&mut buf) {
        Err(Error::Closed { place }) => assert_eq!(place, format!("ring {}", plan.name)),
        other => panic!("after the last message: {other:?}"),
    }
    assert_eq!(peer.expect_line(), "closed");
    peer.finish();
    let status = ring::status(&plan.name).unwrap();
    assert_eq!((status.sent, status.received), (plan.count, plan.count));
    assert!(status.closed && status.producer.is_none());
    assert_eq!(
        status.consumer,
        Some(EndpointStatus {
            pid: std::process::id(),
            alive: true
        })
    );
    drop(consumer);
    assert!(!ring_exists(&plan.name), "both ends left: the ring is gone");
}

#[test]
fn a_random_sequence_crosses_processes_intact_and_in_order() {
    let _watchdog = Watchdog::new("a 20000-message stream", Duration::from_secs(120));
    let mut plan = Plan::new(&unique_ring_name("stream"), SMALL, 42, Shape::Random);
    plan.count = 20_000;
    stream_from_a_child(&plan);
}

proptest! {
    #![proptest_config(config(8))]

    /// The same with a few random seeds, lengths and capacities.
    #[test]
    fn random_sequences_cross_processes(
        seed in any::<u64>(),
        count in 0u64..3000,
        capacity in prop_oneof![Just(4096u64), Just(16384), Just(1 << 20)],
        fixed in prop::option::of(0usize..=2032),
    ) {
        let _watchdog = Watchdog::new("a random stream", Duration::from_secs(120));
        let shape = fixed.map_or(Shape::Random, Shape::Fixed);
        let mut plan = Plan::new(&unique_ring_name("streams"), capacity, seed, shape);
        plan.count = count;
        stream_from_a_child(&plan);
    }
}

/// Three million messages (or `SHMKIT_STRESS_MESSAGES`) with sequence
/// numbers and checksums, mostly 16 to 48 bytes, every 1009th close to the
/// largest, through a 64 KiB ring. (About 2 s in a debug build on two idle
/// cores; much longer when something else keeps a core busy, as the two
/// processes then take turns.)
#[test]
fn stress_three_million_messages_across_processes() {
    let _watchdog = Watchdog::new("the stress run", Duration::from_secs(600));
    let mut plan = Plan::new(&unique_ring_name("stress"), 1 << 16, 7, Shape::Stress);
    plan.count = std::env::var("SHMKIT_STRESS_MESSAGES").map_or(3_000_000, |v| v.parse().unwrap());
    stream_from_a_child(&plan);
}
