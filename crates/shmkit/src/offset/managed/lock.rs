//! The heap's lock: a futex word in the header, held by a lease (an OFD
//! lock on a byte range of the segment's file) or, for System V, a pid,
//! with the dirty mark that tells the next holder a change was cut short.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{
    Holder, ManagedSegment, DIRTY_AT, LEASES_AT, LIVENESS_AFTER, LOCK_AT, LOCK_NAMESPACE_AT,
    LOCK_PATIENCE, LOCK_START_AT, WAITERS_AT,
};
use crate::error::{Error, Result};
// The heap's lock is not part of the loom model, so it uses the kernel's
// futex directly rather than the `sync` seam.
use crate::sys::futex::{wait as futex_wait, wake_all as futex_wake};
use crate::sys::procfs;

impl ManagedSegment {
    /// Whether the lock holder `holder` (a lease number or, for System V,
    /// a pid) is alive; when that cannot be decided, it counts as alive.
    /// A lock word that damage or a hostile peer filled with a number no
    /// live handle holds counts as free, not held forever.
    pub(super) fn holder_alive(&self, holder: u32) -> Result<bool> {
        if let Holder::Lease { .. } = self.holder {
            let held = self.segment.range_held(LEASES_AT + u64::from(holder), 1);
            return Ok(held != Some(false));
        }
        let start = self
            .mapping
            .atomic_u64(LOCK_START_AT)?
            .load(Ordering::Relaxed);
        let namespace = self
            .mapping
            .atomic_u64(LOCK_NAMESPACE_AT)?
            .load(Ordering::Relaxed);
        if namespace != 0 && namespace != self.pid_namespace {
            // Its pid means nothing here; the kernel's attach count says
            // whether any other process could still be holding the lock.
            return Ok(self.others_attached());
        }
        let running = procfs::running_start_time(holder)
            .is_some_and(|now| (start == 0 || now == start) && procfs::maps(holder, &self.backing));
        if namespace != 0 || running {
            return Ok(running);
        }
        // Not written yet: the holder is between its swap and its stores,
        // or died there, and may be in another pid namespace, where this
        // pid names someone else. Alive if it may be this process, or while
        // another process has the segment attached.
        Ok(holder == self.pid || self.others_attached())
    }

    /// Whether a process other than this one has the System V segment
    /// attached: its attach count is over our own mappings of it. True
    /// when either cannot be read.
    pub(super) fn others_attached(&self) -> bool {
        let Some(id) = self.segment.id() else {
            return true;
        };
        let attached = procfs::sysv_rows()
            .ok()
            .and_then(|rows| rows.into_iter().find(|row| row.id == id))
            .map(|row| row.nattch);
        let ours = procfs::mapping_count(self.pid, &self.backing).ok();
        match (attached, ours) {
            (Some(attached), Some(ours)) => attached > ours,
            _ => true,
        }
    }

    pub(super) fn lock(&self) -> Result<HeapLock<'_>> {
        let word = self.mapping.atomic_u32(LOCK_AT)?;
        let waiters = self.mapping.atomic_u32(WAITERS_AT)?;
        let holder_start = self.mapping.atomic_u64(LOCK_START_AT)?;
        let holder_namespace = self.mapping.atomic_u64(LOCK_NAMESPACE_AT)?;
        let me = self.holder_id();
        let mut spins = 0u32;
        // The holder we have been waiting for, and since when.
        let mut waiting_for: Option<(u32, Instant)> = None;
        loop {
            // Acquire on success: the previous holder's changes to the heap
            // happen before ours; pairs with the Release swap in
            // HeapLock::drop. Acquire on failure too: we then read the
            // holder's start time and namespace, and the releaser's clearing
            // of them (made before its swap) must be visible, or we would
            // pair a new holder's pid with the previous holder's.
            match word.compare_exchange(0, me, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(holder) => {
                    if waiting_for.is_none_or(|(seen, _)| seen != holder) {
                        waiting_for = Some((holder, Instant::now()));
                    }
                    let held_for = waiting_for.map_or(Duration::ZERO, |(_, since)| since.elapsed());
                    // A holder keeps the lock for microseconds; only one
                    // that has kept it a while is looked at (the check costs
                    // more than the wait).
                    if held_for >= LIVENESS_AFTER && !self.holder_alive(holder)? {
                        // The dead holder's start time must not outlive it:
                        // between our swap below and our own start time, a
                        // waiter would pair our pid with it and steal from
                        // us. Cleared first, it reads as "not written yet".
                        holder_start.store(0, Ordering::Relaxed);
                        holder_namespace.store(0, Ordering::Relaxed);
                        // Acquire: as above, for what the dead holder wrote.
                        // Release: publishes the clearing to waiters that
                        // read our id with Acquire.
                        if word
                            .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            break;
                        }
                        continue;
                    }
                    // A live holder that keeps the lock this long is stopped
                    // or starved: a busy heap, worth retrying, not damage.
                    if held_for >= LOCK_PATIENCE {
                        return Err(Error::Busy {
                            segment: self.segment.to_string(),
                            after: held_for,
                        });
                    }
                    if spins < 100 {
                        spins += 1;
                        std::hint::spin_loop();
                        continue;
                    }
                    // SeqCst: orders our count before the futex's check of
                    // the word; pairs with the SeqCst swap and load in
                    // HeapLock::drop, so an unlock either sees us or we
                    // see it.
                    waiters.fetch_add(1, Ordering::SeqCst);
                    // Bounded, to notice a holder that dies while we sleep.
                    futex_wait(word, holder, LIVENESS_AFTER);
                    waiters.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if let Holder::Pid = self.holder {
            holder_start.store(self.start_time, Ordering::Relaxed);
            holder_namespace.store(self.pid_namespace, Ordering::Relaxed);
        }
        let lock = HeapLock { heap: self };
        if self.mapping.atomic_u32(DIRTY_AT)?.load(Ordering::Relaxed) != 0 {
            return Err(Error::Corrupt(format!(
                "{}: a process died while changing this heap; its links cannot be trusted",
                self.segment
            )));
        }
        Ok(lock)
    }
}

/// Holds the heap's lock; dropping it unlocks.
pub(super) struct HeapLock<'a> {
    heap: &'a ManagedSegment,
}

impl HeapLock<'_> {
    /// Marks the heap as being changed until the returned guard is dropped:
    /// if this process dies first, the next holder of the lock finds the
    /// mark.
    pub(super) fn change(&self) -> Result<Change<'_>> {
        let dirty = self.heap.mapping.atomic_u32(DIRTY_AT)?;
        dirty.store(1, Ordering::Relaxed);
        Ok(Change { dirty })
    }
}

impl Drop for HeapLock<'_> {
    fn drop(&mut self) {
        let (Ok(word), Ok(waiters)) = (
            self.heap.mapping.atomic_u32(LOCK_AT),
            self.heap.mapping.atomic_u32(WAITERS_AT),
        ) else {
            return;
        };
        // Cleared before the lock is free, so that a process that sees the
        // next holder's pid never pairs it with our start time or namespace.
        for at in [LOCK_START_AT, LOCK_NAMESPACE_AT] {
            if let Ok(field) = self.heap.mapping.atomic_u64(at) {
                field.store(0, Ordering::Relaxed);
            }
        }
        // Release: our changes (and the clearing above) happen before the
        // next holder's; pairs with the Acquire in `lock`. SeqCst: see the
        // waiters' count there.
        word.swap(0, Ordering::SeqCst);
        if waiters.load(Ordering::SeqCst) != 0 {
            futex_wake(word);
        }
    }
}

/// A change in progress; see [`HeapLock::change`]. Dropping it clears the
/// mark, also after an error midway (the links it left are validated on
/// every use, like any other); only a process that dies keeps it set.
pub(super) struct Change<'a> {
    dirty: &'a AtomicU32,
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.dirty.store(0, Ordering::Relaxed);
    }
}
