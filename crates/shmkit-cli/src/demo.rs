//! `shmkit demo`, in two parts.
//!
//! Part 1: two processes share one System V segment, and each step of its
//! life (create, attach, write, read, detach, deferred removal) is shown
//! with the kernel's numbers and checked. Part 2 ([`ring`]): two more
//! processes stream messages through a ring, and the parent checks and
//! measures it.
//!
//! The parent runs this same program as its children (`shmkit __demo-child`,
//! `__demo-producer`, `__demo-consumer`). They synchronise over the
//! children's standard input and output, never by sleeping: in part 1 the
//! child says `ready LEN` once its message is in the segment, then waits for
//! a line on its input before it detaches.

pub mod ring;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use shmkit::{Key, Mode, ReadWrite, Segment, Stat};

use crate::error::CliError;
use crate::output;

/// The demo segment's size.
const SIZE: u64 = 4096;

/// `shmkit demo`: the parent's side of both parts, the second streaming
/// `messages` messages. Fails (exit 1) if any check fails, and removes the
/// segment and the ring whatever happens.
pub fn run(messages: u64, out: &mut impl Write) -> Result<(), CliError> {
    share_a_segment(out)?;
    ring::run(messages, out)?;
    writeln!(out, "\nall checks passed").map_err(CliError::stdout)
}

/// Part 1: the segment's life, steps 1 to 8.
fn share_a_segment(out: &mut impl Write) -> Result<(), CliError> {
    let parent = std::process::id();
    let mut say = |text: String| writeln!(out, "{text}").map_err(CliError::stdout);
    say(format!(
        "shmkit demo: two processes share one System V segment (parent pid {parent})\n"
    ))?;

    let segment = Segment::create(&Key::PRIVATE, SIZE, Mode::OWNER_ONLY)?;
    let id = segment.id().unwrap_or_default();
    let _cleanup = RemoveOnDrop(id);
    let stat = segment.stat()?;
    say(format!(
        "1. created a private System V segment: id {id}, {} bytes, mode {:o}, nattch {}",
        stat.size, stat.mode, stat.nattch
    ))?;
    check(stat.nattch == 0, || {
        format!("a new segment has nattch 0, not {}", stat.nattch)
    })?;

    let mapping = segment.attach(ReadWrite)?;
    let stat = segment.stat()?;
    let address = mapping.as_ptr() as usize;
    say(format!(
        "2. the parent (pid {parent}) attached it at {address:#x}: nattch {}",
        stat.nattch
    ))?;
    check(stat.nattch == 1, || {
        format!("nattch is 1 after one attach, not {}", stat.nattch)
    })?;

    let mut child = DemoProcess::spawn("child", &["__demo-child", "--id", &id.to_string()])?;
    let child_pid = child.pid();
    let len = ready_len(&child.read_line()?)?;
    say(format!(
        "3. the child (pid {child_pid}) attached it read-write, wrote {len} bytes at offset 0, and said \"ready\""
    ))?;

    let expected = message(child_pid);
    check(len == expected.len(), || {
        format!("the child wrote {} bytes, not {len}", expected.len())
    })?;
    let mut buffer = vec![0; len];
    mapping.read_at(0, &mut buffer)?;
    let read = String::from_utf8_lossy(&buffer);
    say(format!(
        "4. the parent read them through its own mapping: {read:?}"
    ))?;
    check(read == expected, || {
        format!("the message reads {expected:?}, not {read:?}")
    })?;

    let stat = segment.stat()?;
    say(format!(
        "5. stat: nattch {}, lpid {} (the last to attach); the attachers, each at its own address:",
        stat.nattch,
        stat.lpid.unwrap_or_default()
    ))?;
    say(indent(&output::attachers_table(&stat.attachers)))?;
    check(stat.nattch == 2, || {
        format!("nattch is 2 with both attached, not {}", stat.nattch)
    })?;
    check_attachers(&stat, &[parent, child_pid])?;

    child.tell("go");
    child.finish()?;
    let stat = segment.stat()?;
    say(format!(
        "6. told the child to go: it detached and exited; nattch {}, lpid {} (the child's detach)",
        stat.nattch,
        stat.lpid.unwrap_or_default()
    ))?;
    check(stat.nattch == 1, || {
        format!("nattch is 1 after the child left, not {}", stat.nattch)
    })?;
    check_attachers(&stat, &[parent])?;

    segment.remove()?;
    let stat = segment.stat()?;
    say(format!(
        "7. the parent removed the segment while still attached: removed {} (status dest), key now {}, nattch {}; \
         the memory stays until the last detach",
        if stat.removed { "yes" } else { "no" },
        stat.key,
        stat.nattch,
    ))?;
    check(stat.removed, || {
        "a removed but attached segment shows removed (dest)".to_owned()
    })?;
    check(stat.nattch == 1, || {
        format!(
            "removal keeps the attachment: nattch 1, not {}",
            stat.nattch
        )
    })?;

    drop(mapping);
    let gone = matches!(Segment::open_id(id), Err(shmkit::Error::NotFound { .. }));
    let listed = shmkit::list()?.iter().any(|s| s.id == Some(id));
    say(format!(
        "8. the parent detached: nattch reached 0, so the kernel freed the segment; id {id} is {}",
        if gone && !listed {
            "gone"
        } else {
            "still there"
        }
    ))?;
    check(gone && !listed, || {
        format!("segment id {id} is gone after the last detach")
    })
}

/// The LEN of the child's `ready LEN`.
fn ready_len(line: &str) -> Result<usize, CliError> {
    line.trim_end()
        .strip_prefix("ready ")
        .and_then(|len| len.parse().ok())
        .filter(|&len| len as u64 <= SIZE)
        .ok_or_else(|| {
            CliError::Message(if line.is_empty() {
                "the demo's child process ended before it was ready".to_owned()
            } else {
                format!("the demo's child process said {line:?}, not \"ready LEN\"")
            })
        })
}

/// `shmkit __demo-child --id ID`: attaches, writes its message, says
/// `ready LEN` on `out`, waits for a line (or the end) on `input`, detaches.
pub fn child(id: i32, input: &mut impl BufRead, out: &mut impl Write) -> Result<(), CliError> {
    let mapping = Segment::open_id(id)?.attach(ReadWrite)?;
    let text = message(std::process::id());
    mapping.write_at(0, text.as_bytes())?;
    writeln!(out, "ready {}", text.len())
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)?;
    // "go", or the end of input if the parent gave up: either way, detach.
    let mut line = String::new();
    input.read_line(&mut line).map_err(|source| CliError::Io {
        context: "reading standard input".to_owned(),
        source,
    })?;
    drop(mapping);
    Ok(())
}

/// What the child writes into the segment.
fn message(pid: u32) -> String {
    format!("hello from pid {pid}")
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), CliError> {
    if ok {
        Ok(())
    } else {
        Err(CliError::Message(format!("demo check failed: {}", what())))
    }
}

/// Checks that exactly `pids` have the segment mapped, once each.
fn check_attachers(stat: &Stat, pids: &[shmkit::Pid]) -> Result<(), CliError> {
    let mut found: Vec<shmkit::Pid> = stat.attachers.iter().map(|m| m.pid).collect();
    let mut wanted = pids.to_vec();
    found.sort_unstable();
    wanted.sort_unstable();
    check(found == wanted, || {
        format!("the attachers are pids {wanted:?}, not {found:?}")
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("     {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Removes the demo's segment when the demo ends, however it ends.
/// (Removing again after the demo's own removal finds nothing: harmless.)
struct RemoveOnDrop(i32);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open_id(self.0) {
            let _ = segment.remove();
        }
    }
}

/// A child process of the demo (this same program), with its standard input
/// and output as pipes. Dropping it before [`finish`](DemoProcess::finish)
/// kills and reaps the child.
struct DemoProcess {
    /// `child`, `producer` or `consumer`, for messages.
    role: &'static str,
    process: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    waited: bool,
}

impl DemoProcess {
    /// Starts `shmkit ARGS…`; its standard error is the demo's.
    fn spawn(role: &'static str, args: &[&str]) -> Result<DemoProcess, CliError> {
        let spawn_error = |source| CliError::Io {
            context: format!("starting the demo's {role} process"),
            source,
        };
        let program = std::env::current_exe().map_err(spawn_error)?;
        let mut process = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let (Some(input), Some(output)) = (process.stdin.take(), process.stdout.take()) else {
            let _ = process.kill();
            let _ = process.wait();
            return Err(CliError::Message(format!(
                "the demo's {role} process has no pipes"
            )));
        };
        Ok(DemoProcess {
            role,
            process,
            input: Some(input),
            output: BufReader::new(output),
            waited: false,
        })
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The next line the child prints, without its newline; empty once the
    /// child closed its output (it exited).
    fn read_line(&mut self) -> Result<String, CliError> {
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .map_err(|source| CliError::Io {
                context: format!("reading from the demo's {} process", self.role),
                source,
            })?;
        Ok(line.trim_end().to_owned())
    }

    /// Writes `line` to the child and closes its input. A child that already
    /// left is caught by its exit status in [`finish`](DemoProcess::finish).
    fn tell(&mut self, line: &str) {
        if let Some(mut input) = self.input.take() {
            let _ = writeln!(input, "{line}");
        }
    }

    /// Waits until the child has exited, and checks that it succeeded.
    fn finish(&mut self) -> Result<(), CliError> {
        drop(self.input.take());
        let status = self.process.wait().map_err(|source| CliError::Io {
            context: format!("waiting for the demo's {} process", self.role),
            source,
        })?;
        self.waited = true;
        check(status.success(), || {
            format!(
                "the {} process (pid {}) exits successfully, not with {status}",
                self.role,
                self.pid()
            )
        })
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if !self.waited {
            drop(self.input.take());
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
