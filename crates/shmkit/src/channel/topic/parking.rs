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
}
