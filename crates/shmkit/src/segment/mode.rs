//! Permission bits of a segment.

use std::fmt;

/// The nine owner/group/other permission bits of a segment, as in
/// `ipc_perm.mode` or a file's mode.
///
/// The kernel checks them like `ipcperms()`: the first class that matches the
/// caller (owner or creator uid, then owner or creator gid, then other)
/// decides, and a process with `CAP_IPC_OWNER` (root) bypasses the check.
/// Execute bits are stored but mean nothing for shared memory.
///
/// ```
/// use shmkit::Mode;
///
/// let mode = Mode::new(0o640);
/// assert_eq!(mode.to_string(), "rw-r-----");
/// assert_eq!(format!("{mode:o}"), "640");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mode(u32);

impl Mode {
    /// `0o600`: the owner reads and writes, nobody else has access.
    pub const OWNER_ONLY: Mode = Mode(0o600);

    /// The low nine bits of `bits`; higher bits are dropped.
    pub const fn new(bits: u32) -> Mode {
        Mode(bits & 0o777)
    }

    /// The nine bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Mode {
    /// `rwxr-x---` form, like `ls -l`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [b'-'; 9];
        for (i, c) in b"rwxrwxrwx".iter().enumerate() {
            if self.0 & (0o400 >> i) != 0 {
                text[i] = *c;
            }
        }
        f.write_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

impl fmt::Octal for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Octal::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_ls() {
        assert_eq!(Mode::new(0o644).to_string(), "rw-r--r--");
        assert_eq!(Mode::new(0o7777).to_string(), "rwxrwxrwx");
        assert_eq!(Mode::new(0).to_string(), "---------");
        assert_eq!(format!("{:o}", Mode::new(0o1600)), "600");
    }
}
