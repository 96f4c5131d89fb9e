//! The transports under test, and how each moves one message.
//!
//! The parent makes both ends of a transport ([`open`]), keeps one as its
//! [`Link`] and hands the other to the peer process as a [`PeerEnd`]: file
//! descriptors the peer inherits, or the names of rings. The peer makes its
//! own [`Link`] from it ([`PeerEnd::link`]).
//!
//! Every link carries whole messages of one size, the same both ways, and
//! gives each received message to a check that reads all of its bytes (see
//! `measure`). Per message:
//!
//! - byte streams (`pipe`, `uds-stream`, `tcp` with `TCP_NODELAY`): the
//!   sender writes the message from its buffer (`write`, repeated until all
//!   of it is written); the receiver reads exactly as many bytes into its
//!   buffer (`read`, repeated), then checks them there;
//! - packets and queues (`uds-seqpacket`, `mq`): one `write` or `mq_send`
//!   of the message, one `read` or `mq_receive` into the receiver's buffer,
//!   whose length must be the size, then the check there;
//! - rings (`shmkit-spin`, `shmkit-block`): the sender takes a grant of the
//!   size, copies the message into it and commits it (what `Producer::send`
//!   does); the receiver reads it in place (`Consumer::read`), checks it
//!   there, and releases it. No copy on the receiving side: that is what
//!   the ring offers, and the check still reads every byte.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};
use shmkit::ring::{Consumer, Options, Producer, Waiting, SEGMENT_PREFIX};
use shmkit::{Key, Segment};

use super::peer::Peer;
use crate::error::CliError;

/// A way for two processes to exchange messages.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A shmkit ring whose ends busy-poll (`Waiting::BusyPoll`)
    ShmkitSpin,
    /// A shmkit ring whose ends spin briefly, then sleep on the futex (`Waiting::SpinThenSleep`)
    ShmkitBlock,
    /// A pipe
    Pipe,
    /// A Unix stream socket pair
    UdsStream,
    /// A Unix seqpacket socket pair
    UdsSeqpacket,
    /// A TCP connection over 127.0.0.1 with `TCP_NODELAY`
    Tcp,
    /// A POSIX message queue
    Mq,
}

impl Transport {
    /// Every transport, in the order the bench runs and reports them.
    pub const ALL: [Transport; 7] = [
        Transport::ShmkitSpin,
        Transport::ShmkitBlock,
        Transport::Pipe,
        Transport::UdsStream,
        Transport::UdsSeqpacket,
        Transport::Tcp,
        Transport::Mq,
    ];

    /// The name in the tables and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Transport::ShmkitSpin => "shmkit-spin",
            Transport::ShmkitBlock => "shmkit-block",
            Transport::Pipe => "pipe",
            Transport::UdsStream => "uds-stream",
            Transport::UdsSeqpacket => "uds-seqpacket",
            Transport::Tcp => "tcp",
            Transport::Mq => "mq",
        }
    }
}

// ---------------------------------------------------------------------------
// Rings

/// The smallest ring data area the bench makes: 1 MiB, the library's
/// default. (Smaller rings stream markedly slower here.)
const MIN_RING_CAPACITY: u64 = 1 << 20;

/// Bytes a message of `size` bytes takes in a ring: an 8-byte record word,
/// then the payload, rounded up to 8 (docs/FORMAT.md).
pub fn ring_record(size: usize) -> u64 {
    8 + (size as u64).next_multiple_of(8)
}

/// The data area of the bench's rings for messages of `size` bytes: the
/// library's default, or room for four messages if that is more.
pub fn ring_capacity(size: usize) -> u64 {
    (4 * ring_record(size))
        .next_power_of_two()
        .max(MIN_RING_CAPACITY)
}

/// How a ring transport waits.
/// How a ring transport waits: `shmkit-block` as the library does by
/// default (spin about as long as a wake-up costs, then sleep), or for a
/// fixed `--block-spin` before sleeping.
pub fn ring_waiting(transport: Transport, block_spin: Option<Duration>) -> Waiting {
    match transport {
        Transport::ShmkitBlock => block_spin.map_or(Waiting::Adaptive, Waiting::SpinThenSleep),
        _ => Waiting::BusyPoll,
    }
}

fn ring_options(transport: Transport, size: usize, block_spin: Option<Duration>) -> Options {
    Options::default()
        .capacity(ring_capacity(size))
        .waiting(ring_waiting(transport, block_spin))
}

/// Removes a ring's segment when dropped, however the measurement ends.
#[derive(Debug)]
struct RemoveRing(Key);

impl RemoveRing {
    fn new(name: &str) -> Result<RemoveRing, CliError> {
        Ok(RemoveRing(Key::posix(&format!("{SEGMENT_PREFIX}{name}"))?))
    }
}

impl RemoveRing {
    fn remove(&self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

impl Drop for RemoveRing {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A name no other ring of this bench has: `bench-PID-N-SUFFIX`.
fn ring_name(suffix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bench-{}-{n}-{suffix}", std::process::id())
}

// ---------------------------------------------------------------------------
// Setting up both ends

/// Which ways messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directions {
    /// Both ways: ping-pong.
    Both,
    /// From the parent to the peer only: a stream.
    ToPeer,
}

/// The parent's side of a transport set up for one measurement.
#[derive(Debug)]
pub struct Setup {
    /// The parent's end.
    pub link: AnyLink,
    /// The peer's end, for its job.
    pub peer_end: PeerEnd,
    /// Descriptors the peer inherits; the parent closes its copies once the
    /// peer has started.
    pub inherit: Vec<OwnedFd>,
    /// The rings' segments, removed when the measurement ends.
    rings: Vec<RemoveRing>,
}

impl Setup {
    /// Removes the rings' names once both ends have opened them (the
    /// mappings stay), so that nothing is left behind even if the bench is
    /// killed.
    pub fn unlink(&self) {
        for ring in &self.rings {
            ring.remove();
        }
    }
}

/// The result of [`open`].
#[derive(Debug)]
pub enum Opened {
    /// Both ends exist.
    Ready(Box<Setup>),
    /// This transport cannot carry messages of this size here, and why.
    Unsupported(String),
}

/// Makes both ends of `transport` for messages of `size` bytes going
/// `directions`; a `shmkit-block` ring waits as `ring_waiting` says.
pub fn open(
    transport: Transport,
    directions: Directions,
    size: usize,
    block_spin: Option<Duration>,
) -> Result<Opened, CliError> {
    let both = directions == Directions::Both;
    let mut inherit = Vec::new();
    let mut keep_for_peer = |fd: OwnedFd| -> RawFd {
        let raw = fd.as_raw_fd();
        inherit.push(fd);
        raw
    };
    let setup = match transport {
        Transport::ShmkitSpin | Transport::ShmkitBlock => {
            let options = ring_options(transport, size, block_spin);
            let to_peer = ring_name("to-peer");
            let mut rings = vec![RemoveRing::new(&to_peer)?];
            let tx = Producer::open_with(&to_peer, &options)?;
            let (rx, from_peer) = if both {
                let from_peer = ring_name("from-peer");
                rings.push(RemoveRing::new(&from_peer)?);
                (
                    Some(Consumer::open_with(&from_peer, &options)?),
                    Some(from_peer),
                )
            } else {
                (None, None)
            };
            Setup {
                link: AnyLink::Ring(RingLink { tx: Some(tx), rx }),
                peer_end: PeerEnd::Ring {
                    rx: to_peer,
                    tx: from_peer,
                    block_spin_ns: block_spin.map(|spin| spin.as_nanos() as u64),
                },
                inherit: Vec::new(),
                rings,
            }
        }
        Transport::Pipe => {
            let (peer_rx, tx) = pipe()?;
            let (rx, peer_tx) = if both {
                let (rx, peer_tx) = pipe()?;
                (Some(rx), Some(keep_for_peer(peer_tx)))
            } else {
                (None, None)
            };
            let peer_end = PeerEnd::Stream {
                rx: Some(keep_for_peer(peer_rx)),
                tx: peer_tx,
            };
            Setup {
                link: AnyLink::Stream(StreamLink {
                    rx: rx.map(File::from),
                    tx: Some(File::from(tx)),
                }),
                peer_end,
                inherit,
                rings: Vec::new(),
            }
        }
        Transport::UdsStream | Transport::Tcp => {
            let (mine, peers) = if transport == Transport::Tcp {
                tcp_pair()?
            } else {
                socket_pair(SocketType::STREAM)?
            };
            let peer = keep_for_peer(peers);
            let mine = File::from(mine);
            Setup {
                link: AnyLink::Stream(StreamLink {
                    rx: if both { Some(clone(&mine)?) } else { None },
                    tx: Some(mine),
                }),
                peer_end: PeerEnd::Stream {
                    rx: Some(peer),
                    tx: both.then_some(peer),
                },
                inherit,
                rings: Vec::new(),
            }
        }
        Transport::UdsSeqpacket => {
            let (mine, peers) = socket_pair(SocketType::SEQPACKET)?;
            // A Unix datagram is refused (EMSGSIZE) if it is longer than
            // the send buffer less 32 bytes (unix_dgram_sendmsg).
            let wanted = 2 * size + 4096;
            for fd in [&mine, &peers] {
                if rustix::net::sockopt::socket_send_buffer_size(fd).unwrap_or(0) < wanted {
                    // The kernel caps it at net.core.wmem_max.
                    let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, wanted);
                }
            }
            let limit = rustix::net::sockopt::socket_send_buffer_size(&mine)
                .unwrap_or(0)
                .saturating_sub(32);
            if size > limit {
                return Ok(Opened::Unsupported(format!(
                    "a seqpacket message is at most the socket's send buffer less 32 bytes, \
                     here {limit} (net.core.wmem_max caps the buffer)"
                )));
            }
            let peer = keep_for_peer(peers);
            Setup {
                link: AnyLink::Packet(PacketLink { fd: mine }),
                peer_end: PeerEnd::Packet { fd: peer },
                inherit,
                rings: Vec::new(),
            }
        }
        Transport::Mq => {
            // As deep as the system allows (a ping-pong's warm-up streams).
            let queues = if both { 2 } else { 1 };
            let depth = match mq_depth(queues, mq_limits().depth, size) {
                Ok(depth) => depth,
                Err(why) => return Ok(Opened::Unsupported(why)),
            };
            let tx = match mq_create(depth, size)? {
                Ok(queue) => queue,
                Err(why) => return Ok(Opened::Unsupported(why)),
            };
            let peer_rx = keep_for_peer(dup(&tx)?);
            let (rx, peer_tx) = if both {
                let rx = match mq_create(depth, size)? {
                    Ok(queue) => queue,
                    Err(why) => return Ok(Opened::Unsupported(why)),
                };
                let peer_tx = keep_for_peer(dup(&rx)?);
                (Some(rx), Some(peer_tx))
            } else {
                (None, None)
            };
            Setup {
                link: AnyLink::Queue(MqLink::new(rx, Some(tx))),
                peer_end: PeerEnd::Queue {
                    rx: Some(peer_rx),
                    tx: peer_tx,
                },
                inherit,
                rings: Vec::new(),
            }
        }
    };
    Ok(Opened::Ready(Box::new(setup)))
}

fn os_error(context: &str) -> impl FnOnce(io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        context: context.to_owned(),
        source,
    }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), CliError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|errno| os_error("making a pipe")(errno.into()))
}

/// A connected pair of Unix sockets, close-on-exec.
fn socket_pair(kind: SocketType) -> Result<(OwnedFd, OwnedFd), CliError> {
    rustix::net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)
        .map_err(|errno| os_error("making a pair of Unix sockets")(errno.into()))
}

/// Both ends of a TCP connection over 127.0.0.1, with `TCP_NODELAY`.
fn tcp_pair() -> Result<(OwnedFd, OwnedFd), CliError> {
    let context = "connecting over TCP to 127.0.0.1";
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(os_error(context))?;
    let address = listener.local_addr().map_err(os_error(context))?;
    let client = std::net::TcpStream::connect(address).map_err(os_error(context))?;
    let (server, _) = listener.accept().map_err(os_error(context))?;
    for stream in [&client, &server] {
        stream.set_nodelay(true).map_err(os_error(context))?;
    }
    Ok((OwnedFd::from(client), OwnedFd::from(server)))
}

fn clone(file: &File) -> Result<File, CliError> {
    file.try_clone()
        .map_err(os_error("duplicating a socket descriptor"))
}

/// A second descriptor of the same queue, for the peer (close-on-exec like
/// every other until `PeerProcess` passes it down).
fn dup(fd: &OwnedFd) -> Result<OwnedFd, CliError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3)
        .map_err(|errno| os_error("duplicating a descriptor")(errno.into()))
}

// ---------------------------------------------------------------------------
// POSIX message queues

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
fn mq_create(depth: i64, size: usize) -> Result<Result<OwnedFd, String>, CliError> {
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
        return Err(CliError::Io {
            context: format!("making a message queue of {depth} messages of {size} bytes"),
            source: error,
        });
    }
    // SAFETY: on Linux a message queue descriptor is a file descriptor, and
    // mq_open just returned this one, which nothing else owns.
    let queue = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    if unsafe { libc::mq_unlink(name.as_ptr()) } == -1 {
        return Err(CliError::Io {
            context: "unlinking the bench's message queue".to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(Ok(queue))
}

// ---------------------------------------------------------------------------
// The peer's end

/// The peer's end of a transport, as its job names it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerEnd {
    /// Byte-stream descriptors to read from and write to (the same socket
    /// for both, or two pipes).
    Stream {
        rx: Option<RawFd>,
        tx: Option<RawFd>,
    },
    /// A seqpacket socket.
    Packet { fd: RawFd },
    /// Message queue descriptors to receive from and send to.
    Queue {
        rx: Option<RawFd>,
        tx: Option<RawFd>,
    },
    /// The ring to consume, the ring to produce into, and how long a
    /// `shmkit-block` end spins.
    Ring {
        rx: String,
        tx: Option<String>,
        block_spin_ns: Option<u64>,
    },
}

impl PeerEnd {
    /// In the peer: its link, from the descriptors it inherited or the
    /// rings' names. `parent` is watched where the transport cannot tell
    /// that the other side is gone.
    pub fn link(
        &self,
        transport: Transport,
        size: usize,
        parent: Peer,
    ) -> Result<AnyLink, CliError> {
        Ok(match self {
            PeerEnd::Stream { rx, tx } => {
                let rx_file = inherited(*rx)?.map(File::from);
                // A socket both ways comes as one descriptor: duplicate it.
                let tx_file = if tx.is_some() && tx == rx {
                    rx_file.as_ref().map(clone).transpose()?
                } else {
                    inherited(*tx)?.map(File::from)
                };
                AnyLink::Stream(StreamLink {
                    rx: rx_file,
                    tx: tx_file,
                })
            }
            PeerEnd::Packet { fd } => AnyLink::Packet(PacketLink {
                fd: inherited(Some(*fd))?.expect("Some in, Some out"),
            }),
            PeerEnd::Queue { rx, tx } => {
                let mut link = MqLink::new(inherited(*rx)?, inherited(*tx)?);
                link.watch(parent);
                AnyLink::Queue(link)
            }
            PeerEnd::Ring {
                rx,
                tx,
                block_spin_ns,
            } => {
                let block_spin = block_spin_ns.map(Duration::from_nanos);
                let options = ring_options(transport, size, block_spin);
                AnyLink::Ring(RingLink {
                    rx: Some(Consumer::open_with(rx, &options)?),
                    tx: tx
                        .as_deref()
                        .map(|tx| Producer::open_with(tx, &options))
                        .transpose()?,
                })
            }
        })
    }
}

/// Takes ownership of a descriptor the parent passed down, after checking
/// that it is one: an open descriptor above standard error.
fn inherited(fd: Option<RawFd>) -> Result<Option<OwnedFd>, CliError> {
    let Some(fd) = fd else {
        return Ok(None);
    };
    // SAFETY: F_GETFD only reads the descriptor's flags; it touches no
    // memory, and any number is a valid argument (a bad one is EBADF).
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(CliError::Message(format!(
            "descriptor {fd} was not passed to this peer process"
        )));
    }
    // SAFETY: the parent passed this open descriptor (checked above) to
    // this process for this link alone; nothing else here owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

// ---------------------------------------------------------------------------
// Links

/// One end of a transport: sends and receives whole messages.
pub trait Link {
    /// Sends `message`, all of it, waiting for room if need be.
    fn send(&mut self, message: &[u8]) -> Result<(), CliError>;

    /// Receives the next message, which must be `buf.len()` bytes long, and
    /// gives its bytes to `inspect`: the copy in `buf`, or for a ring, the
    /// message in place.
    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, CliError>;

    /// Receives the next message, gives it to `check`, and sends it back.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        self.recv(buf, check)??;
        self.send(buf)
    }
}

/// A link that is any of the kinds below, so that one value can hold
/// whichever the transport needs; [`with_link!`](crate::bench::with_link)
/// runs generic code on the kind inside.
// One per measurement, matched once per message: boxing the ring's ends
// would only add a pointer to chase on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyLink {
    Stream(StreamLink),
    Packet(PacketLink),
    Queue(MqLink),
    Ring(RingLink),
}

impl AnyLink {
    /// Tells a link that cannot see the other side go (a message queue)
    /// which process to watch.
    pub fn watch(&mut self, peer: Peer) {
        if let AnyLink::Queue(link) = self {
            link.watch(peer);
        }
    }
}

/// `with_link!(any_link, link => expr)`: evaluates `expr` with `link` bound
/// to the concrete link inside an `&mut AnyLink`, each kind compiled apart.
macro_rules! with_link {
    ($any:expr, $link:ident => $body:expr) => {
        match $any {
            $crate::bench::transports::AnyLink::Stream($link) => $body,
            $crate::bench::transports::AnyLink::Packet($link) => $body,
            $crate::bench::transports::AnyLink::Queue($link) => $body,
            $crate::bench::transports::AnyLink::Ring($link) => $body,
        }
    };
}
pub(crate) use with_link;

fn one_way(what: &str) -> CliError {
    CliError::Message(format!("this link cannot {what}: it goes one way only"))
}

fn wrong_length(len: usize, size: usize) -> CliError {
    CliError::Message(format!("received a message of {len} bytes, not {size}"))
}

/// A byte stream: a pipe or a stream socket.
#[derive(Debug)]
pub struct StreamLink {
    rx: Option<File>,
    tx: Option<File>,
}

impl Link for StreamLink {
    fn send(&mut self, message: &[u8]) -> Result<(), CliError> {
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        tx.write_all(message).map_err(os_error("sending"))
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, CliError> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        rx.read_exact(buf).map_err(|source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                CliError::Message("the other side closed the stream".to_owned())
            } else {
                os_error("receiving")(source)
            }
        })?;
        Ok(inspect(buf))
    }
}

/// A seqpacket socket: one `write` per message, one `read`.
#[derive(Debug)]
pub struct PacketLink {
    fd: OwnedFd,
}

impl Link for PacketLink {
    fn send(&mut self, message: &[u8]) -> Result<(), CliError> {
        loop {
            match rustix::io::write(&self.fd, message) {
                Ok(n) if n == message.len() => return Ok(()),
                Ok(n) => {
                    return Err(CliError::Message(format!(
                        "sent {n} bytes of a {}-byte message",
                        message.len()
                    )))
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(os_error("sending")(errno.into())),
            }
        }
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, CliError> {
        let n = loop {
            match rustix::io::read(&self.fd, &mut *buf) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(os_error("receiving")(errno.into())),
            }
        };
        if n == 0 {
            return Err(CliError::Message(
                "the other side closed the connection".to_owned(),
            ));
        }
        if n != buf.len() {
            return Err(wrong_length(n, buf.len()));
        }
        Ok(inspect(buf))
    }
}

/// POSIX message queues: one `mq_send` per message, one `mq_receive`.
///
/// A queue does not tell a waiting process that the other side died, so
/// the calls have a deadline, after which the link checks the other side
/// and waits again. The deadline is renewed every [`MqLink::RENEW_EVERY`]
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

    fn watch(&mut self, peer: Peer) {
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
    fn retry(&mut self, error: io::Error, what: &str) -> Result<(), CliError> {
        match error.raw_os_error() {
            Some(libc::EINTR) => Ok(()),
            Some(libc::ETIMEDOUT) => {
                if self.peer.is_some_and(|peer| !peer.is_alive()) {
                    return Err(CliError::Message(format!(
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
    fn send(&mut self, message: &[u8]) -> Result<(), CliError> {
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

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, CliError> {
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

/// shmkit rings: one to send into, one to receive from.
#[derive(Debug)]
pub struct RingLink {
    tx: Option<Producer>,
    rx: Option<Consumer>,
}

impl Link for RingLink {
    fn send(&mut self, message: &[u8]) -> Result<(), CliError> {
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        let mut grant = tx.grant(message.len())?;
        grant.copy_from_slice(message);
        grant.commit();
        Ok(())
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, CliError> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        let message = rx.read()?;
        if message.len() != buf.len() {
            return Err(wrong_length(message.len(), buf.len()));
        }
        let result = inspect(&message);
        message.release();
        Ok(result)
    }

    /// Checks the message in place and copies it straight into a grant of
    /// the other ring: one copy, where the kernel transports make two.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let (Some(rx), Some(tx)) = (self.rx.as_mut(), self.tx.as_mut()) else {
            return Err(one_way("echo"));
        };
        let message = rx.read()?;
        if message.len() != buf.len() {
            return Err(wrong_length(message.len(), buf.len()));
        }
        check(&message)?;
        let mut grant = tx.grant(message.len())?;
        grant.copy_from_slice(&message);
        grant.commit();
        message.release();
        Ok(())
    }
}
