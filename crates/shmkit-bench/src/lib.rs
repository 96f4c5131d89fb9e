//! `shmkit bench`: the ring against the kernel's transports, between two
//! real processes, next to the physical limits.
//!
//! For each payload size the bench measures, in this order: for each
//! transport a ping-pong (round-trip latency), preceded in the same two
//! processes by the cache-line floor; memcpy in one process (the
//! throughput ceiling, module `reference`); then five rounds
//! (`STREAM_TRIALS`) of streams (one-way throughput), every transport once
//! a round, each stream between two short floors that say where the host
//! had put the CPUs. Each measurement has a fresh peer process (module
//! `peer`) and a fresh transport (module `transports`). The loops are in
//! module `measure`; the tables and the JSON in module `report`. (These
//! modules and constants are private: `cargo doc
//! --document-private-items -p shmkit-bench` shows them.)
//!
//! Fairness: every transport carries the same messages, the same size both
//! ways, with the same number of warm-up messages before the measured ones,
//! and every receiver reads each message whole (it checks a checksum of all
//! its bytes). Latency is reported as percentiles of an HDR histogram,
//! never as a mean.
//!
//! The benchmark is a library that a binary embeds: the `shmkit` command
//! has the subcommand `bench` with [`BenchArgs`] as its options, which
//! calls [`run`], and the hidden subcommand `__bench-peer --job JOB`,
//! which calls [`run_peer`]: the bench starts its peers by running its own
//! executable that way.
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     Bench(shmkit_bench::BenchArgs),
//!     #[command(name = "__bench-peer", hide = true)]
//!     BenchPeer {
//!         #[arg(long)]
//!         job: String,
//!     },
//! }
//!
//! fn main() -> Result<(), shmkit_bench::Error> {
//!     let mut out = std::io::stdout().lock();
//!     match Cli::parse().command {
//!         Command::Bench(args) => shmkit_bench::run(&args, &mut out),
//!         Command::BenchPeer { job } => shmkit_bench::run_peer(&job, &mut out),
//!     }
//! }
//! ```

mod args;
#[doc(hidden)]
pub mod cost;
mod error;
mod machine;
mod measure;
mod peer;
mod reference;
mod report;
mod transports;

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub use self::args::BenchArgs;
pub use self::error::Error;
use self::machine::{Machine, Pinning};
use self::measure::Length;
use self::peer::{PeerJob, PeerProcess, Work};
use self::report::{Latency, Report, Row, Throughput, Trial};
pub use self::transports::Transport;
use self::transports::{with_link, Directions, Opened};

/// The largest payload `--sizes` accepts.
const MAX_SIZE: u64 = 1 << 20;

/// How many messages one measurement sends: the same for every transport
/// at a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Before a ping-pong, messages streamed one way, then the other, to
    /// warm up: enough to go once round a ring's data area, so that no
    /// page of it is touched for the first time while measuring.
    pub prime: u64,
    /// Round trips before the measured ones.
    pub warmup_round_trips: u64,
    /// Round trips measured by a ping-pong.
    pub round_trips: u64,
    /// Messages of a stream before the measured ones.
    pub warmup_streamed: u64,
    /// How long a stream's measured part is.
    pub stream: Length,
    /// Copies measured by memcpy.
    pub copies: u64,
    /// Round trips of the cache-line floor before each ping-pong, and
    /// before and after each stream, each time after a tenth as many to
    /// warm up.
    pub floor_rounds: u64,
}

impl Counts {
    /// The floor's round trips before the measured ones: a tenth of them,
    /// at least one.
    pub fn floor_warmup(&self) -> u64 {
        (self.floor_rounds / 10).max(1)
    }

    /// The counts for messages of `size` bytes: a ping-pong makes a fixed
    /// number of round trips, fewer for large messages, after a tenth as
    /// many to warm up; a stream (each of the five, `STREAM_TRIALS`) runs
    /// for one second (`STREAM_TIME`) after a warm-up of 64 MiB (from
    /// 1,000 to 20,000 messages). Every warm-up is at least
    /// [`prime`](Counts::prime). `--quick` divides the measured counts and
    /// times by ten (`QUICK_DIVISOR`); `--messages N` sets them all to N (the
    /// warm-ups to N/10), and the stream to N messages.
    pub fn for_size(size: usize, quick: bool, messages: Option<u64>) -> Counts {
        if let Some(n) = messages {
            let n = n.max(1);
            let warmup = (n / 10).max(1);
            return Counts {
                prime: warmup,
                warmup_round_trips: warmup,
                round_trips: n,
                warmup_streamed: warmup,
                stream: Length::Messages(n),
                copies: n,
                floor_rounds: n,
            };
        }
        const ROUND_TRIPS: u64 = 100_000;
        const MIN_ROUND_TRIPS: u64 = 10_000;
        const ROUND_TRIP_BYTES: u64 = 2 << 30;
        const STREAM_WARMUP_BYTES: u64 = 64 << 20;
        const COPY_BYTES: u64 = 8 << 30;
        const MAX_COPIES: u64 = 100_000_000;
        const FLOOR_ROUNDS: u64 = 20_000;
        let bytes = size as u64;
        let divisor = if quick { QUICK_DIVISOR } else { 1 };
        let round_trips = (ROUND_TRIP_BYTES / bytes).clamp(MIN_ROUND_TRIPS, ROUND_TRIPS) / divisor;
        let prime = transports::ring_capacity(size) / transports::ring_record(size) + 1;
        let warmup_streamed = (STREAM_WARMUP_BYTES / bytes).clamp(1_000, 20_000) / divisor;
        Counts {
            prime,
            warmup_round_trips: round_trips / 10,
            round_trips,
            warmup_streamed: warmup_streamed.max(prime),
            stream: Length::Time(STREAM_TIME / divisor as u32),
            copies: (COPY_BYTES / bytes).min(MAX_COPIES) / divisor,
            floor_rounds: FLOOR_ROUNDS / divisor,
        }
    }
}

/// How long each stream's measured part runs.
const STREAM_TIME: Duration = Duration::from_secs(1);

/// Streams measured per transport and size, each between a fresh pair of
/// processes over a fresh transport, in rounds: each round streams every
/// transport once, in turn, so that the transports of a round share the
/// host's state of that moment. The tables show each transport's median
/// rate, and a target that compares two transports takes the median of
/// their ratios within a round.
///
/// Why rounds: the host moves the virtual machine's two CPUs between
/// placements within seconds (the cache-line floor measured before each
/// stream moves between about 55 ns, two hyperthreads of one core, and
/// 200-350 ns, two cores), and a stream's rate moves with it by up to 3x.
/// Streamed one transport after the other, two transports' medians were
/// often taken under different placements, and their ratio said more about
/// the host than about them; streamed in turns, the two streams a target
/// compares run close together (shmkit-block right after shmkit-spin,
/// shmkit-async two streams after shmkit-block). Five rounds, so that two
/// streams that met an odd moment do not decide a median.
const STREAM_TRIALS: usize = 5;

/// How much `--quick` cuts every count.
const QUICK_DIVISOR: u64 = 10;

/// One measurement of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Memcpy(usize),
    RoundTrips(Transport, usize),
    /// One round's stream of a transport: the round, counted from 0.
    Stream(Transport, usize, usize),
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Job::Memcpy(size) => write!(f, "memcpy of {}", report::size_text(size)),
            Job::RoundTrips(transport, size) => write!(
                f,
                "{} ping-pong of {}",
                transport.name(),
                report::size_text(size)
            ),
            Job::Stream(transport, size, round) => write!(
                f,
                "{} stream of {} (round {} of {STREAM_TRIALS})",
                transport.name(),
                report::size_text(size),
                round + 1
            ),
        }
    }
}

/// What every measurement of one run shares.
#[derive(Debug)]
struct Bench {
    pinning: Pinning,
    /// How long a `shmkit-block` ring spins before it sleeps.
    block_spin: Option<Duration>,
    quick: bool,
    messages: Option<u64>,
    inject_skip: bool,
}

/// `shmkit bench`: measures, then prints the tables (or the JSON) on `out`.
///
/// See the [crate documentation](crate) for the peer processes it starts.
pub fn run(args: &BenchArgs, out: &mut impl Write) -> Result<(), Error> {
    let started = Instant::now();
    let sizes = sizes(&args.sizes)?;
    // Asked for by name, a transport this build lacks gets a note.
    let transports: Vec<Transport> = if args.transports.is_empty() {
        Transport::ALL.to_vec()
    } else {
        <Transport as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .filter(|t| args.transports.contains(t))
            .collect()
    };
    let machine = Machine::describe();
    let bench = Bench {
        pinning: machine::pin_pair(),
        block_spin: args.block_spin,
        quick: args.quick,
        messages: args.messages,
        inject_skip: args.inject_skip,
    };

    let plan = plan(&sizes, &transports);

    // Drawn on standard error, and not at all when that is no terminal;
    // redrawn only between measurements (a ticking thread would wake up on
    // this process's CPU while it measures).
    let progress = ProgressBar::new(plan.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows: Vec<Row> = Vec::new();
    // Those that cannot stream a size say why in the first round; the
    // later rounds skip them.
    let mut cannot_stream: Vec<(Transport, usize)> = Vec::new();
    for job in &plan {
        if let Job::Stream(transport, size, _) = *job {
            if cannot_stream.contains(&(transport, size)) {
                progress.inc(1);
                continue;
            }
        }
        progress.set_message(job.to_string());
        match bench.measure(*job) {
            Ok(row) => {
                if let Job::Stream(transport, size, _) = *job {
                    if row.trials.is_empty() {
                        cannot_stream.push((transport, size));
                    }
                }
                merge(&mut rows, row)
            }
            Err(err) => {
                progress.finish_and_clear();
                return Err(Error::Message(format!("bench: {job}: {err}")));
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    for row in &mut rows {
        row.settle_throughput();
    }
    add_floors(&mut rows, &sizes);

    let report = Report {
        machine,
        pinning: bench.pinning.clone(),
        block_spin: bench.block_spin,
        counts: sizes
            .iter()
            .map(|&size| (size, bench.counts(size)))
            .collect(),
        transports,
        rows,
        elapsed: started.elapsed(),
    };
    let text = if args.json {
        report.json()
    } else {
        report.tables()
    };
    out.write_all(text.as_bytes()).map_err(Error::stdout)
}

/// The measurements of a run, in order: for each size, every transport's
/// ping-pong, memcpy, then [`STREAM_TRIALS`] rounds of every transport's
/// stream in turn.
fn plan(sizes: &[usize], transports: &[Transport]) -> Vec<Job> {
    let mut plan = Vec::new();
    for &size in sizes {
        plan.extend(transports.iter().map(|&t| Job::RoundTrips(t, size)));
        plan.push(Job::Memcpy(size));
        for round in 0..STREAM_TRIALS {
            plan.extend(transports.iter().map(|&t| Job::Stream(t, size, round)));
        }
    }
    plan
}

/// `__bench-peer --job JOB`, the peer process that [`run`] starts: does
/// the job and reports on `out`.
pub fn run_peer(job: &str, out: &mut impl Write) -> Result<(), Error> {
    peer::run(job, out)
}

/// Checks `--sizes`, dropping repeats.
fn sizes(requested: &[u64]) -> Result<Vec<usize>, Error> {
    let mut sizes = Vec::new();
    for &size in requested {
        if !(measure::MIN_SIZE as u64..=MAX_SIZE).contains(&size) {
            return Err(Error::Usage(format!(
                "--sizes: {size} bytes is not from {} bytes (room for a message's sequence \
                 number) to 1M",
                measure::MIN_SIZE
            )));
        }
        if !sizes.contains(&(size as usize)) {
            sizes.push(size as usize);
        }
    }
    Ok(sizes)
}

/// Puts a `floor` row before each size's rows: of the floors measured with
/// that size's ping-pongs, the one with the lowest median.
fn add_floors(rows: &mut Vec<Row>, sizes: &[usize]) {
    for &size in sizes {
        let lowest = rows
            .iter()
            .filter(|row| row.size == size)
            .filter_map(|row| row.floor)
            .min_by_key(|floor| floor.p50);
        let first = rows.iter().position(|row| row.size == size);
        if let (Some(floor), Some(first)) = (lowest, first) {
            rows.insert(first, Row::new("floor", size).with_latency(floor));
        }
    }
}

/// Adds a measurement to its transport and size's row.
fn merge(rows: &mut Vec<Row>, row: Row) {
    match rows
        .iter_mut()
        .find(|r| r.name == row.name && r.size == row.size)
    {
        Some(existing) => {
            existing.latency = existing.latency.or(row.latency);
            existing.throughput = existing.throughput.or(row.throughput);
            existing.floor = existing.floor.or(row.floor);
            existing.trials.extend(row.trials);
            for note in row.notes {
                if !existing.notes.contains(&note) {
                    existing.notes.push(note);
                }
            }
        }
        None => rows.push(row),
    }
}

impl Bench {
    fn counts(&self, size: usize) -> Counts {
        Counts::for_size(size, self.quick, self.messages)
    }

    fn measure(&self, job: Job) -> Result<Row, Error> {
        match job {
            Job::Memcpy(size) => {
                let (copies, bytes) = reference::memcpy(size, self.counts(size).copies);
                Ok(Row::new("memcpy", size).with_throughput(Throughput {
                    msgs_per_sec: copies,
                    bytes_per_sec: bytes,
                }))
            }
            Job::RoundTrips(transport, size) => self.round_trips(transport, size),
            Job::Stream(transport, size, round) => {
                let row = Row::new(transport.name(), size);
                Ok(match self.stream_trial(transport, size, round)? {
                    Ok(trial) => row.with_trial(trial),
                    Err(why) => row.with_note(format!("stream: {why}")),
                })
            }
        }
    }

    fn job(&self, work: Work, size: usize) -> PeerJob {
        PeerJob {
            work,
            size,
            cpu: self.pinning.peer_cpu(),
            parent: rustix::process::getpid().as_raw_pid(),
        }
    }

    /// The floor, then a ping-pong, between the same two processes: the
    /// floor measured just before is the one a ratio can trust, as the
    /// host moves the virtual machine's CPUs around.
    fn round_trips(&self, transport: Transport, size: usize) -> Result<Row, Error> {
        let mut counts = self.counts(size);
        counts.prime = counts.prime.min(transport.max_prime());
        let row = Row::new(transport.name(), size);
        let setup = match transports::open(transport, Directions::Both, size, self.block_spin)? {
            Opened::Ready(setup) => setup,
            Opened::Unsupported(why) => return Ok(row.with_note(format!("ping-pong: {why}"))),
        };
        let mut setup = *setup;
        let inherit = std::mem::take(&mut setup.inherit);
        let floor = reference::FloorSegment::create()?;
        let floor_warmup = counts.floor_warmup();
        let work = Work::Echo {
            transport,
            end: setup.peer_end.clone(),
            floor: floor.name.clone(),
            floor_rounds: floor_warmup + counts.floor_rounds,
            prime: counts.prime,
            round_trips: counts.warmup_round_trips + counts.round_trips,
        };
        let job = self.job(work, size);
        let what = Job::RoundTrips(transport, size).to_string();
        let mut peer = PeerProcess::spawn(&job, inherit, what)?;
        setup.link.watch(peer.peer());
        peer.expect_line("ready")?;
        // Opened by both: the names can go now.
        floor.remove();
        setup.unlink();
        let link = &mut setup.link;
        let floor_trips = floor
            .cell
            .bounce(floor_warmup, counts.floor_rounds, peer.peer())
            .map_err(|err| peer.failure(Some(err)))?;
        let round_trips = with_link!(
            link,
            link => measure::ping_pong(link, size, &counts)
        )
        .map_err(|err| peer.failure(Some(err)))?;
        peer.expect_line(&format!(
            "echoed {}",
            counts.warmup_round_trips + counts.round_trips
        ))?;
        peer.finish()?;
        Ok(row
            .with_latency(Latency::of(&round_trips))
            .with_floor(Latency::of(&floor_trips)))
    }

    /// One stream of a round, between two short floors of the same two
    /// processes (where the host had put the CPUs when it began and when
    /// it ended): its rate and those floors, or why the transport cannot
    /// stream messages of this size here.
    fn stream_trial(
        &self,
        transport: Transport,
        size: usize,
        round: usize,
    ) -> Result<Result<Trial, String>, Error> {
        let counts = self.counts(size);
        let setup = match transports::open(transport, Directions::ToPeer, size, self.block_spin)? {
            Opened::Ready(setup) => setup,
            Opened::Unsupported(why) => return Ok(Err(why)),
        };
        let mut setup = *setup;
        let inherit = std::mem::take(&mut setup.inherit);
        let floor = reference::FloorSegment::create()?;
        let floor_warmup = counts.floor_warmup();
        let work = Work::Receive {
            transport,
            end: setup.peer_end.clone(),
            floor: floor.name.clone(),
            floor_rounds: floor_warmup + counts.floor_rounds,
            warmup: counts.warmup_streamed,
        };
        let job = self.job(work, size);
        let what = Job::Stream(transport, size, round).to_string();
        let mut peer = PeerProcess::spawn(&job, inherit, what)?;
        setup.link.watch(peer.peer());
        peer.expect_line("ready")?;
        // Opened by both: the names can go now.
        floor.remove();
        setup.unlink();
        let bounce = |peer: &mut PeerProcess| {
            floor
                .cell
                .bounce(floor_warmup, counts.floor_rounds, peer.peer())
                .map(|trips| Latency::of(&trips).p50)
                .map_err(|err| peer.failure(Some(err)))
        };
        let floor_before = bounce(&mut peer)?;
        let link = &mut setup.link;
        let sent = with_link!(
            link,
            link => measure::send_stream(
                link,
                size,
                counts.warmup_streamed,
                counts.stream,
                self.inject_skip
            )
        )
        .map_err(|err| peer.failure(Some(err)))?;
        let line = peer.read_line()?;
        let elapsed = line
            .strip_prefix(&format!("received {sent} "))
            .and_then(|nanos| nanos.parse::<u64>().ok())
            .map(Duration::from_nanos);
        let Some(elapsed) = elapsed else {
            return Err(peer.failure(Some(Error::Message(format!(
                "the peer said {line:?}, not \"received {sent} NANOSECONDS\""
            )))));
        };
        let floor_after = bounce(&mut peer)?;
        peer.finish()?;
        Ok(Ok(Trial {
            round,
            msgs_per_sec: sent as f64 / elapsed.as_secs_f64().max(1e-9),
            floors: [floor_before, floor_after],
        }))
    }
}

/// The middle of `rates` (the mean of the two middle ones of an even
/// count; 0 for none).
fn median(rates: &mut [f64]) -> f64 {
    rates.sort_unstable_by(f64::total_cmp);
    let n = rates.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => rates[n / 2],
        _ => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::{median, plan, Job, Transport, STREAM_TRIALS};

    #[test]
    fn the_streams_of_a_size_come_in_rounds_of_every_transport() {
        let (spin, block) = (Transport::ShmkitSpin, Transport::ShmkitBlock);
        let jobs = plan(&[64], &[spin, block]);
        let streams: Vec<Job> = jobs
            .iter()
            .copied()
            .filter(|job| matches!(job, Job::Stream(..)))
            .collect();
        let expected: Vec<Job> = (0..STREAM_TRIALS)
            .flat_map(|round| [Job::Stream(spin, 64, round), Job::Stream(block, 64, round)])
            .collect();
        assert_eq!(streams, expected);
        // The ping-pongs and memcpy first.
        assert_eq!(
            jobs[..3],
            [
                Job::RoundTrips(spin, 64),
                Job::RoundTrips(block, 64),
                Job::Memcpy(64)
            ]
        );
    }

    #[test]
    fn a_stream_shows_the_middle_trial() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        // One stream that settled badly, or well, does not decide.
        assert_eq!(median(&mut [90e6, 30e6, 88e6]), 88e6);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [5.0]), 5.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
