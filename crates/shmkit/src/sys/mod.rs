//! The operating-system boundary: the only module that makes system calls.
//!
//! Each submodule is one facility, and each function's first doc line is the
//! C call it makes. Functions return [`std::io::Result`]; the layers above
//! turn errnos into [`crate::Error`] with the segment's name attached.

pub mod clock;
pub mod futex;
pub mod membarrier;
pub mod posix;
pub mod procfs;
pub mod range_lock;
pub mod sigbus;
pub mod sysv;
