//! The command line: the subcommands, their arguments, and the parsers for
//! sizes, modes and keys.

use clap::{Args, Parser, Subcommand};
use shmkit::Key;

use crate::error::CliError;

const AFTER_HELP: &str = "\
KEY names a segment: a System V key in decimal or 0x hex (as `ipcs -m` shows \
it), ftok:PATH:PROJ, or a POSIX name beginning with / (a file in /dev/shm). \
`--id ID` selects a System V segment by its id instead.

Exit status:
  0  success, also when standard output is closed early (e.g. by `head`)
  1  the operation failed: no such segment, permission denied, out of bounds, ...
  2  the command line is wrong: unknown option, bad number, malformed KEY";

/// `shmkit`: the whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "shmkit",
    version,
    about = "Inspect and use shared memory (System V and POSIX) from the shell",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every shared-memory segment, System V and POSIX (like `ipcs -m`)
    Ls {
        /// Print a JSON array of the objects `stat --json` prints
        #[arg(long)]
        json: bool,
    },
    /// Show everything known about one segment and the processes attached to it
    Stat {
        #[command(flatten)]
        target: Target,
        /// Print one JSON object (times in seconds since the epoch, or null)
        #[arg(long)]
        json: bool,
    },
    /// Create a segment, or open it if the key exists; print its id (System V) or name (POSIX)
    Create {
        /// 0x1234, 4660, ftok:PATH:PROJ, /name, or `private` (also IPC_PRIVATE
        /// or 0) for a new System V segment reachable only by its id
        #[arg(value_name = "KEY", allow_negative_numbers = true)]
        key: String,
        /// Size in bytes; a K, M or G suffix multiplies by 1024, 1024² or 1024³
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        size: u64,
        /// Permission bits, in octal
        #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
        mode: u32,
        /// Fail if the key already names a segment
        #[arg(long)]
        exclusive: bool,
    },
    /// Remove segments; each one's memory is freed when its last process detaches
    Rm {
        #[command(flatten)]
        targets: Targets,
    },
    /// Copy standard input into a segment; nothing is written unless all of it fits
    Write {
        #[command(flatten)]
        target: Target,
        /// Where in the segment the data starts
        #[arg(long, value_name = "N", default_value = "0", value_parser = parse_size)]
        offset: u64,
    },
    /// Copy bytes of a segment to standard output
    Read {
        #[command(flatten)]
        target: Target,
        /// The first byte to copy
        #[arg(long, value_name = "N", default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// How many bytes to copy [default: to the end of the segment]
        #[arg(long, value_name = "N", value_parser = parse_size)]
        len: Option<u64>,
    },
    /// Show, step by step, two processes sharing a System V segment
    Demo,
    /// The child process of `shmkit demo` (not for direct use)
    #[command(name = "__demo-child", hide = true)]
    DemoChild {
        /// The segment the parent created
        #[arg(long)]
        id: i32,
    },
}

/// One segment, by key or by System V id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The segment's key: 0x1234, 4660, ftok:PATH:PROJ, or /name
    #[arg(value_name = "KEY", allow_negative_numbers = true)]
    pub key: Option<String>,
    /// Select a System V segment by its id (the shmid of `ipcs -m`) instead of a KEY
    #[arg(long, value_name = "ID")]
    pub id: Option<i32>,
}

/// One or more segments, by key or by System V id.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Targets {
    /// Keys of the segments: 0x1234, 4660, ftok:PATH:PROJ, or /name
    #[arg(value_name = "KEY", allow_negative_numbers = true)]
    pub keys: Vec<String>,
    /// Select a System V segment by its id (repeatable)
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i32>,
}

/// Parses a KEY as the library does (`private` included).
///
/// Text that can never be a key is a usage error (exit 2); a key that needs
/// the system and fails (ftok of a missing file) is a runtime error.
pub fn parse_key(text: &str) -> Result<Key, CliError> {
    text.parse().map_err(|err| match err {
        shmkit::Error::InvalidName { .. } | shmkit::Error::InvalidArgument(_) => {
            CliError::Usage(err.to_string())
        }
        other => CliError::from(other),
    })
}

/// Parses a byte count: plain digits, or digits with a K, M, G or T suffix
/// (optionally `KiB` etc.) multiplying by a power of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let expected = || "expected a number of bytes such as 4096, 64K, 1M or 2G".to_owned();
    if digits.is_empty() {
        return Err(expected());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(expected()),
    };
    let too_large = || format!("{text} is more than the largest size, {} bytes", u64::MAX);
    digits
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(1 << shift)
        .ok_or_else(too_large)
}

/// Parses permission bits in octal (`644`, `0644` or `0o644`), at most `777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(bits) if bits <= 0o777 && !digits.starts_with('+') => Ok(bits),
        Ok(_) => Err("expected at most 777: the nine permission bits".to_owned()),
        Err(_) => Err("expected octal permission bits such as 600 or 644".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "K", "12Q", "-1", "1.5M", " 1", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("17179869184G").is_err());
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        for bad in ["", "8", "1777", "rw", "+600", "0o"] {
            assert!(parse_mode(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn keys_include_private() {
        assert_eq!(parse_key("private").unwrap(), Key::PRIVATE);
        assert_eq!(parse_key("IPC_PRIVATE").unwrap(), Key::PRIVATE);
        assert_eq!(parse_key("0").unwrap(), Key::PRIVATE);
        assert_eq!(parse_key("0x10").unwrap(), Key::SysV(16));
        assert!(matches!(parse_key("/a/b"), Err(CliError::Usage(_))));
        assert!(matches!(parse_key("twelve"), Err(CliError::Usage(_))));
        assert!(matches!(
            parse_key("ftok:/surely/not/here:1"),
            Err(CliError::Shmkit { .. })
        ));
    }
}
