//! Typed channels: named endpoints that carry Rust values over a [`ring`].
//!
//! # Overview
//!
//! A channel is a ring (found by name, created by whichever end opens it
//! first, see [`ring`]) whose messages are values of one type `T`, encoded
//! by one [`Codec`] `C`. There is one sender type, [`Sender<T, C>`], and one
//! receiver type, [`Receiver<T, C>`]; the codec decides what a receive
//! yields and what it costs:
//!
//! | codec `C` | `T` is | a receive yields | costs on receipt |
//! |---|---|---|---|
//! | [`Postcard`] (the default) | `Serialize + DeserializeOwned` | an owned `T` | one copy, a postcard decode |
//! | [`Rkyv`] | rkyv `Archive + Serialize` | an [`ArchivedMessage`] (`&Archived<T>`) | one copy, a bytecheck validation |
//! | [`Plain`] | [`offset::Plain`](crate::offset::Plain) | an owned `T` | one copy of `size_of::<T>()` bytes |
//! | your own | whatever it says | [`Codec::Value`] | one copy, your decode |
//!
//! Every channel ends like its ring: after the sender is dropped (or
//! [`close`](Sender::close)d) the receiver gets every value sent, then
//! [`Error::Closed`]; if the sender's process dies, every value it
//! committed, then [`Error::PeerGone`]. Once both ends of a closed, drained
//! channel are dropped, its ring is removed.
//!
//! # Errors a program matches
//!
//! Sends return [`Error::Full`] (`try_send`), [`Error::Timeout`]
//! (`send_timeout`), [`Error::PeerGone`] (the receiver died while the ring
//! was full), and [`Error::TooLarge`] with the value's encoded size and the
//! channel's limit; [`Sender::encoded_len`] tells before sending.
//! Receives return [`Error::Empty`] (`try_recv`), [`Error::Timeout`]
//! (`recv_timeout`), [`Error::Closed`], [`Error::PeerGone`],
//! [`Error::WrongType`] (the sender sends another type or codec; both are
//! named) and [`Error::Corrupt`] (a message that does not decode). A
//! `WrongType` or `Corrupt` message is consumed; the next receive gets the
//! next one. Opening returns [`Error::InUse`] while a live process holds
//! that end.
//!
//! # Untrusted peers
//!
//! The ring's memory is shared with another process, which may be buggy or
//! hostile and may rewrite a message while the receiver looks at it. A check
//! made on shared bytes proves nothing about the bytes used a moment later
//! (time of check to time of use: a string validated as UTF-8 and then
//! copied into a `String` could be invalid by the time of the copy). So the
//! receiver first copies the committed message into a private buffer of its
//! own (16-byte aligned, reused from message to message), hands the ring
//! space back, and only then checks and decodes the copy. No other process
//! can write that buffer, so what was validated is what the caller sees.
//! That copy is the one memcpy of the [`Rkyv`] codec; it deserialises
//! nothing.
//!
//! Neither end ever forms a `&[u8]` or `&mut [u8]` over the ring's bytes:
//! the sender's codec writes through a [`Writer`] (a raw pointer into the
//! grant), and the receiver copies out through the grant's raw pointer.
//!
//! # Wire format
//!
//! Each message is one ring record: an 8-byte type tag, then the codec's
//! body. The tag is the 64-bit FNV-1a hash of
//! `shmkit.channel.v1 <codec> <type>`, where `<codec>` is [`Codec::NAME`]
//! and `<type>` is [`std::any::type_name`] of `T`, e.g.
//! `shmkit.channel.v1 postcard alloc::string::String`. The first message a
//! sender sends after it opens also carries that text, so that a receiver of
//! another type can name the sender's type in its [`Error::WrongType`]. The
//! bytes are drawn in `docs/FORMAT.md`.
//!
//! Tagging every message costs 8 bytes of ring space each, but needs no
//! state: a receiver may start or restart at any message, and a sender that
//! takes over after a crash needs no handshake. The tag catches a wrong type
//! or codec; it is not a schema check. Both ends must name the type by the
//! same path, so define message types in a crate both programs use; two
//! definitions of a type under one path that differ in their fields are not
//! noticed by the tag (postcard then usually fails to decode, and bytecheck
//! still guarantees that an rkyv receiver sees only valid values).
//!
//! # Example: three codecs
//!
//! ```
//! use shmkit::channel::{Plain, Receiver, Rkyv, Sender};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
//! struct Order {
//!     item: String,
//!     quantities: Vec<u32>,
//! }
//!
//! let order = Order { item: "tea".into(), quantities: vec![1, 2] };
//! let pid = std::process::id();
//!
//! // postcard (the default): any serde type, received as an owned value.
//! let name = format!("doc-channel-postcard-{pid}");
//! let mut tx = Sender::<Order>::open(&name)?;
//! let mut rx = Receiver::<Order>::open(&name)?; // usually another process
//! tx.send(&order)?;
//! tx.close();
//! assert_eq!(rx.recv()?, order);
//! assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
//!
//! // rkyv: an archive, validated, read in place.
//! let name = format!("doc-channel-rkyv-{pid}");
//! let mut tx = Sender::<Order, Rkyv>::open(&name)?;
//! let mut rx = Receiver::<Order, Rkyv>::open(&name)?;
//! tx.send(&order)?;
//! tx.close();
//! let archived = rx.recv()?;
//! assert_eq!(archived.item, "tea");
//! assert_eq!(archived.quantities.len(), 2);
//! assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
//!
//! // plain: a fixed-layout value's bytes, no encoding.
//! let name = format!("doc-channel-plain-{pid}");
//! let mut tx = Sender::<[u32; 4], Plain>::open(&name)?;
//! let mut rx = Receiver::<[u32; 4], Plain>::open(&name)?;
//! tx.send(&[1, 2, 3, 4])?;
//! tx.close();
//! assert_eq!(rx.recv()?, [1, 2, 3, 4]);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Typed topics
//!
//! [`Publisher<T, C>`] and [`Subscriber<T, C>`] carry values the same way
//! over a [`topic`](crate::topic) (many publishers, many subscribers), with
//! the same codecs, tags and errors, and each value received says which
//! publisher sent it and its sequence number.
//!
//! [`ring`]: crate::ring

mod codec;
#[cfg(feature = "tokio")]
mod parking;
mod service;
mod topic;
mod wire;

pub use codec::{ArchivedMessage, Codec, CodecError, Plain, Postcard, Rkyv, Writer};
pub use service::{ServiceClient, ServiceServer};
#[cfg(feature = "tokio")]
pub(crate) use topic::Copied;
pub use topic::{Publisher, Subscriber};

/// rkyv 0.8, re-exported: the [`Rkyv`] codec's bounds name its traits.
///
/// A program may depend on rkyv 0.8 itself (Cargo unifies the two), or
/// derive through this path without a dependency of its own:
///
/// ```
/// use shmkit::channel::{Receiver, Rkyv, Sender};
///
/// #[derive(shmkit::channel::rkyv::Archive, shmkit::channel::rkyv::Serialize)]
/// #[rkyv(crate = shmkit::channel::rkyv)]
/// struct Ping {
///     seq: u32,
/// }
///
/// let name = format!("doc-channel-rkyv-reexport-{}", std::process::id());
/// let mut tx = Sender::<Ping, Rkyv>::open(&name)?;
/// let mut rx = Receiver::<Ping, Rkyv>::open(&name)?;
/// tx.send(&Ping { seq: 1 })?;
/// tx.close();
/// assert_eq!(rx.recv()?.seq, 1);
/// assert!(rx.recv().is_err()); // Closed
/// # Ok::<(), shmkit::Error>(())
/// ```
pub use rkyv;

use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ring::{Consumer, Options, Producer, ReadGrant};
use wire::{Expected, Outgoing, TAG_LEN};

/// How long a send or receive may wait.
#[derive(Clone, Copy, Debug)]
enum Patience {
    /// Until it can go on (or the peer is gone).
    Wait,
    /// Not at all: `Full` or `Empty`.
    Now,
    /// At most this long, then `Timeout`.
    Timeout(Duration),
}

/// The sending end of a channel of `T`s encoded by `C` ([`Postcard`]
/// unless named): encodes each value straight into the ring.
///
/// Dropping it closes the channel: the receiver gets every value sent, then
/// [`Error::Closed`].
///
/// # Example
///
/// ```
/// use shmkit::channel::{Receiver, Sender};
///
/// let name = format!("doc-sender-{}", std::process::id());
/// let mut tx = Sender::<(String, Vec<u16>)>::open(&name)?;
/// let mut rx = Receiver::<(String, Vec<u16>)>::open(&name)?; // usually another process
/// tx.send(&("ports".to_owned(), vec![80, 443]))?;
/// tx.close();
/// assert_eq!(rx.recv()?, ("ports".to_owned(), vec![80, 443]));
/// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Sender<T, C = Postcard> {
    producer: Producer,
    codec: C,
    outgoing: Outgoing,
    _values: PhantomData<fn(&T)>,
}

impl<T, C: Codec<T>> Sender<T, C> {
    /// Opens (or creates) channel `name` as its sender, with default ring
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// As [`Producer::open`]: [`Error::InUse`] if a live process is the
    /// sender already, [`Error::InvalidArgument`] for a bad name, ….
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::Sender;
    ///
    /// let name = format!("doc-sender-open-{}", std::process::id());
    /// let tx = Sender::<u64>::open(&name)?;
    /// assert_eq!(tx.name(), name);
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Sender<T, C>> {
        Sender::open_with(name, &Options::default())
    }

    /// Opens (or creates) channel `name` as its sender; `options` size the
    /// ring if this call creates it, and say how this end waits.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::Sender;
    /// use shmkit::ring::Options;
    ///
    /// let name = format!("doc-sender-open-with-{}", std::process::id());
    /// let tx = Sender::<u64>::open_with(&name, &Options::default().capacity(1 << 16))?;
    /// assert_eq!(tx.max_message(), (1 << 15) - 16 - 8);
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<Sender<T, C>> {
        Sender::open_with_codec(name, options, C::default())
    }

    /// Opens (or creates) channel `name` as its sender, encoding with
    /// `codec` (for a codec with settings of its own).
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::{Postcard, Sender};
    /// use shmkit::ring::Options;
    ///
    /// let name = format!("doc-sender-open-with-codec-{}", std::process::id());
    /// let tx = Sender::<u64, _>::open_with_codec(&name, &Options::default(), Postcard)?;
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with_codec(name: &str, options: &Options, codec: C) -> Result<Sender<T, C>> {
        Ok(Sender {
            producer: Producer::open_with(name, options)?,
            codec,
            outgoing: Outgoing::of::<T, C>(),
            _values: PhantomData,
        })
    }

    /// Sends one value, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if its encoding is longer than
    /// [`max_message`](Sender::max_message) (with both numbers);
    /// [`Error::InvalidArgument`] if the codec cannot encode it (e.g. a
    /// sequence of unknown length for postcard); [`Error::PeerGone`] if the
    /// receiver died while the ring was full.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-sender-send-{}", std::process::id());
    /// # let mut rx = Receiver::<String>::open(&name)?;
    /// let mut tx = Sender::<String>::open(&name)?;
    /// tx.send(&"hello".to_owned())?;
    /// # tx.close();
    /// # assert_eq!(rx.recv()?, "hello");
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.send_with(value, Patience::Wait)
    }

    /// Sends one value if the ring has room now, else [`Error::Full`] (and
    /// nothing is sent).
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-sender-try-send-{}", std::process::id());
    /// # let mut rx = Receiver::<u32>::open(&name)?;
    /// let mut tx = Sender::<u32>::open(&name)?;
    /// tx.try_send(&7)?;
    /// # tx.close();
    /// # assert_eq!(rx.recv()?, 7);
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send(&mut self, value: &T) -> Result<()> {
        self.send_with(value, Patience::Now)
    }

    /// Sends one value, waiting at most `timeout` for room
    /// ([`Error::Timeout`] after that, and nothing is sent).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-sender-send-timeout-{}", std::process::id());
    /// # let mut rx = Receiver::<u32>::open(&name)?;
    /// let mut tx = Sender::<u32>::open(&name)?;
    /// tx.send_timeout(&7, Duration::from_secs(1))?;
    /// # tx.close();
    /// # assert_eq!(rx.recv()?, 7);
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.send_with(value, Patience::Timeout(timeout))
    }

    /// The length of `value`'s encoding: it can be sent if this is at most
    /// [`max_message`](Sender::max_message).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the codec cannot encode it.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::Sender;
    /// use shmkit::ring::Options;
    ///
    /// let name = format!("doc-sender-encoded-len-{}", std::process::id());
    /// let mut tx = Sender::<Vec<u8>>::open_with(&name, &Options::default().capacity(1 << 16))?;
    /// let big = vec![0u8; 40_000];
    /// assert!(tx.encoded_len(&big)? > tx.max_message());
    /// match tx.send(&big) {
    ///     Err(shmkit::Error::TooLarge { size, limit, .. }) => {
    ///         assert_eq!((size, limit), (40_003, tx.max_message() as u64)); // 3-byte length prefix
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn encoded_len(&mut self, value: &T) -> Result<usize> {
        self.outgoing.encoded_len(&mut self.codec, value)
    }

    /// Encodes `value` straight into a ring grant of its exact size.
    fn send_with(&mut self, value: &T, patience: Patience) -> Result<()> {
        let (body, named, len) =
            self.outgoing
                .frame(&mut self.codec, value, self.producer.max_message())?;
        let mut grant = match patience {
            Patience::Wait => self.producer.grant(len),
            Patience::Now => self.producer.try_grant(len),
            Patience::Timeout(timeout) => self.producer.grant_timeout(len, timeout),
        }?;
        // SAFETY: the grant's `len` bytes are this producer's until it is
        // committed or dropped (ring rule 2), and the writer is gone by then.
        let mut out = unsafe { Writer::from_raw_parts(grant.as_mut_ptr(), len) };
        // Dropping the grant on an error aborts it: the receiver sees nothing.
        self.outgoing
            .encode(&mut self.codec, value, (body, named), &mut out, len)?;
        grant.commit();
        Ok(())
    }

    /// The channel's (and its ring's) name.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::Sender;
    /// # let name = format!("doc-sender-name-{}", std::process::id());
    /// let tx = Sender::<u8>::open(&name)?;
    /// assert!(tx.name().starts_with("doc-sender-name-"));
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.producer.name()
    }

    /// The longest encoding of a value this channel carries: the ring's
    /// largest message less the 8-byte type tag. Compare
    /// [`encoded_len`](Sender::encoded_len) with it.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::Sender;
    /// # let name = format!("doc-sender-max-{}", std::process::id());
    /// let tx = Sender::<Vec<u8>>::open(&name)?; // a 1 MiB ring
    /// assert_eq!(tx.max_message(), (1 << 19) - 16 - 8);
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.producer.max_message().saturating_sub(TAG_LEN)
    }

    /// Closes the channel: the receiver gets every value sent, then
    /// [`Error::Closed`]. Dropping the sender does the same.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-sender-close-{}", std::process::id());
    /// let mut tx = Sender::<u8>::open(&name)?;
    /// let mut rx = Receiver::<u8>::open(&name)?;
    /// tx.send(&1)?;
    /// tx.close();
    /// assert_eq!(rx.recv()?, 1);
    /// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }
}

/// The receiving end of a channel of `T`s encoded by `C` ([`Postcard`]
/// unless named): copies each message into a private buffer, checks its
/// type tag and decodes it with the codec.
///
/// # Example
///
/// ```
/// use shmkit::channel::{Receiver, Sender};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// enum Event {
///     Started { pid: u32 },
///     Line(String),
/// }
///
/// let name = format!("doc-receiver-{}", std::process::id());
/// let mut rx = Receiver::<Event>::open(&name)?;
/// let mut tx = Sender::<Event>::open(&name)?; // usually another process
/// tx.send(&Event::Started { pid: 1 })?;
/// tx.send(&Event::Line("ready".into()))?;
/// tx.close();
/// assert_eq!(rx.recv()?, Event::Started { pid: 1 });
/// assert_eq!(rx.recv()?, Event::Line("ready".into()));
/// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Receiver<T, C = Postcard> {
    consumer: Consumer,
    codec: C,
    expected: Expected,
    /// The private copy of the body being decoded; it keeps the capacity of
    /// the largest message so far.
    body: rkyv::util::AlignedVec,
    _values: PhantomData<fn() -> T>,
}

impl<T, C: Codec<T>> Receiver<T, C> {
    /// Opens (or creates) channel `name` as its receiver, with default ring
    /// [`Options`].
    ///
    /// # Errors
    ///
    /// As [`Consumer::open`]: [`Error::InUse`] if a live process is the
    /// receiver already, [`Error::InvalidArgument`] for a bad name, ….
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::Receiver;
    ///
    /// let name = format!("doc-receiver-open-{}", std::process::id());
    /// let rx = Receiver::<u64>::open(&name)?;
    /// assert_eq!(rx.name(), name);
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Receiver<T, C>> {
        Receiver::open_with(name, &Options::default())
    }

    /// Opens (or creates) channel `name` as its receiver; `options` size
    /// the ring if this call creates it, and say how this end waits.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::Receiver;
    /// use shmkit::ring::{Options, Waiting};
    ///
    /// let name = format!("doc-receiver-open-with-{}", std::process::id());
    /// let rx = Receiver::<u64>::open_with(&name, &Options::default().waiting(Waiting::BusyPoll))?;
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<Receiver<T, C>> {
        Receiver::open_with_codec(name, options, C::default())
    }

    /// Opens (or creates) channel `name` as its receiver, decoding with
    /// `codec` (for a codec with settings of its own).
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::{Plain, Receiver};
    /// use shmkit::ring::Options;
    ///
    /// let name = format!("doc-receiver-open-with-codec-{}", std::process::id());
    /// let rx = Receiver::<u64, _>::open_with_codec(&name, &Options::default(), Plain)?;
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with_codec(name: &str, options: &Options, codec: C) -> Result<Receiver<T, C>> {
        Ok(Receiver {
            consumer: Consumer::open_with(name, options)?,
            codec,
            expected: Expected::of::<T, C>(),
            body: rkyv::util::AlignedVec::new(),
            _values: PhantomData,
        })
    }

    /// Receives the next value, waiting while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] for a message of another type or codec, and
    /// [`Error::Corrupt`] for one that does not decode (either is consumed;
    /// the next call gets the next message); [`Error::Closed`] once the
    /// sender closed and every value was received; [`Error::PeerGone`] once
    /// the sender died and every value it sent was received.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-receiver-recv-{}", std::process::id());
    /// # let mut tx = Sender::<Vec<String>>::open(&name)?;
    /// let mut rx = Receiver::<Vec<String>>::open(&name)?;
    /// # tx.send(&vec!["a".into()])?;
    /// # tx.close();
    /// let words = rx.recv()?;
    /// # assert_eq!(words, ["a"]);
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<C::Value<'_>> {
        self.receive(Patience::Wait)
    }

    /// Receives the next value if there is one now, else
    /// [`Error::Empty`]; otherwise as [`recv`](Receiver::recv).
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-receiver-try-recv-{}", std::process::id());
    /// let mut rx = Receiver::<u32>::open(&name)?;
    /// let mut tx = Sender::<u32>::open(&name)?;
    /// assert!(matches!(rx.try_recv(), Err(shmkit::Error::Empty { .. })));
    /// tx.send(&5)?;
    /// assert_eq!(rx.try_recv()?, 5);
    /// # tx.close();
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<C::Value<'_>> {
        self.receive(Patience::Now)
    }

    /// Receives the next value, waiting at most `timeout`
    /// ([`Error::Timeout`] after that); otherwise as
    /// [`recv`](Receiver::recv).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-receiver-recv-timeout-{}", std::process::id());
    /// let mut rx = Receiver::<u32>::open(&name)?;
    /// let mut tx = Sender::<u32>::open(&name)?;
    /// let waited = rx.recv_timeout(Duration::from_millis(10));
    /// assert!(matches!(waited, Err(shmkit::Error::Timeout { .. })));
    /// tx.send(&5)?;
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(1))?, 5);
    /// # tx.close();
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<C::Value<'_>> {
        self.receive(Patience::Timeout(timeout))
    }

    fn receive(&mut self, patience: Patience) -> Result<C::Value<'_>> {
        let grant: ReadGrant<'_> = match patience {
            Patience::Wait => self.consumer.read(),
            Patience::Now => self.consumer.try_read(),
            Patience::Timeout(timeout) => self.consumer.read_timeout(timeout),
        }?;
        let framing = wire::copy_out(grant, &mut self.body)?;
        self.decode(framing)
    }

    /// The value of a message copied out to `self.body` as `framing` says
    /// (a copy `wire::copy_out` found intact: no lost page's zeros).
    fn decode(
        &mut self,
        framing: std::result::Result<wire::Framing, String>,
    ) -> Result<C::Value<'_>> {
        let name = self.consumer.name();
        let place = || format!("ring {name}");
        let framing = framing.map_err(|why| Error::Corrupt(format!("{}: {why}", place())))?;
        self.expected.check(framing, place)?;
        self.expected.decode(&mut self.codec, &self.body, place)
    }

    /// The channel's (and its ring's) name.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-receiver-name-{}", std::process::id());
    /// let rx = Receiver::<u8>::open(&name)?;
    /// assert!(rx.name().starts_with("doc-receiver-name-"));
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.consumer.name()
    }

    /// The longest encoding of a value this channel carries: the ring's
    /// largest message less the 8-byte type tag.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-receiver-max-{}", std::process::id());
    /// let rx = Receiver::<u8>::open(&name)?; // a 1 MiB ring
    /// assert_eq!(rx.max_message(), (1 << 19) - 16 - 8);
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.consumer.max_message().saturating_sub(TAG_LEN)
    }
}

impl<T, C> std::fmt::Debug for Sender<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("ring", &self.producer.name())
            .field("type", &self.outgoing.tag.name)
            .finish_non_exhaustive()
    }
}

impl<T, C> std::fmt::Debug for Receiver<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("ring", &self.consumer.name())
            .field("type", &self.expected.tag.name)
            .finish_non_exhaustive()
    }
}
