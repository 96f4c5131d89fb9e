//! [`Relocate`] for the standard library's types: numbers, `bool`, `char`,
//! `String`, `Vec`, `Box`, `Option`, `LinkedList` and tuples.

use super::{round8, Fields, Image, ImageWriter, Relocate};
use crate::error::{Error, Result};
use crate::offset::Offset;
use std::collections::LinkedList;

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
