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
//! - rings (`shmkit-spin`, `shmkit-block`): the sender sends with
//!   `Producer::send` (a grant of the size, the message copied in,
//!   committed), and a stream's sender fills a grant itself (the message
//!   copied in, its sequence number written in place, committed); the
//!   receiver reads it in place (`Consumer::read`), checks it there, and
//!   releases it. No copy on the receiving side: that is what
//!   the ring offers, and the check still reads every byte.
//! - topics (`shmkit-topic`, `shmkit-topic-fanin`): the same over a topic's
//!   lanes (`Publisher::grant`, `Subscriber::read`), see [`topic`].
//! - `bare-slots`, a reference for streams: fixed slots with a flag each,
//!   the message copied in and checked in place, nothing else (see
//!   [`slots`]): for large messages, how fast the host moves bytes between
//!   the two CPUs at all.

//!
//! Each transport's setup, peer end and link live in its own module:
//! [`ring`], [`topic`], [`service`], [`aio`], [`stream`] (pipes, stream
//! sockets, TCP), [`packet`] (seqpacket), [`mq`], `iceoryx` (with the
//! feature `iceoryx2`), [`slots`] (`bare-slots`); [`descriptors`] passes
//! file descriptors to the peer.

mod aio;
mod descriptors;
#[cfg(feature = "iceoryx2")]
mod iceoryx;
mod mq;
mod packet;
mod ring;
mod service;
mod slots;
mod stream;
mod topic;

use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use self::aio::AsyncLink;
pub use self::mq::{mq_limits, MqLink};
pub use self::packet::PacketLink;
pub use self::ring::{ring_capacity, ring_record, waiting as ring_waiting, RingLink};
pub use self::service::ServiceLink;
pub use self::stream::StreamLink;
pub use self::topic::TopicLink;
use crate::measure::Message;
use crate::peer::Peer;
use crate::Error;

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
    /// shmkit-spin streaming with the batch verbs: many messages a commit (`WriteBatch`), drained (`drain_while`)
    ShmkitBatch,
    /// A shmkit service: one call per round trip, client and server busy-polling (round trips only)
    ShmkitService,
    /// shmkit-block's rings awaited from tokio in both processes (`shmkit::aio`: a futex_waitv reactor)
    ShmkitAsync,
    /// A shmkit topic each way, one publisher and one subscriber, busy-polling
    ShmkitTopic,
    /// A shmkit topic each way, two publishers (lanes) sending in turn to one subscriber, busy-polling
    ShmkitTopicFanin,
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
    /// iceoryx2 publish-subscribe, busy-polling (with the feature `iceoryx2`)
    Iceoryx2,
    /// iceoryx2 publish-subscribe with an event service and a WaitSet (with the feature `iceoryx2`)
    Iceoryx2Event,
    /// A reference for streams: fixed slots in shared memory with a flag each, nothing else (for large messages, what the host moves between the two CPUs at all)
    BareSlots,
}

impl Transport {
    /// The most messages the ping-pong's warm-up may stream each way before
    /// it reads any back: a service's calls in flight are bounded.
    pub fn max_prime(self) -> u64 {
        match self {
            Transport::ShmkitService => service::MAX_IN_FLIGHT - 1,
            _ => u64::MAX,
        }
    }

    /// Every transport this build has, in the order the bench runs and
    /// reports them.
    pub const ALL: &'static [Transport] = &[
        Transport::ShmkitSpin,
        Transport::ShmkitBlock,
        Transport::ShmkitBatch,
        Transport::ShmkitService,
        Transport::ShmkitAsync,
        Transport::ShmkitTopic,
        Transport::ShmkitTopicFanin,
        Transport::Pipe,
        Transport::UdsStream,
        Transport::UdsSeqpacket,
        Transport::Tcp,
        Transport::Mq,
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2,
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2Event,
        Transport::BareSlots,
    ];

    /// The name in the tables and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Transport::ShmkitSpin => "shmkit-spin",
            Transport::ShmkitBlock => "shmkit-block",
            Transport::ShmkitBatch => "shmkit-batch",
            Transport::ShmkitService => "shmkit-service",
            Transport::ShmkitAsync => "shmkit-async",
            Transport::ShmkitTopic => "shmkit-topic",
            Transport::ShmkitTopicFanin => "shmkit-topic-fanin",
            Transport::Pipe => "pipe",
            Transport::UdsStream => "uds-stream",
            Transport::UdsSeqpacket => "uds-seqpacket",
            Transport::Tcp => "tcp",
            Transport::Mq => "mq",
            Transport::Iceoryx2 => "iceoryx2",
            Transport::Iceoryx2Event => "iceoryx2-event",
            Transport::BareSlots => "bare-slots",
        }
    }
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
    rings: Vec<ring::RemoveRing>,
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
/// Makes both ends of `transport` for messages of `size` bytes going
/// `directions`; a `shmkit-block` ring waits as `ring::waiting` says.
pub fn open(
    transport: Transport,
    directions: Directions,
    size: usize,
    block_spin: Option<Duration>,
) -> Result<Opened, Error> {
    let both = directions == Directions::Both;
    match transport {
        Transport::ShmkitBatch if both => Ok(Opened::Unsupported(
            "one message at a time, the same as shmkit-spin".to_owned(),
        )),
        Transport::ShmkitSpin | Transport::ShmkitBlock | Transport::ShmkitBatch => {
            ring::open(transport, both, size, block_spin)
        }
        Transport::ShmkitService => service::open(both, size),
        Transport::ShmkitAsync => aio::open(both, size, block_spin),
        Transport::ShmkitTopic | Transport::ShmkitTopicFanin => topic::open(transport, both, size),
        Transport::Pipe => stream::open_pipes(both),
        Transport::UdsStream | Transport::Tcp => stream::open_socket(transport, both),
        Transport::UdsSeqpacket => packet::open(size),
        Transport::Mq => mq::open(both, size),
        Transport::BareSlots => slots::open(both, size),
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2 | Transport::Iceoryx2Event => iceoryx::open(transport, both, size),
        #[cfg(not(feature = "iceoryx2"))]
        Transport::Iceoryx2 | Transport::Iceoryx2Event => {
            Ok(Opened::Unsupported(WITHOUT_ICEORYX2.to_owned()))
        }
    }
}

/// Why this build has no iceoryx2 transports.
#[cfg(not(feature = "iceoryx2"))]
const WITHOUT_ICEORYX2: &str =
    "this shmkit was built without the feature iceoryx2 (cargo build --features iceoryx2)";

impl Setup {
    /// The setup of a transport whose ends are descriptors: the peer
    /// inherits `inherit`; nothing is named.
    fn of_descriptors(link: AnyLink, peer_end: PeerEnd, inherit: Vec<OwnedFd>) -> Box<Setup> {
        Box::new(Setup {
            link,
            peer_end,
            inherit,
            rings: Vec::new(),
        })
    }
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
    /// The service whose server the peer is.
    Service { name: String },
    /// The topic to subscribe to, the one to publish on, and the ids of
    /// the publishers that send to the peer, in their turns.
    Topic {
        rx: String,
        tx: Option<String>,
        senders: Vec<u64>,
    },
    /// The slots' segment (the peer receives).
    Slots { name: String },
    /// The iceoryx2 domain, the service to subscribe to and the one to
    /// publish on.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2 {
        domain: iceoryx::Domain,
        rx: String,
        tx: Option<String>,
    },
}

impl PeerEnd {
    /// In the peer: its link, from the descriptors it inherited or the
    /// rings' names. `parent` is watched where the transport cannot tell
    /// that the other side is gone.
    pub fn link(&self, transport: Transport, size: usize, parent: Peer) -> Result<AnyLink, Error> {
        match self {
            PeerEnd::Stream { rx, tx } => stream::peer_link(*rx, *tx),
            PeerEnd::Packet { fd } => packet::peer_link(*fd),
            PeerEnd::Queue { rx, tx } => mq::peer_link(*rx, *tx, parent),
            PeerEnd::Ring {
                rx,
                tx,
                block_spin_ns,
            } if transport == Transport::ShmkitAsync => {
                aio::peer_link(size, rx, tx.as_deref(), *block_spin_ns)
            }
            PeerEnd::Ring {
                rx,
                tx,
                block_spin_ns,
            } => ring::peer_link(transport, size, rx, tx.as_deref(), *block_spin_ns),
            PeerEnd::Service { name } => service::peer_link(size, name),
            PeerEnd::Slots { name } => slots::peer_link(size, name, parent),
            PeerEnd::Topic { rx, tx, senders } => {
                topic::peer_link(size, rx, tx.as_deref(), senders)
            }
            #[cfg(feature = "iceoryx2")]
            PeerEnd::Iceoryx2 { domain, rx, tx } => {
                iceoryx::peer_link(transport, size, domain, rx, tx.as_deref(), parent)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Links

/// One end of a transport: sends and receives whole messages.
pub trait Link {
    /// Sends `message`, all of it, waiting for room if need be.
    fn send(&mut self, message: &[u8]) -> Result<(), Error>;

    /// Receives the next message, which must be `buf.len()` bytes long, and
    /// gives its bytes to `inspect`: the copy in `buf`, or for a ring, the
    /// message in place.
    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error>;

    /// Sends `message` once for each of `sequences`, stamped with it: one
    /// [`send`](Link::send) each, unless the link has a way to send many
    /// at once.
    fn send_sequence(
        &mut self,
        message: &mut Message,
        sequences: std::ops::Range<u64>,
    ) -> Result<(), Error> {
        for sequence in sequences {
            message.stamp(sequence);
            self.send(message.bytes())?;
        }
        Ok(())
    }

    /// Receives messages of `buf.len()` bytes, giving each to `each`, until
    /// `each` returns false (for the last one it takes): one
    /// [`recv`](Link::recv) each, unless the link can take many at once.
    fn recv_while(
        &mut self,
        buf: &mut [u8],
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), Error> {
        while self.recv(buf, &mut each)? {}
        Ok(())
    }

    /// Receives the next message, gives it to `check`, and sends it back.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.recv(buf, check)??;
        self.send(buf)
    }
}

/// A link that is any of the kinds below, so that one value can hold
/// whichever the transport needs; [`with_link!`](crate::transports::with_link)
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
    Service(ServiceLink),
    Async(aio::AsyncLink),
    Topic(TopicLink),
    Slots(slots::SlotsLink),
    /// The ports; a link borrows them while it runs (see `with_link!`).
    #[cfg(feature = "iceoryx2")]
    Iceoryx2(iceoryx::Ports),
}

impl AnyLink {
    /// Tells a link that cannot see the other side go (a message queue)
    /// which process to watch.
    pub fn watch(&mut self, peer: Peer) {
        match self {
            AnyLink::Queue(link) => link.watch(peer),
            AnyLink::Slots(link) => link.watch(peer),
            #[cfg(feature = "iceoryx2")]
            AnyLink::Iceoryx2(ports) => ports.watch(peer),
            _ => {}
        }
    }
}

/// `with_link!(any_link, link => expr)`: evaluates `expr` with `link` bound
/// to the concrete link inside an `&mut AnyLink`, each kind compiled apart.
/// `expr` is a `Result<_, Error>`.
macro_rules! with_link {
    ($any:expr, $link:ident => $body:expr) => {
        match $any {
            $crate::transports::AnyLink::Stream($link) => $body,
            $crate::transports::AnyLink::Packet($link) => $body,
            $crate::transports::AnyLink::Queue($link) => $body,
            $crate::transports::AnyLink::Ring($link) => $body,
            $crate::transports::AnyLink::Service($link) => $body,
            $crate::transports::AnyLink::Async($link) => $body,
            $crate::transports::AnyLink::Topic($link) => $body,
            $crate::transports::AnyLink::Slots($link) => $body,
            #[cfg(feature = "iceoryx2")]
            $crate::transports::AnyLink::Iceoryx2(ports) => ports.with_link(|$link| $body),
        }
    };
}
pub(crate) use with_link;

fn one_way(what: &str) -> Error {
    Error::Message(format!("this link cannot {what}: it goes one way only"))
}

fn wrong_length(len: usize, size: usize) -> Error {
    Error::Message(format!("received a message of {len} bytes, not {size}"))
}
