//! Futexes in shared memory: `FUTEX_WAIT` and `FUTEX_WAKE`.
//!
//! The words live in segments mapped by several processes, so these calls
//! never pass `FUTEX_PRIVATE_FLAG`: a private futex is keyed by this
//! process's address space and would never see the other process's wake.
//! See [futex(2)](https://man7.org/linux/man-pages/man2/futex.2.html).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// `futex(word, FUTEX_WAIT, expected, timeout)`: sleeps while `*word ==
/// expected`, until a wake, the timeout, or a signal. Returns at once if the
/// word already differs. Callers re-check their condition, since any return
/// may be spurious.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = futex::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // EAGAIN (value differed), ETIMEDOUT and EINTR all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&timeout));
}

/// `futex(word, FUTEX_WAKE, INT_MAX)`: wakes every process sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}
