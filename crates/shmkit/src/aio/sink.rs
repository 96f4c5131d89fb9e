//! The one [`Sink`](futures_sink::Sink) of the four async senders (ring
//! producer, typed sender, topic publisher, typed publisher): each keeps at
//! most one message that did not fit, and sends it once there is room.
//! What differs between them (how a message is sent now, kept, and sent
//! once there is room) is [`Outgoing`]; the rest is written once here.

use std::task::{Context, Poll};

use crate::error::Result;

/// A sender's part of its `Sink` of messages `M`.
pub(crate) trait Outgoing<M> {
    /// How a message that did not fit is kept: a copy of its bytes, or
    /// the value itself.
    type Kept;

    /// The message that did not fit, if any.
    fn kept(&mut self) -> &mut Option<Self::Kept>;

    /// Sends `message` if there is room now (`Ok(true)`); else does
    /// nothing (`Ok(false)`).
    fn send_now(&mut self, message: &M) -> Result<bool>;

    /// `message`, kept for later.
    fn keep(message: M) -> Self::Kept;

    /// Waits for room for `kept`, then sends it in the same poll.
    fn poll_send_kept(&mut self, cx: &mut Context<'_>, kept: &Self::Kept) -> Poll<Result<()>>;

    /// The sink's `poll_ready`, `poll_flush` and `poll_close`: sends the
    /// kept message, if any. Inlined, as the sink's methods are, so that
    /// `poll_ready` before a message costs one test when none is kept: as
    /// calls, it and `start_send` made a 64 B message's send cost 175
    /// instructions, inlined about 100 (`async_cost send 64 N sink`).
    #[inline]
    fn flush_kept(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.kept().is_none() {
            return Poll::Ready(Ok(()));
        }
        self.send_kept(cx)
    }

    /// The rest of [`flush_kept`](Outgoing::flush_kept) when a message is
    /// kept. A message whose send fails stays kept with the error, so that
    /// a later flush (once a new consumer took the ring over, say) sends
    /// it: nothing is lost by an error.
    #[inline(never)]
    fn send_kept(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(kept) = self.kept().take() else {
            return Poll::Ready(Ok(()));
        };
        let sent = self.poll_send_kept(cx, &kept);
        if !matches!(sent, Poll::Ready(Ok(()))) {
            *self.kept() = Some(kept);
        }
        sent
    }

    /// The sink's `start_send`: sends `message` if it fits now, else keeps
    /// it for the next `poll_ready` or `poll_flush`.
    #[inline]
    fn start(&mut self, message: M) -> Result<()> {
        if !self.send_now(&message)? {
            *self.kept() = Some(Self::keep(message));
        }
        Ok(())
    }
}

/// `impl [generics] Sink<M> for Type` by the type's [`Outgoing<M>`]. The
/// stream a sink feeds closes when its sender is dropped, so closing only
/// flushes.
macro_rules! sink_by_outgoing {
    (impl [$($generics:tt)*] Sink<$message:ty> for $sender:ty) => {
        impl<$($generics)*> futures_sink::Sink<$message> for $sender {
            type Error = $crate::error::Error;

            #[inline]
            fn poll_ready(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<$crate::error::Result<()>> {
                $crate::aio::sink::Outgoing::<$message>::flush_kept(self.get_mut(), cx)
            }

            #[inline]
            fn start_send(
                self: std::pin::Pin<&mut Self>,
                message: $message,
            ) -> $crate::error::Result<()> {
                $crate::aio::sink::Outgoing::<$message>::start(self.get_mut(), message)
            }

            #[inline]
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<$crate::error::Result<()>> {
                $crate::aio::sink::Outgoing::<$message>::flush_kept(self.get_mut(), cx)
            }

            #[inline]
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<$crate::error::Result<()>> {
                $crate::aio::sink::Outgoing::<$message>::flush_kept(self.get_mut(), cx)
            }
        }
    };
}
pub(crate) use sink_by_outgoing;
