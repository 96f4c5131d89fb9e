//! Async forms of a service's members: [`AsyncClient`] and
//! [`AsyncServer`].

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::lend::{Lend, Step};
use super::park::{Park, Readiness};
use super::ring::end_of_stream;
use crate::channel::{Codec, Postcard, ServiceClient, ServiceServer};
use crate::error::{Error, Result};
use crate::ring::protocol::Slot;
use crate::ring::wait::{Waiter, WakeLine};
use crate::service::{Caller, Client, Options, PendingCall, Request, Response, Server};
use crate::sync::AtomicU32;

/// A client's wait until a request of `.1` bytes can go.
struct CanSend<'a>(&'a mut Client, usize);

impl Readiness for CanSend<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.request_ready(self.1)
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.server_ended(None)
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.sleep_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// A client's wait for the response to `.1`.
struct Answer<'a>(&'a mut Client, &'a PendingCall);

impl Readiness for Answer<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.response_ready(self.1)
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.server_ended(Some(self.1))
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.response_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// A server's wait for a request.
struct Incoming<'a>(&'a mut Server);

impl Readiness for Incoming<'_> {
    fn ready(&mut self) -> Result<bool> {
        self.0.request_ready()
    }
    fn peer_check(&mut self) -> Result<()> {
        self.0.sweep_clients()
    }
    fn sleep_line(&self) -> (&(dyn WakeLine + 'static), &AtomicU32) {
        self.0.sleep_line()
    }
    fn waiter(&mut self) -> &mut Waiter {
        self.0.waiter()
    }
}

/// A client of a service, awaited: a [`Client`] whose waits park the task
/// instead of the thread.
///
/// [`send_request`](AsyncClient::send_request) is cancel-safe: a dropped
/// send has sent nothing. [`wait`](AsyncClient::wait) takes the
/// [`PendingCall`], so a dropped wait abandons the call, as dropping a
/// `PendingCall` does: the server still gets the request, and its response
/// is skipped when it comes (no other call's response is touched).
/// [`poll_response`](AsyncClient::poll_response) waits for a call the
/// caller keeps, which stays pending however often the wait is dropped.
/// [`call`](AsyncClient::call) is a send, then a wait: dropped before its
/// request went out, it has sent nothing; after, the call is abandoned.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncClient, AsyncServer};
///
/// let name = format!("doc-async-service-{}", std::process::id());
/// let mut server = AsyncServer::open(&name)?;
/// let mut client = AsyncClient::connect(&name)?; // usually another process
/// let serving = tokio::spawn(async move {
///     let request = server.recv_request().await?;
///     let upper = request.to_ascii_uppercase();
///     request.reply(&upper)
/// });
/// assert_eq!(&*client.call(b"hello").await?, b"HELLO");
/// serving.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncClient {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    client: Client,
}

impl From<Client> for AsyncClient {
    fn from(client: Client) -> AsyncClient {
        AsyncClient {
            park: Park::default(),
            client,
        }
    }
}

impl AsyncClient {
    /// [`Client::connect`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn connect(name: &str) -> Result<AsyncClient> {
        Client::connect(name).map(AsyncClient::from)
    }

    /// [`Client::connect_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_with`].
    pub fn connect_with(name: &str, options: &Options) -> Result<AsyncClient> {
        Client::connect_with(name, options).map(AsyncClient::from)
    }

    /// The blocking client inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut Client {
        self.park.reset();
        &mut self.client
    }

    /// The blocking client inside.
    pub fn into_inner(mut self) -> Client {
        self.park.reset();
        self.client
    }

    /// [`Client::send_request`], awaited. Cancel-safe: the request goes out
    /// in the poll that completes the future, or not at all.
    ///
    /// # Errors
    ///
    /// As [`Client::send_request`].
    pub fn send_request<'a>(
        &'a mut self,
        request: &'a [u8],
    ) -> impl Future<Output = Result<PendingCall>> + 'a {
        SendRequest {
            endpoint: self,
            request,
        }
    }

    /// `Ready(Ok(()))` once the response to `call` has come, with the
    /// task's waker parked until then.
    ///
    /// # Errors
    ///
    /// [`Error::PeerGone`] or [`Error::Closed`] once no server will answer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmkit::Result<()> {
    /// use std::time::Duration;
    /// use shmkit::aio::{AsyncClient, AsyncServer};
    ///
    /// let name = format!("doc-poll-response-{}", std::process::id());
    /// let mut server = AsyncServer::open(&name)?;
    /// let mut client = AsyncClient::connect(&name)?;
    /// let call = client.send_request(b"slow").await?;
    /// let waited = tokio::time::timeout(
    ///     Duration::from_millis(5),
    ///     std::future::poll_fn(|cx| client.poll_response(cx, &call)),
    /// );
    /// assert!(waited.await.is_err(), "no answer yet: the call stays pending");
    /// server.recv_request().await?.reply(b"done")?;
    /// std::future::poll_fn(|cx| client.poll_response(cx, &call)).await?;
    /// assert_eq!(&*client.get_mut().try_wait(&call)?, b"done");
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_response(&mut self, cx: &mut Context<'_>, call: &PendingCall) -> Poll<Result<()>> {
        self.park
            .poll_ready(cx, &mut Answer(&mut self.client, call))
    }

    /// [`Client::wait`], awaited. Dropping the future before it completes
    /// abandons the call, as dropping its [`PendingCall`] does (its
    /// response is skipped when it comes); to keep a call pending across a
    /// cancelled wait, poll [`poll_response`](AsyncClient::poll_response)
    /// with a reference to it instead.
    ///
    /// # Errors
    ///
    /// As [`Client::wait`].
    pub fn wait(&mut self, call: PendingCall) -> impl Future<Output = Result<Response<'_>>> {
        Lend::new(self, Wait(call))
    }

    /// [`Client::call`], awaited: sends `request`, then waits for its
    /// response. See [`AsyncClient`] for what a dropped call leaves.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn call(&mut self, request: &[u8]) -> Result<Response<'_>> {
        let call = self.send_request(request).await?;
        self.wait(call).await
    }
}

/// A service's server, awaited: a [`Server`] whose wait for requests
/// parks the task instead of the thread. Replies never wait, so they are
/// the blocking server's ([`Request::reply`], [`Server::reply`] through
/// [`get_mut`](AsyncServer::get_mut)).
///
/// [`recv_request`](AsyncServer::recv_request) is cancel-safe: a future
/// dropped before it completes has taken no request. It is also a
/// [`Stream`](futures_core::Stream) of requests with their callers, each
/// copied out (a request is taken only in the poll that yields it).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use futures_util::StreamExt;
/// use shmkit::aio::{AsyncClient, AsyncServer};
///
/// let name = format!("doc-async-server-{}", std::process::id());
/// let mut server = AsyncServer::open(&name)?;
/// let mut client = AsyncClient::connect(&name)?; // usually another process
/// let call = client.send_request(b"2+2").await?;
/// let caller = server.recv_request().await?.caller();
/// server.get_mut().reply(caller, b"4")?;
/// assert_eq!(&*client.wait(call).await?, b"4");
///
/// let call = client.send_request(b"3+3").await?;
/// let (caller, request) = server.next().await.expect("the stream goes on")?;
/// assert_eq!(request, b"3+3");
/// server.get_mut().reply(caller, b"6")?;
/// assert_eq!(&*client.wait(call).await?, b"6");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncServer {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    server: Server,
    /// Whether its stream of requests ended (an error that ends it).
    ended: bool,
}

impl From<Server> for AsyncServer {
    fn from(server: Server) -> AsyncServer {
        AsyncServer {
            park: Park::default(),
            server,
            ended: false,
        }
    }
}

impl AsyncServer {
    /// [`Server::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Server::open`].
    pub fn open(name: &str) -> Result<AsyncServer> {
        Server::open(name).map(AsyncServer::from)
    }

    /// [`Server::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Server::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<AsyncServer> {
        Server::open_with(name, options).map(AsyncServer::from)
    }

    /// The blocking server inside, for replies and its other verbs.
    pub fn get_mut(&mut self) -> &mut Server {
        self.park.reset();
        &mut self.server
    }

    /// The blocking server inside.
    pub fn into_inner(mut self) -> Server {
        self.park.reset();
        self.server
    }

    /// `Ready(Ok(()))` once a client's request is there, with the task's
    /// waker parked until then (looking at the clients' liveness as the
    /// blocking server does).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] for a shrunk segment.
    pub fn poll_request(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.park.poll_ready(cx, &mut Incoming(&mut self.server))
    }

    /// [`Server::recv_request`], awaited. Cancel-safe: the request is taken
    /// only in the poll that completes the future.
    ///
    /// # Errors
    ///
    /// As [`Server::recv_request`].
    pub fn recv_request(&mut self) -> impl Future<Output = Result<Request<'_>>> {
        Lend::new(self, RecvRequest)
    }

    /// The rest of [`RecvRequest`]'s step after its quick look found
    /// nothing: the wait, and the request its last look found.
    #[inline(never)]
    fn poll_found(&mut self, cx: &mut Context<'_>) -> Poll<Result<(Slot, Caller)>> {
        let AsyncServer { park, server, .. } = self;
        park.poll_act(cx, &mut Incoming(server), |i| i.0.request_now())
    }
}

// The client's and server's verbs' futures are written by hand, as the
// ring's are (`aio/ring.rs`), rather than as `async fn`s around a
// `poll_fn`, whose state machines and extra polls cost a call about 200
// instructions (`async_cost call`: 1095 against 892 a 64 B call). The
// wait and the receive, whose outcomes borrow their endpoint, are steps
// of a `Lend` future (`aio/lend.rs`), as the ring's grants are.

/// [`AsyncClient::send_request`]'s future: tries to send, and waits for
/// room (or for a call to be due) while it cannot.
struct SendRequest<'a> {
    endpoint: &'a mut AsyncClient,
    request: &'a [u8],
}

impl Future for SendRequest<'_> {
    type Output = Result<PendingCall>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let SendRequest {
            endpoint: this,
            request,
        } = &mut *self;
        loop {
            match this.client.send_request_now(request) {
                Err(Error::Full { .. }) => {}
                other => return Poll::Ready(other),
            }
            let room = &mut CanSend(&mut this.client, request.len());
            std::task::ready!(this.park.poll_ready(cx, room))?;
        }
    }
}

/// [`AsyncClient::wait`]'s step: owns the call (dropped with its future,
/// the call is abandoned), and reads the response its wait's last look
/// found in the same poll (no second look, as `try_wait` would make).
struct Wait(PendingCall);

impl<'a> Step<'a, AsyncClient> for Wait {
    type Output = Result<Response<'a>>;

    #[inline(always)]
    fn step(
        &mut self,
        cx: &mut Context<'_>,
        this: &'a mut AsyncClient,
    ) -> Result<Self::Output, &'a mut AsyncClient> {
        let call = &self.0;
        let answer = &mut Answer(&mut this.client, call);
        match this.park.poll_act(cx, answer, |a| a.0.response_now(a.1)) {
            Poll::Ready(Ok(found)) => Ok(this.client.response_at(call, found)),
            Poll::Ready(Err(err)) => Ok(Err(err)),
            Poll::Pending => Err(this),
        }
    }
}

/// [`AsyncServer::recv_request`]'s step, written by hand as the ring's
/// verbs are (`aio/ring.rs`): the blocking server's first look behind the
/// park's one byte (`Park::quick`), inlined into the caller, the wait out
/// of line. Its future holds the server until it completes, then lends it
/// to the request.
struct RecvRequest;

impl<'a> Step<'a, AsyncServer> for RecvRequest {
    type Output = Result<Request<'a>>;

    #[inline(always)]
    fn step(
        &mut self,
        cx: &mut Context<'_>,
        this: &'a mut AsyncServer,
    ) -> Result<Self::Output, &'a mut AsyncServer> {
        let found = match this.park.quick(|| this.server.request_quick()) {
            Some(found) => found,
            None => match this.poll_found(cx) {
                Poll::Ready(Ok(found)) => found,
                Poll::Ready(Err(err)) => return Ok(Err(err)),
                Poll::Pending => return Err(this),
            },
        };
        Ok(Ok(this.server.request_at(found)))
    }
}

impl futures_core::Stream for AsyncServer {
    /// A request's caller and its bytes copied out (for the reply, through
    /// [`get_mut`](AsyncServer::get_mut)), or an error:
    /// [`Error::Truncated`] (which ends the stream). Cancel-safe as
    /// [`recv_request`](AsyncServer::recv_request): a request is taken only
    /// in the poll that yields it.
    type Item = Result<(Caller, Vec<u8>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let found = match this.park.quick(|| this.server.request_quick()) {
            Some(found) => Ok(found),
            None => std::task::ready!(this.poll_found(cx)),
        };
        let outcome = found.and_then(|found| {
            let request = this.server.request_at(found);
            Ok((request.caller(), request.copied()?))
        });
        Poll::Ready(end_of_stream(&mut this.ended, outcome))
    }
}

/// A typed service's client, awaited: a
/// [`channel::ServiceClient`](crate::channel::ServiceClient) whose waits
/// park the task instead of the thread. Its calls are cancel-safe as
/// [`AsyncClient`]'s are.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmkit::Result<()> {
/// use shmkit::aio::{AsyncServiceClient, AsyncServiceServer};
///
/// let name = format!("doc-async-typed-service-{}", std::process::id());
/// let mut server = AsyncServiceServer::<u32, String>::open(&name)?;
/// let mut client = AsyncServiceClient::<u32, String>::connect(&name)?;
/// let serving = tokio::spawn(async move {
///     let (caller, n) = server.recv().await?;
///     server.get_mut().reply(caller, &format!("{n} squared is {}", n * n))
/// });
/// assert_eq!(client.call(&7).await?, "7 squared is 49");
/// serving.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
pub struct AsyncServiceClient<Req, Resp, C = Postcard> {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    client: ServiceClient<Req, Resp, C>,
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> From<ServiceClient<Req, Resp, C>>
    for AsyncServiceClient<Req, Resp, C>
{
    fn from(client: ServiceClient<Req, Resp, C>) -> Self {
        AsyncServiceClient {
            park: Park::default(),
            client,
        }
    }
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> AsyncServiceClient<Req, Resp, C> {
    /// [`ServiceClient::connect`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn connect(name: &str) -> Result<Self> {
        ServiceClient::connect(name).map(AsyncServiceClient::from)
    }

    /// [`ServiceClient::connect_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_with`].
    pub fn connect_with(name: &str, options: &Options) -> Result<Self> {
        ServiceClient::connect_with(name, options).map(AsyncServiceClient::from)
    }

    /// The blocking client inside, for its other verbs.
    pub fn get_mut(&mut self) -> &mut ServiceClient<Req, Resp, C> {
        self.park.reset();
        &mut self.client
    }

    /// The blocking client inside.
    pub fn into_inner(mut self) -> ServiceClient<Req, Resp, C> {
        self.park.reset();
        self.client
    }

    /// [`ServiceClient::send`], awaited. Cancel-safe: the request goes out
    /// in the poll that completes the future, or not at all.
    ///
    /// # Errors
    ///
    /// As [`ServiceClient::send`].
    pub async fn send(&mut self, request: &Req) -> Result<PendingCall> {
        loop {
            match self.client.try_send(request) {
                Err(Error::Full { .. }) => {}
                other => return other,
            }
            let len = self.client.encoded_len_of_last();
            let AsyncServiceClient { park, client } = self;
            poll_fn(|cx| park.poll_ready(cx, &mut CanSend(client.client(), len))).await?;
        }
    }

    /// [`ServiceClient::wait`], awaited. Dropping the future abandons the
    /// call, as [`AsyncClient::wait`] does.
    ///
    /// # Errors
    ///
    /// As [`ServiceClient::wait`].
    pub async fn wait(&mut self, call: PendingCall) -> Result<<C as Codec<Resp>>::Value<'_>> {
        let AsyncServiceClient { park, client } = self;
        // What the wait's last look found is decoded in the same poll, as
        // `AsyncClient::wait` reads it (no second look, as `wait` makes).
        let found = poll_fn(|cx| {
            park.poll_act(cx, &mut Answer(client.client(), &call), |answer| {
                answer.0.response_now(answer.1)
            })
        })
        .await?;
        self.client.response_at(&call, found)
    }

    /// [`ServiceClient::call`], awaited: a send, then a wait.
    ///
    /// # Errors
    ///
    /// As [`ServiceClient::call`].
    pub async fn call(&mut self, request: &Req) -> Result<<C as Codec<Resp>>::Value<'_>> {
        let call = self.send(request).await?;
        self.wait(call).await
    }
}

impl<Req, Resp, C> std::fmt::Debug for AsyncServiceClient<Req, Resp, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncServiceClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// A typed service's server, awaited: a
/// [`channel::ServiceServer`](crate::channel::ServiceServer) whose wait
/// for requests parks the task instead of the thread; replies never wait
/// (through [`get_mut`](AsyncServiceServer::get_mut)).
/// [`recv`](AsyncServiceServer::recv) is cancel-safe. For a codec that
/// decodes owned values (the default, [`Postcard`]) it is also a
/// [`Stream`](futures_core::Stream) of requests with their callers. See
/// [`AsyncServiceClient`] for an example.
pub struct AsyncServiceServer<Req, Resp, C = Postcard> {
    // Declared first: its reactor place goes before the mapping it names.
    park: Park,
    server: ServiceServer<Req, Resp, C>,
    /// Whether its stream of requests ended (an error that ends it).
    ended: bool,
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> From<ServiceServer<Req, Resp, C>>
    for AsyncServiceServer<Req, Resp, C>
{
    fn from(server: ServiceServer<Req, Resp, C>) -> Self {
        AsyncServiceServer {
            park: Park::default(),
            server,
            ended: false,
        }
    }
}

impl<Req, Resp, C: Codec<Req> + Codec<Resp>> AsyncServiceServer<Req, Resp, C> {
    /// [`ServiceServer::open`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Server::open`].
    pub fn open(name: &str) -> Result<Self> {
        ServiceServer::open(name).map(AsyncServiceServer::from)
    }

    /// [`ServiceServer::open_with`], awaited.
    ///
    /// # Errors
    ///
    /// As [`Server::open_with`].
    pub fn open_with(name: &str, options: &Options) -> Result<Self> {
        ServiceServer::open_with(name, options).map(AsyncServiceServer::from)
    }

    /// The blocking server inside, for replies and its other verbs.
    pub fn get_mut(&mut self) -> &mut ServiceServer<Req, Resp, C> {
        self.park.reset();
        &mut self.server
    }

    /// The blocking server inside.
    pub fn into_inner(mut self) -> ServiceServer<Req, Resp, C> {
        self.park.reset();
        self.server
    }

    /// [`ServiceServer::recv`], awaited. Cancel-safe: the request is taken
    /// only in the poll that completes the future.
    ///
    /// # Errors
    ///
    /// As [`ServiceServer::recv`].
    pub async fn recv(&mut self) -> Result<(Caller, <C as Codec<Req>>::Value<'_>)> {
        let AsyncServiceServer { park, server, .. } = self;
        // What the wait's last look found is decoded in the same poll, as
        // `AsyncServer::recv_request` reads it (no second look, as `recv`
        // makes).
        let found =
            poll_fn(|cx| park.poll_act(cx, &mut Incoming(server.server()), |i| i.0.request_now()));
        let found = found.await?;
        self.server.request_at(found)
    }
}

impl<Req: 'static, Resp, C> futures_core::Stream for AsyncServiceServer<Req, Resp, C>
where
    C: for<'a> Codec<Req, Value<'a> = Req> + Codec<Resp>,
{
    /// A request's caller and value (for the reply, through
    /// [`get_mut`](AsyncServiceServer::get_mut)), or an error:
    /// [`Error::WrongType`] and [`Error::Corrupt`] for one request (the
    /// stream goes on), [`Error::Truncated`] (which ends it). Cancel-safe
    /// as [`recv`](AsyncServiceServer::recv).
    type Item = Result<(Caller, Req)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let incoming = &mut Incoming(this.server.server());
        let found = std::task::ready!(this.park.poll_act(cx, incoming, |i| i.0.request_now()));
        let outcome = found.and_then(|found| this.server.request_at(found));
        Poll::Ready(end_of_stream(&mut this.ended, outcome))
    }
}

// Movable whatever the types are: nothing points into it.
impl<Req, Resp, C> Unpin for AsyncServiceServer<Req, Resp, C> {}

impl<Req, Resp, C> std::fmt::Debug for AsyncServiceServer<Req, Resp, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncServiceServer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aio::removal::Removal;

    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn a_pending_call_is_sync_so_a_wait_for_it_is_a_send_future() {
        fn is_sync<T: Sync>() {}
        is_sync::<PendingCall>();
        let name = format!("aio-wait-send-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut server = AsyncServer::open(&name).expect("a server");
            let mut client = AsyncClient::connect(&name).expect("a client");
            let call = client.send_request(b"ping").await.expect("sent");
            server
                .recv_request()
                .await
                .expect("a request")
                .reply(b"pong")
                .expect("replied");
            // Holds `&call` across its await: Send only if the call is Sync.
            let wait = client.wait(call);
            is_send(&wait);
            assert_eq!(&*wait.await.expect("the response"), b"pong");
        });
    }

    /// Polls `stream` once, with a waker that does nothing: whether it
    /// yielded an item.
    fn polled_once<S: futures_core::Stream + Unpin>(stream: &mut S) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(stream).poll_next(&mut cx).is_ready()
    }

    #[test]
    fn an_async_server_is_a_stream_of_requests_taken_only_when_yielded() {
        use futures_util::StreamExt;
        let name = format!("aio-server-stream-{}", std::process::id());
        let _removal = Removal::new(crate::service::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut server = AsyncServer::open(&name).expect("a server");
        let mut client = Client::connect(&name).expect("a client");
        // Nothing there: the poll waits, and takes nothing.
        assert!(!polled_once(&mut server));
        let calls = [b"one", b"two"].map(|body| client.send_request(body).expect("sent"));
        runtime.block_on(async {
            for (call, (sent, answer)) in calls.into_iter().zip([(b"one", b"1"), (b"two", b"2")]) {
                let (caller, body) = server.next().await.expect("an item").expect("a request");
                assert_eq!(&body, sent);
                server.get_mut().reply(caller, answer).expect("replied");
                assert_eq!(&*client.wait(call).expect("the response"), answer);
            }
        });
        assert!(!polled_once(&mut server), "nothing more was sent");
    }

    #[test]
    fn an_async_typed_server_is_a_stream_of_decoded_requests() {
        use futures_util::StreamExt;
        let name = format!("aio-typed-server-stream-{}", std::process::id());
        let _removal = Removal::new(crate::service::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut server = AsyncServiceServer::<u32, u64>::open(&name).expect("a server");
            let mut client = AsyncServiceClient::<u32, u64>::connect(&name).expect("a client");
            for n in 1..=3u32 {
                let call = client.send(&n).await.expect("sent");
                let (caller, request) = server.next().await.expect("an item").expect("a request");
                assert_eq!(request, n);
                let square = u64::from(request) * u64::from(request);
                server.get_mut().reply(caller, &square).expect("replied");
                assert_eq!(client.wait(call).await.expect("the response"), square);
            }
        });
    }

    #[test]
    fn an_adaptive_async_server_spins_for_what_its_own_wake_ups_cost() {
        let name = format!("aio-server-wake-cost-{}", std::process::id());
        let _removal = Removal::new(crate::service::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let mut server = AsyncServer::open(&name).expect("a server");
        let mut client = Client::connect(&name).expect("a client");
        let untaught = server.server.waiter().spin_time();
        // A round whose thread was preempted between the wake-up call and
        // the next poll gives a sample too long to learn from: a few rounds.
        for _round in 0..20 {
            runtime.block_on(async {
                // A wait that parks, then is cancelled: its registration
                // stays with the server, and the next receive takes it over.
                tokio::select! {
                    got = server.recv_request() => panic!("nothing was sent: {:?}", got.map(|r| r.len())),
                    () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                }
                let (_, word) = server.server.sleep_line();
                assert_eq!(word.load(crate::sync::Ordering::SeqCst), 1, "it parked");
                // Wakes the parked server (its word says it sleeps).
                let call = client.send_request(b"wake").expect("sent");
                let request = server.recv_request().await.expect("a request");
                assert_eq!(&*request, b"wake");
                request.reply(b"woken").expect("replied");
                assert_eq!(&*client.wait(call).expect("the response"), b"woken");
            });
            if server.server.waiter().spin_time() != untaught {
                return;
            }
        }
        panic!("the wake-up's cost was not learned in 20 rounds");
    }

    #[test]
    fn a_typed_wait_decodes_a_response_in_place_or_copied_out_by_an_earlier_wait() {
        let name = format!("aio-typed-wait-order-{}", std::process::id());
        let _removal = Removal::new(crate::service::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut server = AsyncServiceServer::<u32, u64>::open(&name).expect("a server");
            let mut client = AsyncServiceClient::<u32, u64>::connect(&name).expect("a client");
            let first = client.send(&3).await.expect("sent");
            let second = client.send(&4).await.expect("sent");
            for _ in 0..2 {
                let (caller, n) = server.recv().await.expect("a request");
                server
                    .get_mut()
                    .reply(caller, &u64::from(n * n))
                    .expect("replied");
            }
            // The second's wait takes the first's response off the ring on
            // its way (copied out), and decodes its own in place.
            assert_eq!(client.wait(second).await.expect("in place"), 16);
            assert_eq!(client.wait(first).await.expect("copied"), 9);
            // A call of another client is refused, not waited for.
            let mut other = AsyncServiceClient::<u32, u64>::connect(&name).expect("another");
            let foreign = other.send(&5).await.expect("sent");
            let refused = client.wait(foreign).await;
            assert!(
                matches!(refused, Err(Error::InvalidArgument(_))),
                "{refused:?}"
            );
        });
    }

    #[test]
    fn a_wait_dropped_before_its_response_abandons_its_call_and_a_receive_dropped_takes_nothing() {
        let name = format!("aio-dropped-wait-{}", std::process::id());
        let _removal = Removal::new(crate::service::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut server = AsyncServer::open(&name).expect("a server");
            let mut client = AsyncClient::connect(&name).expect("a client");
            // A receive polled once before any request, then dropped.
            std::future::poll_fn(|cx| {
                let waiting = std::pin::pin!(server.recv_request()).poll(cx);
                assert!(waiting.is_pending(), "nothing was sent");
                Poll::Ready(())
            })
            .await;
            let first = client.send_request(b"first").await.expect("sent");
            let second = client.send_request(b"second").await.expect("sent");
            // The first's wait polled once before its response, then
            // dropped: the call is abandoned.
            let mut first = Some(first);
            std::future::poll_fn(|cx| {
                let call = first.take().expect("polled once");
                let waiting = std::pin::pin!(client.wait(call)).poll(cx);
                assert!(waiting.is_pending(), "no response yet");
                Poll::Ready(())
            })
            .await;
            for _ in 0..2 {
                let request = server.recv_request().await.expect("a request");
                let upper = request.to_ascii_uppercase();
                request.reply(&upper).expect("replied");
            }
            // The first's response is skipped on the way to the second's.
            assert_eq!(
                &*client.wait(second).await.expect("its response"),
                b"SECOND"
            );
            let third = client.send_request(b"third").await.expect("sent");
            let request = server.recv_request().await.expect("the third");
            assert_eq!(&*request, b"third");
            request.reply(b"THIRD").expect("replied");
            assert_eq!(&*client.wait(third).await.expect("its response"), b"THIRD");
        });
    }

    #[test]
    fn a_typed_receive_decodes_the_request_it_found_and_consumes_one_of_another_type() {
        let name = format!("aio-typed-recv-{}", std::process::id());
        let _removal = Removal::new(crate::service::SEGMENT_PREFIX, &name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut server = AsyncServiceServer::<u32, u64>::open(&name).expect("a server");
            let mut wrong = AsyncServiceClient::<String, u64>::connect(&name).expect("a client");
            let mut client = AsyncServiceClient::<u32, u64>::connect(&name).expect("a client");
            let _unanswered = wrong.send(&"seven".to_owned()).await.expect("sent");
            let call = client.send(&7).await.expect("sent");
            let refused = server.recv().await.map(|(_, n)| n);
            assert!(
                matches!(refused, Err(Error::WrongType { .. })),
                "{refused:?}"
            );
            let (caller, n) = server.recv().await.expect("the next request");
            assert_eq!(n, 7);
            server.get_mut().reply(caller, &49).expect("replied");
            assert_eq!(client.wait(call).await.expect("the response"), 49);
        });
    }

    #[test]
    fn a_wait_hands_out_a_response_in_place_or_copied_out_by_an_earlier_wait() {
        let name = format!("aio-wait-order-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut server = AsyncServer::open(&name).expect("a server");
            let mut client = AsyncClient::connect(&name).expect("a client");
            let first = client.send_request(b"one").await.expect("sent");
            let second = client.send_request(b"two").await.expect("sent");
            for _ in 0..2 {
                let request = server.recv_request().await.expect("a request");
                let upper = request.to_ascii_uppercase();
                request.reply(&upper).expect("replied");
            }
            // The second's wait takes the first's response off the ring on
            // its way (copied out), and reads its own in place.
            assert_eq!(&*client.wait(second).await.expect("in place"), b"TWO");
            assert_eq!(&*client.wait(first).await.expect("copied"), b"ONE");
            // A call of another client is refused, not waited for.
            let mut other = AsyncClient::connect(&name).expect("another client");
            let foreign = other.send_request(b"three").await.expect("sent");
            let refused = client.wait(foreign).await.map(|r| r.len());
            assert!(
                matches!(refused, Err(Error::InvalidArgument(_))),
                "{refused:?}"
            );
        });
    }
}
