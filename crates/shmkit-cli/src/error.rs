//! The command's errors, how they are printed, and the exit status each gives.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// Exit status of an operation that failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status of a command line that can never work (clap uses it too).
pub const EXIT_USAGE: u8 = 2;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The library failed; `context` says what the command was doing, when
    /// the library's message alone would not.
    Shmkit {
        context: Option<String>,
        source: shmkit::Error,
    },
    /// Reading standard input or writing standard output failed.
    Io { context: String, source: io::Error },
    /// An argument that can never be valid, found after clap (exit 2).
    Usage(String),
    /// Any other failure, already worded for the user (exit 1).
    Message(String),
    /// Independent failures of one command (`rm A B`), one line each.
    Several(Vec<CliError>),
}

impl CliError {
    /// A failure to write standard output.
    pub fn stdout(source: io::Error) -> CliError {
        CliError::Io {
            context: "writing standard output".to_owned(),
            source,
        }
    }

    /// Prints the error as `shmkit: …` lines on stderr and gives the exit
    /// status. A closed standard output (`shmkit read … | head -c1`) is not a
    /// failure: nothing is printed and the status is 0.
    pub fn report(self) -> ExitCode {
        if self.is_broken_pipe() {
            return ExitCode::SUCCESS;
        }
        let code = self.exit_code();
        let mut stderr = io::stderr().lock();
        for line in self.lines() {
            // Nothing sensible is left to do if stderr is gone too.
            let _ = writeln!(stderr, "shmkit: {line}");
        }
        ExitCode::from(code)
    }

    fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Io { source, .. } => source.kind() == io::ErrorKind::BrokenPipe,
            _ => false,
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Several(errors) => errors
                .iter()
                .map(CliError::exit_code)
                .max()
                .unwrap_or(EXIT_FAILURE),
            _ => EXIT_FAILURE,
        }
    }

    fn lines(&self) -> Vec<String> {
        match self {
            CliError::Several(errors) => errors.iter().flat_map(CliError::lines).collect(),
            other => vec![other.to_string()],
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Shmkit { context, source } => {
                if let Some(context) = context {
                    write!(f, "{context}: ")?;
                }
                f.write_str(&with_sources(source))
            }
            CliError::Io { context, source } => write!(f, "{context}: {}", with_sources(source)),
            CliError::Usage(message) | CliError::Message(message) => f.write_str(message),
            CliError::Several(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("; "))
            }
        }
    }
}

impl From<shmkit::Error> for CliError {
    fn from(source: shmkit::Error) -> CliError {
        CliError::Shmkit {
            context: None,
            source,
        }
    }
}

impl From<shmkit_bench::Error> for CliError {
    fn from(err: shmkit_bench::Error) -> CliError {
        match err {
            shmkit_bench::Error::Shmkit(source) => CliError::from(source),
            shmkit_bench::Error::Io { context, source } => CliError::Io { context, source },
            shmkit_bench::Error::Usage(message) => CliError::Usage(message),
            shmkit_bench::Error::Message(message) => CliError::Message(message),
        }
    }
}

/// The error's message followed by those of its sources, leaving out a
/// source whose text the message already contains (the library's `Os`
/// variant prints its source itself).
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_print_their_cause_once() {
        let err = CliError::from(shmkit::Error::Os {
            context: "attaching id 7".to_owned(),
            source: io::Error::from_raw_os_error(22),
        });
        let text = err.to_string();
        assert!(
            text.starts_with("attaching id 7: Invalid argument"),
            "{text}"
        );
        assert_eq!(text.matches("Invalid argument").count(), 1, "{text}");
    }

    #[test]
    fn context_comes_first() {
        let err = CliError::Shmkit {
            context: Some("cannot read 5 bytes at offset 10 of segment /x".to_owned()),
            source: shmkit::Error::OutOfBounds {
                offset: 10,
                len: 5,
                size: 12,
            },
        };
        assert_eq!(
            err.to_string(),
            "cannot read 5 bytes at offset 10 of segment /x: bytes 10..15 are outside the segment's 12 bytes"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Message("x".into()).exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        let both = CliError::Several(vec![
            CliError::Message("a".into()),
            CliError::Usage("b".into()),
        ]);
        assert_eq!(both.exit_code(), 2);
        assert_eq!(both.lines(), ["a", "b"]);
        assert!(CliError::stdout(io::ErrorKind::BrokenPipe.into()).is_broken_pipe());
    }
}
