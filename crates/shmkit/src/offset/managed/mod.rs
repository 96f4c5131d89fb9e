//! A managed segment: a heap that lives inside a shared-memory segment, with
//! a directory of named objects, so that unrelated processes find the same
//! structures by name and any of them can allocate and free.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ptr::{Offset, Plain};
use crate::error::{Error, Result};
use crate::segment::{Attachment, Key, Mode, ReadWrite, Segment};
use crate::sys::procfs;
use crate::sys::range_lock::RangeLock;

mod containers;
mod lock;

pub use containers::{List, Text, Vector};
use lock::HeapLock;

/// `b"SHMKHEAP"` as a little-endian u64, at offset 0.
const MAGIC: u64 = u64::from_le_bytes(*b"SHMKHEAP");
const VERSION: u32 = 2;

// The header, one 128-byte line (drawn in docs/FORMAT.md).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
const FLAGS_AT: usize = 12;
const SIZE_AT: usize = 16;
const LOCK_AT: usize = 24;
const WAITERS_AT: usize = 28;
const LOCK_START_AT: usize = 32;
const DIRTY_AT: usize = 40;
const FREE_HEAD_AT: u64 = 48;
const DIRECTORY_AT: u64 = 56;
const USED_AT: u64 = 64;
const NEXT_LEASE_AT: usize = 72;
const LOCK_NAMESPACE_AT: usize = 80;
const HEAP_START: u64 = 128;

/// Where a POSIX heap's leases are locked: lease `n` is an OFD lock on byte
/// `LEASES_AT + n` of the segment's file, far past any segment's end (the
/// lock touches no byte of the heap).
const LEASES_AT: u64 = 1 << 62;

/// Blocks are multiples of this, and so aligned to it.
const BLOCK_ALIGN: u64 = 16;
/// A block's header: its size (low bit: allocated) and, when free, the next
/// free block.
const BLOCK_HEADER: u64 = 16;
const ALLOCATED: u64 = 1;
/// The smallest segment worth managing.
const MIN_SIZE: u64 = 4096;
/// How long a process waits for the lock before it checks that the holder
/// is alive (and sleeps at most, between checks).
const LIVENESS_AFTER: Duration = Duration::from_millis(20);
/// How long a process waits for a lock that one holder keeps, before it
/// reports the lock as stuck instead of waiting on (holders keep it for
/// microseconds).
const LOCK_PATIENCE: Duration = Duration::from_secs(2);
/// The longest object name in the directory.
pub const MAX_NAME: usize = 64;

/// A directory entry, as stored in the heap.
#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    next: Offset<Entry>,
    object: u64,
    size: u64,
    /// [`type_tag`] of the value's type, or of a container's element type.
    type_tag: u64,
    /// An [`ObjectKind`] as a number.
    kind: u32,
    /// The size of the value, or of a container's element.
    element_size: u32,
    name_len: u64,
    name: [u8; MAX_NAME],
}

// SAFETY: repr(C), four u64, two u32, one u64, then 64 bytes: no padding,
// any bits valid, alignment 8.
unsafe impl Plain for Entry {}

const _: () = assert!(std::mem::offset_of!(Entry, kind) == 32);
const _: () = assert!(std::mem::offset_of!(Entry, name) == 48);
const _: () = assert!(size_of::<Entry>() == 112);

/// What a named object is; stored in its directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ObjectKind {
    /// A [`Plain`] value ([`ManagedSegment::find_or_create`]).
    Value = 0,
    /// A [`List`].
    List = 1,
    /// A [`Vector`].
    Vector = 2,
    /// A [`Text`].
    Text = 3,
}

impl ObjectKind {
    fn describe(stored: u32) -> &'static str {
        match stored {
            0 => "a value",
            1 => "a list",
            2 => "a vector",
            3 => "a text",
            _ => "an object of unknown kind",
        }
    }
}

/// The type a named object is stored as: its kind and its value's (or
/// elements') type. A lookup that asks for another is refused.
#[derive(Clone, Copy, Debug)]
struct StoredType {
    kind: ObjectKind,
    tag: u64,
    size: u64,
    name: &'static str,
}

impl StoredType {
    fn of<T>(kind: ObjectKind) -> StoredType {
        StoredType {
            kind,
            tag: type_tag::<T>(),
            size: size_of::<T>() as u64,
            name: std::any::type_name::<T>(),
        }
    }

    /// The size of the object itself: the value, or a container's header.
    fn object_size(&self) -> u64 {
        match self.kind {
            ObjectKind::Value => self.size,
            ObjectKind::List | ObjectKind::Vector | ObjectKind::Text => size_of::<Triple>() as u64,
        }
    }

    fn matches(&self, entry: &Entry) -> bool {
        entry.kind == self.kind as u32
            && entry.type_tag == self.tag
            && u64::from(entry.element_size) == self.size
            && entry.size == self.object_size()
    }
}

/// The header of a list, vector or string in the heap.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Triple {
    a: u64,
    b: u64,
    c: u64,
}

// SAFETY: repr(C), three u64: no padding, any bits valid, alignment 8.
unsafe impl Plain for Triple {}

/// A heap inside a segment, shared by every process that attaches it.
///
/// Its state (free list, named-object directory, lock) is in the segment,
/// so any attached process can allocate, free and find objects, at whatever
/// address it maps the segment. All operations take a lock in the segment
/// (a futex, so waiting costs no CPU); a process that dies holding it is
/// detected and the lock recovered, but if it died in the middle of a
/// change, the heap refuses further use with [`Error::Corrupt`] rather than
/// trust half-written links. A live holder that keeps the lock over 2 s
/// (stopped, traced, starved) gives the others [`Error::Busy`]: try again.
///
/// # How a dead lock holder is told from a live one
///
/// - **POSIX segments**: every handle holds a *lease*, an OFD lock on a byte
///   of the segment's file far past its end, which the kernel drops when
///   the process dies; the lock word names the holder's lease. A holder is
///   dead exactly when its lease is free, whatever pid namespace or
///   container it runs in.
/// - **System V segments** have no file to lock. The lock word holds the
///   holder's pid, beside its start time and pid namespace. A holder in
///   this pid namespace is checked in `/proc` (running, same start time,
///   maps the segment). One in another namespace cannot be checked by pid:
///   it counts as alive while any other process has the segment attached
///   (the kernel's attach count), so a live one is never taken for dead,
///   and a dead one is detected once no other process maps the segment;
///   until then the others get [`Error::Busy`]. Prefer a POSIX key when
///   processes in different pid namespaces share a heap.
///
/// Values go in and out by copy ([`Plain`]), never by reference, since
/// another process may be writing them.
///
/// # Example: two handles, as two processes would have
///
/// ```
/// use shmkit::offset::ManagedSegment;
/// use shmkit::{Key, Mode};
///
/// let key = Key::posix(&format!("/shmkit-doc-heap-{}", std::process::id()))?;
/// let a = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY)?;
/// let b = ManagedSegment::open(&key)?; // another mapping, another address
/// assert_ne!(a.base_address(), b.base_address());
///
/// let counter = a.find_or_create("counter", || 41u64)?;
/// a.write(counter, 42)?;
/// let same = b.find_or_create("counter", || 0u64)?;
/// assert_eq!(b.read(same)?, 42);
///
/// let list = a.list::<u64>("primes")?;
/// list.push_back(2)?;
/// list.push_back(3)?;
/// assert_eq!(b.list::<u64>("primes")?.to_vec()?, vec![2, 3]);
///
/// let text = b.text("greeting")?;
/// text.push_str("héllo")?;
/// assert_eq!(a.text("greeting")?.get()?, "héllo");
/// a.segment().remove()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct ManagedSegment {
    size: u64,
    /// How `/proc/PID/maps` names this segment.
    backing: procfs::Backing,
    pid: u32,
    start_time: u64,
    pid_namespace: u64,
    holder: Holder,
    segment: Segment,
    mapping: Attachment<ReadWrite>,
}

/// What this handle writes into the lock word, and how others check it.
#[derive(Debug)]
enum Holder {
    /// A POSIX heap: this handle's lease number, held while `_lease` is.
    Lease { number: u32, _lease: RangeLock },
    /// A System V heap: this process's pid (with its start time and pid
    /// namespace written beside it).
    Pid,
}

impl ManagedSegment {
    /// Creates a segment of `size` bytes (at least 4 KiB) and sets up an
    /// empty heap in it; fails if the key exists.
    pub fn create(key: &Key, size: u64, mode: Mode) -> Result<ManagedSegment> {
        if size < MIN_SIZE {
            return Err(Error::InvalidArgument(format!(
                "a managed segment needs at least {MIN_SIZE} bytes, not {size}"
            )));
        }
        let segment = Segment::create(key, size, mode)?;
        let mapping = segment.attach(ReadWrite)?;
        let heap = ManagedSegment::new(segment, mapping)?;
        heap.initialise(size)?;
        Ok(heap)
    }

    /// Opens the managed segment `key`, checking its header.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none; [`Error::Corrupt`] or
    /// [`Error::VersionMismatch`] if the segment holds no heap this library
    /// reads.
    pub fn open(key: &Key) -> Result<ManagedSegment> {
        let segment = Segment::open(key)?;
        let mapping = segment
            .attach_initialised(MIN_SIZE)
            .map_err(|err| match err {
                Error::Corrupt(_) => Error::Corrupt(format!(
                    "{key} holds no managed heap (its creator never initialised it)"
                )),
                other => other,
            })?;
        let mut heap = ManagedSegment::new(segment, mapping)?;
        heap.validate_header()?;
        Ok(heap)
    }

    /// Opens the managed segment `key`, or creates it as
    /// [`create`](ManagedSegment::create) does. Either side may start first.
    /// An existing segment is used only if `trust` trusts its owner: anyone
    /// may create the key first (docs/SECURITY.md).
    ///
    /// # Errors
    ///
    /// As [`create`](ManagedSegment::create) and
    /// [`open`](ManagedSegment::open); [`Error::UntrustedOwner`] for an
    /// existing segment of an owner `trust` does not name.
    pub fn open_or_create(
        key: &Key,
        size: u64,
        mode: Mode,
        trust: &crate::segment::Trust,
    ) -> Result<ManagedSegment> {
        match ManagedSegment::create(key, size, mode) {
            Err(Error::AlreadyExists { .. }) => {
                // Checked before waiting for a stranger's header, and again
                // on the segment actually mapped.
                trust.check(&Segment::open(key)?, &key.to_string())?;
                let heap = ManagedSegment::open(key)?;
                trust.check(heap.segment(), &key.to_string())?;
                Ok(heap)
            }
            other => other,
        }
    }

    fn new(segment: Segment, mapping: Attachment<ReadWrite>) -> Result<ManagedSegment> {
        let pid = std::process::id();
        let os = |context: &str| {
            let context = context.to_owned();
            move |source| Error::Os { context, source }
        };
        let start_time =
            procfs::process_start_time(pid).map_err(os("reading this process's start time"))?;
        let pid_namespace =
            procfs::pid_namespace().map_err(os("reading this process's pid namespace"))?;
        let holder = ManagedSegment::take_lease(&segment, &mapping)?;
        Ok(ManagedSegment {
            size: mapping.len() as u64,
            backing: segment.backing()?,
            pid,
            start_time,
            pid_namespace,
            holder,
            segment,
            mapping,
        })
    }

    /// A POSIX heap's lease for this handle: a fresh number from the
    /// header's counter, and an OFD lock on its byte. (A number still locked
    /// after the counter wrapped is skipped.)
    fn take_lease(segment: &Segment, mapping: &Attachment<ReadWrite>) -> Result<Holder> {
        if segment.id().is_some() {
            return Ok(Holder::Pid);
        }
        let counter = mapping.atomic_u32(NEXT_LEASE_AT)?;
        for _ in 0..64 {
            // Relaxed: the number needs only to differ from the others';
            // the OFD lock, not memory order, decides who has it.
            let number = counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if number == 0 {
                continue;
            }
            if let Some(lease) = segment.try_lock_range(LEASES_AT + u64::from(number), 1)? {
                return Ok(Holder::Lease {
                    number,
                    _lease: lease,
                });
            }
        }
        Err(Error::Corrupt(format!(
            "{segment}: 64 lease numbers in a row are held; the lease counter is damaged"
        )))
    }

    /// The value this handle's lock word holds while it has the lock.
    fn holder_id(&self) -> u32 {
        match self.holder {
            Holder::Lease { number, .. } => number,
            Holder::Pid => self.pid,
        }
    }

    fn initialise(&self, size: u64) -> Result<()> {
        let heap_end = size & !(BLOCK_ALIGN - 1);
        self.mapping
            .atomic_u32(VERSION_AT)?
            .store(VERSION, Ordering::Relaxed);
        self.mapping
            .atomic_u64(SIZE_AT)?
            .store(heap_end, Ordering::Relaxed);
        // One free block spans the whole heap.
        self.store(Offset::new(HEAP_START), heap_end - HEAP_START)?;
        self.store(Offset::<u64>::new(HEAP_START + 8), 0)?;
        self.store(Offset::new(FREE_HEAD_AT), HEAP_START)?;
        // Release: publishes the header above; pairs with the Acquire in
        // `Segment::attach_initialised`.
        self.mapping
            .atomic_u64(MAGIC_AT)?
            .store(MAGIC, Ordering::Release);
        Ok(())
    }

    fn validate_header(&mut self) -> Result<()> {
        let magic = self.mapping.atomic_u64(MAGIC_AT)?.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(Error::Corrupt(format!(
                "{}: magic {magic:#018x} is not a shmkit managed segment's",
                self.segment
            )));
        }
        let version = self.mapping.atomic_u32(VERSION_AT)?.load(Ordering::Relaxed);
        if version != VERSION {
            return Err(Error::VersionMismatch {
                segment: self.segment.to_string(),
                found: version,
                expected: VERSION,
            });
        }
        let flags = self.mapping.atomic_u32(FLAGS_AT)?.load(Ordering::Relaxed);
        let size = self.mapping.atomic_u64(SIZE_AT)?.load(Ordering::Relaxed);
        let mapped = self.mapping.len() as u64;
        if flags == 0 && size % BLOCK_ALIGN == 0 && size > mapped {
            // A heap end past the segment's end: it was made larger.
            return Err(Error::Truncated {
                segment: self.segment.to_string(),
                size: mapped,
                expected: size,
            });
        }
        if flags != 0
            || size > self.mapping.len() as u64
            || size < MIN_SIZE - BLOCK_ALIGN
            || size % BLOCK_ALIGN != 0
        {
            return Err(Error::Corrupt(format!(
                "{}: heap size {size} or flags {flags:#x} do not fit a segment of {} bytes",
                self.segment,
                self.mapping.len()
            )));
        }
        self.size = size;
        Ok(())
    }

    /// The segment that holds the heap (to [`stat`](Segment::stat) or
    /// [`remove`](Segment::remove) it).
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Where this process mapped the segment. Offsets mean the same at any
    /// address; this is only for showing that.
    pub fn base_address(&self) -> usize {
        self.mapping.as_ptr() as usize
    }

    /// Bytes in allocated blocks (headers included).
    pub fn used(&self) -> Result<u64> {
        let _lock = self.lock()?;
        self.load(Offset::new(USED_AT))
    }

    /// Copies the `T` at `at` out of the heap.
    pub fn read<T: Plain>(&self, at: Offset<T>) -> Result<T> {
        let _lock = self.lock()?;
        self.load(at)
    }

    /// Copies `value` into the heap at `at`.
    pub fn write<T: Plain>(&self, at: Offset<T>, value: T) -> Result<()> {
        let _lock = self.lock()?;
        self.store(at, value)
    }

    /// Allocates room for a `T` and stores `value` there.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if no free block is large enough.
    pub fn alloc<T: Plain>(&self, value: T) -> Result<Offset<T>> {
        let lock = self.lock()?;
        let _change = lock.change()?;
        let at = Offset::new(self.allocate(size_of::<T>() as u64)?);
        self.store(at, value)?;
        Ok(at)
    }

    /// Frees what [`alloc`](ManagedSegment::alloc) returned.
    pub fn free<T>(&self, at: Offset<T>) -> Result<()> {
        let lock = self.lock()?;
        let _change = lock.change()?;
        self.deallocate(at.get())?;
        Ok(())
    }

    /// Finds the object called `name`, or creates it with the value
    /// `init()` returns, like Boost.Interprocess `find_or_construct`.
    /// Unrelated processes that ask for the same name get the same object.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the name is empty or longer than
    /// [`MAX_NAME`] bytes; [`Error::WrongType`] if the object exists with
    /// another type (size, alignment or type name) or is a container.
    pub fn find_or_create<T: Plain>(
        &self,
        name: &str,
        init: impl FnOnce() -> T,
    ) -> Result<Offset<T>> {
        self.find_or_create_as(name, StoredType::of::<T>(ObjectKind::Value), init)
    }

    /// [`find_or_create`](ManagedSegment::find_or_create) of an object
    /// stored as `stored` (a value, or a container's header).
    fn find_or_create_as<T: Plain>(
        &self,
        name: &str,
        stored: StoredType,
        init: impl FnOnce() -> T,
    ) -> Result<Offset<T>> {
        if let Some(found) = self.lookup_locked(name, stored)? {
            return Ok(found);
        }
        // Computed without the lock, so `init` may itself use the segment.
        let value = init();
        let lock = self.lock()?;
        if let Some(found) = self.lookup::<T>(name, stored)? {
            return Ok(found); // another process created it meanwhile
        }
        let _change = lock.change()?;
        let object = self.allocate(size_of::<T>() as u64)?;
        self.store(Offset::new(object), value)?;
        let mut entry = Entry {
            next: self.load(Offset::new(DIRECTORY_AT))?,
            object,
            size: size_of::<T>() as u64,
            type_tag: stored.tag,
            kind: stored.kind as u32,
            element_size: u32::try_from(stored.size).map_err(|_| Error::TooLarge {
                what: "named object's type",
                size: stored.size,
                limit: u64::from(u32::MAX),
            })?,
            name_len: name.len() as u64,
            name: [0; MAX_NAME],
        };
        entry.name[..name.len()].copy_from_slice(name.as_bytes());
        let at = self.allocate(size_of::<Entry>() as u64)?;
        self.store(Offset::new(at), entry)?;
        self.store(Offset::new(DIRECTORY_AT), at)?;
        Ok(Offset::new(object))
    }

    /// Finds the value called `name`, if it exists.
    ///
    /// # Errors
    ///
    /// As [`find_or_create`](ManagedSegment::find_or_create): a name that
    /// holds another type, or a container, is refused.
    pub fn find<T: Plain>(&self, name: &str) -> Result<Option<Offset<T>>> {
        self.lookup_locked(name, StoredType::of::<T>(ObjectKind::Value))
    }

    fn lookup_locked<T: Plain>(&self, name: &str, asked: StoredType) -> Result<Option<Offset<T>>> {
        let _lock = self.lock()?;
        self.lookup(name, asked)
    }

    /// Changes the `T` at `at` in one step under the heap's lock: copies it
    /// out, lets `change` modify the copy, and stores it back, so that no
    /// other process's read or update comes between. `change` must not use
    /// this segment (it would wait for the lock it runs under, and get
    /// [`Error::Busy`]).
    ///
    /// # Example: a counter two processes increment
    ///
    /// ```
    /// use shmkit::offset::ManagedSegment;
    /// use shmkit::{Key, Mode};
    ///
    /// let key = Key::posix(&format!("/shmkit-doc-update-{}", std::process::id()))?;
    /// let heap = ManagedSegment::create(&key, 1 << 16, Mode::OWNER_ONLY)?;
    /// let hits = heap.find_or_create("hits", || 0u64)?;
    /// let before = heap.update(hits, |n| {
    ///     *n += 1;
    ///     *n - 1
    /// })?;
    /// assert_eq!((before, heap.read(hits)?), (0, 1));
    /// heap.segment().remove()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn update<T: Plain, R>(
        &self,
        at: Offset<T>,
        change: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        let _lock = self.lock()?;
        let mut value = self.load(at)?;
        let result = change(&mut value);
        self.store(at, value)?;
        Ok(result)
    }

    /// The linked list of `T` called `name` (created empty if new).
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] if the name holds anything but a list of `T`
    /// (a vector, a text, a list of another type, a value).
    pub fn list<T: Plain>(&self, name: &str) -> Result<List<'_, T>> {
        Ok(List {
            heap: self,
            header: self.find_or_create_as(
                name,
                StoredType::of::<T>(ObjectKind::List),
                Triple::default,
            )?,
            element: std::marker::PhantomData,
        })
    }

    /// The growable vector of `T` called `name` (created empty if new).
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] if the name holds anything but a vector of
    /// `T`.
    pub fn vector<T: Plain>(&self, name: &str) -> Result<Vector<'_, T>> {
        Ok(Vector {
            heap: self,
            header: self.find_or_create_as(
                name,
                StoredType::of::<T>(ObjectKind::Vector),
                Triple::default,
            )?,
            element: std::marker::PhantomData,
        })
    }

    /// The UTF-8 text called `name` (created empty if new).
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] if the name holds anything but a text (a
    /// `vector::<u8>` included).
    pub fn text(&self, name: &str) -> Result<Text<'_>> {
        Ok(Text {
            bytes: Vector {
                heap: self,
                header: self.find_or_create_as(
                    name,
                    StoredType::of::<u8>(ObjectKind::Text),
                    Triple::default,
                )?,
                element: std::marker::PhantomData,
            },
        })
    }

    // --- raw access, checked ------------------------------------------------

    fn load<T: Plain>(&self, at: Offset<T>) -> Result<T> {
        let range = at.check(self.size)?;
        // SAFETY: in bounds of our mapping (checked against the validated
        // heap size, which is at most the mapping's length); T is Plain, so
        // any bytes are a valid T; copied out, never referenced. Callers hold
        // the lock, so other processes that follow the protocol are not
        // writing these bytes.
        let value = unsafe {
            self.mapping
                .as_ptr()
                .add(range.start)
                .cast::<T>()
                .read_unaligned()
        };
        // Zeros from a page a peer truncated away are not the heap's.
        self.mapping.check_intact()?;
        Ok(value)
    }

    fn store<T: Plain>(&self, at: Offset<T>, value: T) -> Result<()> {
        let range = at.check(self.size)?;
        // SAFETY: in bounds of our writable mapping (checked); T is Plain, so
        // every byte written is initialised; no reference to these bytes
        // exists in this process.
        unsafe {
            self.mapping
                .as_mut_ptr()
                .add(range.start)
                .cast::<T>()
                .write_unaligned(value)
        };
        self.mapping.check_intact()
    }

    fn copy(&self, from: u64, to: u64, len: u64) -> Result<()> {
        for (at, what) in [(from, "source"), (to, "destination")] {
            if at.checked_add(len).is_none_or(|end| end > self.size) {
                return Err(Error::Corrupt(format!(
                    "copy {what} {at}+{len} is outside the heap"
                )));
            }
        }
        // SAFETY: both ranges are inside the mapping (checked); they are
        // distinct blocks of the heap, and `copy` allows overlap anyway.
        unsafe {
            std::ptr::copy(
                self.mapping.as_ptr().add(from as usize),
                self.mapping.as_mut_ptr().add(to as usize),
                len as usize,
            )
        };
        self.mapping.check_intact()
    }

    // --- the allocator (callers hold the lock) -------------------------------

    /// A free or allocated block's size, validated.
    fn block_size(&self, block: u64) -> Result<u64> {
        let size = self.load(Offset::<u64>::new(block))? & !ALLOCATED;
        if block < HEAP_START
            || !block.is_multiple_of(BLOCK_ALIGN)
            || size < BLOCK_HEADER
            || !size.is_multiple_of(BLOCK_ALIGN)
            || block.checked_add(size).is_none_or(|end| end > self.size)
        {
            return Err(Error::Corrupt(format!(
                "heap block at {block} has impossible size {size}"
            )));
        }
        Ok(size)
    }

    /// First fit in the free list, which is sorted by address: the strictly
    /// rising addresses make a cycle impossible to follow.
    fn allocate(&self, len: u64) -> Result<u64> {
        let need = (BLOCK_HEADER + len.max(8)).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
        let mut link = FREE_HEAD_AT; // where the pointer to `block` is stored
        let mut block = self.load(Offset::<u64>::new(link))?;
        let mut largest = 0;
        let mut previous = 0;
        while block != 0 {
            if block <= previous {
                return Err(Error::Corrupt(format!(
                    "free list goes back from {previous} to {block}"
                )));
            }
            let size = self.block_size(block)?;
            if self.load(Offset::<u64>::new(block))? & ALLOCATED != 0 {
                return Err(Error::Corrupt(format!(
                    "allocated block {block} is on the free list"
                )));
            }
            let next = self.load(Offset::<u64>::new(block + 8))?;
            if size >= need {
                let rest = size - need;
                if rest >= 2 * BLOCK_ALIGN {
                    let split = block + need;
                    self.store(Offset::new(split), rest)?;
                    self.store(Offset::<u64>::new(split + 8), next)?;
                    self.store(Offset::new(link), split)?;
                    self.store(Offset::new(block), need | ALLOCATED)?;
                } else {
                    self.store(Offset::new(link), next)?;
                    self.store(Offset::new(block), size | ALLOCATED)?;
                }
                let used: u64 = self.load(Offset::new(USED_AT))?;
                let taken = self.block_size(block)?;
                // Wrapping: the count is in shared memory, so it may be anything.
                self.store(Offset::new(USED_AT), used.wrapping_add(taken))?;
                return Ok(block + BLOCK_HEADER);
            }
            largest = largest.max(size);
            previous = block;
            link = block + 8;
            block = next;
        }
        Err(Error::TooLarge {
            what: "allocation",
            size: len,
            limit: largest.saturating_sub(BLOCK_HEADER),
        })
    }

    /// Returns a block to the free list, merging it with free neighbours.
    fn deallocate(&self, object: u64) -> Result<()> {
        let block = object.wrapping_sub(BLOCK_HEADER);
        if object < HEAP_START + BLOCK_HEADER
            || self.load(Offset::<u64>::new(block))? & ALLOCATED == 0
        {
            return Err(Error::InvalidArgument(format!(
                "offset {object} is not an allocated object"
            )));
        }
        let mut size = self.block_size(block)?;
        let used: u64 = self.load(Offset::new(USED_AT))?;
        self.store(Offset::new(USED_AT), used.saturating_sub(size))?;
        // Find the free blocks before and after it.
        let (mut before, mut link) = (0u64, FREE_HEAD_AT);
        let mut after = self.load(Offset::<u64>::new(link))?;
        while after != 0 && after < block {
            if after <= before {
                return Err(Error::Corrupt(format!(
                    "free list goes back from {before} to {after}"
                )));
            }
            self.block_size(after)?;
            before = after;
            link = after + 8;
            after = self.load(Offset::<u64>::new(link))?;
        }
        if after == block {
            return Err(Error::Corrupt(format!(
                "block {block} is both allocated and free"
            )));
        }
        if after != 0 && block + size == after {
            size += self.block_size(after)?;
            after = self.load(Offset::<u64>::new(after + 8))?;
        }
        if before != 0 && before + self.block_size(before)? == block {
            let merged = self.block_size(before)? + size;
            self.store(Offset::new(before), merged)?;
            self.store(Offset::<u64>::new(before + 8), after)?;
        } else {
            self.store(Offset::new(block), size)?;
            self.store(Offset::<u64>::new(block + 8), after)?;
            self.store(Offset::new(link), block)?;
        }
        Ok(())
    }

    /// The object called `name`, if it exists and is stored as `asked`.
    fn lookup<T: Plain>(&self, name: &str, asked: StoredType) -> Result<Option<Offset<T>>> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::InvalidArgument(format!(
                "object name {name:?} must be 1 to {MAX_NAME} bytes"
            )));
        }
        let mut at: Offset<Entry> = self.load(Offset::new(DIRECTORY_AT))?;
        // Every entry is a distinct block of at least this size: a longer
        // walk means the links form a loop.
        let mut budget = self.size / (BLOCK_HEADER + size_of::<Entry>() as u64) + 1;
        while !at.is_null() {
            budget = budget.checked_sub(1).ok_or_else(|| {
                Error::Corrupt("the object directory's links form a loop".to_owned())
            })?;
            let entry = self.load(at)?;
            let len = (entry.name_len as usize).min(MAX_NAME);
            if &entry.name[..len] == name.as_bytes() {
                if !asked.matches(&entry) {
                    let each = |kind| {
                        if kind == ObjectKind::Value as u32 {
                            ""
                        } else {
                            " each"
                        }
                    };
                    return Err(Error::WrongType {
                        place: format!("{} object {name:?}", self.segment),
                        expected: format!(
                            "{} of {} ({} bytes{})",
                            ObjectKind::describe(asked.kind as u32),
                            asked.name,
                            asked.size,
                            each(asked.kind as u32),
                        ),
                        found: format!(
                            "{} of another type ({} bytes{})",
                            ObjectKind::describe(entry.kind),
                            entry.element_size,
                            each(entry.kind),
                        ),
                    });
                }
                let object = Offset::<T>::new(entry.object);
                object.check(self.size)?;
                return Ok(Some(object));
            }
            at = entry.next;
        }
        Ok(None)
    }
}

/// A hash of the type's name, size and alignment (FNV-1a), stored with each
/// named object so that a program asking for another type is refused.
/// (Type names may differ between compiler versions: then the check errs on
/// the side of refusing.)
fn type_tag<T>() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let name = std::any::type_name::<T>();
    let sizes = [size_of::<T>() as u64, align_of::<T>() as u64];
    for byte in name
        .bytes()
        .chain(sizes.iter().flat_map(|s| s.to_le_bytes()))
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
