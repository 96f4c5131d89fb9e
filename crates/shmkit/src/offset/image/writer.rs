//! [`ImageWriter`]: lays values out in a new image.

use super::{round8, Relocate, HEADER_LEN, LEN_AT, MAGIC, MAGIC_AT, ROOT_AT, VERSION, VERSION_AT};
use crate::offset::ptr::write_plain;
use crate::offset::{Offset, Plain};

/// Builds an image: a header, then values appended at offsets that are
/// multiples of 8.
///
/// [`to_image`](super::to_image) is all most programs need; use the writer directly to build
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
    pub(super) fn alloc(&mut self, size: u64) -> u64 {
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
