//! What the fixed-work harnesses in `examples/` (`ring_cost`, `async_cost`,
//! `service_cost`, `topic_cost`) share: pinning a process to a CPU and
//! removing the segments a run made, however it ends.

use shmkit::{Key, Segment};

/// Pins this process to `cpu`.
///
/// # Panics
///
/// If the CPU does not exist or the kernel refuses: a harness cannot
/// measure what it was asked to.
///
/// ```no_run
/// shmkit_bench::cost::pin(0);
/// ```
pub fn pin(cpu: usize) {
    if let Err(err) = crate::machine::pin_to(cpu) {
        panic!("pinning to CPU {cpu}: {err}");
    }
}

/// Removes the POSIX segment `prefix` + `name` when dropped, even on panic.
///
/// ```
/// use shmkit::ring::{Producer, SEGMENT_PREFIX};
///
/// let name = format!("doc-cost-remove-{}", std::process::id());
/// let _remove = shmkit_bench::cost::RemoveSegment::new(SEGMENT_PREFIX, &name);
/// let _producer = Producer::open(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct RemoveSegment(Key);

impl RemoveSegment {
    /// # Panics
    ///
    /// If `prefix` + `name` is not a valid POSIX segment name.
    pub fn new(prefix: &str, name: &str) -> RemoveSegment {
        RemoveSegment(Key::posix(&format!("{prefix}{name}")).expect("a valid segment name"))
    }
}

impl Drop for RemoveSegment {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

/// The bench's own stream loops (`shmkit bench`'s sender and receiver,
/// with their stamping and checks) over a ring or a topic in one thread,
/// one side after the other, for counting each side's instructions: the
/// sender's messages all fit, so neither side ever waits.
///
/// ```
/// use shmkit_bench::{cost::StreamSides, Transport};
///
/// let mut sides = StreamSides::new(Transport::ShmkitBatch, 8, 1000)?;
/// assert_eq!(sides.send(), 1000);
/// assert_eq!(sides.receive(), 1000);
///
/// let mut topic = StreamSides::new(Transport::ShmkitTopic, 64, 1000)?;
/// assert_eq!((topic.send(), topic.receive()), (1000, 1000));
/// drop(sides); // its ring's name is this process's, as the next one's
/// let mut awaited = StreamSides::new(Transport::ShmkitAsync, 64, 1000)?;
/// assert_eq!((awaited.send(), awaited.receive()), (1000, 1000));
/// assert!(StreamSides::new(Transport::Pipe, 8, 10).is_err());
/// # Ok::<(), shmkit_bench::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamSides {
    tx: crate::transports::AnyLink,
    rx: crate::transports::AnyLink,
    size: usize,
    messages: u64,
    _remove: RemoveSegment,
}

impl StreamSides {
    /// A ring (`shmkit-spin`, `shmkit-block`, `shmkit-batch`, or
    /// `shmkit-async`: the rings of `shmkit-block` with their ends
    /// awaited, each polled in place as the transport does) or a topic's
    /// lane (`shmkit-topic`: one publisher, one subscriber) for `messages`
    /// messages of `size` bytes (and the end message), sent as `transport`
    /// sends them.
    ///
    /// # Errors
    ///
    /// Another transport, or what opening the ring or topic gives.
    pub fn new(
        transport: crate::Transport,
        size: usize,
        messages: u64,
    ) -> Result<StreamSides, crate::Error> {
        use crate::transports::{ring_record, AnyLink, AsyncLink, RingLink, TopicLink};
        use crate::Transport;

        let name = format!("stream-sides-{}", std::process::id());
        let ring_capacity = ((messages + 2) * ring_record(size))
            .next_power_of_two()
            .max(1 << 20);
        let (tx, rx, remove) = match transport {
            Transport::ShmkitSpin
            | Transport::ShmkitBlock
            | Transport::ShmkitBatch
            | Transport::ShmkitAsync => {
                let remove = RemoveSegment::new(shmkit::ring::SEGMENT_PREFIX, &name);
                // shmkit-async awaits the rings of shmkit-block.
                let rings = match transport {
                    Transport::ShmkitAsync => Transport::ShmkitBlock,
                    other => other,
                };
                let tx = AnyLink::Ring(RingLink::end(rings, &name, ring_capacity, true)?);
                let rx = AnyLink::Ring(RingLink::end(rings, &name, ring_capacity, false)?);
                if transport == Transport::ShmkitAsync {
                    let (tx, rx) = (AsyncLink::of(tx)?, AsyncLink::of(rx)?);
                    (AnyLink::Async(tx), AnyLink::Async(rx), remove)
                } else {
                    (tx, rx, remove)
                }
            }
            Transport::ShmkitTopic => {
                let remove = RemoveSegment::new(shmkit::topic::SEGMENT_PREFIX, &name);
                // A topic's record: a 32-byte header, then the payload.
                let record = ring_record(size) + 24;
                let capacity = ((messages + 2) * record * 2)
                    .next_power_of_two()
                    .max(1 << 20);
                let (tx, rx) = TopicLink::pair(&name, capacity)?;
                (AnyLink::Topic(tx), AnyLink::Topic(rx), remove)
            }
            other => {
                return Err(crate::Error::Message(format!(
                "no stream sides for {}: shmkit-spin, shmkit-block, shmkit-batch, shmkit-async or shmkit-topic",
                other.name()
            )))
            }
        };
        Ok(StreamSides {
            tx,
            rx,
            size,
            messages,
            _remove: remove,
        })
    }

    /// The sender's side, as the bench runs it: every message, then the
    /// end message. Returns how many were measured.
    #[inline(never)]
    pub fn send(&mut self) -> u64 {
        let length = crate::measure::Length::Messages(self.messages);
        let (size, tx) = (self.size, &mut self.tx);
        crate::transports::with_link!(tx, link => {
            crate::measure::send_stream(link, size, 0, length, false)
        })
        .expect("send")
    }

    /// The receiver's side, as the bench runs it: checks every message up
    /// to the end message. Returns how many it took.
    #[inline(never)]
    pub fn receive(&mut self) -> u64 {
        let (size, rx) = (self.size, &mut self.rx);
        crate::transports::with_link!(rx, link => {
            crate::measure::receive_stream(link, size, 0)
        })
        .expect("receive")
        .0
    }
}

/// The sending side of a stream timed in blocks (`ring_cost
/// bench-blocks`): `messages` messages of `size` bytes into ring `name`,
/// sent as the bench's sender sends them as `transport` (`shmkit-spin`,
/// `shmkit-block` or `shmkit-batch`), 256 at a time.
pub fn send_blocks(
    transport: crate::Transport,
    size: usize,
    name: &str,
    messages: u64,
) -> Result<(), crate::Error> {
    use crate::transports::Link;
    let capacity = crate::transports::ring_capacity(size);
    let mut link = crate::transports::RingLink::end(transport, name, capacity, true)?;
    let mut message = crate::measure::Message::new(size);
    let mut next = 0;
    while next < messages {
        let end = (next + 256).min(messages);
        link.send_sequence(&mut message, next..end)?;
        next = end;
    }
    Ok(())
}

/// The receiving side of [`send_blocks`]: receives and checks `blocks`
/// blocks of `per_block` messages as the bench's receiver does, and
/// returns each block's rate in messages per second. The median of many
/// short blocks leaves out those that another process's time slice cut
/// into, which a stream's total over its elapsed time does not.
pub fn receive_blocks(
    transport: crate::Transport,
    size: usize,
    name: &str,
    blocks: u64,
    per_block: u64,
) -> Result<Vec<f64>, crate::Error> {
    use crate::transports::Link;
    let capacity = crate::transports::ring_capacity(size);
    let mut link = crate::transports::RingLink::end(transport, name, capacity, false)?;
    let expected = crate::measure::Message::new(size);
    let mut buf = vec![0; size];
    let mut next = 0;
    let mut rates = Vec::new();
    for _ in 0..blocks {
        let end = next + per_block;
        let mut wrong = None;
        let start = std::time::Instant::now();
        link.recv_while(&mut buf, |bytes| match expected.check(bytes, next) {
            Ok(()) => {
                next += 1;
                next < end
            }
            Err(why) => {
                wrong = Some(why);
                false
            }
        })?;
        let elapsed = start.elapsed().as_secs_f64().max(1e-9);
        if let Some(why) = wrong {
            return Err(crate::Error::Message(why));
        }
        rates.push(per_block as f64 / elapsed);
    }
    Ok(rates)
}
