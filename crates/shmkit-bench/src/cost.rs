//! What the fixed-work harnesses in `examples/` (`ring_cost`, `async_cost`,
//! `service_cost`, `topic_cost`) share: pinning a process to a CPU and
//! removing the segments a run made, however it ends.

use shmkit::{Key, Segment};

/// Pins this process to `cpu`.
///
/// # Panics
///
/// If the CPU does not exist or the kernel refuses: a harness cannot
/// measure what it was asked to.
///
/// ```no_run
/// shmkit_bench::cost::pin(0);
/// ```
pub fn pin(cpu: usize) {
    if let Err(err) = crate::machine::pin_to(cpu) {
        panic!("pinning to CPU {cpu}: {err}");
    }
}

/// Removes the POSIX segment `prefix` + `name` when dropped, even on panic.
///
/// ```
/// use shmkit::ring::{Producer, SEGMENT_PREFIX};
///
/// let name = format!("doc-cost-remove-{}", std::process::id());
/// let _remove = shmkit_bench::cost::RemoveSegment::new(SEGMENT_PREFIX, &name);
/// let _producer = Producer::open(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct RemoveSegment(Key);

impl RemoveSegment {
    /// # Panics
    ///
    /// If `prefix` + `name` is not a valid POSIX segment name.
    pub fn new(prefix: &str, name: &str) -> RemoveSegment {
        RemoveSegment(Key::posix(&format!("{prefix}{name}")).expect("a valid segment name"))
    }
}

impl Drop for RemoveSegment {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}
