//! `uds-seqpacket`: a Unix seqpacket socket pair, one `write` per
//! message, one `read` into the receiver's buffer, whose length must be
//! the size, then the check there.

use std::os::fd::{OwnedFd, RawFd};

use rustix::net::SocketType;

use super::descriptors::{inherited, os_error, socket_pair, ForPeer};
use super::{wrong_length, AnyLink, Link, Opened, PeerEnd, Setup};
use crate::Error;

/// Both ends, or why messages of `size` bytes do not fit here.
pub fn open(size: usize) -> Result<Opened, Error> {
    let mut for_peer = ForPeer::default();
    let (mine, peers) = socket_pair(SocketType::SEQPACKET)?;
    // A Unix datagram is refused (EMSGSIZE) if it is longer than
    // the send buffer less 32 bytes (unix_dgram_sendmsg).
    let wanted = 2 * size + 4096;
    for fd in [&mine, &peers] {
        if rustix::net::sockopt::socket_send_buffer_size(fd).unwrap_or(0) < wanted {
            // The kernel caps it at net.core.wmem_max.
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, wanted);
        }
    }
    let limit = rustix::net::sockopt::socket_send_buffer_size(&mine)
        .unwrap_or(0)
        .saturating_sub(32);
    if size > limit {
        return Ok(Opened::Unsupported(format!(
            "a seqpacket message is at most the socket's send buffer less 32 bytes, \
             here {limit} (net.core.wmem_max caps the buffer)"
        )));
    }
    let peer = for_peer.pass(peers);
    Ok(Opened::Ready(Setup::of_descriptors(
        AnyLink::Packet(PacketLink { fd: mine }),
        PeerEnd::Packet { fd: peer },
        for_peer.into_inner(),
    )))
}

/// In the peer: its link from the socket it inherited.
pub fn peer_link(fd: RawFd) -> Result<AnyLink, Error> {
    Ok(AnyLink::Packet(PacketLink {
        fd: inherited(Some(fd))?.expect("Some in, Some out"),
    }))
}

/// A seqpacket socket: one `write` per message, one `read`.
#[derive(Debug)]
pub struct PacketLink {
    fd: OwnedFd,
}

impl Link for PacketLink {
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        loop {
            match rustix::io::write(&self.fd, message) {
                Ok(n) if n == message.len() => return Ok(()),
                Ok(n) => {
                    return Err(Error::Message(format!(
                        "sent {n} bytes of a {}-byte message",
                        message.len()
                    )))
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(os_error("sending")(errno.into())),
            }
        }
    }

    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let n = loop {
            match rustix::io::read(&self.fd, &mut *buf) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(os_error("receiving")(errno.into())),
            }
        };
        if n == 0 {
            return Err(Error::Message(
                "the other side closed the connection".to_owned(),
            ));
        }
        if n != buf.len() {
            return Err(wrong_length(n, buf.len()));
        }
        Ok(inspect(buf))
    }
}
