//! What names this host to other bridges: its origin id.
//!
//! A bridge's origin id must be the same for every bridge run on one host
//! (so that a restarted bridge carries on the same remote publishers on the
//! other hosts, and two bridges of one host never relay each other's
//! messages into their common topic) and differ between hosts. A host, for
//! topics, is a `/dev/shm`: the id hashes the machine (`/etc/machine-id`,
//! the hostname), the boot (`/proc/sys/kernel/random/boot_id`, since topics
//! do not outlive one) and the `/dev/shm` file system's device and inode,
//! which tell apart two mount namespaces with a tmpfs each on one machine.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;

/// This host's origin id (never 0): the same for every bridge of this
/// host, until it reboots.
///
/// ```
/// let id = shmkit_bridge::origin_id();
/// assert_ne!(id, 0);
/// assert_eq!(id, shmkit_bridge::origin_id());
/// ```
pub fn origin_id() -> u64 {
    let mut hasher = DefaultHasher::new();
    for path in [
        "/etc/machine-id",
        "/proc/sys/kernel/hostname",
        "/proc/sys/kernel/random/boot_id",
    ] {
        std::fs::read(path).unwrap_or_default().hash(&mut hasher);
    }
    if let Ok(meta) = std::fs::metadata("/dev/shm") {
        (meta.dev(), meta.ino()).hash(&mut hasher);
    }
    hasher.finish().max(1)
}
