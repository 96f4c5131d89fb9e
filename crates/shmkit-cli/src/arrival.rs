//! How `recv`, `sub` and `call` wait for a peer that is not there yet (a
//! ring's producer, a topic's publisher, a service's server), without the
//! library's peer checks.
//!
//! A member waiting in the library (`Consumer::read_timeout`,
//! `Subscriber::recv_timeout`, `Client::wait_timeout`) sleeps on its futex
//! in naps of at most 20 ms (`PEER_CHECK_INTERVAL`), looking between them
//! at whether its peer died or closed: a dead process wakes nobody, so
//! only looking finds it. That is 50 wake-ups a second, also while no peer
//! has come yet, when there is nothing that could die. The library offers
//! no wait for a peer's arrival (joining writes no futex word, and the
//! interval is not an option), so the commands wait for one themselves:
//! they look at the object's status, from outside, in sleeps that double
//! from 20 ms (as often as the library would look, so a peer that comes at
//! once is seen as soon as before) up to [`LONGEST_SLEEP`]. Each sleep is
//! 20 ms longer than the whole wait before it, so a peer that comes T
//! after the wait began is seen by about 2T + 20 ms, and never more than
//! [`LONGEST_SLEEP`] after it came; a command that waits for long wakes
//! twice a second. Once a peer is there (or has been and gone), the wait
//! is the library's again.

use std::time::{Duration, Instant};

use shmkit::ring::RingStatus;

use crate::signals;

/// The first sleep: the library's own interval between looks at a peer.
const FIRST_SLEEP: Duration = Duration::from_millis(20);

/// The longest sleep: what a peer that comes late may wait to be seen (a
/// ring holds its first messages meanwhile). A stop signal ends a sleep at
/// once, also one that lands just before it ([`signals::sleep_unless_stopped`]).
const LONGEST_SLEEP: Duration = Duration::from_millis(500);

/// Waits while ring `name` has no producer and nothing to read; returns
/// once one of those changes, a stop signal comes, `deadline` passes, or
/// the status cannot be read: the library's wait, which comes next,
/// sorts out each.
pub fn wait_for_producer(name: &str, deadline: Option<Instant>) {
    wait_while(
        || matches!(shmkit::ring::status(name), Ok(status) if producerless(&status)),
        deadline,
    );
}

/// Waits, as [`wait_for_producer`], while topic `name` has had no
/// publisher (so no message and no end can come).
pub fn wait_for_publisher(name: &str, deadline: Option<Instant>) {
    wait_while(
        || matches!(shmkit::topic::status(name), Ok(status) if status.publishers.is_empty()),
        deadline,
    );
}

/// Waits, as [`wait_for_producer`], while service `name` has had no
/// server (so no answer and no close can come).
pub fn wait_for_server(name: &str, deadline: Option<Instant>) {
    wait_while(
        || {
            matches!(shmkit::service::status(name),
                Ok(status) if status.server.is_none() && !status.closed)
        },
        deadline,
    );
}

/// Sleeps while `waiting()` says nothing can happen yet, in the doubling
/// sleeps above, until it says otherwise, a stop signal comes or
/// `deadline` passes.
fn wait_while(mut waiting: impl FnMut() -> bool, deadline: Option<Instant>) {
    let mut sleep = FIRST_SLEEP;
    while waiting() {
        if signals::caught().is_some() {
            return;
        }
        let nap = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                sleep.min(left)
            }
            None => sleep,
        };
        signals::sleep_unless_stopped(nap);
        sleep = next_sleep(sleep);
    }
}

/// The sleep after one of `sleep`: twice as long, at most [`LONGEST_SLEEP`].
fn next_sleep(sleep: Duration) -> Duration {
    (sleep * 2).min(LONGEST_SLEEP)
}

/// Whether `status` shows a ring that no producer holds or has held since
/// its stream began, with nothing in it: nothing can happen in it until a
/// producer comes. (A dead producer's ring is not one: the library's wait
/// reports it.)
fn producerless(status: &RingStatus) -> bool {
    status.producer.is_none() && !status.closed && status.bytes_in_flight == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_double_up_to_the_longest() {
        let sleeps: Vec<u128> = std::iter::successors(Some(FIRST_SLEEP), |&s| Some(next_sleep(s)))
            .take(7)
            .map(|s| s.as_millis())
            .collect();
        assert_eq!(sleeps, [20, 40, 80, 160, 320, 500, 500]);
    }
}
