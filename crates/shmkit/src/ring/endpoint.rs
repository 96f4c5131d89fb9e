//! Who holds each end of a ring, and whether they are still alive.
//!
//! Each end has an owner word in the header: 0 when free, else the holder's
//! pid in the low 32 bits and the low 32 bits of its start time (clock ticks
//! since boot, from `/proc/PID/stat`) in the high 32. The pair names one
//! process for good even after its pid is reused, so a dead holder is never
//! mistaken for a live one. (Endpoints must share a pid namespace.)

use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Ordering};
use crate::sys::procfs;

/// The owner word naming this process.
pub(crate) fn this_process() -> Result<u64> {
    let pid = std::process::id();
    let start = procfs::process_start_time(pid).map_err(|source| Error::Os {
        context: "reading this process's start time".to_owned(),
        source,
    })?;
    Ok(owner_word(pid, start))
}

fn owner_word(pid: u32, start_time: u64) -> u64 {
    (start_time & 0xffff_ffff) << 32 | u64::from(pid)
}

/// The pid in an owner word.
pub(crate) fn pid_of(owner: u64) -> u32 {
    owner as u32
}

/// Whether the process an owner word names is still running. A zombie
/// counts as dead: it will never touch the ring again.
pub(crate) fn is_alive(owner: u64) -> bool {
    let pid = pid_of(owner);
    if pid == 0 {
        return false;
    }
    procfs::running_start_time(pid).is_some_and(|start| owner_word(pid, start) == owner)
}

/// Claims an end for `me`: free, or held by a dead process (whose leftovers
/// the caller recovers: see `Producer::open_with`).
pub(crate) fn claim(slot: &AtomicU64, me: u64, ring: &str, endpoint: &'static str) -> Result<()> {
    // Acquire on success: the previous holder's writes to the ring (its
    // last records or head) happen before ours; pairs with the Release in
    // `release` (or, after a crash, with nothing: recovery re-reads).
    let mut current = slot.load(Ordering::Acquire);
    loop {
        if current != 0 && is_alive(current) {
            return Err(Error::InUse {
                ring: ring.to_owned(),
                endpoint,
                pid: pid_of(current),
            });
        }
        match slot.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(now) => current = now,
        }
    }
}

/// Frees an end held by `me`.
pub(crate) fn release(slot: &AtomicU64, me: u64) {
    // SeqCst: in the total order with the other end's release and the
    // close flag, so that of two ends leaving at once at least one sees the
    // other gone and removes the ring (see `Shared::leave`).
    let _ = slot.compare_exchange(me, 0, Ordering::SeqCst, Ordering::Relaxed);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stale_pid_is_not() {
        let me = this_process().unwrap();
        assert_eq!(pid_of(me), std::process::id());
        assert!(is_alive(me));
        // Same pid, different start time: a process that reused the pid.
        assert!(!is_alive(me ^ (1 << 32)));
        assert!(!is_alive(0));
    }

    #[test]
    fn claims_a_free_or_dead_end_but_not_a_live_one() {
        let me = this_process().unwrap();
        let slot = AtomicU64::new(0);
        claim(&slot, me, "r", "producer").unwrap();
        let other = AtomicU64::new(me);
        assert!(matches!(
            claim(&other, me ^ (1 << 32), "r", "producer"),
            Err(Error::InUse { .. })
        ));
        let dead = AtomicU64::new(me ^ (1 << 32));
        claim(&dead, me, "r", "producer").unwrap();
        assert_eq!(dead.load(Ordering::Relaxed), me);
        release(&slot, me);
        assert_eq!(slot.load(Ordering::Relaxed), 0);
    }
}
