//! The serde flavour: any `Serialize` type, encoded with postcard.

use std::marker::PhantomData;
use std::time::Duration;

use ::serde::de::DeserializeOwned;
use ::serde::Serialize;

use super::{Flavour, Patience, Tag, TAG_LEN};
use crate::error::{Error, Result};
use crate::ring::{Consumer, Options, Producer};

/// The sending end of a serde channel: encodes each value with postcard,
/// straight into the ring.
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
/// assert!(rx.recv().is_err()); // Closed
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Sender<T> {
    producer: Producer,
    tag: Tag,
    _values: PhantomData<fn(&T)>,
}

impl<T: Serialize> Sender<T> {
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
    pub fn open(name: &str) -> Result<Sender<T>> {
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
    pub fn open_with(name: &str, options: &Options) -> Result<Sender<T>> {
        Ok(Sender {
            producer: Producer::open_with(name, options)?,
            tag: Tag::of::<T>(Flavour::Postcard),
            _values: PhantomData,
        })
    }

    /// Sends one value, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if its encoding is longer than
    /// [`max_message`](Sender::max_message); [`Error::InvalidArgument`] if
    /// postcard cannot encode it (e.g. a sequence of unknown length);
    /// [`Error::PeerGone`] if the receiver died while the ring was full.
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

    /// Encodes `value` straight into a ring grant of its exact size.
    ///
    /// Measuring first (postcard's `Size` flavour: the serializer run
    /// without writing, strings and byte slices counted in O(1)) and then
    /// encoding into the grant costs a second walk over the value, but no
    /// staging buffer to keep and no copy of the encoding. The alternative,
    /// encoding into a reused `Vec` and sending that, walks once and copies
    /// once; for the string- and byte-heavy messages channels usually carry,
    /// the measuring walk is the cheaper of the two. Reserving the largest
    /// message instead would make every send wait for half the ring to be
    /// free.
    fn send_with(&mut self, value: &T, patience: Patience) -> Result<()> {
        let size = postcard::serialize_with_flavor::<T, _, usize>(
            value,
            postcard::ser_flavors::Size::default(),
        )
        .map_err(|err| self.unencodable(err))?;
        super::check_body_len(size, self.producer.max_message())?;
        let tag = self.tag.bytes();
        let mut grant = super::grant(&mut self.producer, TAG_LEN + size, patience)?;
        grant[..TAG_LEN].copy_from_slice(&tag);
        let written = postcard::to_slice(value, &mut grant[TAG_LEN..]).map(|body| body.len());
        match written {
            Ok(len) if len == size => {
                grant.commit();
                Ok(())
            }
            // Dropping the grant aborts it: the receiver sees nothing.
            Ok(len) => {
                drop(grant);
                Err(Error::InvalidArgument(format!(
                    "the Serialize impl of {} wrote {len} bytes after measuring {size}",
                    self.tag.type_name
                )))
            }
            Err(err) => {
                drop(grant);
                Err(self.unencodable(err))
            }
        }
    }

    fn unencodable(&self, err: postcard::Error) -> Error {
        Error::InvalidArgument(format!(
            "cannot encode a {} with postcard: {err}",
            self.tag.type_name
        ))
    }
}

impl<T> Sender<T> {
    /// The channel's (and its ring's) name.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
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
    /// largest message less the 8-byte type tag.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{Receiver, Sender};
    /// # let name = format!("doc-sender-max-{}", std::process::id());
    /// let tx = Sender::<Vec<u8>>::open(&name)?; // a 1 MiB ring
    /// assert_eq!(tx.max_message(), (1 << 19) - 16 - 8);
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        super::max_body(self.producer.max_message())
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

/// The receiving end of a serde channel: copies each message into a private
/// buffer and decodes it with postcard into an owned `T`.
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
pub struct Receiver<T> {
    consumer: Consumer,
    tag: Tag,
    /// The private copy of the message being decoded; it keeps the
    /// capacity of the largest message so far.
    buf: Vec<u8>,
    _values: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Receiver<T> {
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
    pub fn open(name: &str) -> Result<Receiver<T>> {
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
    pub fn open_with(name: &str, options: &Options) -> Result<Receiver<T>> {
        Ok(Receiver {
            consumer: Consumer::open_with(name, options)?,
            tag: Tag::of::<T>(Flavour::Postcard),
            buf: Vec::new(),
            _values: PhantomData,
        })
    }

    /// Receives the next value, waiting while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a message that is not a postcard `T` of this
    /// channel (the message is consumed; the next call gets the next one);
    /// [`Error::Closed`] once the sender closed and every value was
    /// received; [`Error::PeerGone`] once the sender died and every value
    /// it sent was received.
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
    pub fn recv(&mut self) -> Result<T> {
        let found = super::copy_out(self.consumer.read()?, &mut self.buf);
        self.decode(found)
    }

    /// Receives the next value if there is one now, else
    /// [`Error::Empty`].
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
    pub fn try_recv(&mut self) -> Result<T> {
        let found = super::copy_out(self.consumer.try_read()?, &mut self.buf);
        self.decode(found)
    }

    /// Receives the next value, waiting at most `timeout`
    /// ([`Error::Timeout`] after that).
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
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        let found = super::copy_out(self.consumer.read_timeout(timeout)?, &mut self.buf);
        self.decode(found)
    }

    /// Checks the tag [`copy_out`](super::copy_out) found and decodes the
    /// private copy of the body.
    fn decode(&self, found: std::result::Result<u64, usize>) -> Result<T> {
        let ring = self.consumer.name();
        self.tag.check(found, ring)?;
        match postcard::take_from_bytes::<T>(&self.buf) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(Error::Corrupt(format!(
                "ring {ring}: a postcard {} of {} bytes is followed by {} more",
                self.tag.type_name,
                self.buf.len() - rest.len(),
                rest.len()
            ))),
            Err(err) => Err(Error::Corrupt(format!(
                "ring {ring}: a body of {} bytes does not decode as a postcard {}: {err}",
                self.buf.len(),
                self.tag.type_name
            ))),
        }
    }
}

impl<T> Receiver<T> {
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
        super::max_body(self.consumer.max_message())
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("ring", &self.name())
            .field("type", &self.tag.type_name)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("ring", &self.name())
            .field("type", &self.tag.type_name)
            .finish_non_exhaustive()
    }
}
