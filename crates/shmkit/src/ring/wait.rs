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
//!
//! That argument assumes the wait does not depend on the choice, and in a
//! stream it does: a side that wakes its sleeping peer (on its first
//! publish) keeps going until the ring is full or empty, then waits for the
//! peer, which is still waking up. If the wake-up takes longer than filling
//! or draining the ring plus the spin, the side goes to sleep just before
//! the peer arrives, the peer's first publish wakes it, and the two take
//! turns: one wake-up per ring of messages, each side asleep half the time
//! (traced with `perf record -e 'syscalls:sys_enter_futex'`: every sleep
//! of each side began a few microseconds before the other's wake-up
//! returned). So while a wake-up this side issued is still in flight, an
//! adaptive waiter keeps spinning: the peer is on its way, and sleeping now
//! only makes it wake this side again ([`Waiter::peer_on_its_way`]).

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
/// Whichever way it waits (unless it may not spin at all,
/// `SpinThenSleep(Duration::ZERO)`, or its deadline has passed), a consumer
/// that finds its ring empty first pauses for at most 512 ns before it
/// looks again, so that a producer in full flow gets whole cache lines
/// ahead instead of handing each record over on its own (a 64 B stream
/// runs two to three times as fast). It learns a shorter pause, down to
/// 64 ns, when the pause keeps a lone message (a reply) waiting; a one-way
/// message that comes during a pause waits at most its length. Likewise a
/// producer whose room for a message of up to 4 KiB leaves less than
/// 4 KiB free pauses (16 looks at most, 32 spin-loop hints apart) until its
/// consumer has freed that much.
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
    /// lowest latency, for a core dedicated to the endpoint (a consumer
    /// too pauses first, as above: in a round trip its pause learns to end
    /// before the reply comes, but a lone one-way message may wait up to
    /// 512 ns more).
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

/// How far into a wait the first check of the peer comes: late enough that
/// the short waits of a stream or a ping-pong make no system call, soon
/// enough that a closed or dead peer is reported at once to a person.
pub(crate) const FIRST_PEER_CHECK: Duration = Duration::from_micros(50);

/// Polls between two readings of the clock while spinning. (One under loom,
/// whose model explores every poll.)
const SPINS_PER_CLOCK_READ: u32 = if cfg!(loom) { 1 } else { 64 };

/// Adaptive spinning starts from this guess of a wake-up's cost.
const INITIAL_WAKE_COST: Duration = Duration::from_micros(50);
/// Bounds on the adaptive spin, whatever is measured.
const MIN_SPIN: Duration = Duration::from_micros(2);
const MAX_SPIN: Duration = Duration::from_millis(1);

/// A peer woken less than this many wake-up costs ago (by the running
/// estimate) is taken to be on its way; wake-ups vary widely, so a few.
const WAKE_UPS_IN_FLIGHT: u32 = 4;

/// One endpoint's waiting state: its strategy and, when adaptive, its
/// running estimate of what a wake-up costs.
#[derive(Debug)]
pub(crate) struct Waiter {
    waiting: Waiting,
    wake_cost: Duration,
    /// The ring's `woken_at` when this side last left its sleep: a later
    /// stamp is a wake-up this side issued (only a sleeper is woken).
    seen_wake: u64,
}

impl Waiter {
    pub(crate) fn new(waiting: Waiting) -> Waiter {
        Waiter {
            waiting,
            wake_cost: INITIAL_WAKE_COST,
            seen_wake: 0,
        }
    }

    /// Adaptive waiting only: if this side woke its peer at `stamp` (the
    /// ring's `woken_at`, later than any wake-up this side received) and
    /// that is less than a few wake-up costs before `now` (both
    /// `CLOCK_MONOTONIC` nanoseconds), the peer is still waking up: until
    /// when to keep spinning for it. At most [`PEER_CHECK_INTERVAL`] after
    /// the wake-up, so that a peer that died meanwhile is noticed as ever.
    fn peer_on_its_way(&self, stamp: u64, now: u64) -> Option<u64> {
        if self.waiting != Waiting::Adaptive || stamp <= self.seen_wake {
            return None;
        }
        let in_flight = (self.wake_cost * WAKE_UPS_IN_FLIGHT).clamp(MAX_SPIN, PEER_CHECK_INTERVAL);
        let until = stamp.saturating_add(in_flight.as_nanos() as u64);
        (now < until).then_some(until)
    }

    /// Whether a wait until `deadline` takes its first looks (the
    /// consumer's inlined polls, the producer's unhurried looks) before
    /// [`wait`](Waiter::wait): not when it may not spin at all
    /// (`SpinThenSleep(0)`) or its deadline has passed already (a
    /// `*_timeout` verb given zero looks once, in `wait`).
    pub(crate) fn looks_first(&self, deadline: Option<Instant>) -> bool {
        self.spin_time() != Some(Duration::ZERO) && deadline.is_none_or(|d| Instant::now() < d)
    }

    pub(crate) fn spin_time(&self) -> Option<Duration> {
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
    /// `peer_check` runs [`FIRST_PEER_CHECK`] into the wait (an ended stream
    /// is reported that soon), every [`PEER_CHECK_INTERVAL`] while spinning, before every
    /// sleep (so a close that came while spinning is not slept through),
    /// and when the deadline passes.
    ///
    /// `sleeping` is this side's futex word in the ring's wait `line`
    /// (rule 8 of `protocol`).
    pub(crate) fn wait<T>(
        &mut self,
        line: &impl WakeLine,
        sleeping: &AtomicU32,
        deadline: Option<Instant>,
        place: &str,
        mut poll: impl FnMut() -> Result<Option<T>>,
        mut peer_check: impl FnMut() -> Result<()>,
    ) -> Result<T> {
        // No poll first: every caller has just polled once (its fast path,
        // which skips this call's set-up) and found nothing.
        let start = Instant::now();
        let timeout = |now: Instant| Error::Timeout {
            place: place.to_owned(),
            after: now - start,
        };
        let mut check_peer = |poll: &mut dyn FnMut() -> Result<Option<T>>| match peer_check() {
            Ok(()) => Ok(None),
            Err(gone) => poll()?.map(Some).ok_or(gone),
        };

        // Spin. The first look at the peer comes after FIRST_PEER_CHECK, not
        // at once: it costs system calls (a lock query, an fstat), and most
        // waits of a busy stream or a ping-pong end within a microsecond.
        let mut spin_until = self.spin_time().map(|spin| start + spin);
        let mut next_peer_check = start + FIRST_PEER_CHECK;
        if let Some(value) = spin_polls(false, &mut poll)? {
            return Ok(value);
        }
        loop {
            if let Some(value) = spin_polls(true, &mut poll)? {
                return Ok(value);
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
                // Relaxed: a hint; a stale stamp only ends the spin sooner.
                let stamp = line.woken_at().load(Ordering::Relaxed);
                let clock = monotonic_nanos();
                let on_its_way = line.two_ended().then(|| self.peer_on_its_way(stamp, clock));
                match on_its_way.flatten() {
                    Some(until) => {
                        let left = Duration::from_nanos(until - clock);
                        spin_until = Some(now + left);
                    }
                    None => break,
                }
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
                self.seen_wake = line.woken_at().load(Ordering::Relaxed);
                return Ok(value);
            }
            // The peer check before the sleep: the other side's close (or
            // leaving) sets no futex word, so look before sleeping on it.
            match check_peer(&mut poll) {
                Ok(None) => {}
                done => {
                    sleeping.store(0, Ordering::Relaxed);
                    return done.map(|value| value.expect("Ok(None) is matched above"));
                }
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
            if stamp > slept_at && woke >= stamp && stamped_for(stamp, sleeping) {
                self.learn_wake_cost(Duration::from_nanos(woke - stamp));
            }
            // Every wake-up stamped so far was the peer's, or for this side.
            self.seen_wake = stamp;
            if let Some(value) = poll()? {
                line.stop_sleeping(sleeping);
                return Ok(value);
            }
        }
    }

    /// Folds one measured wake-up into the estimate (an exponential moving
    /// average with weight 1/4, so one slow wake-up does not dominate).
    /// The async waiter (`crate::aio`) folds in its own wake-ups too.
    pub(crate) fn learn_wake_cost(&mut self, cost: Duration) {
        self.wake_cost = (self.wake_cost * 3 + cost) / 4;
    }
}

/// One round of spinning between two readings of the clock: up to
/// [`SPINS_PER_CLOCK_READ`] polls, each after a pause if `pause`, until one
/// yields a value. [`Waiter::wait`] spins in these, and so does the async
/// waiter (`crate::aio`), so that both look as often.
#[inline]
pub(crate) fn spin_polls<T>(
    pause: bool,
    poll: &mut impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    for _ in 0..SPINS_PER_CLOCK_READ {
        if pause {
            std::hint::spin_loop();
        }
        if let Some(value) = poll()? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// As many polls as [`Waiter::wait`] makes before its first look at the
/// clock (twice [`SPINS_PER_CLOCK_READ`]), each after a pause, for a
/// caller whose `poll` is small enough to inline and says `Some` when
/// the wait is over, before it calls `wait` (whose polls then start
/// again). What a message found here saves is the way out of `wait`: a
/// call per poll, and a `Result` handed back through each level. In a
/// round trip, where each side waits a few hundred nanoseconds, that was
/// 18-20 ns of 330-360 at 8 B (`ring_cost ab`), and at 64 B 7-17 ns in
/// some runs, none in others. Every poll follows a pause: without the
/// pauses of the first 64 (as `wait`'s first polls go) a 64 B round trip
/// was 5-13 ns shorter still, but those polls came several times as often
/// as the waiter's own (a call each), and a consumer waiting for the next
/// record of a stream takes that record's line from the producer each
/// time; the 8 B streams of the runs beside that version looked slower.
/// Bounded by the count, not the clock (a pause takes about 14 ns here):
/// a wait with a short spin or a near deadline spins that much longer
/// before its first look at the clock; one whose deadline has passed, or
/// that may not spin, skips this ([`Waiter::looks_first`]).
#[inline(always)]
pub(crate) fn spin_first<T>(mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..2 * SPINS_PER_CLOCK_READ {
        std::hint::spin_loop();
        if let Some(value) = poll() {
            return Some(value);
        }
    }
    None
}

/// The longest and the shortest pause of a consumer that has caught up
/// with its producer, before it looks at the ring again ([`Slip`]). None
/// under loom, whose model explores every poll and has no clock.
const MAX_SLIP_NANOS: u32 = if cfg!(loom) { 0 } else { 512 };
const MIN_SLIP_NANOS: u32 = if cfg!(loom) { 0 } else { 64 };
/// What a slip grows by after a wait that outlasted it.
const SLIP_STEP_NANOS: u32 = 16;

/// A consumer's pause on finding its ring empty, before its first look:
/// temporal slipping, as in FastForward (Giacomoni, Moseley and
/// Vachharajani, PPoPP 2008), with a length it learns.
///
/// A consumer that looks again at once polls the very line its producer is
/// filling, so each record crosses between the CPUs on its own and each
/// look takes the line back from the producer's next store: the two settle
/// into the slow pace of a stream (see docs/PERFORMANCE.md, "Streaming").
/// A consumer that pauses lets the producer fill whole lines meanwhile;
/// the stream then runs at the pace of its slower side, and the consumer
/// stops waiting at all once that is its own.
///
/// A pause costs a request–response nothing while it is shorter than the
/// reply takes to come, and a one-way message that comes during one waits
/// at most its length. So the length adapts to what follows it:
/// - a pause that ended with a message there already, and more after it
///   (the consumer took several records before it waited again), found a
///   stream: it doubles, up to [`MAX_SLIP_NANOS`];
/// - one that ended with a message there already, the only one, may have
///   kept a reply waiting: it halves, down to [`MIN_SLIP_NANOS`];
/// - one that ended before its message came cost nothing: it grows by
///   [`SLIP_STEP_NANOS`], up to the maximum.
#[derive(Debug)]
pub(crate) struct Slip {
    nanos: u32,
    /// The consumer's `head` when its last wait began.
    head_at_wait: u64,
    /// Whether the last pause ended with a message there already.
    filled: bool,
}

impl Slip {
    pub(crate) fn new() -> Slip {
        Slip {
            nanos: MAX_SLIP_NANOS,
            head_at_wait: 0,
            filled: false,
        }
    }

    /// Pauses, as a wait begins at `head` with the ring empty, after a last
    /// record of `last_size` bytes.
    #[inline]
    pub(crate) fn pause(&mut self, head: u64, last_size: u64) {
        self.learn(head, last_size);
        if self.nanos == 0 {
            return;
        }
        let until = monotonic_nanos() + u64::from(self.nanos);
        while monotonic_nanos() < until {
            std::hint::spin_loop();
        }
    }

    /// The length of the pause of a wait beginning at `head`, from what
    /// the consumer took since the last one began (positions only grow, so
    /// more than `last_size` bytes is more than one record; padding at a
    /// wrap may count as one more).
    fn learn(&mut self, head: u64, last_size: u64) {
        if self.filled {
            self.nanos = if head.wrapping_sub(self.head_at_wait) <= last_size {
                (self.nanos / 2).max(MIN_SLIP_NANOS)
            } else {
                (self.nanos * 2).min(MAX_SLIP_NANOS)
            };
        }
        self.head_at_wait = head;
    }

    /// After the pause: whether the first look found a message.
    #[inline]
    pub(crate) fn ended(&mut self, found: bool) {
        self.filled = found;
        if !found {
            self.nanos = (self.nanos + SLIP_STEP_NANOS).min(MAX_SLIP_NANOS);
        }
    }
}

/// The first half of rule 8 of `protocol` for a waiter that sleeps
/// elsewhere than in [`Waiter::wait`] (the async reactor, `crate::aio`):
/// says this side sleeps on `sleeping` and issues the heavy fence. The
/// caller then polls once more before it sleeps, and calls
/// [`WakeLine::stop_sleeping`] if that poll finds what it waits for.
#[cfg(feature = "tokio")]
pub(crate) fn announce_sleep(line: &(impl WakeLine + ?Sized), sleeping: &AtomicU32) {
    sleeping.store(1, Ordering::Relaxed);
    // As in `Waiter::wait`.
    if !heavy_fence() {
        line.full_fences().store(1, Ordering::Relaxed);
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
    /// Whether the line has two ends that wake only each other, so that a
    /// wake-up stamp a side did not receive is one it issued: true for a
    /// ring (see [`Waiter::peer_on_its_way`]); a topic's many publishers
    /// and subscribers stamp it too, so not for a topic.
    fn two_ended(&self) -> bool {
        false
    }
}

impl WakeLine for WaitLine {
    fn full_fences(&self) -> &AtomicU32 {
        &self.full_fences
    }

    fn woken_at(&self) -> &AtomicU64 {
        &self.woken_at
    }

    fn two_ended(&self) -> bool {
        true
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
        line.woken_at()
            .store(wake_stamp(monotonic_nanos(), sleeping), Ordering::Relaxed);
        futex_wake(sleeping);
    }
}

/// The `woken_at` stamp of a wake-up of `sleeping` at `nanos`: the time,
/// its lowest bit replaced by which of its line's two words was woken (the
/// word's address bit 2: the two sleeping words of a wait line are
/// neighbouring `u32`s). A sleeper learns a wake-up's cost only from a
/// stamp of its own word ([`stamped_for`]): a topic's line is stamped for
/// its publishers' word and its subscribers' alike. A nanosecond of the
/// time is all it costs, in a stamp that is only a measurement.
pub(crate) fn wake_stamp(nanos: u64, sleeping: &AtomicU32) -> u64 {
    (nanos & !1) | word_bit(sleeping)
}

/// Whether `stamp` was written for a wake-up of `sleeping` (see
/// [`wake_stamp`]).
pub(crate) fn stamped_for(stamp: u64, sleeping: &AtomicU32) -> bool {
    stamp & 1 == word_bit(sleeping)
}

fn word_bit(sleeping: &AtomicU32) -> u64 {
    ((sleeping as *const AtomicU32 as usize >> 2) & 1) as u64
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A wait of `slip` beginning at `head`, its pause ending with a
    /// message there if `found`: the pause's length.
    fn slip_wait(slip: &mut Slip, head: u64, found: bool) -> u32 {
        slip.learn(head, RECORD);
        let nanos = slip.nanos;
        slip.ended(found);
        nanos
    }
    const RECORD: u64 = 72;

    #[test]
    fn a_slip_that_finds_a_stream_stays_long() {
        let mut slip = Slip::new();
        let mut head = 0;
        for _ in 0..100 {
            assert_eq!(slip_wait(&mut slip, head, true), MAX_SLIP_NANOS);
            // Ten records were there after each pause.
            head += 10 * RECORD;
        }
    }

    #[test]
    fn a_slip_that_keeps_replies_waiting_shortens_then_grows_back_while_they_come_later() {
        let mut slip = Slip::new();
        let mut head = 0;
        let mut lengths = Vec::new();
        // Each reply is there when the pause ends, and it is the only one.
        for _ in 0..6 {
            lengths.push(slip_wait(&mut slip, head, true));
            head += RECORD;
        }
        assert_eq!(lengths, [512, 256, 128, 64, 64, 64]);
        // The replies come after the pauses: each grows by a step.
        let grown: Vec<u32> = (0..3)
            .map(|_| {
                let nanos = slip_wait(&mut slip, head, false);
                head += RECORD;
                nanos
            })
            .collect();
        assert_eq!(grown, [64, 80, 96]);
        // A stream again: the pause doubles back to the longest.
        slip_wait(&mut slip, head, true);
        head += 8 * RECORD;
        assert_eq!(slip_wait(&mut slip, head, true), 224);
        head += 8 * RECORD;
        assert_eq!(slip_wait(&mut slip, head, true), 448);
        head += 8 * RECORD;
        assert_eq!(slip_wait(&mut slip, head, true), MAX_SLIP_NANOS);
    }

    #[test]
    fn a_slip_never_outgrows_its_bounds() {
        let mut slip = Slip::new();
        for step in 0..1000 {
            slip_wait(&mut slip, step * RECORD, false);
            assert!(slip.nanos <= MAX_SLIP_NANOS);
        }
        for step in 1000..2000 {
            slip_wait(&mut slip, step * RECORD, true);
            assert!(slip.nanos >= MIN_SLIP_NANOS);
        }
    }

    #[test]
    fn a_wake_up_this_side_issued_keeps_it_spinning_until_the_peer_is_due() {
        let mut waiter = Waiter::new(Waiting::Adaptive);
        waiter.wake_cost = Duration::from_micros(500);
        waiter.seen_wake = 10 * MS;
        // This side woke the peer at 20 ms: four wake-ups' worth (2 ms).
        assert_eq!(waiter.peer_on_its_way(20 * MS, 21 * MS), Some(22 * MS));
        assert_eq!(waiter.peer_on_its_way(20 * MS, 22 * MS), None);
        // The stamp of the wake-up that woke this side is not in flight.
        assert_eq!(waiter.peer_on_its_way(10 * MS, 10 * MS + 1), None);
        assert_eq!(waiter.peer_on_its_way(5 * MS, 5 * MS + 1), None);
    }

    #[test]
    fn the_wait_for_a_woken_peer_is_bounded() {
        let mut waiter = Waiter::new(Waiting::Adaptive);
        // Cheap wake-ups: at least the longest ordinary spin.
        waiter.wake_cost = Duration::from_micros(1);
        assert_eq!(waiter.peer_on_its_way(MS, MS + 1), Some(2 * MS));
        // Dear ones: at most until the next check of the peer's liveness.
        waiter.wake_cost = Duration::from_secs(1);
        let most = PEER_CHECK_INTERVAL.as_nanos() as u64;
        assert_eq!(waiter.peer_on_its_way(MS, MS + 1), Some(MS + most));
    }

    #[test]
    fn only_adaptive_waiting_waits_for_a_woken_peer() {
        for waiting in [Waiting::BusyPoll, Waiting::SpinThenSleep(Duration::ZERO)] {
            let waiter = Waiter::new(waiting);
            assert_eq!(waiter.peer_on_its_way(MS, MS + 1), None, "{waiting:?}");
        }
    }
}
