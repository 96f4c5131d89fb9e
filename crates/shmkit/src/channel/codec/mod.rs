//! How a channel turns values into message bodies and back: the [`Codec`]
//! trait, the [`Writer`] a codec encodes into, and the three codecs shmkit
//! ships.

mod plain;
mod postcard;
mod rkyv;

use std::marker::PhantomData;

pub use self::plain::Plain;
pub use self::postcard::Postcard;
pub use self::rkyv::{ArchivedMessage, Rkyv};

/// The names of the codecs shmkit ships, so that a receiver can name its
/// own type in another of them.
pub(super) const BUILT_IN: [&str; 3] = ["postcard", "rkyv", "plain"];

/// Why a codec could not encode or decode: any error, boxed. The channel
/// wraps it in an [`Error`](crate::Error) that names the ring, the type and
/// the codec.
pub type CodecError = Box<dyn std::error::Error + Send + Sync>;

/// An encoding of values of type `T` into a channel's message bodies.
///
/// A [`Sender`](super::Sender) calls [`encoded_len`](Codec::encoded_len)
/// and then, with the same value, [`encode`](Codec::encode) into a ring
/// grant of exactly that length; a [`Receiver`](super::Receiver) copies each
/// message body out of the ring into memory of its own, and calls
/// [`decode`](Codec::decode) on the copy. A codec therefore never sees
/// shared memory: what it checks is what the caller gets.
///
/// The codec's [`NAME`](Codec::NAME) and `T`'s [`std::any::type_name`] make
/// the type tag of every message (see the [module docs](super#wire-format)),
/// so a receiver of another type or codec gets
/// [`Error::WrongType`](crate::Error::WrongType), never a misread value.
///
/// # Example: a codec of your own
///
/// A codec that carries `String`s as their UTF-8 bytes, checked on receipt:
///
/// ```
/// use shmkit::channel::{Codec, CodecError, Receiver, Sender, Writer};
///
/// #[derive(Default)]
/// struct Utf8;
///
/// impl Codec<String> for Utf8 {
///     const NAME: &'static str = "utf8";
///     type Value<'a> = &'a str;
///
///     fn encoded_len(&mut self, value: &String) -> Result<usize, CodecError> {
///         Ok(value.len())
///     }
///
///     fn encode(&mut self, value: &String, out: &mut Writer<'_>) -> Result<(), CodecError> {
///         out.write(value.as_bytes())
///     }
///
///     fn decode<'a>(&self, body: &'a [u8]) -> Result<&'a str, CodecError> {
///         Ok(std::str::from_utf8(body)?)
///     }
/// }
///
/// let name = format!("doc-codec-utf8-{}", std::process::id());
/// let mut tx = Sender::<String, Utf8>::open(&name)?;
/// let mut rx = Receiver::<String, Utf8>::open(&name)?; // usually another process
/// tx.send(&"grüß dich".to_owned())?;
/// tx.close();
/// assert_eq!(rx.recv()?, "grüß dich"); // borrowed from rx's private copy
/// assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait Codec<T>: Default {
    /// The codec's name in the type tag, e.g. `"postcard"`. Two codecs
    /// with the same name must read each other's bodies.
    const NAME: &'static str;

    /// What a receive yields: an owned `T`, or a view that borrows the
    /// receiver's private copy of the body (until the next receive).
    type Value<'a>
    where
        T: 'a;

    /// The length in bytes of `value`'s encoding. A codec that must encode
    /// to know it may keep the encoding, to be written by the
    /// [`encode`](Codec::encode) call that follows for the same value.
    ///
    /// # Errors
    ///
    /// A value this codec cannot encode.
    fn encoded_len(&mut self, value: &T) -> Result<usize, CodecError>;

    /// Writes `value`'s encoding, exactly as many bytes as
    /// [`encoded_len`](Codec::encoded_len) said, into `out`.
    ///
    /// # Errors
    ///
    /// A value this codec cannot encode, or a write past the end of `out`;
    /// the channel then sends nothing.
    fn encode(&mut self, value: &T, out: &mut Writer<'_>) -> Result<(), CodecError>;

    /// Reads a value from `body`, a private copy of one message's body
    /// that starts at a 16-byte aligned address. It is untrusted input —
    /// the sender may be buggy or hostile — so every length and offset in
    /// it must be checked.
    ///
    /// # Errors
    ///
    /// A body that is not an encoding of a `T`; the channel reports it as
    /// [`Error::Corrupt`](crate::Error::Corrupt).
    fn decode<'a>(&self, body: &'a [u8]) -> Result<Self::Value<'a>, CodecError>;
}

/// Where a [`Codec`] writes a message body: the channel's reservation in
/// the ring, written through a raw pointer so that no `&mut [u8]` is ever
/// formed over memory another process maps (the first rule for shared memory in
/// `docs/ARCHITECTURE.md`). Each [`write`](Writer::write) appends.
///
/// A codec can be tried on memory of its own with [`Writer::new`]:
///
/// ```
/// use shmkit::channel::Writer;
///
/// let mut buf = [0u8; 4];
/// let mut out = Writer::new(&mut buf);
/// out.write(b"ab")?;
/// assert_eq!((out.written(), out.remaining()), (2, 2));
/// assert!(out.write(b"cde").is_err()); // past the end: nothing written
/// assert_eq!(&buf[..2], b"ab");
/// # Ok::<(), shmkit::channel::CodecError>(())
/// ```
#[derive(Debug)]
pub struct Writer<'a> {
    start: *mut u8,
    len: usize,
    written: usize,
    _region: PhantomData<&'a mut [u8]>,
}

impl<'a> Writer<'a> {
    /// A writer into `buf`, from its start.
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        // SAFETY: `buf` is `len` writable bytes, borrowed for 'a.
        unsafe { Writer::from_raw_parts(buf.as_mut_ptr(), buf.len()) }
    }

    /// A writer into the `len` bytes at `start`.
    ///
    /// # Safety
    ///
    /// - `start..start + len` is writable memory for all of `'a`;
    /// - nothing else writes it while the writer lives, unless through the
    ///   protocol the memory belongs to (a ring grant is this producer's
    ///   until committed).
    pub(crate) unsafe fn from_raw_parts(start: *mut u8, len: usize) -> Writer<'a> {
        Writer {
            start,
            len,
            written: 0,
            _region: PhantomData,
        }
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    ///
    /// If they do not fit in what is left; then nothing is written.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        if bytes.len() > self.remaining() {
            return Err(format!("an encoding longer than the {} bytes measured", self.len).into());
        }
        // SAFETY: `written + bytes.len() <= len` (checked above), so the
        // destination lies in the region `from_raw_parts` was given; `bytes`
        // is the caller's memory, which cannot overlap a region it does not
        // own.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.start.add(self.written), bytes.len())
        };
        self.written += bytes.len();
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Bytes that may still be written.
    pub fn remaining(&self) -> usize {
        self.len - self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_names_are_the_codecs_names() {
        assert_eq!(
            BUILT_IN,
            [
                <Postcard as Codec<u32>>::NAME,
                <Rkyv as Codec<u32>>::NAME,
                <Plain as Codec<u32>>::NAME
            ]
        );
    }

    #[test]
    fn each_codec_reads_what_it_wrote_and_refuses_a_short_body() {
        fn round_trip<C: Codec<u32>>(codec: &mut C) -> (Vec<u8>, Result<(), CodecError>) {
            let len = codec.encoded_len(&0xdead_beef).unwrap();
            let mut buf = vec![0u8; len];
            codec
                .encode(&0xdead_beef, &mut Writer::new(&mut buf))
                .unwrap();
            let short = codec.decode(&buf[..len - 1]).map(|_| ());
            (buf, short)
        }
        let (bytes, short) = round_trip(&mut Postcard);
        assert_eq!(
            Codec::<u32>::decode(&Postcard, &bytes).unwrap(),
            0xdead_beef
        );
        assert!(short.is_err());
        let (bytes, short) = round_trip(&mut Plain);
        assert_eq!(bytes, 0xdead_beef_u32.to_ne_bytes());
        assert_eq!(Codec::<u32>::decode(&Plain, &bytes).unwrap(), 0xdead_beef);
        assert!(short.unwrap_err().to_string().contains("not one of 4"));
        let mut rkyv = Rkyv::default();
        let (bytes, short) = round_trip(&mut rkyv);
        let mut aligned = ::rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        assert_eq!(*Codec::<u32>::decode(&rkyv, &aligned).unwrap(), 0xdead_beef);
        assert!(short.is_err());
    }
}
