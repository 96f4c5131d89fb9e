//! Blocking calls from Python: the GIL released while waiting, and Ctrl-C
//! seen within a slice.
//!
//! The library's verbs wait on a futex until their deadline. Python runs
//! signal handlers (and so raises `KeyboardInterrupt`) only in the thread
//! that holds the GIL, between bytecodes, so a call that sleeps in Rust for
//! a minute would not notice Ctrl-C for a minute. Each blocking call here
//! waits instead in slices of at most [`SLICE`] with the GIL released, and
//! between slices takes the GIL back and runs `check_signals`.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors;

/// The longest wait between two checks for signals.
pub const SLICE: Duration = Duration::from_millis(100);

/// The deadline of one blocking call, from a Python timeout in seconds.
pub struct Wait {
    deadline: Option<Instant>,
    timeout: Option<f64>,
}

impl Wait {
    /// `None` waits for ever; a number is seconds (0 tries once).
    pub fn new(timeout: Option<f64>) -> PyResult<Wait> {
        let deadline = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => {
                Some(Instant::now() + Duration::from_secs_f64(t))
            }
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be None or a number of seconds >= 0, not {t}"
                )))
            }
        };
        Ok(Wait { deadline, timeout })
    }

    /// How long the next slice may wait.
    pub fn slice(&self) -> Duration {
        match self.deadline {
            None => SLICE,
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE),
        }
    }

    /// After a slice ended in `err`: `Ok` to wait another slice if it was a
    /// slice's timeout, the deadline is still ahead and no signal handler
    /// raised; else the exception to raise (the signal handler's, the
    /// call's `Timeout`, or `err` itself).
    pub fn after(&self, py: Python<'_>, err: shmkit::Error) -> PyResult<()> {
        let shmkit::Error::Timeout { place, .. } = err else {
            return Err(errors::to_py(py, err));
        };
        py.check_signals()?;
        match (self.deadline, self.timeout) {
            (Some(deadline), Some(timeout)) if Instant::now() >= deadline => {
                let after = Duration::from_secs_f64(timeout);
                Err(errors::to_py(py, shmkit::Error::Timeout { place, after }))
            }
            _ => Ok(()),
        }
    }
}
