//! The one seam for model checking: atomics, fences (including the two
//! halves of an asymmetric fence) and the futex that the ring's protocol
//! uses, from `std` and the kernel normally and from `loom`
//! under `cfg(loom)`.
//!
//! Under loom the futex is modelled by a mutex and a condition variable with
//! the kernel's semantics (the value is compared under the lock that wakers
//! take), and it never times out, so a lost wake-up shows as a deadlock that
//! loom reports.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// The cheap half of an asymmetric fence, for the side that runs on every
/// message: only keeps the compiler from reordering. Orders a store before
/// a later load together with a [`heavy_fence`] on the other side, which
/// forces a barrier on this side's CPU (see `sys::membarrier`).
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn light_fence() {
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// The expensive half of an asymmetric fence, for the side about to sleep:
/// a barrier on every CPU running a registered process. Returns false if
/// membarrier failed and only this CPU's fence (SeqCst) was issued; the
/// other side must then use full fences too.
#[cfg(not(loom))]
pub(crate) fn heavy_fence() -> bool {
    if crate::sys::membarrier::register_global_expedited()
        && crate::sys::membarrier::global_expedited().is_ok()
    {
        return true;
    }
    fence(Ordering::SeqCst);
    false
}

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Under loom both halves are SeqCst fences: the model checks the
/// handshake; membarrier's guarantee is the kernel's.
#[cfg(loom)]
pub(crate) fn light_fence() {
    fence(Ordering::SeqCst);
}

#[cfg(loom)]
pub(crate) fn heavy_fence() -> bool {
    fence(Ordering::SeqCst);
    true
}

use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout`; may return early.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    crate::sys::futex::wait(word, expected, timeout);
}

/// Wakes every sleeper on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32) {
    crate::sys::futex::wake_all(word);
}

#[cfg(loom)]
loom::lazy_static! {
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Duration) {
    let guard = FUTEX.0.lock().unwrap();
    if word.load(Ordering::SeqCst) == expected {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}

#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32) {
    let _guard = FUTEX.0.lock().unwrap();
    FUTEX.1.notify_all();
}
