//! `shmkit-spin` and `shmkit-block`: a shmkit ring each way. The sender
//! sends with `Producer::send` (a grant of the size, the message copied
//! in, committed); the receiver reads it in place
//! (`Consumer::read`), checks it there, and releases it. No copy on the
//! receiving side: that is what the ring offers, and the check still reads
//! every byte.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmkit::ring::{Consumer, Options, Producer, Waiting, SEGMENT_PREFIX};
use shmkit::{Key, Segment};

use super::{one_way, wrong_length, AnyLink, Link, Opened, PeerEnd, Setup, Transport};
use crate::measure::Message;
use crate::Error;

/// Both rings of a ping-pong (`both`), or the one of a stream; their
/// segments are removed with the [`Setup`].
pub fn open(
    transport: Transport,
    both: bool,
    size: usize,
    block_spin: Option<Duration>,
) -> Result<Opened, Error> {
    let options = options(transport, size, block_spin);
    let to_peer = name("to-peer");
    let mut rings = vec![RemoveRing::new(&to_peer)?];
    let tx = Producer::open_with(&to_peer, &options)?;
    let (rx, from_peer) = if both {
        let from_peer = name("from-peer");
        rings.push(RemoveRing::new(&from_peer)?);
        (
            Some(Consumer::open_with(&from_peer, &options)?),
            Some(from_peer),
        )
    } else {
        (None, None)
    };
    Ok(Opened::Ready(Box::new(Setup {
        link: AnyLink::Ring(RingLink {
            tx: Some(tx),
            rx,
            batches: transport == Transport::ShmkitBatch,
        }),
        peer_end: PeerEnd::Ring {
            rx: to_peer,
            tx: from_peer,
            block_spin_ns: block_spin.map(|spin| spin.as_nanos() as u64),
        },
        inherit: Vec::new(),
        rings,
    })))
}

/// In the peer: its link, opening the rings the parent made.
pub fn peer_link(
    transport: Transport,
    size: usize,
    rx: &str,
    tx: Option<&str>,
    block_spin_ns: Option<u64>,
) -> Result<AnyLink, Error> {
    let block_spin = block_spin_ns.map(Duration::from_nanos);
    let options = options(transport, size, block_spin);
    Ok(AnyLink::Ring(RingLink {
        batches: transport == Transport::ShmkitBatch,
        rx: Some(Consumer::open_with(rx, &options)?),
        tx: tx.map(|tx| Producer::open_with(tx, &options)).transpose()?,
    }))
}

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

/// How a ring transport waits: `shmkit-block` as the library does by
/// default (spin about as long as a wake-up costs, then sleep), or for a
/// fixed `--block-spin` before sleeping.
pub fn waiting(transport: Transport, block_spin: Option<Duration>) -> Waiting {
    match transport {
        Transport::ShmkitBlock => block_spin.map_or(Waiting::Adaptive, Waiting::SpinThenSleep),
        _ => Waiting::BusyPoll,
    }
}

fn options(transport: Transport, size: usize, block_spin: Option<Duration>) -> Options {
    Options::default()
        .capacity(ring_capacity(size))
        .waiting(waiting(transport, block_spin))
}

/// Removes a ring's segment when dropped, however the measurement ends.
#[derive(Debug)]
pub(super) struct RemoveRing(pub(super) Key);

impl RemoveRing {
    fn new(name: &str) -> Result<RemoveRing, Error> {
        Ok(RemoveRing(Key::posix(&format!("{SEGMENT_PREFIX}{name}"))?))
    }

    /// Removes the segment of `key` (a service's, say) instead.
    pub(super) fn of_key(key: Key) -> RemoveRing {
        RemoveRing(key)
    }
}

impl RemoveRing {
    pub(super) fn remove(&self) {
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
fn name(suffix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bench-{}-{n}-{suffix}", std::process::id())
}

#[derive(Debug)]
pub struct RingLink {
    tx: Option<Producer>,
    rx: Option<Consumer>,
    /// `shmkit-batch`: streams go through the batch verbs.
    batches: bool,
}

impl RingLink {
    /// One end of ring `name` of `capacity` bytes (its producer's if
    /// `sends`), opened or made with the bench's options for `transport`
    /// (for `cost`, which drives the bench's loops without its processes).
    pub(crate) fn end(
        transport: Transport,
        name: &str,
        capacity: u64,
        sends: bool,
    ) -> Result<RingLink, Error> {
        let options = options(transport, 8, None).capacity(capacity);
        Ok(RingLink {
            tx: sends
                .then(|| Producer::open_with(name, &options))
                .transpose()?,
            rx: (!sends)
                .then(|| Consumer::open_with(name, &options))
                .transpose()?,
            batches: transport == Transport::ShmkitBatch,
        })
    }

    /// Its producer and consumer, for `shmkit-async` to await.
    pub(super) fn into_ends(self) -> (Option<Producer>, Option<Consumer>) {
        (self.tx, self.rx)
    }
}

impl Link for RingLink {
    // Inlined into the loops of `measure`, as `Producer::send` and
    // `Consumer::read` are into these: a call per message would cost a
    // small message's stream about 20 instructions of register saving.
    #[inline]
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        tx.send(message)?;
        Ok(())
    }

    #[inline]
    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        let message = rx.read()?;
        if message.len() != buf.len() {
            return Err(wrong_length(message.len(), buf.len()));
        }
        let result = inspect(&message);
        message.release();
        Ok(result)
    }

    /// A stream's messages: for `shmkit-spin` and `shmkit-block`, a grant
    /// each, filled in place and committed; for `shmkit-batch`, as many as
    /// fit go into one `WriteBatch`, each written in place and stamped
    /// there, committed together.
    fn send_sequence(
        &mut self,
        message: &mut Message,
        sequences: std::ops::Range<u64>,
    ) -> Result<(), Error> {
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        let bytes = message.bytes();
        if !self.batches {
            // A grant each, filled in place as shmkit-async's `write_while`
            // and shmkit-batch fill theirs: the message copied in, then its
            // number, so that the two compare the same work. Stamping the
            // message first and copying it (`send`) streamed 64 B at 58-64 M
            // msgs/s where this ran at 64-80 M (three runs each), and the
            // async loop went from 58-66 M to 99-122 M with the same change,
            // likely because a copy whose first load overlaps the eight
            // bytes just stored must wait for that store.
            for sequence in sequences {
                let mut grant = tx.grant(bytes.len())?;
                grant.copy_from_slice(bytes);
                grant[..8].copy_from_slice(&sequence.to_le_bytes());
                grant.commit();
            }
            return Ok(());
        }
        let mut next = sequences.start;
        while next < sequences.end {
            // Waits for room for one, as `send` would; a batch never waits.
            tx.grant(bytes.len())?.abort();
            let mut batch = tx.batch();
            while next < sequences.end {
                let Some(space) = batch.try_grant(bytes.len())? else {
                    break;
                };
                space.copy_from_slice(bytes);
                space[..8].copy_from_slice(&next.to_le_bytes());
                next += 1;
            }
            batch.commit();
        }
        Ok(())
    }

    /// A stream's messages: for `shmkit-spin` and `shmkit-block`, one
    /// `read` each; for `shmkit-batch`, every message in the ring at once
    /// (`drain_while`), reading one (waiting) only when it is empty.
    fn recv_while(
        &mut self,
        buf: &mut [u8],
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        if !self.batches {
            // A loop of its own, so that `each` inlines into it.
            loop {
                let message = rx.read()?;
                if message.len() != buf.len() {
                    return Err(wrong_length(message.len(), buf.len()));
                }
                if !each(&message) {
                    return Ok(());
                }
            }
        }
        let mut done = false;
        while !done {
            let mut wrong = None;
            // After the last message `each` takes (which is released), the
            // next is left; a wrong length stops at once.
            let taken = rx.drain_while(|message| {
                if done {
                    return false;
                }
                if message.len() != buf.len() {
                    wrong = Some(message.len());
                    return false;
                }
                done = !each(message);
                true
            })?;
            if let Some(len) = wrong {
                return Err(wrong_length(len, buf.len()));
            }
            if done {
                break;
            }
            if taken > 0 {
                continue;
            }
            let message = rx.read()?;
            if message.len() != buf.len() {
                return Err(wrong_length(message.len(), buf.len()));
            }
            done = !each(&message);
        }
        Ok(())
    }

    /// Checks the message in place and sends it straight from there into
    /// the other ring: one copy, where the kernel transports make two.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let (Some(rx), Some(tx)) = (self.rx.as_mut(), self.tx.as_mut()) else {
            return Err(one_way("echo"));
        };
        let message = rx.read()?;
        if message.len() != buf.len() {
            return Err(wrong_length(message.len(), buf.len()));
        }
        check(&message)?;
        tx.send(&message)?;
        message.release();
        Ok(())
    }
}
