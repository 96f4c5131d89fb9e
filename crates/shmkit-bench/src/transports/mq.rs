//! `mq`: POSIX message queues, one `mq_send` per message, one
//! `mq_receive` into the receiver's buffer, whose length must be the size,
//! then the check there. The queues are unnamed (unlinked as soon as they
//! are made) and passed to the peer as descriptors.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::descriptors::{dup, inherited, os_error, ForPeer};
use super::{one_way, wrong_length, AnyLink, Link, Opened, PeerEnd, Setup};
use crate::peer::Peer;
use crate::Error;

/// Both ends: a queue to the peer, and one back if `both`, as deep as the
/// system allows (a ping-pong's warm-up streams); or why there are none.
pub fn open(both: bool, size: usize) -> Result<Opened, Error> {
    let mut for_peer = ForPeer::default();
    let queues = if both { 2 } else { 1 };
    let depth = match mq_depth(queues, mq_limits().depth, size) {
        Ok(depth) => depth,
        Err(why) => return Ok(Opened::Unsupported(why)),
    };
    let tx = match mq_create(depth, size)? {
        Ok(queue) => queue,
        Err(why) => return Ok(Opened::Unsupported(why)),
    };
    let peer_rx = for_peer.pass(dup(&tx)?);
    let (rx, peer_tx) = if both {
        let rx = match mq_create(depth, size)? {
            Ok(queue) => queue,
            Err(why) => return Ok(Opened::Unsupported(why)),
        };
        let peer_tx = for_peer.pass(dup(&rx)?);
        (Some(rx), Some(peer_tx))
    } else {
        (None, None)
    };
    Ok(Opened::Ready(Setup::of_descriptors(
        AnyLink::Queue(MqLink::new(rx, Some(tx))),
        PeerEnd::Queue {
            rx: Some(peer_rx),
            tx: peer_tx,
        },
        for_peer.into_inner(),
    )))
}

/// In the peer: its link from the queues it inherited, watching `parent`
/// (a queue does not say when the other side is gone).
pub fn peer_link(rx: Option<RawFd>, tx: Option<RawFd>, parent: Peer) -> Result<AnyLink, Error> {
    let mut link = MqLink::new(inherited(rx)?, inherited(tx)?);
    link.watch(parent);
    Ok(AnyLink::Queue(link))
}

/// The system's limits on message queues.
#[derive(Clone, Copy, Debug)]
pub struct MqLimits {
    /// `fs.mqueue.msg_max`: the deepest queue an unprivileged process may make.
    pub depth: i64,
    /// `fs.mqueue.msgsize_max`: the longest message.
    pub max_message: i64,
    /// `RLIMIT_MSGQUEUE`: bytes of queues one user may have.
    pub bytes: u64,
}

const MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
const MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";

/// Reads the limits; Linux's defaults where a file is missing.
pub fn mq_limits() -> MqLimits {
    let read = |path: &str, default: i64| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(default)
    };
    let bytes = rustix::process::getrlimit(rustix::process::Resource::Msgqueue)
        .current
        .unwrap_or(u64::MAX);
    MqLimits {
        depth: read(MSG_MAX, 10),
        max_message: read(MSGSIZE_MAX, 8192),
        bytes,
    }
}

/// The kernel charges a queue its messages plus this much per message
/// (`struct msg_msg` and a tree node, rounded up) against RLIMIT_MSGQUEUE.
const MQ_OVERHEAD: u64 = 128;

/// The depth, at most `wanted`, that `queues` queues of messages of `size`
/// bytes may have within RLIMIT_MSGQUEUE; or why there is none.
fn mq_depth(queues: u64, wanted: i64, size: usize) -> Result<i64, String> {
    let limit = mq_limits().bytes;
    let per_message = (size as u64 + MQ_OVERHEAD) * queues;
    let fits = (limit / per_message).min(wanted.max(1) as u64);
    if fits == 0 {
        let queues = if queues == 1 {
            "a queue of one message exceeds".to_owned()
        } else {
            format!("{queues} queues of one message exceed")
        };
        return Err(format!(
            "{queues} RLIMIT_MSGQUEUE ({limit} bytes) at {size} bytes a message"
        ));
    }
    Ok(fits as i64)
}

/// Makes an unnamed queue: opened by a unique name, which is unlinked at
/// once, so nothing is left in the system whatever happens next. Messages
/// longer than `fs.mqueue.msgsize_max` need it raised: as root the limit is
/// raised for the `mq_open` and put back right after.
/// `Ok(Err(why))` if the queue cannot be made here.
fn mq_create(depth: i64, size: usize) -> Result<Result<OwnedFd, String>, Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = CString::new(format!("/shmkit-bench-{}-{n}", std::process::id()))
        .expect("the name has no NUL byte");
    let old_max = mq_limits().max_message;
    let raised = if size as i64 > old_max {
        if std::fs::write(MSGSIZE_MAX, size.to_string()).is_err() {
            return Ok(Err(format!(
                "messages over {old_max} bytes (fs.mqueue.msgsize_max) need root to raise the limit"
            )));
        }
        true
    } else {
        false
    };
    // SAFETY: mq_attr is a C struct of integers, for which all zeroes is a
    // valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = size as i64;
    // SAFETY: `name` is a NUL-terminated string and `attr` a valid mq_attr,
    // both alive for the call; with O_CREAT, mq_open reads exactly these two
    // variadic arguments, a mode_t and a pointer to mq_attr.
    let fd = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
            &attr as *const libc::mq_attr,
        )
    };
    let error = io::Error::last_os_error();
    if raised {
        let _ = std::fs::write(MSGSIZE_MAX, old_max.to_string());
    }
    if fd == -1 {
        return Err(Error::Io {
            context: format!("making a message queue of {depth} messages of {size} bytes"),
            source: error,
        });
    }
    // SAFETY: on Linux a message queue descriptor is a file descriptor, and
    // mq_open just returned this one, which nothing else owns.
    let queue = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    if unsafe { libc::mq_unlink(name.as_ptr()) } == -1 {
        return Err(Error::Io {
            context: "unlinking the bench's message queue".to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(Ok(queue))
}

/// calls rather than on each, so that the clock is not read per message.
#[derive(Debug)]
pub struct MqLink {
    rx: Option<OwnedFd>,
    tx: Option<OwnedFd>,
    peer: Option<Peer>,
    deadline: libc::timespec,
    calls: u32,
}

impl MqLink {
    const RENEW_EVERY: u32 = 64;
    const PATIENCE: Duration = Duration::from_secs(1);

    fn new(rx: Option<OwnedFd>, tx: Option<OwnedFd>) -> MqLink {
        let mut link = MqLink {
            rx,
            tx,
            peer: None,
            deadline: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            calls: 0,
        };
        link.renew();
        link
    }

    pub(super) fn watch(&mut self, peer: Peer) {
        self.peer = Some(peer);
    }

    fn renew(&mut self) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + MqLink::PATIENCE;
        self.deadline = libc::timespec {
            tv_sec: at.as_secs() as libc::time_t,
            tv_nsec: at.subsec_nanos().into(),
        };
    }

    /// Before each call: renews the deadline now and then.
    fn tick(&mut self) {
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(MqLink::RENEW_EVERY) {
            self.renew();
        }
    }

    /// After a call failed with `errno`: `Ok(())` to try again (a signal,
    /// or a deadline passed while the other side lives), or the error.
    fn retry(&mut self, error: io::Error, what: &str) -> Result<(), Error> {
        match error.raw_os_error() {
            Some(libc::EINTR) => Ok(()),
            Some(libc::ETIMEDOUT) => {
                if self.peer.is_some_and(|peer| !peer.is_alive()) {
                    return Err(Error::Message(format!(
                        "the other side of the message queue is gone ({what})"
                    )));
                }
                self.renew();
                Ok(())
            }
            _ => Err(os_error(what)(error)),
        }
    }
}

impl Link for MqLink {
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.tick();
        let fd = self.tx.as_ref().ok_or_else(|| one_way("send"))?.as_raw_fd();
        loop {
            // SAFETY: `fd` is our open queue descriptor; the message and the
            // deadline are valid for reads of their lengths during the call.
            let done = unsafe {
                libc::mq_timedsend(
                    fd,
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    &self.deadline,
                )
            };
            if done == 0 {
                return Ok(());
            }
            self.retry(io::Error::last_os_error(), "sending")?;
        }
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        self.tick();
        let fd = self
            .rx
            .as_ref()
            .ok_or_else(|| one_way("receive"))?
            .as_raw_fd();
        let n = loop {
            // SAFETY: `fd` is our open queue descriptor; `buf` is valid for
            // writes of its length (which the queue's message size does not
            // exceed) and the deadline for reads, during the call; a null
            // priority pointer is allowed.
            let n = unsafe {
                libc::mq_timedreceive(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    std::ptr::null_mut(),
                    &self.deadline,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            self.retry(io::Error::last_os_error(), "receiving")?;
        };
        if n != buf.len() {
            return Err(wrong_length(n, buf.len()));
        }
        Ok(inspect(buf))
    }
}
