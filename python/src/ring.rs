//! `Producer`, `Consumer` and `Message`: the two ends of a message ring,
//! and a message read in place.
//!
//! # The zero-copy view and its lifetime
//!
//! The library's `Consumer::read` returns a `ReadGrant<'_>` that borrows
//! the consumer: while it lives, the record's bytes are the consumer's and
//! the producer leaves them alone; dropping it hands them back. Python
//! holds a `Message` across calls, so the grant is kept inside the
//! consumer's [`Endpoint`] beside the boxed consumer it borrows (a
//! self-reference, hence the raw pointer), with a [`ViewState`] it shares
//! with the `Message`. The rules that make this safe:
//!
//! - While a grant is held, nothing else touches the consumer: every verb
//!   goes through [`Endpoint::consumer`], which refuses (or first drops the
//!   grant of a `Message` that Python already freed).
//! - A grant is dropped only while no buffer exported from its `Message`
//!   exists (`ViewState::exports` is 0); releasing with exports raises
//!   `BufferError` and keeps the grant. An export holds a reference to the
//!   `Message`, and the `Message` to the `Consumer`, so neither can be
//!   freed under a live buffer.
//! - After the release, the `Message` refuses new exports: using it raises
//!   `ValueError`, never reads memory the producer may be reusing.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{ffi, PyTraverseError};

use crate::errors::{self, IntoPy};
use crate::wait::Wait;
use shmkit::ring::{self, Options, ReadGrant};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Message>()?;
    Ok(())
}

fn options(capacity: Option<u64>) -> Options {
    match capacity {
        Some(bytes) => Options::default().capacity(bytes),
        None => Options::default(),
    }
}

/// The bytes of a message to send: any contiguous bytes-like object of
/// any item type (bytes, bytearray, memoryview, a numpy array), copied
/// through its raw pointer (it may itself be shared memory that another
/// process writes, such as an `Attachment`).
pub struct Source {
    /// Boxed: the exporter may keep pointers into it until the release.
    view: Box<ffi::Py_buffer>,
}

impl Source {
    pub fn new(data: &Bound<'_, PyAny>) -> PyResult<Source> {
        let mut view: Box<ffi::Py_buffer> = Box::new(ffi::Py_buffer::new());
        // SAFETY: `view` is a writable Py_buffer that lives until `Drop`
        // releases it; PyBUF_SIMPLE asks for one contiguous block of bytes
        // whatever the item type, and fails for a non-contiguous exporter.
        let status =
            unsafe { ffi::PyObject_GetBuffer(data.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) };
        if status != 0 {
            return Err(PyErr::fetch(data.py()));
        }
        Ok(Source { view })
    }

    pub fn len(&self) -> usize {
        self.view.len as usize
    }

    /// Copies the bytes to `dst`, which has room for [`len`](Source::len).
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writes of `len()` bytes.
    pub unsafe fn copy_to(&self, dst: *mut u8) {
        // SAFETY: the export gives `len` contiguous bytes at `buf` until it
        // is released (in Drop); `dst` is the caller's promise; the regions
        // cannot overlap (a ring's free space is never exported). A raw copy
        // forms no `&[u8]` over bytes another process might be writing.
        unsafe { std::ptr::copy_nonoverlapping(self.view.buf as *const u8, dst, self.len()) }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        // SAFETY: `view` was filled by a successful PyObject_GetBuffer and is
        // released exactly once, here, with the GIL held.
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.view) });
    }
}

/// The sending end of message ring `name`, created if it does not exist
/// (its segment is /dev/shm/shmkit.ring.NAME).
///
/// `capacity` sizes a ring this call creates (a power of two, 4 KiB to
/// 1 TiB; default 1 MiB); the largest message is about half of it.
/// Closing (`close()`, leaving a `with` block, or garbage collection)
/// ends the stream: the consumer receives everything sent, then `Closed`.
#[pyclass(module = "shmkit")]
pub struct Producer {
    /// A mutex only to make the class `Sync`: every method that uses the
    /// producer takes `&mut self` (PyO3 refuses a second borrow), and so
    /// reaches it with `get_mut`, without locking.
    inner: Mutex<Option<ring::Producer>>,
}

impl Producer {
    fn producer(&mut self, py: Python<'_>) -> PyResult<&mut ring::Producer> {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner
            .as_mut()
            .ok_or_else(|| errors::raise(py, "Closed", "the producer was closed".to_owned()))
    }
}

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (name, capacity = None))]
    fn new(py: Python<'_>, name: &str, capacity: Option<u64>) -> PyResult<Producer> {
        let options = options(capacity);
        let inner = py
            .detach(|| ring::Producer::open_with(name, &options))
            .py(py)?;
        Ok(Producer {
            inner: Mutex::new(Some(inner)),
        })
    }

    /// Sends one message (any bytes-like object: bytes, bytearray,
    /// memoryview, a C-contiguous numpy array), waiting while the ring is
    /// full, at most `timeout` seconds if given (then `Timeout`).
    ///
    /// Raises `TooLarge` for a message over `max_message`, `PeerGone` if
    /// the consumer died while the ring was full.
    #[pyo3(signature = (data, timeout = None))]
    fn send(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let source = Source::new(data)?;
        let len = source.len();
        let wait = Wait::new(timeout)?;
        let producer = self.producer(py)?;
        let fill = |mut grant: ring::WriteGrant<'_>| {
            // SAFETY: the grant's `len` bytes are this producer's until the
            // commit; the GIL is held.
            unsafe { source.copy_to(grant.as_mut_ptr()) };
            grant.commit();
            Ok(())
        };
        // The common case, room now, without a GIL round trip.
        match producer.try_grant(len) {
            Ok(grant) => return fill(grant),
            Err(shmkit::Error::Full { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| producer.grant_timeout(len, slice)) {
                Ok(grant) => return fill(grant),
                Err(err) => wait.after(py, err)?,
            }
        }
    }

    /// Closes the stream: the consumer receives what was sent, then
    /// `Closed`. Closing twice does nothing.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        match self
            .inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(producer) => producer.close().py(py),
            None => Ok(()),
        }
    }

    /// The ring's name.
    #[getter]
    fn name(&mut self, py: Python<'_>) -> PyResult<String> {
        Ok(self.producer(py)?.name().to_owned())
    }

    /// The largest message the ring carries, in bytes.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.producer(py)?.max_message())
    }

    /// Bytes in the ring's data area.
    #[getter]
    fn capacity(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.producer(py)?.capacity())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&mut self) -> bool {
        self.inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&mut self, py: Python<'_>) -> String {
        match self.name(py) {
            Ok(name) => format!("<shmkit.Producer of ring {name}>"),
            Err(_) => "<shmkit.Producer, closed>".to_owned(),
        }
    }
}

/// What a `Message` and the consumer that holds its grant share.
#[derive(Default)]
struct ViewState {
    /// Buffers exported from the message and not yet released.
    exports: AtomicUsize,
    /// Set when the grant is dropped: no export may start after it.
    released: AtomicBool,
}

/// The library's consumer, boxed so that a grant can borrow it from beside
/// it, and the grant a `Message` holds.
struct Endpoint {
    /// The grant of the message a `Message` views, and their shared state.
    /// Borrows `*consumer`: always dropped before it.
    held: Option<(ReadGrant<'static>, Arc<ViewState>)>,
    /// From `Box::into_raw`; freed in `Drop`.
    consumer: NonNull<ring::Consumer>,
}

// SAFETY: the endpoint owns the boxed consumer (and the grant that borrows
// it) exclusively, and `ring::Consumer` is Send; moving all of it to
// another thread moves the only access path with it.
unsafe impl Send for Endpoint {}

impl Endpoint {
    fn new(consumer: ring::Consumer) -> Endpoint {
        Endpoint {
            held: None,
            consumer: NonNull::from(Box::leak(Box::new(consumer))),
        }
    }

    /// The consumer, once no grant borrows it: a grant whose `Message`
    /// Python has freed is dropped first; one still viewed is an error.
    fn consumer(&mut self, py: Python<'_>) -> PyResult<&mut ring::Consumer> {
        if let Some((_, state)) = &self.held {
            if Arc::strong_count(state) > 1 {
                return Err(errors::raise(
                    py,
                    "Error",
                    "a message from read() is still held: leave its with block (or call its release()) first"
                        .to_owned(),
                ));
            }
            self.drop_grant();
        }
        // SAFETY: `consumer` is the live box (freed only in Drop), and no
        // grant borrows it now (`held` is None); `&mut self` makes this the
        // only reference for its lifetime.
        Ok(unsafe { self.consumer.as_mut() })
    }

    /// Drops the held grant (handing its record back to the producer)
    /// unless a buffer exported from its `Message` is alive.
    fn release(&mut self, state: &Arc<ViewState>) -> PyResult<()> {
        match &self.held {
            Some((_, held)) if Arc::ptr_eq(held, state) => {
                if state.exports.load(Ordering::Relaxed) > 0 {
                    return Err(PyBufferError::new_err(
                        "cannot release the message: a memoryview or numpy array of it still exists; \
                         delete it (or copy what you keep) first",
                    ));
                }
                self.drop_grant();
                Ok(())
            }
            // Released already (or the consumer closed).
            _ => Ok(()),
        }
    }

    /// Leaves the ring (`ring::Consumer::close`), reporting what dropping
    /// could not. The caller has released the grant.
    fn close(mut self) -> shmkit::Result<()> {
        self.drop_grant();
        let consumer = self.consumer;
        // `held` is None: forgetting the endpoint leaks nothing, and keeps
        // its Drop from freeing the box a second time.
        std::mem::forget(self);
        // SAFETY: `consumer` came from `Box::leak` in `new`; Drop will not
        // run (forgotten above), so this is its only release, and no grant
        // borrows it any more.
        unsafe { Box::from_raw(consumer.as_ptr()) }.close()
    }

    fn drop_grant(&mut self) {
        if let Some((grant, state)) = self.held.take() {
            state.released.store(true, Ordering::Relaxed);
            drop(grant);
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // The grant borrows the consumer: it goes first.
        self.drop_grant();
        // SAFETY: `consumer` came from `Box::leak` in `new` and is freed
        // only here; no grant borrows it any more.
        drop(unsafe { Box::from_raw(self.consumer.as_ptr()) });
    }
}

/// The receiving end of message ring `name`, created if it does not exist.
///
/// `recv()` copies a message out as bytes; `read()` gives a zero-copy view
/// of it in the ring. Iterating (`for message in consumer`) receives until
/// the producer closes. `PeerGone` is raised once the producer's process
/// died and everything it sent was received.
#[pyclass(module = "shmkit")]
pub struct Consumer {
    /// A mutex only to make the class `Sync`, as in `Producer`.
    endpoint: Mutex<Option<Endpoint>>,
}

impl Consumer {
    fn slot(&mut self) -> &mut Option<Endpoint> {
        self.endpoint.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn endpoint(&mut self, py: Python<'_>) -> PyResult<&mut Endpoint> {
        self.slot()
            .as_mut()
            .ok_or_else(|| errors::raise(py, "Closed", "the consumer was closed".to_owned()))
    }
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (name, capacity = None))]
    fn new(py: Python<'_>, name: &str, capacity: Option<u64>) -> PyResult<Consumer> {
        let options = options(capacity);
        let inner = py
            .detach(|| ring::Consumer::open_with(name, &options))
            .py(py)?;
        Ok(Consumer {
            endpoint: Mutex::new(Some(Endpoint::new(inner))),
        })
    }

    /// Receives the next message as bytes, waiting while the ring is empty,
    /// at most `timeout` seconds if given (then `Timeout`).
    ///
    /// Raises `Closed` once the producer closed and everything was
    /// received, `PeerGone` once it died and everything it committed was
    /// received.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let wait = Wait::new(timeout)?;
        let consumer = self.endpoint(py)?.consumer(py)?;
        let copy = |grant: ReadGrant<'_>| {
            let len = grant.len();
            let bytes = PyBytes::new_with(py, len, |buf| {
                // SAFETY: the grant's `len` bytes are a committed record the
                // producer leaves alone until the grant drops; `buf` is a
                // fresh bytes object of `len` bytes.
                unsafe { std::ptr::copy_nonoverlapping(grant.as_ptr(), buf.as_mut_ptr(), len) };
                Ok(())
            })?;
            // A copy that ran onto a page a peer cut away is `Truncated`
            // (the message kept), never handed on as the message.
            grant
                .copied_intact()
                .map_err(|err| errors::to_py(py, err))?;
            Ok(bytes)
        };
        // The common case, a message now, without a GIL round trip.
        match consumer.try_read() {
            Ok(grant) => return copy(grant),
            Err(shmkit::Error::Empty { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| consumer.read_timeout(slice)) {
                Ok(grant) => return copy(grant),
                Err(err) => wait.after(py, err)?,
            }
        }
    }

    /// The next message, in place: a `Message`, to use in a `with` block.
    /// It supports the buffer protocol (`memoryview(m)`,
    /// `numpy.frombuffer(m, dtype=...)`, `bytes(m)`) without a copy, and
    /// stays valid until the block exits; its space then goes back to the
    /// producer. Waits as `recv()` does.
    #[pyo3(signature = (timeout = None))]
    fn read(slf: Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Message> {
        let py = slf.py();
        let wait = Wait::new(timeout)?;
        let mut this = slf.borrow_mut();
        let endpoint = this.endpoint(py)?;
        let raw = NonNull::from(endpoint.consumer(py)?);
        let consumer = || -> &'static mut ring::Consumer {
            // SAFETY: `raw` is the endpoint's live boxed consumer, and no
            // grant borrows it (`consumer()` just checked). The grant made
            // through this reference is stored in `endpoint.held`, which the
            // endpoint drops before the box and checks before every other
            // use of the consumer (module docs): 'static is that promise,
            // kept by hand. Each reference serves one call, and is not used
            // after the next one is made.
            unsafe { &mut *raw.as_ptr() }
        };
        let grant = match consumer().try_read() {
            Ok(grant) => grant,
            Err(shmkit::Error::Empty { .. }) => loop {
                let slice = wait.slice();
                let consumer = consumer();
                match py.detach(|| consumer.read_timeout(slice)) {
                    Ok(grant) => break grant,
                    Err(err) => wait.after(py, err)?,
                }
            },
            Err(err) => return Err(errors::to_py(py, err)),
        };
        let state = Arc::new(ViewState::default());
        let message = Message {
            consumer: slf.clone().unbind(),
            address: grant.as_ptr() as usize,
            len: grant.len(),
            sequence: grant.sequence(),
            state: state.clone(),
        };
        endpoint.held = Some((grant, state));
        Ok(message)
    }

    /// Closes this end: the ring stays for the producer and a next
    /// consumer. Raises `BufferError` while a `Message`'s buffer is still
    /// exported. Closing twice does nothing.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(endpoint) = self.slot() {
            if let Some((_, state)) = &endpoint.held {
                let state = state.clone();
                endpoint.release(&state)?;
            }
        }
        match self.slot().take() {
            Some(endpoint) => endpoint.close().py(py),
            None => Ok(()),
        }
    }

    /// The ring's name.
    #[getter]
    fn name(&mut self, py: Python<'_>) -> PyResult<String> {
        Ok(self.endpoint(py)?.consumer(py)?.name().to_owned())
    }

    /// The largest message the ring carries, in bytes.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.endpoint(py)?.consumer(py)?.max_message())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&mut self) -> bool {
        self.slot().is_none()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message; iteration ends when the producer closes the ring.
    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv(py, None) {
            Ok(message) => Ok(Some(message)),
            Err(err) if err.is_instance(py, errors::class(py, "Closed")?.as_any()) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&mut self, py: Python<'_>) -> String {
        match self.name(py) {
            Ok(name) => format!("<shmkit.Consumer of ring {name}>"),
            Err(_) => "<shmkit.Consumer>".to_owned(),
        }
    }
}

/// A message read in place by `Consumer.read()`: a read-only buffer of its
/// bytes inside the ring, valid until released.
///
/// Use it in a `with` block; leaving the block releases it (hands its
/// space back to the producer). Release raises `BufferError` while a
/// memoryview or numpy array made from it is alive: delete those (or copy
/// what you keep) before the block ends. Using a released message raises
/// `ValueError`.
#[pyclass(module = "shmkit", frozen)]
pub struct Message {
    consumer: Py<Consumer>,
    /// The first byte of the record in this process's mapping of the ring.
    address: usize,
    len: usize,
    sequence: u64,
    state: Arc<ViewState>,
}

impl Message {
    fn check(&self) -> PyResult<()> {
        if self.state.released.load(Ordering::Relaxed) {
            return Err(PyValueError::new_err(
                "the message was released: its bytes are the producer's again",
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl Message {
    /// Hands the message's space back to the producer. Raises
    /// `BufferError` while a buffer made from it is alive; releasing twice
    /// does nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.state.released.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut consumer = self.consumer.bind(py).try_borrow_mut()?;
        match consumer.slot() {
            Some(endpoint) => endpoint.release(&self.state),
            None => Ok(()),
        }
    }

    /// Whether the message was released.
    #[getter]
    fn released(&self) -> bool {
        self.state.released.load(Ordering::Relaxed)
    }

    /// The message's sequence number: the position of its record in the
    /// ring's byte stream (it grows with every message).
    #[getter]
    fn sequence(&self) -> u64 {
        self.sequence
    }

    /// A copy of the message's bytes.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.check()?;
        PyBytes::new_with(py, self.len, |buf| {
            // SAFETY: not released (checked above, with the GIL held, which
            // `release` needs too): the record is this consumer's.
            unsafe {
                std::ptr::copy_nonoverlapping(self.address as *const u8, buf.as_mut_ptr(), self.len)
            };
            Ok(())
        })
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        this.check()?;
        // SAFETY: `view` is the caller's Py_buffer. The record is the
        // consumer's until the grant drops, which `Endpoint::release` does
        // only once `exports` is back to 0; this export counts from here
        // and holds a reference to the message (`obj`). Read-only: the
        // bytes are the producer's message.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                this.address as *mut _,
                this.len as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if status != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        this.state.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.state.exports.fetch_sub(1, Ordering::Relaxed);
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.consumer)
    }

    fn __repr__(&self) -> String {
        let state = if self.released() { ", released" } else { "" };
        format!(
            "<shmkit.Message of {} bytes, sequence {}{state}>",
            self.len, self.sequence
        )
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // Hand the record back now rather than at the consumer's next call
        // (which would also do it): the producer may be waiting for room.
        Python::attach(|py| {
            if let Ok(mut consumer) = self.consumer.bind(py).try_borrow_mut() {
                if let Some(endpoint) = consumer.slot() {
                    let _ = endpoint.release(&self.state);
                }
            }
        });
    }
}
