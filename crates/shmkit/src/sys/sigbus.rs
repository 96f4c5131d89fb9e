//! A process-wide `SIGBUS` handler that turns a fault in a shrunk shared
//! mapping into zero pages and a flag, instead of the signal that kills.
//!
//! Anyone who may write a POSIX segment may also `ftruncate` it. Pages of a
//! `MAP_SHARED` file mapping past the file's new end then raise `SIGBUS`
//! when touched (so does a page a full tmpfs cannot supply), and the
//! default action kills the process: a peer could kill every process that
//! maps a segment. The alternatives weighed:
//!
//! - `fstat` before each access is a race (the file can shrink right after)
//!   and costs a system call per access;
//! - System V segments cannot shrink, but rings are found by name in
//!   `/dev/shm` and POSIX segments are the project's main backend;
//! - this handler costs nothing until a fault: a mapping registers itself
//!   in a fixed table here (no lock, no allocation, so the handler can read
//!   it), the handler maps one anonymous zero page over the faulting page
//!   (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)`, a plain system call,
//!   async-signal-safe), sets the mapping's flag and returns; the access
//!   completes (reading zeros), and the layers above report
//!   [`crate::Error::Truncated`] at their next check of the flag — an
//!   atomic load.
//!
//! A fault outside every registered mapping goes to the handler that was
//! installed before this one, or to the default action (death by `SIGBUS`,
//! as without shmkit). A `SIGBUS` sent with `kill` is re-raised the same
//! way. A program that installs its own `SIGBUS` handler after shmkit's
//! must chain to it for the protection to stay.
//!
//! [sigaction(2)](https://man7.org/linux/man-pages/man2/sigaction.2.html),
//! [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html)

use std::cell::UnsafeCell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// How many mappings can be watched at once. One slot is 32 bytes; a
/// mapping beyond this many still works, unwatched.
const SLOTS: usize = 1024;

/// A slot's `sequence` is even while free (or being filled) and odd while
/// it describes a live mapping: a seqlock the handler reads without locks.
/// `claimed` makes one registration at a time the slot's writer.
struct Slot {
    claimed: AtomicBool,
    sequence: AtomicUsize,
    start: AtomicUsize,
    len: AtomicUsize,
    /// Bit 0: writable. Bit 1: a fault was patched.
    flags: AtomicUsize,
}

const WRITABLE: usize = 1;
const FAULTED: usize = 2;

#[allow(clippy::declare_interior_mutable_const)] // a template for the array
const FREE: Slot = Slot {
    claimed: AtomicBool::new(false),
    sequence: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    flags: AtomicUsize::new(0),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The action that was in place before ours, written once before ours is
/// installed and only read after.
struct Previous(UnsafeCell<Option<libc::sigaction>>);
// SAFETY: written once inside INSTALL (before the handler that reads it is
// installed, which orders the write before every read), never after.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(None));

/// A registered mapping; dropping it unregisters. Drop it before the
/// mapping is unmapped.
#[derive(Debug)]
pub struct Watch {
    index: usize,
}

impl Watch {
    /// The mapping's flag word, to keep beside the mapping: valid while
    /// this watch lives (its slot is not reused before the watch drops).
    pub fn flag(&self) -> FaultFlag {
        FaultFlag(&TABLE[self.index].flags)
    }
}

/// Where a watched mapping's fault is recorded: a direct reference to its
/// slot's flags, so that the check on every ring message is one load and
/// a bit test (no table index, no bounds check).
#[derive(Clone, Copy, Debug)]
pub struct FaultFlag(&'static AtomicUsize);

/// The flags of a mapping that is not watched: never faulted.
static UNWATCHED: AtomicUsize = AtomicUsize::new(0);

impl FaultFlag {
    /// The flag of a mapping that nothing watches (System V, or a full
    /// table): it never reads as faulted.
    pub const UNWATCHED: FaultFlag = FaultFlag(&UNWATCHED);

    /// Whether a fault in the mapping was patched with zeros: some of its
    /// pages are gone from the file (truncated) or could not be supplied.
    #[inline(always)]
    pub fn faulted(self) -> bool {
        // The flag is set by the SIGBUS handler on this thread, during the
        // access just before this check: a signal fence (no instruction)
        // keeps the compiler from moving the load above that access, and
        // Relaxed suffices for a write made on the same thread.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        self.0.load(Ordering::Relaxed) & FAULTED != 0
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let slot = &TABLE[self.index];
        // Release: a handler that then sees the even number (or the next
        // odd one) rejects what it read of this range; pairs with the
        // Acquire fence in `find`.
        slot.sequence.fetch_add(1, Ordering::Release);
        // Release: the next writer's stores come after the increment.
        slot.claimed.store(false, Ordering::Release);
    }
}

/// Watches the mapping `[addr, addr + len)`: installs the handler the
/// first time (`sigaction(SIGBUS, SA_SIGINFO | SA_ONSTACK)`), then records
/// the range. `None` if the table is full (the mapping is then unwatched).
///
/// # Errors
///
/// What `sigaction` reports when installing the handler.
pub fn watch(addr: NonNull<u8>, len: usize, writable: bool) -> io::Result<Option<Watch>> {
    install()?;
    for (index, slot) in TABLE.iter().enumerate() {
        // Acquire: pairs with the Release in `Watch::drop`.
        if slot
            .claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // Release fence, as a seqlock writer makes before its stores: a
        // handler that reads any of the new range below then re-reads, at
        // least, the even number `Watch::drop` left, not the odd one it
        // read first, and so rejects a range half rewritten; pairs with
        // the Acquire fence in `find`.
        std::sync::atomic::fence(Ordering::Release);
        slot.start.store(addr.as_ptr() as usize, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        let flags = if writable { WRITABLE } else { 0 };
        slot.flags.store(flags, Ordering::Relaxed);
        // Release: the range above is visible to a handler that sees the
        // odd number; pairs with the Acquire load in `find`.
        slot.sequence.fetch_add(1, Ordering::Release);
        return Ok(Some(Watch { index }));
    }
    Ok(None)
}

fn install() -> io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        PAGE.store(rustix::param::page_size(), Ordering::Relaxed);
        // SAFETY: `sigaction` is plain integers and a signal mask, for
        // which all zeroes is a valid (empty) value.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_sigbus as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reading the current action into our own struct.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) } != 0 {
            result = Err(io::Error::last_os_error());
            return;
        }
        // SAFETY: the only write to PREVIOUS, before our handler (its only
        // reader) is installed below.
        unsafe { *PREVIOUS.0.get() = Some(previous) };
        // SAFETY: `ours` is a valid action whose handler has the
        // SA_SIGINFO signature; the old action was saved above.
        if unsafe { libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) } != 0 {
            result = Err(io::Error::last_os_error());
            return;
        }
        INSTALLED.store(true, Ordering::Relaxed);
    });
    if result.is_ok() && !INSTALLED.load(Ordering::Relaxed) {
        return Err(io::Error::other(
            "the SIGBUS handler could not be installed",
        ));
    }
    result
}

/// The watched slot whose range holds `addr`, if any. Lock-free and
/// allocation-free: runs in the signal handler.
fn find(addr: usize) -> Option<&'static Slot> {
    TABLE.iter().find(|slot| {
        // Acquire: pairs with the Release store in `watch`.
        let before = slot.sequence.load(Ordering::Acquire);
        if before % 2 == 0 {
            return false;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        // Acquire fence: the reads above happen before the re-check below;
        // pairs with the Release increment in `Watch::drop`.
        fence(Ordering::Acquire);
        let after = slot.sequence.load(Ordering::Relaxed);
        before == after && addr >= start && addr - start < len
    })
}

/// The handler. Async-signal-safe: atomics, `mmap`, `sigaction` and
/// `raise` only.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault (BUS_ADRERR: a page past the end of the file, or one it
    // cannot supply) in a watched mapping is ours to patch.
    if code == libc::BUS_ADRERR {
        if let Some(slot) = find(addr) {
            let page = PAGE.load(Ordering::Relaxed);
            let at = addr & !(page - 1);
            let flags = slot.flags.load(Ordering::Relaxed);
            let prot = if flags & WRITABLE != 0 {
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE
            } else {
                rustix::mm::ProtFlags::READ
            };
            // SAFETY: `at` is the start of a page inside a live mapping of
            // this process (watched, and unwatched before it is unmapped),
            // whose file has no page there: every access to it faults, so
            // replacing it with a private zero page loses no data and
            // breaks no reference. rustix makes the raw system call: no
            // lock, no allocation.
            let patched = unsafe {
                rustix::mm::mmap_anonymous(
                    at as *mut libc::c_void,
                    page,
                    prot,
                    rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
                )
            };
            if patched.is_ok() {
                slot.flags.fetch_or(FAULTED, Ordering::Relaxed);
                return; // the access runs again, on the zero page
            }
        }
    }
    chain(signal, info, context);
}

/// Hands a signal that is not ours to the action installed before ours.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: written before our handler was installed, never after.
    let previous = unsafe { *PREVIOUS.0.get() };
    let Some(previous) = previous else { return };
    let handler = previous.sa_sigaction;
    // SAFETY: the kernel hands the handler a valid siginfo.
    let sent = unsafe { (*info).si_code } <= 0;
    if handler == libc::SIG_IGN && sent {
        // Ignored before us: a sent SIGBUS stays ignored. (A real fault
        // cannot be ignored; it takes the default action below.)
        return;
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Put the default action back, then let it act: a fault repeats
        // when we return, a sent signal is raised again (it stays pending
        // until we return, since the handler blocks it).
        // SAFETY: all zeroes is SIG_DFL with no flags and an empty mask.
        let default: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: installs a valid action; async-signal-safe.
        unsafe { libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut()) };
        if sent {
            // SAFETY: raise is async-signal-safe.
            unsafe { libc::raise(libc::SIGBUS) };
        }
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so its
        // handler has this signature; we pass what the kernel gave us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes the signal
        // number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::posix;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, ExitStatus};

    const ROLE: &str = "SHMKIT_SIGBUS_ROLE";

    /// Runs this test binary's `child` test in `role` and returns how it
    /// ended.
    fn run(role: &str) -> ExitStatus {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sys::sigbus::tests::child", "--nocapture"])
            .env(ROLE, role)
            .status()
            .unwrap()
    }

    /// A POSIX object of two pages mapped read-write, then shrunk to 0:
    /// its pages are gone. The object is unlinked at once.
    fn shrunk_mapping() -> NonNull<u8> {
        let name = format!("/shmkit-test-sigbus-{}", std::process::id());
        let fd = posix::open(&name, true, posix::Disposition::CreateExclusive, 0o600).unwrap();
        posix::unlink(&name).unwrap();
        posix::set_len(&fd, 8192).unwrap();
        let addr = posix::map(&fd, 8192, true).unwrap();
        posix::set_len(&fd, 0).unwrap();
        addr
    }

    fn touch(addr: NonNull<u8>, offset: usize) -> u8 {
        // SAFETY: inside a live mapping of 8192 bytes; the read may fault,
        // which is what the roles test.
        unsafe { addr.as_ptr().add(offset).read_volatile() }
    }

    extern "C" fn exit_42(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(42) };
    }

    /// The roles; does nothing in a normal test run.
    #[test]
    fn child() {
        let Ok(role) = std::env::var(ROLE) else {
            return;
        };
        let elsewhere = NonNull::from(&mut [0u8; 64][0]);
        match role.as_str() {
            "watched-fault" => {
                let addr = shrunk_mapping();
                let watch = watch(addr, 8192, true).unwrap().unwrap();
                assert!(!watch.flag().faulted());
                assert_eq!(touch(addr, 4096), 0, "a patched page reads zeros");
                assert!(watch.flag().faulted());
                // SAFETY: our mapping; the write lands on the zero page.
                unsafe { addr.as_ptr().add(5000).write_volatile(9) };
                assert_eq!(touch(addr, 5000), 9);
                std::process::exit(0);
            }
            "foreign-fault" => {
                let _watch = watch(elsewhere, 64, true).unwrap().unwrap();
                touch(shrunk_mapping(), 4096); // not watched: dies here
                std::process::exit(0);
            }
            "previous-handler" => {
                // SAFETY: all zeroes is a valid sigaction to fill in.
                let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
                action.sa_sigaction = exit_42 as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO;
                // SAFETY: installs a valid SA_SIGINFO handler.
                let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) };
                assert_eq!(rc, 0);
                let _watch = watch(elsewhere, 64, true).unwrap().unwrap();
                touch(shrunk_mapping(), 4096); // chained to exit_42
                std::process::exit(0);
            }
            "sent-sigbus" | "sent-sigbus-unwatched" => {
                let _watch = (role == "sent-sigbus").then(|| watch(elsewhere, 64, true));
                // SAFETY: raise has no memory-safety duties.
                unsafe { libc::raise(libc::SIGBUS) };
                std::process::exit(3);
            }
            other => panic!("unknown role {other}"),
        }
    }

    #[test]
    fn a_fault_in_a_watched_mapping_becomes_a_zero_page_and_a_flag() {
        let status = run("watched-fault");
        assert!(status.success(), "{status}");
    }

    #[test]
    fn a_fault_elsewhere_still_gets_the_default_action() {
        assert_eq!(run("foreign-fault").signal(), Some(libc::SIGBUS));
    }

    #[test]
    fn a_fault_elsewhere_goes_to_the_handler_installed_before() {
        assert_eq!(run("previous-handler").code(), Some(42));
    }

    #[test]
    fn a_sigbus_sent_by_kill_is_handled_as_without_shmkit() {
        // Rust's runtime has a SIGBUS handler of its own (for stack
        // overflows), which ours chains to: whatever it does, it does alike.
        let plain = run("sent-sigbus-unwatched");
        assert!(plain.code() == Some(3) || plain.signal() == Some(libc::SIGBUS));
        let status = run("sent-sigbus");
        assert_eq!(
            (status.code(), status.signal()),
            (plain.code(), plain.signal())
        );
    }

    #[test]
    fn watches_are_found_by_address_until_dropped() {
        let mut memory = [0u8; 256];
        let base = NonNull::from(&mut memory[0]);
        let watch = watch(base, 256, false).unwrap().unwrap();
        let start = base.as_ptr() as usize;
        assert!(find(start).is_some());
        assert!(find(start + 255).is_some());
        assert!(find(start + 256).is_none());
        drop(watch);
        assert!(find(start).is_none());
    }
}
