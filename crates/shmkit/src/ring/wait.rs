//! How an endpoint waits for the other: spin, then sleep on a futex in the
//! shared memory, checking all along that the other side is still alive.
//!
//! Spinning costs a core but answers in nanoseconds; sleeping frees the core
//! but a wake-up costs the waker a system call and the sleeper a trip
//! through the scheduler (tens of microseconds on a small VM). The default,
//! [`Waiting::Adaptive`], spins for about as long as a wake-up is measured
//! to cost, then sleeps: the classic rule that never pays more than twice
//! the best choice in hindsight (the ski-rental argument, as in Karlin et
//! al., "Competitive Randomized Algorithms for Nonuniform Problems", 1994).

use std::time::{Duration, Instant};

use super::layout::WaitLine;
use crate::error::{Error, Result};
use crate::sync::{
    fence, futex_wait, futex_wake, heavy_fence, light_fence, AtomicU32, AtomicU64, Ordering,
};
pub(crate) use crate::sys::clock::monotonic_nanos;

/// How a [`Producer`](super::Producer) or [`Consumer`](super::Consumer)
/// waits when the ring is full or empty.
///
/// ```
/// use std::time::Duration;
/// use shmkit::ring::Waiting;
///
/// let latency_critical = Waiting::BusyPoll;
/// let frugal = Waiting::SpinThenSleep(Duration::from_micros(5));
/// assert_eq!(Waiting::default(), Waiting::Adaptive);
/// # let _ = (latency_critical, frugal);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Waiting {
    /// Never sleep: poll the shared memory until the other side acts. The
    /// lowest latency, for a core dedicated to the endpoint.
    BusyPoll,
    /// Spin for this long, then sleep on the futex until woken.
    SpinThenSleep(Duration),
    /// Spin for about as long as a wake-up costs on this machine (measured
    /// as the endpoint runs), then sleep.
    #[default]
    Adaptive,
}

/// How often a waiting endpoint checks that its peer is alive.
pub(crate) const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Polls between two readings of the clock while spinning. (One under loom,
/// whose model explores every poll.)
const SPINS_PER_CLOCK_READ: u32 = if cfg!(loom) { 1 } else { 64 };

/// Adaptive spinning starts from this guess of a wake-up's cost.
const INITIAL_WAKE_COST: Duration = Duration::from_micros(50);
/// Bounds on the adaptive spin, whatever is measured.
const MIN_SPIN: Duration = Duration::from_micros(2);
const MAX_SPIN: Duration = Duration::from_millis(1);

/// One endpoint's waiting state: its strategy and, when adaptive, its
/// running estimate of what a wake-up costs.
#[derive(Debug)]
pub(crate) struct Waiter {
    waiting: Waiting,
    wake_cost: Duration,
}

impl Waiter {
    pub(crate) fn new(waiting: Waiting) -> Waiter {
        Waiter {
            waiting,
            wake_cost: INITIAL_WAKE_COST,
        }
    }

    fn spin_time(&self) -> Option<Duration> {
        match self.waiting {
            Waiting::BusyPoll => None,
            Waiting::SpinThenSleep(spin) => Some(spin),
            Waiting::Adaptive => Some((self.wake_cost * 2).clamp(MIN_SPIN, MAX_SPIN)),
        }
    }

    /// Waits until `poll` yields a value, the `deadline` passes
    /// (`Error::Timeout` with `ring`), or `peer_check` reports the peer gone
    /// or the stream closed. After `peer_check` fails, `poll` runs once more,
    /// so whatever the peer committed before it went is still delivered.
    /// `peer_check` also runs when the deadline passes, so that a timeout
    /// shorter than [`PEER_CHECK_INTERVAL`] still reports the end.
    ///
    /// `sleeping` is this side's futex word in the ring's wait `line`
    /// (rule 8 of `protocol`).
    pub(crate) fn wait<T>(
        &mut self,
        line: &impl WakeLine,
        sleeping: &AtomicU32,
        deadline: Option<Instant>,
        ring: &str,
        mut poll: impl FnMut() -> Result<Option<T>>,
        mut peer_check: impl FnMut() -> Result<()>,
    ) -> Result<T> {
        if let Some(value) = poll()? {
            return Ok(value);
        }
        let start = Instant::now();
        let timeout = |now: Instant| Error::Timeout {
            ring: ring.to_owned(),
            after: now - start,
        };
        let mut check_peer = |poll: &mut dyn FnMut() -> Result<Option<T>>| match peer_check() {
            Ok(()) => Ok(None),
            Err(gone) => poll()?.map(Some).ok_or(gone),
        };

        // Spin.
        let spin_until = self.spin_time().map(|spin| start + spin);
        let mut next_peer_check = start + PEER_CHECK_INTERVAL;
        loop {
            for _ in 0..SPINS_PER_CLOCK_READ {
                std::hint::spin_loop();
                if let Some(value) = poll()? {
                    return Ok(value);
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                // Out of time: look at the peer first, or a caller polling
                // with short timeouts would never learn of a close or death.
                return check_peer(&mut poll)?.ok_or_else(|| timeout(now));
            }
            if now >= next_peer_check {
                if let Some(value) = check_peer(&mut poll)? {
                    return Ok(value);
                }
                next_peer_check = now + PEER_CHECK_INTERVAL;
            }
            if spin_until.is_some_and(|s| now >= s) {
                break;
            }
        }

        // Sleep (rule 8 of `protocol`).
        loop {
            sleeping.store(1, Ordering::Relaxed);
            // The heavy half of the asymmetric fence: orders the store of 1
            // before the check below, and forces the publisher's CPU to
            // order its publishing store before its load of `sleeping`;
            // pairs with the light fence in `RingRef::wake_if_sleeping`.
            if !heavy_fence() {
                line.full_fences().store(1, Ordering::Relaxed);
            }
            if let Some(value) = poll()? {
                line.stop_sleeping(sleeping);
                return Ok(value);
            }
            let now = Instant::now();
            let mut nap = PEER_CHECK_INTERVAL;
            if let Some(deadline) = deadline {
                if now >= deadline {
                    sleeping.store(0, Ordering::Relaxed);
                    // As in the spin loop.
                    return check_peer(&mut poll)?.ok_or_else(|| timeout(now));
                }
                nap = nap.min(deadline - now);
            }
            let slept_at = monotonic_nanos();
            futex_wait(sleeping, 1, nap);
            // Relaxed: only a measurement; a stale stamp is filtered below.
            let stamp = line.woken_at().load(Ordering::Relaxed);
            let woke = monotonic_nanos();
            if stamp > slept_at && woke >= stamp {
                self.learn_wake_cost(Duration::from_nanos(woke - stamp));
            }
            if let Some(value) = poll()? {
                line.stop_sleeping(sleeping);
                return Ok(value);
            }
            match check_peer(&mut poll) {
                Ok(None) => {}
                done => {
                    sleeping.store(0, Ordering::Relaxed);
                    return done.map(|value| value.expect("Ok(None) is matched above"));
                }
            }
        }
    }

    /// Folds one measured wake-up into the estimate (an exponential moving
    /// average with weight 1/4, so one slow wake-up does not dominate).
    fn learn_wake_cost(&mut self, cost: Duration) {
        self.wake_cost = (self.wake_cost * 3 + cost) / 4;
    }
}

/// The words that sleepers and wakers of one shared structure share besides
/// each sleeper's own futex word: the `full_fences` flag and the `woken_at`
/// stamp (rule 8 of `ring::protocol`). The ring's wait line has them, and so
/// has a topic's; [`Waiter::wait`] and [`wake_if_sleeping`] work on either.
pub(crate) trait WakeLine {
    /// 1 if some endpoint cannot use `membarrier` (then both sides fence).
    fn full_fences(&self) -> &AtomicU32;
    /// `CLOCK_MONOTONIC` nanoseconds of the last wake-up call.
    fn woken_at(&self) -> &AtomicU64;
    /// A sleeper found what it waited for without being woken: a ring's
    /// sleeper clears its word (it is the word's only sleeper). A topic's
    /// subscribers share one word, so one leaves it for the next waker to
    /// clear: clearing it could make a waker skip a wake-up that another
    /// sleeper still needs (costing it a nap), where leaving it costs at
    /// most one spare `FUTEX_WAKE`.
    fn stop_sleeping(&self, sleeping: &AtomicU32) {
        sleeping.store(0, Ordering::Relaxed);
    }
}

impl WakeLine for WaitLine {
    fn full_fences(&self) -> &AtomicU32 {
        &self.full_fences
    }

    fn woken_at(&self) -> &AtomicU64 {
        &self.woken_at
    }
}

/// The publishing half of rule 8 of `ring::protocol`: after a store that a
/// sleeper on `sleeping` waits for, wakes every sleeper on it with one
/// `FUTEX_WAKE` if the word says one sleeps, and makes no system call if
/// none does.
#[inline]
pub(crate) fn wake_if_sleeping(line: &impl WakeLine, sleeping: &AtomicU32) {
    // Orders our publishing store (a record word, a position) before the
    // load of `sleeping`. Normally the light half of an asymmetric fence (a
    // compiler fence), paired with the sleeper's membarrier in
    // `Waiter::wait`, which forces a full barrier on this CPU; a SeqCst
    // fence if some endpoint cannot use membarrier (`full_fences`).
    if line.full_fences().load(Ordering::Relaxed) != 0 {
        fence(Ordering::SeqCst);
    } else {
        light_fence();
    }
    if sleeping.load(Ordering::Relaxed) != 0 {
        sleeping.store(0, Ordering::Relaxed);
        line.woken_at().store(monotonic_nanos(), Ordering::Relaxed);
        futex_wake(sleeping);
    }
}
