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
//!   [`LinkedList`] (a real linked list of nodes in the image) and tuples;
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
//!   [`Error::Corrupt`] after work (and memory) proportional to the image's
//!   length, never more;
//! - offsets nest at most [`MAX_DEPTH`] deep while decoding, so a hostile
//!   image cannot overflow the stack. Long lists belong in a
//!   [`LinkedList`], which is decoded in a loop, not by recursion;
//! - strings must be UTF-8, `bool`s 0 or 1, `char`s Unicode scalar values.
//!
//! [`Image`] reads from a `&[u8]`, whose bytes must not change while it
//! decodes. An image in shared memory is therefore copied out first, with
//! [`Attachment::read_at`](crate::Attachment::read_at) (header first, to
//! learn the length: [`Image::declared_len`]), and the private copy
//! decoded: a `&[u8]` over bytes that a peer may write at the same time is
//! undefined behaviour, and `DESIGN.md` forbids it. Each byte of the copy
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
//! use shmkit::offset::image::{self, Image};
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
//! // peer could still write it), then validate and decode it.
//! let shared = Segment::open(&key)?.attach(ReadOnly)?;
//! let mut header = [0; image::HEADER_LEN as usize];
//! shared.read_at(0, &mut header)?;
//! let mut copy = vec![0; Image::declared_len(&header)? as usize];
//! shared.read_at(0, &mut copy)?;
//! let received: LinkedList<Record> = image::from_image(&copy)?;
//! assert_eq!(received, list);
//!
//! segment.remove()?;
//! # Ok::<(), shmkit::Error>(())
//! ```

use std::any::type_name;
use std::cell::Cell;
use std::collections::LinkedList;

use crate::error::{Error, Result};
use crate::offset::ptr::{read_plain, write_plain};
use crate::offset::{Offset, Plain};

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
/// Deeper images give [`Error::Corrupt`] instead of overflowing the stack.
///
/// A string's bytes hold no offsets and do not count; a [`LinkedList`] of
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
/// drops such a chain recursively too). For long lists use [`LinkedList`],
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
    /// [`Error::Corrupt`] if the bytes do not describe a valid value.
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
/// [`Error::Corrupt`] if the header is not that of a version-1 image of
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

/// Builds an image: a header, then values appended at offsets that are
/// multiples of 8.
///
/// [`to_image`] is all most programs need; use the writer directly to build
/// a structure piece by piece, e.g. to fill in back-links with
/// [`patch`](ImageWriter::patch). Offsets count from the start of the image,
/// so the header's 32 bytes make offset 0 (null) never a valid object.
///
/// Every allocation (`push*`, [`reserve`](ImageWriter::reserve)) starts at a
/// multiple of 8, is zero-filled and takes at least 8 bytes, rounded up to
/// a multiple of 8: no two allocations share a byte.
///
/// ```
/// use shmkit::offset::image::{Image, ImageWriter};
/// use shmkit::offset::Offset;
///
/// // A two-node circular list of u64s, built by hand with a back-link.
/// let mut w = ImageWriter::new();
/// let first = w.push([0u64, 10]); // {next, value}
/// let second = w.push([first.get(), 20]);
/// w.patch(first.cast::<u64>(), second.get());
/// let bytes = w.finish(first);
///
/// let image = Image::new(&bytes)?;
/// let next = image.read(Offset::<u64>::new(image.root_offset()))?;
/// assert_eq!(image.read(Offset::<u64>::new(next + 8))?, 20);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageWriter {
    bytes: Vec<u8>,
}

impl Default for ImageWriter {
    fn default() -> Self {
        ImageWriter::new()
    }
}

impl ImageWriter {
    /// An image holding only its header.
    ///
    /// ```
    /// let w = shmkit::offset::image::ImageWriter::new();
    /// assert_eq!(w.len(), 32);
    /// ```
    pub fn new() -> ImageWriter {
        let mut bytes = vec![0; HEADER_LEN as usize];
        bytes[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&MAGIC);
        bytes[VERSION_AT..VERSION_AT + 4].copy_from_slice(&VERSION.to_le_bytes());
        ImageWriter { bytes }
    }

    /// The number of bytes written so far, header included: the offset the
    /// next allocation gets (always a multiple of 8).
    ///
    /// ```
    /// let mut w = shmkit::offset::image::ImageWriter::new();
    /// w.push_bytes(b"abc");
    /// assert_eq!(w.len(), 40);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty: the header is there
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Appends `size` zero bytes (at least 8, rounded up to a multiple of 8)
    /// and returns the offset of the first.
    fn alloc(&mut self, size: u64) -> u64 {
        let at = self.len();
        let size = round8(size).max(8);
        let end = at
            .checked_add(size)
            .and_then(|end| usize::try_from(end).ok())
            .expect("image larger than the address space");
        self.bytes.resize(end, 0);
        at
    }

    /// Appends zeroed room for `count` slots of `T`, one after another
    /// (`count * T::SIZE` bytes), and returns the offset of the first. Fill
    /// each with [`Relocate::encode`]. Used to build structures whose links
    /// must point forward, such as a list written node by node.
    ///
    /// # Panics
    ///
    /// If the size overflows the address space.
    ///
    /// ```
    /// use shmkit::offset::image::{from_image, ImageWriter, Relocate};
    ///
    /// let mut w = ImageWriter::new();
    /// let pair = w.reserve::<(u8, String)>(1);
    /// (7u8, "seven".to_owned()).encode(&mut w, pair);
    /// let bytes = w.finish(pair);
    /// assert_eq!(from_image::<(u8, String)>(&bytes)?, (7, "seven".to_owned()));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve<T: Relocate>(&mut self, count: u64) -> Offset<T> {
        let size = count
            .checked_mul(T::SIZE)
            .expect("image larger than the address space");
        Offset::new(self.alloc(size))
    }

    /// Appends a plain value and returns its offset.
    ///
    /// ```
    /// let mut w = shmkit::offset::image::ImageWriter::new();
    /// let at = w.push(0x1234u32);
    /// assert_eq!(at.get(), 32);
    /// assert_eq!(w.push(1u8).get(), 40, "every allocation starts at a multiple of 8");
    /// ```
    pub fn push<T: Plain>(&mut self, value: T) -> Offset<T> {
        let at = Offset::new(self.alloc(std::mem::size_of::<T>() as u64));
        self.patch(at, value);
        at
    }

    /// Appends raw bytes and returns the offset of the first.
    ///
    /// ```
    /// let mut w = shmkit::offset::image::ImageWriter::new();
    /// let at = w.push_bytes(b"raw");
    /// let bytes = w.finish(at);
    /// let image = shmkit::offset::image::Image::new(&bytes)?;
    /// assert_eq!(image.bytes(at, 3)?, b"raw");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Offset<u8> {
        let at = self.alloc(bytes.len() as u64) as usize;
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        Offset::new(at as u64)
    }

    /// Appends the slot of `value`, then whatever it points to, and returns
    /// the slot's offset: what a [`Box`] does.
    ///
    /// ```
    /// use shmkit::offset::image::{from_image, ImageWriter};
    ///
    /// let mut w = ImageWriter::new();
    /// let root = w.push_value(&vec![1u16, 2, 3]);
    /// assert_eq!(from_image::<Vec<u16>>(&w.finish(root))?, [1, 2, 3]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn push_value<T: Relocate>(&mut self, value: &T) -> Offset<T> {
        let at = self.reserve::<T>(1);
        value.encode(self, at);
        at
    }

    /// Appends the slots of `values` back to back (an array), then whatever
    /// they point to, and returns the first slot's offset: what a [`Vec`]
    /// does.
    ///
    /// ```
    /// use shmkit::offset::image::{Image, ImageWriter};
    ///
    /// let mut w = ImageWriter::new();
    /// let root = w.push_slice(&["a".to_owned(), "b".to_owned()]);
    /// let bytes = w.finish(root);
    /// assert_eq!(Image::new(&bytes)?.follow_slice(root, 2)?, ["a", "b"]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn push_slice<T: Relocate>(&mut self, values: &[T]) -> Offset<T> {
        let first = self.reserve::<T>(values.len() as u64);
        for (i, value) in values.iter().enumerate() {
            value.encode(self, Offset::new(first.get() + i as u64 * T::SIZE));
        }
        first
    }

    /// Overwrites the plain value at `at`, which this writer allocated: to
    /// fill in a slot, or a link whose target was written later.
    ///
    /// # Panics
    ///
    /// If `at` is inside the header, misaligned for `T`, or not inside what
    /// was written: a bug in the calling code, never caused by data.
    ///
    /// ```
    /// let mut w = shmkit::offset::image::ImageWriter::new();
    /// let at = w.push(1u64);
    /// w.patch(at, 2);
    /// let bytes = w.finish(at);
    /// assert_eq!(shmkit::offset::image::from_image::<u64>(&bytes)?, 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn patch<T: Plain>(&mut self, at: Offset<T>, value: T) {
        assert!(
            at.get() >= HEADER_LEN,
            "patch at offset {} would overwrite the image header",
            at.get()
        );
        if let Err(err) = write_plain(&mut self.bytes, at, value) {
            panic!("ImageWriter::patch: {err}");
        }
    }

    /// Completes the header with the root's offset and the total length and
    /// returns the image.
    ///
    /// ```
    /// use shmkit::offset::image::{Image, ImageWriter};
    ///
    /// let mut w = ImageWriter::new();
    /// let root = w.push_value(&42u32);
    /// let bytes = w.finish(root);
    /// assert_eq!(Image::new(&bytes)?.root::<u32>()?, 42);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn finish<T>(mut self, root: Offset<T>) -> Vec<u8> {
        let len = self.len();
        self.bytes[ROOT_AT..ROOT_AT + 8].copy_from_slice(&root.get().to_le_bytes());
        self.bytes[LEN_AT..LEN_AT + 8].copy_from_slice(&len.to_le_bytes());
        self.bytes
    }
}

/// A validated view of image bytes, with checked reads and the work budget
/// that keeps decoding of hostile images bounded.
///
/// [`Image::new`] checks the header; every later read checks its own
/// bounds. An `Image` keeps its budget in a [`Cell`], so it is not `Sync`:
/// make one per thread, they are cheap.
///
/// ```
/// use shmkit::offset::image::{to_image, Image};
///
/// let bytes = to_image(&(3u32, "three".to_owned()));
/// let image = Image::new(&bytes)?;
/// assert_eq!(image.len(), bytes.len());
/// assert_eq!(image.root::<(u32, String)>()?, (3, "three".to_owned()));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    root: u64,
    /// Bytes that offsets may still be charged for in this decode.
    budget: Cell<u64>,
    /// Offsets being followed right now (the recursion depth).
    depth: Cell<u32>,
}

/// A type's name without module paths, for messages: `Vec<String>`, not
/// `alloc::vec::Vec<alloc::string::String>`.
fn short_name(full: &str) -> String {
    let mut short = String::with_capacity(full.len());
    let mut word_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            short.truncate(word_start); // drop the path segment just read
        } else {
            short.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                word_start = short.len();
            }
        }
    }
    short
}

/// Reads the u32 at `at` of the header (which is at least 32 bytes).
fn header_u32(header: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&header[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Reads the u64 at `at` of the header (which is at least 32 bytes).
fn header_u64(header: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(word)
}

impl<'a> Image<'a> {
    /// Checks the header of the image in `bytes`: magic, version, flags,
    /// that the length field equals `bytes.len()`, and that the root offset
    /// is a multiple of 8 inside the image.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] naming the first check that fails.
    ///
    /// ```
    /// use shmkit::offset::image::{to_image, Image};
    ///
    /// let bytes = to_image(&1u64);
    /// assert!(Image::new(&bytes).is_ok());
    /// assert!(Image::new(&bytes[..bytes.len() - 1]).is_err(), "length field is off");
    /// ```
    pub fn new(bytes: &'a [u8]) -> Result<Image<'a>> {
        let declared = Image::declared_len(bytes)?;
        if declared != bytes.len() as u64 {
            return Err(Error::Corrupt(format!(
                "image header says the image is {declared} bytes, but {} bytes were given",
                bytes.len()
            )));
        }
        let root = header_u64(bytes, ROOT_AT);
        if root == 0 {
            return Err(Error::Corrupt("image has a null root offset".into()));
        }
        if !root.is_multiple_of(8) || root < HEADER_LEN || root > declared {
            return Err(Error::Corrupt(format!(
                "image root offset {root} is not a multiple of 8 between {HEADER_LEN} and {declared}"
            )));
        }
        Ok(Image {
            bytes,
            root,
            budget: Cell::new(declared),
            depth: Cell::new(0),
        })
    }

    /// Checks the magic, version and flags in the first [`HEADER_LEN`]
    /// bytes of an image and returns the image's total length, as the
    /// header states it: how many bytes to copy out of shared memory before
    /// calling [`Image::new`]. `header` may be longer than the header.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if `header` is shorter than [`HEADER_LEN`], or
    /// the magic, version or flags are wrong, or the length is less than
    /// [`HEADER_LEN`].
    ///
    /// ```
    /// use shmkit::offset::image::{to_image, Image, HEADER_LEN};
    ///
    /// let bytes = to_image(&"a string".to_owned());
    /// let len = Image::declared_len(&bytes[..HEADER_LEN as usize])?;
    /// assert_eq!(len, bytes.len() as u64);
    /// assert!(Image::declared_len(b"SHMKIMG1 but too short").is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn declared_len(header: &[u8]) -> Result<u64> {
        if header.len() < HEADER_LEN as usize {
            return Err(Error::Corrupt(format!(
                "image of {} bytes is shorter than its {HEADER_LEN}-byte header",
                header.len()
            )));
        }
        let magic = &header[MAGIC_AT..MAGIC_AT + 8];
        if magic != MAGIC {
            return Err(Error::Corrupt(format!(
                "not a shmkit image: it starts with \"{}\", not \"SHMKIMG1\"",
                magic.escape_ascii()
            )));
        }
        let version = header_u32(header, VERSION_AT);
        if version != VERSION {
            return Err(Error::Corrupt(format!(
                "image has format version {version}; this shmkit reads version {VERSION}"
            )));
        }
        let flags = header_u32(header, FLAGS_AT);
        if flags != 0 {
            return Err(Error::Corrupt(format!(
                "image has flags {flags:#x}; this shmkit knows none"
            )));
        }
        let len = header_u64(header, LEN_AT);
        if len < HEADER_LEN {
            return Err(Error::Corrupt(format!(
                "image header says the image is {len} bytes, less than its header"
            )));
        }
        Ok(len)
    }

    /// The image's length in bytes, header included.
    #[allow(clippy::len_without_is_empty)] // never empty: the header is there
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The offset of the root value, from the header.
    pub fn root_offset(&self) -> u64 {
        self.root
    }

    /// The image's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Decodes the root value as a `T`, with a fresh budget.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the bytes are not a valid `T`.
    ///
    /// ```
    /// use shmkit::offset::image::{to_image, Image};
    ///
    /// let bytes = to_image(&Some(Box::new(-5i32)));
    /// assert_eq!(Image::new(&bytes)?.root::<Option<Box<i32>>>()?, Some(Box::new(-5)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn root<T: Relocate>(&self) -> Result<T> {
        self.budget.set(self.bytes.len() as u64);
        self.depth.set(0);
        self.follow(Offset::new(self.root))
    }

    /// Copies the plain value at `at` out of the image, checked as
    /// [`Offset::check`] does (not null, aligned, inside). Not charged to
    /// the budget: for reading a slot, not for following a link.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the check fails.
    ///
    /// ```
    /// use shmkit::offset::image::{to_image, Image, HEADER_LEN};
    /// use shmkit::offset::Offset;
    ///
    /// let bytes = to_image(&0xabcdu64);
    /// let image = Image::new(&bytes)?;
    /// assert_eq!(image.read(Offset::<u64>::new(HEADER_LEN))?, 0xabcd);
    /// assert!(image.read(Offset::<u64>::new(HEADER_LEN + 8)).is_err(), "past the end");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn read<T: Plain>(&self, at: Offset<T>) -> Result<T> {
        read_plain(self.bytes, at)
    }

    /// The `len` bytes at `at`, checked to lie inside the image (an empty
    /// slice for `len` 0, whatever `at`). Not charged to the budget.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if `at` is null or the range is not inside.
    ///
    /// ```
    /// use shmkit::offset::image::{to_image, Image, HEADER_LEN};
    /// use shmkit::offset::Offset;
    ///
    /// let bytes = to_image(&7u8);
    /// let image = Image::new(&bytes)?;
    /// assert_eq!(image.bytes(Offset::new(HEADER_LEN), 1)?, [7]);
    /// assert!(image.bytes(Offset::new(HEADER_LEN), 100).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn bytes(&self, at: Offset<u8>, len: u64) -> Result<&'a [u8]> {
        if len == 0 {
            return Ok(&[]);
        }
        if at.is_null() {
            return Err(Error::Corrupt(format!(
                "null offset where {len} bytes were expected"
            )));
        }
        match at.get().checked_add(len) {
            Some(end) if end <= self.bytes.len() as u64 => {
                Ok(&self.bytes[at.get() as usize..end as usize])
            }
            _ => Err(Error::Corrupt(format!(
                "bytes {}..{} are outside the {}-byte image",
                at.get(),
                at.get() as u128 + len as u128,
                self.bytes.len()
            ))),
        }
    }

    /// Follows the offset of a `T` stored elsewhere in the image (the
    /// target of a [`Box`], say) and decodes it.
    ///
    /// The offset must not be null, must be a multiple of 8 past the header,
    /// and the slot must lie inside the image. Its size (at least 8 bytes)
    /// is charged to the budget, and the nesting depth rises by one while
    /// `T` decodes.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a check fails, the budget runs out (a cycle or
    /// shared data), the depth passes [`MAX_DEPTH`], or `T` is invalid.
    ///
    /// ```
    /// use shmkit::offset::image::{Image, ImageWriter};
    ///
    /// let mut w = ImageWriter::new();
    /// let name = w.push_value(&"Ada".to_owned());
    /// let bytes = w.finish(name);
    /// let image = Image::new(&bytes)?;
    /// assert_eq!(image.follow(name)?, "Ada");
    /// assert!(image.follow(shmkit::offset::Offset::<String>::NULL).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn follow<T: Relocate>(&self, at: Offset<T>) -> Result<T> {
        self.enter(at.get(), T::SIZE, T::SIZE, type_name::<T>())?;
        let value = T::decode(self, at);
        self.leave();
        value
    }

    /// Follows the offset of an array of `len` slots of `T` and decodes
    /// them, as [`follow`](Image::follow) does for one (`len` 0 gives an
    /// empty `Vec` whatever the offset). The whole array is charged at once,
    /// before anything is allocated, so a hostile length costs nothing.
    ///
    /// # Errors
    ///
    /// As [`follow`](Image::follow).
    ///
    /// ```
    /// use shmkit::offset::image::{Image, ImageWriter};
    ///
    /// let mut w = ImageWriter::new();
    /// let first = w.push_slice(&[10u32, 20, 30]);
    /// let bytes = w.finish(first);
    /// let image = Image::new(&bytes)?;
    /// assert_eq!(image.follow_slice(first, 3)?, [10, 20, 30]);
    /// assert!(image.follow_slice(first, 1 << 40).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn follow_slice<T: Relocate>(&self, at: Offset<T>, len: u64) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let too_long = || {
            Error::Corrupt(format!(
                "array of {len} {} at offset {} is larger than the image",
                short_name(type_name::<T>()),
                at.get()
            ))
        };
        let extent = len.checked_mul(T::SIZE).ok_or_else(too_long)?;
        // Zero-sized slots still cost a byte each, so the loop below is
        // bounded by the budget.
        let cost = len.checked_mul(T::SIZE.max(1)).ok_or_else(too_long)?;
        self.enter(at.get(), extent, cost, type_name::<[T]>())?;
        let values = (|| {
            // `len` <= `cost` <= the image's length: charged above.
            let mut values = Vec::with_capacity(len as usize);
            for i in 0..len {
                values.push(T::decode(self, Offset::new(at.get() + i * T::SIZE))?);
            }
            Ok(values)
        })();
        self.leave();
        values
    }

    /// Checks the target of an offset about to be followed (`extent` bytes
    /// at `at`) and charges `cost` bytes, rounded up to 8 and at least 8, to
    /// the budget.
    fn charge(&self, at: u64, extent: u64, cost: u64, what: &str) -> Result<()> {
        let len = self.bytes.len() as u64;
        if at == 0 {
            return Err(Error::Corrupt(format!(
                "null offset where {} was expected",
                short_name(what)
            )));
        }
        if !at.is_multiple_of(8) {
            return Err(Error::Corrupt(format!(
                "offset {at} of {} is not a multiple of 8",
                short_name(what)
            )));
        }
        if at < HEADER_LEN {
            return Err(Error::Corrupt(format!(
                "offset {at} of {} points into the image header",
                short_name(what)
            )));
        }
        match at.checked_add(extent) {
            Some(end) if end <= len => {}
            _ => {
                return Err(Error::Corrupt(format!(
                    "{} of {extent} bytes at offset {at} runs past the end of the {len}-byte image",
                    short_name(what)
                )))
            }
        }
        // Rounded as the writer rounds allocations; saturating, so a huge
        // cost stays huge and fails below.
        let cost = (cost.saturating_add(7) & !7).max(8);
        let left = self.budget.get();
        if cost > left {
            return Err(Error::Corrupt(format!(
                "decoding {} at offset {at} would read more than the image's {len} bytes: \
                 its offsets form a cycle or point to shared data",
                short_name(what)
            )));
        }
        self.budget.set(left - cost);
        Ok(())
    }

    /// As [`charge`](Image::charge), then enters one level deeper, for an
    /// offset whose target may hold offsets in turn. Every successful call
    /// is paired with one [`leave`](Image::leave).
    fn enter(&self, at: u64, extent: u64, cost: u64, what: &str) -> Result<()> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(Error::Corrupt(format!(
                "{} at offset {at} is nested more than {MAX_DEPTH} offsets deep \
                 (a cycle, or a chain of boxes that should be a LinkedList)",
                short_name(what)
            )));
        }
        self.charge(at, extent, cost, what)?;
        self.depth.set(depth + 1);
        Ok(())
    }

    /// Leaves the level [`enter`](Image::enter) entered.
    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}

/// The layout of a struct's slot, and a cursor over its fields, for
/// implementing [`Relocate`] by hand (see there for a complete impl;
/// [`relocate_struct!`](crate::relocate_struct) uses it too).
///
/// Fields are laid out in order, each slot rounded up to 8 bytes, so every
/// field starts at a multiple of 8 from the struct's start and a struct's
/// size is a multiple of 8.
///
/// ```
/// use shmkit::offset::image::Fields;
///
/// // {u8, padding to 8} {u64} {u16, padding to 8}
/// assert_eq!(Fields::new().field::<u8>().field::<u64>().field::<u16>().size(), 24);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    start: u64,
    next: u64,
}

impl Fields {
    /// An empty layout, to add fields to with [`field`](Fields::field) when
    /// computing [`Relocate::SIZE`].
    pub const fn new() -> Fields {
        Fields { start: 0, next: 0 }
    }

    /// A cursor at the first field of the struct whose slot is at `slot`,
    /// for [`encode`](Fields::encode) and [`decode`](Fields::decode).
    pub const fn at<S>(slot: Offset<S>) -> Fields {
        Fields {
            start: slot.get(),
            next: slot.get(),
        }
    }

    /// The layout with one more field, of type `T`, at the end.
    pub const fn field<T: Relocate>(self) -> Fields {
        Fields {
            start: self.start,
            next: self.next + round8(T::SIZE),
        }
    }

    /// As [`field`](Fields::field), with the field's type taken from a
    /// function that borrows it from the struct `S` (such as
    /// `|record: &Record| &record.id`), so that a macro need not name it.
    pub const fn field_of<S, T: Relocate>(self, _field: for<'s> fn(&'s S) -> &'s T) -> Fields {
        self.field::<T>()
    }

    /// The size of the fields so far: the struct's [`Relocate::SIZE`].
    pub const fn size(self) -> u64 {
        self.next - self.start
    }

    /// Encodes `value` into the next field's slot and moves past it.
    pub fn encode<T: Relocate>(&mut self, w: &mut ImageWriter, value: &T) {
        value.encode(w, Offset::new(self.next));
        self.next += round8(T::SIZE);
    }

    /// Decodes the next field's slot as a `T` and moves past it.
    ///
    /// # Errors
    ///
    /// As [`Relocate::decode`] for `T`.
    pub fn decode<T: Relocate>(&mut self, image: &Image<'_>) -> Result<T> {
        let at = Offset::new(self.next);
        // Saturating: a cursor over a hostile offset fails its reads, it
        // does not overflow.
        self.next = self.next.saturating_add(round8(T::SIZE));
        T::decode(image, at)
    }
}

impl Default for Fields {
    fn default() -> Self {
        Fields::new()
    }
}

/// Implements [`Relocate`](crate::offset::image::Relocate) for a struct
/// whose fields all implement it: `relocate_struct!(Name { field, … })`.
///
/// List every field (the compiler says if one is missing), in any order:
/// the slot holds them in the order listed, each rounded up to 8 bytes. The
/// struct may not be generic.
///
/// ```
/// use std::collections::LinkedList;
///
/// use shmkit::offset::image::{from_image, to_image, Relocate};
///
/// #[derive(Debug, PartialEq)]
/// struct Point {
///     x: f64,
///     y: f64,
///     label: Option<String>,
/// }
/// shmkit::relocate_struct!(Point { x, y, label });
/// assert_eq!(Point::SIZE, 24);
///
/// let points: LinkedList<Point> = [
///     Point { x: 0.0, y: 1.5, label: None },
///     Point { x: 2.0, y: -1.0, label: Some("peak".into()) },
/// ]
/// .into_iter()
/// .collect();
/// assert_eq!(from_image::<LinkedList<Point>>(&to_image(&points))?, points);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[macro_export]
macro_rules! relocate_struct {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::offset::image::Relocate for $name {
            const SIZE: u64 = $crate::offset::image::Fields::new()
                $(.field_of(|s: &$name| &s.$field))+
                .size();

            fn encode(
                &self,
                w: &mut $crate::offset::image::ImageWriter,
                at: $crate::offset::Offset<Self>,
            ) {
                let mut fields = $crate::offset::image::Fields::at(at);
                $(fields.encode(w, &self.$field);)+
            }

            fn decode(
                image: &$crate::offset::image::Image<'_>,
                at: $crate::offset::Offset<Self>,
            ) -> $crate::Result<Self> {
                let mut fields = $crate::offset::image::Fields::at(at);
                ::std::result::Result::Ok($name {
                    $($field: fields.decode(image)?,)+
                })
            }
        }
    };
}

macro_rules! relocate_number {
    ($($t:ty),*) => {$(
        /// Stored inline, little-endian, in a slot of its own size.
        impl Relocate for $t {
            const SIZE: u64 = std::mem::size_of::<$t>() as u64;

            fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
                w.patch(at, *self);
            }

            fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
                image.read(at)
            }
        }
    )*};
}
relocate_number!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

/// Stored as a `u64`; decoding fails if the value does not fit.
impl Relocate for usize {
    const SIZE: u64 = 8;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        w.patch(at.cast::<u64>(), *self as u64);
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let value = image.read(at.cast::<u64>())?;
        usize::try_from(value).map_err(|_| {
            Error::Corrupt(format!(
                "usize {value} at offset {} does not fit this machine",
                at.get()
            ))
        })
    }
}

/// Stored as an `i64`; decoding fails if the value does not fit.
impl Relocate for isize {
    const SIZE: u64 = 8;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        w.patch(at.cast::<i64>(), *self as i64);
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let value = image.read(at.cast::<i64>())?;
        isize::try_from(value).map_err(|_| {
            Error::Corrupt(format!(
                "isize {value} at offset {} does not fit this machine",
                at.get()
            ))
        })
    }
}

/// One byte, 0 or 1; anything else is corrupt.
impl Relocate for bool {
    const SIZE: u64 = 1;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        w.patch(at.cast::<u8>(), u8::from(*self));
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        match image.read(at.cast::<u8>())? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::Corrupt(format!(
                "bool at offset {} is {other}, not 0 or 1",
                at.get()
            ))),
        }
    }
}

/// A `u32` holding a Unicode scalar value; anything else is corrupt.
impl Relocate for char {
    const SIZE: u64 = 4;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        w.patch(at.cast::<u32>(), u32::from(*self));
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let value = image.read(at.cast::<u32>())?;
        char::from_u32(value).ok_or_else(|| {
            Error::Corrupt(format!(
                "char at offset {} is {value:#x}, not a Unicode scalar value",
                at.get()
            ))
        })
    }
}

/// Reads the `{offset, len}` pair at `at`.
fn read_pair<T>(image: &Image<'_>, at: Offset<T>) -> Result<(u64, u64)> {
    let offset = image.read(at.cast::<u64>())?;
    let len = image.read(Offset::<u64>::new(at.get().saturating_add(8)))?;
    Ok((offset, len))
}

/// Writes the `{offset, len}` pair at `at`.
fn write_pair<T>(w: &mut ImageWriter, at: Offset<T>, offset: u64, len: u64) {
    w.patch(at.cast::<u64>(), offset);
    w.patch(Offset::<u64>::new(at.get() + 8), len);
}

/// `{offset, len}` (16 bytes) of the UTF-8 bytes, stored elsewhere; an
/// empty string is `{0, 0}`. Decoding checks the UTF-8.
impl Relocate for String {
    const SIZE: u64 = 16;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        if !self.is_empty() {
            let bytes = w.push_bytes(self.as_bytes());
            write_pair(w, at, bytes.get(), self.len() as u64);
        }
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let (offset, len) = read_pair(image, at)?;
        if len == 0 {
            return Ok(String::new());
        }
        // Nothing nests in a string's bytes: charged, but not a level deeper.
        image.charge(offset, len, len, "string")?;
        match std::str::from_utf8(image.bytes(Offset::new(offset), len)?) {
            Ok(text) => Ok(text.to_owned()),
            Err(err) => Err(Error::Corrupt(format!(
                "string of {len} bytes at offset {offset} is not UTF-8: {err}"
            ))),
        }
    }
}

/// `{offset, len}` (16 bytes) of an array of `len` slots of `T`, stored
/// elsewhere; an empty vector is `{0, 0}`.
impl<T: Relocate> Relocate for Vec<T> {
    const SIZE: u64 = 16;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        if !self.is_empty() {
            let first = w.push_slice(self);
            write_pair(w, at, first.get(), self.len() as u64);
        }
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let (offset, len) = read_pair(image, at)?;
        image.follow_slice(Offset::new(offset), len)
    }
}

/// The offset (8 bytes, never 0) of the `T`, stored elsewhere: a pointer
/// becomes an offset.
impl<T: Relocate> Relocate for Box<T> {
    const SIZE: u64 = 8;
    const IS_OFFSET: bool = true;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        let target = w.push_value(&**self);
        w.patch(at.cast::<u64>(), target.get());
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let target = image.read(at.cast::<u64>())?;
        image.follow(Offset::<T>::new(target)).map(Box::new)
    }
}

/// A nullable offset (8 bytes), 0 for `None`. For a `T` that is itself an
/// offset ([`Relocate::IS_OFFSET`], a `Box`) it is that offset, so
/// `Option<Box<T>>` is one nullable pointer; for any other `T` it is the
/// offset of a `T` stored elsewhere.
impl<T: Relocate> Relocate for Option<T> {
    const SIZE: u64 = 8;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        match self {
            None => w.patch(at.cast::<u64>(), 0),
            Some(value) if T::IS_OFFSET => value.encode(w, at.cast::<T>()),
            Some(value) => {
                let target = w.push_value(value);
                w.patch(at.cast::<u64>(), target.get());
            }
        }
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let target = image.read(at.cast::<u64>())?;
        if target == 0 {
            Ok(None)
        } else if T::IS_OFFSET {
            T::decode(image, at.cast::<T>()).map(Some)
        } else {
            image.follow(Offset::<T>::new(target)).map(Some)
        }
    }
}

/// The offset of a list node's value within the node: after `next`.
const NODE_VALUE_AT: u64 = 8;

/// `{head, len}` (16 bytes): the offset of the first node (0 if empty) and
/// the number of nodes. Each node is `{next, value}`: the offset of the next
/// node (0 at the end), then the value's slot. Decoded in a loop, so any
/// length works; a `next` chain longer or shorter than `len`, or looping,
/// is corrupt.
impl<T: Relocate> Relocate for LinkedList<T> {
    const SIZE: u64 = 16;

    fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
        // The link to fill in with the next node's offset: the head first.
        let mut link = at.cast::<u64>();
        for value in self {
            let node = w.alloc(NODE_VALUE_AT + round8(T::SIZE));
            w.patch(link, node);
            value.encode(w, Offset::new(node + NODE_VALUE_AT));
            link = Offset::new(node);
        }
        w.patch(Offset::<u64>::new(at.get() + 8), self.len() as u64);
    }

    fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
        let (head, len) = read_pair(image, at)?;
        let node_size = NODE_VALUE_AT + round8(T::SIZE);
        let mut list = LinkedList::new();
        let mut next = head;
        // `len` is untrusted, but each turn charges at least 8 bytes or fails.
        for i in 0..len {
            if next == 0 {
                return Err(Error::Corrupt(format!(
                    "list at offset {} says it has {len} nodes but ends after {i}",
                    at.get()
                )));
            }
            let node = next;
            image.enter(node, node_size, node_size, "list node")?;
            let decoded = (|| {
                let next = image.read(Offset::<u64>::new(node))?;
                let value = T::decode(image, Offset::new(node + NODE_VALUE_AT))?;
                Ok((next, value))
            })();
            image.leave();
            let (after, value) = decoded?;
            list.push_back(value);
            next = after;
        }
        if next != 0 {
            return Err(Error::Corrupt(format!(
                "list at offset {} has more nodes than its length {len}",
                at.get()
            )));
        }
        Ok(list)
    }
}

macro_rules! relocate_tuple {
    ($($t:ident),+) => {
        /// Like a struct: the elements' slots in order, each rounded up to 8.
        impl<$($t: Relocate),+> Relocate for ($($t,)+) {
            const SIZE: u64 = Fields::new()$(.field::<$t>())+.size();

            #[allow(non_snake_case)]
            fn encode(&self, w: &mut ImageWriter, at: Offset<Self>) {
                let ($($t,)+) = self;
                let mut fields = Fields::at(at);
                $(fields.encode(w, $t);)+
            }

            fn decode(image: &Image<'_>, at: Offset<Self>) -> Result<Self> {
                let mut fields = Fields::at(at);
                Ok(($(fields.decode::<$t>(image)?,)+))
            }
        }
    };
}
relocate_tuple!(A);
relocate_tuple!(A, B);
relocate_tuple!(A, B, C);
relocate_tuple!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name(type_name::<Vec<String>>()), "Vec<String>");
        assert_eq!(short_name(type_name::<[(u8, String)]>()), "[(u8, String)]");
        assert_eq!(short_name("list node"), "list node");
    }

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
