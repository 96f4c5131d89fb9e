//! The one error type of the library.

use std::fmt;
use std::io;

/// What went wrong, in the user's terms.
///
/// Every variant names the segment (its key, POSIX name or id) and the numbers
/// involved, so that `shmkit: {err}` is a complete sentence for a person at a
/// shell.
///
/// # Example
///
/// ```
/// use shmkit::{Error, Key, Segment};
///
/// let missing = Key::posix("/shmkit-doc-surely-missing").unwrap();
/// match Segment::open(&missing) {
///     Err(Error::NotFound { segment }) => assert_eq!(segment, "/shmkit-doc-surely-missing"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment has this key, name or id.
    #[error("no shared-memory segment {segment}")]
    NotFound {
        /// The key, POSIX name or `id N` that was looked up.
        segment: String,
    },
    /// An exclusive create found the key already in use.
    #[error("shared-memory segment {segment} already exists")]
    AlreadyExists {
        /// The key or POSIX name.
        segment: String,
    },
    /// The kernel's permission check refused the operation.
    #[error("permission denied: {access} of shared-memory segment {segment}")]
    PermissionDenied {
        /// The key, POSIX name or `id N`.
        segment: String,
        /// What was asked for.
        access: Access,
    },
    /// A POSIX shared-memory name that `shm_open` would not accept.
    #[error("invalid POSIX shared-memory name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An argument that can never be valid, whatever the state of the system.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A size over a limit of the system or of a format.
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("segment size", "message", …).
        what: &'static str,
        /// The size asked for.
        size: u64,
        /// The largest size allowed.
        limit: u64,
    },
    /// A byte range that does not lie inside the segment.
    #[error("bytes {offset}..{end} are outside the segment's {size} bytes", end = *offset as u128 + *len as u128)]
    OutOfBounds {
        /// The first byte asked for.
        offset: u64,
        /// How many bytes were asked for.
        len: u64,
        /// The segment's size.
        size: u64,
    },
    /// Bytes in shared memory that break the format: a peer wrote garbage,
    /// or the segment is not what its name says.
    #[error("corrupt shared memory: {0}")]
    Corrupt(String),
    /// A ring or managed segment written by an incompatible version of
    /// shmkit.
    #[error("{segment} has format version {found}; this shmkit reads version {expected}")]
    VersionMismatch {
        /// The ring (`ring NAME`) or segment.
        segment: String,
        /// The version in the segment.
        found: u32,
        /// The version this library speaks.
        expected: u32,
    },
    /// The other endpoint's process died without closing the ring.
    #[error("peer gone: the {peer} of ring {ring} (pid {pid}) died")]
    PeerGone {
        /// The ring's name.
        ring: String,
        /// `"producer"` or `"consumer"`.
        peer: &'static str,
        /// The dead process.
        pid: u32,
    },
    /// The producer closed the ring and every message was received.
    #[error("ring {ring} is closed")]
    Closed {
        /// The ring's name.
        ring: String,
    },
    /// A `*_timeout` call waited its full time.
    #[error("timed out after {:.3} s waiting on ring {ring}", after.as_secs_f64())]
    Timeout {
        /// The ring's name.
        ring: String,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// A `try_*` call found the ring full.
    #[error("ring {ring} is full: {needed} bytes needed, {free} free")]
    Full {
        /// The ring's name.
        ring: String,
        /// Bytes the message needs (record, padding and end marker).
        needed: u64,
        /// Bytes free now.
        free: u64,
    },
    /// Another live process already holds this endpoint of the ring.
    #[error("ring {ring} already has a {endpoint}: pid {pid}, still running")]
    InUse {
        /// The ring's name.
        ring: String,
        /// `"producer"` or `"consumer"`.
        endpoint: &'static str,
        /// The process that holds it.
        pid: u32,
    },
    /// Another live process has held a managed segment's lock for longer
    /// than its users wait (it is stopped, traced or starved). Nothing is
    /// damaged: try again later.
    #[error("{segment} is busy: another live process has held its lock for {:.1} s", after.as_secs_f64())]
    Busy {
        /// The segment.
        segment: String,
        /// How long this call waited.
        after: std::time::Duration,
    },
    /// Someone shrank a segment: the bytes past its new end are gone (a
    /// mapping reads zeros there, instead of dying of `SIGBUS`), and the
    /// structure in it can no longer be used.
    #[error("{segment} was truncated: it has {size} bytes, and needs {expected}")]
    Truncated {
        /// The segment.
        segment: String,
        /// Its size now.
        size: u64,
        /// The size it had, that the mapping and its format need.
        expected: u64,
    },
    /// Any other failure of a system call, with what was being done.
    #[error("{context}: {source}")]
    Os {
        /// What shmkit was doing, e.g. `attaching segment 0x00001234`.
        context: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// The operation a permission check was asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Attaching (mapping) for reading only.
    AttachReadOnly,
    /// Attaching (mapping) for reading and writing.
    AttachReadWrite,
    /// Opening the segment at all.
    Open,
    /// Creating a segment.
    Create,
    /// Reading the segment's status.
    Stat,
    /// Changing the mode bits.
    SetMode,
    /// Changing the owner or group.
    SetOwner,
    /// Removing the segment.
    Remove,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::AttachReadOnly => "read-only attach",
            Access::AttachReadWrite => "read-write attach",
            Access::Open => "open",
            Access::Create => "create",
            Access::Stat => "stat",
            Access::SetMode => "mode change",
            Access::SetOwner => "owner change",
            Access::Remove => "removal",
        })
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an OS error with what was being done, turning the errnos a user
    /// can cause into the variants that say so.
    pub(crate) fn from_os(err: io::Error, segment: &str, access: Access) -> Error {
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::EIDRM) => Error::NotFound {
                segment: segment.to_owned(),
            },
            Some(libc::EEXIST) => Error::AlreadyExists {
                segment: segment.to_owned(),
            },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
                segment: segment.to_owned(),
                access,
            },
            _ => Error::Os {
                context: format!("{access} of shared-memory segment {segment}"),
                source: err,
            },
        }
    }
}
