//! Shared-memory segments with System V semantics, over System V shm and
//! POSIX shm.
//!
//! A [`Segment`] is one kernel object named by a [`Key`]. Creating or opening
//! one gives a handle; [`Segment::attach`] maps it into this process as an
//! [`Attachment`]; [`Segment::remove`] unlinks it, and the kernel frees the
//! memory when the last attachment goes.
//!
//! | | System V (`Key::SysV`) | POSIX (`Key::Posix`) |
//! |---|---|---|
//! | kernel object | `shmid_kernel`, id from `shmget` | file in `/dev/shm` |
//! | attach | `shmat` | `mmap(MAP_SHARED)` |
//! | permission check | `ipcperms()` at attach | file mode at `shm_open` |
//! | attach count | kept by the kernel (`nattch`) | counted from `/proc/*/maps` |
//! | removal | `IPC_RMID`, deferred to last detach | `shm_unlink`, deferred likewise |

mod attachment;
pub(crate) mod format;
mod key;
mod limits;
mod mode;
mod posix_open;
mod stat;
mod trust;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;

pub use attachment::{AccessMode, Attachment, ReadOnly, ReadWrite};
pub use key::{Key, PosixName};
pub use limits::{limits, Limits};
pub use mode::Mode;
pub use stat::{list, Kind, Mapping, Stat};
pub use trust::{Opened, Owner, Trust};

use crate::error::{Access, Error, Result};
use crate::sys::{posix, procfs, sysv};

/// A handle on one shared-memory segment: System V or POSIX.
///
/// The handle is not an attachment: it maps nothing, and dropping it leaves
/// the segment in place. (A POSIX handle holds an open descriptor, which keeps
/// the memory alive after [`remove`](Segment::remove) until it is dropped.)
///
/// # Example: two attachments of one segment
///
/// ```
/// use shmkit::{Key, Mode, ReadOnly, ReadWrite, Segment};
///
/// let name = Key::posix(&format!("/shmkit-doc-{}", std::process::id()))?;
/// let segment = Segment::create(&name, 4096, Mode::new(0o600))?;
/// let writer = segment.attach(ReadWrite)?;
/// writer.write_at(0, b"ping")?;
///
/// let reader = Segment::open(&name)?.attach(ReadOnly)?;
/// let mut buf = [0; 4];
/// reader.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"ping");
///
/// segment.remove()?; // the name goes now, the memory with the last mapping
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    object: Object,
}

#[derive(Debug)]
enum Object {
    SysV {
        /// The key it was found or created with (the kernel's becomes 0 on removal).
        key: u32,
        id: i32,
    },
    Posix {
        name: PosixName,
        fd: OwnedFd,
        /// Whether `fd` was opened read-write (the mode may allow only reading).
        writable: bool,
    },
}

impl Segment {
    /// Creates a new segment of `size` bytes with permission bits `mode`;
    /// fails if the key already names one (`IPC_CREAT | IPC_EXCL`,
    /// `O_CREAT | O_EXCL`). The memory starts zeroed.
    ///
    /// [`Key::PRIVATE`] always creates a fresh System V segment, reachable
    /// by [`id`](Segment::id). The mode is applied exactly; the umask does not
    /// narrow it.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] if `size` is 0.
    /// - [`Error::TooLarge`] if `size` is over `kernel.shmmax` or
    ///   `kernel.shmall` pages (System V), or over the size of the `/dev/shm`
    ///   file system or the space free in it (POSIX: a new segment's pages
    ///   are reserved with `fallocate`, so a full `/dev/shm` is this error
    ///   now, never a `SIGBUS` when a page is first touched).
    /// - [`Error::AlreadyExists`] if the key is taken.
    /// - [`Error::PermissionDenied`] if this process may not create it.
    /// - [`Error::Os`] if a System V segment would pass a system-wide limit
    ///   (`kernel.shmall` pages in all segments together, `kernel.shmmni`
    ///   segments), or the kernel cannot reserve the memory; the message says
    ///   which.
    pub fn create(key: &Key, size: u64, mode: Mode) -> Result<Segment> {
        check_size(key, size)?;
        match key {
            Key::SysV(k) => {
                let id = sysv::shmget(
                    *k,
                    size as usize,
                    sysv::Disposition::CreateExclusive,
                    mode.bits(),
                )
                .map_err(|e| size_error(e, key, size, Access::Create))?;
                Ok(Segment {
                    object: Object::SysV { key: *k, id },
                })
            }
            Key::Posix(name) => create_posix(name, size, mode),
        }
    }

    /// Creates a segment as [`create`](Segment::create) does, for sharing
    /// with group `gid`: the group is set before the group's permission
    /// bits of `mode`, so no other group's member can open it meanwhile.
    /// The caller must be a member of the group (or root).
    ///
    /// # Errors
    ///
    /// As [`create`](Segment::create); [`Error::PermissionDenied`] if the
    /// caller may not give the segment that group (nothing is left behind).
    pub fn create_in_group(key: &Key, size: u64, mode: Mode, gid: u32) -> Result<Segment> {
        let segment = Segment::create(key, size, Mode::new(mode.bits() & 0o700))?;
        if let Err(err) = segment.set_group(gid).and_then(|()| segment.set_mode(mode)) {
            let _ = segment.remove();
            return Err(err);
        }
        Ok(segment)
    }

    /// Opens the segment the key names, or creates it as
    /// [`create`](Segment::create) does if there is none; says which, and
    /// whose segment it got. An existing segment may be another user's
    /// (anyone may create a name first): check [`Opened::owner`], or
    /// [`Trust::check`], before trusting what is in it.
    ///
    /// [`Key::PRIVATE`] always creates.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::{Key, Mode, Segment};
    ///
    /// let key = Key::posix(&format!("/shmkit-doc-ooc-{}", std::process::id()))?;
    /// let first = Segment::open_or_create(&key, 4096, Mode::OWNER_ONLY)?;
    /// assert!(first.created && first.is_mine());
    /// let second = Segment::open_or_create(&key, 4096, Mode::OWNER_ONLY)?;
    /// assert!(!second.created);
    /// second.segment.remove()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`create`](Segment::create) and [`open`](Segment::open), and
    /// [`Error::InvalidArgument`] if an existing segment is smaller than
    /// `size`.
    pub fn open_or_create(key: &Key, size: u64, mode: Mode) -> Result<Opened> {
        // Exclusive creation first, so that the answer says who created it;
        // a segment removed between the two calls is raced for again.
        let mut tries = 0;
        loop {
            let existing = match Segment::create(key, size, mode) {
                Err(Error::AlreadyExists { .. }) => Segment::open(key),
                Ok(segment) => {
                    let owner = segment.owner()?;
                    return Ok(Opened {
                        segment,
                        created: true,
                        owner,
                    });
                }
                Err(other) => return Err(other),
            };
            match existing {
                Err(Error::NotFound { .. }) if tries < 100 => tries += 1,
                Err(other) => return Err(other),
                Ok(segment) => {
                    let have = segment.size()?;
                    if have < size {
                        return Err(smaller_than_asked(key, have, size));
                    }
                    let owner = segment.owner()?;
                    return Ok(Opened {
                        segment,
                        created: false,
                        owner,
                    });
                }
            }
        }
    }

    /// Opens the existing segment the key names.
    ///
    /// Opening checks no permission for System V segments (the kernel checks
    /// at attach); a POSIX segment is opened read-write if its mode allows,
    /// else read-only.
    ///
    /// # Errors
    ///
    /// - [`Error::NotFound`] if no segment has this key (or it was removed).
    /// - [`Error::InvalidArgument`] for [`Key::PRIVATE`], which names no
    ///   segment: use [`open_id`](Segment::open_id).
    /// - [`Error::PermissionDenied`] if a POSIX segment may not even be read.
    pub fn open(key: &Key) -> Result<Segment> {
        match key {
            Key::SysV(k) if *k == sysv::IPC_PRIVATE => Err(Error::InvalidArgument(
                "the private key (0) names no segment; open it by id".to_owned(),
            )),
            Key::SysV(k) => {
                let id = sysv::shmget(*k, 0, sysv::Disposition::Open, 0)
                    .map_err(|e| Error::from_os(e, &key.describe(), Access::Open))?;
                Ok(Segment {
                    object: Object::SysV { key: *k, id },
                })
            }
            Key::Posix(name) => {
                let open = |writable| {
                    posix_open::open(name, writable, posix::Disposition::Open, 0, Access::Open)
                };
                let (fd, writable) = match open(true) {
                    Ok(fd) => (fd, true),
                    Err(Error::PermissionDenied { .. }) => (open(false)?, false),
                    Err(e) => return Err(e),
                };
                Ok(Segment {
                    object: Object::Posix {
                        name: name.clone(),
                        fd,
                        writable,
                    },
                })
            }
        }
    }

    /// Opens a System V segment by its id, as `ipcs` shows it. Works for
    /// segments made with [`Key::PRIVATE`] and for removed segments that are
    /// still attached.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this id.
    pub fn open_id(id: i32) -> Result<Segment> {
        let row = stat::sysv_row(id)?;
        Ok(Segment {
            object: Object::SysV { key: row.key, id },
        })
    }

    /// The key this handle was made with. (Once a System V segment is
    /// removed, the kernel reports its key as 0; this keeps the original.)
    pub fn key(&self) -> Key {
        match &self.object {
            Object::SysV { key, .. } => Key::SysV(*key),
            Object::Posix { name, .. } => Key::Posix(name.clone()),
        }
    }

    /// The System V id, or `None` for a POSIX segment.
    pub fn id(&self) -> Option<i32> {
        match self.object {
            Object::SysV { id, .. } => Some(id),
            Object::Posix { .. } => None,
        }
    }

    /// Which kind of kernel object this is.
    pub fn kind(&self) -> Kind {
        match self.object {
            Object::SysV { .. } => Kind::SysV,
            Object::Posix { .. } => Kind::Posix,
        }
    }

    /// Who owns the segment now (System V `shm_perm.uid`/`gid`, or the
    /// POSIX file's owner).
    pub fn owner(&self) -> Result<Owner> {
        match &self.object {
            Object::SysV { id, .. } => stat::sysv_row(*id).map(|row| Owner {
                uid: row.uid,
                gid: row.gid,
            }),
            Object::Posix { name, fd, .. } => posix::fstat(fd)
                .map(|st| Owner {
                    uid: st.st_uid,
                    gid: st.st_gid,
                })
                .map_err(|e| Error::from_os(e, name.as_str(), Access::Stat)),
        }
    }

    /// The size in bytes.
    pub fn size(&self) -> Result<u64> {
        match &self.object {
            Object::SysV { id, .. } => Ok(stat::sysv_row(*id)?.size),
            Object::Posix { name, fd, .. } => posix::fstat(fd)
                .map(|st| st.st_size as u64)
                .map_err(|e| Error::from_os(e, name.as_str(), Access::Stat)),
        }
    }

    /// How `/proc/PID/maps` names this segment's mappings.
    pub(crate) fn backing(&self) -> Result<crate::sys::procfs::Backing> {
        match &self.object {
            Object::SysV { id, .. } => Ok(crate::sys::procfs::Backing::Sysv { id: *id }),
            Object::Posix { name, fd, .. } => posix::fstat(fd)
                .map(|st| crate::sys::procfs::Backing::Posix { inode: st.st_ino })
                .map_err(|e| Error::from_os(e, name.as_str(), Access::Stat)),
        }
    }

    /// Maps the segment into this process: `attach(ReadWrite)` or
    /// `attach(ReadOnly)`.
    ///
    /// # Errors
    ///
    /// - [`Error::PermissionDenied`] if the mode does not grant the access.
    /// - [`Error::NotFound`] if the segment has gone meanwhile.
    /// - [`Error::InvalidArgument`] if a POSIX segment has size 0 (another
    ///   program created it and never sized it).
    pub fn attach<A: AccessMode>(&self, access: A) -> Result<Attachment<A>> {
        let _ = access;
        let asked = if A::WRITABLE {
            Access::AttachReadWrite
        } else {
            Access::AttachReadOnly
        };
        match &self.object {
            Object::SysV { id, .. } => {
                let addr = sysv::shmat(*id, !A::WRITABLE)
                    .map_err(|e| Error::from_os(e, &self.to_string(), asked))?;
                let len = match sysv::stat(*id) {
                    Ok(ds) => ds.shm_segsz,
                    Err(e) => {
                        // SAFETY: `addr` is the attachment just made, unused yet.
                        let _ = unsafe { sysv::shmdt(addr) };
                        return Err(Error::from_os(e, &self.to_string(), asked));
                    }
                };
                // SAFETY: `addr` is a fresh shmat of a segment of `len` bytes,
                // writable exactly when A::WRITABLE (SHM_RDONLY otherwise).
                Ok(unsafe { Attachment::from_shmat(addr, len) })
            }
            Object::Posix { name, fd, writable } => {
                if A::WRITABLE && !writable {
                    return Err(Error::PermissionDenied {
                        segment: name.to_string(),
                        access: asked,
                    });
                }
                let size = self.size()?;
                if size == 0 {
                    return Err(Error::InvalidArgument(format!(
                        "POSIX segment {name} has size 0 and cannot be mapped"
                    )));
                }
                let len = usize::try_from(size).map_err(|_| Error::TooLarge {
                    what: "mapping",
                    size,
                    limit: usize::MAX as u64,
                })?;
                let file = fd
                    .try_clone()
                    .map_err(|e| Error::from_os(e, name.as_str(), asked))?;
                let addr = posix::map(fd, len, A::WRITABLE)
                    .map_err(|e| Error::from_os(e, name.as_str(), asked))?;
                // SAFETY: `addr`/`len` are a fresh mmap, writable exactly when
                // A::WRITABLE (PROT_READ only otherwise).
                unsafe { Attachment::from_mmap(addr, len, file, name.to_string()) }
            }
        }
    }

    /// Attaches read-write a segment that another process is creating, once
    /// it is ready: sized to at least `min_size` bytes and with a nonzero
    /// magic number stored (with Release) at offset 0, as every shmkit
    /// format does (docs/ARCHITECTURE.md, memory rule 3). Waits at most
    /// 5 s: the creator is between creating the segment and its first
    /// stores, microseconds away, unless it died there.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] at once if it has fewer than `min_size` bytes
    /// but more than 0; [`Error::Corrupt`] if the segment is still not
    /// ready after 5 s.
    pub(crate) fn attach_initialised(&self, min_size: u64) -> Result<Attachment<ReadWrite>> {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut mapping = None;
        loop {
            if mapping.is_none() {
                // A creator sizes its segment in one step: a size between 0
                // (not sized yet) and the least its format needs means
                // someone shrank it.
                match self.size()? {
                    size if size >= min_size => mapping = Some(self.attach(ReadWrite)?),
                    0 => {}
                    size => {
                        return Err(Error::Truncated {
                            segment: self.to_string(),
                            size,
                            expected: min_size,
                        })
                    }
                }
            }
            if let Some(attached) = &mapping {
                // Acquire: pairs with the creator's Release of the magic, so
                // the header it wrote before is visible.
                if attached
                    .atomic_u64(0)?
                    .load(std::sync::atomic::Ordering::Acquire)
                    != 0
                {
                    return Ok(mapping.expect("attached above"));
                }
            }
            if std::time::Instant::now() >= give_up {
                return Err(Error::Corrupt(format!(
                    "{self} was never initialised: no magic number after 5 s (its creator died?)"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Takes an exclusive OFD lock on `len` bytes from `start` of a POSIX
    /// segment's file if no other holder has one there (`Ok(None)` if one
    /// does). The kernel drops it when this process dies, whatever pid
    /// namespace it runs in, so a held range says "its owner is alive";
    /// see [`crate::sys::range_lock`]. The range may lie past the segment's
    /// end and never touches its bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a System V segment, which has no file
    /// to lock; [`Error::Os`] if the kernel refuses (a read-only opener
    /// cannot take an exclusive lock).
    pub(crate) fn try_lock_range(
        &self,
        start: u64,
        len: u64,
    ) -> Result<Option<crate::sys::range_lock::RangeLock>> {
        self.posix_fd().and_then(|fd| {
            crate::sys::range_lock::RangeLock::try_lock(fd, start, len)
                .map_err(|source| self.lock_error(start, len, source))
        })
    }

    /// As [`try_lock_range`](Segment::try_lock_range), but waits until the
    /// range is free.
    pub(crate) fn lock_range(
        &self,
        start: u64,
        len: u64,
    ) -> Result<crate::sys::range_lock::RangeLock> {
        self.posix_fd().and_then(|fd| {
            crate::sys::range_lock::RangeLock::lock(fd, start, len)
                .map_err(|source| self.lock_error(start, len, source))
        })
    }

    /// Whether another open file description holds an OFD lock on `len`
    /// bytes from `start` (so its owner is alive): `Some(held)`, or `None`
    /// when the kernel cannot tell (a System V segment has no file; the
    /// query failed). Callers deciding liveness count `None` as alive.
    /// Locks of this handle's own descriptor are not seen, but a
    /// [`RangeLock`](crate::sys::range_lock::RangeLock) has a description of
    /// its own, so this process's locks are.
    pub(crate) fn range_held(&self, start: u64, len: u64) -> Option<bool> {
        match &self.object {
            Object::SysV { .. } => None,
            Object::Posix { fd, .. } => crate::sys::range_lock::is_locked(fd, start, len).ok(),
        }
    }

    fn lock_error(&self, start: u64, len: u64, source: io::Error) -> Error {
        Error::Os {
            context: format!(
                "locking bytes {start}..{} of {self}",
                start.saturating_add(len)
            ),
            source,
        }
    }

    pub(crate) fn posix_fd(&self) -> Result<&OwnedFd> {
        match &self.object {
            Object::SysV { .. } => Err(Error::InvalidArgument(format!(
                "{self} is a System V segment: it has no file to lock"
            ))),
            Object::Posix { fd, .. } => Ok(fd),
        }
    }

    /// Everything the kernel knows about the segment, with the processes that
    /// have it mapped.
    pub fn stat(&self) -> Result<Stat> {
        match &self.object {
            Object::SysV { id, .. } => stat::sysv_stat(*id),
            Object::Posix { name, fd, .. } => {
                let st =
                    posix::fstat(fd).map_err(|e| Error::from_os(e, name.as_str(), Access::Stat))?;
                stat::posix_stat(name.clone(), &st)
            }
        }
    }

    /// Sets the permission bits (`IPC_SET` or `fchmod`). Only the owner, the
    /// creator or root may.
    pub fn set_mode(&self, mode: Mode) -> Result<()> {
        match &self.object {
            Object::SysV { id, .. } => {
                let row = stat::sysv_row(*id)?;
                sysv::set(*id, row.uid, row.gid, mode.bits())
            }
            Object::Posix { fd, .. } => posix::set_mode(fd, mode.bits()),
        }
        .map_err(|e| Error::from_os(e, &self.to_string(), Access::SetMode))
    }

    /// Sets the owner uid and gid (`IPC_SET` or `fchown`). For System V the
    /// creator may give a segment away; for POSIX only root may.
    pub fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        match &self.object {
            Object::SysV { id, .. } => {
                let row = stat::sysv_row(*id)?;
                sysv::set(*id, uid, gid, row.perms)
            }
            Object::Posix { fd, .. } => posix::set_owner(fd, uid, gid),
        }
        .map_err(|e| Error::from_os(e, &self.to_string(), Access::SetOwner))
    }

    /// Sets only the group (`IPC_SET` or `fchown(fd, -1, gid)`), keeping the
    /// owner. The owner may give its segment any group it is a member of.
    pub fn set_group(&self, gid: u32) -> Result<()> {
        match &self.object {
            Object::SysV { id, .. } => {
                let row = stat::sysv_row(*id)?;
                sysv::set(*id, row.uid, gid, row.perms)
            }
            Object::Posix { fd, .. } => posix::set_group(fd, gid),
        }
        .map_err(|e| Error::from_os(e, &self.to_string(), Access::SetOwner))
    }

    /// Removes the segment (`IPC_RMID` or `shm_unlink`).
    ///
    /// The key stops finding it at once. Processes that have it attached keep
    /// using it, and the kernel frees the memory when the last attachment goes
    /// (for POSIX, also the last open handle). [`stat`](Segment::stat) shows
    /// the pending removal as [`Stat::removed`].
    ///
    /// Removal is exact: a POSIX name that no longer stands for this
    /// handle's object (it was removed, and the name perhaps taken by a new
    /// one) gives [`Error::NotFound`] and removes nothing.
    pub fn remove(&self) -> Result<()> {
        match &self.object {
            Object::SysV { id, .. } => sysv::remove(*id),
            Object::Posix { name, fd, .. } => {
                let same = posix::fstat(fd).and_then(|mine| {
                    Ok(posix::identity(name.as_str())? == (mine.st_dev, mine.st_ino))
                });
                match same {
                    Ok(true) => posix::unlink(name.as_str()),
                    Ok(false) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                    Err(e) => Err(e),
                }
            }
        }
        .map_err(|e| Error::from_os(e, &self.to_string(), Access::Remove))
    }

    /// Creates a POSIX segment of `size` bytes that no other process can
    /// open until `init` has run on it and its mapping: it is made without a name
    /// (`O_TMPFILE`) and linked to its name after `init`. An opener never
    /// sees it half made, and a creator that dies first leaves nothing.
    ///
    /// # Errors
    ///
    /// As [`create`](Segment::create) ([`Error::AlreadyExists`] if the name
    /// is taken, checked at the end), [`Error::InvalidArgument`] for a System
    /// V key, and whatever `init` returns.
    pub(crate) fn create_initialised(
        key: &Key,
        size: u64,
        mode: Mode,
        init: impl FnOnce(&Segment, &Attachment<ReadWrite>) -> Result<()>,
    ) -> Result<(Segment, Attachment<ReadWrite>)> {
        check_size(key, size)?;
        let Key::Posix(name) = key else {
            return Err(Error::InvalidArgument(format!(
                "{key} is a System V key; only POSIX segments are created initialised"
            )));
        };
        let segment = create_unnamed_posix(name, size, mode)?;
        let mapping = segment.attach(ReadWrite)?;
        init(&segment, &mapping)?;
        link_posix(&segment)?;
        Ok((segment, mapping))
    }

    /// Removes the segment `key` names, as [`remove`](Segment::remove),
    /// without opening it first: removing a POSIX segment needs the right
    /// to unlink its name (its owner's, in the sticky `/dev/shm`), not to
    /// read it, so a mode that forbids reading does not stop its owner.
    ///
    /// # Errors
    ///
    /// As [`open`](Segment::open) and [`remove`](Segment::remove); a
    /// refusal is [`Error::PermissionDenied`] for [`Access::Remove`].
    ///
    /// ```
    /// use shmkit::{Error, Key, Mode, Segment};
    ///
    /// let key = Key::posix(&format!("/shmkit-doc-remove-key-{}", std::process::id()))?;
    /// drop(Segment::create(&key, 100, Mode::new(0o000))?); // nobody may read it
    /// Segment::remove_key(&key)?;
    /// assert!(matches!(Segment::open(&key), Err(Error::NotFound { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn remove_key(key: &Key) -> Result<()> {
        match key {
            Key::Posix(name) => {
                posix_open::check_before_removal(name)?;
                posix::unlink(name.as_str())
                    .map_err(|e| Error::from_os(e, name.as_str(), Access::Remove))
            }
            Key::SysV(_) => Segment::open(key)?.remove(),
        }
    }
}

/// How messages name a segment: `key 0x00001234 (id 5)` for a System V
/// segment with a key, `id 5` for a private (or removed) one, and `/name`
/// for a POSIX one. The library's errors name segments this way.
///
/// # Example
///
/// ```
/// use shmkit::{Key, Mode, Segment};
///
/// let private = Segment::create(&Key::PRIVATE, 100, Mode::OWNER_ONLY)?;
/// let id = private.id().unwrap();
/// assert_eq!(private.to_string(), format!("id {id}"));
///
/// let key = Key::SysV(0xd500_0000 | (std::process::id() & 0xff_ffff)); // any 32 bits
/// let keyed = Segment::create(&key, 100, Mode::OWNER_ONLY)?;
/// let id = keyed.id().unwrap();
/// assert_eq!(keyed.to_string(), format!("key {key} (id {id})")); // key 0x5d…
///
/// let name = Key::posix(&format!("/shmkit-doc-display-{}", std::process::id()))?;
/// let posix = Segment::create(&name, 100, Mode::OWNER_ONLY)?;
/// assert_eq!(posix.to_string(), name.to_string()); // /shmkit-doc-display-…
///
/// for segment in [private, keyed, posix] {
///     segment.remove()?;
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Object::SysV { key, id } if *key == sysv::IPC_PRIVATE => write!(f, "id {id}"),
            Object::SysV { key, id } => write!(f, "key {} (id {id})", Key::SysV(*key)),
            Object::Posix { name, .. } => write!(f, "{name}"),
        }
    }
}

fn check_size(key: &Key, size: u64) -> Result<()> {
    if size == 0 {
        return Err(Error::InvalidArgument(format!(
            "segment {key} must be at least 1 byte, not 0"
        )));
    }
    let limit = match key {
        Key::SysV(_) => sysv_size_limit(
            procfs::sysv_max_size().ok(),
            procfs::sysv_max_total_pages().ok(),
            page_size(),
        ),
        Key::Posix(_) => posix::capacity().unwrap_or(u64::MAX),
    }
    .min(isize::MAX as u64);
    if size > limit {
        return Err(Error::TooLarge {
            what: "segment size",
            size,
            limit,
        });
    }
    Ok(())
}

/// The largest System V segment the kernel's limits allow: `kernel.shmmax`
/// bytes, and `kernel.shmall` pages, which bound all segments together and so
/// each one. A limit that could not be read is left to the kernel to enforce.
fn sysv_size_limit(max_size: Option<u64>, max_total_pages: Option<u64>, page_size: u64) -> u64 {
    let max_total = max_total_pages.map_or(u64::MAX, |pages| pages.saturating_mul(page_size));
    max_size.unwrap_or(u64::MAX).min(max_total)
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Turns `shmget`'s errors on creation into messages that say why:
/// `EINVAL` is both a size out of range and an existing segment smaller
/// than asked; `ENOSPC` is a system-wide limit reached; `ENOMEM` is memory
/// the kernel could not reserve (its overcommit accounting said no).
fn size_error(err: io::Error, key: &Key, size: u64, access: Access) -> Error {
    let creating = key.describe();
    match err.raw_os_error() {
        Some(libc::EINVAL) => match Segment::open(key).and_then(|s| s.size()) {
            Ok(existing) if existing < size => smaller_than_asked(key, existing, size),
            _ => Error::InvalidArgument(format!(
                "the kernel refused a segment of {size} bytes for {creating}"
            )),
        },
        Some(libc::ENOSPC) => Error::Os {
            context: format!(
                "creating {creating} of {size} bytes: {}",
                sysv_limit_reached(size)
            ),
            source: err,
        },
        Some(libc::ENOMEM) => Error::Os {
            context: format!(
                "creating {creating}: the kernel could not reserve {size} bytes of memory for it"
            ),
            source: err,
        },
        _ => Error::from_os(err, &creating, access),
    }
}

/// Which system-wide limit a `shmget` that failed with `ENOSPC` ran into,
/// judged from the segments there are now: `kernel.shmmni` segments, or
/// `kernel.shmall` pages in all segments together.
fn sysv_limit_reached(size: u64) -> String {
    let rows = procfs::sysv_rows().unwrap_or_default();
    let page = page_size();
    match (procfs::sysv_max_segments(), procfs::sysv_max_total_pages()) {
        (Ok(max), _) if rows.len() as u64 >= max => format!(
            "the system-wide limit kernel.shmmni is {max} segments, and there are {} already",
            rows.len()
        ),
        (_, Ok(max)) => {
            let used: u64 = rows.iter().map(|row| row.size.div_ceil(page)).sum();
            format!(
                "the system-wide limit kernel.shmall is {max} pages of {page} bytes; \
                 segments use {used} already, and this one needs {} more",
                size.div_ceil(page)
            )
        }
        _ => "a system-wide limit is reached: kernel.shmall (pages in all segments \
              together) or kernel.shmmni (the number of segments)"
            .to_owned(),
    }
}

fn smaller_than_asked(key: &Key, existing: u64, size: u64) -> Error {
    Error::InvalidArgument(format!(
        "segment {key} exists with {existing} bytes, fewer than the {size} asked for"
    ))
}

/// Sets a new POSIX object's mode exactly (shm_open's mode passes through
/// the umask; System V's does not), sizes it, and reserves its memory, so
/// that a full /dev/shm is an error now, not a SIGBUS when a page is first
/// touched.
fn size_posix(fd: &OwnedFd, name: &PosixName, size: u64, mode: Mode) -> Result<()> {
    posix::set_mode(fd, mode.bits())
        .and_then(|()| posix::set_len(fd, size))
        .and_then(|()| match posix::reserve(fd, size) {
            // A file system that cannot reserve leaves the pages to be found later.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            other => other,
        })
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ENOSPC) => Error::TooLarge {
                what: "segment size (against the free space in /dev/shm)",
                size,
                limit: posix::free_space().unwrap_or(0),
            },
            Some(libc::EFBIG) => Error::TooLarge {
                what: "segment size",
                size,
                limit: posix::capacity().unwrap_or(0),
            },
            _ => Error::from_os(err, name.as_str(), Access::Create),
        })
}

/// Made without a name and named only once sized, so that a creation that
/// fails (a full `/dev/shm`) has nothing to undo: removing by name could
/// remove a newer object that took the name meanwhile (rule 7).
fn create_posix(name: &PosixName, size: u64, mode: Mode) -> Result<Segment> {
    let segment = create_unnamed_posix(name, size, mode)?;
    link_posix(&segment)?;
    Ok(segment)
}

/// A POSIX segment of `size` bytes, reserved, that does not have its
/// name `name` yet (`O_TMPFILE`; the kernel frees it if it is never
/// named): [`link_posix`] gives it.
fn create_unnamed_posix(name: &PosixName, size: u64, mode: Mode) -> Result<Segment> {
    let fd = posix::create_unnamed(mode.bits())
        .map_err(|e| Error::from_os(e, name.as_str(), Access::Create))?;
    size_posix(&fd, name, size, mode)?;
    Ok(Segment {
        object: Object::Posix {
            name: name.clone(),
            fd,
            writable: true,
        },
    })
}

/// Names a segment made by [`create_unnamed_posix`]: it appears whole, or
/// [`Error::AlreadyExists`] if the name is taken.
fn link_posix(segment: &Segment) -> Result<()> {
    let Object::Posix { name, fd, .. } = &segment.object else {
        unreachable!("made by create_unnamed_posix")
    };
    posix::link(fd, name.as_str()).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => Error::AlreadyExists {
            segment: name.to_string(),
        },
        _ => Error::from_os(e, name.as_str(), Access::Create),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysv_size_limit_is_the_smaller_of_shmmax_and_shmall_pages() {
        assert_eq!(sysv_size_limit(Some(1000), Some(1), 4096), 1000);
        assert_eq!(sysv_size_limit(Some(1 << 40), Some(4), 4096), 4 * 4096);
        assert_eq!(sysv_size_limit(None, Some(4), 4096), 4 * 4096);
        assert_eq!(sysv_size_limit(Some(1000), None, 4096), 1000);
        assert_eq!(sysv_size_limit(None, None, 4096), u64::MAX);
        // Linux's defaults are near u64::MAX for both; pages × page size
        // saturates instead of wrapping.
        let default = 18_446_744_073_692_774_399;
        assert_eq!(sysv_size_limit(Some(default), Some(default), 4096), default);
    }

    #[test]
    fn check_size_applies_the_sysv_limits() {
        let limit = sysv_size_limit(
            procfs::sysv_max_size().ok(),
            procfs::sysv_max_total_pages().ok(),
            page_size(),
        )
        .min(isize::MAX as u64);
        let err = check_size(&Key::PRIVATE, limit + 1).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { size, limit: l, .. } if size == limit + 1 && l == limit),
            "{err}"
        );
        assert!(check_size(&Key::PRIVATE, 1).is_ok());
    }

    #[test]
    fn enomem_says_the_memory_could_not_be_reserved() {
        let err = size_error(
            io::Error::from_raw_os_error(libc::ENOMEM),
            &Key::SysV(0x1234),
            1_000_000_000_000_000_000,
            Access::Create,
        );
        let text = err.to_string();
        assert!(text.starts_with(
            "creating key 0x00001234: the kernel could not reserve 1000000000000000000 bytes of memory for it: "
        ), "{text}");
        assert!(!text.contains("limit"), "{text}");
    }

    #[test]
    fn enospc_names_the_limit() {
        let err = size_error(
            io::Error::from_raw_os_error(libc::ENOSPC),
            &Key::SysV(0x1234),
            8192,
            Access::Create,
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "creating key 0x00001234 of 8192 bytes: the system-wide limit kernel.shm"
            ),
            "{text}"
        );
        assert!(
            text.contains("kernel.shmmni is") || text.contains("needs 2 more"),
            "{text}"
        );
    }
}
