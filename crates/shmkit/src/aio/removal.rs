//! The unit tests' guard for what they create: a segment removed when
//! the guard is dropped, even on a panic.

use crate::{Key, Segment};

/// Removes segment `prefix` + `name` (a ring's, topic's or service's) when
/// dropped.
pub(crate) struct Removal(Key);

impl Removal {
    pub(crate) fn new(prefix: &str, name: &str) -> Removal {
        Removal(Key::posix(&format!("{prefix}{name}")).expect("a segment name"))
    }

    /// The segment's file under `/dev/shm`.
    pub(crate) fn path(&self) -> std::path::PathBuf {
        let Key::Posix(posix) = &self.0 else {
            unreachable!("made by Key::posix")
        };
        posix.path()
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        // Gone already if the endpoints removed it.
        let _ = Segment::remove_key(&self.0);
    }
}
