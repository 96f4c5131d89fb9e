//! What the async typed service client (`crate::aio`, feature `tokio`)
//! needs of the blocking one: a send that does not wait, and the length of
//! the request it tried.

use super::*;

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
}
