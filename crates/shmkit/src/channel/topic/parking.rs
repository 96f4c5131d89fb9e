//! What the async typed topics (`crate::aio`, feature `tokio`) need of the
//! blocking ones: their topic members, and the length a value goes out
//! as, to wait for room for it.

use super::*;

impl<T, C: Codec<T>> Publisher<T, C> {
    /// The length of the record that publishing `value` takes.
    pub(crate) fn message_len(&mut self, value: &T) -> Result<usize> {
        let max_message = self.publisher.max_message();
        self.outgoing
            .frame(&mut self.codec, value, max_message)
            .map(|(_, _, len)| len)
    }

    /// The topic's publisher.
    pub(crate) fn publisher_mut(&mut self) -> &mut topic::Publisher {
        &mut self.publisher
    }
}

impl<T, C> Subscriber<T, C> {
    /// The topic's subscriber.
    pub(crate) fn subscriber_mut(&mut self) -> &mut topic::Subscriber {
        &mut self.subscriber
    }

    /// The topic's subscriber, and the next message's copy if there is one
    /// now ([`copy_next_now`]): for an async receive whose wait's last
    /// look copies the message it finds.
    pub(crate) fn copier(&mut self) -> (&mut topic::Subscriber, Copier<'_>) {
        (&mut self.subscriber, Copier(&mut self.body))
    }
}

impl<T, C: Codec<T>> Subscriber<T, C> {
    /// The value of the message a [`Copier`] copied, as `try_recv` decodes
    /// it.
    pub(crate) fn decode_copied(&mut self, copied: Copied) -> Result<(Received, C::Value<'_>)> {
        self.decode(copied)
    }
}

/// Where a typed subscriber's next message is copied (its body).
pub(crate) struct Copier<'a>(&'a mut rkyv::util::AlignedVec);

impl Copier<'_> {
    /// `subscriber`'s next message copied into the body if one is there
    /// now, else `None` (also when, on a drop-oldest topic, the message
    /// seen was overwritten before it was copied).
    pub(crate) fn copy_next_now(
        &mut self,
        subscriber: &mut topic::Subscriber,
    ) -> Result<Option<Copied>> {
        match subscriber.try_read() {
            Ok(guard) => copy_out(guard, self.0).map(Some),
            Err(Error::Empty { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
