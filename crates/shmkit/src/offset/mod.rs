//! Position-independent data: structures whose links are offsets, not
//! pointers, so that a process that maps a segment at another address (or
//! reads a byte image) sees the same structure.
//!
//! - [`Offset`] and [`Plain`]: the link type and the values that may live
//!   in shared memory.
//! - [`ManagedSegment`]: a heap inside a segment, with named objects and
//!   containers ([`List`], [`Vector`], [`Text`]) that any attached process
//!   can use.
//! - [`image`]: turns a heap structure with pointers (a linked list, a tree)
//!   into a self-contained byte image whose links are offsets, and back.
//!
//! Everything read through an offset is untrusted: bounds, alignment and
//! cycles are checked, and a corrupt structure gives [`crate::Error::Corrupt`]
//! after bounded work.

pub mod image;
mod managed;
mod ptr;

pub use managed::{List, ManagedSegment, Text, Vector, MAX_NAME};
pub use ptr::{Offset, Plain};
