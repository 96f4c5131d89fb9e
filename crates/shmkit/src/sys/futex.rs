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

/// A list of futex words to sleep on at once with [`WaitList::wait_any`]
/// (`futex_waitv`, Linux 5.16+), each with the value it is expected to
/// hold.
#[cfg(feature = "tokio")]
#[derive(Debug, Default)]
pub struct WaitList(Vec<futex::Wait>);

/// The most words one `futex_waitv` call takes (the kernel's
/// `FUTEX_WAITV_MAX`).
#[cfg(feature = "tokio")]
pub const WAITV_MAX: usize = 128;

// SAFETY: the list holds only addresses and values, which the kernel reads;
// nothing in this process dereferences them.
#[cfg(feature = "tokio")]
unsafe impl Send for WaitList {}

#[cfg(feature = "tokio")]
impl WaitList {
    /// Empties the list.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Adds `word`, expected to hold `expected`. The kernel reads the word
    /// only during [`wait_any`](WaitList::wait_any); an address that is no
    /// longer mapped then makes that call fail with `EFAULT`, nothing worse.
    pub fn push(&mut self, word: *const AtomicU32, expected: u32) {
        let mut wait = futex::Wait::new();
        wait.val = u64::from(expected);
        wait.uaddr = futex::WaitPtr::new(word.cast_mut().cast());
        // Shared (not FUTEX2_PRIVATE): the words live in segments that
        // other processes map and wake, as for `wait`.
        wait.flags = futex::WaitFlags::SIZE_U32;
        self.0.push(wait);
    }

    /// How many words the list holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `futex_waitv(list, len, 0, deadline, CLOCK_MONOTONIC)`: sleeps until
    /// a word of the list is woken, or `deadline` (`CLOCK_MONOTONIC`
    /// nanoseconds) passes. Returns at once if a word already differs from
    /// its expected value. `Ok(Some(index))` names one woken word (others
    /// may have been woken too); `Ok(None)` means "look again" (a word
    /// differed, the deadline passed, a signal); `Err` is the kernel's
    /// refusal: `ENOSYS` before Linux 5.16, `EPERM` or `ENOSYS` from a
    /// seccomp filter, `EFAULT` for an unmapped word.
    pub fn wait_any(&self, deadline: Option<u64>) -> std::io::Result<Option<usize>> {
        let deadline = deadline.map(|nanos| futex::Timespec {
            tv_sec: (nanos / 1_000_000_000) as i64,
            tv_nsec: (nanos % 1_000_000_000) as i64,
        });
        match futex::waitv(
            &self.0,
            futex::WaitvFlags::empty(),
            deadline.as_ref(),
            rustix::time::ClockId::Monotonic,
        ) {
            Ok(index) => Ok(Some(index)),
            Err(
                rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT | rustix::io::Errno::INTR,
            ) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }
}
