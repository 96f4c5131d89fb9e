//! A process's mapping of a segment.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::sys;

mod sealed {
    pub trait Sealed {}
}

/// How an [`Attachment`] may touch the segment: [`ReadOnly`] or [`ReadWrite`].
///
/// The choice is in the type, so a read-only attachment has no method that
/// writes. This trait is sealed.
pub trait AccessMode: sealed::Sealed + Copy {
    /// Whether the mapping is writable.
    const WRITABLE: bool;
}

/// Attach for reading only (`SHM_RDONLY`, `PROT_READ`): needs read permission.
///
/// A read-only attachment has no method that writes; this does not compile:
///
/// ```compile_fail
/// use shmkit::{Key, Mode, ReadOnly, Segment};
///
/// let segment = Segment::create(&Key::PRIVATE, 4096, Mode::OWNER_ONLY)?;
/// segment.attach(ReadOnly)?.write_at(0, b"no")?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOnly;

/// Attach for reading and writing: needs read and write permission.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadWrite;

impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for ReadWrite {}
impl AccessMode for ReadOnly {
    const WRITABLE: bool = false;
}
impl AccessMode for ReadWrite {
    const WRITABLE: bool = true;
}

/// How to undo the mapping.
#[derive(Debug)]
enum Unmap {
    /// `shmdt`, for System V segments.
    Detach,
    /// `munmap` of the whole length, for POSIX segments.
    Unmap,
}

/// This process's mapping of a segment: `shmat` or `mmap`. Dropping it
/// detaches (`shmdt`/`munmap`), which affects no other process and no other
/// attachment of this one.
///
/// # Touching the bytes
///
/// Other processes may write the segment at any moment, so this type never
/// hands out `&[u8]` over it (that would promise Rust the bytes cannot
/// change). Instead:
///
/// - [`read_at`](Attachment::read_at) and
///   [`write_at`](Attachment::write_at) copy bytes out and in, bounds-checked.
///   A copy that races with another process's write may see some old and some
///   new bytes; synchronise with atomics when that matters.
/// - [`atomic_u32`](Attachment::atomic_u32) and
///   [`atomic_u64`](Attachment::atomic_u64) give atomics inside the segment,
///   bounds- and alignment-checked, for synchronisation between processes;
///   [`load_u32`](Attachment::load_u32) and
///   [`load_u64`](Attachment::load_u64) load them through a read-only
///   attachment too.
/// - [`as_ptr`](Attachment::as_ptr) and
///   [`as_mut_ptr`](Attachment::as_mut_ptr) give the raw mapping for layers
///   that hand each region to one side at a time by their own protocol.
///
/// # Example
///
/// ```
/// use shmkit::{Key, Mode, ReadWrite, Segment};
///
/// let segment = Segment::create(&Key::PRIVATE, 4096, Mode::OWNER_ONLY)?;
/// let a = segment.attach(ReadWrite)?;
/// let b = segment.attach(ReadWrite)?;
/// assert_ne!(a.as_ptr(), b.as_ptr()); // two mappings of the same pages
///
/// a.write_at(100, b"hello")?;
/// let mut buf = [0u8; 5];
/// b.read_at(100, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # drop((a, b));
/// segment.remove()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Attachment<A: AccessMode> {
    addr: NonNull<u8>,
    len: usize,
    unmap: Unmap,
    /// For a POSIX mapping: what turns a shrunk file's faults into errors.
    shrink: Option<ShrinkWatch>,
    /// The watch's flag (or one that never reads faulted), kept here so
    /// that the check at every ring verb is a single load.
    fault: sys::sigbus::FaultFlag,
    access: PhantomData<A>,
}

/// A POSIX mapping's defence against a peer that shrinks the file: the
/// SIGBUS handler's watch, and what is needed to report the damage.
#[derive(Debug)]
struct ShrinkWatch {
    /// `None` if the handler's table was full: the mapping is unwatched.
    /// Held for its drop, which unwatches the mapping; its flag is
    /// `Attachment::fault`.
    _watch: Option<sys::sigbus::Watch>,
    /// A descriptor of the file, to read its new size.
    file: OwnedFd,
    /// The segment, as errors name it.
    segment: String,
}

// SAFETY: the mapping belongs to the process, not a thread; every method
// either copies through raw pointers or returns atomics, so using it from
// several threads is no different from using it from several processes,
// which the type is built for.
unsafe impl<A: AccessMode> Send for Attachment<A> {}
// SAFETY: as for Send: no method gives non-atomic shared references.
unsafe impl<A: AccessMode> Sync for Attachment<A> {}

impl<A: AccessMode> Attachment<A> {
    /// Wraps a System V attachment made by `shmat`.
    ///
    /// # Safety
    ///
    /// - `addr` was returned by `shmat` and is not detached elsewhere.
    /// - The segment is at least `len` bytes long.
    /// - The mapping is writable if `A::WRITABLE`.
    pub(crate) unsafe fn from_shmat(addr: NonNull<u8>, len: usize) -> Self {
        Attachment {
            addr,
            len,
            unmap: Unmap::Detach,
            shrink: None,
            fault: sys::sigbus::FaultFlag::UNWATCHED,
            access: PhantomData,
        }
    }

    /// Wraps a POSIX mapping made by `mmap` of `file`, the segment
    /// `segment`, and watches it for faults of a shrunk file (see
    /// [`check_intact`](Attachment::check_intact)).
    ///
    /// # Safety
    ///
    /// - `addr` and `len` are exactly those of an `mmap` not unmapped elsewhere.
    /// - The mapping is writable if `A::WRITABLE`.
    pub(crate) unsafe fn from_mmap(
        addr: NonNull<u8>,
        len: usize,
        file: OwnedFd,
        segment: String,
    ) -> Result<Self> {
        let watch = sys::sigbus::watch(addr, len, A::WRITABLE).map_err(|source| Error::Os {
            context: "installing shmkit's SIGBUS handler".to_owned(),
            source,
        });
        let mut attachment = Attachment {
            addr,
            len,
            unmap: Unmap::Unmap,
            shrink: None,
            fault: sys::sigbus::FaultFlag::UNWATCHED,
            access: PhantomData,
        };
        // Built first, so that the mapping is unmapped if the handler fails.
        let watch = watch?;
        if let Some(watch) = &watch {
            attachment.fault = watch.flag();
        }
        attachment.shrink = Some(ShrinkWatch {
            _watch: watch,
            file,
            segment,
        });
        Ok(attachment)
    }

    /// Checks that no access to the mapping has found the segment shrunk.
    ///
    /// When another process shrinks (`ftruncate`s) a POSIX segment, the
    /// pages past its new end are gone. Touching one would kill this
    /// process with `SIGBUS`; shmkit's handler instead maps a zero page
    /// there, so the access completes reading zeros, and from then on this
    /// check fails. [`read_at`](Attachment::read_at) and
    /// [`write_at`](Attachment::write_at) make it after every copy, rings
    /// and managed segments at every operation; code that uses
    /// [`as_ptr`](Attachment::as_ptr) should make it after its accesses.
    /// (System V segments cannot shrink.)
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] with the segment's sizes now and when mapped;
    /// [`Error::Os`] (`ENOSPC`) if the size is unchanged: the file system
    /// could not supply a page (a full `/dev/shm`).
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::{Error, Key, Mode, ReadWrite, Segment};
    ///
    /// let key = Key::posix(&format!("/shmkit-doc-intact-{}", std::process::id()))?;
    /// let segment = Segment::create(&key, 8192, Mode::OWNER_ONLY)?;
    /// let mapping = segment.attach(ReadWrite)?;
    /// mapping.check_intact()?;
    ///
    /// // Another process (here: this one) shrinks the file to 0 bytes.
    /// let Key::Posix(name) = &key else { unreachable!() };
    /// std::fs::OpenOptions::new().write(true).open(name.path())?.set_len(0)?;
    /// let err = mapping.write_at(4096, b"gone").unwrap_err(); // no SIGBUS
    /// assert!(matches!(err, Error::Truncated { size: 0, expected: 8192, .. }), "{err}");
    /// segment.remove()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn check_intact(&self) -> Result<()> {
        self.check_fault()
    }

    /// As [`check_intact`](Attachment::check_intact), and also asks the
    /// kernel (`fstat`) whether the file is still as long as the mapping: a
    /// shrink that spared every page this process touched (a cut inside
    /// the first page leaves it mapped, zeroed past the cut) raises no
    /// fault. A system call: for waits, not for every access.
    pub(crate) fn check_size(&self) -> Result<()> {
        self.check_fault()?;
        let Some(shrink) = &self.shrink else {
            return Ok(());
        };
        match sys::posix::fstat(&shrink.file) {
            Ok(st) if (st.st_size as u64) < self.len as u64 => Err(Error::Truncated {
                segment: shrink.segment.clone(),
                size: st.st_size as u64,
                expected: self.len as u64,
            }),
            _ => Ok(()),
        }
    }

    /// A [`Corrupt`](Error::Corrupt) found in a structure in this mapping
    /// becomes [`Truncated`](Error::Truncated) when the file is shorter than
    /// the mapping: a cut inside a page zeroes the bytes past it without a
    /// fault, and the zeros look like damage. (Only on the error path, so
    /// the `fstat` costs nothing normally.)
    #[cold]
    pub(crate) fn explain(&self, err: Error) -> Error {
        match (&err, self.check_size()) {
            (Error::Corrupt(_), Err(truncated)) => truncated,
            _ => err,
        }
    }

    // Inlined: every ring verb and every copy asks, and the answer is one
    // relaxed load; what it costs to explain a fault is kept out of line.
    #[inline(always)]
    fn check_fault(&self) -> Result<()> {
        if self.fault.faulted() {
            return self.fault_error();
        }
        Ok(())
    }

    /// The error for a mapping whose watch saw a fault.
    #[cold]
    #[inline(never)]
    fn fault_error(&self) -> Result<()> {
        // Only a watched mapping's flag can be set, and watched mappings
        // have their file.
        let Some(shrink) = &self.shrink else {
            return Ok(());
        };
        let size = sys::posix::fstat(&shrink.file).map_or(0, |st| st.st_size as u64);
        if size < self.len as u64 {
            return Err(Error::Truncated {
                segment: shrink.segment.clone(),
                size,
                expected: self.len as u64,
            });
        }
        Err(Error::Os {
            context: format!(
                "{}: the file system that holds it could not supply a page of it \
                 (full?), which this mapping now reads as zeros",
                shrink.segment
            ),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })
    }

    /// The size of the mapping in bytes (the segment's size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true: segments have at least 1 byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address where this process sees the segment's first byte.
    ///
    /// Valid until the attachment is dropped. Reading through it follows the
    /// rules in the type's documentation: other processes may be writing.
    pub fn as_ptr(&self) -> *const u8 {
        self.addr.as_ptr()
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the range is not inside the segment.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len(), 1)?;
        // SAFETY: the range lies inside our live mapping (checked above), and
        // `buf` is a distinct, writable Rust buffer. Bytes a peer writes
        // meanwhile may be copied torn, as documented, but are never
        // referenced as `&[u8]`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.addr.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        // The copy may have hit pages a peer truncated away (they read as
        // zeros): then `buf` is not the segment's content.
        self.check_intact()
    }

    /// Loads the 32-bit atomic at `offset` with `order`, through any
    /// attachment, [`ReadOnly`] ones included: to watch a counter or a
    /// flag that a writer publishes with [`atomic_u32`](Attachment::atomic_u32).
    ///
    /// A read-only attachment offers loads and no `&AtomicU32`, because
    /// every other atomic operation writes and would fault on a read-only
    /// mapping; an atomic load of read-only memory is sound for this size
    /// (see "Atomic accesses to read-only memory" in [`std::sync::atomic`]).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] or [`Error::InvalidArgument`] if the four bytes
    /// are not inside the segment or not 4-byte aligned.
    ///
    /// # Panics
    ///
    /// If `order` is `Release` or `AcqRel`, as [`AtomicU32::load`] does.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use shmkit::{Key, Mode, ReadOnly, ReadWrite, Segment};
    ///
    /// let segment = Segment::create(&Key::PRIVATE, 4096, Mode::OWNER_ONLY)?;
    /// let writer = segment.attach(ReadWrite)?;
    /// let reader = segment.attach(ReadOnly)?; // usually another process
    /// writer.atomic_u32(64)?.store(7, Ordering::Release);
    /// writer.atomic_u64(128)?.store(u64::MAX, Ordering::Release);
    /// assert_eq!(reader.load_u32(64, Ordering::Acquire)?, 7);
    /// assert_eq!(reader.load_u64(128, Ordering::Acquire)?, u64::MAX);
    /// assert!(reader.load_u64(4092, Ordering::Acquire).is_err()); // past the end
    /// segment.remove()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn load_u32(&self, offset: usize, order: Ordering) -> Result<u32> {
        self.check_range(offset, 4, align_of::<AtomicU32>())?;
        // SAFETY: in bounds and aligned (checked above); the mapping lives as
        // long as `&self`; the atomic aliases memory other processes access
        // atomically, and only `load` is called on it, which is sound on
        // read-only memory of this size.
        Ok(unsafe { AtomicU32::from_ptr(self.addr.as_ptr().add(offset).cast()) }.load(order))
    }

    /// Loads the 64-bit atomic at `offset`: as [`load_u32`](Attachment::load_u32),
    /// with 8 bytes aligned to 8.
    ///
    /// # Errors
    ///
    /// As [`load_u32`](Attachment::load_u32), with 8 bytes.
    pub fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64> {
        self.check_range(offset, 8, align_of::<AtomicU64>())?;
        // SAFETY: as in load_u32, for eight bytes aligned to eight.
        Ok(unsafe { AtomicU64::from_ptr(self.addr.as_ptr().add(offset).cast()) }.load(order))
    }

    fn check_range(&self, offset: usize, len: usize, align: usize) -> Result<()> {
        let out = || Error::OutOfBounds {
            offset: offset as u64,
            len: len as u64,
            size: self.len as u64,
        };
        let end = offset.checked_add(len).ok_or_else(out)?;
        if end > self.len {
            return Err(out());
        }
        if !(self.addr.as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is not aligned to {align} bytes"
            )));
        }
        Ok(())
    }
}

impl Attachment<ReadWrite> {
    /// The address of the segment's first byte, for writing.
    ///
    /// Valid until the attachment is dropped; see the type's documentation
    /// for how to share the bytes with other processes.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// Maps every page of the segment into this process now (best effort:
    /// an older kernel, or a file shorter than the mapping, leaves the
    /// pages to be mapped at their first touch), so that a structure whose
    /// hot path must not fault (a service's rings) pays at open instead.
    pub(crate) fn populate(&self) {
        // SAFETY: the address and length of this live writable mapping.
        let _ = unsafe { crate::sys::posix::populate(self.addr, self.len) };
    }

    /// Copies `data` into the segment starting at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the range is not inside the segment.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len(), 1)?;
        // SAFETY: the range lies inside our live, writable mapping (checked
        // above; `ReadWrite` attachments are mapped writable), and `data` is a
        // distinct Rust buffer. No Rust reference covers the shared bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.as_ptr().add(offset), data.len())
        };
        // Bytes written to pages a peer truncated away are lost.
        self.check_intact()
    }

    /// The 32-bit atomic at `offset`, shared with every process that maps it.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] or [`Error::InvalidArgument`] if the four bytes
    /// are not inside the segment or not 4-byte aligned.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.check_range(offset, 4, align_of::<AtomicU32>())?;
        // SAFETY: in bounds and aligned (checked above); the mapping lives as
        // long as `&self`; an atomic may alias memory other processes access
        // atomically, and any bit pattern is a valid u32.
        Ok(unsafe { AtomicU32::from_ptr(self.addr.as_ptr().add(offset).cast()) })
    }

    /// The 64-bit atomic at `offset`, shared with every process that maps it.
    ///
    /// # Errors
    ///
    /// As [`atomic_u32`](Attachment::atomic_u32), with 8 bytes.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check_range(offset, 8, align_of::<AtomicU64>())?;
        // SAFETY: as in atomic_u32, for eight bytes aligned to eight.
        Ok(unsafe { AtomicU64::from_ptr(self.addr.as_ptr().add(offset).cast()) })
    }
}

impl<A: AccessMode> Drop for Attachment<A> {
    fn drop(&mut self) {
        // Unwatched before unmapped: the handler must never patch a range
        // that another mapping may take next. (The slot the flag points to
        // may then be reused: nothing reads it after this.)
        self.fault = sys::sigbus::FaultFlag::UNWATCHED;
        drop(self.shrink.take());
        // Errors cannot be reported from drop, and both calls only fail for
        // an address that is not a mapping, which construction rules out.
        let _ = match self.unmap {
            // SAFETY: `addr` came from shmat (from_shmat's contract) and this
            // is the only place that detaches it; `&mut self` means no
            // borrow of the mapping is alive.
            Unmap::Detach => unsafe { sys::sysv::shmdt(self.addr) },
            // SAFETY: `addr`/`len` are our mmap (from_mmap's contract), unmapped
            // only here; no borrow of the mapping is alive.
            Unmap::Unmap => unsafe { sys::posix::unmap(self.addr, self.len) },
        };
    }
}
