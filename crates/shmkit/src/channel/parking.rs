//! What the async channels (`crate::aio`, feature `tokio`) need of the
//! blocking ones: their ring endpoints, and the length a value goes out
//! as, to wait for room for it.

use super::*;
use crate::ring::protocol::Slot;

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

impl<T, C: Codec<T>> Receiver<T, C> {
    /// The value of the message at `slot` (from the consumer's
    /// `next_now`), as `try_recv` decodes it.
    pub(crate) fn recv_at(&mut self, slot: Slot) -> Result<C::Value<'_>> {
        let framing = wire::copy_out(self.consumer.read_at(slot), &mut self.body)?;
        self.decode(framing)
    }
}

impl<T, C> Receiver<T, C> {
    /// The ring's consumer.
    pub(crate) fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }
}
