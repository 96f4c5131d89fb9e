//! Async forms of the ring's endpoints: [`AsyncProducer`] and
//! [`AsyncConsumer`].

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::lend::{Lend, Step};
use super::park::{Park, Readiness};
use super::sink::{sink_by_outgoing, Outgoing};
use crate::error::{Error, Result};
use crate::ring::protocol::Slot;
use crate::ring::wait::{Waiter, WakeLine};
use crate::ring::{Consumer, Options, Producer, ReadGrant, WriteGrant};
use crate::sync::AtomicU32;

/// A consumer's wait for a message.
struct Message<'a>(&'a mut Consumer);

impl Readiness for Message<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.message_ready()
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.producer_ended()
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.sleep_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// A producer's wait for room for a message of `.1` bytes.
struct Room<'a>(&'a mut Producer, usize);

impl Readiness for Room<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.room_for(self.1)
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.consumer_ended()
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.sleep_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// `consumer`'s wait for a message, with its waiting state in `park`.
pub(super) fn poll_message(
    park: &mut Park,
    cx: &mut Context<'_>,
    consumer: &mut Consumer,
) -> Poll<Result<()>> {
    match park.poll_ready(cx, &mut Message(consumer)) {
        Poll::Ready(Err(err)) => Poll::Ready(Err(consumer.end_seen(err))),
        other => other,
    }
}

/// `consumer`'s next message, taken at once if it is there, else waited
/// for: its place in the ring (nothing is taken before this is ready).
#[inline(always)]
pub(super) fn poll_next(
    park: &mut Park,
    cx: &mut Context<'_>,
    consumer: &mut Consumer,
) -> Poll<Result<Slot>> {
    poll_next_with(park, cx, consumer, Consumer::message_now)
}

/// [`poll_next`] with `look` as the quick look ([`Park::quick`]): the
/// blocking `message_now`, or for a verb that checks the fault flag after
/// its own copy, `message_to_copy_now`.
#[inline(always)]
pub(super) fn poll_next_with(
    park: &mut Park,
    cx: &mut Context<'_>,
    consumer: &mut Consumer,
    look: impl FnOnce(&Consumer) -> Option<Slot>,
) -> Poll<Result<Slot>> {
    match park.quick(|| look(consumer)) {
        Some(slot) => Poll::Ready(Ok(slot)),
        None => poll_next_out_of_line(park, cx, consumer),
    }
}

/// The rest of [`poll_next_with`] after its quick look found nothing.
#[inline(never)]
fn poll_next_out_of_line(
    park: &mut Park,
    cx: &mut Context<'_>,
    consumer: &mut Consumer,
) -> Poll<Result<Slot>> {
    // At a verb's start, what the quick look leaves (padding at the wrap),
    // then the first polls of a wait inlined, as the blocking consumer's
    // wait begins (`wait::spin_first`); then the wait.
    let first_looks = park.quick(|| match consumer.next_now() {
        Ok(None) => consumer.message_soon().transpose(),
        found => found.transpose(),
    });
    if let Some(found) = first_looks {
        return Poll::Ready(found.map_err(|err| consumer.end_seen(err)));
    }
    match park.poll_act(cx, &mut Message(consumer), |m| m.0.next_now()) {
        Poll::Ready(Err(err)) => Poll::Ready(Err(consumer.end_seen(err))),
        other => other,
    }
}

/// [`AsyncConsumer::read_while`]'s poll: `taken` counts across polls.
#[inline(always)]
fn poll_read_while(
    park: &mut Park,
    cx: &mut Context<'_>,
    consumer: &mut Consumer,
    f: &mut impl FnMut(&[u8]) -> bool,
    taken: &mut usize,
) -> Poll<Result<usize>> {
    // The first message, waited for if none is there.
    let mut slot = ready!(poll_next(park, cx, consumer))?;
    loop {
        // Each message that is there, counted in a register.
        let mut run = 0;
        loop {
            let message = consumer.read_at(slot);
            if !f(&message) {
                // Not released: it stays in the ring, the next receive's.
                std::mem::forget(message);
                return Poll::Ready(Ok(*taken + run));
            }
            drop(message);
            run += 1;
            match park.quick(|| consumer.message_now()) {
                Some(next) => slot = next,
                None => break,
            }
        }
        *taken += run;
        // What the quick look left: an empty ring (the wait), padding at
        // the wrap, or the budget's yield.
        slot = ready!(poll_next_out_of_line(park, cx, consumer))?;
    }
}

/// `producer`'s wait for room for `len` bytes, with its waiting state in
/// `park`.
pub(super) fn poll_room(
    park: &mut Park,
    cx: &mut Context<'_>,
    producer: &mut Producer,
    len: usize,
) -> Poll<Result<()>> {
    park.poll_ready(cx, &mut Room(producer, len))
}

/// Room for `len` bytes in `producer`'s ring, reserved at once if there is
/// some, else waited for (a reservation is made only in the poll that is
/// ready, and is the caller's to commit).
#[inline(always)]
pub(super) fn poll_reserve(
    park: &mut Park,
    cx: &mut Context<'_>,
    producer: &mut Producer,
    len: usize,
) -> Poll<Result<Slot>> {
    poll_reserve_with(park, cx, producer, len, Producer::room_now)
}

/// [`poll_reserve`] with `look` as the quick look ([`Park::quick`]): the
/// blocking `room_now`, or for a verb that checks the fault flag after its
/// own copy, `room_to_fill_now`.
#[inline(always)]
fn poll_reserve_with(
    park: &mut Park,
    cx: &mut Context<'_>,
    producer: &mut Producer,
    len: usize,
    look: impl FnOnce(&Producer, usize) -> Option<Slot>,
) -> Poll<Result<Slot>> {
    match park.quick(|| look(producer, len)) {
        Some(slot) => Poll::Ready(Ok(slot)),
        None => poll_reserve_out_of_line(park, cx, producer, len),
    }
}

/// The rest of [`poll_reserve_with`] after its quick look found nothing.
#[inline(never)]
fn poll_reserve_out_of_line(
    park: &mut Park,
    cx: &mut Context<'_>,
    producer: &mut Producer,
    len: usize,
) -> Poll<Result<Slot>> {
    // At a verb's start, what the quick look leaves (a wrap, a head not
    // seen yet), then for a full ring the blocking producer's unhurried
    // looks, which spare a busy consumer the line of its `head`
    // (`Producer::wait_for_room`); then the wait.
    let first_looks = park.quick(|| match producer.reserve_now(len) {
        Ok(None) => producer.room_unhurried(len).transpose(),
        Ok(Some(slot)) => {
            // With little room beyond it, the consumer gets ahead first,
            // as for the blocking producer (`reserve_until`).
            producer.let_consumer_ahead(len, None);
            Some(Ok(slot))
        }
        Err(err) => Some(Err(err)),
    });
    if let Some(found) = first_looks {
        return Poll::Ready(found);
    }
    park.poll_act(cx, &mut Room(producer, len), |room| {
        room.0.reserve_now(room.1)
    })
}

/// [`AsyncProducer::write_while`]'s poll: `sent` counts across polls.
#[inline(always)]
fn poll_write_while(
    park: &mut Park,
    cx: &mut Context<'_>,
    producer: &mut Producer,
    len: usize,
    f: &mut impl FnMut(&mut [u8]) -> bool,
    sent: &mut usize,
) -> Poll<Result<usize>> {
    // Room for the first message, waited for if there is none.
    let mut slot = ready!(poll_reserve(park, cx, producer, len))?;
    loop {
        // Each message there is room for, counted in a register.
        let mut run = 0;
        loop {
            let mut grant = producer.grant_at(slot);
            if !f(&mut grant) {
                grant.abort();
                return Poll::Ready(Ok(*sent + run));
            }
            grant.commit();
            run += 1;
            match park.quick(|| producer.room_now(len)) {
                Some(next) => slot = next,
                None => break,
            }
        }
        *sent += run;
        // What the quick look left: a full ring (the wait), the wrap, or
        // the budget's yield.
        slot = ready!(poll_reserve_out_of_line(park, cx, producer, len))?;
    }
}

/// The receiving end of a ring, awaited: a [`Consumer`] whose waits park
/// the task instead of the thread.
///
/// Every receive is cancel-safe: a future dropped before it completes has
/// taken no message (the next receive gets it), so it can be a branch of
/// `tokio::select!`. It is also a [`Stream`](futures_core::Stream) of
/// messages, which ends after the producer closed and everything was
/// received.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncConsumer, AsyncProducer};
///
/// let name = format!("doc-async-ring-{}", std::process::id());
/// let mut consumer = AsyncConsumer::open(&name)?;
/// let mut producer = AsyncProducer::open(&name)?; // usually another process
/// let sender = tokio::spawn(async move {
///     producer.send(b"hello").await?;
///     producer.send(b"world").await
/// });
/// let mut buf = [0u8; 64];
/// let n = consumer.recv(&mut buf).await?;
/// assert_eq!(&buf[..n], b"hello");
/// assert_eq!(&*consumer.read().await?, b"world");
/// sender.await.unwrap()?; // the producer is dropped: the stream closes
/// assert!(matches!(consumer.recv(&mut buf).await, Err(shmkit::Error::Closed { .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncConsumer {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    ended: bool,
    consumer: Consumer,
}

impl From<Consumer> for AsyncConsumer {
    fn from(consumer: Consumer) -> AsyncConsumer {
        AsyncConsumer {
            park: Park::default(),
            ended: false,
            consumer,
        }
    }
}

impl AsyncConsumer {
    /// [`Consumer::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Consumer::open`].
    pub fn open(name: &str) -> Result<AsyncConsumer> {
        Consumer::open(name).map(AsyncConsumer::from)
    }

    /// [`Consumer::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Consumer::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncConsumer> {
        Consumer::open_with(name, options).map(AsyncConsumer::from)
    }

    /// The blocking consumer inside, for its other verbs (`try_recv`,
    /// `drain`, `last_sequence`, …).
    pub fn get_mut(&mut self) -> &mut Consumer {
        self.park.reset();
        &mut self.consumer
    }

    /// The blocking consumer inside.
    pub fn get_ref(&self) -> &Consumer {
        &self.consumer
    }

    /// The blocking consumer inside, for a thread that blocks.
    pub fn into_inner(mut self) -> Consumer {
        self.park.reset();
        self.consumer
    }

    /// `Ready(Ok(()))` once a message is in the ring, with the task's
    /// waker parked until then; the ending errors of
    /// [`recv`](AsyncConsumer::recv) once the stream is over. For
    /// [`ready`](AsyncConsumer::ready) and hand-written futures; the
    /// receives here take the message in the same poll instead.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`] (after every committed
    /// message), [`Error::Truncated`], [`Error::Corrupt`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmkit::Result<()> {
    /// use shmkit::aio::{AsyncConsumer, AsyncProducer};
    ///
    /// let name = format!("doc-poll-message-{}", std::process::id());
    /// let mut consumer = AsyncConsumer::open(&name)?;
    /// let mut producer = AsyncProducer::open(&name)?;
    /// producer.send(b"one").await?;
    /// producer.send(b"two").await?;
    /// // A hand-written wait: then take every message there at once.
    /// std::future::poll_fn(|cx| consumer.poll_message(cx)).await?;
    /// assert_eq!(consumer.get_mut().drain(|_| {})?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        poll_message(&mut self.park, cx, &mut self.consumer)
    }

    /// Waits until a message is in the ring (then `try_*` verbs and
    /// [`Consumer::drain`] find it). Cancel-safe: it takes nothing.
    ///
    /// # Errors
    ///
    /// As [`poll_message`](AsyncConsumer::poll_message).
    pub async fn ready(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// [`Consumer::recv`], awaited. Cancel-safe: the message is taken only
    /// in the poll that completes the future.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv`].
    pub fn recv<'a>(&'a mut self, buf: &'a mut [u8]) -> impl Future<Output = Result<usize>> + 'a {
        Recv {
            endpoint: self,
            buf,
        }
    }

    /// [`Consumer::recv_vec`], awaited. Cancel-safe, as
    /// [`recv`](AsyncConsumer::recv).
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv`], never [`Error::TooLarge`].
    pub async fn recv_vec(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        // `copied_intact` checks the fault flag after the copy, which
        // covers the look's load too.
        let look = Consumer::message_to_copy_now;
        let slot =
            poll_fn(|cx| poll_next_with(&mut self.park, cx, &mut self.consumer, look)).await?;
        let message = self.consumer.read_at(slot);
        message.copy_to(buf);
        message.copied_intact()?;
        Ok(buf.len())
    }

    /// [`Consumer::read`], awaited: the next message in place. Cancel-safe:
    /// the grant exists only once the future completed; dropping it hands
    /// the message's space back.
    ///
    /// # Errors
    ///
    /// As [`Consumer::read`].
    pub fn read(&mut self) -> impl Future<Output = Result<ReadGrant<'_>>> {
        Lend::new(self, Read)
    }

    /// Reads messages in place one after another, as a loop of
    /// [`read`](AsyncConsumer::read) does, handing each to `f` and giving
    /// its space back before the next, while `f` returns `true`: the
    /// message for which it returns `false` stays in the ring, the next
    /// receive's (as with [`Consumer::drain_while`]). Returns how many were
    /// taken. Waits, between messages, as `read` waits (parking the task,
    /// never the thread), and yields to the executor after each budget of
    /// messages (each counts as one verb), as every receive does.
    ///
    /// The messages that are there are taken within one poll, without an
    /// `.await` between them, so that the loop's state stays in registers:
    /// for a stream of small messages this costs little more than the
    /// blocking `read` loop (138 instructions a 64 B message in
    /// `shmkit bench`'s stream against 124 with the bench's check inlined;
    /// a loop of `read().await`,
    /// which keeps its state in the future's memory, 152).
    ///
    /// Cancel-safe: a message is either handed to `f` (and taken) or left
    /// in the ring; dropping the future between polls loses none.
    ///
    /// # Errors
    ///
    /// As [`read`](AsyncConsumer::read): [`Error::Closed`] after every
    /// message was taken, [`Error::PeerGone`], …. What `f` took before
    /// stays taken, and the count is not returned with the error: an `f`
    /// that must know counts for itself.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmkit::Result<()> {
    /// use shmkit::aio::{AsyncConsumer, AsyncProducer};
    ///
    /// let name = format!("doc-read-while-{}", std::process::id());
    /// let mut consumer = AsyncConsumer::open(&name)?;
    /// let mut producer = AsyncProducer::open(&name)?; // usually another process
    /// let sender = tokio::spawn(async move {
    ///     for n in 1..=1001u32 {
    ///         producer.send(&n.to_le_bytes()).await?;
    ///     }
    ///     shmkit::Result::Ok(())
    /// });
    /// let mut sum = 0;
    /// let taken = consumer
    ///     .read_while(|message| {
    ///         let n = u32::from_le_bytes(message.try_into().expect("4 bytes"));
    ///         if n > 1000 {
    ///             return false; // left in the ring
    ///         }
    ///         sum += n;
    ///         true
    ///     })
    ///     .await?;
    /// assert_eq!((taken, sum), (1000, 500_500));
    /// assert_eq!(&*consumer.read().await?, 1001u32.to_le_bytes());
    /// sender.await.unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_while(&mut self, mut f: impl FnMut(&[u8]) -> bool) -> Result<usize> {
        let AsyncConsumer { park, consumer, .. } = self;
        let mut taken = 0;
        poll_fn(|cx| poll_read_while(park, cx, consumer, &mut f, &mut taken)).await
    }

    /// Waits for a message, then [`Consumer::drain`]s every message in the
    /// ring to `f`; returns how many (at least one). Cancel-safe: nothing
    /// is taken before the future completes.
    ///
    /// # Errors
    ///
    /// As [`ready`](AsyncConsumer::ready), then as [`Consumer::drain`].
    pub async fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<usize> {
        let AsyncConsumer { park, consumer, .. } = self;
        let drained = poll_fn(|cx| {
            park.poll_act(cx, &mut Message(consumer), |m| {
                Ok(Some(m.0.drain(&mut f)?).filter(|&n| n > 0))
            })
        });
        drained.await.map_err(|err| self.consumer.end_seen(err))
    }
}

impl futures_core::Stream for AsyncConsumer {
    /// A message, or an error: [`Error::PeerGone`] (the last item when the
    /// producer died), [`Error::Corrupt`], …. The stream ends after the
    /// producer closed and everything was received, or after an error
    /// that ends it (`PeerGone`, `Truncated`).
    type Item = Result<Vec<u8>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        // As in `recv_vec`: one check of the fault flag, after the copy.
        let look = Consumer::message_to_copy_now;
        let outcome = ready!(poll_next_with(&mut this.park, cx, &mut this.consumer, look))
            .and_then(|slot| {
                let mut bytes = Vec::new();
                let message = this.consumer.read_at(slot);
                message.copy_to(&mut bytes);
                message.copied_intact().map(|()| bytes)
            });
        Poll::Ready(end_of_stream(&mut this.ended, outcome))
    }
}

/// A stream's item for `outcome`: `None` at a close, and none after an
/// error that ends the stream.
pub(super) fn end_of_stream<T>(ended: &mut bool, outcome: Result<T>) -> Option<Result<T>> {
    match outcome {
        Err(Error::Closed { .. }) => {
            *ended = true;
            None
        }
        Err(err @ (Error::PeerGone { .. } | Error::Truncated { .. })) => {
            *ended = true;
            Some(Err(err))
        }
        other => Some(other),
    }
}

/// The sending end of a ring, awaited: a [`Producer`] whose waits park the
/// task instead of the thread.
///
/// Every send is cancel-safe: a future dropped before it completes has
/// sent nothing and holds no grant. It is also a
/// [`Sink`](futures_sink::Sink) of byte messages (anything
/// `AsRef<[u8]>`), which keeps at most one message that did not fit
/// until there is room.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use futures_util::{SinkExt, StreamExt};
/// use shmkit::aio::{AsyncConsumer, AsyncProducer};
///
/// let name = format!("doc-async-sink-{}", std::process::id());
/// let mut consumer = AsyncConsumer::open(&name)?;
/// let mut producer = AsyncProducer::open(&name)?; // usually another process
/// let mut words = futures_util::stream::iter(["a", "b", "c"].map(Ok));
/// producer.send_all(&mut words).await?; // the Sink's send_all
/// drop(producer);
/// let got: Vec<Vec<u8>> = consumer.map(Result::unwrap).collect().await;
/// assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
/// # Ok(())
/// # }
/// ```
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncConsumer, AsyncProducer};
///
/// let name = format!("doc-async-producer-{}", std::process::id());
/// let mut producer = AsyncProducer::open(&name)?;
/// let mut consumer = AsyncConsumer::open(&name)?; // usually another process
/// let mut grant = producer.grant(5).await?; // zero-copy: write in place
/// grant.copy_from_slice(b"hello");
/// grant.commit();
/// assert_eq!(&*consumer.read().await?, b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncProducer {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    /// A sink's message that did not fit when it was started.
    pending: Option<Vec<u8>>,
    producer: Producer,
}

impl From<Producer> for AsyncProducer {
    fn from(producer: Producer) -> AsyncProducer {
        AsyncProducer {
            park: Park::default(),
            pending: None,
            producer,
        }
    }
}

impl AsyncProducer {
    /// [`Producer::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Producer::open`].
    pub fn open(name: &str) -> Result<AsyncProducer> {
        Producer::open(name).map(AsyncProducer::from)
    }

    /// [`Producer::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Producer::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncProducer> {
        Producer::open_with(name, options).map(AsyncProducer::from)
    }

    /// The blocking producer inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut Producer {
        self.park.reset();
        &mut self.producer
    }

    /// The blocking producer inside.
    pub fn get_ref(&self) -> &Producer {
        &self.producer
    }

    /// The blocking producer inside (a sink's unsent message is dropped).
    pub fn into_inner(mut self) -> Producer {
        self.park.reset();
        self.producer
    }

    /// `Ready(Ok(()))` once a message of `len` bytes fits, with the task's
    /// waker parked until then. The base of every send here.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`]; [`Error::PeerGone`] or [`Error::PeerLeft`] once
    /// the consumer is gone while the ring is full (as [`Producer::send`]).
    pub fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<()>> {
        poll_room(&mut self.park, cx, &mut self.producer, len)
    }

    /// Waits until a message of `len` bytes fits. Cancel-safe: it reserves
    /// nothing.
    ///
    /// # Errors
    ///
    /// As [`poll_room`](AsyncProducer::poll_room).
    pub async fn room(&mut self, len: usize) -> Result<()> {
        poll_fn(|cx| self.poll_room(cx, len)).await
    }

    /// [`Producer::send`], awaited. Cancel-safe: the message is written and
    /// committed in the poll that completes the future, or not at all.
    ///
    /// # Errors
    ///
    /// As [`Producer::send`].
    pub fn send<'a>(&'a mut self, message: &'a [u8]) -> impl Future<Output = Result<()>> + 'a {
        Send {
            endpoint: self,
            message,
        }
    }

    /// Writes messages of `len` bytes in place one after another, as a
    /// loop of [`grant`](AsyncProducer::grant) and commit does, while `f`
    /// fills them: `f` writes the message into its space (all `len`
    /// bytes: the space holds what the ring held before) and returns
    /// `true` to send it, or `false` to send nothing more (that space is
    /// given back unsent). `f` is asked again only once there is room for
    /// another message, so the call returns only when the ring has room for
    /// one message more than it sent: a producer whose consumer stopped
    /// reading waits there (or gets the consumer's end) rather than return. Returns how many were sent. Waits for room
    /// between messages as [`send`](AsyncProducer::send) waits (parking
    /// the task, never the thread), and yields to the executor after each
    /// budget of messages (each counts as one verb), as every send does.
    /// As with a grant, the mapping's fault flag is looked at before each
    /// message is written, not after (`send` looks after its copy).
    ///
    /// The messages there is room for are written within one poll,
    /// without an `.await` between them, so that the loop's state stays in
    /// registers: for a stream of small messages this costs less than a
    /// loop of `send().await`, which keeps its state, and each send's
    /// `Result`, in the future's memory (90 instructions a 64 B message in
    /// `shmkit bench`'s stream against 104; the blocking loop of `send`,
    /// 67). [`AsyncConsumer::read_while`] is its receiving side.
    ///
    /// Cancel-safe: a message is either committed whole or not begun;
    /// dropping the future between polls loses none that `f` filled.
    ///
    /// # Errors
    ///
    /// As [`grant`](AsyncProducer::grant) ([`Error::TooLarge`] before
    /// anything is sent, [`Error::PeerGone`], …). What was committed
    /// before stays sent, and the count is not returned with the error:
    /// an `f` that must know counts for itself.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmkit::Result<()> {
    /// use shmkit::aio::{AsyncConsumer, AsyncProducer};
    ///
    /// let name = format!("doc-write-while-{}", std::process::id());
    /// let mut producer = AsyncProducer::open(&name)?;
    /// let mut consumer = AsyncConsumer::open(&name)?; // usually another process
    /// let mut numbers = [1u32, 2, 3].into_iter();
    /// let sent = producer
    ///     .write_while(4, |space| match numbers.next() {
    ///         Some(n) => {
    ///             space.copy_from_slice(&n.to_le_bytes());
    ///             true
    ///         }
    ///         None => false, // nothing more to send
    ///     })
    ///     .await?;
    /// assert_eq!(sent, 3);
    /// let mut got = Vec::new();
    /// while got.len() < 3 {
    ///     got.push(consumer.read().await?.to_vec());
    /// }
    /// assert_eq!(got, [1u32, 2, 3].map(|n| n.to_le_bytes().to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write_while(
        &mut self,
        len: usize,
        mut f: impl FnMut(&mut [u8]) -> bool,
    ) -> Result<usize> {
        let AsyncProducer { park, producer, .. } = self;
        let mut sent = 0;
        poll_fn(|cx| poll_write_while(park, cx, producer, len, &mut f, &mut sent)).await
    }

    /// [`Producer::grant`], awaited. Cancel-safe: the grant exists only once
    /// the future completed; dropping it uncommitted sends nothing.
    ///
    /// # Errors
    ///
    /// As [`Producer::grant`].
    pub fn grant(&mut self, len: usize) -> impl Future<Output = Result<WriteGrant<'_>>> {
        Lend::new(self, Grant(len))
    }
}

// The verbs' futures are written by hand rather than as `async fn`s
// around a `poll_fn`, whose state machines and extra poll cost about 40
// instructions a verb (`async_cost`) on a path of about 65, so that the
// whole verb inlines into the caller's loop. The copying verbs (`Recv`,
// `Send`) hold their endpoint and make each outcome where they return it
// (a `Result` with an `Error` in it is large, and moving one whole
// costs); the verbs whose outcome borrows the endpoint (a grant) take it
// by value in each poll and hand it back to wait (`aio/lend.rs`), as the
// service's do: measured, that costs fewer instructions than lending it
// out only once complete.

/// [`AsyncConsumer::read`].
struct Read;

impl<'a> Step<'a, AsyncConsumer> for Read {
    type Output = Result<ReadGrant<'a>>;
    #[inline(always)]
    fn step(
        &mut self,
        cx: &mut Context<'_>,
        this: &'a mut AsyncConsumer,
    ) -> Result<Self::Output, &'a mut AsyncConsumer> {
        match poll_next(&mut this.park, cx, &mut this.consumer) {
            Poll::Ready(slot) => Ok(slot.map(|slot| this.consumer.read_at(slot))),
            Poll::Pending => Err(this),
        }
    }
}

/// [`AsyncProducer::grant`] of this many bytes.
struct Grant(usize);

impl<'a> Step<'a, AsyncProducer> for Grant {
    type Output = Result<WriteGrant<'a>>;
    #[inline(always)]
    fn step(
        &mut self,
        cx: &mut Context<'_>,
        this: &'a mut AsyncProducer,
    ) -> Result<Self::Output, &'a mut AsyncProducer> {
        match poll_reserve(&mut this.park, cx, &mut this.producer, self.0) {
            Poll::Ready(slot) => Ok(slot.map(|slot| this.producer.grant_at(slot))),
            Poll::Pending => Err(this),
        }
    }
}

/// [`AsyncConsumer::recv`], into `buf`.
struct Recv<'a> {
    endpoint: &'a mut AsyncConsumer,
    buf: &'a mut [u8],
}

impl Future for Recv<'_> {
    type Output = Result<usize>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Recv {
            endpoint: this,
            buf,
        } = &mut *self;
        // The copy checks the fault flag after it (`recv_at`), which
        // covers the look's load too, as in `Consumer::recv`.
        let look = Consumer::message_to_copy_now;
        let slot = ready!(poll_next_with(&mut this.park, cx, &mut this.consumer, look))?;
        match this.consumer.recv_at(slot, buf) {
            Ok(len) => Poll::Ready(Ok(len)),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

/// [`AsyncProducer::send`] of `message`.
struct Send<'a> {
    endpoint: &'a mut AsyncProducer,
    message: &'a [u8],
}

impl Future for Send<'_> {
    type Output = Result<()>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Send {
            endpoint: this,
            message,
        } = &mut *self;
        // The commit checks the fault flag after the copy (`send_at`), as
        // in `Producer::send`: the look needs no check of its own.
        let look = Producer::room_to_fill_now;
        let len = message.len();
        let slot = ready!(poll_reserve_with(
            &mut this.park,
            cx,
            &mut this.producer,
            len,
            look
        ))?;
        // Matched out rather than `Poll::Ready(send_at(..))`: that form
        // costs 18 instructions a send more here (`async_cost send 64`,
        // 106 against 124), the `Result` built apart and moved into the
        // `Poll`; the receive is written the same way.
        match this.producer.send_at(slot, message) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

impl<M: AsRef<[u8]>> Outgoing<M> for AsyncProducer {
    type Kept = Vec<u8>;

    fn kept(&mut self) -> &mut Option<Vec<u8>> {
        &mut self.pending
    }

    #[inline]
    fn send_now(&mut self, message: &M) -> Result<bool> {
        let message = message.as_ref();
        // One check of the fault flag, `send_at`'s after its copy, as in
        // `send`.
        let Some(slot) = self.producer.reserve_to_fill_now(message.len())? else {
            return Ok(false);
        };
        self.producer.send_at(slot, message)?;
        Ok(true)
    }

    fn keep(message: M) -> Vec<u8> {
        message.as_ref().to_vec()
    }

    fn poll_send_kept(&mut self, cx: &mut Context<'_>, kept: &Vec<u8>) -> Poll<Result<()>> {
        let len = kept.len();
        // `send_at` checks the fault flag after its copy, as `send` does.
        let look = Producer::room_to_fill_now;
        let slot = ready!(poll_reserve_with(
            &mut self.park,
            cx,
            &mut self.producer,
            len,
            look
        ))?;
        Poll::Ready(self.producer.send_at(slot, kept))
    }
}

sink_by_outgoing!(impl [M: AsRef<[u8]>] Sink<M> for AsyncProducer);

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_stream_that_never_runs_dry_lets_the_other_tasks_of_its_thread_run() {
        let name = format!("aio-budget-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let turns = runtime.block_on(async {
            let mut consumer = AsyncConsumer::open(&name).expect("a consumer");
            let mut producer = AsyncProducer::open(&name).expect("a producer");
            let other_ran = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&other_ran);
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            let mut buf = [0u8; 8];
            for turn in 0..10_000 {
                // Never waits: the message is there, so is room.
                producer.send(b"message").await.expect("sent");
                consumer.recv(&mut buf).await.expect("received");
                if other_ran.load(Ordering::SeqCst) {
                    return Some(turn);
                }
            }
            None
        });
        let turns = turns.expect("the other task never ran");
        assert!(turns <= 2 * BUDGET_TURNS, "it ran only after {turns} turns");
    }

    #[test]
    fn the_loops_of_read_while_and_write_while_let_the_other_tasks_of_their_thread_run() {
        let name = format!("aio-loop-budget-{}", std::process::id());
        // The ring keeps the messages left in it: removed however the test
        // ends.
        let _removal = crate::aio::removal::Removal::new(crate::ring::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        // Enough for eight budgets, all in the ring at once: neither loop
        // ever waits, so only the budget lets the other task in.
        const MESSAGES: usize = 8 * BUDGET_TURNS;
        let options = Options::default().capacity(1 << 16);
        let (sent, taken) = runtime.block_on(async {
            let mut consumer = AsyncConsumer::open_with(&name, &options).expect("a consumer");
            let mut producer = AsyncProducer::open_with(&name, &options).expect("a producer");
            // Another task of this thread, which sets its flag when it runs.
            let other_task = || {
                let other_ran = Arc::new(AtomicBool::new(false));
                let flag = Arc::clone(&other_ran);
                tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
                other_ran
            };
            let other_ran = other_task();
            let mut sent = 0usize;
            let written = producer
                .write_while(8, |space| {
                    if sent == MESSAGES || other_ran.load(Ordering::SeqCst) {
                        return false;
                    }
                    space.copy_from_slice(&sent.to_le_bytes());
                    sent += 1;
                    true
                })
                .await
                .expect("sent");
            assert_eq!(written, sent);
            // The rest, and one more, so that the consumer's loop finds
            // them all and stops before the ring runs dry.
            while sent <= MESSAGES {
                producer.send(&sent.to_le_bytes()).await.expect("sent");
                sent += 1;
            }
            let other_ran = other_task();
            let mut seen = 0usize;
            let taken = consumer
                .read_while(|message| {
                    assert_eq!(message, seen.to_le_bytes(), "message {seen}");
                    if seen == MESSAGES || other_ran.load(Ordering::SeqCst) {
                        return false;
                    }
                    seen += 1;
                    true
                })
                .await
                .expect("taken");
            assert_eq!(taken, seen);
            // The message it stopped at was left in the ring.
            let next = consumer.read().await.expect("the message left");
            assert_eq!(*next, taken.to_le_bytes());
            (written, taken)
        });
        assert!(
            sent <= 2 * BUDGET_TURNS,
            "it ran only after {sent} messages written"
        );
        assert!(
            taken <= 2 * BUDGET_TURNS,
            "it ran only after {taken} messages read"
        );
    }

    #[test]
    fn read_while_takes_every_message_then_reports_the_close() {
        let name = format!("aio-read-while-close-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut consumer = AsyncConsumer::open(&name).expect("a consumer");
            let mut producer = Producer::open(&name).expect("a producer");
            for word in ["one", "two", "three"] {
                producer.send(word.as_bytes()).expect("sent");
            }
            producer.close().expect("closed");
            let mut seen = Vec::new();
            let err = consumer
                .read_while(|message| {
                    seen.push(message.to_vec());
                    true
                })
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Closed { .. }), "{err}");
            assert_eq!(seen, [&b"one"[..], b"two", b"three"]);
        });
    }

    #[test]
    fn write_while_of_a_message_too_large_fills_nothing() {
        let name = format!("aio-write-while-large-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let options = Options::default().capacity(4096);
            let _consumer = Consumer::open_with(&name, &options).expect("a consumer");
            let mut producer = AsyncProducer::open_with(&name, &options).expect("a producer");
            let err = producer
                .write_while(8192, |_| panic!("asked to fill a message that cannot fit"))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        });
    }

    async fn flush(producer: &mut AsyncProducer) -> Result<()> {
        std::future::poll_fn(|cx| {
            futures_sink::Sink::<Vec<u8>>::poll_flush(std::pin::Pin::new(&mut *producer), cx)
        })
        .await
    }

    #[test]
    fn a_kept_message_whose_flush_failed_is_sent_by_a_later_flush() {
        use futures_sink::Sink;
        use std::pin::Pin;

        let name = format!("aio-kept-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let options = Options::default().capacity(4096);
            let consumer = Consumer::open_with(&name, &options).expect("a consumer");
            let mut producer = AsyncProducer::open_with(&name, &options).expect("a producer");
            let mut filled = 0;
            while producer.get_mut().try_send(&[1u8; 100]).is_ok() {
                filled += 1;
            }
            // It does not fit: kept.
            Pin::new(&mut producer)
                .start_send(vec![2u8; 100])
                .expect("kept");
            drop(consumer);
            let err = flush(&mut producer).await.unwrap_err();
            assert!(matches!(err, Error::PeerLeft { .. }), "{err}");

            // A new consumer takes the ring over: the kept message is next.
            let mut consumer = Consumer::open_with(&name, &options).expect("a new consumer");
            let mut buf = [0u8; 100];
            for _ in 0..filled {
                consumer.try_recv(&mut buf).expect("a filled message");
                assert_eq!(buf, [1u8; 100]);
            }
            flush(&mut producer).await.expect("flushed");
            consumer.try_recv(&mut buf).expect("the kept message");
            assert_eq!(buf, [2u8; 100]);
        });
    }

    #[test]
    fn a_consumer_handed_back_after_a_cancelled_wait_no_longer_says_it_sleeps() {
        let name = format!("aio-into-inner-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let mut consumer = AsyncConsumer::open(&name).expect("a consumer");
        let _producer = AsyncProducer::open(&name).expect("a producer");
        let sleeping = |consumer: &Consumer| consumer.sleep_line().1.load(Ordering::SeqCst);
        for hand_back in ["get_mut", "into_inner"] {
            runtime.block_on(async {
                let mut buf = [0u8; 8];
                tokio::select! {
                    got = consumer.recv(&mut buf) => panic!("nothing was sent: {got:?}"),
                    () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                }
            });
            assert_eq!(sleeping(consumer.get_ref()), 1, "the cancelled wait parked");
            if hand_back == "get_mut" {
                assert_eq!(sleeping(consumer.get_mut()), 0, "{hand_back}");
            } else {
                let inner = consumer.into_inner();
                assert_eq!(sleeping(&inner), 0, "{hand_back}");
                return;
            }
        }
    }

    #[test]
    fn an_adaptive_async_consumer_spins_for_what_its_own_wake_ups_cost() {
        let name = format!("aio-wake-cost-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let mut consumer = AsyncConsumer::open(&name).expect("a consumer");
        let mut producer = Producer::open(&name).expect("a producer");
        let untaught = consumer.consumer.waiter().spin_time();
        let mut buf = [0u8; 8];
        // A round whose thread was preempted between the wake-up call and
        // the next poll gives a sample too long to learn from: a few rounds.
        for _round in 0..20 {
            runtime.block_on(async {
                // A wait that parks, then is cancelled (well before its
                // check time): its registration stays with the consumer,
                // and the next receive takes it over.
                tokio::select! {
                    got = consumer.recv(&mut buf) => panic!("nothing was sent: {got:?}"),
                    () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                }
                let sleeping = consumer.get_ref().sleep_line().1.load(Ordering::SeqCst);
                assert_eq!(sleeping, 1, "the wait parked");
                // A poll that nothing woke (as another branch of a
                // `select!` makes) finds no wake-up to learn from, and the
                // wait goes on.
                std::future::poll_fn(|cx| {
                    let waiting = std::pin::pin!(consumer.recv(&mut buf)).poll(cx);
                    assert!(waiting.is_pending(), "nothing was sent: {waiting:?}");
                    Poll::Ready(())
                })
                .await;
                // Wakes the parked consumer (its word says it sleeps).
                producer.send(b"wake").expect("sent");
                let n = consumer.recv(&mut buf).await.expect("received");
                assert_eq!(&buf[..n], b"wake");
            });
            if consumer.consumer.waiter().spin_time() != untaught {
                return;
            }
        }
        panic!("the wake-up's cost was not learned in 20 rounds");
    }

    #[test]
    fn a_sink_send_that_runs_onto_a_cut_page_commits_nothing() {
        use futures_sink::Sink;
        use std::pin::Pin;

        let name = format!("aio-sink-cut-{}", std::process::id());
        let removal = crate::aio::removal::Removal::new(crate::ring::SEGMENT_PREFIX, &name);
        let capacity = 1 << 16;
        let options = Options::default().capacity(capacity);
        let mut producer = AsyncProducer::open_with(&name, &options).expect("a producer");
        let mut consumer = Consumer::open_with(&name, &options).expect("a consumer");
        // Cut in the middle of the data area, as a hostile peer with write
        // access would: the pages after the cut fault.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(removal.path())
            .expect("the ring's file");
        file.set_len((512 + capacity) / 2).expect("truncated");
        let mut sent = 0u8;
        let err = loop {
            // Each fits as the ring was (it holds 64 of them): sent at once,
            // never kept.
            match Pin::new(&mut producer).start_send([sent; 1000]) {
                Ok(()) => sent += 1,
                Err(err) => break err,
            }
            assert!(producer.pending.is_none(), "message {sent} was kept");
        };
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        assert!(sent > 0, "the first pages of the data area still map");
        let mut buf = [0u8; 1000];
        for n in 0..sent {
            assert_eq!(consumer.try_recv(&mut buf).expect("a sent message"), 1000);
            assert!(buf.iter().all(|&byte| byte == n), "message {n}");
        }
        let after = consumer.try_recv(&mut buf).unwrap_err();
        assert!(matches!(after, Error::Empty { .. }), "{after}");
    }

    /// Turns of a send and a receive within which both endpoints used up
    /// their budget.
    const BUDGET_TURNS: usize = 128;
}
