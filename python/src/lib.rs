//! `shmkit` for Python: the extension module `shmkit._shmkit`, which the
//! package `shmkit` (python/shmkit) re-exports.
//!
//! The bindings add no protocol of their own: every verb calls the
//! library. What they add is what Python needs around it:
//!
//! - blocking calls wait with the GIL released, in slices of at most
//!   100 ms (`wait::SLICE`), checking for signals between slices, so
//!   Ctrl-C interrupts them (module `wait`);
//! - zero-copy views (`ring::Message`, `segment::Attachment`) export
//!   their memory through the buffer protocol and refuse to be released
//!   while an export (a `memoryview`, a numpy array) still uses it, as
//!   Python's own `mmap` does;
//! - library errors become exceptions by variant (module `errors`).
//!
//! (The modules are private: `cargo doc --document-private-items -p
//! shmkit-python` shows them.)

mod errors;
mod ring;
mod segment;
mod service;
mod topic;
mod wait;

use pyo3::prelude::*;

/// Python's side of shared-memory IPC for Linux: segments, message rings,
/// topics and services.
#[pymodule]
fn _shmkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    segment::register(m)?;
    ring::register(m)?;
    topic::register(m)?;
    service::register(m)?;
    Ok(())
}
