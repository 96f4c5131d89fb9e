//! The default codec: any serde type, in the compact postcard format.

use ::postcard::ser_flavors::{Flavor, Size};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Codec, CodecError, Writer};

/// Any `T: Serialize + DeserializeOwned`, encoded with [postcard] 1; a
/// receive yields an owned `T`. The default codec of
/// [`Sender`](crate::channel::Sender) and [`Receiver`](crate::channel::Receiver).
///
/// A send walks the value twice — once to measure it (postcard's `Size`
/// flavour, which counts strings and byte slices in O(1)), once to encode
/// it straight into the ring grant — which costs less than encoding into a
/// staging buffer and copying that for the string- and byte-heavy messages
/// channels usually carry, and needs no buffer. Reserving the largest
/// message instead would make every send wait for half the ring to be free.
///
/// ```
/// use shmkit::channel::{Postcard, Receiver, Sender};
///
/// let name = format!("doc-postcard-{}", std::process::id());
/// let mut tx = Sender::<(String, Vec<u16>), Postcard>::open(&name)?; // = Sender<(String, Vec<u16>)>
/// let mut rx = Receiver::<(String, Vec<u16>)>::open(&name)?;
/// tx.send(&("ports".to_owned(), vec![80, 443]))?;
/// tx.close();
/// assert_eq!(rx.recv()?, ("ports".to_owned(), vec![80, 443]));
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// [postcard]: https://docs.rs/postcard/1
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    const NAME: &'static str = "postcard";
    type Value<'a>
        = T
    where
        T: 'a;

    fn encoded_len(&mut self, value: &T) -> Result<usize, CodecError> {
        Ok(::postcard::serialize_with_flavor::<T, _, usize>(
            value,
            Size::default(),
        )?)
    }

    fn encode(&mut self, value: &T, out: &mut Writer<'_>) -> Result<(), CodecError> {
        ::postcard::serialize_with_flavor::<T, _, ()>(value, IntoWriter(out))?;
        Ok(())
    }

    fn decode(&self, body: &[u8]) -> Result<T, CodecError> {
        match ::postcard::take_from_bytes::<T>(body)? {
            (value, []) => Ok(value),
            (_, rest) => Err(format!(
                "{} bytes of value are followed by {} more",
                body.len() - rest.len(),
                rest.len()
            )
            .into()),
        }
    }
}

/// postcard's output flavour for a [`Writer`]: bytes go through its raw
/// pointer into the grant, never through a `&mut [u8]` over it.
struct IntoWriter<'w, 'a>(&'w mut Writer<'a>);

impl Flavor for IntoWriter<'_, '_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> ::postcard::Result<()> {
        self.try_extend(&[byte])
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> ::postcard::Result<()> {
        self.0
            .write(bytes)
            .map_err(|_| ::postcard::Error::SerializeBufferFull)
    }

    fn finalize(self) -> ::postcard::Result<()> {
        Ok(())
    }
}
