//! POSIX shared memory: `shm_open`, `shm_unlink`, and the file calls that
//! size, inspect and map the object (`ftruncate`, `fstat`, `fstatfs`,
//! `fchmod`, `fchown`, `mmap`, `munmap`).
//!
//! On Linux a POSIX segment is a file on the tmpfs mounted at `/dev/shm`.
//! See [shm_overview(7)](https://man7.org/linux/man-pages/man7/shm_overview.7.html).
//!
//! `/dev/shm` is world-writable, so any name may hold another user's
//! symlink, FIFO, socket or directory (docs/SECURITY.md). [`open`] never
//! follows a symlink and never blocks; the segment layer then checks with
//! [`fstat`] and [`filesystem_magic`] that it got a regular tmpfs file.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{Gid, Mode, OFlags, Uid};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

pub use rustix::fs::Stat;

/// Where Linux keeps POSIX shared-memory objects.
pub const SHM_DIR: &str = "/dev/shm";

/// How [`open`] treats a name that may or may not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Only open an existing object.
    Open,
    /// `O_CREAT | O_EXCL`: create it; fail with `EEXIST` if it exists.
    CreateExclusive,
}

/// `shm_open(name, flags, mode)` as glibc makes it:
/// `open("/dev/shm/NAME", flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, mode)`.
/// Opens (or creates) a shared-memory object.
///
/// `O_NOFOLLOW` makes a symlink at the name fail with `ELOOP` (rustix's
/// `shm_open` does not add it); `O_NONBLOCK` keeps a FIFO at the name from
/// blocking the open; `O_NOCTTY` keeps a terminal there from becoming the
/// process's controlling terminal before the type check refuses it. The flag stays set on the descriptor: call
/// [`clear_nonblocking`] once the caller has checked it is a regular file.
/// The descriptor is close-on-exec.
///
/// [shm_open(3)](https://man7.org/linux/man-pages/man3/shm_open.3.html),
/// [open(2)](https://man7.org/linux/man-pages/man2/open.2.html)
pub fn open(
    name: &str,
    writable: bool,
    disposition: Disposition,
    mode: u32,
) -> io::Result<OwnedFd> {
    let mut flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    flags |= if writable {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    if disposition == Disposition::CreateExclusive {
        flags |= OFlags::CREATE | OFlags::EXCL;
    }
    // A name has one leading '/' and no other (PosixName checks).
    let path = format!("{SHM_DIR}/{}", name.trim_start_matches('/'));
    Ok(rustix::fs::open(
        path,
        flags,
        Mode::from_raw_mode(mode & 0o777),
    )?)
}

/// `fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)`: makes the descriptor
/// [`open`] returned blocking again, as `shm_open`'s are.
///
/// [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
pub fn clear_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    Ok(rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?)
}

/// `TMPFS_MAGIC` (linux/magic.h), the `f_type` that `fstatfs` reports for
/// a tmpfs.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// `fstatfs(fd).f_type`: the magic number of the file system that holds
/// the file ([`TMPFS_MAGIC`] for a POSIX segment).
///
/// [fstatfs(2)](https://man7.org/linux/man-pages/man2/fstatfs.2.html)
pub fn filesystem_magic(fd: impl AsFd) -> io::Result<u64> {
    // `f_type` is signed on some targets; a magic number is its bits.
    Ok(rustix::fs::fstatfs(fd)?.f_type as u64)
}

/// `lstat(path)`: what is at `path`, without following a symlink there.
///
/// [lstat(2)](https://man7.org/linux/man-pages/man2/lstat.2.html)
pub fn lstat(path: &str) -> io::Result<Stat> {
    Ok(rustix::fs::lstat(path)?)
}

/// `statfs(path).f_type`: the magic number of the file system holding
/// `path` (the caller has checked it is no symlink).
///
/// [statfs(2)](https://man7.org/linux/man-pages/man2/statfs.2.html)
pub fn path_filesystem_magic(path: &str) -> io::Result<u64> {
    // `f_type` is signed on some targets; a magic number is its bits.
    Ok(rustix::fs::statfs(path)?.f_type as u64)
}

/// `shm_unlink(name)`: removes the name; mappings and open descriptors stay
/// valid, and the memory is freed when the last of them goes.
///
/// [shm_unlink(3)](https://man7.org/linux/man-pages/man3/shm_unlink.3.html)
pub fn unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// `ftruncate(fd, len)`: sets the object's size.
///
/// [ftruncate(2)](https://man7.org/linux/man-pages/man2/ftruncate.2.html)
pub fn set_len(fd: impl AsFd, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// `fallocate(fd, 0, 0, len)`: reserves the object's first `len` bytes of
/// memory now, so that touching them later cannot fail for want of space
/// (which would raise `SIGBUS` in whoever touched them). `ENOSPC` if the
/// file system has not that much free.
///
/// [fallocate(2)](https://man7.org/linux/man-pages/man2/fallocate.2.html)
pub fn reserve(fd: impl AsFd, len: u64) -> io::Result<()> {
    Ok(rustix::fs::fallocate(
        fd,
        rustix::fs::FallocateFlags::empty(),
        0,
        len,
    )?)
}

/// `statvfs("/dev/shm")`: bytes free for new objects.
///
/// [statvfs(3)](https://man7.org/linux/man-pages/man3/statvfs.3.html)
pub fn free_space() -> io::Result<u64> {
    let vfs = rustix::fs::statvfs(SHM_DIR)?;
    Ok(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

/// `fstat(fd)`: size, owner, mode, times and inode of the object.
///
/// [fstat(2)](https://man7.org/linux/man-pages/man2/fstat.2.html)
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

/// `fchmod(fd, mode)`: sets the permission bits (unaffected by the umask,
/// unlike the mode given to `shm_open`).
///
/// [fchmod(2)](https://man7.org/linux/man-pages/man2/fchmod.2.html)
pub fn set_mode(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o777))?)
}

/// `fchown(fd, uid, gid)`: sets the owner and group.
///
/// [fchown(2)](https://man7.org/linux/man-pages/man2/fchown.2.html)
pub fn set_owner(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )?)
}

/// `fchown(fd, -1, gid)`: sets only the group, which the owner may do to
/// any group it is a member of.
///
/// [fchown(2)](https://man7.org/linux/man-pages/man2/fchown.2.html)
pub fn set_group(fd: impl AsFd, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::fchown(fd, None, Some(Gid::from_raw(gid)))?)
}

/// `statvfs("/dev/shm")`: the total size of the tmpfs that holds POSIX
/// objects, the most memory any one of them could ever get.
///
/// [statvfs(3)](https://man7.org/linux/man-pages/man3/statvfs.3.html)
pub fn capacity() -> io::Result<u64> {
    let vfs = rustix::fs::statvfs(SHM_DIR)?;
    Ok(vfs.f_blocks.saturating_mul(vfs.f_frsize))
}

/// How full the tmpfs at `/dev/shm` is, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Its total size.
    pub size: u64,
    /// Bytes in use.
    pub used: u64,
    /// Bytes an unprivileged user may still fill.
    pub available: u64,
}

/// `statvfs("/dev/shm")` as [`Usage`].
pub fn usage() -> io::Result<Usage> {
    let vfs = rustix::fs::statvfs(SHM_DIR)?;
    let bytes = |blocks: u64| blocks.saturating_mul(vfs.f_frsize);
    Ok(Usage {
        size: bytes(vfs.f_blocks),
        used: bytes(vfs.f_blocks.saturating_sub(vfs.f_bfree)),
        available: bytes(vfs.f_bavail),
    })
}

/// `mmap(NULL, len, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, 0)`: maps the
/// object anywhere the kernel chooses.
///
/// [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html)
pub fn map(fd: impl AsFd, len: usize, writable: bool) -> io::Result<NonNull<u8>> {
    let prot = if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    };
    // SAFETY: a null address lets the kernel choose an unused range, so no
    // existing mapping is replaced; MAP_SHARED of a file has no other duties.
    let addr =
        unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
    NonNull::new(addr.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `madvise(addr, len, MADV_POPULATE_WRITE)` (Linux 5.14): maps every page
/// of a writable shared mapping into this process's page tables now, so
/// that its first touches cost no page fault later.
///
/// [madvise(2)](https://man7.org/linux/man-pages/man2/madvise.2.html)
///
/// # Safety
///
/// `addr` and `len` are those of a live writable mapping made by [`map`].
pub unsafe fn populate(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is our writable mapping;
    // populating changes no byte of it.
    unsafe {
        rustix::mm::madvise(
            addr.as_ptr().cast(),
            len,
            rustix::mm::Advice::LinuxPopulateWrite,
        )?
    };
    Ok(())
}

/// `munmap(addr, len)`: removes a mapping made by [`map`].
///
/// [munmap(2)](https://man7.org/linux/man-pages/man2/munmap.2.html)
///
/// # Safety
///
/// - `addr` and `len` are exactly those of a live mapping made by [`map`].
/// - Nothing will access the mapping after this call.
pub unsafe fn unmap(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is our mapping and unused.
    unsafe { rustix::mm::munmap(addr.as_ptr().cast(), len)? };
    Ok(())
}

/// `open("/dev/shm", O_TMPFILE | O_RDWR, mode)`: a new shared-memory object
/// with no name yet, so that its creator can size and initialise it before
/// anyone can open it; [`link`] then gives it its name. If the creator dies
/// first, the kernel frees it: no half-made object is ever left behind.
///
/// [open(2), O_TMPFILE](https://man7.org/linux/man-pages/man2/open.2.html)
pub fn create_unnamed(mode: u32) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(
        SHM_DIR,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode & 0o777),
    )?)
}

/// `linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, "/dev/shm/NAME",
/// AT_SYMLINK_FOLLOW)`: names an object made by [`create_unnamed`]. Fails
/// with `EEXIST` if the name is taken: like `O_CREAT | O_EXCL`, but the
/// object appears whole.
///
/// [linkat(2)](https://man7.org/linux/man-pages/man2/linkat.2.html)
pub fn link(fd: impl AsFd, name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let from = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let to = format!("{SHM_DIR}/{}", name.trim_start_matches('/'));
    Ok(rustix::fs::linkat(
        rustix::fs::CWD,
        from.as_str(),
        rustix::fs::CWD,
        to.as_str(),
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )?)
}

/// `stat("/dev/shm/NAME")` without following a symlink: the device and
/// inode of the object the name stands for now, to compare with an open
/// descriptor's before removing by name (docs/ARCHITECTURE.md, rule 7).
///
/// [stat(2)](https://man7.org/linux/man-pages/man2/stat.2.html)
pub fn identity(name: &str) -> io::Result<(u64, u64)> {
    let path = format!("{SHM_DIR}/{}", name.trim_start_matches('/'));
    let st = rustix::fs::statat(
        rustix::fs::CWD,
        path.as_str(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok((st.st_dev, st.st_ino))
}
