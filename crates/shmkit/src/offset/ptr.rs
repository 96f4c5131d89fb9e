//! Offsets instead of pointers, and the plain types that may be copied in
//! and out of shared memory.

use std::fmt;
use std::marker::PhantomData;

use crate::error::{Error, Result};

/// Types that may be copied byte for byte into memory another process reads
/// and back: every bit pattern is a valid value, there are no padding bytes,
/// and nothing in them points into this process (no references, no heap).
///
/// shmkit implements it for the integer and float types, `bool`-free arrays
/// of plain types, and [`Offset`].
///
/// # Safety
///
/// An implementor must:
/// - be `#[repr(C)]` or `#[repr(transparent)]` (or a primitive) with no
///   padding bytes anywhere;
/// - be valid for every bit pattern of its size (so no `bool`, `char`,
///   enums, references or `NonNull`);
/// - have an alignment of at most 8.
///
/// ```
/// use shmkit::offset::Plain;
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Reading {
///     sensor: u32,
///     flags: u32, // spelled out: no padding before `value`
///     value: f64,
/// }
///
/// // SAFETY: repr(C), 4 + 4 + 8 bytes with no padding, any bits are valid,
/// // alignment 8.
/// unsafe impl Plain for Reading {}
/// ```
pub unsafe trait Plain: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive number: no padding, any bit pattern valid,
        // alignment at most 8.
        unsafe impl Plain for $t {}
    )*};
}
plain!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

// SAFETY: an array of plain values has no padding between elements (size is
// a multiple of alignment) and any bits are valid if they are for T.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// A position-independent link to a `T` in the same segment or image: the
/// byte offset of the `T` from the *start of the segment*, with 0 as null.
///
/// # Why from the segment's start
///
/// Two processes map a segment at different addresses, so a pointer written
/// by one means nothing to the other; an offset means the same to both.
/// shmkit counts from the segment's start rather than from the offset's own
/// address (as Boost.Interprocess `offset_ptr` and rkyv's relative pointers
/// do) because:
///
/// - a structure holding offsets stays valid when it is copied to another
///   place in the segment, or out of it and back (self-relative offsets
///   would all change);
/// - every conversion to a value needs the segment's bounds anyway, to check
///   the offset (see below), so the base is always at hand;
/// - 0 is never a valid object (a header is there), so it makes a natural
///   null, and an all-zero (fresh) segment holds only null offsets.
///
/// # The contract
///
/// An `Offset<T>` is only a number. Turning it into a `T` is always checked
/// by whoever holds the segment's bounds ([`crate::offset::ManagedSegment`],
/// [`crate::offset::image`]): null, out of bounds, misaligned for `T`, or too
/// short for `T` gives [`Error::Corrupt`], never undefined behaviour. Values
/// are copied out ([`Plain`]), never borrowed, since another process may be
/// writing the memory.
///
/// ```
/// use shmkit::offset::Offset;
///
/// let at: Offset<u64> = Offset::new(4096);
/// assert_eq!(at.get(), 4096);
/// assert!(Offset::<u64>::NULL.is_null());
/// ```
#[repr(transparent)]
pub struct Offset<T> {
    raw: u64,
    target: PhantomData<fn() -> T>,
}

impl<T> Offset<T> {
    /// The null offset, 0.
    pub const NULL: Offset<T> = Offset::new(0);

    /// An offset of `raw` bytes from the start of the segment.
    pub const fn new(raw: u64) -> Offset<T> {
        Offset {
            raw,
            target: PhantomData,
        }
    }

    /// The number of bytes from the start of the segment.
    pub const fn get(self) -> u64 {
        self.raw
    }

    /// Whether this is the null offset.
    pub const fn is_null(self) -> bool {
        self.raw == 0
    }

    /// The same offset, viewed as pointing to a `U`.
    pub const fn cast<U>(self) -> Offset<U> {
        Offset::new(self.raw)
    }

    /// Checks that a `T` at this offset lies inside `len` bytes, aligned.
    /// Returns the range of its bytes.
    pub fn check(self, len: u64) -> Result<std::ops::Range<usize>> {
        let size = std::mem::size_of::<T>() as u64;
        let align = std::mem::align_of::<T>() as u64;
        let what = std::any::type_name::<T>();
        if self.is_null() {
            return Err(Error::Corrupt(format!(
                "null offset where a {what} was expected"
            )));
        }
        if !self.raw.is_multiple_of(align) {
            return Err(Error::Corrupt(format!(
                "offset {} is not aligned to {align} bytes for a {what}",
                self.raw
            )));
        }
        match self.raw.checked_add(size) {
            Some(end) if end <= len => Ok(self.raw as usize..end as usize),
            _ => Err(Error::Corrupt(format!(
                "offset {} of a {what} ({size} bytes) is outside the {len} bytes",
                self.raw
            ))),
        }
    }
}

impl<T> Clone for Offset<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Offset<T> {}

impl<T> PartialEq for Offset<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<T> Eq for Offset<T> {}

impl<T> fmt::Debug for Offset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset({})", self.raw)
    }
}

// SAFETY: repr(transparent) over a u64 (PhantomData is zero-sized): no
// padding, any bits valid, alignment 8.
unsafe impl<T: 'static> Plain for Offset<T> {}

/// Copies a `T` out of `bytes` at `at`, checked as [`Offset::check`] does.
pub(crate) fn read_plain<T: Plain>(bytes: &[u8], at: Offset<T>) -> Result<T> {
    let range = at.check(bytes.len() as u64)?;
    // SAFETY: the range is inside `bytes` (checked); T is Plain, so any
    // bytes are a valid T; read_unaligned because `bytes` itself may start
    // at any address.
    Ok(unsafe { bytes.as_ptr().add(range.start).cast::<T>().read_unaligned() })
}

/// Copies `value` into `bytes` at `at`, checked as [`Offset::check`] does.
pub(crate) fn write_plain<T: Plain>(bytes: &mut [u8], at: Offset<T>, value: T) -> Result<()> {
    let range = at.check(bytes.len() as u64)?;
    // SAFETY: in bounds (checked); T is Plain, so it has no padding and every
    // byte written is initialised.
    unsafe {
        bytes
            .as_mut_ptr()
            .add(range.start)
            .cast::<T>()
            .write_unaligned(value)
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_null_bounds_and_alignment() {
        assert!(Offset::<u64>::new(8).check(16).is_ok());
        assert!(Offset::<u64>::NULL.check(16).is_err());
        assert!(Offset::<u64>::new(9).check(32).is_err(), "misaligned");
        assert!(Offset::<u64>::new(16).check(20).is_err(), "too short");
        assert!(
            Offset::<u64>::new(u64::MAX - 7).check(u64::MAX).is_err(),
            "overflow"
        );
        assert_eq!(Offset::<[u8; 3]>::new(5).check(8).unwrap(), 5..8);
    }

    #[test]
    fn copies_in_and_out() {
        let mut bytes = vec![0u8; 32];
        write_plain(&mut bytes, Offset::new(8), 0x0102_0304_0506_0708u64).unwrap();
        assert_eq!(
            read_plain(&bytes, Offset::<u64>::new(8)).unwrap(),
            0x0102_0304_0506_0708
        );
        assert_eq!(read_plain(&bytes, Offset::<u8>::new(8)).unwrap(), 0x08);
        assert!(read_plain(&bytes, Offset::<u64>::new(32)).is_err());
    }
}
