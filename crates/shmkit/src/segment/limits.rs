//! The system's limits on shared memory, as `ipcs -l` shows them, and how
//! much of `/dev/shm` is in use.

use crate::sys::{posix, procfs};

/// The limits that bound segments on this machine (in this IPC namespace,
/// for the System V ones).
///
/// A limit that could not be read is `None`.
///
/// # Example
///
/// ```
/// use shmkit::Kind;
///
/// let limits = shmkit::segment::limits();
/// assert!(limits.page_size >= 4096);
/// if let Some(size) = limits.posix_size {
///     assert!(limits.exceeded_by(Kind::Posix, size + 1).is_some());
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Limits {
    /// `kernel.shmmni`: how many System V segments there may be.
    pub sysv_max_segments: Option<u64>,
    /// `kernel.shmmax`: the largest System V segment, in bytes.
    pub sysv_max_segment_bytes: Option<u64>,
    /// `kernel.shmall`: the pages all System V segments together may use.
    pub sysv_max_total_pages: Option<u64>,
    /// The page size `kernel.shmall` counts in.
    pub page_size: u64,
    /// The size of the tmpfs at `/dev/shm`, in bytes: the bound on each
    /// POSIX segment and on all of them together.
    pub posix_size: Option<u64>,
    /// Bytes of `/dev/shm` in use (by POSIX segments and other files).
    pub posix_used: Option<u64>,
    /// Bytes of `/dev/shm` that this user can still fill.
    pub posix_available: Option<u64>,
}

/// Reads the limits (`/proc/sys/kernel/shm*`, `statvfs("/dev/shm")`); a
/// limit that cannot be read is `None`.
pub fn limits() -> Limits {
    let vfs = posix::usage().ok();
    Limits {
        sysv_max_segments: procfs::sysv_max_segments().ok(),
        sysv_max_segment_bytes: procfs::sysv_max_size().ok(),
        sysv_max_total_pages: procfs::sysv_max_total_pages().ok(),
        page_size: rustix::param::page_size() as u64,
        posix_size: vfs.map(|v| v.size),
        posix_used: vfs.map(|v| v.used),
        posix_available: vfs.map(|v| v.available),
    }
}

impl Limits {
    /// Which limit a segment of `size` bytes of `kind` is over, named as a
    /// user would look it up (`kernel.shmmax`, the size of `/dev/shm`), or
    /// `None` if it is over none of them.
    pub fn exceeded_by(&self, kind: super::Kind, size: u64) -> Option<&'static str> {
        match kind {
            super::Kind::SysV => {
                if self.sysv_max_segment_bytes.is_some_and(|max| size > max) {
                    Some("kernel.shmmax, the largest System V segment")
                } else if self
                    .sysv_max_total_pages
                    .is_some_and(|pages| size.div_ceil(self.page_size) > pages)
                {
                    Some("kernel.shmall, the pages all System V segments may use together")
                } else {
                    None
                }
            }
            super::Kind::Posix => self
                .posix_size
                .is_some_and(|max| size > max)
                .then_some("the size of the /dev/shm file system (a tmpfs)"),
        }
    }
}
