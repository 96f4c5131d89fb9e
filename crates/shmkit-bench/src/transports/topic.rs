//! `shmkit-topic` and `shmkit-topic-fanin`: a shmkit topic each way, its
//! members busy-polling (`Waiting::BusyPoll`), as `shmkit-spin` does with
//! rings. The sender takes a grant of the size in its lane, copies the
//! message into it and commits it (what `Publisher::send` does, and
//! `Producer::send` for `shmkit-spin`; in a round trip here `send` itself
//! ran 150-200 ns slower on the shared host, for no reason found yet); the
//! receiver reads it in place (`Subscriber::read`, a Block topic), checks
//! it there, and releases it.
//!
//! `shmkit-topic` has one publisher and one subscriber a topic: the cost of
//! a topic's lane, subscriber table and merge over a ring. In
//! `shmkit-topic-fanin` the sending side publishes through two publishers
//! (two lanes) in turn, and the receiving subscriber merges them: a
//! subscriber of two lanes may find the second publisher's message before
//! the first's (it looks at one lane, then the other), so the receiving
//! link hands the messages over in the order they were sent, keeping a copy
//! of one that came before its turn (rarely: only when that race happens).
//! Both publishers live in the sending process, since a measurement has two.

use std::sync::atomic::{AtomicU32, Ordering};

use shmkit::topic::{Options, Publisher, Subscriber, Waiting, SEGMENT_PREFIX};
use shmkit::Key;

use super::ring::{ring_capacity, RemoveRing};
use super::{one_way, wrong_length, AnyLink, Link, Opened, PeerEnd, Setup, Transport};
use crate::Error;

/// How many publishers send each way: two to the peer for fan-in.
fn publishers(transport: Transport) -> usize {
    match transport {
        Transport::ShmkitTopicFanin => 2,
        _ => 1,
    }
}

/// The topics of a ping-pong (`both`), or the one of a stream; their
/// segments are removed with the [`Setup`].
pub fn open(transport: Transport, both: bool, size: usize) -> Result<Opened, Error> {
    let options = options(size);
    let to_peer = name("to-peer");
    let mut topics = vec![remover(&to_peer)?];
    let tx = (0..publishers(transport))
        .map(|_| Publisher::open_with(&to_peer, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let senders = tx.iter().map(Publisher::id).collect();
    let (rx, from_peer) = if both {
        let from_peer = name("from-peer");
        topics.push(remover(&from_peer)?);
        (
            Some(Subscriber::open_with(&from_peer, &options)?),
            Some(from_peer),
        )
    } else {
        (None, None)
    };
    Ok(Opened::Ready(Box::new(Setup {
        link: AnyLink::Topic(TopicLink::new(tx, rx, Vec::new())),
        peer_end: PeerEnd::Topic {
            rx: to_peer,
            tx: from_peer,
            senders,
        },
        inherit: Vec::new(),
        rings: topics,
    })))
}

/// In the peer: its link, joining the topics the parent made; `senders`
/// are the ids of the publishers that send to it, in their turns.
pub fn peer_link(
    size: usize,
    rx: &str,
    tx: Option<&str>,
    senders: &[u64],
) -> Result<AnyLink, Error> {
    let options = options(size);
    let rx = Subscriber::open_with(rx, &options)?;
    let tx = tx
        .map(|tx| Publisher::open_with(tx, &options))
        .transpose()?
        .into_iter()
        .collect();
    Ok(AnyLink::Topic(TopicLink::new(
        tx,
        Some(rx),
        senders.to_vec(),
    )))
}

/// Lanes as large as the rings of `shmkit-spin`, a Block topic (no message
/// is lost), busy-polling members.
fn options(size: usize) -> Options {
    Options::default()
        .capacity(ring_capacity(size))
        .max_publishers(2)
        .max_subscribers(1)
        .waiting(Waiting::BusyPoll)
}

fn remover(name: &str) -> Result<RemoveRing, Error> {
    Ok(RemoveRing(Key::posix(&format!("{SEGMENT_PREFIX}{name}"))?))
}

/// A name no other topic of this bench has: `bench-PID-N-SUFFIX`.
fn name(suffix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bench-{}-{n}-{suffix}", std::process::id())
}

#[derive(Debug)]
pub struct TopicLink {
    /// The publishers this side sends through, in turn.
    tx: Vec<Publisher>,
    next_tx: usize,
    rx: Option<Inbox>,
}

/// The receiving side of a link.
#[derive(Debug)]
struct Inbox {
    rx: Subscriber,
    /// The ids of the publishers that send to this side, in their turns
    /// (empty or one: any message is the next).
    senders: Vec<u64>,
    next: usize,
    /// A message that came before its turn, and who sent it.
    early: Option<u64>,
    early_bytes: Vec<u8>,
}

impl TopicLink {
    fn new(tx: Vec<Publisher>, rx: Option<Subscriber>, senders: Vec<u64>) -> TopicLink {
        TopicLink {
            tx,
            next_tx: 0,
            rx: rx.map(|rx| Inbox {
                rx,
                senders,
                next: 0,
                early: None,
                early_bytes: Vec::new(),
            }),
        }
    }
}

impl TopicLink {
    /// A publisher's link and a subscriber's on topic `name`, lanes of
    /// `capacity` bytes, in this process, as `shmkit-topic` makes them (for
    /// `cost::StreamSides`).
    pub(crate) fn pair(name: &str, capacity: u64) -> Result<(TopicLink, TopicLink), Error> {
        let options = options(8).capacity(capacity);
        let rx = Subscriber::open_with(name, &options)?;
        let tx = Publisher::open_with(name, &options)?;
        Ok((
            TopicLink::new(vec![tx], None, Vec::new()),
            TopicLink::new(Vec::new(), Some(rx), Vec::new()),
        ))
    }
}

/// The publisher whose turn it is, moving the turn on.
fn next_publisher<'a>(
    tx: &'a mut [Publisher],
    next: &mut usize,
) -> Result<&'a mut Publisher, Error> {
    let count = tx.len();
    if count == 0 {
        return Err(one_way("send"));
    }
    let turn = *next;
    *next = (turn + 1) % count;
    Ok(&mut tx[turn])
}

#[inline]
fn send_on(tx: &mut Publisher, message: &[u8]) -> Result<(), Error> {
    let mut grant = tx.grant(message.len())?;
    grant.copy_from_slice(message);
    grant.commit();
    Ok(())
}

impl Inbox {
    /// Gives the next message, of `len` bytes, in the order it was sent,
    /// to `inspect` (in place, or the copy of one that came early).
    #[inline]
    fn recv<R>(&mut self, len: usize, inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let turn = match self.senders.len() {
            0 | 1 => None,
            count => {
                let sender = self.senders[self.next];
                self.next = (self.next + 1) % count;
                Some(sender)
            }
        };
        if turn.is_some() && self.early == turn {
            self.early = None;
            return Ok(inspect(&self.early_bytes));
        }
        loop {
            let message = self.rx.read()?;
            if message.len() != len {
                return Err(wrong_length(message.len(), len));
            }
            if turn.is_none_or(|sender| message.publisher() == sender) {
                let result = inspect(&message);
                message.release();
                return Ok(result);
            }
            // The other lane's message, before its turn: keep it.
            self.early = Some(message.publisher());
            self.early_bytes.clear();
            self.early_bytes.extend_from_slice(&message);
        }
    }
}

impl Link for TopicLink {
    #[inline]
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        send_on(next_publisher(&mut self.tx, &mut self.next_tx)?, message)
    }

    #[inline]
    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        rx.recv(buf.len(), inspect)
    }

    /// One `read` each, checked in place, as `shmkit-spin`'s stream reads
    /// its ring (`RingLink::recv_while`), with `each` inlined into the loop;
    /// a subscriber of two publishers takes them in their turns
    /// ([`recv`](Link::recv)).
    fn recv_while(
        &mut self,
        buf: &mut [u8],
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), Error> {
        let inbox = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        if inbox.senders.len() > 1 {
            while inbox.recv(buf.len(), &mut each)? {}
            return Ok(());
        }
        loop {
            let message = inbox.rx.read()?;
            if message.len() != buf.len() {
                return Err(wrong_length(message.len(), buf.len()));
            }
            if !each(&message) {
                return Ok(());
            }
        }
    }

    /// Checks the message in place and copies it straight into a grant of
    /// the other topic: one copy, as the ring's echo.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("echo"))?;
        let tx = next_publisher(&mut self.tx, &mut self.next_tx)?;
        rx.recv(buf.len(), |message| {
            check(message)?;
            send_on(tx, message)
        })?
    }
}
