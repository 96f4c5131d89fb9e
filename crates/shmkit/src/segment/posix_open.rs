//! Opening a POSIX segment without being fooled by what another user put
//! at its name.
//!
//! `/dev/shm` is world-writable (sticky, mode 1777): before a program
//! creates or opens a name, anyone may have put a symlink to one of the
//! program's files there, a FIFO that blocks an open forever, a socket, a
//! directory, or (root only) a bind mount of a file from another file
//! system. [`open`] refuses all of them, with an error that says which it
//! found (docs/ARCHITECTURE.md, memory rule 8; docs/SECURITY.md):
//!
//! - `O_NOFOLLOW`: a symlink, dangling or not, is never followed;
//! - `O_NONBLOCK` on the open: a FIFO cannot block it (cleared once the
//!   file is known to be a regular one);
//! - `fstat`: the file is regular and has no other hard link (a second name
//!   could be another segment of the caller's, which it would overwrite);
//! - `fstatfs`: the file is on a tmpfs, as every POSIX segment is.
//!
//! All checks are made on the opened descriptor, so the name cannot be
//! swapped between the check and the use.

use std::io;
use std::os::fd::OwnedFd;

use super::PosixName;
use crate::error::{Access, Error, Result};
use crate::sys::posix;

/// `shm_open` of `name` that refuses anything but a regular tmpfs file with
/// one name; the descriptor returned is blocking, as `shm_open`'s are.
///
/// # Errors
///
/// [`Error::NotASegment`] naming what is there instead; otherwise the
/// errors of `shm_open` as [`Error::from_os`] words them for `access`.
pub(super) fn open(
    name: &PosixName,
    writable: bool,
    disposition: posix::Disposition,
    mode: u32,
    access: Access,
) -> Result<OwnedFd> {
    let fd = posix::open(name.as_str(), writable, disposition, mode)
        .map_err(|err| open_error(err, name, access))?;
    let stat = posix::fstat(&fd).map_err(|e| Error::from_os(e, name.as_str(), Access::Stat))?;
    if let Some(found) = not_a_segment(&stat) {
        return Err(not_a_segment_error(name, found));
    }
    let magic =
        posix::filesystem_magic(&fd).map_err(|e| Error::from_os(e, name.as_str(), Access::Stat))?;
    if magic != posix::TMPFS_MAGIC {
        return Err(not_a_segment_error(
            name,
            format!("a file on a file system that is not tmpfs (type {magic:#x})"),
        ));
    }
    posix::clear_nonblocking(&fd).map_err(|e| Error::from_os(e, name.as_str(), access))?;
    Ok(fd)
}

/// Refuses a name that holds anything but a regular tmpfs file with one
/// name, without opening it: for removal, which needs no descriptor (and
/// whose `unlink` would otherwise quietly remove another user's symlink or
/// FIFO, or fail with a misleading `EPERM`).
///
/// # Errors
///
/// [`Error::NotASegment`] naming what is there; [`Error::NotFound`] if
/// nothing is.
pub(super) fn check_before_removal(name: &PosixName) -> Result<()> {
    let path = format!(
        "{}/{}",
        posix::SHM_DIR,
        name.as_str().trim_start_matches('/')
    );
    let stat = posix::lstat(&path).map_err(|e| Error::from_os(e, name.as_str(), Access::Stat))?;
    if let Some(found) = not_a_segment(&stat) {
        return Err(not_a_segment_error(name, found));
    }
    let magic = posix::path_filesystem_magic(&path)
        .map_err(|e| Error::from_os(e, name.as_str(), Access::Stat))?;
    if magic != posix::TMPFS_MAGIC {
        return Err(not_a_segment_error(
            name,
            format!("a file on a file system that is not tmpfs (type {magic:#x})"),
        ));
    }
    Ok(())
}

/// What a file is when it is no segment: `None` for a regular file with
/// one name (or none: removed since it was opened).
fn not_a_segment(stat: &posix::Stat) -> Option<String> {
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG if stat.st_nlink > 1 => {
            return Some(format!(
                "a file with {} hard links (another of its names may be someone else's file)",
                stat.st_nlink
            ))
        }
        libc::S_IFREG => return None,
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO (named pipe)",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "a file of unknown type",
    };
    Some(kind.to_owned())
}

/// The errnos of an `O_NOFOLLOW | O_NONBLOCK` open that mean "something
/// other than a segment is there": `ELOOP` a symlink, `EISDIR` a directory
/// opened for writing, `ENXIO` a socket.
fn open_error(err: io::Error, name: &PosixName, access: Access) -> Error {
    let found = match err.raw_os_error() {
        Some(libc::ELOOP) => "a symbolic link (shmkit never follows one)",
        Some(libc::EISDIR) => "a directory",
        Some(libc::ENXIO) => "a socket",
        _ => return Error::from_os(err, name.as_str(), access),
    };
    not_a_segment_error(name, found.to_owned())
}

fn not_a_segment_error(name: &PosixName, found: String) -> Error {
    Error::NotASegment {
        segment: name.to_string(),
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(mode: u32, nlink: u64) -> posix::Stat {
        // SAFETY: `stat` is plain old data; all zeroes is a valid value.
        let mut stat: posix::Stat = unsafe { std::mem::zeroed() };
        stat.st_mode = mode;
        stat.st_nlink = nlink as _;
        stat
    }

    #[test]
    fn only_a_regular_file_with_one_name_is_a_segment() {
        assert_eq!(not_a_segment(&stat_of(libc::S_IFREG | 0o600, 1)), None);
        assert_eq!(not_a_segment(&stat_of(libc::S_IFREG | 0o600, 0)), None);
        let two = not_a_segment(&stat_of(libc::S_IFREG | 0o600, 2)).unwrap();
        assert!(two.contains("2 hard links"), "{two}");
        for (mode, word) in [
            (libc::S_IFIFO, "FIFO"),
            (libc::S_IFDIR, "directory"),
            (libc::S_IFSOCK, "socket"),
            (libc::S_IFLNK, "symbolic link"),
            (libc::S_IFCHR, "character device"),
        ] {
            let found = not_a_segment(&stat_of(mode | 0o666, 1)).unwrap();
            assert!(found.contains(word), "{found}");
        }
    }
}
