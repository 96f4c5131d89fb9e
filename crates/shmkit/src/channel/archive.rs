//! The zero-copy flavour: rkyv archives, validated with bytecheck in a
//! private buffer before the receiver sees them.

use std::marker::PhantomData;
use std::time::Duration;

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Archived, Deserialize, Serialize};

use super::{Flavour, Patience, Tag, TAG_LEN};
use crate::error::{Error, Result};
use crate::ring::{Consumer, Options, Producer};

/// The sending end of a zero-copy channel: archives each value with rkyv
/// and copies the archive into the ring.
///
/// `T` is any type that derives rkyv's `Archive` and `Serialize`. Dropping
/// the sender closes the channel: the receiver gets every value sent, then
/// [`Error::Closed`].
///
/// # Example
///
/// ```
/// use shmkit::channel::{ArchiveReceiver, ArchiveSender};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Frame {
///     id: u64,
///     pixels: Vec<u8>,
/// }
///
/// let name = format!("doc-archive-sender-{}", std::process::id());
/// let mut tx = ArchiveSender::<Frame>::open(&name)?;
/// let mut rx = ArchiveReceiver::<Frame>::open(&name)?; // usually another process
/// tx.send(&Frame { id: 7, pixels: vec![0; 1000] })?;
/// tx.close();
/// let frame = rx.recv()?;
/// assert_eq!(frame.id, 7);
/// assert_eq!(frame.pixels.len(), 1000);
/// assert!(rx.recv().is_err()); // Closed
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ArchiveSender<T> {
    producer: Producer,
    tag: Tag,
    /// Where values are archived before they are copied into the ring;
    /// it keeps the capacity of the largest archive so far.
    buf: AlignedVec,
    _values: PhantomData<fn(&T)>,
}

impl<T> ArchiveSender<T>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
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
    /// use shmkit::channel::ArchiveSender;
    ///
    /// let name = format!("doc-archive-sender-open-{}", std::process::id());
    /// let tx = ArchiveSender::<Vec<u32>>::open(&name)?;
    /// assert_eq!(tx.name(), name);
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ArchiveSender<T>> {
        ArchiveSender::open_with(name, &Options::default())
    }

    /// Opens (or creates) channel `name` as its sender; `options` size the
    /// ring if this call creates it, and say how this end waits.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::ArchiveSender;
    /// use shmkit::ring::Options;
    ///
    /// let name = format!("doc-archive-sender-open-with-{}", std::process::id());
    /// let tx = ArchiveSender::<Vec<u32>>::open_with(&name, &Options::default().capacity(1 << 16))?;
    /// assert_eq!(tx.max_message(), (1 << 15) - 16 - 8);
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<ArchiveSender<T>> {
        Ok(ArchiveSender {
            producer: Producer::open_with(name, options)?,
            tag: Tag::of::<T>(Flavour::Rkyv),
            buf: AlignedVec::new(),
            _values: PhantomData,
        })
    }

    /// Sends one value, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if its archive is longer than
    /// [`max_message`](ArchiveSender::max_message);
    /// [`Error::InvalidArgument`] if rkyv cannot archive it;
    /// [`Error::PeerGone`] if the receiver died while the ring was full.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-sender-send-{}", std::process::id());
    /// # let mut rx = ArchiveReceiver::<String>::open(&name)?;
    /// let mut tx = ArchiveSender::<String>::open(&name)?;
    /// tx.send(&"hello".to_owned())?;
    /// # tx.close();
    /// # assert_eq!(rx.recv()?.as_str(), "hello");
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
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-sender-try-send-{}", std::process::id());
    /// # let mut rx = ArchiveReceiver::<u32>::open(&name)?;
    /// let mut tx = ArchiveSender::<u32>::open(&name)?;
    /// tx.try_send(&7)?;
    /// # tx.close();
    /// # assert_eq!(*rx.recv()?, 7);
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
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-sender-send-timeout-{}", std::process::id());
    /// # let mut rx = ArchiveReceiver::<u32>::open(&name)?;
    /// let mut tx = ArchiveSender::<u32>::open(&name)?;
    /// tx.send_timeout(&7, Duration::from_secs(1))?;
    /// # tx.close();
    /// # assert_eq!(*rx.recv()?, 7);
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.send_with(value, Patience::Timeout(timeout))
    }

    /// Archives `value` into the reused buffer, then copies it into a ring
    /// grant of its exact size.
    ///
    /// rkyv has no cheap way to learn an archive's size before writing it
    /// (a measuring pass would run the whole serializer, arena and all), and
    /// reserving the largest message would make every send wait for half the
    /// ring to be free; so the archive is staged in memory the sender owns
    /// and copied once. The staging buffer, and rkyv's thread-local arena,
    /// are reused, so a send allocates nothing once they have grown.
    fn send_with(&mut self, value: &T, patience: Patience) -> Result<()> {
        let mut staged = std::mem::take(&mut self.buf);
        staged.clear();
        let staged =
            rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, staged).map_err(|err| {
                Error::InvalidArgument(format!(
                    "cannot archive a {} with rkyv: {err}",
                    self.tag.type_name
                ))
            })?;
        self.buf = staged;
        let body = &self.buf;
        super::check_body_len(body.len(), self.producer.max_message())?;
        let mut grant = super::grant(&mut self.producer, TAG_LEN + body.len(), patience)?;
        grant[..TAG_LEN].copy_from_slice(&self.tag.bytes());
        grant[TAG_LEN..].copy_from_slice(body);
        grant.commit();
        Ok(())
    }
}

impl<T> ArchiveSender<T> {
    /// The channel's (and its ring's) name.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::ArchiveSender;
    /// # let name = format!("doc-archive-sender-name-{}", std::process::id());
    /// let tx = ArchiveSender::<u8>::open(&name)?;
    /// assert!(tx.name().starts_with("doc-archive-sender-name-"));
    /// # drop(tx); // an empty stream stays for a receiver to come:
    /// # shmkit::ring::remove(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.producer.name()
    }

    /// The longest archive this channel carries: the ring's largest message
    /// less the 8-byte type tag.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::ArchiveSender;
    /// # let name = format!("doc-archive-sender-max-{}", std::process::id());
    /// let tx = ArchiveSender::<Vec<u8>>::open(&name)?; // a 1 MiB ring
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
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-sender-close-{}", std::process::id());
    /// let mut tx = ArchiveSender::<u8>::open(&name)?;
    /// let mut rx = ArchiveReceiver::<u8>::open(&name)?;
    /// tx.send(&1)?;
    /// tx.close();
    /// assert_eq!(*rx.recv()?, 1);
    /// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }
}

/// The receiving end of a zero-copy channel: gives each message as a
/// validated `&Archived<T>`, read in place without deserialising.
///
/// Each receive copies the message out of the ring into an aligned buffer
/// that only this receiver can write (reused from message to message), hands
/// the ring space back, and validates the copy with bytecheck; only then
/// does the caller get a reference into it. That one memcpy is the price of
/// safety against the peer: bytes validated in shared memory could be
/// rewritten by a buggy or hostile sender between the check and the use.
/// Nothing is deserialised; [`recv_deserialized`](ArchiveReceiver::recv_deserialized)
/// builds an owned `T` when one is wanted.
///
/// `T` is any type that derives rkyv's `Archive` (with the default
/// `bytecheck` support, which makes its archived form `CheckBytes`).
///
/// # Example
///
/// ```
/// use shmkit::channel::{ArchiveReceiver, ArchiveSender};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Reading {
///     sensor: String,
///     values: Vec<f32>,
/// }
///
/// let name = format!("doc-archive-receiver-{}", std::process::id());
/// let mut rx = ArchiveReceiver::<Reading>::open(&name)?;
/// let mut tx = ArchiveSender::<Reading>::open(&name)?; // usually another process
/// tx.send(&Reading { sensor: "t1".into(), values: vec![20.5, 21.0] })?;
/// tx.close();
/// let reading = rx.recv()?; // borrows rx until it is dropped
/// assert_eq!(reading.sensor, "t1");
/// let sum: f32 = reading.values.iter().map(|v| v.to_native()).sum();
/// assert_eq!(sum, 41.5);
/// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ArchiveReceiver<T> {
    consumer: Consumer,
    tag: Tag,
    /// The private, aligned copy of the message being read; it keeps the
    /// capacity of the largest message so far.
    buf: AlignedVec,
    _values: PhantomData<fn() -> T>,
}

impl<T> ArchiveReceiver<T>
where
    T: Archive,
    Archived<T>: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
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
    /// use shmkit::channel::ArchiveReceiver;
    ///
    /// let name = format!("doc-archive-receiver-open-{}", std::process::id());
    /// let rx = ArchiveReceiver::<Vec<u32>>::open(&name)?;
    /// assert_eq!(rx.name(), name);
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ArchiveReceiver<T>> {
        ArchiveReceiver::open_with(name, &Options::default())
    }

    /// Opens (or creates) channel `name` as its receiver; `options` size
    /// the ring if this call creates it, and say how this end waits.
    ///
    /// # Example
    ///
    /// ```
    /// use shmkit::channel::ArchiveReceiver;
    /// use shmkit::ring::{Options, Waiting};
    ///
    /// let name = format!("doc-archive-receiver-open-with-{}", std::process::id());
    /// let options = Options::default().waiting(Waiting::BusyPoll);
    /// let rx = ArchiveReceiver::<Vec<u32>>::open_with(&name, &options)?;
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, options: &Options) -> Result<ArchiveReceiver<T>> {
        Ok(ArchiveReceiver {
            consumer: Consumer::open_with(name, options)?,
            tag: Tag::of::<T>(Flavour::Rkyv),
            buf: AlignedVec::new(),
            _values: PhantomData,
        })
    }

    /// Receives the next message, waiting while the channel is empty, and
    /// gives its validated archive, which borrows this receiver until the
    /// next receive.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a message that bytecheck rejects as an
    /// archived `T`, or that is not of this channel's type (the message is
    /// consumed; the next call gets the next one); [`Error::Closed`] once
    /// the sender closed and every message was received;
    /// [`Error::PeerGone`] once the sender died and every message it sent
    /// was received.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-receiver-recv-{}", std::process::id());
    /// # let mut tx = ArchiveSender::<Vec<String>>::open(&name)?;
    /// let mut rx = ArchiveReceiver::<Vec<String>>::open(&name)?;
    /// # tx.send(&vec!["a".into()])?;
    /// # tx.close();
    /// let words = rx.recv()?; // &ArchivedVec<ArchivedString>
    /// assert_eq!(words[0], "a");
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<&Archived<T>> {
        let found = super::copy_out(self.consumer.read()?, &mut self.buf);
        self.access(found)
    }

    /// Receives the next message if there is one now, else
    /// [`Error::Empty`].
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-receiver-try-recv-{}", std::process::id());
    /// let mut rx = ArchiveReceiver::<u32>::open(&name)?;
    /// let mut tx = ArchiveSender::<u32>::open(&name)?;
    /// assert!(matches!(rx.try_recv(), Err(shmkit::Error::Empty { .. })));
    /// tx.send(&5)?;
    /// assert_eq!(rx.try_recv()?.to_native(), 5);
    /// # tx.close();
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<&Archived<T>> {
        let found = super::copy_out(self.consumer.try_read()?, &mut self.buf);
        self.access(found)
    }

    /// Receives the next message, waiting at most `timeout`
    /// ([`Error::Timeout`] after that).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-receiver-recv-timeout-{}", std::process::id());
    /// let mut rx = ArchiveReceiver::<u32>::open(&name)?;
    /// let mut tx = ArchiveSender::<u32>::open(&name)?;
    /// let waited = rx.recv_timeout(Duration::from_millis(10));
    /// assert!(matches!(waited, Err(shmkit::Error::Timeout { .. })));
    /// tx.send(&5)?;
    /// assert_eq!(*rx.recv_timeout(Duration::from_secs(1))?, 5);
    /// # tx.close();
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<&Archived<T>> {
        let found = super::copy_out(self.consumer.read_timeout(timeout)?, &mut self.buf);
        self.access(found)
    }

    /// Receives the next message like [`recv`](ArchiveReceiver::recv) and
    /// deserialises it into an owned `T` (which needs rkyv's `Deserialize`).
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-receiver-recv-deserialized-{}", std::process::id());
    /// # let mut tx = ArchiveSender::<Vec<String>>::open(&name)?;
    /// let mut rx = ArchiveReceiver::<Vec<String>>::open(&name)?;
    /// # tx.send(&vec!["a".into()])?;
    /// # tx.close();
    /// let words: Vec<String> = rx.recv_deserialized()?;
    /// assert_eq!(words, ["a"]);
    /// # assert!(rx.recv().is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_deserialized(&mut self) -> Result<T>
    where
        Archived<T>: Deserialize<T, HighDeserializer<rancor::Error>>,
    {
        let type_name = self.tag.type_name;
        let archived = self.recv()?;
        rkyv::deserialize::<T, rancor::Error>(archived).map_err(|err| {
            Error::Corrupt(format!(
                "a validated archived {type_name} does not deserialise: {err}"
            ))
        })
    }

    /// Checks the tag [`copy_out`](super::copy_out) found and validates the
    /// private copy of the body as an archived `T`.
    fn access(&self, found: std::result::Result<u64, usize>) -> Result<&Archived<T>> {
        let ring = self.consumer.name();
        self.tag.check(found, ring)?;
        rkyv::access::<Archived<T>, rancor::Error>(&self.buf).map_err(|err| {
            Error::Corrupt(format!(
                "ring {ring}: bytecheck rejected a body of {} bytes as an archived {}: {err}",
                self.buf.len(),
                self.tag.type_name
            ))
        })
    }
}

impl<T> ArchiveReceiver<T> {
    /// The channel's (and its ring's) name.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-receiver-name-{}", std::process::id());
    /// let rx = ArchiveReceiver::<u8>::open(&name)?;
    /// assert!(rx.name().starts_with("doc-archive-receiver-name-"));
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.consumer.name()
    }

    /// The longest archive this channel carries: the ring's largest message
    /// less the 8-byte type tag.
    ///
    /// # Example
    ///
    /// ```
    /// # use shmkit::channel::{ArchiveReceiver, ArchiveSender};
    /// # let name = format!("doc-archive-receiver-max-{}", std::process::id());
    /// let rx = ArchiveReceiver::<u8>::open(&name)?; // a 1 MiB ring
    /// assert_eq!(rx.max_message(), (1 << 19) - 16 - 8);
    /// # drop(rx); // with no sender and nothing unread, this removes the ring
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        super::max_body(self.consumer.max_message())
    }
}

impl<T> std::fmt::Debug for ArchiveSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSender")
            .field("ring", &self.name())
            .field("type", &self.tag.type_name)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for ArchiveReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReceiver")
            .field("ring", &self.name())
            .field("type", &self.tag.type_name)
            .finish_non_exhaustive()
    }
}
