//! The peer process: the other end of every measurement.
//!
//! The bench runs this same program as `shmkit __bench-peer --job JSON`
//! ([`PeerProcess`]), one peer per measurement, and they talk over the
//! peer's standard output, never by sleeping: the peer sets up its end of
//! the transport, pins itself to its CPU and prints `ready`; it then does
//! its [`Work`] and prints what it did (`echoed N` or `received N NANOS`;
//! after a stream it bounces the floor once more), and exits. A peer that fails prints `shmkit: why` on its
//! standard error, which the parent reads and reports, and exits 1.
//!
//! A peer dies with the bench (`PR_SET_PDEATHSIG`), and the bench kills a
//! peer it gives up on, so no process outlives a run.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use serde::{Deserialize, Serialize};

use super::transports::{with_link, PeerEnd, Transport};
use super::{machine, measure, reference};
use crate::Error;

/// What a peer does, with everything it needs to know.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerJob {
    /// The work.
    pub work: Work,
    /// Bytes in each message.
    pub size: usize,
    /// The CPU to pin the peer to, if any.
    pub cpu: Option<usize>,
    /// The bench's pid, to check that it is still the parent.
    pub parent: i32,
}

/// The peer's half of a measurement.
#[derive(Debug, Serialize, Deserialize)]
pub enum Work {
    /// Ping-pong: first bounce `floor_rounds` times the counter in the
    /// POSIX segment `floor` (the floor to compare with); then receive
    /// `prime` messages and send as many back (the warm-up that primes the
    /// transport); then `round_trips` times receive a message, check it,
    /// and send it back.
    Echo {
        transport: Transport,
        end: PeerEnd,
        floor: String,
        floor_rounds: u64,
        prime: u64,
        round_trips: u64,
    },
    /// Streaming: bounce `floor_rounds` times the counter in the POSIX
    /// segment `floor` (where the host put the two CPUs for this stream);
    /// receive and check `warmup` messages, then every message up to the
    /// end message, timed; then bounce the counter as often again (where
    /// the CPUs were at the end).
    Receive {
        transport: Transport,
        end: PeerEnd,
        floor: String,
        floor_rounds: u64,
        warmup: u64,
    },
}

/// A process whose liveness a waiting side checks now and then, where the
/// transport itself would not tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The bench's peer process, a child of this one.
    Child(Pid),
    /// The bench itself, this process's parent.
    Parent(Pid),
}

impl Peer {
    /// Whether the process is still running (a child that exited but is
    /// not reaped yet counts as gone).
    pub fn is_alive(self) -> bool {
        match self {
            Peer::Child(pid) => matches!(
                rustix::process::waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
                ),
                Ok(None)
            ),
            Peer::Parent(pid) => rustix::process::getppid() == Some(pid),
        }
    }
}

/// A running peer process. Dropping it before [`finish`](PeerProcess::finish)
/// kills and reaps it.
#[derive(Debug)]
pub struct PeerProcess {
    /// What it is for, for messages: `pipe ping-pong at 64 B`.
    what: String,
    process: Child,
    output: BufReader<ChildStdout>,
    /// Everything the peer writes on its standard error, once it closes
    /// it, from a thread that reads it all along.
    errors: Receiver<String>,
    reaped: bool,
}

/// How long a failing peer is given to finish saying why (it exits on its
/// own once it has), before it is killed.
const LAST_WORDS: Duration = Duration::from_secs(2);

impl PeerProcess {
    /// Starts `shmkit __bench-peer --job JOB`, passing it the descriptors
    /// in `inherit` (which it closes here once the peer has them).
    pub fn spawn(job: &PeerJob, inherit: Vec<OwnedFd>, what: String) -> Result<PeerProcess, Error> {
        let spawn_error = |source| Error::Io {
            context: format!("starting the peer process for {what}"),
            source,
        };
        let program = std::env::current_exe().map_err(spawn_error)?;
        let job = serde_json::to_string(job).expect("a job serialises");
        // The peer inherits exactly these: every other descriptor of this
        // process is close-on-exec (std and `transports` make them so).
        for fd in &inherit {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
                .map_err(|errno| spawn_error(errno.into()))?;
        }
        let mut process = Command::new(program)
            .args(["__bench-peer", "--job", &job])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        drop(inherit);
        let (Some(output), Some(errors)) = (process.stdout.take(), process.stderr.take()) else {
            let _ = process.kill();
            let _ = process.wait();
            return Err(Error::Message(format!(
                "the peer process for {what} has no pipes"
            )));
        };
        let (send, said) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(errors).read_to_string(&mut text);
            let _ = send.send(text);
        });
        Ok(PeerProcess {
            what,
            process,
            output: BufReader::new(output),
            errors: said,
            reaped: false,
        })
    }

    /// The peer's pid, to watch it.
    pub fn peer(&self) -> Peer {
        let pid = Pid::from_raw(self.process.id() as i32).expect("a child's pid is positive");
        Peer::Child(pid)
    }

    /// The next line the peer prints, without its newline. If the peer
    /// ends instead, its failure.
    pub fn read_line(&mut self) -> Result<String, Error> {
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(0) => Err(self.failure(None)),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(source) => Err(self.failure(Some(Error::Io {
                context: format!("reading from the peer process for {}", self.what),
                source,
            }))),
        }
    }

    /// Reads a line, which must be `expected`.
    pub fn expect_line(&mut self, expected: &str) -> Result<(), Error> {
        let line = self.read_line()?;
        if line == expected {
            Ok(())
        } else {
            Err(self.failure(Some(Error::Message(format!(
                "the peer process for {} said {line:?}, not {expected:?}",
                self.what
            )))))
        }
    }

    /// Waits for the peer to exit, and checks that it succeeded.
    pub fn finish(mut self) -> Result<(), Error> {
        let status = self.process.wait().map_err(|source| Error::Io {
            context: format!("waiting for the peer process for {}", self.what),
            source,
        })?;
        self.reaped = true;
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(None))
        }
    }

    /// Why the measurement failed, after something went wrong on this side
    /// (`mine`) or the peer stopped. Prefers what the peer said on its
    /// standard error, which explains a failure that this side only sees as
    /// a closed pipe or a dead peer: waits up to [`LAST_WORDS`] for the
    /// peer to finish, then kills it.
    pub fn failure(&mut self, mine: Option<Error>) -> Error {
        let said = match self.errors.recv_timeout(LAST_WORDS) {
            Ok(said) => said,
            Err(_) => {
                let _ = self.process.kill();
                // Killed, it closes its standard error: the text comes.
                self.errors.recv().unwrap_or_default()
            }
        };
        let status = self.process.wait();
        self.reaped = true;
        let said: Vec<&str> = said
            .lines()
            .map(|line| line.strip_prefix("shmkit: ").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .collect();
        if !said.is_empty() {
            return Error::Message(format!(
                "the peer process (pid {}) failed: {}",
                self.process.id(),
                said.join("; ")
            ));
        }
        mine.unwrap_or_else(|| {
            Error::Message(format!(
                "the peer process (pid {}) for {} ended ({}) without a word",
                self.process.id(),
                self.what,
                status.map_or_else(|err| err.to_string(), |status| status.to_string())
            ))
        })
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// `shmkit __bench-peer --job JOB`: does the job and reports on `out`.
pub fn run(job: &str, out: &mut impl Write) -> Result<(), Error> {
    let job: PeerJob = serde_json::from_str(job)
        .map_err(|err| Error::Usage(format!("__bench-peer: not a job: {err}")))?;
    // Die with the bench; and if it died before this took effect, stop.
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(|errno| {
        Error::Io {
            context: "asking to die with the bench (PR_SET_PDEATHSIG)".to_owned(),
            source: errno.into(),
        }
    })?;
    let parent = Pid::from_raw(job.parent)
        .map(Peer::Parent)
        .filter(|parent| parent.is_alive())
        .ok_or_else(|| {
            Error::Message(format!(
                "process {} that started this peer is gone",
                job.parent
            ))
        })?;
    if let Some(cpu) = job.cpu {
        machine::pin_to(cpu).map_err(|source| Error::Io {
            context: format!("pinning the peer process to CPU {cpu}"),
            source,
        })?;
    }
    let mut say = |text: &str| {
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(Error::stdout)
    };
    match &job.work {
        Work::Echo {
            transport,
            end,
            floor,
            floor_rounds,
            prime,
            round_trips,
        } => {
            let floor = reference::FloorCell::open(floor)?;
            let mut link = end.link(*transport, job.size, parent)?;
            say("ready")?;
            floor.answer(*floor_rounds, parent)?;
            with_link!(&mut link, link => measure::echo(link, job.size, *prime, *round_trips))?;
            say(&format!("echoed {round_trips}"))
        }
        Work::Receive {
            transport,
            end,
            floor,
            floor_rounds,
            warmup,
        } => {
            let floor = reference::FloorCell::open(floor)?;
            let mut link = end.link(*transport, job.size, parent)?;
            say("ready")?;
            floor.answer(*floor_rounds, parent)?;
            let (messages, elapsed) = with_link!(
                &mut link,
                link => measure::receive_stream(link, job.size, *warmup)
            )?;
            say(&format!("received {messages} {}", elapsed.as_nanos()))?;
            // The counter starts again from 1: the bench's first bounce
            // ended on this side's last number, before the stream.
            floor.answer(*floor_rounds, parent)
        }
    }
}
