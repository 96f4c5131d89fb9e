//! `Client` and `Server`: request and response between processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{self, IntoPy};
use crate::ring::Source;
use crate::wait::Wait;
use shmkit::service;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<PendingCall>()?;
    m.add_class::<Server>()?;
    m.add_class::<Request>()?;
    Ok(())
}

fn closed(py: Python<'_>, what: &str) -> PyErr {
    errors::raise(py, "Closed", format!("the {what} was closed"))
}

/// The bytes of a bytes-like object, copied: a request may come from a
/// buffer another process writes (a segment's `Attachment`), over which no
/// `&[u8]` may be formed.
fn copied(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let source = Source::new(data)?;
    let mut bytes = Vec::with_capacity(source.len());
    // SAFETY: `bytes` has room for `len()` bytes, which the copy fills
    // before `set_len` makes them part of it.
    unsafe {
        source.copy_to(bytes.as_mut_ptr());
        bytes.set_len(source.len());
    }
    Ok(bytes)
}

/// A client of service `name`, created if it does not exist (its segment
/// is /dev/shm/shmkit.service.NAME), in a client slot of its own.
///
/// `call()` sends a request and waits for its response; `send()` and
/// `wait()` keep several calls in flight and await them in any order. A
/// server that dies with calls in flight makes them raise `PeerGone`.
/// Closing (`close()`, leaving a `with` block) gives the slot back.
#[pyclass(module = "shmkit")]
pub struct Client {
    /// A mutex only to make the class `Sync`: methods take `&mut self` and
    /// use `get_mut`.
    inner: Mutex<Option<service::Client>>,
}

/// A call sent by `Client.send()` and not yet answered: pass it to
/// `Client.wait()`. Dropping it unanswered abandons the call (its response
/// is skipped when it comes).
#[pyclass(module = "shmkit", frozen)]
pub struct PendingCall {
    /// `None` once answered, and while a `Client.wait` has it.
    inner: Mutex<Option<service::PendingCall>>,
    id: u64,
    answered: AtomicBool,
}

impl Client {
    fn client(&mut self, py: Python<'_>) -> PyResult<&mut service::Client> {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.as_mut().ok_or_else(|| closed(py, "client"))
    }

    /// Sends `request`, waiting (with the GIL released, in slices) while
    /// the client has its most calls in flight or its ring is full.
    fn send_copied(
        &mut self,
        py: Python<'_>,
        request: &[u8],
        wait: &Wait,
    ) -> PyResult<service::PendingCall> {
        let client = self.client(py)?;
        match client.try_send_request(request) {
            Ok(call) => return Ok(call),
            Err(shmkit::Error::Full { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| client.send_request_timeout(request, slice)) {
                Ok(call) => return Ok(call),
                Err(err) => wait.after(py, err)?,
            }
        }
    }

    /// Waits for `call`'s response and copies it out.
    fn wait_for<'py>(
        &mut self,
        py: Python<'py>,
        call: &service::PendingCall,
        wait: &Wait,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let client = self.client(py)?;
        // `copied`: a copy that ran onto a page a peer cut away is
        // `Truncated`, never handed on as the response.
        match client.try_wait(call).and_then(|r| r.copied()) {
            Ok(response) => return Ok(PyBytes::new(py, &response)),
            Err(shmkit::Error::Empty { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| client.wait_timeout(call, slice).and_then(|r| r.copied())) {
                Ok(response) => return Ok(PyBytes::new(py, &response)),
                Err(err) => wait.after(py, err)?,
            }
        }
    }
}

#[pymethods]
impl Client {
    #[new]
    fn new(py: Python<'_>, name: &str) -> PyResult<Client> {
        let inner = py.detach(|| service::Client::connect(name)).py(py)?;
        Ok(Client {
            inner: Mutex::new(Some(inner)),
        })
    }

    /// Sends `request` (any C-contiguous bytes-like object) and returns the
    /// response as bytes, waiting at most `timeout` seconds in all if given
    /// (then `Timeout`, and the call is abandoned).
    #[pyo3(signature = (request, timeout = None))]
    fn call<'py>(
        &mut self,
        py: Python<'py>,
        request: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let request = copied(request)?;
        let wait = Wait::new(timeout)?;
        let call = self.send_copied(py, &request, &wait)?;
        self.wait_for(py, &call, &wait)
    }

    /// Sends `request` and returns its `PendingCall` without waiting for
    /// the response; waits only for room, at most `timeout` seconds.
    #[pyo3(signature = (request, timeout = None))]
    fn send(
        &mut self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<PendingCall> {
        let request = copied(request)?;
        let wait = Wait::new(timeout)?;
        let call = self.send_copied(py, &request, &wait)?;
        Ok(PendingCall {
            id: call.id(),
            inner: Mutex::new(Some(call)),
            answered: AtomicBool::new(false),
        })
    }

    /// The response to `call` (from `send()`), as bytes, waiting at most
    /// `timeout` seconds if given (then `Timeout`; the call stays pending
    /// and may be waited for again). A call is answered once.
    #[pyo3(signature = (call, timeout = None))]
    fn wait<'py>(
        &mut self,
        py: Python<'py>,
        call: &Bound<'_, PendingCall>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let wait = Wait::new(timeout)?;
        // Taken out of the call for the wait (and put back if it fails),
        // so that no borrow of the Python object lasts across the wait:
        // another thread may look at it meanwhile.
        let call = call.borrow();
        let taken = call.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(pending) = taken else {
            let id = call.id;
            let why = if call.answered.load(Ordering::Relaxed) {
                format!("call {id:#x} was answered already")
            } else {
                format!("call {id:#x} is being waited for by another thread")
            };
            return Err(errors::raise(py, "InvalidArgument", why));
        };
        match self.wait_for(py, &pending, &wait) {
            Ok(response) => {
                call.answered.store(true, Ordering::Relaxed);
                Ok(response)
            }
            Err(err) => {
                *call.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some(pending);
                Err(err)
            }
        }
    }

    /// Gives the client's slot back; closing twice does nothing.
    fn close(&mut self) {
        *self.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The service's name.
    #[getter]
    fn name(&mut self, py: Python<'_>) -> PyResult<String> {
        Ok(self.client(py)?.name().to_owned())
    }

    /// This client's slot, as the server sees it in `Request.client`.
    #[getter]
    fn slot(&mut self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.client(py)?.slot())
    }

    /// The largest request, in bytes.
    #[getter]
    fn max_request(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.client(py)?.max_request())
    }

    /// The largest response, in bytes.
    #[getter]
    fn max_response(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.client(py)?.max_response())
    }

    /// Calls sent whose responses were not read yet.
    #[getter]
    fn in_flight(&mut self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.client(py)?.in_flight())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }
}

#[pymethods]
impl PendingCall {
    /// The call's id (the server sees it as `Request.id`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Whether `Client.wait()` has returned its response.
    #[getter]
    fn answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }
}

/// The server of service `name`, created if it does not exist. One server
/// holds a service at a time (another raises `InUse`).
///
/// `recv()` returns the next `Request` of any client; `reply()` answers
/// it, in any order. Iterating receives requests for ever. Closing
/// (`close()`, leaving a `with` block) makes the clients' calls raise
/// `Closed`.
#[pyclass(module = "shmkit")]
pub struct Server {
    /// As in `Client`.
    inner: Mutex<Option<service::Server>>,
}

/// One request a `Server` received: its bytes, the client that sent it,
/// and what `Server.reply()` needs to answer it.
#[pyclass(module = "shmkit")]
pub struct Request {
    caller: service::Caller,
    data: Py<PyBytes>,
}

impl Server {
    fn server(&mut self, py: Python<'_>) -> PyResult<&mut service::Server> {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.as_mut().ok_or_else(|| closed(py, "server"))
    }
}

#[pymethods]
impl Server {
    #[new]
    fn new(py: Python<'_>, name: &str) -> PyResult<Server> {
        let inner = py.detach(|| service::Server::open(name)).py(py)?;
        Ok(Server {
            inner: Mutex::new(Some(inner)),
        })
    }

    /// The next request, waiting while there is none, at most `timeout`
    /// seconds if given (then `Timeout`).
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Request> {
        let wait = Wait::new(timeout)?;
        let server = self.server(py)?;
        // `copied`, as in `Client::wait_for`.
        let copy = |request: service::Request<'_>| Ok((request.caller(), request.copied()?));
        match server.try_recv_request().and_then(copy) {
            Ok((caller, data)) => {
                return Ok(Request {
                    caller,
                    data: PyBytes::new(py, &data).unbind(),
                })
            }
            Err(shmkit::Error::Empty { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| server.recv_request_timeout(slice).and_then(copy)) {
                Ok((caller, data)) => {
                    return Ok(Request {
                        caller,
                        data: PyBytes::new(py, &data).unbind(),
                    })
                }
                Err(err) => wait.after(py, err)?,
            }
        }
    }

    /// Answers `request` with `response` (any C-contiguous bytes-like
    /// object). A client that died or abandoned the call is skipped
    /// silently, as the library does.
    fn reply(
        &mut self,
        py: Python<'_>,
        request: &Bound<'_, Request>,
        response: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let caller = request.borrow().caller;
        let source = Source::new(response)?;
        let server = self.server(py)?;
        let mut grant = server.reply_grant(caller, source.len()).py(py)?;
        // SAFETY: the grant's `len` bytes are this server's until the
        // commit; the GIL is held.
        unsafe { source.copy_to(grant.as_mut_ptr()) };
        grant.commit();
        Ok(())
    }

    /// Leaves the service; closing twice does nothing.
    fn close(&mut self) {
        *self.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The service's name.
    #[getter]
    fn name(&mut self, py: Python<'_>) -> PyResult<String> {
        Ok(self.server(py)?.name().to_owned())
    }

    /// Clients connected now.
    #[getter]
    fn clients(&mut self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.server(py)?.clients())
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next request; a server's requests never end.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Request> {
        self.recv(py, None)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }
}

#[pymethods]
impl Request {
    /// The request's bytes.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    /// The slot of the client that sent it (its `Client.slot`).
    #[getter]
    fn client(&self) -> u32 {
        self.caller.client()
    }

    /// The call's id (the client's `PendingCall.id`).
    #[getter]
    fn id(&self) -> u64 {
        self.caller.id()
    }
}
