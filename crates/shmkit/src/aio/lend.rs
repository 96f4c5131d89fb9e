//! The future of a verb whose outcome borrows its endpoint for as long as
//! it was lent (a ring's grant, a service's request or response): the
//! endpoint is taken by value in each poll and handed back to wait, which
//! costs fewer instructions than lending it out only once the verb
//! completed (measured with `async_cost`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A verb polled by its [`Lend`] future: `step` either completes (`Ok`,
/// with the outcome, which may borrow `endpoint` for `'a`) or hands the
/// endpoint back to wait (`Err`).
pub(super) trait Step<'a, E: 'a> {
    type Output;
    fn step(
        &mut self,
        cx: &mut Context<'_>,
        endpoint: &'a mut E,
    ) -> Result<Self::Output, &'a mut E>;
}

/// The future of a [`Step`]: holds the endpoint until the verb completes
/// (dropped before, it drops the step, and whatever the step owns).
pub(super) struct Lend<'a, E, S> {
    endpoint: Option<&'a mut E>,
    step: S,
}

impl<'a, E, S: Step<'a, E>> Lend<'a, E, S> {
    #[inline(always)]
    pub(super) fn new(endpoint: &'a mut E, step: S) -> Lend<'a, E, S> {
        Lend {
            endpoint: Some(endpoint),
            step,
        }
    }
}

impl<'a, E, S: Step<'a, E> + Unpin> Future for Lend<'a, E, S> {
    type Output = S::Output;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<S::Output> {
        let this = &mut *self;
        let endpoint = this.endpoint.take().expect(POLLED_AFTER_END);
        match this.step.step(cx, endpoint) {
            Ok(output) => Poll::Ready(output),
            Err(endpoint) => {
                this.endpoint = Some(endpoint);
                Poll::Pending
            }
        }
    }
}

/// The panic of a verb's future polled again after it completed.
const POLLED_AFTER_END: &str = "a verb's future polled after it completed";
