//! What the async channels (`crate::aio`, feature `tokio`) need of the
//! blocking ones: their ring endpoints, and the length a value goes out
//! as, to wait for room for it.

use super::*;

impl<T, C: Codec<T>> Sender<T, C> {
    /// The length of the ring message that sending `value` takes.
    pub(crate) fn message_len(&mut self, value: &T) -> Result<usize> {
        let max_message = self.producer.max_message();
        self.outgoing
            .frame(&mut self.codec, value, max_message)
            .map(|(_, _, len)| len)
    }

    /// The ring's producer.
    pub(crate) fn producer_mut(&mut self) -> &mut Producer {
        &mut self.producer
    }
}

impl<T, C> Receiver<T, C> {
    /// The ring's consumer.
    pub(crate) fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }
}
