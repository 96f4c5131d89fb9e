//! Shared-memory inter-process communication for Linux.
//!
//! # Overview
//!
//! Shared memory lets processes map the same physical pages and talk without
//! the kernel copying every message. shmkit makes that safe in Rust:
//!
//! - [`Segment`]: System V and POSIX shared memory with System V semantics —
//!   [`Key`]s, owner/group/other [`Mode`] bits checked by the kernel,
//!   [`Attachment`]s counted by the kernel, and removal deferred until the
//!   last detach. [`list`] shows every segment on the machine, as `ipcs -m`.
//! - [`offset`]: position-independent data. [`Offset`](offset::Offset)s
//!   instead of pointers; a [`ManagedSegment`](offset::ManagedSegment) with
//!   an allocator, named objects and containers that every attached process
//!   can use at whatever address it mapped the segment; and
//!   [`offset::image`], which turns a heap structure with pointers into a
//!   byte image whose links are offsets, and back.
//! - [`ring`]: a single-producer single-consumer ring of variable-size
//!   messages between processes, found by name, with zero-copy grants,
//!   spin-then-sleep waiting on a futex, and dead-peer detection.
//! - [`service`]: request–response between many client processes and one
//!   server: calls matched to their callers by an id the library assigns,
//!   pipelining, timeouts, zero-copy requests and responses, and a dead
//!   server or client reported instead of waited on.
//! - [`channel`]: typed channels over a ring, one `Sender<T, C>` and
//!   `Receiver<T, C>` over a [`Codec`](channel::Codec): postcard (the
//!   default), rkyv archives validated by bytecheck, plain bytes of a
//!   fixed-layout value, or a codec of your own.
//! - `aio` (feature `tokio`): the same endpoints awaited from tokio tasks,
//!   cancel-safe, parked on one `futex_waitv` reactor per process instead
//!   of a thread each.
//!
//! Errors are one [`Error`] enum whose variants a program matches (`Full`,
//! `Empty`, `Timeout`, `Closed`, `PeerGone`, `WrongType`, `InUse`,
//! `Corrupt`, …); how the layers fit and the rules they keep are in
//! `docs/ARCHITECTURE.md`.
//!
//! # Where to go next
//!
//! - The message ring: [`ring`] (start at [`ring::Producer`] and
//!   [`ring::Consumer`]), and typed messages over it in [`channel`].
//! - The examples, in `crates/shmkit/examples/`: `shared_list` (two
//!   processes sharing a [`ManagedSegment`](offset::ManagedSegment)),
//!   `serialize_list` (an offset image of a linked list) and
//!   `typed_channel` (serde and rkyv messages between processes); run one
//!   with `cargo run -p shmkit --example shared_list`.
//! - `docs/FORMAT.md` in the repository: every byte layout shmkit puts in
//!   shared memory, so that a C or Python program can be a peer.
//! - The `shmkit` tool (crate `shmkit-cli`): `ls`, `stat`, `top`, `send`,
//!   `recv`, `gc` and more from the shell, built on this library; its JSON
//!   output is described in `docs/JSON.md`.
//!
//! Memory that another process can write is never exposed as `&[u8]` while
//! that process may write it: segment bytes are copied in and out or
//! reached through atomics, and the ring hands out a slice (a grant) only
//! for a record its protocol gives to one side at a time. A peer that
//! breaks the protocol can still change those bytes; everything read back
//! is validated, so the worst it gets is an error or wrong data, never
//! undefined behaviour in the reader.
//!
//! # Example: one process writes, another reads
//!
//! ```
//! use shmkit::{Key, Mode, ReadOnly, ReadWrite, Segment};
//!
//! // Process A creates a segment and writes into it.
//! let key = Key::posix(&format!("/shmkit-crate-doc-{}", std::process::id()))?;
//! let segment = Segment::create(&key, 4096, Mode::new(0o644))?;
//! segment.attach(ReadWrite)?.write_at(0, b"hello")?;
//!
//! // Process B (here the same process) finds it by key and reads.
//! let reader = Segment::open(&key)?.attach(ReadOnly)?;
//! let mut buf = [0; 5];
//! reader.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//!
//! segment.remove()?;
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Why (not) use this
//!
//! Use it to move data between processes on one Linux machine with as little
//! kernel involvement as possible. It is Linux-only (it reads `/proc` and
//! relies on Linux's shm semantics), and a segment is only as trustworthy as
//! every process that can write it: shmkit treats shared bytes as untrusted
//! input.

#![deny(missing_docs)]

#[cfg(feature = "tokio")]
pub mod aio;
pub mod channel;
mod error;
pub mod offset;
pub mod ring;
pub mod segment;
pub mod service;
mod sync;
mod sys;
pub mod topic;

pub use error::{Access, Error, Pid, Result};
pub use segment::{
    list, AccessMode, Attachment, Key, Kind, Mapping, Mode, Opened, Owner, PosixName, ReadOnly,
    ReadWrite, Segment, Stat, Trust,
};

/// The README's Rust examples, compiled and run as doc tests so that they
/// stay true (one of them is async, hence the feature).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
