//! `shmkit-async`: the rings of `shmkit-block`, awaited in both processes
//! (`shmkit::aio`). Each side has a current-thread tokio runtime; every
//! send and receive (a stream's messages all in one future) is polled
//! once in place, and a future that must wait goes to the runtime
//! (`block_on`), so a wait parks on the process's reactor (`futex_waitv`)
//! and is woken through the task's waker, as a tokio program's would be.
//! Entering the runtime for every message instead would measure the
//! bench's synchronous loop, not the adapter: a tokio program runs its loop
//! inside a task. The bytes move as in `shmkit-block`: a message is
//! copied into the ring and committed on its own (`send`; a stream's
//! sender, `write_while`, the async loop of grant, copy and commit), and
//! read in place, checked and released on its own (`read`; a stream's
//! receiver, `read_while`, the async loop of `read`). The loops keep their
//! state in registers, where a loop of `.await`s keeps it in the future's
//! memory (`async_cost sides`).

use std::time::Duration;

use shmkit::aio::{AsyncConsumer, AsyncProducer};
use tokio::runtime::Runtime;

use super::{one_way, ring, wrong_length, AnyLink, Opened, Setup, Transport};
use crate::measure::Message;
use crate::Error;

/// The rings of `shmkit-block` for these messages, made by the parent.
pub fn open(both: bool, size: usize, block_spin: Option<Duration>) -> Result<Opened, Error> {
    let opened = ring::open(Transport::ShmkitBlock, both, size, block_spin)?;
    let Opened::Ready(setup) = opened else {
        return Ok(opened);
    };
    let Setup {
        link,
        peer_end,
        inherit,
        rings,
    } = *setup;
    Ok(Opened::Ready(Box::new(Setup {
        link: AnyLink::Async(AsyncLink::of(link)?),
        peer_end,
        inherit,
        rings,
    })))
}

/// In the peer: its link, opening the rings the parent made.
pub fn peer_link(
    size: usize,
    rx: &str,
    tx: Option<&str>,
    block_spin_ns: Option<u64>,
) -> Result<AnyLink, Error> {
    let link = ring::peer_link(Transport::ShmkitBlock, size, rx, tx, block_spin_ns)?;
    Ok(AnyLink::Async(AsyncLink::of(link)?))
}

#[derive(Debug)]
pub struct AsyncLink {
    runtime: Runtime,
    tx: Option<AsyncProducer>,
    rx: Option<AsyncConsumer>,
}

impl AsyncLink {
    /// The async form of a `shmkit-block` link's ends.
    pub(crate) fn of(link: AnyLink) -> Result<AsyncLink, Error> {
        let AnyLink::Ring(link) = link else {
            unreachable!("only a ring link is awaited: ring::open, ring::peer_link and StreamSides make them");
        };
        let (tx, rx) = link.into_ends();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|err| Error::Message(format!("cannot start a tokio runtime: {err}")))?;
        Ok(AsyncLink {
            runtime,
            tx: tx.map(AsyncProducer::from),
            rx: rx.map(AsyncConsumer::from),
        })
    }
}

impl super::Link for AsyncLink {
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        run(&self.runtime, async { Ok(tx.send(message).await?) })
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        run(&self.runtime, async {
            let message = rx.read().await?;
            if message.len() != buf.len() {
                return Err(wrong_length(message.len(), buf.len()));
            }
            Ok(inspect(&message))
        })
    }

    /// A stream's messages, all awaited in one task (one `block_on`), as a
    /// tokio program's loop would: each copied into its grant, stamped
    /// there and committed before the next, by `write_while`, the async
    /// loop of grant, copy and commit (the same work as shmkit-block's
    /// stream sender, which fills its grants so).
    fn send_sequence(
        &mut self,
        message: &mut Message,
        sequences: std::ops::Range<u64>,
    ) -> Result<(), Error> {
        // As shmkit-block's loop, which sends nothing for no messages.
        if sequences.is_empty() {
            return Ok(());
        }
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        let len = message.bytes().len();
        let (mut next, end) = (sequences.start, sequences.end);
        let bytes = message.bytes();
        run(&self.runtime, async {
            tx.write_while(len, move |space| {
                if next == end {
                    return false;
                }
                space.copy_from_slice(bytes);
                space[..8].copy_from_slice(&next.to_le_bytes());
                next += 1;
                true
            })
            .await?;
            Ok(())
        })
    }

    /// A stream's messages, all awaited in one task, as `send_sequence`:
    /// each read in place, checked and released before the next, as
    /// `shmkit-block` reads them, by `read_while`, the async loop of
    /// `read`.
    fn recv_while(
        &mut self,
        buf: &mut [u8],
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        let len = buf.len();
        run(&self.runtime, async {
            let mut wrong = None;
            // The closure owns what it uses (`move`, the one outcome it
            // sets through a reference): borrowing `wrong` and `len` from
            // the task's state instead measured 102/152 instructions a
            // message, send/receive, against 90/138 (`async_cost sides
            // 64`; the crate's inlining moved both sides).
            let wrong_len = &mut wrong;
            rx.read_while(move |message| {
                if message.len() != len {
                    *wrong_len = Some(message.len());
                    return false;
                }
                each(message)
            })
            .await?;
            if let Some(got) = wrong {
                return Err(wrong_length(got, len));
            }
            // `read_while` leaves the message `each` stopped at (the end
            // message) in the ring: taken now, as shmkit-block takes it.
            rx.read().await?.release();
            Ok(())
        })
    }

    /// Checks the message in place and copies it straight into a grant of
    /// the other ring, as `shmkit-block` does.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let (Some(rx), Some(tx)) = (self.rx.as_mut(), self.tx.as_mut()) else {
            return Err(one_way("echo"));
        };
        run(&self.runtime, async {
            let message = rx.read().await?;
            if message.len() != buf.len() {
                return Err(wrong_length(message.len(), buf.len()));
            }
            check(&message)?;
            tx.send(&message).await?;
            Ok(())
        })
    }
}

/// Runs `future` to its end on this side's tokio runtime, polling it once
/// in place first: a tokio program runs its loop inside a task, which
/// enters the runtime once, not once a message; the bench's loop is
/// synchronous, and entering the runtime (`block_on`) for every send and
/// receive would measure that, not the adapter. A future that must wait is
/// handed to the runtime, whose poll replaces the no-op waker of the first.
fn run<F: std::future::Future>(runtime: &Runtime, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
        return output;
    }
    runtime.block_on(future)
}
