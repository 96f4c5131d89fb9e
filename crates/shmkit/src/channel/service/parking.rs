//! What the async typed service client and server (`crate::aio`, feature
//! `tokio`) need of the blocking ones: a send that does not wait, the
//! length of the request it tried, and the decoding of a response or
//! request that a wait found.

use super::*;
use crate::ring::protocol::Slot;

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> ServiceClient<Req, Resp, C> {
    /// Encodes `request` and sends it if it can go now, else
    /// [`Error::Full`] (see [`Client::try_send_request`]).
    pub(crate) fn try_send(&mut self, request: &Req) -> Result<PendingCall> {
        self.encode(request)?;
        self.client.send_request_now(&self.encoded)
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

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> ServiceServer<Req, Resp, C> {
    /// The request that the server's `request_now` found
    /// (`Server::request_at`), decoded as [`recv`](ServiceServer::recv)
    /// decodes it, without looking for it again.
    pub(crate) fn request_at(
        &mut self,
        found: (Slot, Caller),
    ) -> Result<(Caller, <C as Codec<Req>>::Value<'_>)> {
        let request = self.server.request_at(found);
        let caller = request.caller();
        copy_out(&request, &mut self.body);
        // Never decode a lost page's zeros.
        request.intact()?;
        drop(request);
        let value = decode::<Req, C>(&self.codec, &self.request, &self.body, self.server.name())?;
        Ok((caller, value))
    }
}
