//! A channel message's framing on the ring: the type tag before the body,
//! and the sender's type name on its first message. Laid out in
//! `docs/FORMAT.md` ("Typed channel messages").

use super::codec::{self, Codec, CodecError, Writer};
use crate::error::{Error, Result};
use crate::ring::ReadGrant;

/// Bytes of the type tag at the start of every message.
pub(super) const TAG_LEN: usize = 8;

/// The first word of a message that names its type: the tag follows, then
/// the name's length (u16) and the name.
const NAMED: u64 = fnv1a_64_const(b"shmkit.channel.v1 named");

/// Bytes before the name in a named message: marker, tag, name length.
const NAMED_PREFIX: usize = 8 + TAG_LEN + 2;

/// Names longer than this are cut short (on a char boundary) on the wire.
const MAX_NAME: usize = 1024;

/// What one channel's messages are: their codec and type, and the tag that
/// says so on the wire.
#[derive(Clone, Debug)]
pub(super) struct Tag {
    /// `"<codec> <type>"`, e.g. `postcard alloc::string::String`.
    pub(super) name: String,
    pub(super) value: u64,
}

impl Tag {
    pub(super) fn of<T, C: Codec<T>>() -> Tag {
        Tag::named(C::NAME, std::any::type_name::<T>())
    }

    /// The tag of type `type_name` in codec `codec`.
    pub(super) fn named(codec: &str, type_name: &str) -> Tag {
        let mut name = format!("{codec} {type_name}");
        let value = fnv1a_64(b"shmkit.channel.v1 ".iter().chain(name.as_bytes()).copied());
        if name.len() > MAX_NAME {
            let mut end = MAX_NAME;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        Tag { name, value }
    }

    /// Bytes of the framing before the body.
    pub(super) fn framing_len(&self, named: bool) -> usize {
        if named {
            NAMED_PREFIX + self.name.len()
        } else {
            TAG_LEN
        }
    }

    /// Writes the framing, [`framing_len`](Tag::framing_len) bytes.
    pub(super) fn write_framing(&self, named: bool, out: &mut Writer<'_>) -> Result<()> {
        let written = if named {
            out.write(&NAMED.to_le_bytes())
                .and_then(|()| out.write(&self.value.to_le_bytes()))
                .and_then(|()| out.write(&(self.name.len() as u16).to_le_bytes()))
                .and_then(|()| out.write(self.name.as_bytes()))
        } else {
            out.write(&self.value.to_le_bytes())
        };
        written.map_err(|err| Error::InvalidArgument(format!("channel framing: {err}")))
    }
}

/// A message's framing as found: the tag, and the sender's name for it if
/// the message carried one.
#[derive(Debug)]
pub(super) struct Framing {
    pub(super) tag: u64,
    pub(super) name: Option<String>,
}

/// Copies a received message out of the ring: its framing, then its body
/// into `body` (the receiver's private buffer, 16-byte aligned, whose
/// capacity is reused); then the grant is released, which hands the space
/// back to the producer. Every byte is copied through the grant's raw
/// pointer, and each length is read once and checked on the copy, so that
/// nothing here trusts memory another process can write.
///
/// # Errors
///
/// `Err` ([`Error::Truncated`]) if the copy ran onto a page a peer cut
/// away: the message is kept, as the ring's `recv` keeps it. `Ok(Err)`:
/// why a message is too short for its framing (it is consumed all the
/// same), for an [`Error::Corrupt`].
pub(super) fn copy_out(
    grant: ReadGrant<'_>,
    body: &mut rkyv::util::AlignedVec,
) -> Result<std::result::Result<Framing, String>> {
    // SAFETY: a committed record of `grant.len()` bytes, which the producer
    // leaves alone until the grant is dropped (ring rule 2), after this.
    let framing = unsafe { copy_framed(grant.as_ptr(), grant.len(), body) };
    grant.copied_intact()?;
    Ok(framing)
}

/// [`copy_out`] of the `len` bytes of a message at `start`, wherever it
/// lies (a ring record, a topic record).
///
/// # Safety
///
/// `start..start + len` is readable, and stays a committed message that
/// its writer leaves alone, until this returns.
pub(super) unsafe fn copy_framed(
    start: *const u8,
    len: usize,
    body: &mut rkyv::util::AlignedVec,
) -> std::result::Result<Framing, String> {
    // Copies `N` bytes at `at`, if the message has them.
    let read = |at: usize, n: usize, out: &mut [u8]| -> bool {
        if at.checked_add(n).is_some_and(|end| end <= len) {
            // SAFETY: `at..at + n` lies inside the message (checked),
            // which its writer leaves alone meanwhile (the caller's
            // promise); `out` is our own memory of `n` bytes.
            unsafe { std::ptr::copy_nonoverlapping(start.add(at), out.as_mut_ptr(), n) };
            true
        } else {
            false
        }
    };
    let short = |what: &str| format!("a message of {len} bytes is too short for its {what}");
    let mut word = [0u8; 8];
    body.clear();
    if !read(0, TAG_LEN, &mut word) {
        return Err(short("8-byte type tag"));
    }
    let first = u64::from_le_bytes(word);
    let (framing, body_at) = if first == NAMED {
        let mut prefix = [0u8; TAG_LEN + 2];
        if !read(8, prefix.len(), &mut prefix) {
            return Err(short("named framing"));
        }
        let tag = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
        let name_len = usize::from(u16::from_le_bytes([prefix[8], prefix[9]]));
        let mut name = vec![0u8; name_len];
        if !read(NAMED_PREFIX, name_len, &mut name) {
            return Err(short("type name"));
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        (
            Framing {
                tag,
                name: Some(name),
            },
            NAMED_PREFIX + name_len,
        )
    } else {
        (
            Framing {
                tag: first,
                name: None,
            },
            TAG_LEN,
        )
    };
    let body_len = len - body_at;
    body.reserve(body_len);
    // SAFETY: `body_at..len` lies inside the message (body_at <= len was
    // checked by the reads above), which its writer leaves alone meanwhile;
    // `body` has room for `body_len` bytes (reserved), which the copy
    // initialises before `set_len`.
    unsafe {
        std::ptr::copy_nonoverlapping(start.add(body_at), body.as_mut_ptr(), body_len);
        body.set_len(body_len);
    }
    Ok(framing)
}

/// How many names a receiver remembers from the wire.
const KNOWN_NAMES: usize = 16;

/// What a receiving end expects: its tag, and the tags it can name in a
/// `WrongType` (`T` in the other built-in codecs, then the types senders
/// named on the wire, the [`KNOWN_NAMES`] most recent).
#[derive(Debug)]
pub(super) struct Expected {
    pub(super) tag: Tag,
    known: Vec<Tag>,
    /// How many of `known` are the built-in codecs' (never forgotten).
    built_in: usize,
}

impl Expected {
    pub(super) fn of<T, C: Codec<T>>() -> Expected {
        let type_name = std::any::type_name::<T>();
        let known: Vec<Tag> = codec::BUILT_IN
            .into_iter()
            .filter(|&codec| codec != C::NAME)
            .map(|codec| Tag::named(codec, type_name))
            .collect();
        Expected {
            tag: Tag::of::<T, C>(),
            built_in: known.len(),
            known,
        }
    }

    /// `WrongType` for `place` unless the message's tag is the expected
    /// one, naming the sender's type as well as the message or memory
    /// allows.
    pub(super) fn check(&mut self, framing: Framing, place: impl FnOnce() -> String) -> Result<()> {
        if framing.tag == self.tag.value {
            return Ok(());
        }
        let found = match framing.name {
            Some(name) => {
                if !self.known.iter().any(|tag| tag.value == framing.tag) {
                    if self.known.len() >= self.built_in + KNOWN_NAMES {
                        self.known.remove(self.built_in);
                    }
                    self.known.push(Tag {
                        name: name.clone(),
                        value: framing.tag,
                    });
                }
                name
            }
            None => match self.known.iter().find(|tag| tag.value == framing.tag) {
                Some(tag) => tag.name.clone(),
                None => format!("of an unknown type (tag {:#018x})", framing.tag),
            },
        };
        Err(Error::WrongType {
            place: place(),
            expected: self.tag.name.clone(),
            found,
        })
    }

    /// Decodes the body copied out with the codec; `Corrupt` for `place`
    /// if it does not decode.
    pub(super) fn decode<'b, T, C: Codec<T>>(
        &self,
        codec: &mut C,
        body: &'b rkyv::util::AlignedVec,
        place: impl FnOnce() -> String,
    ) -> Result<C::Value<'b>> {
        codec.decode(body).map_err(|err| {
            Error::Corrupt(format!(
                "{}: a body of {} bytes does not decode as a {}: {err}",
                place(),
                body.len(),
                self.tag.name
            ))
        })
    }
}

/// What a sending end encodes: its codec's type tag, and whether a message
/// since the open has carried the type's name.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) tag: Tag,
    named: bool,
}

impl Outgoing {
    pub(super) fn of<T, C: Codec<T>>() -> Outgoing {
        Outgoing {
            tag: Tag::of::<T, C>(),
            named: false,
        }
    }

    /// The length of `value`'s encoding.
    pub(super) fn encoded_len<T, C: Codec<T>>(&self, codec: &mut C, value: &T) -> Result<usize> {
        codec
            .encoded_len(value)
            .map_err(|err| unencodable(&self.tag, err))
    }

    /// The message `value` goes out as, for a transport whose largest
    /// message is `max_message`: the length of its body, whether it names
    /// the type (the first message does, if that fits too), and the length
    /// of the whole message.
    pub(super) fn frame<T, C: Codec<T>>(
        &self,
        codec: &mut C,
        value: &T,
        max_message: usize,
    ) -> Result<(usize, bool, usize)> {
        let body = self.encoded_len(codec, value)?;
        let limit = max_message.saturating_sub(TAG_LEN);
        if body > limit {
            return Err(Error::TooLarge {
                what: "encoded value",
                size: body as u64,
                limit: limit as u64,
            });
        }
        let named = !self.named && self.tag.framing_len(true) + body <= max_message;
        Ok((body, named, self.tag.framing_len(named) + body))
    }

    /// Writes the framing and `value`'s body into `out`, a message of the
    /// length [`frame`](Outgoing::frame) gave with `body` and `named`;
    /// `Ok` once every byte is written (the caller then commits).
    pub(super) fn encode<T, C: Codec<T>>(
        &mut self,
        codec: &mut C,
        value: &T,
        (body, named): (usize, bool),
        out: &mut Writer<'_>,
        len: usize,
    ) -> Result<()> {
        self.tag.write_framing(named, out)?;
        match codec.encode(value, out) {
            Ok(()) if out.written() == len => {
                self.named |= named;
                Ok(())
            }
            Ok(()) => Err(Error::InvalidArgument(format!(
                "the {} codec wrote {} bytes of a {} after measuring {body}",
                C::NAME,
                out.written() - (len - body),
                std::any::type_name::<T>()
            ))),
            Err(err) => Err(unencodable(&self.tag, err)),
        }
    }
}

fn unencodable(tag: &Tag, err: CodecError) -> Error {
    Error::InvalidArgument(format!("cannot encode a {}: {err}", tag.name))
}

/// The 64-bit FNV-1a hash (Fowler, Noll, Vo; the parameters of
/// <http://www.isthe.com/chongo/tech/comp/fnv/>), written out here because
/// the tag must not change with the standard library's hasher.
fn fnv1a_64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// [`fnv1a_64`] at compile time.
const fn fnv1a_64_const(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a_64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(*b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_64_const(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn tags_differ_by_type_and_codec_and_keep_their_v1_values() {
        let a = Tag::named("postcard", "alloc::string::String");
        let b = Tag::named("postcard", "alloc::vec::Vec<u8>");
        let c = Tag::named("rkyv", "alloc::string::String");
        assert!(a.value != b.value && a.value != c.value && b.value != c.value);
        let expected = fnv1a_64(*b"shmkit.channel.v1 postcard alloc::string::String");
        assert_eq!(a.value, expected);
        assert_eq!(a.name, "postcard alloc::string::String");
        assert_ne!(a.value, NAMED);
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_NAME);
        let tag = Tag::named("x", &long);
        assert!(tag.name.len() <= MAX_NAME && tag.name.starts_with("x é"));
        assert_eq!(tag.framing_len(true), NAMED_PREFIX + tag.name.len());
    }
}
