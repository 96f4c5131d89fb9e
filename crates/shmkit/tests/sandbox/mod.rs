//! A private `/dev/shm` for tests that attack it (docs/SECURITY.md).
//!
//! A test runs its scenario in a child that unshares its mount and IPC
//! namespaces and mounts a fresh tmpfs over `/dev/shm`: the symlinks,
//! FIFOs and squatted segments (POSIX and System V) the attacker makes are
//! seen only by the scenario's processes (which inherit the namespaces),
//! and vanish with them, so nothing is left on the host whatever happens.
//!
//! `fs.protected_symlinks`, `fs.protected_regular` and `fs.protected_fifos`
//! are not per mount namespace: a test cannot set them for itself without
//! setting them for the whole machine, so it does not. [`protections`]
//! reports them; at 0 (as on the machine these tests were written on, and
//! in many containers) the kernel does nothing to stop the attacks, and
//! shmkit's own checks are all that is tested. The hard link attack, which
//! `fs.protected_hardlinks=1` stops for unprivileged users, is played by
//! root instead.

#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

/// Moves this process into a new mount namespace with a private, empty
/// tmpfs at `/dev/shm` (mode 1777, as the real one), and a new IPC
/// namespace, so that System V segments made there vanish with it too.
/// Only root may, and
/// only with `CAP_SYS_ADMIN` (a container may withhold it): `Err` says why
/// not, and the caller skips its scenario.
pub fn enter_private_dev_shm() -> Result<(), String> {
    use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
    use rustix::thread::UnshareFlags;
    // SAFETY: only the mount namespace (and with it the fs struct) is
    // unshared, not the file table, so every thread keeps seeing the same
    // descriptors.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWIPC) }.map_err(
        |err| format!("cannot unshare the mount and IPC namespaces ({err}): no CAP_SYS_ADMIN?"),
    )?;
    // Private: nothing mounted here propagates back to the host.
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .expect("make the mounts private");
    mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=1777",
    )
    .expect("mount a private tmpfs over /dev/shm");
    Ok(())
}

/// The kernel's protections of sticky directories, as `name=value` words,
/// for the test's log.
pub fn protections() -> String {
    [
        "protected_symlinks",
        "protected_regular",
        "protected_fifos",
        "protected_hardlinks",
    ]
    .iter()
    .map(|name| {
        let value = std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
            .map_or_else(|_| "?".to_owned(), |v| v.trim().to_owned());
        format!("fs.{name}={value}")
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// A directory outside `/dev/shm` (on the target directory's disk) for a
/// victim's files, removed when dropped.
pub struct OutsideDir(pub PathBuf);

impl OutsideDir {
    /// A fresh directory named for this process and `tag`.
    pub fn new(tag: &str) -> OutsideDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("attack-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        OutsideDir(dir)
    }
}

impl Drop for OutsideDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every regular file in `/dev/shm` that contains `needle`.
pub fn files_containing(needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/dev/shm").unwrap().flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}
