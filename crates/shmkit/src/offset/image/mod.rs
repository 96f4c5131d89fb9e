//! Serialization: an ordinary heap structure with pointers (a linked list of
//! records, a tree) becomes a self-contained byte image whose links are
//! offsets, and another process rebuilds the heap structure from the image.
//!
//! # Overview
//!
//! A pointer means something only in the address space that made it. To send
//! a linked list to another process, [`to_image`] lays every node out in one
//! byte buffer and replaces each pointer by the node's [`Offset`] from the
//! start of the buffer; [`from_image`] follows those offsets and allocates a
//! fresh node for each, with pointers of the receiving process. The bytes can
//! travel through a [`Segment`](crate::Segment), a ring message, a file or a
//! pipe. The layout is drawn byte by byte in `docs/FORMAT.md`, "Offset image,
//! version 1".
//!
//! - [`Relocate`]: the types that can be written into an image and read back.
//!   shmkit implements it for numbers, `bool`, `char`, [`String`], [`Vec`],
//!   [`Box`] (a pointer: becomes an offset), [`Option`] (a nullable offset),
//!   [`LinkedList`](std::collections::LinkedList) (a real linked list of nodes in the image) and tuples;
//!   [`relocate_struct!`](crate::relocate_struct) implements it for your own
//!   structs in one line.
//! - [`ImageWriter`]: builds an image; [`Image`]: a validated, bounds-checked
//!   view of untrusted image bytes.
//!
//! # Untrusted bytes
//!
//! An image written by another process is untrusted input. Decoding never
//! panics and never reads outside the given slice, whatever its bytes:
//!
//! - every offset is checked before it is followed: not null, a multiple of
//!   8, past the header, and with the whole target inside the image;
//! - every offset followed is charged the size of its target (at least 8
//!   bytes) against a budget of the image's length. An image written by
//!   [`to_image`] never points twice to the same bytes, so it always fits; a
//!   list whose `next` offsets form a loop, or a "bomb" of subtrees that all
//!   point to the same bytes, runs out of budget and gives
//!   [`Error::Corrupt`](crate::Error::Corrupt) after work (and memory) proportional to the image's
//!   length, never more;
//! - offsets nest at most [`MAX_DEPTH`] deep while decoding, so a hostile
//!   image cannot overflow the stack. Long lists belong in a
//!   [`LinkedList`](std::collections::LinkedList), which is decoded in a loop, not by recursion;
//! - strings must be UTF-8, `bool`s 0 or 1, `char`s Unicode scalar values.
//!
//! [`Image`] reads from a `&[u8]`, whose bytes must not change while it
//! decodes. An image in shared memory is therefore copied out first and the
//! private copy decoded, which [`from_attachment`] does in one call (by
//! hand: [`Attachment::read_at`](crate::Attachment::read_at) of the header,
//! [`Image::declared_len`], then of the whole image): a `&[u8]` over bytes
//! that a peer may write at the same time is undefined behaviour, and the
//! first rule for shared memory in `docs/ARCHITECTURE.md` forbids it. Each byte of the copy
//! may be read more than once while decoding, which is sound only because
//! nobody else can change it.
//!
//! # Example: a linked list across processes
//!
//! The seed's example: process A turns the pointers of a linked list into
//! offsets and puts the image into a segment; process B maps the segment at
//! another address, copies the image out, and rebuilds the list with its own
//! pointers. (Here both "processes" are one, with two attachments; the
//! example `serialize_list` does it with two real processes.)
//!
//! ```
//! use std::collections::LinkedList;
//!
//! use shmkit::offset::image;
//! use shmkit::{Key, Mode, ReadOnly, ReadWrite, Segment};
//!
//! #[derive(Debug, PartialEq)]
//! struct Record {
//!     id: u64,
//!     name: String,
//!     tags: Vec<String>,
//! }
//! shmkit::relocate_struct!(Record { id, name, tags });
//!
//! let list: LinkedList<Record> = (1..=3)
//!     .map(|id| Record { id, name: format!("record {id}"), tags: vec!["new".into()] })
//!     .collect();
//!
//! // Process A: serialize, then store the image in a segment of its size.
//! let bytes = image::to_image(&list);
//! let key = Key::posix(&format!("/shmkit-doc-image-{}", std::process::id()))?;
//! let segment = Segment::create(&key, bytes.len() as u64, Mode::OWNER_ONLY)?;
//! segment.attach(ReadWrite)?.write_at(0, &bytes)?;
//!
//! // Process B: copy the image out of the segment (it is untrusted and a
//! // peer could still write it), then validate and decode the copy.
//! let shared = Segment::open(&key)?.attach(ReadOnly)?;
//! let received: LinkedList<Record> = image::from_attachment(&shared, 0)?;
//! assert_eq!(received, list);
//!
//! segment.remove()?;
//! # Ok::<(), shmkit::Error>(())
//! ```

use crate::error::Result;
use crate::offset::Offset;
use crate::segment::{AccessMode, Attachment};

// Numbers are stored as this machine stores them; the format says
// little-endian, and shmkit builds only for little-endian Linux.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the offset image format is little-endian"
);

/// The first 8 bytes of every image: `SHMKIMG1`.
pub const MAGIC: [u8; 8] = *b"SHMKIMG1";

/// The format version this module writes and reads.
pub const VERSION: u32 = 1;

/// The size of the image header; the first object starts here.
///
/// ```
/// let bytes = shmkit::offset::image::to_image(&7u64);
/// assert_eq!(bytes.len() as u64, shmkit::offset::image::HEADER_LEN + 8);
/// ```
pub const HEADER_LEN: u64 = 32;

/// How deeply offsets may nest while decoding: a [`Box`] inside a [`Box`]
/// inside … counts one per `Box`, a tree one per level of `Vec` children.
/// Deeper images give [`Error::Corrupt`](crate::Error::Corrupt) instead of overflowing the stack.
///
/// A string's bytes hold no offsets and do not count; a [`LinkedList`](std::collections::LinkedList) of
/// any length counts as one level. Decoding a tree of records takes about
/// 2.5 KiB of stack per level in a debug build (under 1 KiB optimized), so
/// 500 levels fit the 2 MiB stack of a spawned thread.
///
/// ```
/// use std::collections::LinkedList;
///
/// use shmkit::offset::image::{from_image, to_image, MAX_DEPTH};
///
/// struct Node {
///     value: u32,
///     next: Option<Box<Node>>,
/// }
/// shmkit::relocate_struct!(Node { value, next });
///
/// // A chain of boxes one longer than the limit.
/// let mut head = None;
/// for value in 0..MAX_DEPTH {
///     head = Some(Box::new(Node { value, next: head }));
/// }
/// let err = from_image::<Option<Box<Node>>>(&to_image(&head)).err().unwrap();
/// assert!(err.to_string().contains("nested more than"));
///
/// // The same values in a LinkedList: any length.
/// let list: LinkedList<u32> = (0..100_000).collect();
/// assert_eq!(from_image::<LinkedList<u32>>(&to_image(&list))?, list);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub const MAX_DEPTH: u32 = 500;

// Byte offsets of the header's fields (see docs/FORMAT.md).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
const FLAGS_AT: usize = 12;
const ROOT_AT: usize = 16;
const LEN_AT: usize = 24;

/// Rounds `n` up to a multiple of 8.
const fn round8(n: u64) -> u64 {
    match n.checked_add(7) {
        Some(m) => m & !7,
        None => panic!("size overflows u64"),
    }
}

/// Types that can be written into an image and rebuilt from it.
///
/// A value is stored in a *slot* of [`SIZE`](Relocate::SIZE) bytes: numbers
/// inline, little-endian; a pointer-like value (a `String`, `Vec`, `Box`,
/// `Option`, `LinkedList`) as offsets (and lengths) of data stored elsewhere
/// in the image; a struct as its fields' slots one after another, each
/// rounded up to 8 bytes. [`ImageWriter`] hands [`encode`](Relocate::encode)
/// a zeroed slot to fill; [`decode`](Relocate::decode) reads one back
/// through an [`Image`], which checks every read.
///
/// # Implementing it for your own types
///
/// For a struct whose fields are all `Relocate`, use
/// [`relocate_struct!`](crate::relocate_struct):
///
/// ```
/// use shmkit::relocate_struct;
///
/// #[derive(Debug, PartialEq)]
/// struct Record {
///     id: u64,
///     name: String,
///     tags: Vec<String>,
/// }
/// relocate_struct!(Record { id, name, tags });
///
/// // A tree: each node owns its children through pointers (a Vec).
/// #[derive(Debug, PartialEq)]
/// struct Tree {
///     value: Record,
///     children: Vec<Tree>,
/// }
/// relocate_struct!(Tree { value, children });
///
/// // The seed's singly linked list: `next` is a pointer, or null.
/// #[derive(Debug, PartialEq)]
/// struct Node {
///     record: Record,
///     next: Option<Box<Node>>,
/// }
/// relocate_struct!(Node { record, next });
///
/// let record = |id| Record { id, name: format!("r{id}"), tags: vec![] };
/// let tree = Tree {
///     value: record(1),
///     children: vec![Tree { value: record(2), children: vec![] }],
/// };
/// let list = Node { record: record(1), next: Some(Box::new(Node { record: record(2), next: None })) };
///
/// use shmkit::offset::image::{from_image, to_image};
/// assert_eq!(from_image::<Tree>(&to_image(&tree))?, tree);
/// assert_eq!(from_image::<Node>(&to_image(&list))?, list);
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// A chain of `Option<Box<Node>>` is decoded by recursion, one level per
/// node, so it may be a little under [`MAX_DEPTH`] nodes long (and Rust
/// drops such a chain recursively too). For long lists use [`LinkedList`](std::collections::LinkedList),
/// which is encoded as the same kind of chain of nodes and decoded in a
/// loop.
///
/// The macro writes exactly this impl, which you can also write by hand
/// (for example to leave a field out, or to check a value while decoding):
///
/// ```
/// use shmkit::offset::image::{Fields, Image, ImageWriter, Relocate};
/// use shmkit::offset::Offset;
///
/// struct Record {
///     id: u64,
///     name: String,
///     tags: Vec<String>,
/// }
///
/// impl Relocate for Record {
///     const SIZE: u64 = Fields::new().field::<u64>().field::<String>().field::<Vec<String>>().size();
///
///     fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
///         let mut fields = Fields::at(at);
///         fields.encode(w, &self.id);
///         fields.encode(w, &self.name);
///         fields.encode(w, &self.tags);
///     }
///
///     fn decode(image: &Image<'_>, at: Offset<Self>) -> shmkit::Result<Self> {
///         let mut fields = Fields::at(at);
///         Ok(Record {
///             id: fields.decode(image)?,
///             name: fields.decode(image)?,
///             tags: fields.decode(image)?,
///         })
///     }
/// }
///
/// assert_eq!(Record::SIZE, 8 + 16 + 16);
/// ```
pub trait Relocate: Sized {
    /// The size of this type's slot in bytes: 1, 2, 4 or 8 for numbers,
    /// `bool` and `char`; a multiple of 8 for everything else. A slot is aligned to the largest
    /// power of two up to 8 that divides its size.
    const SIZE: u64;

    /// Whether the slot is exactly one offset (8 bytes) that is never 0 for
    /// a valid value, as for [`Box`]. An `Option` of such a type reuses the
    /// offset and stores `None` as 0, so `Option<Box<Node>>` is one nullable
    /// offset, as in a C linked list. Leave it `false` for anything else.
    const IS_OFFSET: bool = false;

    /// Writes `self` into its zeroed slot at `at`, appending whatever it
    /// points to (strings, elements, boxed values) to `w`.
    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>);

    /// Reads a value back from its slot at `at`, following offsets with
    /// [`Image::follow`] and friends, which check and charge each one.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the bytes do not describe a valid value.
    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self>;
}

/// Serializes `value` into a new image: the header, then `value`'s slot
/// (the root), then everything it points to.
///
/// ```
/// use shmkit::offset::image::{from_image, to_image};
///
/// let words = vec!["offsets".to_owned(), "not".to_owned(), "pointers".to_owned()];
/// let bytes = to_image(&words);
/// assert_eq!(&bytes[..8], b"SHMKIMG1");
/// assert_eq!(from_image::<Vec<String>>(&bytes)?, words);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn to_image<T: Relocate>(value: &T) -> Vec<u8> {
    let mut w = ImageWriter::new();
    let root = w.push_value(value);
    w.finish(root)
}

/// Validates the image in `bytes` and rebuilds its root value.
///
/// # Errors
///
/// [`Error::Corrupt`](crate::Error::Corrupt) if the header is not that of a version-1 image of
/// exactly `bytes.len()` bytes, or if the root is not a valid `T` (see the
/// module documentation for what is checked). Never panics.
///
/// ```
/// use shmkit::offset::image::{from_image, to_image};
/// use shmkit::Error;
///
/// let mut bytes = to_image(&"hello".to_owned());
/// assert_eq!(from_image::<String>(&bytes)?, "hello");
///
/// let last = bytes.len() - 8; // the string's bytes
/// bytes[last] = 0xff;         // not UTF-8
/// assert!(matches!(from_image::<String>(&bytes), Err(Error::Corrupt(_))));
/// assert!(matches!(from_image::<String>(b"junk"), Err(Error::Corrupt(_))));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn from_image<T: Relocate>(bytes: &[u8]) -> Result<T> {
    Image::new(bytes)?.root()
}

/// Reads the image that starts at byte `offset` of `attachment` and
/// rebuilds its root value, in one call: copies the header out, checks it
/// and the length it declares against the segment, copies the whole image
/// into private memory (a peer may still write the segment), and decodes
/// the copy with [`from_image`].
///
/// # Errors
///
/// [`Error::OutOfBounds`](crate::Error::OutOfBounds) if the header, or the
/// image of the length it declares, does not fit in the segment after
/// `offset`; [`Error::Corrupt`](crate::Error::Corrupt) as for
/// [`from_image`] (also when a peer changes the header between the two
/// copies).
///
/// ```
/// use shmkit::offset::image::{from_attachment, to_image};
/// use shmkit::{Key, Mode, ReadOnly, ReadWrite, Segment};
///
/// let words = vec!["one".to_owned(), "call".to_owned()];
/// let segment = Segment::create(&Key::PRIVATE, 4096, Mode::OWNER_ONLY)?;
/// segment.attach(ReadWrite)?.write_at(64, &to_image(&words))?;
///
/// let shared = segment.attach(ReadOnly)?; // usually another process
/// assert_eq!(from_attachment::<Vec<String>, _>(&shared, 64)?, words);
/// assert!(from_attachment::<Vec<String>, _>(&shared, 0).is_err()); // no image there
/// segment.remove()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn from_attachment<T: Relocate, A: AccessMode>(
    attachment: &Attachment<A>,
    offset: usize,
) -> Result<T> {
    let mut header = [0u8; HEADER_LEN as usize];
    attachment.read_at(offset, &mut header)?;
    let len = Image::declared_len(&header)?;
    // The declared length is untrusted: check it against the segment before
    // allocating that much.
    let available = attachment.len().saturating_sub(offset) as u64;
    if len > available {
        return Err(crate::Error::OutOfBounds {
            offset: offset as u64,
            len,
            size: attachment.len() as u64,
        });
    }
    let mut copy = vec![0u8; len as usize];
    attachment.read_at(offset, &mut copy)?;
    from_image(&copy)
}

mod fields;
mod reader;
mod std_impls;
mod writer;

pub use fields::Fields;
pub use reader::Image;
pub use writer::ImageWriter;

#[cfg(test)]
mod tests {
    use std::collections::LinkedList;

    use super::*;

    #[test]
    fn layout_of_a_list_of_two() {
        let list: LinkedList<u32> = [1, 2].into_iter().collect();
        let bytes = to_image(&list);
        // header, {head, len}, node {next, value}, node {next, value}
        assert_eq!(bytes.len(), 32 + 16 + 16 + 16);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(word(16), 32, "root");
        assert_eq!(word(24), 80, "length");
        assert_eq!((word(32), word(40)), (48, 2), "head, len");
        assert_eq!((word(48), word(56)), (64, 1), "first node");
        assert_eq!((word(64), word(72)), (0, 2), "last node");
    }

    #[test]
    fn depth_limit_fits_a_small_stack() {
        // A chain of exactly MAX_DEPTH - 1 boxes below the root decodes...
        type Chain = Option<Box<Link>>;
        struct Link(Chain);
        impl Relocate for Link {
            const SIZE: u64 = 8;
            fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
                self.0.encode(w, at.cast())
            }
            fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
                Chain::decode(image, at.cast()).map(Link)
            }
        }
        fn chain(n: u32) -> Link {
            let mut link = Link(None);
            for _ in 0..n {
                link = Link(Some(Box::new(link)));
            }
            link
        }
        fn unchain(mut link: Link) {
            while let Some(next) = link.0.take() {
                link = *next;
            }
        }
        // ...in a thread with a small stack, even in a debug build.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let ok = to_image(&chain(MAX_DEPTH - 1));
                unchain(from_image::<Link>(&ok).unwrap());
                let deep = to_image(&chain(MAX_DEPTH));
                let err = from_image::<Link>(&deep).err().unwrap().to_string();
                assert!(err.contains("nested more than"), "{err}");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
