//! The containers a [`ManagedSegment`] holds by name: [`List`], [`Vector`]
//! and [`Text`].

use super::{HeapLock, ManagedSegment, Triple, BLOCK_ALIGN};
use crate::error::{Error, Result};
use crate::offset::ptr::{Offset, Plain};

/// A singly linked list in a [`ManagedSegment`]: each node is a block
/// holding the offset of the next node and a value.
#[derive(Debug)]
pub struct List<'a, T> {
    pub(super) heap: &'a ManagedSegment,
    /// `a` = first node, `b` = last node, `c` = length.
    pub(super) header: Offset<Triple>,
    pub(super) element: std::marker::PhantomData<T>,
}

impl<T: Plain> List<'_, T> {
    /// Appends `value`.
    pub fn push_back(&self, value: T) -> Result<()> {
        let heap = self.heap;
        let lock = heap.lock()?;
        let mut header = heap.load(self.header)?;
        let _change = lock.change()?;
        let node = heap.allocate(8 + size_of::<T>() as u64)?;
        heap.store(Offset::<u64>::new(node), 0)?;
        heap.store(Offset::<T>::new(node + 8), value)?;
        if header.b == 0 {
            header.a = node;
        } else {
            heap.store(Offset::<u64>::new(header.b), node)?;
        }
        header.b = node;
        header.c = header.c.wrapping_add(1); // a count in shared memory
        heap.store(self.header, header)?;
        Ok(())
    }

    /// The number of elements.
    pub fn len(&self) -> Result<u64> {
        Ok(self.heap.read(self.header)?.c)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Copies every element out, in order, following the links.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a link points outside the heap or is
    /// misaligned, or the links form a loop or end before (or run past) the
    /// recorded length: found after at most `len` steps.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let heap = self.heap;
        let _lock = heap.lock()?;
        let header = heap.load(self.header)?;
        let limit = header.c.min(heap.size / BLOCK_ALIGN);
        let mut values = Vec::with_capacity(limit as usize);
        let mut node = header.a;
        while node != 0 {
            if values.len() as u64 == limit {
                return Err(Error::Corrupt(format!(
                    "list links run past its length of {} (a loop?)",
                    header.c
                )));
            }
            // The link is untrusted: checked before anything is added to it.
            node = Offset::<u64>::new(node).check(heap.size)?.start as u64;
            values.push(heap.load(Offset::<T>::new(node + 8))?);
            node = heap.load(Offset::<u64>::new(node))?;
        }
        if values.len() as u64 != header.c {
            return Err(Error::Corrupt(format!(
                "list of length {} ends after {} elements",
                header.c,
                values.len()
            )));
        }
        Ok(values)
    }
}

/// A growable vector in a [`ManagedSegment`].
#[derive(Debug)]
pub struct Vector<'a, T> {
    pub(super) heap: &'a ManagedSegment,
    /// `a` = elements, `b` = length, `c` = capacity.
    pub(super) header: Offset<Triple>,
    pub(super) element: std::marker::PhantomData<T>,
}

impl<T: Plain> Vector<'_, T> {
    /// Appends the values, growing the storage (doubling) as needed.
    pub fn extend_from_slice(&self, values: &[T]) -> Result<()> {
        let lock = self.heap.lock()?;
        let header = self.checked_header()?;
        self.extend_locked(&lock, header, values)
    }

    /// Appends to the vector whose header is `header`, under `lock`.
    fn extend_locked(&self, lock: &HeapLock<'_>, mut header: Triple, values: &[T]) -> Result<()> {
        let heap = self.heap;
        let _change = lock.change()?;
        let item = size_of::<T>() as u64;
        let needed = header
            .b
            .checked_add(values.len() as u64)
            .ok_or_else(|| Error::Corrupt(format!("vector length {} overflows", header.b)))?;
        if needed > header.c {
            let capacity = needed.max(header.c.saturating_mul(2)).max(4);
            let bytes = capacity.checked_mul(item).ok_or(Error::TooLarge {
                what: "vector",
                size: capacity.saturating_mul(item),
                limit: heap.size,
            })?;
            let data = heap.allocate(bytes)?;
            if header.a != 0 {
                heap.copy(header.a, data, header.b * item)?;
                heap.deallocate(header.a)?;
            }
            header.a = data;
            header.c = capacity;
        }
        for (i, value) in values.iter().enumerate() {
            heap.store(
                Offset::<T>::new(header.a + (header.b + i as u64) * item),
                *value,
            )?;
        }
        header.b = needed;
        heap.store(self.header, header)?;
        Ok(())
    }

    /// Appends one value.
    pub fn push(&self, value: T) -> Result<()> {
        self.extend_from_slice(&[value])
    }

    /// The number of elements.
    pub fn len(&self) -> Result<u64> {
        let _lock = self.heap.lock()?;
        Ok(self.checked_header()?.b)
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The element at `index`, or `None` past the end.
    pub fn get(&self, index: u64) -> Result<Option<T>> {
        let _lock = self.heap.lock()?;
        let header = self.checked_header()?;
        if index >= header.b {
            return Ok(None);
        }
        self.heap
            .load(Offset::new(header.a + index * size_of::<T>() as u64))
            .map(Some)
    }

    /// Copies every element out.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let _lock = self.heap.lock()?;
        let header = self.checked_header()?;
        (0..header.b)
            .map(|i| {
                self.heap
                    .load(Offset::new(header.a + i * size_of::<T>() as u64))
            })
            .collect()
    }

    /// Removes every element (keeping the storage).
    pub fn clear(&self) -> Result<()> {
        let heap = self.heap;
        let _lock = heap.lock()?;
        let mut header = self.checked_header()?;
        header.b = 0;
        heap.store(self.header, header)
    }

    /// The header, with length and capacity checked against the heap (the
    /// caller holds the lock).
    fn checked_header(&self) -> Result<Triple> {
        let header = self.heap.load(self.header)?;
        let bytes = header.c.checked_mul(size_of::<T>() as u64);
        let fits = header.b <= header.c
            && bytes.is_some_and(|b| {
                header
                    .a
                    .checked_add(b)
                    .is_some_and(|end| end <= self.heap.size)
            })
            && (header.a != 0 || header.c == 0);
        if !fits {
            return Err(Error::Corrupt(format!(
                "vector at {} claims {} of {} elements at {}, outside the heap",
                self.header.get(),
                header.b,
                header.c,
                header.a
            )));
        }
        Ok(header)
    }
}

/// A UTF-8 string in a [`ManagedSegment`].
#[derive(Debug)]
pub struct Text<'a> {
    pub(super) bytes: Vector<'a, u8>,
}

impl Text<'_> {
    /// Appends `text`.
    pub fn push_str(&self, text: &str) -> Result<()> {
        self.bytes.extend_from_slice(text.as_bytes())
    }

    /// Replaces the contents with `text`, in one step: a reader sees the
    /// old text or the new, never an empty one between.
    pub fn set(&self, text: &str) -> Result<()> {
        let lock = self.bytes.heap.lock()?;
        let mut header = self.bytes.checked_header()?;
        header.b = 0;
        self.bytes.extend_locked(&lock, header, text.as_bytes())
    }

    /// Copies the string out.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the bytes are not UTF-8.
    pub fn get(&self) -> Result<String> {
        String::from_utf8(self.bytes.to_vec()?)
            .map_err(|e| Error::Corrupt(format!("string is not UTF-8: {e}")))
    }

    /// Its length in bytes.
    pub fn len(&self) -> Result<u64> {
        self.bytes.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> Result<bool> {
        self.bytes.is_empty()
    }
}
