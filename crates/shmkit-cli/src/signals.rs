//! SIGINT, SIGTERM and SIGHUP as a request to stop: `send` and `recv` catch
//! them, close their ring cleanly (the consumer sees the end of the stream,
//! an unused ring is removed), and then die of the signal as the shell
//! expects.
//!
//! The handler only records the signal. Waits on a ring are cut into
//! short slices that look at the record between them, and so are waits
//! for standard input ([`StopsOnSignal`]): a signal that lands just before
//! a blocking `read` would otherwise go unseen until input comes.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// The longest a wait on a ring goes without looking for a signal.
pub const SLICE: Duration = Duration::from_millis(100);

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The signal caught, or 0.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    // Async-signal-safe: one atomic store.
    CAUGHT.store(signal, Ordering::SeqCst);
}

/// Installs the recording handler for the stop signals.
pub fn catch() {
    for signal in STOP_SIGNALS {
        // SAFETY: a zeroed sigaction is a valid value (empty mask, no
        // flags); the handler is an `extern "C" fn(c_int)` that only does
        // an atomic store, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The stop signal caught so far, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Sleeps for `nap`, or until a stop signal is caught, whenever it lands:
/// the signals are blocked while the record is looked at, and `ppoll`
/// unblocks them and sleeps in one step, so a signal that lands just
/// before the sleep ends it at once (with `poll`, it would go unseen until
/// the nap ended). For the calling thread: the commands that sleep so have
/// no other.
pub fn sleep_unless_stopped(nap: Duration) {
    let timeout = libc::timespec {
        tv_sec: nap.as_secs() as _,
        tv_nsec: nap.subsec_nanos() as _,
    };
    // SAFETY: zeroed sigset_t values are valid to pass to sigemptyset and
    // sigaddset, which initialise them; pthread_sigmask and ppoll take
    // pointers to them that live across the calls; ppoll with no
    // descriptors (a null array of length 0) only sleeps. The thread's
    // own mask is restored before returning.
    unsafe {
        let mut stops: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut stops);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut stops, signal);
        }
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &stops, &mut before);
        if caught().is_none() {
            // Interrupted (a stop signal's handler ran) or not, the
            // caller looks at the record next.
            libc::ppoll(std::ptr::null_mut(), 0, &timeout, &before);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
    }
}

/// If a stop signal was caught, restores its default action and raises it
/// again, so that the exit status says which signal stopped the command.
pub fn reraise() {
    if let Some(signal) = caught() {
        // SAFETY: restoring SIG_DFL and raising a signal have no memory
        // effects on this process beyond its signal state.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Input that a stop signal ends: a read fails with an error (not
/// `Interrupted`, which `BufRead` would retry) once a signal was caught.
/// It waits for input in [`SLICE`]s with `poll`, looking at the record
/// between them, so a signal caught at any moment is seen within a slice.
pub struct StopsOnSignal<R>(pub R);

impl<R: Read + AsFd> Read for StopsOnSignal<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let slice = Timespec {
            tv_sec: 0,
            tv_nsec: SLICE.as_nanos() as _,
        };
        loop {
            if caught().is_some() {
                return Err(io::Error::other("stopped by a signal"));
            }
            let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
            match poll(&mut fds, Some(&slice)) {
                // Readable, at its end, or failed: the read says which.
                Ok(n) if n > 0 => {}
                Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
            match self.0.read(buf) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}
