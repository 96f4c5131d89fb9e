//! Fuzzes the offset-image decoder: whatever the bytes, `from_image` for a
//! linked list, a tree, a vector of strings and a chain of boxes returns a
//! value or `Error::Corrupt`, after work bounded by the image's length: no
//! panic, no out-of-bounds read, no stack overflow, no hang.
//!
//! Run: `cargo fuzz run -s none offset_image`.

#![no_main]

use std::collections::LinkedList;

use libfuzzer_sys::fuzz_target;
use shmkit::offset::image::from_image;
use shmkit::relocate_struct;

struct Tree {
    value: u64,
    name: String,
    children: Vec<Tree>,
}
relocate_struct!(Tree {
    value,
    name,
    children
});

struct Node {
    id: u32,
    next: Option<Box<Node>>,
}
relocate_struct!(Node { id, next });

fuzz_target!(|data: &[u8]| {
    let _ = from_image::<LinkedList<(u64, String)>>(data);
    let _ = from_image::<Tree>(data);
    let _ = from_image::<Vec<String>>(data);
    let _ = from_image::<Option<Box<Node>>>(data);
});
