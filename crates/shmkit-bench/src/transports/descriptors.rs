//! File descriptors handed to the peer process, and the errors of the
//! system calls that make them.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::Error;

/// An error of a system call made while `context`.
pub fn os_error(context: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: context.to_owned(),
        source,
    }
}

/// The descriptors a peer will inherit, gathered while a transport is set
/// up.
#[derive(Debug, Default)]
pub struct ForPeer(Vec<OwnedFd>);

impl ForPeer {
    /// Keeps `fd` for the peer, and gives the number it will have there.
    pub fn pass(&mut self, fd: OwnedFd) -> RawFd {
        let raw = fd.as_raw_fd();
        self.0.push(fd);
        raw
    }

    /// All of them, for `PeerProcess::spawn`.
    pub fn into_inner(self) -> Vec<OwnedFd> {
        self.0
    }
}

/// Takes ownership of a descriptor the parent passed down, after checking
/// that it is one: an open descriptor above standard error.
pub fn inherited(fd: Option<RawFd>) -> Result<Option<OwnedFd>, Error> {
    let Some(fd) = fd else {
        return Ok(None);
    };
    // SAFETY: F_GETFD only reads the descriptor's flags; it touches no
    // memory, and any number is a valid argument (a bad one is EBADF).
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(Error::Message(format!(
            "descriptor {fd} was not passed to this peer process"
        )));
    }
    // SAFETY: the parent passed this open descriptor (checked above) to
    // this process for this link alone; nothing else here owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A second descriptor of the same file or socket.
pub fn clone(file: &File) -> Result<File, Error> {
    file.try_clone()
        .map_err(os_error("duplicating a socket descriptor"))
}

/// A second descriptor of the same queue, for the peer (close-on-exec like
/// every other until `PeerProcess` passes it down).
pub fn dup(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3)
        .map_err(|errno| os_error("duplicating a descriptor")(errno.into()))
}

/// A connected pair of Unix sockets, close-on-exec.
pub fn socket_pair(kind: rustix::net::SocketType) -> Result<(OwnedFd, OwnedFd), Error> {
    use rustix::net::{AddressFamily, SocketFlags};
    rustix::net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)
        .map_err(|errno| os_error("making a pair of Unix sockets")(errno.into()))
}
