//! Typed services: calls whose requests and responses are values, encoded
//! by one [`Codec`] over a [`service`](crate::service).
//!
//! Each body on the wire is the channel framing without the name: the
//! 8-byte type tag of the value's type and codec, then the codec's body
//! (`docs/FORMAT.md`, "Typed channel messages"). A body whose tag is
//! another type's is [`Error::WrongType`]; one that does not decode,
//! [`Error::Corrupt`]. As for channels, a received body is copied into
//! private memory before it is checked and decoded; responses are encoded
//! straight into the server's grant, requests into a buffer of the
//! client's that is then sent.

use std::marker::PhantomData;
use std::time::Duration;

use super::codec::{Codec, Postcard, Writer};
use super::wire::{Tag, TAG_LEN};
use crate::error::{Error, Result};
use crate::service::{Caller, Client, Options, PendingCall, Server};

#[cfg(feature = "tokio")]
mod parking;

/// A client of a typed service: requests of type `Req`, responses of type
/// `Resp`, both encoded by `C` ([`Postcard`] unless named).
///
/// # Example
///
/// ```
/// use shmkit::channel::{ServiceClient, ServiceServer};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Sum(Vec<i64>);
///
/// let name = format!("doc-typed-service-{}", std::process::id());
/// let mut server = ServiceServer::<Sum, i64>::open(&name)?;
/// let mut client = ServiceClient::<Sum, i64>::connect(&name)?; // usually another process
/// let call = client.send(&Sum(vec![1, 2, 39]))?;
///
/// let (caller, Sum(terms)) = server.recv()?;
/// server.reply(caller, &terms.iter().sum())?;
/// assert_eq!(client.wait(call)?, 42);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ServiceClient<Req, Resp, C = Postcard> {
    client: Client,
    codec: C,
    request: Tag,
    response: Tag,
    encoded: Vec<u8>,
    body: rkyv::util::AlignedVec,
    _values: PhantomData<fn(&Req) -> Resp>,
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> ServiceClient<Req, Resp, C> {
    /// Connects to (or creates) service `name` with default
    /// [`Options`], as [`Client::connect`].
    pub fn connect(name: &str) -> Result<Self> {
        Self::connect_with(name, &Options::default())
    }

    /// Connects to (or creates) service `name`, as [`Client::connect_with`].
    pub fn connect_with(name: &str, options: &Options) -> Result<Self> {
        Ok(ServiceClient {
            client: Client::connect_with(name, options)?,
            codec: C::default(),
            request: Tag::of::<Req, C>(),
            response: Tag::of::<Resp, C>(),
            encoded: Vec::new(),
            body: rkyv::util::AlignedVec::new(),
            _values: PhantomData,
        })
    }

    /// Calls the server with `request` and decodes its response.
    ///
    /// # Errors
    ///
    /// As [`Client::call`]; [`Error::TooLarge`] for an encoding longer than
    /// the service's largest request; [`Error::WrongType`] or
    /// [`Error::Corrupt`] for a response that is not a `Resp` of this
    /// codec.
    pub fn call(&mut self, request: &Req) -> Result<<C as Codec<Resp>>::Value<'_>> {
        let call = self.send(request)?;
        self.wait(call)
    }

    /// [`call`](ServiceClient::call), waiting at most `timeout` in all.
    pub fn call_timeout(
        &mut self,
        request: &Req,
        timeout: Duration,
    ) -> Result<<C as Codec<Resp>>::Value<'_>> {
        let give_up = std::time::Instant::now() + timeout;
        self.encode(request)?;
        let call = self.client.send_request_timeout(&self.encoded, timeout)?;
        let left = give_up.saturating_duration_since(std::time::Instant::now());
        let response = self.client.wait_timeout(&call, left)?;
        copy_out(&response, &mut self.body);
        // Never decode a lost page's zeros.
        response.intact()?;
        drop(response);
        decode::<Resp, C>(&self.codec, &self.response, &self.body, self.client.name())
    }

    /// Sends `request` without waiting (pipelining, as
    /// [`Client::send_request`]).
    pub fn send(&mut self, request: &Req) -> Result<PendingCall> {
        self.encode(request)?;
        self.client.send_request(&self.encoded)
    }

    /// Waits for the response to `call` and decodes it.
    pub fn wait(&mut self, call: PendingCall) -> Result<<C as Codec<Resp>>::Value<'_>> {
        let response = self.client.wait(call)?;
        copy_out(&response, &mut self.body);
        // Never decode a lost page's zeros.
        response.intact()?;
        drop(response);
        decode::<Resp, C>(&self.codec, &self.response, &self.body, self.client.name())
    }

    /// The untyped client underneath.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn encode(&mut self, request: &Req) -> Result<()> {
        let len = Codec::<Req>::encoded_len(&mut self.codec, request)
            .map_err(|err| unencodable(&self.request, err))?;
        self.encoded.clear();
        self.encoded.resize(TAG_LEN + len, 0);
        let mut out = Writer::new(&mut self.encoded);
        self.request.write_framing(false, &mut out)?;
        Codec::<Req>::encode(&mut self.codec, request, &mut out)
            .map_err(|err| unencodable(&self.request, err))?;
        if out.written() != TAG_LEN + len {
            return Err(Error::InvalidArgument(format!(
                "the {} codec wrote another length than it measured",
                <C as Codec<Req>>::NAME
            )));
        }
        Ok(())
    }
}

/// The server of a typed service: requests of type `Req`, responses of
/// type `Resp`, both encoded by `C` ([`Postcard`] unless named). See
/// [`ServiceClient`] for an example.
pub struct ServiceServer<Req, Resp, C = Postcard> {
    server: Server,
    codec: C,
    request: Tag,
    response: Tag,
    body: rkyv::util::AlignedVec,
    _values: PhantomData<fn(&Resp) -> Req>,
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> ServiceServer<Req, Resp, C> {
    /// Opens (or creates) service `name` as its server with default
    /// [`Options`], as [`Server::open`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// Opens (or creates) service `name` as its server, as
    /// [`Server::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<Self> {
        Ok(ServiceServer {
            server: Server::open_with(name, options)?,
            codec: C::default(),
            request: Tag::of::<Req, C>(),
            response: Tag::of::<Resp, C>(),
            body: rkyv::util::AlignedVec::new(),
            _values: PhantomData,
        })
    }

    /// Receives the next request and decodes it; answer it with
    /// [`reply`](ServiceServer::reply) and the [`Caller`].
    ///
    /// # Errors
    ///
    /// As [`Server::recv_request`]; [`Error::WrongType`] or
    /// [`Error::Corrupt`] for a request that is not a `Req` of this codec
    /// (it is consumed, and the caller's call stays unanswered).
    pub fn recv(&mut self) -> Result<(Caller, <C as Codec<Req>>::Value<'_>)> {
        let request = self.server.recv_request()?;
        let caller = request.caller();
        copy_out(&request, &mut self.body);
        // Never decode a lost page's zeros.
        request.intact()?;
        drop(request);
        let value = decode::<Req, C>(&self.codec, &self.request, &self.body, self.server.name())?;
        Ok((caller, value))
    }

    /// [`recv`](ServiceServer::recv), waiting at most `timeout`.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<(Caller, <C as Codec<Req>>::Value<'_>)> {
        let request = self.server.recv_request_timeout(timeout)?;
        let caller = request.caller();
        copy_out(&request, &mut self.body);
        // Never decode a lost page's zeros.
        request.intact()?;
        drop(request);
        let value = decode::<Req, C>(&self.codec, &self.request, &self.body, self.server.name())?;
        Ok((caller, value))
    }

    /// Answers `caller` with `response`, encoded straight into the
    /// client's response ring.
    ///
    /// # Errors
    ///
    /// As [`Server::reply`]; [`Error::TooLarge`] for an encoding longer
    /// than the service's largest response.
    pub fn reply(&mut self, caller: Caller, response: &Resp) -> Result<()> {
        let len = TAG_LEN
            + Codec::<Resp>::encoded_len(&mut self.codec, response)
                .map_err(|err| unencodable(&self.response, err))?;
        let mut grant = self.server.reply_grant(caller, len)?;
        // SAFETY: the grant's `len` bytes are the server's until committed
        // or dropped (ring rule 2), and the writer is gone by then.
        let mut out = unsafe { Writer::from_raw_parts(grant.as_mut_ptr(), len) };
        self.response.write_framing(false, &mut out)?;
        Codec::<Resp>::encode(&mut self.codec, response, &mut out)
            .map_err(|err| unencodable(&self.response, err))?;
        if out.written() != len {
            // Dropping the grant sends nothing.
            return Err(Error::InvalidArgument(format!(
                "the {} codec wrote another length than it measured",
                <C as Codec<Resp>>::NAME
            )));
        }
        grant.commit();
        Ok(())
    }

    /// The untyped server underneath.
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// Copies a body out of shared memory through its raw pointer (never a
/// `&[u8]` over bytes the peer maps) into the private buffer.
fn copy_out(bytes: &[u8], body: &mut rkyv::util::AlignedVec) {
    let len = bytes.len();
    body.clear();
    body.reserve(len);
    // SAFETY: `bytes.as_ptr()` is the start of `len` bytes of a request or
    // response the peer leaves alone while it is held (ring rule 2); `body`
    // has room for `len` bytes (reserved), initialised before `set_len`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), body.as_mut_ptr(), len);
        body.set_len(len);
    }
}

/// Checks the tag of a private copy and decodes its body.
fn decode<'a, T, C: Codec<T>>(
    codec: &C,
    tag: &Tag,
    body: &'a [u8],
    service: &str,
) -> Result<C::Value<'a>> {
    let Some((found, rest)) = body.split_first_chunk::<TAG_LEN>() else {
        return Err(Error::Corrupt(format!(
            "service {service}: a body of {} bytes is too short for its 8-byte type tag",
            body.len()
        )));
    };
    let found = u64::from_le_bytes(*found);
    if found != tag.value {
        return Err(Error::WrongType {
            place: format!("service {service}"),
            expected: tag.name.clone(),
            found: format!("tag {found:#018x}"),
        });
    }
    codec.decode(rest).map_err(|err| {
        Error::Corrupt(format!(
            "service {service}: a body that is no {}: {err}",
            tag.name
        ))
    })
}

fn unencodable(tag: &Tag, err: super::CodecError) -> Error {
    Error::InvalidArgument(format!("cannot encode a {}: {err}", tag.name))
}

impl<Req, Resp, C> std::fmt::Debug for ServiceClient<Req, Resp, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.client.name())
            .field("request", &self.request.name)
            .field("response", &self.response.name)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp, C> std::fmt::Debug for ServiceServer<Req, Resp, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceServer")
            .field("service", &self.server.name())
            .field("request", &self.request.name)
            .field("response", &self.response.name)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::channel::Plain;

    #[test]
    fn a_request_of_another_type_is_wrong_type_and_the_next_goes_on() {
        let name = format!("test-typed-service-wrong-{}", std::process::id());
        let mut server = ServiceServer::<u32, u32, Plain>::open(&name).unwrap();
        let mut wrong = ServiceClient::<u64, u32, Plain>::connect(&name).unwrap();
        let mut right = ServiceClient::<u32, u32, Plain>::connect(&name).unwrap();
        let _lost = wrong.send(&7).unwrap();
        let call = right.send(&20).unwrap();
        let err = server.recv().unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err}");
        let (caller, n) = server.recv().unwrap();
        server.reply(caller, &(n + 1)).unwrap();
        assert_eq!(right.wait(call).unwrap(), 21);
    }
}
