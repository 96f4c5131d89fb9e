//! A linked list, a vector and a string that live in shared memory, used by
//! two real processes at different addresses: the parent builds them in a
//! managed segment, a child finds them by name and reads them, then both
//! append to the list at the same time and nothing is lost.
//!
//! Run it with `cargo run -p shmkit --example shared_list`. The segment is
//! removed at the end, also if the child fails.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};

use shmkit::offset::{ManagedSegment, Plain};
use shmkit::{Key, Mode, Segment};

/// One element of the list: plain data, copied in and out of the segment.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Record {
    id: u64,
    temperature: f64,
    writer: u32,
    reserved: u32,
}

// SAFETY: repr(C), 8 + 8 + 4 + 4 bytes with no padding, any bits valid,
// alignment 8.
unsafe impl Plain for Record {}

/// How many records each process appends concurrently.
const APPENDS: u64 = 1000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match &args[1..] {
        [] => parent(),
        [flag, key] if flag == "--child" => child(key),
        _ => Err(format!("usage: {} [--child KEY]", args[0]).into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shared_list: {err}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Removes the segment when the parent is done, however it ends.
struct Cleanup(Key);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

fn parent() -> Result<()> {
    let key = Key::posix(&format!("/shmkit-example-list-{}", std::process::id()))?;
    let _cleanup = Cleanup(key.clone());
    let heap = ManagedSegment::create(&key, 1 << 20, Mode::OWNER_ONLY)?;
    println!(
        "parent {}: created {key} and mapped it at {:#x}",
        std::process::id(),
        heap.base_address()
    );

    let list = heap.list::<Record>("readings")?;
    for id in 0..3 {
        list.push_back(Record {
            id,
            temperature: 20.0 + id as f64,
            writer: std::process::id(),
            reserved: 0,
        })?;
    }
    heap.vector::<u32>("squares")?
        .extend_from_slice(&[0, 1, 4, 9, 16])?;
    heap.text("note")?
        .set("built by the parent, read by the child")?;
    println!("parent: built a list of 3 records, a vector and a string");

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", &key.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().ok_or("no pipe to the child")?;
    let mut from_child = BufReader::new(child.stdout.take().ok_or("no pipe from the child")?);
    let mut line = String::new();
    // The child prints what it read, then "ready" when it is about to append.
    loop {
        line.clear();
        if from_child.read_line(&mut line)? == 0 {
            return Err("the child exited early".into());
        }
        print!("  child: {line}");
        if line.trim() == "ready" {
            break;
        }
    }
    writeln!(to_child, "go")?;
    for i in 0..APPENDS {
        list.push_back(Record {
            id: 100 + i,
            temperature: 0.0,
            writer: std::process::id(),
            reserved: 0,
        })?;
    }
    drop(to_child);
    for line in from_child.lines() {
        println!("  child: {}", line?);
    }
    if !child.wait()?.success() {
        return Err("the child failed".into());
    }

    let all = list.to_vec()?;
    let mine = all
        .iter()
        .filter(|r| r.writer == std::process::id())
        .count();
    println!(
        "parent: the list now holds {} records: {mine} written by the parent, {} by the child",
        all.len(),
        all.len() - mine
    );
    if all.len() as u64 != 3 + 2 * APPENDS {
        return Err(format!("expected {} records", 3 + 2 * APPENDS).into());
    }
    println!("parent: nothing was lost; removing {key}");
    Ok(())
}

fn child(key: &str) -> Result<()> {
    let key: Key = key.parse()?;
    let heap = ManagedSegment::open(&key)?;
    println!(
        "mapped {key} at {:#x}, its own address",
        heap.base_address()
    );
    let list = heap.list::<Record>("readings")?;
    for record in list.to_vec()? {
        println!(
            "read record {} ({} degrees) written by pid {}",
            record.id, record.temperature, record.writer
        );
    }
    println!(
        "read squares {:?}",
        heap.vector::<u32>("squares")?.to_vec()?
    );
    println!("read note {:?}", heap.text("note")?.get()?);
    println!("ready");
    std::io::stdout().flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    for i in 0..APPENDS {
        list.push_back(Record {
            id: 10_000 + i,
            temperature: -1.0,
            writer: std::process::id(),
            reserved: 0,
        })?;
    }
    println!("appended {APPENDS} records while the parent appended its own");
    Ok(())
}
