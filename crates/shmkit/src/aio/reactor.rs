//! The reactor: the threads that sleep on every parked endpoint's futex
//! word for the whole process, and wake the tasks whose words were woken.
//!
//! Endpoints park in *shards* of up to [`SLOTS`] words. Each shard has one
//! thread, started when the shard is first needed, which sleeps in one
//! `futex_waitv` on all its words plus a private *kick* word of its own,
//! and which stops once no endpoint has been parked in its shard for
//! [`IDLE_STOP`] (the shard goes with it; a later park makes a new one).
//! Not at once when the last endpoint leaves: a task that parks and is
//! woken again and again (a ping-pong that sleeps) would otherwise start a
//! thread for every wait. Parking an endpoint adds its word to a
//! shard with room and kicks the shard's thread, which wakes, rebuilds its
//! list and sleeps again; so the cost of parking is one `FUTEX_WAKE` and
//! a round of the reactor thread, and a parked endpoint costs nothing until
//! its peer publishes. A thousand endpoints need eight shards, so eight
//! threads, not a thousand.
//!
//! A registration is one-shot, as a `Waker` is: the thread wakes a task
//! when its word no longer reads 1 (the publisher cleared it before its
//! `FUTEX_WAKE`, rule 8 of `ring::protocol`), when `futex_waitv` names the
//! word as woken, or when the registration's *check time* comes, so that
//! the task looks at its peer's liveness as often as a blocking endpoint
//! does. The task then polls, and parks again if it must.
//!
//! Where `futex_waitv` is missing (Linux before 5.16: `ENOSYS`) or
//! forbidden (a seccomp filter: `EPERM` or `ENOSYS`), or when the
//! environment variable `SHMKIT_REACTOR=polling` says so, each shard's
//! thread instead sleeps on its kick word alone, for a tick that starts at
//! [`MIN_TICK`] after every change and doubles up to [`MAX_TICK`], and
//! looks at its words after each tick. That costs latency (a wake-up is
//! seen up to a tick late) and up to a thousand wake-ups a second per
//! shard with parked endpoints, instead of none.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Duration;

use crate::ring::wait::monotonic_nanos;
use crate::sync::{AtomicU32, Ordering};
use crate::sys::futex::{self as sys_futex, WaitList, WAITV_MAX};

/// Endpoint words per shard: `futex_waitv`'s maximum, less the kick word.
pub(crate) const SLOTS: usize = WAITV_MAX - 1;

/// How early a registration's check time may fire, so that one wake-up of
/// a shard serves every registration due about then.
pub(crate) const CHECK_SLACK: Duration = Duration::from_millis(2);

/// How long a shard's thread stays without a parked endpoint before it
/// stops.
pub(crate) const IDLE_STOP: Duration = Duration::from_secs(1);

/// The polling reactor's shortest and longest tick.
const MIN_TICK: Duration = Duration::from_micros(50);
const MAX_TICK: Duration = Duration::from_millis(1);

/// How the reactor's threads sleep.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use shmkit::aio::{reactor_kind, ReactorKind};
///
/// // Linux 5.16 and later, unless a seccomp filter forbids futex_waitv.
/// println!("{:?}", reactor_kind());
/// # let _ = ReactorKind::Waitv;
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReactorKind {
    /// One `futex_waitv` per shard of up to 127 parked endpoints: a woken
    /// endpoint's task is woken at once, and a parked one costs nothing.
    Waitv,
    /// `futex_waitv` is unavailable (or `SHMKIT_REACTOR=polling`): each
    /// shard's thread looks at its endpoints' words every 50 µs to 1 ms.
    Polling,
}

/// Which kind of reactor this process runs (decided once, at the first
/// call: by `SHMKIT_REACTOR`, else by trying `futex_waitv`).
///
/// ```
/// use shmkit::aio::{reactor_kind, ReactorKind};
///
/// if reactor_kind() == ReactorKind::Polling {
///     eprintln!("futex_waitv is refused here: parked endpoints are polled every millisecond");
/// }
/// ```
pub fn reactor_kind() -> ReactorKind {
    reactor().kind
}

pub(crate) struct Reactor {
    kind: ReactorKind,
    /// How long a shard's thread waits without a parked endpoint before it
    /// stops ([`IDLE_STOP`], shorter in tests).
    idle_stop: Duration,
    shards: Mutex<Vec<Arc<Shard>>>,
}

pub(crate) fn reactor() -> &'static Reactor {
    static REACTOR: OnceLock<Reactor> = OnceLock::new();
    REACTOR.get_or_init(|| Reactor::new(choose_kind(), IDLE_STOP))
}

fn choose_kind() -> ReactorKind {
    if std::env::var_os("SHMKIT_REACTOR").is_some_and(|v| v == "polling") {
        return ReactorKind::Polling;
    }
    // A word that differs from what is expected: a kernel with the call
    // answers EAGAIN at once (`Ok(None)`); one without, or a seccomp
    // filter, refuses.
    let probe = AtomicU32::new(0);
    let mut list = WaitList::default();
    list.push(&probe, 1);
    match list.wait_any(Some(0)) {
        Ok(_) => ReactorKind::Waitv,
        Err(_) => ReactorKind::Polling,
    }
}

/// One thread's set of parked words.
struct Shard {
    /// Bumped (and woken) when the set changes while the thread sleeps.
    kick: AtomicU32,
    state: Mutex<ShardState>,
}

struct ShardState {
    /// `SLOTS` places; a full shard has no `None`.
    entries: Vec<Option<Entry>>,
    /// The thread is (about to be) asleep on the current set: a change
    /// must kick it.
    armed: bool,
    generation: u64,
}

struct Entry {
    /// The endpoint's futex word, in its mapping. Read only under the
    /// shard's lock, while the registration lives: the endpoint outlives
    /// its registration (`Parked` is dropped first, under the lock).
    word: *const AtomicU32,
    waker: Waker,
    /// `CLOCK_MONOTONIC` nanoseconds when the task must look at its peer.
    check_at: u64,
    generation: u64,
}

// SAFETY: `word` is only dereferenced under the shard's lock while the
// registration that put it there is alive (see `Entry::word`); which
// thread does so does not matter, the word is an atomic.
unsafe impl Send for Entry {}

fn lock(state: &Mutex<ShardState>) -> MutexGuard<'_, ShardState> {
    // The lock guards no invariant a panic could break halfway.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An endpoint's place in the reactor, until its word is woken or its
/// check time comes; dropping it gives the place up.
#[derive(Debug)]
pub(crate) struct Parked {
    shard: Arc<Shard>,
    slot: usize,
    generation: u64,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").finish_non_exhaustive()
    }
}

impl Reactor {
    fn new(kind: ReactorKind, idle_stop: Duration) -> Reactor {
        Reactor {
            kind,
            idle_stop,
            shards: Mutex::new(Vec::new()),
        }
    }

    fn lock_shards(&self) -> MutexGuard<'_, Vec<Arc<Shard>>> {
        // As `lock`: no invariant a panic could break halfway.
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many shards (so reactor threads) there are now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.lock_shards().len()
    }

    /// Parks `waker` on `word` (which the caller has set to 1 and checked,
    /// rule 8), to be woken when the word is, or at `check_at`
    /// (`CLOCK_MONOTONIC` nanoseconds).
    ///
    /// The caller keeps the mapping that holds `word` until the returned
    /// `Parked` is dropped.
    pub(crate) fn park(
        &'static self,
        word: NonNull<AtomicU32>,
        waker: &Waker,
        check_at: u64,
    ) -> Parked {
        let mut shards = self.lock_shards();
        for shard in shards.iter() {
            if let Some(parked) = shard.add(word, waker, check_at) {
                return parked;
            }
        }
        let shard = Arc::new(Shard {
            kick: AtomicU32::new(0),
            state: Mutex::new(ShardState {
                entries: (0..SLOTS).map(|_| None).collect(),
                armed: false,
                generation: 0,
            }),
        });
        let parked = shard
            .add(word, waker, check_at)
            .expect("a new shard has room");
        let thread_shard = Arc::clone(&shard);
        let kind = self.kind;
        std::thread::Builder::new()
            .name(format!("shmkit-reactor-{}", shards.len()))
            .spawn(move || thread_shard.run(kind, self))
            .expect("start a reactor thread");
        shards.push(shard);
        parked
    }
}

impl Parked {
    /// Whether this registration still waits; if so, it now wakes `waker`.
    pub(crate) fn refresh(&self, waker: &Waker) -> bool {
        let mut state = lock(&self.shard.state);
        match &mut state.entries[self.slot] {
            Some(entry) if entry.generation == self.generation => {
                if !entry.waker.will_wake(waker) {
                    entry.waker = waker.clone();
                }
                true
            }
            _ => false,
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut state = lock(&self.shard.state);
        let slot = &mut state.entries[self.slot];
        if slot
            .as_ref()
            .is_some_and(|e| e.generation == self.generation)
        {
            *slot = None;
        }
        // The thread may still sleep on the word: a wake-up of it then finds
        // no registration, and the next rebuild drops it. No kick needed.
    }
}

impl Shard {
    /// Takes the shard out of the reactor if no endpoint is parked in it
    /// (under the reactor's lock, which every park takes first, so none
    /// can come): whether its thread is to stop.
    fn stop_if_idle(self: &Arc<Shard>, reactor: &Reactor) -> bool {
        let mut shards = reactor.lock_shards();
        let state = lock(&self.state);
        if state.entries.iter().any(Option::is_some) {
            return false;
        }
        shards.retain(|shard| !Arc::ptr_eq(shard, self));
        true
    }

    fn add(
        self: &Arc<Shard>,
        word: NonNull<AtomicU32>,
        waker: &Waker,
        check_at: u64,
    ) -> Option<Parked> {
        let mut state = lock(&self.state);
        let slot = state.entries.iter().position(Option::is_none)?;
        state.generation += 1;
        let generation = state.generation;
        state.entries[slot] = Some(Entry {
            word: word.as_ptr(),
            waker: waker.clone(),
            check_at,
            generation,
        });
        let kick = state.armed;
        drop(state);
        if kick {
            self.kick.fetch_add(1, Ordering::SeqCst);
            sys_futex::wake_all(&self.kick);
        }
        Some(Parked {
            shard: Arc::clone(self),
            slot,
            generation,
        })
    }

    /// The shard's thread: wakes what is due, then sleeps on the rest;
    /// stops once no endpoint was parked for `reactor.idle_stop`.
    fn run(self: &Arc<Shard>, mut kind: ReactorKind, reactor: &Reactor) {
        let mut list = WaitList::default();
        // The endpoint words of `list`, after its kick word: only compared.
        let mut words: Vec<*const AtomicU32> = Vec::with_capacity(SLOTS);
        let mut due = Vec::new();
        let mut woken: Option<*const AtomicU32> = None;
        let mut tick = MIN_TICK;
        // Since when no endpoint is parked here (`CLOCK_MONOTONIC` ns).
        let mut idle_since: Option<u64> = None;
        loop {
            let slack = CHECK_SLACK.as_nanos() as u64;
            let (kick, deadline, changed) = {
                let mut state = lock(&self.state);
                state.armed = false;
                let now = monotonic_nanos();
                let mut deadline: Option<u64> = None;
                list.clear();
                words.clear();
                let kick = self.kick.load(Ordering::SeqCst);
                list.push(&self.kick, kick);
                let mut freed = 0;
                for place in state.entries.iter_mut() {
                    let Some(entry) = place else { continue };
                    // SAFETY: a live registration's word (see `Entry::word`).
                    let word = unsafe { &*entry.word };
                    let fire = woken == Some(entry.word)
                        || word.load(Ordering::Relaxed) != 1
                        || entry.check_at <= now + slack;
                    if fire {
                        due.push(place.take().expect("matched above").waker);
                        freed += 1;
                    } else {
                        deadline = Some(deadline.map_or(entry.check_at, |d| d.min(entry.check_at)));
                        list.push(entry.word, 1);
                        words.push(entry.word);
                    }
                }
                if list.len() > 1 {
                    idle_since = None;
                } else {
                    let since = *idle_since.get_or_insert(now);
                    let stop_at = since + reactor.idle_stop.as_nanos() as u64;
                    if now >= stop_at && due.is_empty() {
                        drop(state);
                        if self.stop_if_idle(reactor) {
                            return;
                        }
                        continue;
                    }
                    deadline = Some(stop_at);
                }
                state.armed = true;
                (kick, deadline, freed > 0)
            };
            woken = None;
            for waker in due.drain(..) {
                waker.wake();
            }
            match kind {
                ReactorKind::Waitv => match list.wait_any(deadline) {
                    Ok(Some(index)) => woken = index.checked_sub(1).map(|i| words[i]),
                    Ok(_) => {}
                    // EFAULT: a word unmapped since the list was built
                    // (its registration is gone): rebuild.
                    Err(err) if err.raw_os_error() == Some(libc::EFAULT) => {}
                    // Refused now though the probe passed (a filter
                    // installed since): poll from now on.
                    Err(_) => kind = ReactorKind::Polling,
                },
                ReactorKind::Polling => {
                    if changed || list.len() == 1 {
                        tick = MIN_TICK;
                    }
                    let now = monotonic_nanos();
                    let mut nap = match deadline {
                        Some(deadline) => Duration::from_nanos(deadline.saturating_sub(now)),
                        None => Duration::from_secs(3600),
                    };
                    if list.len() > 1 {
                        nap = nap.min(tick);
                        tick = (tick * 2).min(MAX_TICK);
                    }
                    sys_futex::wait(&self.kick, kick, nap);
                    if self.kick.load(Ordering::SeqCst) != kick {
                        tick = MIN_TICK;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Instant;

    use super::*;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(Arc::clone(&count)))
    }

    /// Polls `done` until it holds (another thread gets it there); panics
    /// after a minute.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < give_up, "gave up waiting until {what}");
            std::thread::yield_now();
        }
    }

    /// Far enough that no check time fires during a test.
    fn never() -> u64 {
        monotonic_nanos() + 3_600_000_000_000
    }

    /// Wakes `word` as a publisher does (rule 8): clears it, then wakes.
    fn publish(word: &AtomicU32) {
        word.store(0, Ordering::SeqCst);
        sys_futex::wake_all(word);
    }

    #[test]
    fn two_tasks_parked_on_one_word_are_both_woken() {
        let word = AtomicU32::new(1);
        let (first, first_waker) = counter();
        let (second, second_waker) = counter();
        let _a = reactor().park(NonNull::from(&word), &first_waker, never());
        let _b = reactor().park(NonNull::from(&word), &second_waker, never());
        publish(&word);
        wait_until("both are woken", || {
            first.0.load(Ordering::SeqCst) == 1 && second.0.load(Ordering::SeqCst) == 1
        });
    }

    #[test]
    fn more_than_a_shard_of_parked_words_are_all_woken() {
        let words: Vec<AtomicU32> = (0..SLOTS * 2 + 5).map(|_| AtomicU32::new(1)).collect();
        let (count, waker) = counter();
        let parked: Vec<Parked> = words
            .iter()
            .map(|word| reactor().park(NonNull::from(word), &waker, never()))
            .collect();
        assert!(parked.iter().all(|p| p.refresh(&waker)), "none fired yet");
        for word in &words {
            publish(word);
        }
        wait_until("every word's task is woken", || {
            count.0.load(Ordering::SeqCst) == words.len()
        });
        assert!(parked.iter().all(|p| !p.refresh(&waker)), "all fired");
    }

    #[test]
    fn a_parked_task_is_woken_at_its_check_time() {
        let word = AtomicU32::new(1);
        let (count, waker) = counter();
        let _parked = reactor().park(NonNull::from(&word), &waker, monotonic_nanos() + 5_000_000);
        wait_until("the check time wakes it", || {
            count.0.load(Ordering::SeqCst) == 1
        });
        assert_eq!(word.load(Ordering::SeqCst), 1, "nobody woke the word");
    }

    #[test]
    fn a_word_woken_before_the_reactor_sleeps_on_it_is_not_missed() {
        let word = AtomicU32::new(1);
        let (count, waker) = counter();
        // Cleared between the announce and the park: the reactor finds the
        // word no longer 1 when it builds its list.
        word.store(0, Ordering::SeqCst);
        let _parked = reactor().park(NonNull::from(&word), &waker, never());
        wait_until("it is woken", || count.0.load(Ordering::SeqCst) == 1);
    }

    #[test]
    fn a_shards_thread_stops_once_no_endpoint_was_parked_for_a_while() {
        let idle = Duration::from_millis(20);
        let reactor: &'static Reactor = Box::leak(Box::new(Reactor::new(reactor().kind, idle)));
        let word = AtomicU32::new(1);
        let (count, waker) = counter();
        let parked = reactor.park(NonNull::from(&word), &waker, never());
        assert_eq!(reactor.threads(), 1);
        publish(&word);
        wait_until("it is woken", || count.0.load(Ordering::SeqCst) == 1);
        drop(parked);
        wait_until("the idle shard's thread stops", || reactor.threads() == 0);
        // A later park gets a new shard, and is woken as ever.
        word.store(1, Ordering::SeqCst);
        let _again = reactor.park(NonNull::from(&word), &waker, never());
        assert_eq!(reactor.threads(), 1);
        publish(&word);
        wait_until("it is woken again", || count.0.load(Ordering::SeqCst) == 2);
    }
}
