//! The Python exception classes, and the mapping of `shmkit::Error` onto
//! them.
//!
//! Each class derives from `shmkit.Error` and, where Python has a built-in
//! exception that means the same, from that too: `except TimeoutError`,
//! `except PermissionError` and `except FileNotFoundError` catch shmkit's
//! errors as they catch the standard library's. PyO3's `create_exception!`
//! takes one base only, so the classes are made at import with `type()`.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The exception classes: name, built-in base (besides `shmkit.Error`), doc.
const CLASSES: &[(&str, Option<&str>, &str)] = &[
    ("NotFound", Some("FileNotFoundError"), "No segment has this key or name."),
    ("AlreadyExists", Some("FileExistsError"), "An exclusive create found the key or name taken."),
    ("PermissionDenied", Some("PermissionError"), "The kernel's permission check refused the operation."),
    (
        "UntrustedOwner",
        Some("PermissionError"),
        "The ring, topic or segment belongs to a user this process does not trust.",
    ),
    ("InvalidArgument", Some("ValueError"), "An argument that can never be valid: a bad key, name, size or mode."),
    ("TooLarge", Some("ValueError"), "A size over a limit: a message longer than the ring's largest, a segment over shmmax."),
    ("OutOfBounds", Some("IndexError"), "A byte range outside the segment."),
    ("Corrupt", None, "Bytes in shared memory that break the format (or a format version this shmkit does not read)."),
    ("Truncated", None, "Someone shrank the segment under this process's mapping."),
    ("WrongType", Some("TypeError"), "A value of another type than the one asked for: a peer sent another type, or a heap object is of another kind."),
    ("NotASegment", None, "Something other than a shared-memory segment is at this POSIX name (a symlink, a FIFO, ...)."),
    ("PeerGone", None, "The process at the other end died without closing."),
    (
        "PeerLeft",
        None,
        "The other end left the ring cleanly and will not read what is sent (a producer learns it when the ring fills).",
    ),
    (
        "OptionMismatch",
        Some("ValueError"),
        "An option given to open an existing ring or topic (its capacity) differs from its own.",
    ),
    ("Closed", None, "The sender closed, and everything it sent was received."),
    ("Timeout", Some("TimeoutError"), "A blocking call waited its full timeout."),
    ("Empty", None, "A non-blocking receive found no message."),
    ("Full", None, "A non-blocking send found no room."),
    ("InUse", None, "A live process already holds this end of the ring."),
    ("TopicFull", None, "Every publisher or subscriber place of the topic is held by a live process."),
    ("ServiceFull", None, "Every client slot of the service is held by a live process."),
    ("Lagged", None, "A subscriber of a drop-oldest topic fell behind: messages were overwritten before it read them."),
    ("Busy", None, "Another live process holds a lock for too long; try again."),
    ("OsError", Some("OSError"), "Any other failure of a system call."),
];

static TYPES: PyOnceLock<Vec<(&'static str, Py<PyType>)>> = PyOnceLock::new();
static BASE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Makes the classes and adds them, and `Error`, to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = base(py)?;
    m.add("Error", base)?;
    for (name, class) in types(py)? {
        m.add(*name, class.bind(py))?;
    }
    Ok(())
}

fn base(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    BASE.get_or_try_init(py, || {
        let dict = PyDict::new(py);
        dict.set_item("__doc__", "The base of every exception shmkit raises.")?;
        dict.set_item("__module__", "shmkit")?;
        make(
            py,
            "Error",
            &PyTuple::new(py, [py.get_type::<PyException>()])?,
            &dict,
        )
    })
    .map(|t| t.bind(py))
}

fn types(py: Python<'_>) -> PyResult<&Vec<(&'static str, Py<PyType>)>> {
    TYPES.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let base = base(py)?;
        CLASSES
            .iter()
            .map(|&(name, builtin, doc)| {
                let mut bases = vec![base.clone().into_any()];
                if let Some(builtin) = builtin {
                    bases.push(builtins.getattr(builtin)?);
                }
                let dict = PyDict::new(py);
                dict.set_item("__doc__", doc)?;
                dict.set_item("__module__", "shmkit")?;
                Ok((name, make(py, name, &PyTuple::new(py, bases)?, &dict)?))
            })
            .collect()
    })
}

fn make(
    py: Python<'_>,
    name: &str,
    bases: &Bound<'_, PyTuple>,
    dict: &Bound<'_, PyDict>,
) -> PyResult<Py<PyType>> {
    let class = py.get_type::<PyType>().call1((name, bases, dict))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

/// The exception class `name` (`"Error"` for the base).
pub fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let found = types(py)?.iter().find(|(n, _)| *n == name);
    match found {
        Some((_, class)) => Ok(class.bind(py).clone()),
        None => base(py).cloned(),
    }
}

/// An exception of class `name` with `message`.
pub fn raise(py: Python<'_>, name: &str, message: String) -> PyErr {
    match class(py, name) {
        Ok(class) => PyErr::from_type(class, message),
        Err(err) => err,
    }
}

/// The Python exception for a library error: its class by variant, its
/// message the library's (a complete sentence naming the object).
pub fn to_py(py: Python<'_>, err: shmkit::Error) -> PyErr {
    use shmkit::Error as E;
    let name = match &err {
        E::NotFound { .. } => "NotFound",
        E::AlreadyExists { .. } => "AlreadyExists",
        E::PermissionDenied { .. } => "PermissionDenied",
        E::UntrustedOwner { .. } => "UntrustedOwner",
        E::InvalidName { .. } | E::InvalidArgument(_) => "InvalidArgument",
        E::TooLarge { .. } => "TooLarge",
        E::OutOfBounds { .. } => "OutOfBounds",
        E::Corrupt(_) | E::VersionMismatch { .. } => "Corrupt",
        E::WrongType { .. } => "WrongType",
        E::Truncated { .. } => "Truncated",
        E::NotASegment { .. } => "NotASegment",
        E::PeerGone { .. } => "PeerGone",
        E::PeerLeft { .. } => "PeerLeft",
        E::OptionMismatch { .. } => "OptionMismatch",
        E::Closed { .. } => "Closed",
        E::Timeout { .. } => "Timeout",
        E::Empty { .. } => "Empty",
        E::Full { .. } => "Full",
        E::InUse { .. } => "InUse",
        E::TopicFull { .. } => "TopicFull",
        E::ServiceFull { .. } => "ServiceFull",
        E::Lagged { .. } => "Lagged",
        E::Busy { .. } => "Busy",
        E::Os { .. } => "OsError",
        _ => "Error",
    };
    raise(py, name, err.to_string())
}

/// `?` for library results inside a function that has the GIL.
pub trait IntoPy<T> {
    /// The result with its error made a Python exception.
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for shmkit::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|err| to_py(py, err))
    }
}
