//! Single-producer single-consumer rings of variable-size messages between
//! processes, in a POSIX shared-memory segment.
//!
//! A ring is found by name: [`Producer::open`] and [`Consumer::open`] create
//! it if it does not exist yet (and say whether they did, with `created`),
//! so either side may start first. Each end is held by one process at a
//! time, through a lock the kernel keeps on the ring's file; a second
//! producer or consumer gets [`Error::InUse`] while the first is alive, in
//! whatever pid namespace it runs, and takes over once it has died.
//!
//! Messages are byte strings of up to [`Producer::max_message`] bytes,
//! delivered whole and in order. The producer copies in with
//! [`send`](Producer::send) or writes in place through a
//! [`grant`](Producer::grant); the consumer copies out with
//! [`recv`](Consumer::recv) or reads in place through
//! [`read`](Consumer::read). A stream can go in batches, many messages
//! for the cost of one index update: [`Producer::send_batch`] and
//! [`Producer::batch`] commit many records at once, [`Consumer::drain`] and
//! [`Consumer::drain_while`] release many.
//!
//! When the producer is dropped or [`close`](Producer::close)s, the consumer
//! receives every message committed before, then [`Error::Closed`]; a new
//! producer may then reopen the drained ring, and the consumer reads on. If
//! the producer's process dies instead, the consumer receives every
//! committed message, then [`Error::PeerGone`]. A producer whose consumer
//! died or left gets [`Error::PeerGone`] or [`Error::PeerLeft`] once the
//! ring is full, unless [`Options::wait_for_new_consumer`].
//!
//! # Lifetime
//!
//! A ring is removed when its last end leaves and nothing more will be
//! read from it: a consumer leaving a drained ring with no producer, or a
//! producer closing a drained ring whose consumer came and left. Unread
//! messages, and the close of an empty stream, stay for a consumer that
//! starts later. A ring removed while another process was opening it is
//! never written to: the opener makes or finds the ring now at the name.
//! [`remove`] removes a ring nobody holds; [`collect_garbage`] finds and
//! removes rings nobody will use (abandoned by dead processes, finished,
//! half-made or corrupt), scoped by [`Scope`].
//!
//! The byte layout is in `docs/FORMAT.md`; the protocol's rules are listed
//! in the source of `ring/protocol.rs`.
//!
//! # Example: a producer and a consumer
//!
//! ```
//! use shmkit::ring::{Consumer, Producer};
//!
//! let name = format!("doc-example-{}", std::process::id());
//! let mut producer = Producer::open(&name)?;
//! let mut consumer = Consumer::open(&name)?; // usually another process
//!
//! producer.send(b"hello")?;
//! let mut grant = producer.grant(5)?; // zero-copy: write in place
//! grant.copy_from_slice(b"world");
//! grant.commit();
//! producer.close()?;
//!
//! let mut buf = [0u8; 64];
//! let n = consumer.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! assert_eq!(&*consumer.read()?, b"world");
//! assert!(matches!(consumer.recv(&mut buf), Err(shmkit::Error::Closed { .. })));
//! # Ok::<(), shmkit::Error>(())
//! ```

mod batch;
mod consumer;
pub(crate) mod endpoint;
pub(crate) mod layout;
#[cfg(all(test, loom))]
mod model;
mod options;
#[cfg(feature = "tokio")]
mod parking;
mod producer;
pub(crate) mod protocol;
mod shared;
mod status;
pub(crate) mod wait;

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

pub use batch::WriteBatch;
pub use consumer::{Consumer, ReadGrant};
pub use options::{Options, DEFAULT_CAPACITY};
pub use producer::{Producer, WriteGrant};
pub use status::{
    collect_garbage, list, remove, status, Action, EndpointStatus, Garbage, Reason, Removal,
    RingStatus, Scope,
};
pub use wait::Waiting;

use crate::error::{Error, Result};
use crate::segment::{AccessMode, Attachment, Key, Mode, ReadWrite, Segment, Trust};
use crate::sync::{AtomicU64, Ordering};
use crate::sys::range_lock::RangeLock;
use endpoint::End;
use layout::{
    Header, CLOSED, CLOSE_SEEN, HEADER_SIZE, MAGIC, MAX_CAPACITY, MIN_CAPACITY, OPEN, VERSION,
};
use protocol::{ConsumerCursor, Head, ProducerCursor, RingRef, Slot};
use shared::*;
use wait::{Slip, Waiter};

/// The POSIX name of a ring's segment is this prefix and the ring's name.
pub const SEGMENT_PREFIX: &str = "/shmkit.ring.";
