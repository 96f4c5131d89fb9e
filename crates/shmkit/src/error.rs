//! The one error type of the library, and the type of process ids in it.

use std::fmt;
use std::io;

/// A process id, as the kernel's `pid_t` holds it and
/// [`std::process::id`] returns it.
///
/// Every id shmkit reports — of a ring's endpoints, a segment's creator
/// and last attacher, each process mapping a segment, the peer an error
/// names — has this type, so they compare with each other and with
/// `std::process::id()` without casts. It is an alias rather than a
/// newtype because a pid carries no invariant to protect: any number may
/// or may not name a running process a moment later. The kernel's `pid_t`
/// is signed only so that `kill` and `waitpid` can take negative process
/// groups; no process has a negative id.
///
/// ```
/// let me: shmkit::Pid = std::process::id();
/// assert!(me > 0);
/// ```
pub type Pid = u32;

/// What went wrong, in the user's terms.
///
/// Every variant names the segment (its key, POSIX name or id) and the numbers
/// involved, so that `shmkit: {err}` is a complete sentence for a person at a
/// shell.
///
/// # One enum, matched by variant
///
/// A program tells the outcomes it handles apart by matching, never by
/// reading the message:
///
/// | variant | means | returned by |
/// |---|---|---|
/// | [`Full`](Error::Full) | no room now | `try_send`, `try_grant` |
/// | [`Empty`](Error::Empty) | no message now | `try_recv`, `try_read` |
/// | [`Lagged`](Error::Lagged) | a lossy topic overwrote messages before they were read | topic receives |
/// | [`Timeout`](Error::Timeout) | waited the full time | `*_timeout` |
/// | [`Closed`](Error::Closed) | the sender closed, everything was received (a closed server: pending calls) | every receive, calls |
/// | [`PeerGone`](Error::PeerGone) | the other end's process died (a topic: every publisher is gone and one died) | every send, receive and call |
/// | [`WrongType`](Error::WrongType) | a channel's peer sends another type; a heap's object is another container or element type | channel receives; managed-heap `find*`, `list`, `vector`, `text` |
/// | [`InUse`](Error::InUse) | a live process holds this end | ring and channel `open` |
/// | [`OptionMismatch`](Error::OptionMismatch) | an option given differs from the existing ring's, topic's or service's | `open_with`, `connect_with` of all three |
/// | [`Corrupt`](Error::Corrupt) | bytes in shared memory break the format | anything that reads a segment |
/// | [`Truncated`](Error::Truncated) | someone shrank the segment under this mapping | rings, topics, services, heaps, attachments, opening |
/// | [`Busy`](Error::Busy) | a live process holds a heap's lock too long: retry | managed-heap verbs |
/// | [`NotFound`](Error::NotFound), [`AlreadyExists`](Error::AlreadyExists), [`PermissionDenied`](Error::PermissionDenied) | as the kernel says, naming the segment | opening, creating, attaching |
/// | [`NotASegment`](Error::NotASegment), [`UntrustedOwner`](Error::UntrustedOwner) | what is at the name is not (trusted to be) a segment | opening a POSIX name |
///
/// Each function's `# Errors` section lists the variants it returns.
///
/// shmkit does not follow crossbeam-channel's per-operation error types
/// (`TrySendError<T>`, `RecvTimeoutError`, …). Those exist to hand an
/// unsent value back to the caller, and to make impossible outcomes
/// unrepresentable in a small set of them. Neither applies here: every
/// send takes `&[u8]` or `&T`, so there is no value to return; and every
/// verb can meet more than crossbeam's two or three outcomes — a receive
/// can find the channel closed, its peer dead, a message of another type,
/// a corrupt record or a failing system call. Per-operation types would
/// each repeat most of this enum, and a caller that handles `PeerGone` the
/// same way after a send and a receive would match it twice under two
/// names. So there is one `#[non_exhaustive]` enum, and one `?` carries
/// any of it.
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
///
/// # Example: a non-blocking receive loop
///
/// ```
/// use shmkit::{ring::{Consumer, Producer}, Error};
///
/// let name = format!("doc-error-match-{}", std::process::id());
/// let mut producer = Producer::open(&name)?;
/// let mut consumer = Consumer::open(&name)?;
/// producer.send(b"one")?;
/// producer.close();
///
/// let mut buf = [0u8; 16];
/// let mut got = Vec::new();
/// loop {
///     match consumer.try_recv(&mut buf) {
///         Ok(n) => got.push(buf[..n].to_vec()),
///         Err(Error::Empty { .. }) => continue, // nothing yet: do other work
///         Err(Error::Closed { .. }) => break,   // the producer is done
///         Err(other) => return Err(other),      // PeerGone, Corrupt, ...
///     }
/// }
/// assert_eq!(got, [b"one".to_vec()]);
/// # Ok::<(), shmkit::Error>(())
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
    /// What is there has another type than the one asked for: a
    /// channel's message carries a value of another type (or encoding)
    /// than the receiver's, because the peer sends another type; or a
    /// managed heap's named object is another kind of container, or holds
    /// another element type. Not a damaged segment — see
    /// [`Corrupt`](Error::Corrupt) for that. A channel's message is
    /// consumed; the next receive gets the next one. A heap's object is
    /// left as it is.
    ///
    /// A channel's type is named by [`std::any::type_name`], with its
    /// path: two programs that each define `struct Order` send
    /// `sender::Order` and expect `receiver::Order`, which the message then
    /// says. Define the type in a crate both programs use.
    #[error(
        "{place} holds another type: asked for {expected}, found {found}{hint}",
        hint = same_name_elsewhere(.expected, .found)
    )]
    WrongType {
        /// Where: `ring NAME` for a channel, `SEGMENT object "NAME"` for
        /// a managed heap's object.
        place: String,
        /// The receiver's type and codec, e.g. `postcard u32`; for a heap,
        /// the kind and element type asked for, e.g. `a list of u32 (4
        /// bytes each)`.
        expected: String,
        /// The sender's type and codec if the tag names a type this
        /// process knows, else the tag's value (`tag 0x…`); for a heap,
        /// the stored kind and element size.
        found: String,
    },
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
    /// The other endpoint's process died without closing the ring (or a
    /// topic's publisher died without closing its stream).
    #[error("peer gone: the {peer} of {place} (pid {pid}) died")]
    PeerGone {
        /// `ring NAME` or `topic NAME`.
        place: String,
        /// `"producer"`, `"consumer"` or `"publisher"`.
        peer: &'static str,
        /// The dead process.
        pid: Pid,
    },
    /// The other endpoint left the ring cleanly and will not come back for
    /// what is sent (a producer learns it when the ring fills).
    #[error("peer left: the {peer} of ring {ring} left, and nothing more will be read")]
    PeerLeft {
        /// The ring's name.
        ring: String,
        /// `"producer"` or `"consumer"`.
        peer: &'static str,
    },
    /// An option given to open an existing ring, topic or service differs
    /// from the one it was made with (options not given take its own:
    /// see [`ring::Options`](crate::ring::Options),
    /// [`topic::Options`](crate::topic::Options) and
    /// [`service::Options`](crate::service::Options)).
    #[error("{place} exists with {option} {found}, not the {asked} asked for")]
    OptionMismatch {
        /// `ring NAME`, `topic NAME` or `service NAME`.
        place: String,
        /// The option, as the message names it: `"capacity"`, `"maximum
        /// message"` or `"mode"` (any of the three); `"maximum publishers"`,
        /// `"maximum subscribers"`, `"policy"` or `"history"` (topics);
        /// `"maximum clients"`, `"maximum request"`, `"maximum response"` or
        /// `"maximum in flight"` (services).
        option: &'static str,
        /// The value asked for.
        asked: String,
        /// The existing one's value.
        found: String,
    },
    /// The producer closed the ring and every message was received (of a
    /// topic: every publisher that opened it closed).
    #[error("{place} is closed")]
    Closed {
        /// `ring NAME` or `topic NAME`.
        place: String,
    },
    /// A `*_timeout` call waited its full time.
    #[error("timed out after {:.3} s waiting on {place}", after.as_secs_f64())]
    Timeout {
        /// `ring NAME` or `topic NAME`.
        place: String,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// A `try_*` receive found no message in the ring (and its producer
    /// still there: otherwise [`Closed`](Error::Closed) or
    /// [`PeerGone`](Error::PeerGone)).
    #[error("{place} is empty")]
    Empty {
        /// `ring NAME` or `topic NAME`.
        place: String,
    },
    /// A subscriber of a lossy (drop-oldest) topic fell more than a lane
    /// behind one publisher, whose newer messages overwrote `missed` of
    /// its messages before they were read. Nothing is consumed by this
    /// report: the next receive continues with the oldest message still
    /// there (as tokio's `broadcast::error::RecvError::Lagged`).
    #[error("topic {topic}: missed {missed} messages of publisher {publisher}, overwritten before they were read")]
    Lagged {
        /// The topic's name.
        topic: String,
        /// The publisher whose messages were lost.
        publisher: u64,
        /// How many of its messages were lost.
        missed: u64,
    },
    /// A `try_*` call found the ring (or a topic publisher's lane) full.
    #[error("{place} is full: {needed} bytes needed, {free} free")]
    Full {
        /// `ring NAME` or `topic NAME`.
        place: String,
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
        pid: Pid,
    },
    /// Every publisher (or subscriber) place of a topic is held by a live
    /// process; the number of places was fixed when the topic was made.
    #[error("topic {topic} already has its maximum of {max} {members}, all still running")]
    TopicFull {
        /// The topic's name.
        topic: String,
        /// `"publishers"` or `"subscribers"`.
        members: &'static str,
        /// The topic's number of places.
        max: u32,
    },
    /// Every client slot of a service is held by a live process; the
    /// number of slots was fixed when the service was made.
    #[error("service {service} already has its maximum of {max} clients, all still running")]
    ServiceFull {
        /// The service's name.
        service: String,
        /// The service's number of client slots.
        max: u32,
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
    /// Something other than a shared-memory segment is at a POSIX name: a
    /// symlink, a FIFO, a directory, a socket, a hard link, a file on
    /// another file system (`/dev/shm` is world-writable; see
    /// docs/SECURITY.md). shmkit never follows, reads or writes it.
    #[error("{segment} is not a shared-memory segment: /dev/shm{segment} is {found}; if it is not meant to be there, remove it (`rm /dev/shm{segment}`)")]
    NotASegment {
        /// The POSIX name.
        segment: String,
        /// What is there instead, e.g. `a FIFO (named pipe)`.
        found: String,
    },
    /// The segment belongs to a user this process was not told to trust: a
    /// ring or heap another user made (or squatted) at the name.
    #[error(
        "{segment} belongs to uid {uid} (gid {gid}), not to this process's uid {me}: refusing to \
         use it, since its owner could read what is sent or forge what is received; trust that \
         owner (ring::Options::trust) if it is meant to be shared, or remove it if not"
    )]
    UntrustedOwner {
        /// The ring (`ring NAME`) or segment.
        segment: String,
        /// The segment's owner.
        uid: u32,
        /// The segment's group.
        gid: u32,
        /// This process's effective uid.
        me: u32,
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

/// For [`Error::WrongType`]: a hint when the two types have one name under
/// different paths (`postcard a::Order` and `postcard b::Order`), which
/// is two programs that each defined the type.
fn same_name_elsewhere(expected: &str, found: &str) -> &'static str {
    // The name with every path dropped (`postcard a::W<b::Order>` becomes
    // `postcard W<Order>`), the codec, generics, tuples and references
    // kept: equal for one type defined twice, unequal for two types.
    let unpathed = |name: &str| {
        let mut out = String::with_capacity(name.len());
        let mut word = String::new();
        for c in name.chars().chain(std::iter::once(' ')) {
            if c.is_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
                continue;
            }
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
        out
    };
    if expected != found && unpathed(expected) == unpathed(found) {
        " (one name under two paths: each program defined its own; define the type in a crate \
         both programs use)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::same_name_elsewhere;

    #[test]
    fn one_type_defined_twice_is_told_apart_from_two_types() {
        let twice = |a: &str, b: &str| !same_name_elsewhere(a, b).is_empty();
        assert!(twice("postcard a::Order", "postcard b::Order"));
        assert!(twice(
            "postcard alloc::vec::Vec<a::Order>",
            "postcard alloc::vec::Vec<b::Order>"
        ));
        assert!(twice("postcard (u8, a::Order)", "postcard (u8, b::Order)"));
        // Two types, or one in two codecs: no hint.
        assert!(!twice("postcard a::Order", "postcard a::Order"));
        assert!(!twice("postcard a::Order", "rkyv b::Order"));
        assert!(!twice(
            "postcard alloc::vec::Vec<u32>",
            "postcard alloc::vec::Vec<alloc::string::String>"
        ));
        assert!(!twice(
            "postcard core::option::Option<u32>",
            "postcard core::option::Option<u64>"
        ));
        assert!(!twice(
            "postcard (f64, alloc::string::String)",
            "postcard (f32, alloc::string::String)"
        ));
        assert!(!twice("postcard &a::B", "postcard a::B"));
        assert!(!twice("postcard a::W<u8>", "postcard b::W<u16>"));
        assert!(!twice("postcard a::Order", "of an unknown type (tag 0x12)"));
    }
}
