//! [`Fields`], the layout of a struct's slot, and
//! [`relocate_struct!`](crate::relocate_struct), which implements
//! [`Relocate`] with it.

use super::{round8, Image, ImageWriter, Relocate};
use crate::error::Result;
use crate::offset::Offset;

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
