//! Typed channels: named endpoints that carry Rust values over a [`ring`].
//!
//! # Overview
//!
//! A channel is a ring (found by name, created by whichever end opens it
//! first, see [`ring`]) whose messages are encoded values of one type. It
//! comes in two flavours:
//!
//! | flavour | sender, receiver | the receiver gets | costs on receipt |
//! |---|---|---|---|
//! | serde | [`Sender<T>`], [`Receiver<T>`] | an owned `T` | one copy, a postcard decode |
//! | zero-copy | [`ArchiveSender<T>`], [`ArchiveReceiver<T>`] | a `&Archived<T>` | one copy, a bytecheck validation |
//!
//! The serde flavour carries any `T: Serialize + DeserializeOwned` in the
//! compact [postcard] format. The zero-copy flavour carries [rkyv]
//! archives: the receiver reads the fields of the archived value where they
//! lie, without building a `T`, which pays off for large messages and for
//! receivers that look at a few fields of each.
//!
//! Both flavours end like the ring: after the sender is dropped (or
//! [`close`](Sender::close)d) the receiver gets every message sent, then
//! [`Error::Closed`]; if the sender's process dies, every message it
//! committed, then [`Error::PeerGone`]. Once both ends of a closed, drained
//! channel are dropped, its ring is removed.
//!
//! # Untrusted peers
//!
//! The ring's memory is shared with another process, which may be buggy or
//! hostile and may rewrite a message while the receiver looks at it. A check
//! made on shared bytes proves nothing about the bytes used a moment later
//! (time of check to time of use: a string validated as UTF-8 and then
//! copied into a `String` could be invalid by the time of the copy). So both
//! receivers first copy the committed message into a private buffer of
//! their own, reused from message to message, hand the ring space back, and
//! only then check and decode the copy. No other process can write that
//! buffer, so what was validated is what the caller sees. That copy is the
//! one memcpy of the zero-copy flavour; it deserialises nothing.
//!
//! A message that does not decode (postcard) or validate (bytecheck) is an
//! [`Error::Corrupt`] with the reason; it is consumed, and the next receive
//! gets the next message.
//!
//! # Wire format
//!
//! Each message is one ring record:
//!
//! ```text
//!  0                   8                                  len
//! +-------------------+------------------------------------+
//! | type tag (u64 LE) | body: postcard encoding or rkyv    |
//! |                   | archive (root at the end)          |
//! +-------------------+------------------------------------+
//! ```
//!
//! The type tag is the 64-bit FNV-1a hash of the UTF-8 string
//! `shmkit.channel.v1 <flavour> <type>`, where `<flavour>` is `postcard` or
//! `rkyv` and `<type>` is [`std::any::type_name`] of `T`, e.g.
//! `shmkit.channel.v1 postcard alloc::string::String`. A receiver whose tag
//! differs rejects the message as [`Error::Corrupt`], naming both types, so
//! that a `Receiver<Order>` on a channel of `Quote`s, or a serde receiver
//! on a zero-copy channel, fails clearly instead of decoding garbage.
//!
//! Tagging every message costs 8 bytes of ring space each, but needs no
//! state: a receiver may start or restart at any message, and a sender that
//! takes over after a crash needs no handshake. The tag catches a wrong type
//! or flavour; it is not a schema check. Both ends must name the type by the
//! same path, so define message types in a crate both programs use; two
//! definitions of a type under one path that differ in their fields are not
//! noticed by the tag (postcard then usually fails to decode, and bytecheck
//! still guarantees that the zero-copy receiver sees only valid values).
//! rkyv archives also depend on rkyv's format features (endianness, pointer
//! width), which both programs must build with alike; the defaults are
//! little-endian with 32-bit relative pointers.
//!
//! # Example: both flavours
//!
//! ```
//! use shmkit::channel::{ArchiveReceiver, ArchiveSender, Receiver, Sender};
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
//! // serde: any Serialize type, received as an owned value.
//! let serde_ring = format!("doc-channel-serde-{pid}");
//! let mut tx = Sender::<Order>::open(&serde_ring)?;
//! let mut rx = Receiver::<Order>::open(&serde_ring)?; // usually another process
//! tx.send(&order)?;
//! tx.close();
//! assert_eq!(rx.recv()?, order);
//! assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
//!
//! // zero-copy: an rkyv archive, validated, read in place.
//! let archive_ring = format!("doc-channel-archive-{pid}");
//! let mut tx = ArchiveSender::<Order>::open(&archive_ring)?;
//! let mut rx = ArchiveReceiver::<Order>::open(&archive_ring)?;
//! tx.send(&order)?;
//! tx.close();
//! let archived = rx.recv()?;
//! assert_eq!(archived.item, "tea");
//! assert_eq!(archived.quantities.len(), 2);
//! assert!(matches!(rx.recv(), Err(shmkit::Error::Closed { .. })));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! [`ring`]: crate::ring
//! [postcard]: https://docs.rs/postcard/1
//! [rkyv]: https://docs.rs/rkyv/0.8

mod archive;
mod serde;

pub use archive::{ArchiveReceiver, ArchiveSender};
pub use serde::{Receiver, Sender};

/// rkyv 0.8, re-exported: the zero-copy flavour's bounds name its traits.
///
/// A program may depend on rkyv 0.8 itself (Cargo unifies the two), or
/// derive through this path without a dependency of its own:
///
/// ```
/// use shmkit::channel::{ArchiveReceiver, ArchiveSender};
///
/// #[derive(shmkit::channel::rkyv::Archive, shmkit::channel::rkyv::Serialize)]
/// #[rkyv(crate = shmkit::channel::rkyv)]
/// struct Ping {
///     seq: u32,
/// }
///
/// let name = format!("doc-channel-rkyv-{}", std::process::id());
/// let mut tx = ArchiveSender::<Ping>::open(&name)?;
/// let mut rx = ArchiveReceiver::<Ping>::open(&name)?;
/// tx.send(&Ping { seq: 1 })?;
/// tx.close();
/// assert_eq!(rx.recv()?.seq, 1);
/// assert!(rx.recv().is_err()); // Closed
/// # Ok::<(), shmkit::Error>(())
/// ```
pub use rkyv;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ring::{Producer, ReadGrant, WriteGrant};

/// Bytes of the type tag at the start of every message.
const TAG_LEN: usize = 8;

/// How long a send may wait for room in the ring.
#[derive(Clone, Copy, Debug)]
enum Patience {
    /// Until it can go on (or the peer is gone).
    Wait,
    /// Not at all: `Full` if there is no room.
    Now,
    /// At most this long, then `Timeout`.
    Timeout(Duration),
}

/// The flavour of a channel: its body's encoding, named in the type tag.
#[derive(Clone, Copy, Debug)]
enum Flavour {
    Postcard,
    Rkyv,
}

impl Flavour {
    fn name(self) -> &'static str {
        match self {
            Flavour::Postcard => "postcard",
            Flavour::Rkyv => "rkyv",
        }
    }
}

/// What one channel's messages are: their flavour and type, and the tag
/// that says so on the wire.
#[derive(Clone, Copy, Debug)]
struct Tag {
    flavour: Flavour,
    type_name: &'static str,
    value: u64,
}

impl Tag {
    fn of<T>(flavour: Flavour) -> Tag {
        let type_name = std::any::type_name::<T>();
        let value = fnv1a_64(
            ["shmkit.channel.v1 ", flavour.name(), " ", type_name]
                .iter()
                .flat_map(|part| part.bytes()),
        );
        Tag {
            flavour,
            type_name,
            value,
        }
    }

    fn bytes(&self) -> [u8; TAG_LEN] {
        self.value.to_le_bytes()
    }

    /// Checks what [`copy_out`] found against this channel's tag.
    fn check(&self, found: std::result::Result<u64, usize>, ring: &str) -> Result<()> {
        match found {
            Ok(value) if value == self.value => Ok(()),
            Ok(value) => Err(Error::WrongType {
                ring: ring.to_owned(),
                expected: format!("{} {}", self.flavour.name(), self.type_name),
                found: format!("tag {value:#018x}"),
            }),
            Err(len) => Err(Error::Corrupt(format!(
                "ring {ring}: message of {len} bytes is shorter than the {TAG_LEN}-byte type tag"
            ))),
        }
    }
}

/// The 64-bit FNV-1a hash (Fowler, Noll, Vo; the parameters of
/// <http://www.isthe.com/chongo/tech/comp/fnv/>), written out here because
/// the tag must not change with the standard library's hasher.
fn fnv1a_64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Reserves `len` bytes (tag included) in the ring, as patient as asked.
fn grant(producer: &mut Producer, len: usize, patience: Patience) -> Result<WriteGrant<'_>> {
    match patience {
        Patience::Wait => producer.grant(len),
        Patience::Now => producer.try_grant(len),
        Patience::Timeout(timeout) => producer.grant_timeout(len, timeout),
    }
}

/// The largest body a ring of `max_message` bytes carries after the tag.
fn max_body(max_message: usize) -> usize {
    max_message.saturating_sub(TAG_LEN)
}

/// `Error::TooLarge` for a body of `size` bytes, unless it fits.
fn check_body_len(size: usize, max_message: usize) -> Result<()> {
    let limit = max_body(max_message);
    if size > limit {
        return Err(Error::TooLarge {
            what: "encoded message",
            size: size as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

/// A receiver's private buffer: a `Vec<u8>`, or an `AlignedVec` for rkyv.
trait PrivateBuffer {
    fn replace_with(&mut self, bytes: &[u8]);
}

impl PrivateBuffer for Vec<u8> {
    fn replace_with(&mut self, bytes: &[u8]) {
        self.clear();
        self.extend_from_slice(bytes);
    }
}

impl PrivateBuffer for rkyv::util::AlignedVec {
    fn replace_with(&mut self, bytes: &[u8]) {
        self.clear();
        self.extend_from_slice(bytes);
    }
}

/// Copies a received message out of the ring: its body into `body` (the
/// receiver's private buffer, whose capacity is reused), then the grant is
/// dropped, which hands the space back to the producer. Returns the tag as
/// found, or the message's length if it is too short to have one (leaving
/// `body` empty). Nothing is checked here, so that every check runs on
/// memory no other process can write.
fn copy_out(
    grant: ReadGrant<'_>,
    body: &mut impl PrivateBuffer,
) -> std::result::Result<u64, usize> {
    let len = grant.len();
    if len < TAG_LEN {
        body.replace_with(&[]);
        return Err(len);
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&grant[..TAG_LEN]);
    body.replace_with(&grant[TAG_LEN..]);
    drop(grant);
    Ok(u64::from_le_bytes(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a_64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn tags_differ_by_type_and_flavour() {
        let a = Tag::of::<String>(Flavour::Postcard).value;
        let b = Tag::of::<Vec<u8>>(Flavour::Postcard).value;
        let c = Tag::of::<String>(Flavour::Rkyv).value;
        assert!(a != b && a != c && b != c);
        let expected = fnv1a_64(*b"shmkit.channel.v1 postcard alloc::string::String");
        assert_eq!(a, expected);
    }

    #[test]
    fn a_foreign_tag_is_a_wrong_type_and_a_short_one_corrupt() {
        let tag = Tag::of::<u32>(Flavour::Postcard);
        assert!(tag.check(Ok(tag.value), "r").is_ok());
        let err = tag.check(Ok(1), "r").unwrap_err().to_string();
        assert!(err.contains("postcard u32"), "{err}");
        let err = tag.check(Err(3), "r").unwrap_err().to_string();
        assert!(err.contains("3 bytes"), "{err}");
    }
}
