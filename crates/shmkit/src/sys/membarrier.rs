//! `membarrier(2)`: a memory barrier on every CPU that runs a thread of a
//! registered process, so that one side of a Dekker-style handshake can
//! pay for the fence that the other side skips.
//! [membarrier(2)](https://man7.org/linux/man-pages/man2/membarrier.2.html)

use std::sync::OnceLock;

use rustix::thread::{membarrier, membarrier_query, MembarrierCommand};

/// `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)`, once per process:
/// lets other processes' [`global_expedited`] barriers reach this one.
/// Returns whether this process can take part (the kernel may lack the
/// command, or a seccomp filter may forbid the call).
pub fn register_global_expedited() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let query = membarrier_query();
        query.contains_command(MembarrierCommand::GlobalExpedited)
            && query.contains_command(MembarrierCommand::RegisterGlobalExpedited)
            && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
    })
}

/// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`: returns once every running
/// thread of every registered process has passed a full memory barrier
/// (threads not running pass one when they are switched in). Costs an
/// inter-processor interrupt per such CPU: microseconds. (Under loom the
/// model's fences stand in for it.)
#[cfg(not(loom))]
pub fn global_expedited() -> std::io::Result<()> {
    Ok(membarrier(MembarrierCommand::GlobalExpedited)?)
}
