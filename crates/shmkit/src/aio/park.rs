//! How one async endpoint waits: spin, as a blocking endpoint does (in
//! the poll for at most 50 µs, then, if its `Waiting` says to spin longer,
//! between the executor's other tasks: the task stays runnable), then
//! announce sleep on its futex word (rule 8 of
//! `ring::protocol`), look once more, and park the task's waker in the
//! reactor; look at the peer before every park and whenever the reactor
//! says a check is due, every [`PEER_CHECK_INTERVAL`] as a blocking
//! endpoint does.
//!
//! A verb tries first ([`Park::poll_act`]): its act is the blocking
//! endpoint's own non-waiting step, which either takes (or reserves) in
//! this poll or does nothing; only when it does nothing does the endpoint
//! wait, and a wait takes nothing either: it only finds out that the
//! endpoint can act (a message is there, or room for one), and the act
//! runs again in the same poll, without a further `.await`. So a dropped
//! future has consumed nothing and reserved nothing, and a message that is
//! already there costs one look at the ring, as in the blocking verbs. Its registration stays with the endpoint
//! (the next wait takes it over, or it fires once at a task that no longer
//! waits, which is harmless).

use std::ptr::NonNull;
use std::task::{Context, Poll};
use std::time::Duration;

use super::reactor::{reactor, Parked, CHECK_SLACK};
use crate::error::Result;
use crate::ring::wait::{
    announce_sleep, monotonic_nanos, spin_polls, stamped_for, Waiter, WakeLine, FIRST_PEER_CHECK,
    PEER_CHECK_INTERVAL,
};
use crate::sync::{AtomicU32, Ordering};

/// Spinning inside a poll holds up the executor's thread: a wait's spin
/// lasts at most this long, whatever the endpoint's
/// [`Waiting`](crate::ring::Waiting) says. (A ring endpoint's first looks
/// before it, the blocking endpoint's own, add their few hundred pauses.)
const MAX_SPIN: Duration = Duration::from_micros(50);

/// The longest time from a peer's wake-up call to the task's next poll
/// that `learn_wake_cost` takes for a wake-up's cost: half the blocking
/// waiter's longest spin (twice the cost), so that no sample alone takes
/// the spin to its cap.
const LONGEST_WAKE_SAMPLE: Duration = Duration::from_micros(500);

/// Verbs an endpoint completes without waiting before it yields to the
/// executor once (tokio's own budget per task poll is 128 too), so that a
/// stream that never runs dry does not starve the other tasks of its
/// thread. Counted in the endpoint rather than through tokio's
/// `coop::poll_proceed`, whose two thread-local accesses per verb cost
/// about 30 instructions of a message's send or receive (`async_cost`:
/// 410 against 349 per 64 B send and receive).
const BUDGET: u8 = 128;

/// `target`'s looks in one round of [`spin_polls`]: whether one found it
/// ready.
fn spin(target: &mut impl Readiness, pause: bool) -> Result<bool> {
    let found = spin_polls(pause, &mut || Ok(target.ready()?.then_some(())))?;
    Ok(found.is_some())
}

/// What an endpoint offers its waiting: one cheap look, the look at its
/// peer, and where it sleeps.
pub(crate) trait Readiness {
    /// Whether the endpoint can act now. Never a system call.
    fn ready(&mut self) -> Result<bool>;
    /// `Err` once the peer is gone or the stream ended (a system call or a
    /// few).
    fn peer_check(&mut self) -> Result<()>;
    /// The shared wait line and this endpoint's futex word in it (which
    /// may depend on the endpoint's state: a client with too many calls
    /// due sleeps on its responses, else on room for a request).
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32);
    /// The endpoint's blocking waiter, whose spin its async waits follow
    /// too.
    fn waiter(&mut self) -> &mut Waiter;
    /// How long to spin before parking; `None` never parks (busy polling,
    /// which yields to the executor between looks).
    fn spin_time(&mut self) -> Option<Duration> {
        self.waiter().spin_time()
    }
    /// Folds one measured wake-up of this waiter (from the peer's wake-up
    /// call to the task's next poll) into what `spin_time` says: the
    /// endpoint's blocking `Waiter`, which an adaptive endpoint's spin
    /// follows (the others ignore it).
    fn learn_wake_cost(&mut self, cost: Duration) {
        self.waiter().learn_wake_cost(cost);
    }
}

/// The word a wait announced sleep on, and its line: kept from the
/// announce to the end of the wait, so that the word cleared is the word
/// set, whatever the endpoint's state says by then.
#[derive(Debug)]
struct Announced {
    line: NonNull<dyn WakeLine>,
    word: NonNull<AtomicU32>,
}

// SAFETY: the pointers are dereferenced only by the `Park` that holds
// them, under `&mut` of the endpoint that owns their mapping (see
// `Park::stop_sleeping`); which thread does so does not matter, the word
// is an atomic and the line's other words are too.
unsafe impl Send for Announced {}
// SAFETY: as for `Send`: a shared `Park` never dereferences them.
unsafe impl Sync for Announced {}

/// One endpoint's waiting state, kept in the endpoint (not in a future),
/// so that a future dropped and made again goes on with the same wait.
#[derive(Debug)]
pub(crate) struct Park {
    parked: Option<Parked>,
    /// The word this side said it sleeps on, until it says it no longer
    /// does (or the peer clears it).
    announced: Option<Announced>,
    /// When the current wait looks at the peer next (`CLOCK_MONOTONIC`
    /// nanoseconds); `None` between waits.
    next_check: Option<u64>,
    /// Until when the current wait spins (`u64::MAX`: busy polling).
    spin_until: u64,
    /// Verbs this endpoint may still do before it yields (see [`BUDGET`]),
    /// and the one gate of [`quick`](Park::quick): 0 while a wait is
    /// under way, which keeps its count in `left_at_wait`.
    left: u8,
    left_at_wait: u8,
    /// When this side last parked (`CLOCK_MONOTONIC` nanoseconds), until
    /// its next poll measures the wake-up, if one came; 0 otherwise.
    parked_at: u64,
}

impl Default for Park {
    fn default() -> Park {
        Park {
            parked: None,
            announced: None,
            next_check: None,
            spin_until: 0,
            left: BUDGET,
            left_at_wait: 0,
            parked_at: 0,
        }
    }
}

impl Park {
    /// Tries `act` on `target` (the verb's own non-waiting step, which
    /// takes what it returns or does nothing: `Ok(None)`), and waits while
    /// it does nothing: `Ready(Ok(value))` once it acted, `Ready(Err)` once
    /// `act` fails or the peer is gone and `act` still finds nothing (what
    /// the peer committed first is still had), else `Pending` with the
    /// task's waker parked; `Pending` (woken at once) after [`BUDGET`]
    /// verbs done without a wait, before acting.
    #[inline]
    pub(crate) fn poll_act<T: Readiness, R>(
        &mut self,
        cx: &mut Context<'_>,
        target: &mut T,
        mut act: impl FnMut(&mut T) -> Result<Option<R>>,
    ) -> Poll<Result<R>> {
        if self.left == 0 && self.next_check.is_none() {
            self.left = BUDGET;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.parked_at != 0 {
            self.learn_wake_cost(target);
        }
        loop {
            // Each outcome is returned where it is made: a `Result` with
            // an `Error` in it is large, and moving it costs.
            match act(target) {
                Ok(Some(value)) => {
                    self.ended();
                    return Poll::Ready(Ok(value));
                }
                Ok(None) => {}
                Err(err) => {
                    self.ended();
                    return Poll::Ready(Err(err));
                }
            }
            match self.poll_wait(cx, target) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => {
                    self.ended();
                    return Poll::Ready(Err(err));
                }
            }
        }
    }

    /// The verb's common case (a message at the head, room at the tail),
    /// tried before anything else of the park while no wait is under way
    /// and the budget has room: `quick` takes what it returns, or says
    /// nothing (`None`), and the verb goes on with
    /// [`poll_act`](Park::poll_act), called out of line. One test of one
    /// byte, so that a verb's future stays small enough to inline into the
    /// caller's loop.
    #[inline(always)]
    pub(crate) fn quick<R>(&mut self, quick: impl FnOnce() -> Option<R>) -> Option<R> {
        // `left` is 0 while a wait is under way, so that a verb that waited
        // is completed by `poll_act`, which ends the wait.
        if self.left == 0 {
            return None;
        }
        let value = quick()?;
        self.left -= 1;
        Some(value)
    }

    /// A verb is done: ends its wait if it waited, and counts it.
    #[inline]
    fn ended(&mut self) {
        if self.next_check.is_some() {
            self.finish();
        }
        self.left = self.left.saturating_sub(1);
    }

    /// `Ready(Ok(()))` once `target` can act, as [`poll_act`](Park::poll_act)
    /// with an act that only looks: for the public `poll_*` methods, which
    /// leave the acting to the caller.
    pub(crate) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        target: &mut impl Readiness,
    ) -> Poll<Result<()>> {
        self.poll_act(cx, target, |target| Ok(target.ready()?.then_some(())))
    }

    /// The wait of `poll_act`, after `act` found nothing: `Ready(Ok(()))`
    /// once `target` is ready, `Ready(Err)` once its peer is gone and it is
    /// not, else `Pending`.
    #[cold]
    fn poll_wait(&mut self, cx: &mut Context<'_>, target: &mut impl Readiness) -> Poll<Result<()>> {
        if self.next_check.is_none() {
            // A new wait: spin first, as a blocking endpoint does, in this
            // poll for at most MAX_SPIN.
            let start = monotonic_nanos();
            self.next_check = Some(start + FIRST_PEER_CHECK.as_nanos() as u64);
            // Until the wait ends, `quick` is closed.
            self.left_at_wait = self.left;
            self.left = 0;
            let spin_time = target.spin_time();
            self.spin_until = spin_time.map_or(u64::MAX, |s| start + s.as_nanos() as u64);
            // A reply due within a few hundred nanoseconds is seen at once,
            // without a pause (as a blocking waiter does).
            if spin(target, false)? {
                return Poll::Ready(Ok(()));
            }
            let until = start + spin_time.unwrap_or(MAX_SPIN).min(MAX_SPIN).as_nanos() as u64;
            while monotonic_nanos() < until {
                if spin(target, true)? {
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
            if spin(target, true)? {
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
        if self
            .announced
            .as_ref()
            .is_some_and(|a| a.word != NonNull::from(word))
        {
            // The endpoint sleeps on another word now: say this side no
            // longer sleeps on the old one.
            self.stop_sleeping();
        }
        announce_sleep(line, word);
        let word = NonNull::from(word);
        self.announced = Some(Announced {
            line: NonNull::from(line),
            word,
        });
        if target.ready()? {
            return Poll::Ready(Ok(()));
        }
        self.parked = Some(reactor().park(word, cx.waker(), self.next_check.expect("set above")));
        self.parked_at = monotonic_nanos();
        Poll::Pending
    }

    /// A poll after a park: if the peer's wake-up call came since (the
    /// line's `woken_at` stamp is later than the park) and was for this
    /// side's word (the waker cleared it), how long it took to reach this
    /// poll is a sample of this waiter's wake-up cost, which an adaptive
    /// endpoint spins for twice, as a blocking one does for its own.
    ///
    /// To this poll, not to the reactor thread's wake-up: what parking
    /// costs a wait, against spinning through it, is the time from the
    /// peer's wake-up call until the task can act, which is the reactor
    /// thread's wake-up, then the task's waker and the executor's thread
    /// (a second wake-up when that thread sleeps, as it does while its
    /// only task is parked), as a blocking waiter's sample runs until its
    /// own thread is back from `futex_wait`. The reactor's half alone
    /// would teach a spin too short by the other half.
    ///
    /// A poll with no wake-up since (a check time, another branch of a
    /// `select!`) is none, and leaves the park to a later one; so is a
    /// stamp that left this side's word set, which was another word's (a
    /// topic's publishers and subscribers stamp one line), or is followed
    /// by another sleeper's announce on the same word.
    ///
    /// A stamp for the other word of the line (`wake_stamp` marks which)
    /// is none either. Not filtered, on a topic: a stamp written after this
    /// side's word was cleared but before this poll for this word again
    /// (another subscriber announced and was woken). The sample then runs
    /// from that later stamp and is too short. A ring's two ends and a
    /// service's header line have no second sleeper on a word, so their
    /// samples are exact.
    #[cold]
    fn learn_wake_cost(&mut self, target: &mut impl Readiness) {
        let Some(Announced { line, word }) = &self.announced else {
            self.parked_at = 0;
            return;
        };
        // SAFETY: as in `stop_sleeping`: the line and word are in the
        // mapping of the endpoint that holds this park, mapped while the
        // endpoint lives.
        let (line, word) = unsafe { (line.as_ref(), word.as_ref()) };
        // Relaxed: only a measurement; a stale stamp is filtered below.
        let stamp = line.woken_at().load(Ordering::Relaxed);
        // The waker clears the word, then stamps the line with the word it
        // woke (`wake_stamp`), both Relaxed: this side may see the stamp
        // before the cleared word, which only loses a sample.
        if stamp <= self.parked_at || word.load(Ordering::Relaxed) != 0 || !stamped_for(stamp, word)
        {
            return;
        }
        self.parked_at = 0;
        let now = monotonic_nanos();
        // A poll that came late for another reason (the task busy in
        // another branch of a `select!`, queued behind other tasks) is no
        // wake-up cost: past the longest spin it would teach, it says more
        // of the executor than of the wake-up, and is left out.
        if now >= stamp && now - stamp <= LONGEST_WAKE_SAMPLE.as_nanos() as u64 {
            target.learn_wake_cost(Duration::from_nanos(now - stamp));
        }
    }

    /// Forgets any wait, giving up the reactor place and this side's claim
    /// on its futex word: before the endpoint is lent out mutably, since
    /// whoever borrows it could replace (and so unmap) the words the
    /// reactor and this park would read.
    pub(crate) fn reset(&mut self) {
        self.finish();
    }

    /// Ends a wait: gives up the reactor place and this side's claim on
    /// the futex word it announced (so its peer makes no needless
    /// `FUTEX_WAKE`).
    fn finish(&mut self) {
        self.parked = None;
        self.parked_at = 0;
        self.stop_sleeping();
        if self.next_check.take().is_some() {
            self.left = self.left_at_wait;
        }
    }

    /// Says this side no longer sleeps on the word it announced, if any.
    fn stop_sleeping(&mut self) {
        if let Some(Announced { line, word }) = self.announced.take() {
            // SAFETY: the word and line are in the mapping of the endpoint
            // that holds this park, which is mapped while the endpoint
            // lives: every call here comes from the endpoint's own methods
            // (a verb's poll, `get_mut` before lending it out), never from
            // a drop after the mapping went (the park is declared before
            // the endpoint, and its drop dereferences nothing).
            let (line, word) = unsafe { (line.as_ref(), word.as_ref()) };
            line.stop_sleeping(word);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;
    use crate::ring::wait::wake_stamp;
    use crate::ring::Waiting;
    use crate::sync::{AtomicU64, Ordering};

    /// A wait line with two futex words, as a service client's state
    /// chooses between its response ring and room in its request ring.
    #[derive(Default)]
    #[repr(C)]
    struct TwoWords {
        full_fences: AtomicU32,
        woken_at: AtomicU64,
        first: AtomicU32,
        second: AtomicU32,
    }

    impl WakeLine for TwoWords {
        fn full_fences(&self) -> &AtomicU32 {
            &self.full_fences
        }
        fn woken_at(&self) -> &AtomicU64 {
            &self.woken_at
        }
    }

    /// An endpoint that sleeps on the first word until its state moves on
    /// (as a client's does when a look takes a response): then on the
    /// second.
    struct Switching<'a> {
        line: &'a TwoWords,
        on_second: bool,
        /// Ready at the first look that finds the word it sleeps on set
        /// (the look after the announce), and moves on to the second.
        ready_once_announced: bool,
        ready: bool,
        waiter: Waiter,
    }

    impl Readiness for Switching<'_> {
        fn ready(&mut self) -> Result<bool> {
            if self.ready_once_announced && self.sleep_line().1.load(Ordering::SeqCst) == 1 {
                self.on_second = true;
                return Ok(true);
            }
            if self.ready {
                self.on_second = true;
            }
            Ok(self.ready)
        }
        fn peer_check(&mut self) -> Result<()> {
            Ok(())
        }
        fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
            let word = if self.on_second {
                &self.line.second
            } else {
                &self.line.first
            };
            (self.line as &(dyn WakeLine + 'static), word)
        }
        fn waiter(&mut self) -> &mut Waiter {
            &mut self.waiter
        }
    }

    fn line() -> &'static TwoWords {
        Box::leak(Box::default())
    }

    /// A waiter that parks at once, without a spin.
    fn no_spin() -> Waiter {
        Waiter::new(Waiting::SpinThenSleep(Duration::ZERO))
    }

    /// An endpoint that sleeps on the first word, never ready, and keeps
    /// the wake-up costs it is taught.
    struct Learning<'a> {
        line: &'a TwoWords,
        learned: Vec<Duration>,
        waiter: Waiter,
    }

    impl Readiness for Learning<'_> {
        fn ready(&mut self) -> Result<bool> {
            Ok(false)
        }
        fn peer_check(&mut self) -> Result<()> {
            Ok(())
        }
        fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
            (self.line as &(dyn WakeLine + 'static), &self.line.first)
        }
        fn waiter(&mut self) -> &mut Waiter {
            &mut self.waiter
        }
        fn learn_wake_cost(&mut self, cost: Duration) {
            self.learned.push(cost);
        }
    }

    #[test]
    fn a_parked_wait_learns_from_a_wake_up_of_its_own_word_not_of_another_on_its_line() {
        let line = line();
        let mut target = Learning {
            line,
            learned: Vec::new(),
            waiter: no_spin(),
        };
        let mut park = Park::default();
        let mut cx = Context::from_waker(Waker::noop());
        // A round whose thread was preempted between the stamp and the poll
        // gives a sample too long to learn from: a few rounds.
        for _round in 0..20 {
            assert!(park.poll_ready(&mut cx, &mut target).is_pending());
            assert_eq!(line.first.load(Ordering::SeqCst), 1, "parked on the first");
            // The other word of the line is woken (a topic's subscriber
            // waking its publishers): stamped, this word still set.
            let other = wake_stamp(monotonic_nanos(), &line.second);
            line.woken_at.store(other, Ordering::SeqCst);
            assert!(park.poll_ready(&mut cx, &mut target).is_pending());
            assert!(target.learned.is_empty(), "{:?}", target.learned);
            // Its own word is woken, as a waker does: cleared, then stamped.
            line.first.store(0, Ordering::SeqCst);
            let own = wake_stamp(monotonic_nanos(), &line.first);
            line.woken_at.store(own, Ordering::SeqCst);
            assert!(park.poll_ready(&mut cx, &mut target).is_pending());
            if !target.learned.is_empty() {
                assert_eq!(target.learned.len(), 1, "one sample a wake-up");
                return;
            }
            park.reset();
        }
        panic!("no wake-up of its own word was learned in 20 rounds");
    }

    /// Its own word cleared and stamped, then the line stamped again for
    /// the other word before this side's poll (a publisher woken too): the
    /// later stamp is not taken for this side's wake-up.
    #[test]
    fn a_stamp_for_the_other_word_after_its_own_wake_up_teaches_nothing() {
        let line = line();
        let mut target = Learning {
            line,
            learned: Vec::new(),
            waiter: no_spin(),
        };
        let mut park = Park::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(park.poll_ready(&mut cx, &mut target).is_pending());
        line.first.store(0, Ordering::SeqCst);
        line.woken_at
            .store(wake_stamp(monotonic_nanos(), &line.first), Ordering::SeqCst);
        line.woken_at.store(
            wake_stamp(monotonic_nanos(), &line.second),
            Ordering::SeqCst,
        );
        assert!(park.poll_ready(&mut cx, &mut target).is_pending());
        assert!(target.learned.is_empty(), "{:?}", target.learned);
        // The two words' stamps differ in their lowest bit.
        let t = monotonic_nanos();
        assert_ne!(wake_stamp(t, &line.first), wake_stamp(t, &line.second));
        assert!(stamped_for(wake_stamp(t, &line.first), &line.first));
        assert!(!stamped_for(wake_stamp(t, &line.second), &line.first));
    }

    #[test]
    fn a_wait_that_ends_after_its_announce_clears_the_word_it_set_not_the_one_its_state_names_now()
    {
        let line = line();
        let mut target = Switching {
            line,
            on_second: false,
            ready_once_announced: true,
            ready: false,
            waiter: no_spin(),
        };
        let mut park = Park::default();
        let mut cx = Context::from_waker(Waker::noop());
        let polled = park.poll_ready(&mut cx, &mut target);
        assert!(matches!(polled, Poll::Ready(Ok(()))), "{polled:?}");
        assert!(target.on_second, "the look after the announce moved it on");
        assert_eq!(line.first.load(Ordering::SeqCst), 0, "the word announced");
        assert_eq!(line.second.load(Ordering::SeqCst), 0, "never announced");
    }

    #[test]
    fn a_parked_wait_woken_after_its_state_moved_on_clears_the_word_it_parked_on() {
        let line = line();
        let mut target = Switching {
            line,
            on_second: false,
            ready_once_announced: false,
            ready: false,
            waiter: no_spin(),
        };
        let mut park = Park::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(park.poll_ready(&mut cx, &mut target).is_pending());
        assert_eq!(line.first.load(Ordering::SeqCst), 1, "parked on the first");
        // The task is polled again (its check time, a select!): now ready,
        // and its state names the other word.
        target.ready = true;
        assert!(matches!(
            park.poll_ready(&mut cx, &mut target),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(line.first.load(Ordering::SeqCst), 0, "the word parked on");
        assert_eq!(line.second.load(Ordering::SeqCst), 0, "never announced");
    }
}
