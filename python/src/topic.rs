//! `Publisher` and `Subscriber`: many-to-many topics.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{self, IntoPy};
use crate::ring::Source;
use crate::wait::Wait;
use shmkit::topic::{self, Options};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Publisher>()?;
    m.add_class::<Subscriber>()?;
    Ok(())
}

fn options(capacity: Option<u64>) -> Options {
    match capacity {
        Some(bytes) => Options::default().capacity(bytes),
        None => Options::default(),
    }
}

fn closed(py: Python<'_>, what: &str) -> PyErr {
    errors::raise(py, "Closed", format!("the {what} was closed"))
}

/// A publisher of topic `name`, created if it does not exist (its segment
/// is /dev/shm/shmkit.topic.NAME). Every subscriber receives every message
/// of every publisher.
///
/// `capacity` sizes each publisher's lane in a topic this call creates (a
/// power of two; default 256 KiB); the largest message is about half of
/// it. Given for an existing topic, it must be the topic's (else
/// `OptionMismatch`); not given, it is. Closing (`close()`, leaving a
/// `with` block) ends this publisher's stream.
#[pyclass(module = "shmkit")]
pub struct Publisher {
    /// A mutex only to make the class `Sync`: methods take `&mut self` and
    /// use `get_mut`.
    inner: Mutex<Option<topic::Publisher>>,
}

impl Publisher {
    fn publisher(&mut self, py: Python<'_>) -> PyResult<&mut topic::Publisher> {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.as_mut().ok_or_else(|| closed(py, "publisher"))
    }
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (name, capacity = None))]
    fn new(py: Python<'_>, name: &str, capacity: Option<u64>) -> PyResult<Publisher> {
        let options = options(capacity);
        let inner = py
            .detach(|| topic::Publisher::open_with(name, &options))
            .py(py)?;
        Ok(Publisher {
            inner: Mutex::new(Some(inner)),
        })
    }

    /// Publishes one message (any C-contiguous bytes-like object), waiting
    /// while the slowest subscriber has not read the space it needs, at most
    /// `timeout` seconds if given (then `Timeout`).
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
        let publisher = self.publisher(py)?;
        let fill = |mut grant: topic::WriteGrant<'_>| {
            // SAFETY: the grant's `len` bytes are this publisher's until the
            // commit; the GIL is held.
            unsafe { source.copy_to(grant.as_mut_ptr()) };
            grant.commit();
            Ok(())
        };
        match publisher.try_grant(len) {
            Ok(grant) => return fill(grant),
            Err(shmkit::Error::Full { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| publisher.grant_timeout(len, slice)) {
                Ok(grant) => return fill(grant),
                Err(err) => wait.after(py, err)?,
            }
        }
    }

    /// Leaves the topic; closing twice does nothing.
    fn close(&mut self) {
        *self.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The topic's name.
    #[getter]
    fn name(&mut self, py: Python<'_>) -> PyResult<String> {
        Ok(self.publisher(py)?.name().to_owned())
    }

    /// This publisher's id, unique among the topic's publishers.
    #[getter]
    fn id(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.publisher(py)?.id())
    }

    /// The largest message the topic carries, in bytes.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.publisher(py)?.max_message())
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

/// A subscriber of topic `name`, created if it does not exist.
///
/// `recv()` returns the next message of any publisher as bytes;
/// iterating receives until every publisher closed (`Closed`). A
/// subscriber of a drop-oldest topic that fell behind gets `Lagged`, then
/// continues with the oldest message still there.
#[pyclass(module = "shmkit")]
pub struct Subscriber {
    /// As in `Publisher`.
    inner: Mutex<Option<topic::Subscriber>>,
    /// The publisher and sequence number of the last message received.
    last: Option<(u64, u64)>,
}

impl Subscriber {
    fn subscriber(&mut self, py: Python<'_>) -> PyResult<&mut topic::Subscriber> {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.as_mut().ok_or_else(|| closed(py, "subscriber"))
    }
}

#[pymethods]
impl Subscriber {
    #[new]
    #[pyo3(signature = (name, capacity = None))]
    fn new(py: Python<'_>, name: &str, capacity: Option<u64>) -> PyResult<Subscriber> {
        let options = options(capacity);
        let inner = py
            .detach(|| topic::Subscriber::open_with(name, &options))
            .py(py)?;
        Ok(Subscriber {
            inner: Mutex::new(Some(inner)),
            last: None,
        })
    }

    /// Receives the next message as bytes, waiting while there is none, at
    /// most `timeout` seconds if given (then `Timeout`). Raises `Closed`
    /// once every publisher closed and everything was received, `PeerGone`
    /// when one died instead, `Lagged` as the class says.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &mut self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let wait = Wait::new(timeout)?;
        let subscriber = self
            .inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .ok_or_else(|| closed(py, "subscriber"))?;
        let last = &mut self.last;
        let mut copy = |guard: topic::ReadGuard<'_>| {
            *last = Some((guard.publisher(), guard.sequence()));
            PyBytes::new(py, &guard)
        };
        match subscriber.try_read() {
            Ok(guard) => return Ok(copy(guard)),
            Err(shmkit::Error::Empty { .. }) => {}
            Err(err) => return Err(errors::to_py(py, err)),
        }
        loop {
            let slice = wait.slice();
            match py.detach(|| subscriber.read_timeout(slice)) {
                Ok(guard) => return Ok(copy(guard)),
                Err(err) => wait.after(py, err)?,
            }
        }
    }

    /// The id of the publisher of the last message received, or None.
    #[getter]
    fn last_publisher(&self) -> Option<u64> {
        self.last.map(|(publisher, _)| publisher)
    }

    /// The last message's place in its publisher's stream (0 for the
    /// first), or None.
    #[getter]
    fn last_sequence(&self) -> Option<u64> {
        self.last.map(|(_, sequence)| sequence)
    }

    /// Leaves the topic; closing twice does nothing.
    fn close(&mut self) {
        *self.inner.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The topic's name.
    #[getter]
    fn name(&mut self, py: Python<'_>) -> PyResult<String> {
        Ok(self.subscriber(py)?.name().to_owned())
    }

    /// The largest message the topic carries, in bytes.
    #[getter]
    fn max_message(&mut self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.subscriber(py)?.max_message())
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message; iteration ends when every publisher closed.
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
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }
}
