//! `Segment`, `Attachment`, `Stat` and `segments()`: System V and POSIX
//! segments, their mappings exported through the buffer protocol.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::IntoPy;
use shmkit::{Key, Mode, ReadOnly, ReadWrite};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Segment>()?;
    m.add_class::<Attachment>()?;
    m.add_class::<Stat>()?;
    m.add_class::<Mapping>()?;
    m.add_function(wrap_pyfunction!(segments, m)?)?;
    Ok(())
}

/// A key as Python gives it: an int (any 32 bits; negative ones as C's
/// `key_t`), or a string as the CLI takes it: `"0x1234"`, `"4660"`,
/// `"ftok:PATH:PROJ"`, `"private"`, or a POSIX name `"/name"`.
pub fn key(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Key> {
    if let Ok(text) = key.extract::<String>() {
        return text.parse::<Key>().py(py);
    }
    match key.extract::<i64>() {
        Ok(n) => u32::try_from(n)
            .ok()
            .or_else(|| i32::try_from(n).ok().map(|k| k as u32))
            .map(Key::SysV)
            .ok_or_else(|| PyValueError::new_err(format!("key {n} does not fit in 32 bits"))),
        Err(_) => Err(PyTypeError::new_err(
            "a key is an int, or a string: \"0x1234\", \"ftok:PATH:PROJ\" or \"/name\"",
        )),
    }
}

/// A handle on one shared-memory segment, System V or POSIX.
///
/// The handle maps nothing: `attach()` does. Dropping it leaves the
/// segment in place; `remove()` removes it (the memory goes with the last
/// mapping).
#[pyclass(module = "shmkit", frozen)]
pub struct Segment {
    inner: shmkit::Segment,
}

#[pymethods]
impl Segment {
    /// Creates a new segment of `size` bytes with permission bits `mode`
    /// (applied exactly, not narrowed by the umask). Fails with
    /// `AlreadyExists` if the key names one.
    ///
    /// `key` is an int (System V), `"ftok:PATH:PROJ"`, `"0x1234"`,
    /// `"private"` (a fresh System V segment reachable only by id), or a
    /// POSIX name `"/name"` (a file in /dev/shm).
    #[staticmethod]
    #[pyo3(signature = (key, size, mode = 0o600))]
    fn create(py: Python<'_>, key: &Bound<'_, PyAny>, size: u64, mode: u32) -> PyResult<Segment> {
        let key = self::key(py, key)?;
        let inner = shmkit::Segment::create(&key, size, Mode::new(mode)).py(py)?;
        Ok(Segment { inner })
    }

    /// Opens the existing segment that `key` names (`NotFound` if none).
    #[staticmethod]
    fn open(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Segment> {
        let key = self::key(py, key)?;
        let inner = shmkit::Segment::open(&key).py(py)?;
        Ok(Segment { inner })
    }

    /// Maps the segment into this process. The `Attachment` supports the
    /// buffer protocol: `memoryview(attachment)`, `numpy.frombuffer(...)`.
    #[pyo3(signature = (readonly = false))]
    fn attach(&self, py: Python<'_>, readonly: bool) -> PyResult<Attachment> {
        let mapped = if readonly {
            Mapped::ReadOnly(self.inner.attach(ReadOnly).py(py)?)
        } else {
            Mapped::ReadWrite(self.inner.attach(ReadWrite).py(py)?)
        };
        Ok(Attachment {
            len: mapped.len(),
            readonly,
            mapped: Mutex::new(Some(mapped)),
            exports: AtomicUsize::new(0),
        })
    }

    /// Everything the kernel knows about the segment, with the processes
    /// that have it mapped.
    fn stat(&self, py: Python<'_>) -> PyResult<Stat> {
        Ok(Stat::from(self.inner.stat().py(py)?))
    }

    /// Removes the segment: its key stops finding it at once; processes
    /// that have it mapped keep it until they detach.
    fn remove(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.remove().py(py)
    }

    /// The key: `"0x0000abcd"` for System V, the name for POSIX.
    #[getter]
    fn key(&self) -> String {
        self.inner.key().to_string()
    }

    /// The System V id, or None for a POSIX segment.
    #[getter]
    fn id(&self) -> Option<i32> {
        self.inner.id()
    }

    /// `"sysv"` or `"posix"`.
    #[getter]
    fn kind(&self) -> &'static str {
        kind_name(self.inner.kind())
    }

    /// The size in bytes, as the kernel reports it now.
    #[getter]
    fn size(&self, py: Python<'_>) -> PyResult<u64> {
        self.inner.size().py(py)
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.Segment {}>", self.inner)
    }
}

fn kind_name(kind: shmkit::Kind) -> &'static str {
    match kind {
        shmkit::Kind::SysV => "sysv",
        shmkit::Kind::Posix => "posix",
    }
}

enum Mapped {
    ReadOnly(shmkit::Attachment<ReadOnly>),
    ReadWrite(shmkit::Attachment<ReadWrite>),
}

impl Mapped {
    fn len(&self) -> usize {
        match self {
            Mapped::ReadOnly(a) => a.len(),
            Mapped::ReadWrite(a) => a.len(),
        }
    }

    fn as_ptr(&self) -> *const u8 {
        match self {
            Mapped::ReadOnly(a) => a.as_ptr(),
            Mapped::ReadWrite(a) => a.as_ptr(),
        }
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> shmkit::Result<()> {
        match self {
            Mapped::ReadOnly(a) => a.read_at(offset, buf),
            Mapped::ReadWrite(a) => a.read_at(offset, buf),
        }
    }
}

/// This process's mapping of a segment; a buffer of its bytes.
///
/// `memoryview(attachment)` and `numpy.frombuffer(attachment, ...)` see the
/// shared memory itself, without a copy (read-only if attached with
/// `readonly=True`). Other processes may write it at any time.
///
/// `detach()` (or leaving a `with` block) unmaps it, and raises
/// `BufferError` while a memoryview or array made from it is still alive,
/// as `mmap.close()` does: release those first (`view.release()`,
/// `del array`).
#[pyclass(module = "shmkit", frozen)]
pub struct Attachment {
    mapped: Mutex<Option<Mapped>>,
    len: usize,
    readonly: bool,
    /// Buffers exported and not yet released.
    exports: AtomicUsize,
}

impl Attachment {
    fn with_mapping<T>(&self, f: impl FnOnce(&Mapped) -> PyResult<T>) -> PyResult<T> {
        let mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        match &*mapped {
            Some(m) => f(m),
            None => Err(PyValueError::new_err("the attachment was detached")),
        }
    }
}

#[pymethods]
impl Attachment {
    /// Copies `size` bytes from `offset` (bounds-checked).
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        size: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.with_mapping(|m| PyBytes::new_with(py, size, |buf| m.read_at(offset, buf).py(py)))
    }

    /// Copies `data` (any bytes-like object) in at `offset` (bounds-checked).
    fn write(&self, py: Python<'_>, offset: usize, data: &[u8]) -> PyResult<()> {
        self.with_mapping(|m| match m {
            Mapped::ReadWrite(a) => a.write_at(offset, data).py(py),
            Mapped::ReadOnly(_) => Err(PyTypeError::new_err("the attachment is read-only")),
        })
    }

    /// Unmaps the segment from this process. Raises `BufferError` while a
    /// buffer made from it (a memoryview, a numpy array) is alive.
    /// Detaching twice does nothing.
    fn detach(&self) -> PyResult<()> {
        let mut mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        if self.exports.load(Ordering::Relaxed) > 0 {
            return Err(PyBufferError::new_err(
                "cannot detach: a memoryview or array of the attachment still exists; release it first",
            ));
        }
        drop(mapped.take());
        Ok(())
    }

    /// Whether `detach()` was called.
    #[getter]
    fn detached(&self) -> bool {
        self.mapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Whether the mapping is read-only.
    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// The address of the mapping's first byte in this process.
    #[getter]
    fn address(&self) -> PyResult<usize> {
        self.with_mapping(|m| Ok(m.as_ptr() as usize))
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.detach()?;
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let ptr = this.with_mapping(|m| Ok(m.as_ptr()))?;
        // SAFETY: `view` is the caller's Py_buffer (the buffer protocol's
        // contract). The mapping is live (checked above, under the lock that
        // `detach` takes) and stays so while this export exists: `detach`
        // refuses while `exports` > 0, and the export holds a reference to
        // this object (`obj`), so it cannot be dropped either. Python code
        // reads and writes the bytes through the buffer as another process
        // would; no Rust reference to them is formed.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr as *mut _,
                this.len as ffi::Py_ssize_t,
                c_int::from(this.readonly),
                flags,
            )
        };
        if status != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        this.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::Relaxed);
    }

    fn __repr__(&self) -> String {
        let state = if self.detached() { ", detached" } else { "" };
        let access = if self.readonly {
            "read-only"
        } else {
            "read-write"
        };
        format!("<shmkit.Attachment of {} bytes, {access}{state}>", self.len)
    }
}

/// One process's mapping of a segment, from /proc/PID/maps.
#[pyclass(module = "shmkit", frozen, get_all, skip_from_py_object)]
#[derive(Clone)]
pub struct Mapping {
    /// The process id.
    pid: u32,
    /// The command name (/proc/PID/comm).
    command: String,
    /// The first address.
    start: u64,
    /// One past the last address.
    end: u64,
    /// Access as the kernel prints it: "rw-s" or "r--s".
    perms: String,
}

#[pymethods]
impl Mapping {
    fn __repr__(&self) -> String {
        format!(
            "<shmkit.Mapping pid {} ({}) {:#x}-{:#x} {}>",
            self.pid, self.command, self.start, self.end, self.perms
        )
    }
}

/// The status of a segment (`Segment.stat()`, `segments()`). Fields that
/// one kind of segment does not have are None for it; times are seconds
/// since the epoch.
#[pyclass(module = "shmkit", frozen, get_all)]
pub struct Stat {
    /// `"sysv"` or `"posix"`.
    kind: &'static str,
    /// The key as the kernel reports it now (`"0x0000abcd"`; a removed
    /// System V segment's is 0), or the POSIX name.
    key: String,
    /// The System V id.
    id: Option<i32>,
    /// Size in bytes.
    size: u64,
    /// Permission bits.
    mode: u32,
    /// Owner uid.
    uid: u32,
    /// Owner gid.
    gid: u32,
    /// Creator uid (System V).
    cuid: Option<u32>,
    /// Creator gid (System V).
    cgid: Option<u32>,
    /// Creator's pid (System V).
    cpid: Option<u32>,
    /// Pid of the last attach or detach (System V).
    lpid: Option<u32>,
    /// Number of attachments.
    nattch: u64,
    /// Last attach (System V) or access (POSIX).
    atime: Option<f64>,
    /// Last detach (System V).
    dtime: Option<f64>,
    /// Last change of the permissions.
    ctime: Option<f64>,
    /// Last modification of the contents (POSIX).
    mtime: Option<f64>,
    /// Whether removal was asked and waits for the last detach.
    removed: bool,
    /// Whether the pages are locked in memory (System V).
    locked: bool,
    /// Bytes resident (System V) or allocated in the tmpfs (POSIX).
    resident_bytes: u64,
    /// Bytes swapped out (System V).
    swapped_bytes: Option<u64>,
    /// The mappings of this segment in the processes this one may inspect.
    attachers: Vec<Mapping>,
}

fn seconds(time: Option<SystemTime>) -> Option<f64> {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

impl From<shmkit::Stat> for Stat {
    fn from(s: shmkit::Stat) -> Stat {
        Stat {
            kind: kind_name(s.kind),
            key: s.key.to_string(),
            id: s.id,
            size: s.size,
            mode: s.mode.bits(),
            uid: s.uid,
            gid: s.gid,
            cuid: s.cuid,
            cgid: s.cgid,
            cpid: s.cpid,
            lpid: s.lpid,
            nattch: s.nattch,
            atime: seconds(s.atime),
            dtime: seconds(s.dtime),
            ctime: seconds(s.ctime),
            mtime: seconds(s.mtime),
            removed: s.removed,
            locked: s.locked,
            resident_bytes: s.resident_bytes,
            swapped_bytes: s.swapped_bytes,
            attachers: s
                .attachers
                .into_iter()
                .map(|m| Mapping {
                    pid: m.pid,
                    command: m.command,
                    start: m.start,
                    end: m.end,
                    perms: m.perms,
                })
                .collect(),
        }
    }
}

#[pymethods]
impl Stat {
    fn __repr__(&self) -> String {
        format!(
            "<shmkit.Stat {} {} size={} mode={:#o} nattch={}>",
            self.kind, self.key, self.size, self.mode, self.nattch
        )
    }
}

/// Every segment on the machine, as `ipcs -m` and `ls /dev/shm` show them:
/// System V first, then POSIX by name.
#[pyfunction]
fn segments(py: Python<'_>) -> PyResult<Vec<Stat>> {
    Ok(shmkit::list().py(py)?.into_iter().map(Stat::from).collect())
}
