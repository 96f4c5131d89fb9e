//! The seed's serialization example with two real processes: the parent
//! turns a linked list's pointers into offsets (an offset image) in a POSIX
//! shared-memory segment; a child process maps the segment at an address of
//! its own, copies the image out and rebuilds the list with its own pointers.
//!
//! Run it with `cargo run -p shmkit --example serialize_list`. The segment
//! is removed at the end, also if the child fails.

use std::collections::LinkedList;
use std::process::{Command, ExitCode};

use shmkit::offset::image::{self, Image};
use shmkit::offset::Offset;
use shmkit::{relocate_struct, Key, Mode, ReadOnly, ReadWrite, Segment};

/// One element of the list.
#[derive(Debug, PartialEq)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
}
relocate_struct!(Record { id, name, tags });

/// The argument that makes this program the child.
const CHILD: &str = "--child";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match &args[1..] {
        [] => parent(),
        [flag, key] if flag == CHILD => child(key),
        _ => Err(format!("usage: {} [{CHILD} KEY]", args[0]).into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("serialize_list: {err}");
            ExitCode::FAILURE
        }
    }
}

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Removes the segment when dropped, however the parent leaves.
struct RemoveOnDrop(Segment);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match self.0.remove() {
            Ok(()) => println!("parent: removed segment {}", self.0),
            Err(err) => eprintln!("parent: could not remove segment {}: {err}", self.0),
        }
    }
}

fn parent() -> Result<()> {
    let pid = std::process::id();
    let list: LinkedList<Record> = [
        ("alpha", &["first"][..]),
        ("beta", &[]),
        ("gamma", &["greek", "third"]),
        ("delta", &["last"]),
    ]
    .into_iter()
    .zip(1..)
    .map(|((name, tags), id)| Record {
        id,
        name: name.to_owned(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    })
    .collect();
    println!(
        "parent (pid {pid}): built a linked list of {} records on the heap:",
        list.len()
    );
    for record in &list {
        println!("  {record:?} at address {:p}", record);
    }

    let bytes = image::to_image(&list);
    println!(
        "parent: serialized it into a {}-byte offset image: pointers became offsets from the image's start",
        bytes.len()
    );
    // Walk the image's links by hand to show them: the list's slot is
    // {head, len}, each node {next, record}. (Our own image: no loop.)
    let image = Image::new(&bytes)?;
    let mut node = image.read(Offset::<u64>::new(image.root_offset()))?;
    while node != 0 {
        let next = image.read(Offset::<u64>::new(node))?;
        println!(
            "  node at offset {node:3}: next = {next:3}, record at {}",
            node + 8
        );
        node = next;
    }

    let key = Key::posix(&format!("/shmkit-example-serialize-list-{pid}"))?;
    let segment = RemoveOnDrop(Segment::create(&key, bytes.len() as u64, Mode::OWNER_ONLY)?);
    let attachment = segment.0.attach(ReadWrite)?;
    attachment.write_at(0, &bytes)?;
    println!(
        "parent: wrote the image into segment {key}, mapped here at {:p}",
        attachment.as_ptr()
    );

    println!("parent: starting the child and waiting for it");
    let status = Command::new(std::env::current_exe()?)
        .args([CHILD, &key.to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("the child failed: {status}").into());
    }
    println!("parent: the child finished successfully");
    Ok(())
}

fn child(key: &str) -> Result<()> {
    let pid = std::process::id();
    let key: Key = key.parse()?;
    let attachment = Segment::open(&key)?.attach(ReadOnly)?;
    println!(
        "child (pid {pid}): attached segment {key} at {:p} (each process maps it where it likes)",
        attachment.as_ptr()
    );

    // The image is untrusted, and another process could write the segment
    // while we read: from_attachment copies it out (header first, to learn
    // its length), then validates and decodes the private copy.
    let list: LinkedList<Record> = image::from_attachment(&attachment, 0)?;
    println!("child: copied the image out of the segment and rebuilt the list from the offsets, with pointers of this process:");
    for record in &list {
        println!("  {record:?} at address {:p}", record);
    }
    Ok(())
}
