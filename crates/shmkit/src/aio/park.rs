//! How one async endpoint waits: spin, as a blocking endpoint does (in
//! the poll for at most 50 µs, then, if its `Waiting` says to spin longer,
//! between the executor's other tasks: the task stays runnable), then
//! announce sleep on its futex word (rule 8 of
//! `ring::protocol`), look once more, and park the task's waker in the
//! reactor; look at the peer before every park and whenever the reactor
//! says a check is due, every [`PEER_CHECK_INTERVAL`] as a blocking
//! endpoint does.
//!
//! A wait takes nothing: it only says that the endpoint can act (a message
//! is there, or room for one), and the verb that follows acts in the same
//! poll, without a further `.await`. So a dropped future has consumed
//! nothing and reserved nothing. Its registration stays with the endpoint
//! (the next wait takes it over, or it fires once at a task that no longer
//! waits, which is harmless).

use std::task::{Context, Poll};
use std::time::Duration;

use super::reactor::{reactor, Parked, CHECK_SLACK};
use crate::error::Result;
use crate::ring::wait::{
    announce_sleep, monotonic_nanos, WakeLine, FIRST_PEER_CHECK, PEER_CHECK_INTERVAL,
};
use crate::sync::AtomicU32;

/// Spinning inside a poll holds up the executor's thread: at most this
/// long, whatever the endpoint's [`Waiting`](crate::ring::Waiting) says.
const MAX_SPIN: Duration = Duration::from_micros(50);

/// Polls between two readings of the clock while spinning.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// `SPINS_PER_CLOCK_READ` looks at `target`, with a pause before each if
/// `pause`; whether one found it ready.
fn spin_polls(target: &mut impl Readiness, pause: bool) -> Result<bool> {
    for _ in 0..SPINS_PER_CLOCK_READ {
        if pause {
            std::hint::spin_loop();
        }
        if target.ready()? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What an endpoint offers its waiting: one cheap look, the look at its
/// peer, and where it sleeps.
pub(crate) trait Readiness {
    /// Whether the endpoint can act now. Never a system call.
    fn ready(&mut self) -> Result<bool>;
    /// `Err` once the peer is gone or the stream ended (a system call or a
    /// few).
    fn peer_check(&mut self) -> Result<()>;
    /// The shared wait line and this endpoint's futex word in it.
    fn sleep_line(&self) -> (&dyn WakeLine, &AtomicU32);
    /// How long to spin before parking; `None` never parks (busy polling,
    /// which yields to the executor between looks).
    fn spin_time(&self) -> Option<Duration>;
}

/// One endpoint's waiting state, kept in the endpoint (not in a future),
/// so that a future dropped and made again goes on with the same wait.
#[derive(Debug, Default)]
pub(crate) struct Park {
    parked: Option<Parked>,
    /// When the current wait looks at the peer next (`CLOCK_MONOTONIC`
    /// nanoseconds); `None` between waits.
    next_check: Option<u64>,
    /// Until when the current wait spins (`u64::MAX`: busy polling).
    spin_until: u64,
}

impl Park {
    /// `Ready(Ok(()))` once `target` can act, `Ready(Err)` once its peer is
    /// gone and it cannot (what the peer committed first is still ready),
    /// else `Pending` with the task's waker parked. Takes part in tokio's
    /// cooperative budget, as tokio's own channels do, so that a stream that
    /// never runs dry does not starve the other tasks of its thread.
    pub(crate) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        target: &mut impl Readiness,
    ) -> Poll<Result<()>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let outcome = self.poll_inner(cx, target);
        if outcome.is_ready() {
            coop.made_progress();
            self.finish(target);
        }
        outcome
    }

    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
        target: &mut impl Readiness,
    ) -> Poll<Result<()>> {
        if target.ready()? {
            return Poll::Ready(Ok(()));
        }
        if self.next_check.is_none() {
            // A new wait: spin first, as a blocking endpoint does, in this
            // poll for at most MAX_SPIN.
            let start = monotonic_nanos();
            self.next_check = Some(start + FIRST_PEER_CHECK.as_nanos() as u64);
            let spin = target.spin_time();
            self.spin_until = spin.map_or(u64::MAX, |spin| start + spin.as_nanos() as u64);
            // A reply due within a few hundred nanoseconds is seen at once,
            // without a pause (as a blocking waiter does).
            if spin_polls(target, false)? {
                return Poll::Ready(Ok(()));
            }
            let until = start + spin.unwrap_or(MAX_SPIN).min(MAX_SPIN).as_nanos() as u64;
            while monotonic_nanos() < until {
                if spin_polls(target, true)? {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let next_check = self.next_check.expect("set above");
        let now = monotonic_nanos();
        let due = now + CHECK_SLACK.as_nanos() as u64 >= next_check;
        if now < self.spin_until {
            // Still spinning (a longer spin than one poll may hold the
            // thread, or busy polling): look again between the executor's
            // other tasks, and at the peer as often as while parked.
            if due {
                if let Err(gone) = target.peer_check() {
                    return Poll::Ready(if target.ready()? { Ok(()) } else { Err(gone) });
                }
                self.next_check = Some(now + PEER_CHECK_INTERVAL.as_nanos() as u64);
            }
            if spin_polls(target, true)? {
                return Poll::Ready(Ok(()));
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !due && self.parked.as_ref().is_some_and(|p| p.refresh(cx.waker())) {
            return Poll::Pending;
        }
        // Woken, due, or not parked yet: look at the peer, as a blocking
        // endpoint does before every sleep (a close sets no futex word).
        self.parked = None;
        if let Err(gone) = target.peer_check() {
            // What the peer committed before it went is still delivered.
            return Poll::Ready(if target.ready()? { Ok(()) } else { Err(gone) });
        }
        self.next_check = Some(now + PEER_CHECK_INTERVAL.as_nanos() as u64);
        let (line, word) = target.sleep_line();
        announce_sleep(line, word);
        if target.ready()? {
            let (line, word) = target.sleep_line();
            line.stop_sleeping(word);
            return Poll::Ready(Ok(()));
        }
        let check_at = self.next_check.expect("set above");
        let (_, word) = target.sleep_line();
        self.parked = Some(reactor().park(word, cx.waker(), check_at));
        Poll::Pending
    }

    /// Forgets any wait, giving up the reactor place: before the endpoint
    /// is lent out mutably, since whoever borrows it could replace (and so
    /// unmap) the word the reactor would read.
    pub(crate) fn reset(&mut self) {
        self.parked = None;
        self.next_check = None;
    }

    /// Ends a wait: gives up the reactor place and this side's claim on
    /// the futex word (so its peer makes no needless `FUTEX_WAKE`).
    fn finish(&mut self, target: &impl Readiness) {
        if self.parked.take().is_some() {
            let (line, word) = target.sleep_line();
            line.stop_sleeping(word);
        }
        self.next_check = None;
    }
}
