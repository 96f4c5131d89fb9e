//! Async forms of the typed channels: [`AsyncSender`] and
//! [`AsyncReceiver`].

use std::pin::Pin;
use std::task::{Context, Poll};

use super::park::Park;
use super::ring::{end_of_stream, poll_message, poll_next_with, poll_room};
use super::sink::{sink_by_outgoing, Outgoing};
use crate::channel::{Codec, Postcard, Receiver, Sender};
use crate::error::{Error, Result};
use crate::ring::protocol::Slot;
use crate::ring::{Consumer, Options};

/// The sending end of a typed channel, awaited: a [`Sender`] whose waits
/// park the task instead of the thread.
///
/// [`send`](AsyncSender::send) is cancel-safe: a future dropped before it
/// completes has sent nothing. It is also a [`Sink`](futures_sink::Sink)
/// of values, which keeps at most one value that did not fit until there
/// is room.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncReceiver, AsyncSender};
///
/// let name = format!("doc-async-channel-{}", std::process::id());
/// let mut tx = AsyncSender::<(u32, String)>::open(&name)?;
/// let mut rx = AsyncReceiver::<(u32, String)>::open(&name)?; // usually another process
/// tx.send(&(7, "seven".to_owned())).await?;
/// drop(tx);
/// assert_eq!(rx.recv().await?, (7, "seven".to_owned()));
/// assert!(matches!(rx.recv().await, Err(shmkit::Error::Closed { .. })));
/// # Ok(())
/// # }
/// ```
pub struct AsyncSender<T, C = Postcard> {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    /// A sink's value that did not fit when it was started.
    pending: Option<T>,
    sender: Sender<T, C>,
}

impl<T, C: Codec<T>> From<Sender<T, C>> for AsyncSender<T, C> {
    fn from(sender: Sender<T, C>) -> AsyncSender<T, C> {
        AsyncSender {
            park: Park::default(),
            pending: None,
            sender,
        }
    }
}

impl<T, C: Codec<T>> AsyncSender<T, C> {
    /// [`Sender::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Sender::open`].
    pub fn open(name: &str) -> Result<AsyncSender<T, C>> {
        Sender::open(name).map(AsyncSender::from)
    }

    /// [`Sender::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Sender::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncSender<T, C>> {
        Sender::open_with(name, options).map(AsyncSender::from)
    }

    /// The blocking sender inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut Sender<T, C> {
        self.park.reset();
        &mut self.sender
    }

    /// The blocking sender inside (a sink's unsent value is dropped).
    pub fn into_inner(mut self) -> Sender<T, C> {
        self.park.reset();
        self.sender
    }

    /// Waits until a message of `len` bytes (a value's, `message_len`)
    /// fits. Cancel-safe.
    fn poll_room_of(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<()>> {
        poll_room(&mut self.park, cx, self.sender.producer_mut(), len)
    }

    /// [`Sender::send`], awaited. Cancel-safe: the value is encoded and
    /// committed in the poll that completes the future, or not at all.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub async fn send(&mut self, value: &T) -> Result<()> {
        // Encoded once for its length, at the first wait: nothing is sent
        // meanwhile, so every try's message is as long (not once a poll,
        // then again for the next try).
        let mut len = None;
        loop {
            match self.sender.try_send(value) {
                Err(Error::Full { .. }) => {}
                other => return other,
            }
            let len = match len {
                Some(len) => len,
                None => *len.insert(self.sender.message_len(value)?),
            };
            std::future::poll_fn(|cx| self.poll_room_of(cx, len)).await?;
        }
    }
}

impl<T, C: Codec<T>> Outgoing<T> for AsyncSender<T, C> {
    type Kept = T;

    fn kept(&mut self) -> &mut Option<T> {
        &mut self.pending
    }

    fn send_now(&mut self, value: &T) -> Result<bool> {
        match self.sender.try_send(value) {
            Err(Error::Full { .. }) => Ok(false),
            other => other.map(|()| true),
        }
    }

    fn keep(value: T) -> T {
        value
    }

    fn poll_send_kept(&mut self, cx: &mut Context<'_>, value: &T) -> Poll<Result<()>> {
        let len = self.sender.message_len(value)?;
        loop {
            std::task::ready!(self.poll_room_of(cx, len))?;
            if self.send_now(value)? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

sink_by_outgoing!(impl [T, C: Codec<T>] Sink<T> for AsyncSender<T, C>);

// The sender is movable whatever `T` is: nothing points into it.
impl<T, C> Unpin for AsyncSender<T, C> {}

impl<T, C> std::fmt::Debug for AsyncSender<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSender")
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// The receiving end of a typed channel, awaited: a [`Receiver`] whose
/// waits park the task instead of the thread.
///
/// [`recv`](AsyncReceiver::recv) is cancel-safe: a future dropped before
/// it completes has taken nothing. With a codec that yields owned values
/// ([`Postcard`], [`Plain`](crate::channel::Plain)) it is also a
/// [`Stream`](futures_core::Stream) of them, which ends after the sender
/// closed and everything was received.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncReceiver, AsyncSender};
/// use futures_util::StreamExt;
///
/// let name = format!("doc-async-receiver-{}", std::process::id());
/// let mut rx = AsyncReceiver::<u64>::open(&name)?;
/// let mut tx = AsyncSender::<u64>::open(&name)?; // usually another process
/// for n in 1..=3 {
///     tx.send(&n).await?;
/// }
/// drop(tx);
/// let all: Vec<u64> = rx.map(Result::unwrap).collect().await;
/// assert_eq!(all, [1, 2, 3]);
/// # Ok(())
/// # }
/// ```
pub struct AsyncReceiver<T, C = Postcard> {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    ended: bool,
    receiver: Receiver<T, C>,
}

impl<T, C: Codec<T>> From<Receiver<T, C>> for AsyncReceiver<T, C> {
    fn from(receiver: Receiver<T, C>) -> AsyncReceiver<T, C> {
        AsyncReceiver {
            park: Park::default(),
            ended: false,
            receiver,
        }
    }
}

impl<T, C: Codec<T>> AsyncReceiver<T, C> {
    /// [`Receiver::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Receiver::open`].
    pub fn open(name: &str) -> Result<AsyncReceiver<T, C>> {
        Receiver::open(name).map(AsyncReceiver::from)
    }

    /// [`Receiver::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Receiver::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncReceiver<T, C>> {
        Receiver::open_with(name, options).map(AsyncReceiver::from)
    }

    /// The blocking receiver inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut Receiver<T, C> {
        self.park.reset();
        &mut self.receiver
    }

    /// The blocking receiver inside.
    pub fn into_inner(mut self) -> Receiver<T, C> {
        self.park.reset();
        self.receiver
    }

    /// `Ready(Ok(()))` once a message is in the ring; the ending errors
    /// once the stream is over.
    ///
    /// # Errors
    ///
    /// As [`AsyncConsumer::poll_message`](super::AsyncConsumer::poll_message).
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        poll_message(&mut self.park, cx, self.receiver.consumer_mut())
    }

    /// [`Receiver::recv`], awaited. Cancel-safe: the message is taken only
    /// in the poll that completes the future.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub async fn recv(&mut self) -> Result<C::Value<'_>> {
        let slot = std::future::poll_fn(|cx| self.poll_next(cx)).await?;
        self.receiver.recv_at(slot)
    }

    /// The next message's place: found at once if it is there, else
    /// waited for. Takes nothing. Its quick look leaves the fault flag to
    /// the copy's check after it (`recv_at`), as the ring's `recv` does.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Slot>> {
        let look = Consumer::message_to_copy_now;
        poll_next_with(&mut self.park, cx, self.receiver.consumer_mut(), look)
    }
}

impl<T: 'static, C> futures_core::Stream for AsyncReceiver<T, C>
where
    C: for<'a> Codec<T, Value<'a> = T>,
{
    /// A value, or an error: [`Error::WrongType`] and [`Error::Corrupt`]
    /// for one message (the stream goes on), [`Error::PeerGone`] (the last
    /// item when the sender died). Ends after the sender closed and
    /// everything was received.
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let outcome =
            std::task::ready!(this.poll_next(cx)).and_then(|slot| this.receiver.recv_at(slot));
        Poll::Ready(end_of_stream(&mut this.ended, outcome))
    }
}

// Movable whatever `T` is: nothing points into it.
impl<T, C> Unpin for AsyncReceiver<T, C> {}

impl<T, C> std::fmt::Debug for AsyncReceiver<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncReceiver")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_send_that_waits_for_room_sends_its_value_once_there_is_some() {
        let name = format!("aio-typed-full-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let options = Options::default().capacity(4096);
            let mut rx = Receiver::<Vec<u8>>::open_with(&name, &options).expect("a receiver");
            let mut tx = AsyncSender::<Vec<u8>>::open_with(&name, &options).expect("a sender");
            let filler = vec![7u8; 300];
            let mut filled = 0;
            while tx.get_mut().try_send(&filler).is_ok() {
                filled += 1;
            }
            let last = vec![9u8; 300];
            // The send waits (the ring is full); the other branch, polled
            // once it does, makes room.
            let (sent, drained) = tokio::join!(tx.send(&last), async {
                tokio::task::yield_now().await;
                (0..filled)
                    .map(|_| rx.try_recv().expect("a filler"))
                    .all(|got| got == filler)
            });
            sent.expect("sent once there was room");
            assert!(drained, "every filler came back whole");
            assert_eq!(rx.try_recv().expect("the last value"), last);
        });
    }
}
