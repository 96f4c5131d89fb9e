//! Async forms of the blocking verbs (feature `tokio`): rings, typed
//! channels, topics and services awaited from tokio tasks, without burning a core
//! and without a thread per waiting endpoint.
//!
//! | blocking | awaited | also |
//! |---|---|---|
//! | [`ring::Producer`](crate::ring::Producer) | [`AsyncProducer`] | `Sink<impl AsRef<[u8]>>` |
//! | [`ring::Consumer`](crate::ring::Consumer) | [`AsyncConsumer`] | `Stream<Item = Result<Vec<u8>>>` |
//! | [`channel::Sender`](crate::channel::Sender) | [`AsyncSender`] | `Sink<T>` |
//! | [`channel::Receiver`](crate::channel::Receiver) | [`AsyncReceiver`] | `Stream<Item = Result<T>>` (owned codecs) |
//! | [`topic::Publisher`](crate::topic::Publisher) | [`AsyncPublisher`] | `Sink<impl AsRef<[u8]>>` |
//! | [`topic::Subscriber`](crate::topic::Subscriber) | [`AsyncSubscriber`] | `Stream<Item = Result<(Received, Vec<u8>)>>` |
//! | [`service::Client`](crate::service::Client) | [`AsyncClient`] (`call`, `send_request`, `wait`) | |
//! | [`service::Server`](crate::service::Server) | [`AsyncServer`] (`recv_request`; replies never wait) | |
//! | [`channel::Publisher`](crate::channel::Publisher) (typed topic) | [`AsyncTypedPublisher`] | `Sink<T>` |
//! | [`channel::Subscriber`](crate::channel::Subscriber) (typed topic) | [`AsyncTypedSubscriber`] | `Stream<Item = Result<(Received, T)>>` (owned codecs) |
//! | [`channel::ServiceClient`](crate::channel::ServiceClient) | [`AsyncServiceClient`] (`call`, `send`, `wait`) | |
//! | [`channel::ServiceServer`](crate::channel::ServiceServer) | [`AsyncServiceServer`] (`recv`) | |
//!
//! Each wraps its blocking endpoint (`From`, `get_mut`, `into_inner`), so
//! the non-waiting verbs (`try_*`, `drain`, `status`) stay where they are,
//! and the two kinds interoperate: an async consumer reads what a
//! blocking producer in another process sends, and back.
//!
//! # Cancellation
//!
//! Every future here is cancel-safe: dropping it at any point, as
//! `tokio::select!` does with the branches that lose, takes no message and
//! leaves no grant half-taken. A wait only finds out that the endpoint can
//! act (a message is there, or room for one); the verb then acts in the
//! same poll, without another `.await`, so a future either completes with
//! its message or has done nothing. (A grant or read guard a future
//! returned is the caller's, as in the blocking API: dropping it
//! uncommitted sends nothing, dropping a read grant releases the message.)
//!
//! # Waiting
//!
//! An endpoint that must wait spins for at most 50 µs inside one poll, and
//! for the rest of its [`Waiting`](crate::ring::Waiting)'s spin between the
//! executor's other tasks (the task stays runnable), then announces that it
//! sleeps on its futex word in shared memory (rule 8 of the ring
//! protocol), looks once more, and parks the task's waker in the
//! process's reactor: threads that each sleep in one `futex_waitv` on up
//! to 127 parked endpoints' words, and wake a task when its word is woken
//! ([`reactor_kind`] says which kind runs). The peer side is unchanged: it
//! makes a wake-up system call only if the word says someone sleeps,
//! whether a thread or a task. With [`Waiting::BusyPoll`](crate::ring::Waiting::BusyPoll)
//! an endpoint never parks; it yields to the executor between looks.
//!
//! Dead peers and closes are reported exactly as by the blocking verbs:
//! a waiting endpoint looks at its peer before it parks and every 20 ms
//! while parked (the reactor wakes it for that), so a dead peer is
//! [`Error::PeerGone`](crate::Error::PeerGone) within about 20 ms, after
//! everything it committed; a close is [`Error::Closed`](crate::Error::Closed)
//! after everything sent.
//!
//! # Example: a receive against a timer
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> shmkit::Result<()> {
//! use std::time::Duration;
//! use shmkit::aio::{AsyncConsumer, AsyncProducer};
//!
//! let name = format!("doc-aio-{}", std::process::id());
//! let mut consumer = AsyncConsumer::open(&name)?;
//! let mut producer = AsyncProducer::open(&name)?; // usually another process
//! let mut buf = [0u8; 64];
//! tokio::select! {
//!     got = consumer.recv(&mut buf) => panic!("nothing was sent: {got:?}"),
//!     () = tokio::time::sleep(Duration::from_millis(5)) => {} // the receive is dropped
//! }
//! producer.send(b"late").await?;
//! let n = consumer.recv(&mut buf).await?; // nothing was lost
//! assert_eq!(&buf[..n], b"late");
//! # Ok(())
//! # }
//! ```

mod channel;
mod lend;
mod park;
mod reactor;
mod ring;
mod service;
mod sink;
mod topic;

#[cfg(test)]
mod removal;

pub use channel::{AsyncReceiver, AsyncSender};
pub use reactor::{reactor_kind, ReactorKind};
pub use ring::{AsyncConsumer, AsyncProducer};
pub use service::{AsyncClient, AsyncServer, AsyncServiceClient, AsyncServiceServer};
pub use topic::{AsyncPublisher, AsyncSubscriber, AsyncTypedPublisher, AsyncTypedSubscriber};
