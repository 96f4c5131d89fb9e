//! System V shared memory: `shmget`, `shmat`, `shmdt`, `shmctl`.
//!
//! rustix has no System V IPC, so this is the one place that calls libc.
//! See [svipc(7)](https://man7.org/linux/man-pages/man7/svipc.7.html).

use std::io;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// `IPC_PRIVATE`: a key that always creates a new segment.
pub const IPC_PRIVATE: u32 = libc::IPC_PRIVATE as u32;

/// The mode bit the kernel sets in `shm_perm.mode` once `IPC_RMID` was asked
/// while the segment is still attached.
pub const SHM_DEST: u32 = 0o1000;

/// How `shmget` treats a key that may or may not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// `0`: only find an existing segment.
    Open,
    /// `IPC_CREAT | IPC_EXCL`: create it; fail with `EEXIST` if it exists.
    CreateExclusive,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `shmget(key, size, flags | mode)`: finds or creates a segment, returns its id.
/// `key` is the 32 bits of the `key_t` (which C declares signed).
///
/// [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html)
pub fn shmget(key: u32, size: usize, disposition: Disposition, mode: u32) -> io::Result<i32> {
    let flags = match disposition {
        Disposition::Open => 0,
        Disposition::CreateExclusive => libc::IPC_CREAT | libc::IPC_EXCL,
    };
    // SAFETY: shmget takes no pointers; any argument values are safe to pass.
    check(unsafe {
        libc::shmget(
            key as libc::key_t,
            size,
            flags | (mode & 0o777) as libc::c_int,
        )
    })
}

/// `shmat(id, NULL, readonly ? SHM_RDONLY : 0)`: maps the segment anywhere the
/// kernel chooses.
///
/// [shmat(2)](https://man7.org/linux/man-pages/man2/shmat.2.html)
pub fn shmat(id: i32, readonly: bool) -> io::Result<NonNull<u8>> {
    let flags = if readonly { libc::SHM_RDONLY } else { 0 };
    // SAFETY: a null address asks the kernel to choose an unused range, so no
    // existing mapping of this process can be replaced.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if addr as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `shmdt(addr)`: unmaps an attachment made by [`shmat`].
///
/// [shmdt(2)](https://man7.org/linux/man-pages/man2/shmdt.2.html)
///
/// # Safety
///
/// - `addr` was returned by [`shmat`] and has not been detached since.
/// - Nothing will access the mapping after this call.
pub unsafe fn shmdt(addr: NonNull<u8>) -> io::Result<()> {
    // SAFETY: the caller guarantees `addr` is a live attachment that nobody
    // uses any more, so unmapping it invalidates no reference in use.
    check(unsafe { libc::shmdt(addr.as_ptr().cast()) }).map(drop)
}

/// `shmctl(id, IPC_STAT, &buf)`: the kernel's `shmid_ds` for a segment.
///
/// Needs read permission on the segment (or `CAP_IPC_OWNER`).
///
/// [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html)
pub fn stat(id: i32) -> io::Result<libc::shmid_ds> {
    let mut buf = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `buf` is a valid, writable shmid_ds for the kernel to fill.
    check(unsafe { libc::shmctl(id, libc::IPC_STAT, buf.as_mut_ptr()) })?;
    // SAFETY: IPC_STAT succeeded, so the kernel filled every field (and the
    // struct was zeroed before, so padding is initialised too).
    Ok(unsafe { buf.assume_init() })
}

/// `shmctl(id, IPC_SET, &buf)`: sets the owner uid, gid and mode bits.
///
/// Only the owner, the creator or a process with `CAP_SYS_ADMIN` may do this.
///
/// [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html)
pub fn set(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: shmid_ds is plain integers, for which all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // IPC_SET reads only shm_perm.uid, .gid and the low 9 bits of .mode.
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as _;
    // SAFETY: `ds` points to a valid shmid_ds that outlives the call.
    check(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `shmctl(id, IPC_RMID, NULL)`: marks the segment for removal. The key stops
/// finding it at once; its memory is freed when the last attachment goes.
///
/// [shmctl(2)](https://man7.org/linux/man-pages/man2/shmctl.2.html)
pub fn remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument, so null is allowed.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}
