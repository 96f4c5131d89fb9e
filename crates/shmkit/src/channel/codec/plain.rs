//! The codec without an encoding: a plain value's bytes.

use std::mem::size_of;

use super::{Codec, CodecError, Writer};
use crate::offset::Plain as PlainValue;

/// A [`Plain`](crate::offset::Plain) value, copied byte for byte: no
/// encoding at all, the fastest path for fixed-layout `#[repr(C)]` structs.
/// A receive yields the value; a body of the wrong length is
/// [`Error::Corrupt`](crate::Error::Corrupt), and any bytes of the right
/// length are a valid value (that is what `Plain` promises).
///
/// Both ends must agree on the layout, which for a `Plain` type is its
/// fields in order at the native endianness: sender and receiver run on
/// one machine.
///
/// ```
/// use shmkit::channel::{Plain, Receiver, Sender};
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Tick {
///     seq: u64,
///     price: f64,
/// }
///
/// // SAFETY: repr(C), two 8-byte fields, no padding, any bits are valid.
/// unsafe impl shmkit::offset::Plain for Tick {}
///
/// let name = format!("doc-plain-{}", std::process::id());
/// let mut tx = Sender::<Tick, Plain>::open(&name)?;
/// let mut rx = Receiver::<Tick, Plain>::open(&name)?; // usually another process
/// tx.send(&Tick { seq: 1, price: 99.5 })?;
/// tx.close();
/// assert_eq!(rx.recv()?, Tick { seq: 1, price: 99.5 });
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<T: PlainValue> Codec<T> for Plain {
    const NAME: &'static str = "plain";
    type Value<'a>
        = T
    where
        T: 'a;

    fn encoded_len(&mut self, _: &T) -> Result<usize, CodecError> {
        Ok(size_of::<T>())
    }

    fn encode(&mut self, value: &T, out: &mut Writer<'_>) -> Result<(), CodecError> {
        // SAFETY: `value` is a live `T`, readable for `size_of::<T>()`
        // bytes, all of them initialised: `Plain` types have no padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>())
        };
        out.write(bytes)
    }

    fn decode(&self, body: &[u8]) -> Result<T, CodecError> {
        if body.len() != size_of::<T>() {
            return Err(format!(
                "a body of {} bytes is not one of {}",
                body.len(),
                size_of::<T>()
            )
            .into());
        }
        // SAFETY: `body` has exactly `size_of::<T>()` bytes, and `Plain`
        // makes every bit pattern of that size a valid `T`; the read is
        // unaligned-safe.
        Ok(unsafe { std::ptr::read_unaligned(body.as_ptr().cast::<T>()) })
    }
}
