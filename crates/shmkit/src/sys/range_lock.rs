//! Open file description locks on byte ranges: `fcntl(F_OFD_SETLK)`,
//! `F_OFD_SETLKW` and `F_OFD_GETLK`. Kernel-tracked liveness.
//!
//! An OFD lock belongs to an open file description, not to a process: the
//! kernel drops it when the last descriptor of that description closes,
//! which happens when its owner dies however it dies (SIGKILL included).
//! Whether a range is locked is asked of the kernel, so the answer is right
//! whatever pid namespace (or container sharing `/dev/shm`) the owner runs
//! in. `F_OFD_GETLK` reports `l_pid = -1` for OFD locks, so the question is
//! "is it held", never "by which pid".
//!
//! Locks are advisory and need not lie inside the file: a range past its
//! end is fine and touches no byte of the mapping.
//!
//! System V segments have no descriptor, so they cannot carry these locks;
//! see [`crate::offset::ManagedSegment`] for how its lock decides liveness
//! there.
//!
//! [fcntl(2), "Open file description locks"](https://man7.org/linux/man-pages/man2/fcntl.2.html)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// An exclusive OFD lock on `len` bytes of a file from `start`, held until
/// dropped or until its owner dies.
///
/// The lock holds an open file description of its own (a reopening of the
/// file through `/proc/self/fd`), so it conflicts with every other lock,
/// including other `RangeLock`s of this process, and [`is_locked`] through
/// any other descriptor sees it. (Locks of one description never conflict
/// with each other, and a test through the holder's own description would
/// report the range free.)
///
/// Children: the descriptor is close-on-exec, but a child made by `fork`
/// holds a copy of it until it execs or exits (`Command::spawn` by any
/// thread makes one for a moment; a child forked without `exec` for its
/// whole life). Dropping the lock in the process that took it releases the
/// range at once all the same (an explicit unlock of the description, which
/// the copies share). A holder that dies without dropping it stays a holder
/// while such a child lives: the child shares its mappings too, and counts
/// as alive in its place (rule 6: undecidable means alive). A child that
/// drops its copy releases nothing.
#[derive(Debug)]
pub struct RangeLock {
    /// Held for its lock: unlocked on drop, and closed; on the holder's
    /// death the kernel releases the range once no copy of it is open.
    description: OwnedFd,
    /// The process that took the lock, the only one whose drop unlocks it.
    taker: rustix::process::Pid,
}

impl RangeLock {
    /// `fcntl(F_OFD_SETLKW, F_WRLCK)` on a fresh description of `file`:
    /// waits until the range is free, then takes it.
    ///
    /// # Errors
    ///
    /// `EACCES` if the file may not be opened for writing (an exclusive lock
    /// needs a writable description), `EINVAL` for an empty or too large
    /// range, and what `open` or `fcntl` report.
    pub fn lock(file: impl AsFd, start: u64, len: u64) -> io::Result<RangeLock> {
        let description = reopen(file.as_fd())?;
        loop {
            match set(description.as_fd(), libc::F_OFD_SETLKW, start, len) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                other => other?,
            }
            return Ok(RangeLock::taken(description));
        }
    }

    /// `fcntl(F_OFD_SETLK, F_WRLCK)` on a fresh description of `file`: takes
    /// the range if it is free, or returns `None` at once if any other
    /// description holds a lock that overlaps it.
    ///
    /// # Errors
    ///
    /// As [`lock`](RangeLock::lock).
    pub fn try_lock(file: impl AsFd, start: u64, len: u64) -> io::Result<Option<RangeLock>> {
        let description = reopen(file.as_fd())?;
        match set(description.as_fd(), libc::F_OFD_SETLK, start, len) {
            Ok(()) => Ok(Some(RangeLock::taken(description))),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl RangeLock {
    fn taken(description: OwnedFd) -> RangeLock {
        RangeLock {
            description,
            taker: rustix::process::getpid(),
        }
    }
}

impl Drop for RangeLock {
    fn drop(&mut self) {
        // Closing our descriptor alone would leave the lock to any copy a
        // forked child still holds. The description holds only this lock,
        // so all of it is unlocked. An error leaves it to the close: there
        // is nothing else to do.
        if rustix::process::getpid() == self.taker {
            let _ = set_kind(
                self.description.as_fd(),
                libc::F_OFD_SETLK,
                libc::F_UNLCK,
                0,
                i64::MAX as u64,
            );
        }
    }
}

/// `fcntl(F_OFD_GETLK, F_WRLCK)`: whether any open file description other
/// than `file`'s holds a lock (shared or exclusive) overlapping `len` bytes
/// from `start`. A lock held through `file`'s own description is not seen.
///
/// # Errors
///
/// `EINVAL` for an empty or too large range, `EBADF` for a bad descriptor.
/// A caller deciding liveness treats an error as "held" (undecidable means
/// alive).
pub fn is_locked(file: impl AsFd, start: u64, len: u64) -> io::Result<bool> {
    let mut query = flock(libc::F_WRLCK, start, len)?;
    // SAFETY: F_OFD_GETLK reads and writes one `struct flock`, which `query`
    // is, valid and exclusively ours for the call.
    let rc = unsafe {
        libc::fcntl(
            file.as_fd().as_raw_fd(),
            libc::F_OFD_GETLK,
            &mut query as *mut libc::flock,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(query.l_type != libc::F_UNLCK as libc::c_short)
}

/// `open("/proc/self/fd/N", O_RDWR | O_CLOEXEC)`: a new open file
/// description of the same file (unlike `dup`, which shares one).
fn reopen(file: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    Ok(rustix::fs::open(
        path.as_str(),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `fcntl(cmd, F_WRLCK)` on the range: `F_OFD_SETLK` or `F_OFD_SETLKW`.
fn set(description: BorrowedFd<'_>, cmd: libc::c_int, start: u64, len: u64) -> io::Result<()> {
    set_kind(description, cmd, libc::F_WRLCK, start, len)
}

/// `fcntl(cmd, kind)` on the range: a lock (`F_WRLCK`) or an unlock
/// (`F_UNLCK`).
fn set_kind(
    description: BorrowedFd<'_>,
    cmd: libc::c_int,
    kind: libc::c_int,
    start: u64,
    len: u64,
) -> io::Result<()> {
    let lock = flock(kind, start, len)?;
    // SAFETY: F_OFD_SETLK(W) reads one `struct flock`, which `lock` is; the
    // descriptor is borrowed, so it stays open for the call.
    let rc = unsafe { libc::fcntl(description.as_raw_fd(), cmd, &lock as *const libc::flock) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `struct flock` for `len` bytes from `start` (absolute), with `l_pid`
/// 0 as OFD commands require.
fn flock(kind: libc::c_int, start: u64, len: u64) -> io::Result<libc::flock> {
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    let start = libc::off_t::try_from(start).map_err(|_| invalid())?;
    let len = libc::off_t::try_from(len).map_err(|_| invalid())?;
    if len == 0 || start.checked_add(len).is_none() {
        // l_len 0 would mean "to the end of the file, however it grows".
        return Err(invalid());
    }
    // SAFETY: `struct flock` is plain integers (and padding on some
    // targets), for which all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::posix;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};

    const ROLE: &str = "SHMKIT_RANGE_LOCK_ROLE";

    /// A POSIX object of one page, unlinked when dropped.
    struct Object {
        name: String,
        fd: OwnedFd,
    }

    impl Object {
        fn new(tag: &str) -> Object {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "/shmkit-test-range-lock-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let fd = posix::open(&name, true, posix::Disposition::CreateExclusive, 0o600).unwrap();
            posix::set_len(&fd, 4096).unwrap();
            Object { name, fd }
        }
    }

    impl Drop for Object {
        fn drop(&mut self) {
            let _ = posix::unlink(&self.name);
        }
    }

    #[test]
    fn a_held_range_is_seen_locked_until_dropped() {
        let object = Object::new("held");
        assert!(!is_locked(&object.fd, 100, 8).unwrap());
        let lock = RangeLock::try_lock(&object.fd, 100, 8).unwrap().unwrap();
        assert!(is_locked(&object.fd, 100, 8).unwrap());
        assert!(is_locked(&object.fd, 107, 1).unwrap(), "overlap is held");
        assert!(!is_locked(&object.fd, 108, 8).unwrap(), "next byte is free");
        assert!(
            !is_locked(&object.fd, 0, 100).unwrap(),
            "bytes before are free"
        );
        drop(lock);
        assert!(!is_locked(&object.fd, 100, 8).unwrap());
    }

    /// A child made by `fork` holds a copy of every descriptor until it
    /// execs or exits, the lock's too (`Command::spawn` by another thread
    /// makes one): dropping the lock must release it all the same.
    #[test]
    fn a_dropped_lock_is_released_while_a_forked_child_holds_its_description() {
        let object = Object::new("forked");
        let lock = RangeLock::try_lock(&object.fd, 100, 8).unwrap().unwrap();
        let (wait, release) = std::io::pipe().unwrap();
        // SAFETY: the child only makes the async-signal-safe calls `read`
        // and `_exit` (this process may have other threads), on descriptors
        // it inherited; it touches no memory but its own stack byte.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", io::Error::last_os_error());
        if child == 0 {
            let mut byte = 0u8;
            // SAFETY: as above. Our copy of the write end is closed first,
            // or the read would never see end of file.
            unsafe {
                libc::close(release.as_raw_fd());
                libc::read(wait.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                libc::_exit(0)
            }
        }
        drop(wait);
        drop(lock);
        let seen = is_locked(&object.fd, 100, 8).unwrap();
        drop(release); // the child reads end of file and exits
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is ours.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(!seen, "the child's copy kept the dropped lock");
    }

    #[test]
    fn two_locks_of_one_process_exclude_each_other() {
        let object = Object::new("twice");
        let first = RangeLock::lock(&object.fd, 0, 1).unwrap();
        assert!(RangeLock::try_lock(&object.fd, 0, 1).unwrap().is_none());
        let elsewhere = RangeLock::try_lock(&object.fd, 1, 1).unwrap();
        assert!(elsewhere.is_some(), "a disjoint range is free");
        drop(first);
        assert!(RangeLock::try_lock(&object.fd, 0, 1).unwrap().is_some());
    }

    #[test]
    fn a_range_past_the_end_of_the_file_can_be_locked() {
        let object = Object::new("past-end");
        let far = 1 << 40;
        let lock = RangeLock::try_lock(&object.fd, far, 1).unwrap().unwrap();
        assert!(is_locked(&object.fd, far, 1).unwrap());
        assert_eq!(posix::fstat(&object.fd).unwrap().st_size, 4096, "no growth");
        drop(lock);
    }

    #[test]
    fn empty_or_overflowing_ranges_are_refused() {
        let object = Object::new("invalid");
        for (start, len) in [(0, 0), (u64::MAX, 1), (i64::MAX as u64, 2)] {
            let err = is_locked(&object.fd, start, len).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{start}+{len}");
            let err = RangeLock::try_lock(&object.fd, start, len).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{start}+{len}");
        }
    }

    /// Runs this test binary as a child that locks byte 7 of `name`, reports
    /// `locked`, and exits (without unlocking) when its stdin closes.
    /// `prefix` runs it under another program (`unshare ...`).
    fn holder(name: &str, prefix: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let filter = "sys::range_lock::tests::child";
        let args = [exe, "--exact", filter, "--nocapture", "--test-threads=1"];
        let all: Vec<&str> = prefix.iter().chain(args.iter()).copied().collect();
        let mut child = Command::new(all[0])
            .args(&all[1..])
            .env(ROLE, name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            if line.contains("@@ locked") {
                return (child, out);
            }
            line.clear();
        }
        let status = child.wait().unwrap();
        panic!("the holder exited before it locked: {status}");
    }

    /// The child role of [`holder`]; does nothing in a normal test run.
    #[test]
    fn child() {
        let Ok(name) = std::env::var(ROLE) else {
            return;
        };
        let fd = posix::open(&name, true, posix::Disposition::Open, 0).unwrap();
        let lock = RangeLock::lock(&fd, 7, 1).unwrap();
        // The kernel, not a destructor, must release it.
        std::mem::forget(lock);
        println!("@@ locked");
        std::io::stdout().flush().unwrap();
        let mut rest = String::new();
        let _ = std::io::stdin().read_line(&mut rest);
        std::process::exit(0);
    }

    #[test]
    fn the_kernel_drops_the_lock_of_a_killed_holder() {
        let object = Object::new("killed");
        let (mut child, _out) = holder(&object.name, &[]);
        assert!(is_locked(&object.fd, 7, 1).unwrap());
        assert!(RangeLock::try_lock(&object.fd, 7, 1).unwrap().is_none());
        child.kill().unwrap(); // SIGKILL, by pid
        child.wait().unwrap();
        assert!(!is_locked(&object.fd, 7, 1).unwrap());
        assert!(RangeLock::try_lock(&object.fd, 7, 1).unwrap().is_some());
    }

    #[test]
    fn a_holder_in_another_pid_namespace_is_seen_alive_then_dead() {
        if !rustix::process::geteuid().is_root() {
            // Creating a pid namespace needs CAP_SYS_ADMIN; CI runs as root.
            eprintln!("skipped: needs root for unshare -pf");
            return;
        }
        let object = Object::new("pidns");
        let (mut child, _out) = holder(&object.name, &["unshare", "-pf", "--mount-proc"]);
        // The holder's pid inside its namespace is 1 or 2, meaningless here;
        // the kernel's answer does not depend on it.
        assert!(is_locked(&object.fd, 7, 1).unwrap());
        assert!(RangeLock::try_lock(&object.fd, 7, 1).unwrap().is_none());
        drop(child.stdin.take()); // the holder exits without unlocking
        assert!(child.wait().unwrap().success());
        assert!(!is_locked(&object.fd, 7, 1).unwrap());
    }
}
