//! How a segment is named: a System V key or a POSIX name.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The name of a shared-memory segment: a System V key or a POSIX name.
///
/// The text form, accepted by [`FromStr`] and printed by [`Display`], is the
/// one the `shmkit` tool uses:
///
/// | text | key |
/// |---|---|
/// | `4660`, `0x1234`, `-1` | System V key (decimal or hex `key_t`) |
/// | `private`, `IPC_PRIVATE`, `0` | [`Key::PRIVATE`] (the words in any case) |
/// | `ftok:/some/path:7`, `ftok:/some/path:A` | [`Key::ftok`] of the path and project id |
/// | `/name` | POSIX name (see [`Key::posix`]) |
///
/// [`Display`]: fmt::Display
///
/// # Example
///
/// ```
/// use shmkit::Key;
///
/// let key: Key = "0x1234".parse()?;
/// assert_eq!(key, Key::SysV(0x1234));
/// assert_eq!(key.to_string(), "0x00001234");
///
/// // Any 32 bits, as the kernel takes them; -1 is 0xffffffff.
/// assert_eq!("0xdeadbeef".parse::<Key>()?, Key::SysV(0xdead_beef));
/// assert_eq!("-1".parse::<Key>()?, Key::SysV(0xffff_ffff));
///
/// assert_eq!("private".parse::<Key>()?, Key::PRIVATE);
///
/// let name: Key = "/orders".parse()?;
/// assert_eq!(name.to_string(), "/orders");
/// assert!("/no/slashes".parse::<Key>().is_err());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A System V key: any 32 bits, as the kernel takes them (C's `key_t`
    /// is a signed `int`; a key from C converts with `as u32`).
    /// [`Key::PRIVATE`] (0) always creates a new segment.
    SysV(u32),
    /// A POSIX shared-memory name, validated by [`Key::posix`].
    Posix(PosixName),
}

impl Key {
    /// `IPC_PRIVATE`: creating with it always makes a new segment that no key
    /// finds; other processes reach it by id.
    pub const PRIVATE: Key = Key::SysV(crate::sys::sysv::IPC_PRIVATE);

    /// A POSIX name: one leading slash, no other slash, 1 to 254 bytes after
    /// the slash, not `/.` or `/..`, no NUL byte — the names Linux
    /// `shm_open` accepts.
    ///
    /// ```
    /// use shmkit::{Error, Key};
    ///
    /// assert!(Key::posix("/ring-1").is_ok());
    /// assert!(matches!(Key::posix("ring-1"), Err(Error::InvalidName { .. })));
    /// ```
    pub fn posix(name: &str) -> Result<Key> {
        PosixName::new(name).map(Key::Posix)
    }

    /// The key `ftok(3)` derives from a file and a project id, by glibc's
    /// formula: `(st_ino & 0xffff) | (st_dev & 0xff) << 16 | proj_id << 24`.
    ///
    /// The same file and project id give the same key in every process, as
    /// long as the file is not replaced. `proj_id` must not be 0.
    ///
    /// ```
    /// use shmkit::Key;
    ///
    /// let a = Key::ftok("/", b'A')?;
    /// assert_eq!(a, Key::ftok("/", b'A')?);
    /// assert_ne!(a, Key::ftok("/", b'B')?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn ftok(path: impl AsRef<Path>, proj_id: u8) -> Result<Key> {
        let path = path.as_ref();
        if proj_id == 0 {
            return Err(Error::InvalidArgument(
                "ftok project id must not be 0".to_owned(),
            ));
        }
        let meta = std::fs::metadata(path).map_err(|source| Error::Os {
            context: format!("ftok of {}", path.display()),
            source: io::Error::new(source.kind(), ftok_failure(&source)),
        })?;
        let key = (meta.ino() & 0xffff) as u32
            | ((meta.dev() & 0xff) as u32) << 16
            | u32::from(proj_id) << 24;
        Ok(Key::SysV(key))
    }

    /// How messages name a key before there is a segment: `key 0x00001234`
    /// or `/name` (see [`Segment`](super::Segment)'s `Display` for a segment).
    pub(crate) fn describe(&self) -> String {
        match self {
            Key::SysV(_) => format!("key {self}"),
            Key::Posix(name) => name.to_string(),
        }
    }
}

impl fmt::Display for Key {
    /// System V keys print as `0x` and 8 hex digits, like `ipcs`; POSIX names
    /// as themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::SysV(key) => write!(f, "{key:#010x}"),
            Key::Posix(name) => f.write_str(name.as_str()),
        }
    }
}

impl FromStr for Key {
    type Err = Error;

    fn from_str(text: &str) -> Result<Key> {
        if text.starts_with('/') {
            return Key::posix(text);
        }
        if text.eq_ignore_ascii_case("private") || text.eq_ignore_ascii_case("IPC_PRIVATE") {
            return Ok(Key::PRIVATE);
        }
        if let Some(rest) = text.strip_prefix("ftok:") {
            let (path, proj) = rest.rsplit_once(':').ok_or_else(|| {
                Error::InvalidArgument(format!("{text:?}: expected ftok:PATH:PROJ"))
            })?;
            let proj_id = match proj.as_bytes() {
                [c] if !c.is_ascii_digit() => *c,
                _ => parse_int(proj)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{text:?}: project id must be a number from 1 to 255 or one character"
                        ))
                    })?,
            };
            return Key::ftok(path, proj_id);
        }
        parse_int(text)
            .and_then(|n| {
                u32::try_from(n)
                    .ok()
                    .or_else(|| i32::try_from(n).ok().map(|k| k as u32))
            })
            .map(Key::SysV)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{text:?} is not a key: expected a number (decimal or 0x hex, 32 bits), ftok:PATH:PROJ, private, or a POSIX name starting with /"
                ))
            })
    }
}

/// Decimal with an optional leading `-`, or `0x` hex: digits only after
/// the prefix, since `from_str_radix` would also take a sign there
/// (`0x-1`, `0x+5`, `+5`).
fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (hex, digits) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (true, hex),
        None => (false, digits),
    };
    let valid = |c: char| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    if digits.is_empty() || !digits.chars().all(valid) {
        return None;
    }
    let value = i64::from_str_radix(digits, if hex { 16 } else { 10 }).ok()?;
    Some(if negative { -value } else { value })
}

/// Why ftok could not use a file, in the words of someone who typed
/// `ftok:PATH:PROJ` (not the raw errno text).
fn ftok_failure(err: &io::Error) -> String {
    let why = match err.kind() {
        io::ErrorKind::NotFound => "there is no such file",
        io::ErrorKind::PermissionDenied => "permission denied to look at the file",
        io::ErrorKind::NotADirectory => "a part of the path before the last '/' is not a directory",
        _ => return format!("the file's status cannot be read: {}", err.kind()),
    };
    format!("{why}; ftok derives a key from an existing file that this user may look at")
}

/// A validated POSIX shared-memory name such as `/ring-1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PosixName(String);

impl PosixName {
    /// The longest name after the slash that `shm_open` accepts: one less
    /// than `NAME_MAX` (255), as glibc and rustix count the final NUL.
    pub const MAX_LEN: usize = 254;

    /// Validates a name; see [`Key::posix`].
    pub fn new(name: &str) -> Result<PosixName> {
        let invalid = |reason| {
            Err(Error::InvalidName {
                name: name.to_owned(),
                reason,
            })
        };
        let Some(rest) = name.strip_prefix('/') else {
            return invalid("must begin with '/'");
        };
        if rest.is_empty() {
            return invalid("must have at least one character after '/'");
        }
        if rest.contains('/') {
            return invalid("must not contain '/' after the first character");
        }
        if rest.len() > Self::MAX_LEN {
            return invalid("must be at most 254 bytes after the '/' (shm_open's limit)");
        }
        if rest == "." || rest == ".." {
            return invalid("must not be '/.' or '/..'");
        }
        if rest.contains('\0') {
            return invalid("must not contain a NUL byte");
        }
        Ok(PosixName(name.to_owned()))
    }

    /// The name with its leading slash, as given to `shm_open`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file this name is in `/dev/shm`.
    pub fn path(&self) -> std::path::PathBuf {
        Path::new(crate::sys::posix::SHM_DIR).join(&self.0[1..])
    }
}

impl fmt::Display for PosixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysv_keys() {
        assert_eq!("4660".parse::<Key>().unwrap(), Key::SysV(4660));
        assert_eq!("0x1234".parse::<Key>().unwrap(), Key::SysV(0x1234));
        assert_eq!("0xffffffff".parse::<Key>().unwrap(), Key::SysV(0xffff_ffff));
        assert_eq!("-2".parse::<Key>().unwrap(), Key::SysV(0xffff_fffe));
        assert_eq!("0".parse::<Key>().unwrap(), Key::PRIVATE);
        assert!("0x100000000".parse::<Key>().is_err());
        for bad in ["0x-1", "0x+5", "+5", "0x", "-", "--1", "0x 1", "-0x-1"] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!("-0x10".parse::<Key>().unwrap(), Key::SysV(0xffff_fff0));
        assert!("twelve".parse::<Key>().is_err());
        assert!("".parse::<Key>().is_err());
    }

    #[test]
    fn parses_the_private_key_by_name() {
        for text in ["private", "IPC_PRIVATE", "Private", "ipc_private"] {
            assert_eq!(text.parse::<Key>().unwrap(), Key::PRIVATE, "{text:?}");
        }
        for bad in ["privat", "private ", "IPC-PRIVATE", "IPC_PRIVATE_"] {
            let err = bad.parse::<Key>().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
        }
        // A POSIX name that spells the word is still a name.
        assert_eq!(
            "/private".parse::<Key>().unwrap(),
            Key::posix("/private").unwrap()
        );
    }

    #[test]
    fn prints_sysv_keys_like_ipcs() {
        assert_eq!(Key::SysV(0x1234).to_string(), "0x00001234");
        assert_eq!(Key::SysV(0xffff_ffff).to_string(), "0xffffffff");
    }

    #[test]
    fn validates_posix_names() {
        assert!(PosixName::new("/a").is_ok());
        assert!(PosixName::new(&format!("/{}", "x".repeat(254))).is_ok());
        assert!(PosixName::new(&format!("/{}", "x".repeat(255))).is_err());
        for bad in ["", "a", "/", "/a/b", "/.", "/..", "/a\0b"] {
            assert!(
                matches!(PosixName::new(bad), Err(Error::InvalidName { .. })),
                "{bad:?} was accepted"
            );
        }
        assert!(PosixName::new(&format!("/{}", "x".repeat(256))).is_err());
        assert_eq!(
            PosixName::new("/q").unwrap().path(),
            Path::new("/dev/shm/q")
        );
    }

    #[test]
    fn ftok_follows_glibc() {
        let meta = std::fs::metadata("/").unwrap();
        let expected =
            (meta.ino() & 0xffff) as u32 | ((meta.dev() & 0xff) as u32) << 16 | 0x41 << 24;
        assert_eq!(Key::ftok("/", b'A').unwrap(), Key::SysV(expected));
        assert_eq!("ftok:/:A".parse::<Key>().unwrap(), Key::SysV(expected));
        assert_eq!("ftok:/:65".parse::<Key>().unwrap(), Key::SysV(expected));
        assert!(matches!(Key::ftok("/", 0), Err(Error::InvalidArgument(_))));
        let missing = Key::ftok("/surely/not/here", 1).unwrap_err();
        assert!(matches!(missing, Error::Os { .. }), "{missing:?}");
        let text = missing.to_string();
        assert!(text.contains("there is no such file"), "{text}");
        assert!(!text.contains("os error"), "{text}");
        assert!("ftok:/".parse::<Key>().is_err());
        assert!("ftok:/:256".parse::<Key>().is_err());
    }
}
