//! Typed topics: a [`topic`](crate::topic) whose messages are values of one
//! type `T` encoded by one [`Codec`] `C`, framed on the wire exactly as a
//! channel's messages are (an 8-byte type tag, the type's name on each
//! publisher's first message, then the codec's body; `docs/FORMAT.md`,
//! "Typed channel messages").
//!
//! [`Publisher<T, C>`] encodes each value straight into its lane;
//! [`Subscriber<T, C>`] copies each message into a private buffer before it
//! checks the tag and decodes (a publisher is another process, and may
//! rewrite its bytes meanwhile), and says which publisher sent it and that
//! publisher's sequence number ([`Received`]). A message of another type or
//! codec is [`Error::WrongType`], naming both types, and consumed; a lossy
//! topic's [`Error::Lagged`] and the ends of the stream
//! ([`Error::Closed`], [`Error::PeerGone`]) come through as the untyped
//! subscriber's.

use std::marker::PhantomData;
use std::time::Duration;

use super::wire::{self, Expected, Outgoing, TAG_LEN};
use super::{Codec, Patience, Postcard, Writer};
use crate::error::{Error, Result};
use crate::topic::{self, Options, Received};

#[cfg(feature = "tokio")]
mod parking;

/// The publishing end of a typed topic of `T`s encoded by `C` ([`Postcard`]
/// unless named). Dropping it closes its stream: subscribers receive every
/// value it sent.
///
/// # Example
///
/// ```
/// use shmkit::channel::{Publisher, Subscriber};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Quote {
///     symbol: String,
///     price: u64,
/// }
///
/// let name = format!("doc-typed-topic-{}", std::process::id());
/// let mut first = Subscriber::<Quote>::open(&name)?;
/// let mut second = Subscriber::<Quote>::open(&name)?; // usually other processes
/// let mut feed = Publisher::<Quote>::open(&name)?;
/// feed.send(&Quote { symbol: "ABC".into(), price: 101 })?;
/// for subscriber in [&mut first, &mut second] {
///     let (received, quote) = subscriber.recv()?;
///     assert_eq!(quote, Quote { symbol: "ABC".into(), price: 101 });
///     assert_eq!((received.publisher, received.sequence), (feed.id(), 0));
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Publisher<T, C = Postcard> {
    publisher: topic::Publisher,
    codec: C,
    outgoing: Outgoing,
    _values: PhantomData<fn(&T)>,
}

impl<T, C: Codec<T>> Publisher<T, C> {
    /// Opens (or creates) topic `name` as a new publisher of `T`s, with
    /// default topic [`Options`].
    ///
    /// # Errors
    ///
    /// As [`topic::Publisher::open`]: [`Error::TopicFull`],
    /// [`Error::InvalidArgument`] for a bad name, ….
    ///
    /// ```
    /// # use shmkit::channel::Publisher;
    /// # let name = format!("doc-typed-publisher-open-{}", std::process::id());
    /// let publisher = Publisher::<String>::open(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Publisher<T, C>> {
        Publisher::open_with(name, &Options::default())
    }

    /// Opens (or creates) topic `name` as a new publisher; `options` make
    /// the topic if this call creates it, must match an existing one's
    /// where given ([`Error::OptionMismatch`](crate::Error::OptionMismatch),
    /// as [`topic::Publisher::open_with`]), and say how this end waits.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::{Plain, Publisher};
    /// use shmkit::topic::{Options, Policy};
    ///
    /// let name = format!("doc-typed-publisher-open-with-{}", std::process::id());
    /// let options = Options::default().capacity(1 << 16).policy(Policy::DropOldest);
    /// let publisher = Publisher::<[f32; 3], Plain>::open_with(&name, &options)?;
    /// assert_eq!(publisher.max_message(), (1 << 15) - 32 - 8);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<Publisher<T, C>> {
        Publisher::open_with_codec(name, options, C::default())
    }

    /// Opens (or creates) topic `name` as a new publisher, encoding with
    /// `codec` (for a codec with settings of its own).
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::{Postcard, Publisher};
    /// use shmkit::topic::Options;
    ///
    /// let name = format!("doc-typed-publisher-codec-{}", std::process::id());
    /// let publisher = Publisher::<u64, _>::open_with_codec(&name, &Options::default(), Postcard)?;
    /// assert_eq!(publisher.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with_codec(name: &str, options: &Options, codec: C) -> Result<Publisher<T, C>> {
        Ok(Publisher {
            publisher: topic::Publisher::open_with(name, options)?,
            codec,
            outgoing: Outgoing::of::<T, C>(),
            _values: PhantomData,
        })
    }

    /// Publishes one value, waiting (Block topics) while a subscriber has
    /// not read the space it needs.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if its encoding is longer than
    /// [`max_message`](Publisher::max_message) (with both numbers);
    /// [`Error::InvalidArgument`] if the codec cannot encode it.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Publisher, Subscriber};
    /// # let name = format!("doc-typed-publisher-send-{}", std::process::id());
    /// # let mut subscriber = Subscriber::<Vec<u16>>::open(&name)?;
    /// let mut publisher = Publisher::<Vec<u16>>::open(&name)?;
    /// publisher.send(&vec![80, 443])?;
    /// # assert_eq!(subscriber.recv()?.1, [80, 443]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.send_with(value, Patience::Wait)
    }

    /// Publishes one value if there is room now, else [`Error::Full`] (and
    /// nothing is published).
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Publisher, Subscriber};
    /// # let name = format!("doc-typed-publisher-try-send-{}", std::process::id());
    /// # let mut subscriber = Subscriber::<u32>::open(&name)?;
    /// let mut publisher = Publisher::<u32>::open(&name)?;
    /// publisher.try_send(&7)?;
    /// # assert_eq!(subscriber.recv()?.1, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send(&mut self, value: &T) -> Result<()> {
        self.send_with(value, Patience::Now)
    }

    /// Publishes one value, waiting at most `timeout` for room
    /// ([`Error::Timeout`] after that, and nothing is published).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::channel::{Publisher, Subscriber};
    /// # let name = format!("doc-typed-publisher-send-timeout-{}", std::process::id());
    /// # let mut subscriber = Subscriber::<u32>::open(&name)?;
    /// let mut publisher = Publisher::<u32>::open(&name)?;
    /// publisher.send_timeout(&7, Duration::from_secs(1))?;
    /// # assert_eq!(subscriber.recv()?.1, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.send_with(value, Patience::Timeout(timeout))
    }

    /// The length of `value`'s encoding: it can be published if this is at
    /// most [`max_message`](Publisher::max_message).
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::Publisher;
    /// # let name = format!("doc-typed-publisher-encoded-len-{}", std::process::id());
    /// let mut publisher = Publisher::<String>::open(&name)?;
    /// assert_eq!(publisher.encoded_len(&"four".to_owned())?, 5); // a 1-byte length, 4 bytes
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn encoded_len(&mut self, value: &T) -> Result<usize> {
        self.outgoing.encoded_len(&mut self.codec, value)
    }

    fn send_with(&mut self, value: &T, patience: Patience) -> Result<()> {
        let (body, named, len) =
            self.outgoing
                .frame(&mut self.codec, value, self.publisher.max_message())?;
        let mut grant = match patience {
            Patience::Wait => self.publisher.grant(len),
            Patience::Now => self.publisher.try_grant(len),
            Patience::Timeout(timeout) => self.publisher.grant_timeout(len, timeout),
        }?;
        // SAFETY: the grant's `len` bytes lie past the lane's committed
        // records, where only this publisher writes until it commits (rules
        // 1 and 3 of `topic::lane`), and the writer is gone by then.
        let mut out = unsafe { Writer::from_raw_parts(grant.as_mut_ptr(), len) };
        // Dropping the grant on an error aborts it: subscribers see nothing.
        self.outgoing
            .encode(&mut self.codec, value, (body, named), &mut out, len)?;
        grant.commit();
        Ok(())
    }

    /// The topic's name.
    ///
    /// ```
    /// # use shmkit::channel::Publisher;
    /// # let name = format!("doc-typed-publisher-name-{}", std::process::id());
    /// let publisher = Publisher::<u8>::open(&name)?;
    /// assert_eq!(publisher.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.publisher.name()
    }

    /// This publisher's id, as subscribers see it in [`Received::publisher`].
    ///
    /// ```
    /// # use shmkit::channel::Publisher;
    /// # let name = format!("doc-typed-publisher-id-{}", std::process::id());
    /// let first = Publisher::<u8>::open(&name)?;
    /// let second = Publisher::<u8>::open(&name)?;
    /// assert_eq!(second.id(), first.id() + 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn id(&self) -> u64 {
        self.publisher.id()
    }

    /// The longest encoding of a value this topic carries: its largest
    /// message less the 8-byte type tag.
    ///
    /// ```
    /// # use shmkit::channel::Publisher;
    /// # let name = format!("doc-typed-publisher-max-{}", std::process::id());
    /// let publisher = Publisher::<Vec<u8>>::open(&name)?; // lanes of 256 KiB
    /// assert_eq!(publisher.max_message(), (1 << 17) - 32 - 8);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.publisher.max_message().saturating_sub(TAG_LEN)
    }

    /// Closes this publisher's stream; dropping it does the same.
    ///
    /// ```
    /// # use shmkit::channel::{Publisher, Subscriber};
    /// # let name = format!("doc-typed-publisher-close-{}", std::process::id());
    /// let mut subscriber = Subscriber::<u8>::open(&name)?;
    /// let mut publisher = Publisher::<u8>::open(&name)?;
    /// publisher.send(&1)?;
    /// publisher.close();
    /// assert_eq!(subscriber.recv()?.1, 1);
    /// assert!(matches!(subscriber.recv(), Err(shmkit::Error::Closed { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }
}

/// A message copied out of the lane into a typed subscriber's body, not
/// yet decoded: what the topic says of it, and its framing.
pub(crate) struct Copied {
    received: Received,
    framing: std::result::Result<wire::Framing, String>,
}

/// Copies the message `guard` holds into `body`, then checks the fault
/// flag: zeros of a file cut meanwhile are never decoded.
fn copy_out(guard: topic::ReadGuard<'_>, body: &mut rkyv::util::AlignedVec) -> Result<Copied> {
    let received = Received {
        len: guard.message_len(),
        publisher: guard.publisher(),
        sequence: guard.sequence(),
    };
    // SAFETY: the guard's message stays as committed until the guard
    // drops (a Block topic's publisher does not reuse it before; a
    // drop-oldest guard is the subscriber's own copy), after this.
    let framing = unsafe { wire::copy_framed(guard.as_ptr(), guard.message_len(), body) };
    guard.intact()?;
    Ok(Copied { received, framing })
}

/// The subscribing end of a typed topic of `T`s encoded by `C`
/// ([`Postcard`] unless named): receives every value of every publisher,
/// each publisher's in the order it sent them.
///
/// # Example: a value of another type
///
/// ```
/// use shmkit::channel::{Publisher, Subscriber};
/// use shmkit::Error;
///
/// let name = format!("doc-typed-subscriber-{}", std::process::id());
/// let mut subscriber = Subscriber::<u32>::open(&name)?;
/// let mut wrong = Publisher::<String>::open(&name)?;
/// let mut right = Publisher::<u32>::open(&name)?;
/// wrong.send(&"not a number".to_owned())?;
/// right.send(&7)?;
/// let mut got = Vec::new();
/// for _ in 0..2 {
///     match subscriber.recv() {
///         Ok((_, value)) => got.push(value),
///         Err(Error::WrongType { expected, found, .. }) => {
///             assert_eq!(expected, "postcard u32");
///             assert_eq!(found, "postcard alloc::string::String");
///         }
///         Err(other) => return Err(other),
///     }
/// }
/// assert_eq!(got, [7]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Subscriber<T, C = Postcard> {
    subscriber: topic::Subscriber,
    codec: C,
    expected: Expected,
    /// The private copy of the body being decoded (16-byte aligned; it
    /// keeps the capacity of the largest message so far).
    body: rkyv::util::AlignedVec,
    _values: PhantomData<fn() -> T>,
}

impl<T, C: Codec<T>> Subscriber<T, C> {
    /// Opens (or creates) topic `name` as a new subscriber of `T`s, with
    /// default topic [`Options`].
    ///
    /// # Errors
    ///
    /// As [`topic::Subscriber::open`].
    ///
    /// ```
    /// # use shmkit::channel::Subscriber;
    /// # let name = format!("doc-typed-subscriber-open-{}", std::process::id());
    /// let subscriber = Subscriber::<String>::open(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Subscriber<T, C>> {
        Subscriber::open_with(name, &Options::default())
    }

    /// Opens (or creates) topic `name` as a new subscriber; `options` make
    /// the topic if this call creates it, must match an existing one's
    /// where given ([`Error::OptionMismatch`](crate::Error::OptionMismatch),
    /// as [`topic::Subscriber::open_with`]), and say whether to start with
    /// its history and how to wait.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::{Publisher, Subscriber};
    /// use shmkit::topic::Options;
    ///
    /// let name = format!("doc-typed-subscriber-history-{}", std::process::id());
    /// let options = Options::default().history(2);
    /// let mut publisher = Publisher::<u8>::open_with(&name, &options)?;
    /// for n in 0..5 {
    ///     publisher.send(&n)?;
    /// }
    /// let mut late = Subscriber::<u8>::open_with(&name, &options)?; // joins late
    /// assert_eq!(late.recv()?.1, 3);
    /// assert_eq!(late.recv()?.1, 4);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<Subscriber<T, C>> {
        Subscriber::open_with_codec(name, options, C::default())
    }

    /// Opens (or creates) topic `name` as a new subscriber, decoding with
    /// `codec` (for a codec with settings of its own).
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::{Plain, Subscriber};
    /// use shmkit::topic::Options;
    ///
    /// let name = format!("doc-typed-subscriber-codec-{}", std::process::id());
    /// let subscriber = Subscriber::<u64, _>::open_with_codec(&name, &Options::default(), Plain)?;
    /// assert_eq!(subscriber.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with_codec(name: &str, options: &Options, codec: C) -> Result<Subscriber<T, C>> {
        Ok(Subscriber {
            subscriber: topic::Subscriber::open_with(name, options)?,
            codec,
            expected: Expected::of::<T, C>(),
            body: rkyv::util::AlignedVec::new(),
            _values: PhantomData,
        })
    }

    /// Receives the next value, waiting while there is none: who published
    /// it (its [`Received::len`] is the framed message's), and the value.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] for a message of another type or codec, and
    /// [`Error::Corrupt`] for one that does not decode (either is consumed;
    /// the next call gets the next message); as
    /// [`topic::Subscriber::recv`] otherwise: [`Error::Lagged`],
    /// [`Error::Closed`], [`Error::PeerGone`].
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Publisher, Subscriber};
    /// # let name = format!("doc-typed-subscriber-recv-{}", std::process::id());
    /// let mut subscriber = Subscriber::<(u8, String)>::open(&name)?;
    /// let mut publisher = Publisher::<(u8, String)>::open(&name)?;
    /// publisher.send(&(1, "one".to_owned()))?;
    /// let (received, value) = subscriber.recv()?;
    /// assert_eq!(value, (1, "one".to_owned()));
    /// assert_eq!((received.publisher, received.sequence), (publisher.id(), 0));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<(Received, C::Value<'_>)> {
        self.receive(Patience::Wait)
    }

    /// [`recv`](Subscriber::recv) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Publisher, Subscriber};
    /// # let name = format!("doc-typed-subscriber-try-recv-{}", std::process::id());
    /// let mut subscriber = Subscriber::<u32>::open(&name)?;
    /// assert!(matches!(subscriber.try_recv(), Err(shmkit::Error::Empty { .. })));
    /// let mut publisher = Publisher::<u32>::open(&name)?;
    /// publisher.send(&5)?;
    /// assert_eq!(subscriber.try_recv()?.1, 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<(Received, C::Value<'_>)> {
        self.receive(Patience::Now)
    }

    /// [`recv`](Subscriber::recv), waiting at most `timeout`
    /// ([`Error::Timeout`] after that).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::channel::Subscriber;
    /// # let name = format!("doc-typed-subscriber-recv-timeout-{}", std::process::id());
    /// let mut subscriber = Subscriber::<u32>::open(&name)?;
    /// let waited = subscriber.recv_timeout(Duration::from_millis(10));
    /// assert!(matches!(waited, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<(Received, C::Value<'_>)> {
        self.receive(Patience::Timeout(timeout))
    }

    fn receive(&mut self, patience: Patience) -> Result<(Received, C::Value<'_>)> {
        let guard = match patience {
            Patience::Wait => self.subscriber.read(),
            Patience::Now => self.subscriber.try_read(),
            Patience::Timeout(timeout) => self.subscriber.read_timeout(timeout),
        }?;
        let copied = copy_out(guard, &mut self.body)?;
        self.decode(copied)
    }

    /// The value of a message [`copy_out`] copied into the body.
    fn decode(&mut self, copied: Copied) -> Result<(Received, C::Value<'_>)> {
        let name = self.subscriber.name();
        let place = || format!("topic {name}");
        let framing = copied
            .framing
            .map_err(|why| Error::Corrupt(format!("{}: {why}", place())))?;
        self.expected.check(framing, place)?;
        let value = self.expected.decode(&mut self.codec, &self.body, place)?;
        Ok((copied.received, value))
    }

    /// The topic's name.
    ///
    /// ```
    /// # use shmkit::channel::Subscriber;
    /// # let name = format!("doc-typed-subscriber-name-{}", std::process::id());
    /// let subscriber = Subscriber::<u8>::open(&name)?;
    /// assert_eq!(subscriber.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.subscriber.name()
    }

    /// The longest encoding of a value this topic carries: its largest
    /// message less the 8-byte type tag.
    ///
    /// ```
    /// # use shmkit::channel::Subscriber;
    /// # use shmkit::topic::Options;
    /// # let name = format!("doc-typed-subscriber-max-{}", std::process::id());
    /// let subscriber = Subscriber::<u8>::open_with(&name, &Options::default().capacity(4096))?;
    /// assert_eq!(subscriber.max_message(), 2048 - 32 - 8);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.subscriber.max_message().saturating_sub(TAG_LEN)
    }
}

impl<T, C> std::fmt::Debug for Publisher<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.publisher.name())
            .field("type", &self.outgoing.tag.name)
            .finish_non_exhaustive()
    }
}

impl<T, C> std::fmt::Debug for Subscriber<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.subscriber.name())
            .field("type", &self.expected.tag.name)
            .finish_non_exhaustive()
    }
}
