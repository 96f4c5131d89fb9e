//! Async forms of the topic's members: [`AsyncPublisher`] and
//! [`AsyncSubscriber`].

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::park::{Park, Readiness};
use super::ring::end_of_stream;
use super::sink::{sink_by_outgoing, Outgoing};
use crate::channel::{self, Codec, Copied, Postcard};
use crate::error::{Error, Result};
use crate::ring::wait::{Waiter, WakeLine};
use crate::sync::AtomicU32;
use crate::topic::{Options, Publisher, Received, Subscriber, WriteGrant};

/// A subscriber's wait for a message.
struct Message<'a>(&'a mut Subscriber);

impl Readiness for Message<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.message_ready()
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.publishers_ended()
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.sleep_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// A publisher's wait for room for a message of `.1` bytes.
struct Room<'a>(&'a mut Publisher, usize);

impl Readiness for Room<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.room_for(self.1)
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.reclaim_for(self.1);
        Ok(())
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.sleep_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// The act of a subscriber's receives: the next message copied into `buf`
/// if one is there now, else `None` (also when, on a drop-oldest topic,
/// the message seen was overwritten before it was copied: the wait goes
/// on).
fn recv_now(subscriber: &mut Subscriber, buf: &mut [u8]) -> Result<Option<Received>> {
    match subscriber.try_recv(buf) {
        Err(Error::Empty { .. }) => Ok(None),
        other => other.map(Some),
    }
}

/// A topic's publisher, awaited: a [`Publisher`] whose waits (on a Block
/// topic, for the slowest subscriber) park the task instead of the thread.
///
/// Every send is cancel-safe: a future dropped before it completes has
/// published nothing and holds no grant. It is also a
/// [`Sink`](futures_sink::Sink) of byte messages, which keeps at most one
/// message that did not fit until there is room.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncPublisher, AsyncSubscriber};
///
/// let name = format!("doc-async-topic-{}", std::process::id());
/// let mut subscriber = AsyncSubscriber::open(&name)?;
/// let mut publisher = AsyncPublisher::open(&name)?; // usually another process
/// publisher.send(b"frame 0").await?;
/// let mut buf = [0u8; 64];
/// let got = subscriber.recv(&mut buf).await?;
/// assert_eq!((&buf[..got.len], got.sequence), (&b"frame 0"[..], 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncPublisher {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    /// A sink's message that did not fit when it was started.
    pending: Option<Vec<u8>>,
    publisher: Publisher,
}

impl From<Publisher> for AsyncPublisher {
    fn from(publisher: Publisher) -> AsyncPublisher {
        AsyncPublisher {
            park: Park::default(),
            pending: None,
            publisher,
        }
    }
}

impl AsyncPublisher {
    /// [`Publisher::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Publisher::open`].
    pub fn open(name: &str) -> Result<AsyncPublisher> {
        Publisher::open(name).map(AsyncPublisher::from)
    }

    /// [`Publisher::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Publisher::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncPublisher> {
        Publisher::open_with(name, options).map(AsyncPublisher::from)
    }

    /// The blocking publisher inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut Publisher {
        self.park.reset();
        &mut self.publisher
    }

    /// The blocking publisher inside (a sink's unsent message is dropped).
    pub fn into_inner(mut self) -> Publisher {
        self.park.reset();
        self.publisher
    }

    /// `Ready(Ok(()))` once a message of `len` bytes fits (at once on a
    /// drop-oldest topic), with the task's waker parked until then.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`]; [`Error::Corrupt`] for a damaged lane.
    pub fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<()>> {
        self.park
            .poll_ready(cx, &mut Room(&mut self.publisher, len))
    }

    /// [`Publisher::send`], awaited. Cancel-safe: the message is written and
    /// committed in the poll that completes the future, or not at all.
    ///
    /// # Errors
    ///
    /// As [`Publisher::send`].
    pub fn send<'a>(&'a mut self, message: &'a [u8]) -> impl Future<Output = Result<()>> + 'a {
        Send {
            endpoint: self,
            message,
        }
    }

    /// The rest of [`Send`]'s poll after its quick look found no room:
    /// the wait, then the send in the same poll.
    #[inline(never)]
    fn poll_send(&mut self, cx: &mut Context<'_>, message: &[u8]) -> Poll<Result<()>> {
        let room = &mut Room(&mut self.publisher, message.len());
        let slot = std::task::ready!(self.park.poll_act(cx, room, |r| r.0.reserve_now(r.1)))?;
        Poll::Ready(self.publisher.send_at(slot, message))
    }

    /// [`Publisher::grant`], awaited. Cancel-safe: the grant exists only
    /// once the future completed; dropping it uncommitted publishes nothing.
    ///
    /// # Errors
    ///
    /// As [`Publisher::grant`].
    pub async fn grant(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        let AsyncPublisher {
            park, publisher, ..
        } = self;
        let slot =
            poll_fn(|cx| park.poll_act(cx, &mut Room(publisher, len), |r| r.0.reserve_now(r.1)))
                .await?;
        Ok(self.publisher.grant_at(slot))
    }
}

impl<M: AsRef<[u8]>> Outgoing<M> for AsyncPublisher {
    type Kept = Vec<u8>;

    fn kept(&mut self) -> &mut Option<Vec<u8>> {
        &mut self.pending
    }

    #[inline]
    fn send_now(&mut self, message: &M) -> Result<bool> {
        let message = message.as_ref();
        let Some(slot) = self.publisher.reserve_now(message.len())? else {
            return Ok(false);
        };
        self.publisher.send_at(slot, message).map(|()| true)
    }

    fn keep(message: M) -> Vec<u8> {
        message.as_ref().to_vec()
    }

    fn poll_send_kept(&mut self, cx: &mut Context<'_>, kept: &Vec<u8>) -> Poll<Result<()>> {
        let room = &mut Room(&mut self.publisher, kept.len());
        let slot = std::task::ready!(self.park.poll_act(cx, room, |r| r.0.reserve_now(r.1)))?;
        Poll::Ready(self.publisher.send_at(slot, kept))
    }
}

sink_by_outgoing!(impl [M: AsRef<[u8]>] Sink<M> for AsyncPublisher);

/// A topic's subscriber, awaited: a [`Subscriber`] whose waits park the
/// task instead of the thread.
///
/// Every receive is cancel-safe: a future dropped before it completes has
/// taken nothing. It is also a [`Stream`](futures_core::Stream) of
/// `(Received, bytes)`, which ends once every publisher that opened the
/// topic closed and everything was received.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncPublisher, AsyncSubscriber};
/// use futures_util::StreamExt;
///
/// let name = format!("doc-async-subscriber-{}", std::process::id());
/// let mut subscriber = AsyncSubscriber::open(&name)?;
/// let mut publisher = AsyncPublisher::open(&name)?;
/// publisher.send(b"one").await?;
/// publisher.send(b"two").await?;
/// drop(publisher);
/// let bytes: Vec<Vec<u8>> = subscriber.map(|m| m.unwrap().1).collect().await;
/// assert_eq!(bytes, [b"one".to_vec(), b"two".to_vec()]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncSubscriber {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    ended: bool,
    /// Room for the largest message, for `recv_vec` and the stream.
    scratch: Vec<u8>,
    subscriber: Subscriber,
}

impl From<Subscriber> for AsyncSubscriber {
    fn from(subscriber: Subscriber) -> AsyncSubscriber {
        AsyncSubscriber {
            park: Park::default(),
            ended: false,
            scratch: Vec::new(),
            subscriber,
        }
    }
}

impl AsyncSubscriber {
    /// [`Subscriber::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Subscriber::open`].
    pub fn open(name: &str) -> Result<AsyncSubscriber> {
        Subscriber::open(name).map(AsyncSubscriber::from)
    }

    /// [`Subscriber::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Subscriber::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncSubscriber> {
        Subscriber::open_with(name, options).map(AsyncSubscriber::from)
    }

    /// The blocking subscriber inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut Subscriber {
        self.park.reset();
        &mut self.subscriber
    }

    /// The blocking subscriber inside.
    pub fn into_inner(mut self) -> Subscriber {
        self.park.reset();
        self.subscriber
    }

    /// `Ready(Ok(()))` once a message is there, with the task's waker
    /// parked until then; the errors of [`recv`](AsyncSubscriber::recv)
    /// once the stream is over or a lag is to be reported.
    ///
    /// # Errors
    ///
    /// [`Error::Lagged`] (the next call goes on), [`Error::Closed`],
    /// [`Error::PeerGone`], [`Error::Corrupt`].
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.park.poll_ready(cx, &mut Message(&mut self.subscriber))
    }

    /// [`Subscriber::recv`], awaited. Cancel-safe: the message is taken only
    /// in the poll that completes the future.
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv`].
    pub fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = Result<Received>> + 'a {
        Recv {
            endpoint: self,
            buf,
        }
    }

    /// The rest of [`Recv`]'s poll after its quick look found nothing.
    #[inline(never)]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<Received>> {
        let AsyncSubscriber {
            park, subscriber, ..
        } = self;
        park.poll_act(cx, &mut Message(subscriber), |m| recv_now(m.0, buf))
    }

    /// [`recv`](AsyncSubscriber::recv) into `buf`, replacing its contents
    /// and growing it to fit.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncSubscriber::recv), never [`Error::TooLarge`].
    pub async fn recv_vec(&mut self, buf: &mut Vec<u8>) -> Result<Received> {
        poll_fn(|cx| self.poll_vec(cx, buf)).await
    }

    fn poll_vec(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<Result<Received>> {
        // Copied through the subscriber's own copy, never a slice over the
        // lane (rule 1 of docs/ARCHITECTURE.md's shared-memory rules).
        if self.scratch.len() < self.subscriber.max_message() {
            self.scratch = vec![0; self.subscriber.max_message()];
        }
        let AsyncSubscriber {
            park,
            subscriber,
            scratch,
            ..
        } = self;
        let got = park.poll_act(cx, &mut Message(subscriber), |m| recv_now(m.0, scratch));
        let received = std::task::ready!(got)?;
        buf.clear();
        buf.extend_from_slice(&scratch[..received.len]);
        Poll::Ready(Ok(received))
    }
}

// The copying verbs' futures are written by hand, as the ring's are (see
// `aio/ring.rs`): the common case (a message in the current lane, room as
// last seen) is the blocking member's own first look, behind the park's
// one byte (`Park::quick`), inlined into the caller; the rest out of line.

/// [`AsyncPublisher::send`] of `message`.
struct Send<'a> {
    endpoint: &'a mut AsyncPublisher,
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
        let len = message.len();
        // `send_at` checks the fault flag after its copy, as `send` does.
        match this.park.quick(|| this.publisher.room_to_fill_now(len)) {
            Some(slot) => match this.publisher.send_at(slot, message) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(err) => Poll::Ready(Err(err)),
            },
            None => this.poll_send(cx, message),
        }
    }
}

/// [`AsyncSubscriber::recv`], into `buf`.
struct Recv<'a> {
    endpoint: &'a mut AsyncSubscriber,
    buf: &'a mut [u8],
}

impl Future for Recv<'_> {
    type Output = Result<Received>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Recv {
            endpoint: this,
            buf,
        } = &mut *self;
        if let Some(found) = this.park.quick(|| this.subscriber.message_now()) {
            match this.subscriber.recv_at(found, buf) {
                Ok(Some(received)) => return Poll::Ready(Ok(received)),
                // Overwritten meanwhile: the wait's looks go on.
                Ok(None) => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        this.poll_recv(cx, buf)
    }
}

impl futures_core::Stream for AsyncSubscriber {
    /// A message with what the topic says of it, or an error:
    /// [`Error::Lagged`] (the stream goes on), [`Error::PeerGone`] (the
    /// last item when a publisher died). Ends once every publisher that
    /// opened the topic closed and everything was received.
    type Item = Result<(Received, Vec<u8>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut buf = Vec::new();
        let outcome = std::task::ready!(this.poll_vec(cx, &mut buf)).map(|got| (got, buf));
        Poll::Ready(end_of_stream(&mut this.ended, outcome))
    }
}

/// A typed topic's publisher, awaited: a
/// [`channel::Publisher`](crate::channel::Publisher) whose waits park the
/// task instead of the thread.
///
/// [`send`](AsyncTypedPublisher::send) is cancel-safe: a future dropped
/// before it completes has published nothing. It is also a
/// [`Sink`](futures_sink::Sink) of values, which keeps at most one value
/// that did not fit until there is room.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncTypedPublisher, AsyncTypedSubscriber};
///
/// let name = format!("doc-async-typed-topic-{}", std::process::id());
/// let mut subscriber = AsyncTypedSubscriber::<(String, u32)>::open(&name)?;
/// let mut publisher = AsyncTypedPublisher::<(String, u32)>::open(&name)?;
/// publisher.send(&("ABC".to_owned(), 101)).await?;
/// let (received, quote) = subscriber.recv().await?;
/// assert_eq!((received.sequence, quote), (0, ("ABC".to_owned(), 101)));
/// # Ok(())
/// # }
/// ```
pub struct AsyncTypedPublisher<T, C = Postcard> {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    /// A sink's value that did not fit when it was started.
    pending: Option<T>,
    publisher: channel::Publisher<T, C>,
}

impl<T, C: Codec<T>> From<channel::Publisher<T, C>> for AsyncTypedPublisher<T, C> {
    fn from(publisher: channel::Publisher<T, C>) -> AsyncTypedPublisher<T, C> {
        AsyncTypedPublisher {
            park: Park::default(),
            pending: None,
            publisher,
        }
    }
}

impl<T, C: Codec<T>> AsyncTypedPublisher<T, C> {
    /// [`channel::Publisher::open`](crate::channel::Publisher::open), awaited.
    ///
    /// # Errors
    ///
    /// As [`channel::Publisher::open`](crate::channel::Publisher::open).
    pub fn open(name: &str) -> Result<AsyncTypedPublisher<T, C>> {
        channel::Publisher::open(name).map(AsyncTypedPublisher::from)
    }

    /// [`channel::Publisher::open_with`](crate::channel::Publisher::open_with),
    /// awaited.
    ///
    /// # Errors
    ///
    /// As [`channel::Publisher::open_with`](crate::channel::Publisher::open_with).
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncTypedPublisher<T, C>> {
        channel::Publisher::open_with(name, options).map(AsyncTypedPublisher::from)
    }

    /// The blocking publisher inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut channel::Publisher<T, C> {
        self.park.reset();
        &mut self.publisher
    }

    /// The blocking publisher inside (a sink's unsent value is dropped).
    pub fn into_inner(mut self) -> channel::Publisher<T, C> {
        self.park.reset();
        self.publisher
    }

    /// Waits until a message of `len` bytes (a value's, `message_len`)
    /// fits. Cancel-safe.
    fn poll_room_of(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<()>> {
        self.park
            .poll_ready(cx, &mut Room(self.publisher.publisher_mut(), len))
    }

    /// [`channel::Publisher::send`](crate::channel::Publisher::send),
    /// awaited. Cancel-safe: the value is encoded and committed in the poll
    /// that completes the future, or not at all.
    ///
    /// # Errors
    ///
    /// As [`channel::Publisher::send`](crate::channel::Publisher::send).
    pub async fn send(&mut self, value: &T) -> Result<()> {
        // Encoded once for its length, at the first wait: nothing is sent
        // meanwhile, so every try's message is as long (not once a poll,
        // then again for the next try).
        let mut len = None;
        loop {
            match self.publisher.try_send(value) {
                Err(Error::Full { .. }) => {}
                other => return other,
            }
            let len = match len {
                Some(len) => len,
                None => *len.insert(self.publisher.message_len(value)?),
            };
            poll_fn(|cx| self.poll_room_of(cx, len)).await?;
        }
    }
}

impl<T, C: Codec<T>> Outgoing<T> for AsyncTypedPublisher<T, C> {
    type Kept = T;

    fn kept(&mut self) -> &mut Option<T> {
        &mut self.pending
    }

    fn send_now(&mut self, value: &T) -> Result<bool> {
        match self.publisher.try_send(value) {
            Err(Error::Full { .. }) => Ok(false),
            other => other.map(|()| true),
        }
    }

    fn keep(value: T) -> T {
        value
    }

    fn poll_send_kept(&mut self, cx: &mut Context<'_>, value: &T) -> Poll<Result<()>> {
        let len = self.publisher.message_len(value)?;
        loop {
            std::task::ready!(self.poll_room_of(cx, len))?;
            if self.send_now(value)? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

sink_by_outgoing!(impl [T, C: Codec<T>] Sink<T> for AsyncTypedPublisher<T, C>);

// Movable whatever `T` is: nothing points into it.
impl<T, C> Unpin for AsyncTypedPublisher<T, C> {}

impl<T, C> std::fmt::Debug for AsyncTypedPublisher<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTypedPublisher")
            .field("publisher", &self.publisher)
            .finish_non_exhaustive()
    }
}

/// A typed topic's subscriber, awaited: a
/// [`channel::Subscriber`](crate::channel::Subscriber) whose waits park the
/// task instead of the thread.
///
/// [`recv`](AsyncTypedSubscriber::recv) is cancel-safe: a future dropped
/// before it completes has taken nothing. With a codec that yields owned
/// values it is also a [`Stream`](futures_core::Stream) of
/// `(Received, T)`, which ends once every publisher closed and everything
/// was received. See [`AsyncTypedPublisher`] for an example.
pub struct AsyncTypedSubscriber<T, C = Postcard> {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    ended: bool,
    subscriber: channel::Subscriber<T, C>,
}

impl<T, C: Codec<T>> From<channel::Subscriber<T, C>> for AsyncTypedSubscriber<T, C> {
    fn from(subscriber: channel::Subscriber<T, C>) -> AsyncTypedSubscriber<T, C> {
        AsyncTypedSubscriber {
            park: Park::default(),
            ended: false,
            subscriber,
        }
    }
}

impl<T, C: Codec<T>> AsyncTypedSubscriber<T, C> {
    /// [`channel::Subscriber::open`](crate::channel::Subscriber::open), awaited.
    ///
    /// # Errors
    ///
    /// As [`channel::Subscriber::open`](crate::channel::Subscriber::open).
    pub fn open(name: &str) -> Result<AsyncTypedSubscriber<T, C>> {
        channel::Subscriber::open(name).map(AsyncTypedSubscriber::from)
    }

    /// [`channel::Subscriber::open_with`](crate::channel::Subscriber::open_with),
    /// awaited.
    ///
    /// # Errors
    ///
    /// As [`channel::Subscriber::open_with`](crate::channel::Subscriber::open_with).
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncTypedSubscriber<T, C>> {
        channel::Subscriber::open_with(name, options).map(AsyncTypedSubscriber::from)
    }

    /// The blocking subscriber inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut channel::Subscriber<T, C> {
        self.park.reset();
        &mut self.subscriber
    }

    /// The blocking subscriber inside.
    pub fn into_inner(mut self) -> channel::Subscriber<T, C> {
        self.park.reset();
        self.subscriber
    }

    /// `Ready(Ok(()))` once a message is there; the ending errors once the
    /// stream is over or a lag is to be reported.
    ///
    /// # Errors
    ///
    /// As [`AsyncSubscriber::poll_message`].
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.park
            .poll_ready(cx, &mut Message(self.subscriber.subscriber_mut()))
    }

    /// [`channel::Subscriber::recv`](crate::channel::Subscriber::recv),
    /// awaited. Cancel-safe: the message is taken only in the poll that
    /// completes the future.
    ///
    /// # Errors
    ///
    /// As [`channel::Subscriber::recv`](crate::channel::Subscriber::recv).
    pub async fn recv(&mut self) -> Result<(Received, C::Value<'_>)> {
        let copied = poll_fn(|cx| self.poll_copied(cx)).await?;
        self.subscriber.decode_copied(copied)
    }

    /// The next message copied out, waited for: what the wait's last look
    /// finds is copied in the same poll (no second look, as `try_recv`
    /// would make), and decoded by the caller.
    fn poll_copied(&mut self, cx: &mut Context<'_>) -> Poll<Result<Copied>> {
        let (subscriber, mut copier) = self.subscriber.copier();
        self.park
            .poll_act(cx, &mut Message(subscriber), |m| copier.copy_next_now(m.0))
    }
}

impl<T: 'static, C> futures_core::Stream for AsyncTypedSubscriber<T, C>
where
    C: for<'a> Codec<T, Value<'a> = T>,
{
    /// A value with what the topic says of it, or an error:
    /// [`Error::Lagged`], [`Error::WrongType`] and [`Error::Corrupt`] (the
    /// stream goes on), [`Error::PeerGone`] (the last item when a
    /// publisher died).
    type Item = Result<(Received, T)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let outcome = std::task::ready!(this.poll_copied(cx))
            .and_then(|copied| this.subscriber.decode_copied(copied));
        Poll::Ready(end_of_stream(&mut this.ended, outcome))
    }
}

// Movable whatever `T` is: nothing points into it.
impl<T, C> Unpin for AsyncTypedSubscriber<T, C> {}

impl<T, C> std::fmt::Debug for AsyncTypedSubscriber<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTypedSubscriber")
            .field("subscriber", &self.subscriber)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adaptive_async_subscriber_spins_for_what_its_own_wake_ups_cost() {
        let name = format!("aio-topic-wake-cost-{}", std::process::id());
        let _removal = crate::aio::removal::Removal::new(crate::topic::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let mut subscriber = AsyncSubscriber::open(&name).expect("a subscriber");
        let mut publisher = Publisher::open(&name).expect("a publisher");
        let untaught = subscriber.subscriber.waiter().spin_time();
        let mut buf = [0u8; 8];
        // A round whose thread was preempted between the wake-up call and
        // the next poll gives a sample too long to learn from: a few rounds.
        for _round in 0..20 {
            runtime.block_on(async {
                // A wait that parks, then is cancelled: its registration
                // stays with the subscriber, and the next receive takes it
                // over.
                tokio::select! {
                    got = subscriber.recv(&mut buf) => panic!("nothing was sent: {got:?}"),
                    () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                }
                let (_, word) = subscriber.subscriber.sleep_line();
                assert_eq!(word.load(crate::sync::Ordering::SeqCst), 1, "it parked");
                // Wakes the parked subscriber (its word says one sleeps).
                publisher.send(b"wake").expect("sent");
                let got = subscriber.recv(&mut buf).await.expect("received");
                assert_eq!(&buf[..got.len], b"wake");
            });
            if subscriber.subscriber.waiter().spin_time() != untaught {
                return;
            }
        }
        panic!("the wake-up's cost was not learned in 20 rounds");
    }

    #[test]
    fn an_async_receive_into_a_short_buffer_leaves_the_message_for_the_next() {
        let name = format!("aio-topic-short-{}", std::process::id());
        let _removal = crate::aio::removal::Removal::new(crate::topic::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut subscriber = AsyncSubscriber::open(&name).expect("a subscriber");
            let mut publisher = AsyncPublisher::open(&name).expect("a publisher");
            publisher.send(b"sixteen bytes ok").await.expect("sent");
            let mut short = [0u8; 8];
            let refused = subscriber.recv(&mut short).await;
            assert!(
                matches!(refused, Err(Error::TooLarge { .. })),
                "{refused:?}"
            );
            let mut buf = [0u8; 16];
            let got = subscriber.recv(&mut buf).await.expect("the same message");
            assert_eq!(
                (got.sequence, &buf[..got.len]),
                (0, &b"sixteen bytes ok"[..])
            );
        });
    }

    #[test]
    fn an_async_subscriber_lapped_on_a_drop_oldest_topic_receives_as_a_blocking_one() {
        let name = format!("aio-topic-lapped-{}", std::process::id());
        let _removal = crate::aio::removal::Removal::new(crate::topic::SEGMENT_PREFIX, &name);
        let options = Options::default()
            .policy(crate::topic::Policy::DropOldest)
            .capacity(4096);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut blocking = Subscriber::open_with(&name, &options).expect("a subscriber");
        let mut awaited = AsyncSubscriber::open_with(&name, &options).expect("a subscriber");
        let mut publisher = Publisher::open_with(&name, &options).expect("a publisher");
        // Several laps of the lane: both subscribers fell behind alike.
        for n in 0..200u64 {
            publisher.send(&n.to_le_bytes().repeat(8)).expect("sent");
        }
        let outcome = |got: Result<Received>, buf: &[u8]| match got {
            Ok(got) => Ok((got.sequence, buf[..got.len].to_vec())),
            Err(err) => Err(err.to_string()),
        };
        let mut buf = [0u8; 64];
        let mut expected = Vec::new();
        loop {
            match blocking.try_recv(&mut buf) {
                Err(Error::Empty { .. }) => break,
                got => expected.push(outcome(got, &buf)),
            }
        }
        assert!(expected.iter().any(Result::is_err), "a lag: {expected:?}");
        assert!(
            expected.iter().any(Result::is_ok),
            "then messages: {expected:?}"
        );
        let got: Vec<_> = runtime.block_on(async {
            let mut got = Vec::new();
            for _ in 0..expected.len() {
                let received = awaited.recv(&mut buf).await;
                got.push(outcome(received, &buf));
            }
            got
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn a_typed_subscriber_decodes_what_its_wait_copied_and_goes_on_past_another_type() {
        use futures_util::StreamExt;

        let name = format!("aio-typed-copied-{}", std::process::id());
        let _removal = crate::aio::removal::Removal::new(crate::topic::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut subscriber = AsyncTypedSubscriber::<u32>::open(&name).expect("a subscriber");
            let mut wrong = channel::Publisher::<String>::open(&name).expect("a publisher");
            let mut right = channel::Publisher::<u32>::open(&name).expect("a publisher");
            wrong.send(&"seven".to_owned()).expect("sent");
            right.send(&7).expect("sent");
            let refused = subscriber.recv().await.map(|(_, n)| n);
            assert!(
                matches!(refused, Err(Error::WrongType { .. })),
                "{refused:?}"
            );
            assert_eq!(subscriber.recv().await.expect("the next value").1, 7);
            // The stream too: then it ends once both publishers closed.
            wrong.send(&"eight".to_owned()).expect("sent");
            right.send(&8).expect("sent");
            drop((wrong, right));
            let items: Vec<Result<u32>> =
                subscriber.map(|item| item.map(|(_, n)| n)).collect().await;
            assert!(
                matches!(items[0], Err(Error::WrongType { .. })),
                "{items:?}"
            );
            assert!(matches!(items[1..], [Ok(8)]), "{items:?}");
        });
    }
}
