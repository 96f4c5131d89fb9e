//! [`Image`]: a validated view of untrusted image bytes, whose reads are
//! bounds-checked and charged against a budget, with a depth limit.

use super::{
    Relocate, FLAGS_AT, HEADER_LEN, LEN_AT, MAGIC, MAGIC_AT, MAX_DEPTH, ROOT_AT, VERSION,
    VERSION_AT,
};
use crate::error::{Error, Result};
use crate::offset::ptr::read_plain;
use crate::offset::{Offset, Plain};
use std::any::type_name;
use std::cell::Cell;

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
    pub(super) fn charge(&self, at: u64, extent: u64, cost: u64, what: &str) -> Result<()> {
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
    pub(super) fn enter(&self, at: u64, extent: u64, cost: u64, what: &str) -> Result<()> {
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
    pub(super) fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name(type_name::<Vec<String>>()), "Vec<String>");
        assert_eq!(short_name(type_name::<[(u8, String)]>()), "[(u8, String)]");
        assert_eq!(short_name("list node"), "list node");
    }
}
