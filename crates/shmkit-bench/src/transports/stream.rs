//! Byte streams: `pipe` (two pipes for a ping-pong), `uds-stream` (a Unix
//! stream socket pair) and `tcp` (a connection over 127.0.0.1 with
//! `TCP_NODELAY`). The sender writes the message from its buffer (`write`,
//! repeated until all of it is written); the receiver reads exactly as many
//! bytes into its buffer (`read`, repeated), then checks them there.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{OwnedFd, RawFd};

use rustix::net::SocketType;

use super::descriptors::{clone, inherited, os_error, socket_pair, ForPeer};
use super::{one_way, AnyLink, Link, Opened, PeerEnd, Setup, Transport};
use crate::Error;

/// Both ends of `pipe`: a pipe to the peer, and one back if `both`.
pub fn open_pipes(both: bool) -> Result<Opened, Error> {
    let mut for_peer = ForPeer::default();
    let (peer_rx, tx) = pipe()?;
    let (rx, peer_tx) = if both {
        let (rx, peer_tx) = pipe()?;
        (Some(rx), Some(for_peer.pass(peer_tx)))
    } else {
        (None, None)
    };
    let peer_end = PeerEnd::Stream {
        rx: Some(for_peer.pass(peer_rx)),
        tx: peer_tx,
    };
    let link = AnyLink::Stream(StreamLink {
        rx: rx.map(File::from),
        tx: Some(File::from(tx)),
    });
    Ok(Opened::Ready(Setup::of_descriptors(
        link,
        peer_end,
        for_peer.into_inner(),
    )))
}

/// Both ends of `uds-stream` or `tcp`: one socket each, used both ways if
/// `both`.
pub fn open_socket(transport: Transport, both: bool) -> Result<Opened, Error> {
    let mut for_peer = ForPeer::default();
    let (mine, peers) = if transport == Transport::Tcp {
        tcp_pair()?
    } else {
        socket_pair(SocketType::STREAM)?
    };
    let peer = for_peer.pass(peers);
    let mine = File::from(mine);
    let link = AnyLink::Stream(StreamLink {
        rx: if both { Some(clone(&mine)?) } else { None },
        tx: Some(mine),
    });
    let peer_end = PeerEnd::Stream {
        rx: Some(peer),
        tx: both.then_some(peer),
    };
    Ok(Opened::Ready(Setup::of_descriptors(
        link,
        peer_end,
        for_peer.into_inner(),
    )))
}

/// In the peer: its link from the descriptors it inherited.
pub fn peer_link(rx: Option<RawFd>, tx: Option<RawFd>) -> Result<AnyLink, Error> {
    let rx_file = inherited(rx)?.map(File::from);
    // A socket both ways comes as one descriptor: duplicate it.
    let tx_file = if tx.is_some() && tx == rx {
        rx_file.as_ref().map(clone).transpose()?
    } else {
        inherited(tx)?.map(File::from)
    };
    Ok(AnyLink::Stream(StreamLink {
        rx: rx_file,
        tx: tx_file,
    }))
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|errno| os_error("making a pipe")(errno.into()))
}

/// Both ends of a TCP connection over 127.0.0.1, with `TCP_NODELAY`.
fn tcp_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    let context = "connecting over TCP to 127.0.0.1";
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(os_error(context))?;
    let address = listener.local_addr().map_err(os_error(context))?;
    let client = std::net::TcpStream::connect(address).map_err(os_error(context))?;
    let (server, _) = listener.accept().map_err(os_error(context))?;
    for stream in [&client, &server] {
        stream.set_nodelay(true).map_err(os_error(context))?;
    }
    Ok((OwnedFd::from(client), OwnedFd::from(server)))
}

/// A byte stream: a pipe or a stream socket.
#[derive(Debug)]
pub struct StreamLink {
    rx: Option<File>,
    tx: Option<File>,
}

impl Link for StreamLink {
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        let tx = self.tx.as_mut().ok_or_else(|| one_way("send"))?;
        tx.write_all(message).map_err(os_error("sending"))
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let rx = self.rx.as_mut().ok_or_else(|| one_way("receive"))?;
        rx.read_exact(buf).map_err(|source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                Error::Message("the other side closed the stream".to_owned())
            } else {
                os_error("receiving")(source)
            }
        })?;
        Ok(inspect(buf))
    }
}
