//! Why a benchmark run failed.

use std::fmt;
use std::io;

/// Why `shmkit bench` (or its peer process) failed. The command prints it
/// as `shmkit: <message>`; [`Error::Usage`] is a command line that can
/// never work (exit status 2), every other variant a run that failed (1).
#[derive(Debug)]
pub enum Error {
    /// The library failed.
    Shmkit(shmkit::Error),
    /// A system call or an I/O operation failed while doing `context`.
    Io { context: String, source: io::Error },
    /// An option that can never be valid, found after parsing.
    Usage(String),
    /// Any other failure, already worded for the user: a lost message, a
    /// peer that died, ...
    Message(String),
}

impl Error {
    /// A failure to write standard output (where the tables go).
    pub fn stdout(source: io::Error) -> Error {
        Error::Io {
            context: "writing standard output".to_owned(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shmkit(source) => write_chain(f, source),
            Error::Io { context, source } => {
                write!(f, "{context}: ")?;
                write_chain(f, source)
            }
            Error::Usage(message) | Error::Message(message) => f.write_str(message),
        }
    }
}

/// Writes `err`, then each of its sources whose text is not in it already
/// (the library's `Os` variant prints its source itself).
fn write_chain(f: &mut fmt::Formatter<'_>, err: &dyn std::error::Error) -> fmt::Result {
    let text = err.to_string();
    f.write_str(&text)?;
    for cause in std::iter::successors(err.source(), |cause| cause.source()) {
        let more = cause.to_string();
        if !text.contains(&more) {
            write!(f, ": {more}")?;
        }
    }
    Ok(())
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Shmkit(source) => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Usage(_) | Error::Message(_) => None,
        }
    }
}

impl From<shmkit::Error> for Error {
    fn from(source: shmkit::Error) -> Error {
        Error::Shmkit(source)
    }
}
