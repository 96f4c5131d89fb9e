//! The system-wide monotonic clock: `clock_gettime(CLOCK_MONOTONIC)`.
//!
//! Unlike `std::time::Instant`, its readings mean the same in every process,
//! so one process can stamp a time in shared memory and another subtract it.
//! [clock_gettime(2)](https://man7.org/linux/man-pages/man2/clock_gettime.2.html)

use rustix::time::{clock_gettime, ClockId};

/// Nanoseconds of `CLOCK_MONOTONIC` (served by the vDSO, no system call).
pub fn monotonic_nanos() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
