//! The zero-copy codec: rkyv archives, validated with bytecheck, read in
//! place.

use std::marker::PhantomData;
use std::ops::Deref;

use ::rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use ::rkyv::bytecheck::CheckBytes;
use ::rkyv::rancor;
use ::rkyv::ser::allocator::ArenaHandle;
use ::rkyv::util::AlignedVec;
use ::rkyv::{Archive, Archived, Deserialize, Portable, Serialize};

use super::{Codec, CodecError, Writer};
use crate::error::{Error, Result};

/// [rkyv] 0.8 archives: a receive yields an [`ArchivedMessage`], which
/// dereferences to the `&Archived<T>` after bytecheck has validated it, so
/// the receiver reads the fields where they lie without building a `T`.
/// That pays off for large messages, and for receivers that look at a few
/// fields of each.
///
/// `T` is any type that derives rkyv's `Archive` and `Serialize` (with the
/// default `bytecheck` support). A send archives the value into a buffer
/// this codec keeps (reused from message to message), then copies it into
/// the ring. The receiver validates its own copy, not the ring's bytes: a
/// check made on shared memory proves nothing about the bytes a moment
/// later. rkyv archives depend on rkyv's format features (endianness,
/// pointer width), which both programs must build with alike; the defaults
/// are little-endian with 32-bit relative pointers.
///
/// ```
/// use shmkit::channel::{Receiver, Rkyv, Sender};
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
/// struct Frame {
///     id: u64,
///     pixels: Vec<u8>,
/// }
///
/// let name = format!("doc-rkyv-{}", std::process::id());
/// let mut tx = Sender::<Frame, Rkyv>::open(&name)?;
/// let mut rx = Receiver::<Frame, Rkyv>::open(&name)?; // usually another process
/// tx.send(&Frame { id: 7, pixels: vec![0; 1000] })?;
/// tx.send(&Frame { id: 8, pixels: vec![] })?;
/// tx.close();
/// let frame = rx.recv()?; // validated, read in place
/// assert_eq!(frame.id, 7);
/// assert_eq!(frame.pixels.len(), 1000);
/// let owned: Frame = rx.recv()?.deserialize()?;
/// assert_eq!(owned, Frame { id: 8, pixels: vec![] });
/// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// [rkyv]: https://docs.rs/rkyv/0.8
#[derive(Default)]
pub struct Rkyv {
    /// Where a send archives its value before the copy into the ring; it
    /// keeps the capacity of the largest archive so far.
    staged: AlignedVec,
}

impl std::fmt::Debug for Rkyv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rkyv")
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl<T> Codec<T> for Rkyv
where
    T: Archive + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
    Archived<T>: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    const NAME: &'static str = "rkyv";
    type Value<'a>
        = ArchivedMessage<'a, T>
    where
        T: 'a;

    fn encoded_len(&mut self, value: &T) -> Result<usize, CodecError> {
        let mut staged = std::mem::take(&mut self.staged);
        staged.clear();
        self.staged = ::rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, staged)?;
        Ok(self.staged.len())
    }

    fn encode(&mut self, _: &T, out: &mut Writer<'_>) -> Result<(), CodecError> {
        // `encoded_len` archived this value a moment ago.
        out.write(&self.staged)
    }

    fn decode<'a>(&self, body: &'a [u8]) -> Result<ArchivedMessage<'a, T>, CodecError> {
        let archived = ::rkyv::access::<Archived<T>, rancor::Error>(body)
            .map_err(|err| format!("bytecheck rejected it: {err}"))?;
        Ok(ArchivedMessage {
            archived,
            _value: PhantomData,
        })
    }
}

/// A received rkyv archive, validated: dereferences to `&Archived<T>`,
/// which borrows the receiver's private copy until the next receive.
pub struct ArchivedMessage<'a, T: Archive> {
    archived: &'a Archived<T>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Archive> ArchivedMessage<'_, T> {
    /// Builds an owned `T` from the archive (which needs rkyv's
    /// `Deserialize`).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a validated archive does not deserialise (a
    /// `Deserialize` impl that refuses it).
    pub fn deserialize(&self) -> Result<T>
    where
        Archived<T>: Deserialize<T, HighDeserializer<rancor::Error>>,
    {
        ::rkyv::deserialize::<T, rancor::Error>(self.archived).map_err(|err| {
            Error::Corrupt(format!(
                "a validated archived {} does not deserialise: {err}",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<T: Archive> Deref for ArchivedMessage<'_, T> {
    type Target = Archived<T>;

    fn deref(&self) -> &Archived<T> {
        self.archived
    }
}

impl<T: Archive> std::fmt::Debug for ArchivedMessage<'_, T>
where
    Archived<T>: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.archived.fmt(f)
    }
}
