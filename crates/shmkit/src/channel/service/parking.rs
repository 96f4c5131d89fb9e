//! What the async typed service client (`crate::aio`, feature `tokio`)
//! needs of the blocking one: a send that does not wait, the length of
//! the request it tried, and the decoding of a response its wait found.

use super::*;
use crate::ring::protocol::Slot;

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> ServiceClient<Req, Resp, C> {
    /// Encodes `request` and sends it if it can go now, else
    /// [`Error::Full`] (see [`Client::try_send_request`]).
    pub(crate) fn try_send(&mut self, request: &Req) -> Result<PendingCall> {
        self.encode(request)?;
        self.client.try_send_request(&self.encoded)
    }

    /// The length of the request body last encoded.
    pub(crate) fn encoded_len_of_last(&self) -> usize {
        self.encoded.len()
    }

    /// The response to `call` that the client's `response_now` found
    /// (`Client::response_at`), decoded as [`wait`](ServiceClient::wait)
    /// decodes it, without looking for it again.
    pub(crate) fn response_at(
        &mut self,
        call: &PendingCall,
        found: Option<Slot>,
    ) -> Result<<C as Codec<Resp>>::Value<'_>> {
        let response = self.client.response_at(call, found)?;
        copy_out(&response, &mut self.body);
        // Never decode a lost page's zeros.
        response.intact()?;
        drop(response);
        decode::<Resp, C>(&self.codec, &self.response, &self.body, self.client.name())
    }
}
