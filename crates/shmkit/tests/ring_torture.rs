//! The kill -9 torture test of issue 8: a producer and a consumer process
//! on one ring, killed with SIGKILL (by pid) at random moments, one, the
//! other or both, each killed role restarted at once; messages of 16 bytes
//! up to the ring's largest, so that records wrap and pad all the time.
//!
//! What each side did is written to a log file after it happened, as an
//! application would record it: the producer the number of sends that
//! returned `Ok` (its commits), the consumer every message it received
//! with the ring's sequence number. A killed process loses nothing of its
//! log. The checker reads the logs and demands: no committed message lost
//! (except the one message a consumer killed inside `recv` may lose, as
//! documented), none torn, none out of order, none delivered twice except
//! to the consumer that took over from a killed one, and only those its
//! predecessor had not handed back (one read grant, or one drain batch);
//! no process panics, nothing makes no progress for 5 s, and after the
//! final close the ring is gone.
//!
//! `SHMKIT_TORTURE_KILLS` sets the number of kills (300 by default, as CI
//! runs it); `SHMKIT_TORTURE_SEED` replays a seed (the run's choices; the
//! timing is the machine's). The README gives the command for the long run.
//!
//! A message is its number and a checksum around bytes that follow from
//! the number (`Shape::Numbered`), so a receiver checks each one without
//! knowing which comes next. A producer that takes over starts one number
//! after its predecessor's last logged commit plus one: the predecessor
//! may have committed that one and died before logging it, and the checker
//! accepts it either way.

mod processes;
mod ring_layout;
mod roles;
mod sequence;
mod torture;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::ring::{self, Consumer, Options, Producer};
use shmkit::Error;

use processes::{args, report, ring_exists, unique_ring_name, RingCleanup, Watchdog, ROLE};
use roles::send_one;
use sequence::{mix, Rng, Sequence, Shape};
use torture::checker::*;
use torture::log::*;

/// The ring: 4 KiB, so that the largest message (2032 bytes) wraps or pads
/// every few records.
const CAPACITY: u64 = 4096;

/// No progress for this long is a hang.
const HANG: Duration = Duration::from_secs(5);

/// Kills in a CI run.
const CI_KILLS: u64 = 300;

fn options() -> Options {
    Options::default().capacity(CAPACITY)
}

fn sequence(seed: u64) -> Sequence {
    Sequence {
        seed,
        max: options().max_message_len() as usize,
        shape: Shape::Numbered,
    }
}

// ---------------------------------------------------------------------------
// The two roles, run as children of the test.

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let args = args();
    let words: Vec<&str> = args.split(' ').collect();
    match role.as_str() {
        "torture-producer" => produce(&words),
        "torture-consumer" => consume(&words),
        other => panic!("unknown role {other}"),
    }
}

/// What the supervisor says on a child's stdin.
enum Instruction {
    /// The peer that was gone has been restarted: try again.
    PeerBack,
    /// Stdin closed: finish (the producer closes the stream).
    Finish,
}

/// Reads the supervisor's commands in a thread, so that the producer can
/// look for them between sends without blocking.
fn commands() -> mpsc::Receiver<Instruction> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref() {
                Ok("peer-back") => {
                    if sender.send(Instruction::PeerBack).is_err() {
                        return;
                    }
                }
                Ok(other) => panic!("unknown command {other:?}"),
                Err(_) => break,
            }
        }
        let _ = sender.send(Instruction::Finish);
    });
    receiver
}

/// Role: `NAME SEED START LOG`. Sends messages `START..` until told to
/// finish, one by one or in batches, writing the number of commits to LOG
/// after each (see [`read_log`]); waits for the supervisor when the
/// consumer is gone; closes the stream at the end.
fn produce(words: &[&str]) {
    let [name, seed, start, log] = words else {
        panic!("producer arguments {words:?}");
    };
    let sequence = sequence(seed.parse().unwrap());
    let start: u64 = start.parse().unwrap();
    let log = OpenOptions::new().write(true).open(log).unwrap();
    let commands = commands();
    let mut producer = Producer::open_with(name, &options())
        .unwrap_or_else(|err| panic!("a producer could not open ring {name}: {err}"));
    report("ready");
    let mut message = Vec::new();
    let mut n = start;
    loop {
        match commands.try_recv() {
            Ok(Instruction::Finish) => break,
            Ok(Instruction::PeerBack) | Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => unreachable!("the reader sends Finish last"),
        }
        // One time in eight, a batch of up to 8 committed together (it
        // never waits: when nothing fits, a send waits instead).
        if mix(sequence.seed ^ 0xba7c, n).is_multiple_of(8) {
            let mut batch = producer.batch();
            let mut pushed = 0;
            for i in 0..2 + mix(sequence.seed, n) % 7 {
                sequence.message(n + i, &mut message);
                match batch.try_push(&message) {
                    Ok(true) => pushed += 1,
                    Ok(false) => break,
                    Err(err) => panic!("producer: batching message {}: {err}", n + i),
                }
            }
            if pushed > 0 {
                let after = n + pushed - start;
                log.write_all_at(&after.to_le_bytes(), 8).unwrap();
                assert_eq!(batch.commit() as u64, pushed);
                n += pushed;
                log.write_all_at(&(n - start).to_le_bytes(), 0).unwrap();
                continue;
            }
            batch.abort();
        }
        match send_one(&mut producer, &sequence, n, &mut message) {
            Ok(()) => {
                n += 1;
                log.write_all_at(&(n - start).to_le_bytes(), 0).unwrap();
            }
            Err(Error::PeerGone { .. }) => {
                report("peer-gone");
                match commands.recv().unwrap() {
                    Instruction::PeerBack => {}
                    Instruction::Finish => break,
                }
            }
            Err(err) => panic!("producer: sending message {n}: {err}"),
        }
    }
    // Dropping closes the stream (as close() does, whatever it returns).
    drop(producer);
    report(&format!("closed {}", n - start));
}

/// Role: `NAME SEED INCARNATION LAST_SEQ LOG`. Receives with the verb
/// [`Verb::choose`] says, checks each message, logs it (a sequence number
/// not above LAST_SEQ, or above one it logged, is logged as a duplicate);
/// waits for the supervisor when the producer is gone; ends at `Closed`.
fn consume(words: &[&str]) {
    let [name, seed, incarnation, last_seq, log] = words else {
        panic!("consumer arguments {words:?}");
    };
    let seed: u64 = seed.parse().unwrap();
    let incarnation: u64 = incarnation.parse().unwrap();
    let sequence = sequence(seed);
    let mut last_seq: Option<u64> = last_seq.parse().ok();
    let mut log = OpenOptions::new().append(true).open(log).unwrap();
    let commands = commands();
    let mut consumer = Consumer::open_with(name, &options())
        .unwrap_or_else(|err| panic!("a consumer could not open ring {name}: {err}"));
    report("ready");
    let mut buf = vec![0; consumer.max_message()];
    let mut expected = Vec::new();
    let mut k = 0u64;
    let mut handle = |seq: u64, message: &[u8], verb: Verb, batch_start: bool, k: &mut u64| {
        if message.len() < 16 {
            panic!(
                "torn: message at sequence {seq} has {} bytes",
                message.len()
            );
        }
        let n = u64::from_le_bytes(message[..8].try_into().unwrap());
        sequence.message(n, &mut expected);
        if n > N_BITS || message != expected {
            panic!(
                "torn: message at sequence {seq} says it is number {n}, \
                 but its {} bytes differ from that message's {}",
                message.len(),
                expected.len()
            );
        }
        let duplicate = last_seq.is_some_and(|last| seq <= last);
        if !duplicate {
            last_seq = Some(seq);
        }
        let entry = Entry {
            seq,
            n,
            verb,
            batch_start,
            duplicate,
        };
        log.write_all(&entry.encode()).unwrap();
        *k += 1;
    };
    loop {
        let outcome = match Verb::choose(seed, incarnation, k) {
            Verb::Recv => consumer.recv(&mut buf).map(|len| {
                let seq = consumer.last_sequence().expect("a message was received");
                handle(seq, &buf[..len], Verb::Recv, false, &mut k);
            }),
            Verb::Read => consumer.read().map(|grant| {
                handle(grant.sequence(), &grant, Verb::Read, false, &mut k);
                grant.release();
            }),
            Verb::Drain => {
                let mut first = true;
                match consumer.drain_with_sequence(|seq, message| {
                    handle(seq, message, Verb::Drain, first, &mut k);
                    first = false;
                }) {
                    // Empty: wait for the next message with a read grant.
                    Ok(0) => consumer.read().map(|grant| {
                        handle(grant.sequence(), &grant, Verb::Read, false, &mut k);
                        grant.release();
                    }),
                    other => other.map(drop),
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(Error::PeerGone { .. }) => {
                report("peer-gone");
                match commands.recv().unwrap() {
                    Instruction::PeerBack => {}
                    Instruction::Finish => return,
                }
            }
            Err(Error::Closed { .. }) => {
                report("closed");
                return;
            }
            Err(err) => panic!("consumer: {err}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The supervisor.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Producer,
    Consumer,
}

#[derive(Debug)]
enum Event {
    Line(String),
    Exited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Opening,
    Up,
    /// Reported that its peer is gone; waits to be told it is back.
    WaitingForPeer,
    Closed,
}

/// One child process of the test, in a role.
struct Role {
    side: Side,
    incarnation: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    state: State,
    /// Its last report, for a failure message.
    last_line: String,
}

impl Role {
    fn spawn(
        side: Side,
        incarnation: u64,
        args: String,
        events: &mpsc::Sender<(Side, u64, Event)>,
    ) -> Role {
        let role = match side {
            Side::Producer => "torture-producer",
            Side::Consumer => "torture-consumer",
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env("SHMKIT_TEST_ARGS", args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the test binary as a child");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let events = events.clone();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("@@ ") {
                    let report = line[at + 3..].trim_end().to_owned();
                    if events
                        .send((side, incarnation, Event::Line(report)))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let _ = events.send((side, incarnation, Event::Exited));
        });
        Role {
            side,
            incarnation,
            stdin: child.stdin.take(),
            child,
            state: State::Opening,
            last_line: String::new(),
        }
    }

    fn command(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // A child killed a moment ago has no reader: ignore that.
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }

    /// SIGKILL by pid, then reaps it; `Err` if it had ended otherwise.
    fn kill(&mut self) -> Result<(), String> {
        use std::os::unix::process::ExitStatusExt;
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        match status.signal() {
            Some(9) => Ok(()),
            _ => Err(format!(
                "{:?} {} ended by itself before the kill ({status}); its last report: {:?}",
                self.side, self.incarnation, self.last_line
            )),
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes the run's log directory, even if the test panics.
struct LogDir(PathBuf);

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Supervisor {
    name: String,
    seed: u64,
    dir: PathBuf,
    events_tx: mpsc::Sender<(Side, u64, Event)>,
    events: mpsc::Receiver<(Side, u64, Event)>,
    producer: Role,
    consumer: Role,
    producer_runs: Vec<ProducerRun>,
    consumer_incarnations: u64,
    checker: Checker,
    rng: Rng,
    last_progress: (u64, u64),
    last_progress_at: Instant,
    /// The ring file's inode once it exists: the harness's processes never
    /// leave the ring before the end, so it must stay the same file.
    ring_inode: Option<u64>,
    /// Set once the producer was told to close: the ring may go then.
    finishing: bool,
}

impl Supervisor {
    fn producer_log(dir: &Path, incarnation: u64) -> PathBuf {
        dir.join(format!("producer-{incarnation}"))
    }

    fn consumer_log(dir: &Path, incarnation: u64) -> PathBuf {
        dir.join(format!("consumer-{incarnation}"))
    }

    fn spawn_producer(
        name: &str,
        seed: u64,
        dir: &Path,
        runs: &mut Vec<ProducerRun>,
        events: &mpsc::Sender<(Side, u64, Event)>,
    ) -> Role {
        // One past the predecessor's last logged commit plus one: that one
        // it may have committed without logging.
        let start = runs.last().map_or(0, ProducerRun::possible_end);
        let incarnation = runs.len() as u64;
        runs.push(ProducerRun {
            start,
            count: 0,
            pending: 0,
        });
        let log = Supervisor::producer_log(dir, incarnation);
        std::fs::write(&log, [0; 16]).unwrap();
        let args = format!("{name} {seed} {start} {}", log.display());
        Role::spawn(Side::Producer, incarnation, args, events)
    }

    fn spawn_consumer(
        name: &str,
        seed: u64,
        dir: &Path,
        incarnation: u64,
        last_seq: Option<u64>,
        events: &mpsc::Sender<(Side, u64, Event)>,
    ) -> Role {
        let log = Supervisor::consumer_log(dir, incarnation);
        File::create(&log).unwrap();
        let last = last_seq.map_or("none".to_owned(), |s| s.to_string());
        let args = format!("{name} {seed} {incarnation} {last} {}", log.display());
        Role::spawn(Side::Consumer, incarnation, args, events)
    }

    fn new(seed: u64) -> (Supervisor, RingCleanup, LogDir) {
        let name = unique_ring_name("torture");
        let cleanup = RingCleanup(name.clone());
        let dir = std::env::temp_dir().join(format!("shmkit-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log_dir = LogDir(dir.clone());
        let (events_tx, events) = mpsc::channel();
        let mut rng = Rng::new(seed);
        let mut runs = Vec::new();
        // Either may start first.
        let (producer, consumer) = if rng.below(2) == 0 {
            let p = Supervisor::spawn_producer(&name, seed, &dir, &mut runs, &events_tx);
            let c = Supervisor::spawn_consumer(&name, seed, &dir, 0, None, &events_tx);
            (p, c)
        } else {
            let c = Supervisor::spawn_consumer(&name, seed, &dir, 0, None, &events_tx);
            let p = Supervisor::spawn_producer(&name, seed, &dir, &mut runs, &events_tx);
            (p, c)
        };
        let supervisor = Supervisor {
            name,
            seed,
            dir,
            events_tx,
            events,
            producer,
            consumer,
            producer_runs: runs,
            consumer_incarnations: 1,
            checker: Checker::new(),
            rng,
            last_progress: (0, 0),
            last_progress_at: Instant::now(),
            ring_inode: None,
            finishing: false,
        };
        (supervisor, cleanup, log_dir)
    }

    fn role(&mut self, side: Side) -> &mut Role {
        match side {
            Side::Producer => &mut self.producer,
            Side::Consumer => &mut self.consumer,
        }
    }

    /// The producer runs with their counts as logged now.
    fn runs_now(&self) -> Vec<ProducerRun> {
        self.producer_runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let (count, pending) = read_log(&Supervisor::producer_log(&self.dir, i as u64));
                ProducerRun {
                    start: run.start,
                    count,
                    pending,
                }
            })
            .collect()
    }

    /// (messages the current consumer logged, commits the current producer
    /// logged): grows while the ring works.
    fn progress(&self) -> (u64, u64) {
        let consumer = Supervisor::consumer_log(&self.dir, self.consumer.incarnation);
        let received = std::fs::metadata(consumer).map_or(0, |m| m.len() / 16);
        let sent = read_count(&Supervisor::producer_log(
            &self.dir,
            self.producer.incarnation,
        ));
        (received, sent)
    }

    /// Fails if the ring's file was removed, or replaced by another, during
    /// the run. The roles never leave before the end, and a dead end does
    /// not remove the ring: only something outside the test does, such as
    /// a machine-wide forced gc (`collect_garbage(true)`, `shmkit gc
    /// --force`) that another test run starts while both ends here are
    /// dead for a moment. The checker would then see sequence numbers
    /// start again at 0; this says what happened instead.
    fn check_ring_file(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.finishing {
            return;
        }
        let path = format!("/dev/shm/{}{}", &ring::SEGMENT_PREFIX[1..], self.name);
        let inode = std::fs::symlink_metadata(path).ok().map(|m| m.ino());
        match (self.ring_inode, inode) {
            (None, found) => self.ring_inode = found,
            (Some(before), Some(now)) if before == now => {}
            (Some(before), now) => panic!(
                "{}",
                self.diagnosis(&format!(
                    "ring {} was removed under the test (inode {before}, now {now:?}), \
                     by nothing the test runs: a machine-wide forced gc elsewhere on this \
                     machine (issue 15.1) takes a ring whose ends are both dead for a \
                     moment for abandoned",
                    self.name
                ))
            ),
        }
    }

    /// A failure message with what the ring and both roles look like.
    fn diagnosis(&self, what: &str) -> String {
        let status = ring::status(&self.name);
        let mut what = what.to_owned();
        for failure in &self.checker.tally.failures {
            what += &format!("\n  - {failure}");
        }
        format!(
            "{what}\n  seed {} (SHMKIT_TORTURE_SEED replays its choices)\
             \n  producer {} {:?}, last report {:?}\
             \n  consumer {} {:?}, last report {:?}\
             \n  ring: {status:?}\
             \n  so far: {:?}",
            self.seed,
            self.producer.incarnation,
            self.producer.state,
            self.producer.last_line,
            self.consumer.incarnation,
            self.consumer.state,
            self.consumer.last_line,
            self.checker.tally
        )
    }

    /// Handles the children's reports until `until` holds or `deadline`
    /// passes; panics on a hang or on a child that ended by itself.
    fn pump(&mut self, deadline: Option<Instant>, mut until: impl FnMut(&Supervisor) -> bool) {
        loop {
            if until(self) {
                return;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            self.check_ring_file();
            let progress = self.progress();
            if progress != self.last_progress {
                self.last_progress = progress;
                self.last_progress_at = now;
            } else if now - self.last_progress_at > HANG {
                panic!(
                    "{}",
                    self.diagnosis(&format!("hang: no progress for {HANG:?}"))
                );
            }
            match self.events.recv_timeout(Duration::from_millis(2)) {
                Ok((side, incarnation, event)) => self.handle(side, incarnation, event),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            }
        }
    }

    fn handle(&mut self, side: Side, incarnation: u64, event: Event) {
        if self.role(side).incarnation != incarnation {
            return; // from a process killed since
        }
        let other = match side {
            Side::Producer => Side::Consumer,
            Side::Consumer => Side::Producer,
        };
        match event {
            Event::Line(line) => {
                self.role(side).last_line = line.clone();
                match line.as_str() {
                    "ready" => {
                        self.role(side).state = State::Up;
                        if self.role(other).state == State::WaitingForPeer {
                            self.role(other).state = State::Up;
                            self.role(other).command("peer-back");
                        }
                    }
                    "peer-gone" => {
                        if self.role(other).state == State::Up {
                            // Its peer was already replaced.
                            self.role(side).command("peer-back");
                        } else {
                            self.role(side).state = State::WaitingForPeer;
                        }
                    }
                    closed if closed.starts_with("closed") => {
                        self.role(side).state = State::Closed;
                    }
                    other => panic!("{}", self.diagnosis(&format!("unknown report {other:?}"))),
                }
            }
            Event::Exited => {
                if self.role(side).state != State::Closed {
                    let status = self.role(side).child.wait().unwrap();
                    panic!(
                        "{}",
                        self.diagnosis(&format!(
                            "{side:?} {incarnation} ended by itself ({status}): a panic? see its stderr above"
                        ))
                    );
                }
            }
        }
    }

    /// Kills `side` and starts a new process in its role.
    fn kill(&mut self, side: Side) {
        if self.role(side).state == State::Opening {
            self.checker.tally.kills_before_ready += 1;
        }
        if let Err(err) = self.role(side).kill() {
            panic!("{}", self.diagnosis(&err));
        }
        if side == Side::Consumer {
            let incarnation = self.consumer.incarnation;
            let path = Supervisor::consumer_log(&self.dir, incarnation);
            let entries = read_entries(&path);
            let runs = self.runs_now();
            self.checker
                .consumer_ended(incarnation, self.seed, &entries, true, &runs);
            std::fs::remove_file(path).unwrap();
            if !self.checker.tally.failures.is_empty() {
                panic!("{}", self.diagnosis("the guarantee does not hold"));
            }
        }
    }

    fn restart(&mut self, side: Side) {
        let role = match side {
            Side::Producer => {
                // The dead one's count is final now.
                self.producer_runs = self.runs_now();
                Supervisor::spawn_producer(
                    &self.name,
                    self.seed,
                    &self.dir,
                    &mut self.producer_runs,
                    &self.events_tx,
                )
            }
            Side::Consumer => {
                let incarnation = self.consumer_incarnations;
                self.consumer_incarnations += 1;
                Supervisor::spawn_consumer(
                    &self.name,
                    self.seed,
                    &self.dir,
                    incarnation,
                    self.checker.last_seq,
                    &self.events_tx,
                )
            }
        };
        *self.role(side) = role;
    }

    /// One round: lets the ring run until a random moment, then kills one
    /// side, the other or both, and restarts what it killed.
    fn round(&mut self) {
        let moment = self.rng.below(4);
        match moment {
            // A random time, often none at all: inside open and takeover.
            0 | 1 => {
                let micros = match self.rng.below(4) {
                    0 => 0,
                    1 => self.rng.below(1_000),
                    2 => self.rng.below(5_000),
                    _ => self.rng.below(20_000),
                };
                let deadline = Instant::now() + Duration::from_micros(micros);
                self.pump(Some(deadline), |_| false);
            }
            // After some messages, so that every process gets to work.
            _ => {
                let more = 1 + self.rng.below(120);
                let (received, sent) = self.progress();
                self.pump(None, |s| {
                    let (r, p) = s.progress();
                    r >= received + more || p >= sent + more
                });
            }
        }
        let victims: &[Side] = match self.rng.below(5) {
            0 | 1 => {
                self.checker.tally.kills_producer += 1;
                &[Side::Producer]
            }
            2 | 3 => {
                self.checker.tally.kills_consumer += 1;
                &[Side::Consumer]
            }
            _ => {
                self.checker.tally.kills_both += 1;
                if self.rng.below(2) == 0 {
                    &[Side::Producer, Side::Consumer]
                } else {
                    &[Side::Consumer, Side::Producer]
                }
            }
        };
        for &side in victims {
            self.kill(side);
        }
        for &side in victims {
            self.restart(side);
        }
    }

    /// Stops killing: once both sides are up, the producer closes; the
    /// consumer must receive everything, then `Closed`; then the ring must
    /// be gone.
    fn finish(&mut self) {
        self.pump(None, |s| {
            s.producer.state != State::Opening && s.consumer.state != State::Opening
        });
        self.finishing = true;
        self.producer.stdin = None;
        self.pump(None, |s| {
            s.producer.state == State::Closed && s.consumer.state == State::Closed
        });
        for side in [Side::Producer, Side::Consumer] {
            let status = self.role(side).child.wait().unwrap();
            assert!(status.success(), "{side:?} at the end: {status}");
        }
        let incarnation = self.consumer.incarnation;
        let entries = read_entries(&Supervisor::consumer_log(&self.dir, incarnation));
        let runs = self.runs_now();
        self.checker
            .consumer_ended(incarnation, self.seed, &entries, false, &runs);
        self.checker.finished(&runs);
        if !self.checker.tally.failures.is_empty() {
            panic!("{}", self.diagnosis("the guarantee does not hold"));
        }
        assert!(
            !ring_exists(&self.name),
            "{}",
            self.diagnosis("the ring is still there after the final close")
        );
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Kills producer and consumer processes at random moments, restarts them,
/// and checks the logs against the delivery guarantee (see the top of this
/// file). Prints its figures at the end.
#[test]
fn sigkill_at_random_moments_loses_nothing_committed() {
    let kills = env_u64("SHMKIT_TORTURE_KILLS").unwrap_or(CI_KILLS);
    let seed = env_u64("SHMKIT_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let _watchdog = Watchdog::new(
        "the torture test",
        Duration::from_secs(120) + Duration::from_millis(500) * kills as u32,
    );
    let began = Instant::now();
    let (mut supervisor, _cleanup, _logs) = Supervisor::new(seed);
    while supervisor.checker.tally.kills() < kills {
        supervisor.round();
    }
    supervisor.finish();
    let t = &supervisor.checker.tally;
    let figures = format!(
        "torture: seed {seed}, {} kills in {:.1?} ({} of the producer, {} of the consumer, {} of both at once; {} before the process had opened the ring): \
         {} messages committed, {} delivered, 0 lost, 0 torn, 0 out of order; \
         {} delivered again after a consumer's death ({} of read grants, {} of drain batches, at most {} per kill); \
         {} lost inside a killed consumer's recv; {} committed but not yet logged by a killed producer, delivered",
        t.kills(),
        began.elapsed(),
        t.kills_producer,
        t.kills_consumer,
        t.kills_both,
        t.kills_before_ready,
        t.committed,
        t.delivered,
        t.redelivered,
        t.redelivered_read,
        t.redelivered_drain,
        t.max_redelivered_per_kill,
        t.lost_in_recv,
        t.unlogged_commits_delivered,
    );
    eprintln!("{figures}");
    assert!(t.delivered > 0, "nothing was delivered: {figures}");
}
