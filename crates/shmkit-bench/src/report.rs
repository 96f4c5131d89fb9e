//! What `shmkit bench` prints: a header about the machine and the method,
//! a latency table and a throughput table with each figure's ratio to the
//! pipe and to the physical reference, and the targets; or, with
//! `--json`, one array of records for scripts.

use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::machine::{Machine, Pinning};
use super::measure::Length;
use super::transports::{self, Transport};
use super::Counts;

/// Round-trip percentiles, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        Latency {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
        }
    }
}

/// One-way throughput.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
}

/// One stream of a round (see `STREAM_TRIALS`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trial {
    /// Its round, from 0.
    pub round: usize,
    pub msgs_per_sec: f64,
    /// The p50 of the cache-line floor its two processes measured just
    /// before it and just after it: where the host had put their CPUs.
    pub floors: [u64; 2],
}

/// How far apart two floors may be and still be taken for one placement
/// of the CPUs: the placements seen differ by 3x or more (about 55 ns for
/// two hyperthreads of a core, 200-350 ns for two cores), one placement's
/// floors by less than this between measurements.
const SAME_PLACEMENT: f64 = 1.5;

impl Trial {
    /// Whether this stream and `other` began and ended under one placement
    /// of the CPUs, as far as their floors tell.
    pub fn placed_as(&self, other: &Trial) -> bool {
        let (low, high) = floor_span(self.floors.iter().chain(&other.floors).copied())
            .expect("two trials have four floors");
        high as f64 <= SAME_PLACEMENT * low.max(1) as f64
    }
}

/// The lowest and highest of `floors`, if any.
fn floor_span(floors: impl Iterator<Item = u64> + Clone) -> Option<(u64, u64)> {
    Some((floors.clone().min()?, floors.max()?))
}

/// Fewer rounds than this under one placement, and a comparison of two
/// streams takes every round.
const LEAST_PLACED_ROUNDS: usize = 2;

/// A stream against another's, round by round ([`Report::stream_ratio`]).
#[derive(Debug, PartialEq)]
struct StreamRatio {
    /// The median of the rounds taken under one placement, or of all
    /// rounds if fewer than [`LEAST_PLACED_ROUNDS`] were.
    ratio: f64,
    /// Each round's ratio, and whether its two streams shared a placement.
    rounds: Vec<(f64, bool)>,
}

impl StreamRatio {
    /// Whether `ratio` is of the rounds under one placement alone.
    fn of_placed(&self) -> bool {
        enough_placed(&self.rounds)
    }
}

/// Whether at least [`LEAST_PLACED_ROUNDS`] of `rounds` shared a placement.
fn enough_placed(rounds: &[(f64, bool)]) -> bool {
    rounds.iter().filter(|r| r.1).count() >= LEAST_PLACED_ROUNDS
}

/// Everything measured for one transport (or reference) at one size.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The transport's name, `floor` or `memcpy`.
    pub name: &'static str,
    pub size: usize,
    pub latency: Option<Latency>,
    pub throughput: Option<Throughput>,
    /// The cache-line floor measured just before this row's ping-pong.
    pub floor: Option<Latency>,
    /// Its streams, a round each, in order; `throughput` is their median.
    pub trials: Vec<Trial>,
    /// Why something was not measured.
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(name: &'static str, size: usize) -> Row {
        Row {
            name,
            size,
            latency: None,
            throughput: None,
            floor: None,
            trials: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn with_latency(mut self, latency: Latency) -> Row {
        self.latency = Some(latency);
        self
    }

    pub fn with_throughput(mut self, throughput: Throughput) -> Row {
        self.throughput = Some(throughput);
        self
    }

    pub fn with_floor(mut self, floor: Latency) -> Row {
        self.floor = Some(floor);
        self
    }

    /// Sets `throughput` to the median of the rounds' streams, if any.
    pub fn settle_throughput(&mut self) {
        if self.trials.is_empty() {
            return;
        }
        let mut rates: Vec<f64> = self.trials.iter().map(|t| t.msgs_per_sec).collect();
        let rate = super::median(&mut rates);
        self.throughput = Some(Throughput {
            msgs_per_sec: rate,
            bytes_per_sec: rate * self.size as f64,
        });
    }

    pub fn with_trial(mut self, trial: Trial) -> Row {
        self.trials.push(trial);
        self
    }

    pub fn with_note(mut self, note: String) -> Row {
        self.notes.push(note);
        self
    }
}

/// One element of the `--json` array.
#[derive(Debug, Serialize)]
struct Record {
    transport: &'static str,
    size: usize,
    rtt_p50_ns: Option<u64>,
    rtt_p99_ns: Option<u64>,
    rtt_p999_ns: Option<u64>,
    msgs_per_sec: Option<u64>,
    bytes_per_sec: Option<u64>,
    /// The streams of the rounds, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stream_trials: Vec<TrialRecord>,
}

/// One stream of a round in a [`Record`].
#[derive(Debug, Serialize)]
struct TrialRecord {
    msgs_per_sec: u64,
    floor_before_ns: u64,
    floor_after_ns: u64,
}

/// A whole run's results and circumstances.
#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub pinning: Pinning,
    /// How long a `shmkit-block` ring spins before it sleeps, if not as
    /// the library adapts it.
    pub block_spin: Option<Duration>,
    /// The sizes, in order, with their message counts.
    pub counts: Vec<(usize, Counts)>,
    pub transports: Vec<Transport>,
    /// The floor, then for each size memcpy and the transports.
    pub rows: Vec<Row>,
    pub elapsed: Duration,
}

impl Report {
    /// The JSON array, one record per row, and a newline.
    pub fn json(&self) -> String {
        let records: Vec<Record> = self
            .rows
            .iter()
            .map(|row| Record {
                transport: row.name,
                size: row.size,
                rtt_p50_ns: row.latency.map(|l| l.p50),
                rtt_p99_ns: row.latency.map(|l| l.p99),
                rtt_p999_ns: row.latency.map(|l| l.p999),
                msgs_per_sec: row.throughput.map(|t| t.msgs_per_sec.round() as u64),
                bytes_per_sec: row.throughput.map(|t| t.bytes_per_sec.round() as u64),
                stream_trials: row
                    .trials
                    .iter()
                    .map(|t| TrialRecord {
                        msgs_per_sec: t.msgs_per_sec.round() as u64,
                        floor_before_ns: t.floors[0],
                        floor_after_ns: t.floors[1],
                    })
                    .collect(),
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&records).expect("records serialise");
        text.push('\n');
        text
    }

    fn row(&self, name: &str, size: usize) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name && r.size == size)
    }

    /// How `name`'s stream at `size` compares with `base`'s, round by
    /// round: the two streams of a round were taken close together, and
    /// where their floors say the host kept the CPUs in one placement for
    /// both, their ratio compares the transports, not the placements. The
    /// median of those rounds' ratios (of every round's, if fewer than
    /// [`LEAST_PLACED_ROUNDS`] were); without rounds on both, the ratio of
    /// the medians.
    fn stream_ratio(&self, name: &str, base: &str, size: usize) -> Option<StreamRatio> {
        let row = self.row(name, size)?;
        let base = self.row(base, size)?;
        let (Some(t), Some(b)) = (row.throughput, base.throughput) else {
            return None;
        };
        // Paired by round; a round one of them lacks is left out.
        let rounds: Vec<(f64, bool)> = row
            .trials
            .iter()
            .filter_map(|t| {
                let b = base.trials.iter().find(|b| b.round == t.round)?;
                Some((t.msgs_per_sec / b.msgs_per_sec, t.placed_as(b)))
            })
            .collect();
        if rounds.is_empty() {
            return Some(StreamRatio {
                ratio: t.msgs_per_sec / b.msgs_per_sec,
                rounds,
            });
        }
        let of_placed = enough_placed(&rounds);
        let mut counted: Vec<f64> = rounds
            .iter()
            .filter(|r| r.1 || !of_placed)
            .map(|r| r.0)
            .collect();
        Some(StreamRatio {
            ratio: super::median(&mut counted),
            rounds,
        })
    }

    /// The floor measured with the messages of `size`.
    fn floor(&self, size: usize) -> Option<Latency> {
        self.row("floor", size).and_then(|r| r.latency)
    }

    /// The header, the two tables, the notes and the targets.
    pub fn tables(&self) -> String {
        let mut text = String::new();
        self.header(&mut text);
        self.latency_table(&mut text);
        self.throughput_table(&mut text);
        self.notes(&mut text);
        self.targets(&mut text);
        let _ = writeln!(text, "\nthe run took {}", seconds_text(self.elapsed));
        text
    }

    fn header(&self, text: &mut String) {
        let m = &self.machine;
        let sizes: Vec<String> = self.counts.iter().map(|(s, _)| size_text(*s)).collect();
        let names: Vec<&str> = self.transports.iter().map(|t| t.name()).collect();
        let mq = transports::mq_limits();
        let capacities: Vec<String> = self
            .counts
            .iter()
            .map(|(size, _)| size_text(transports::ring_capacity(*size) as usize))
            .fold(Vec::new(), |mut all, c| {
                if !all.contains(&c) {
                    all.push(c);
                }
                all
            });
        let _ = writeln!(
            text,
            "shmkit bench: {} between two processes, messages of {}",
            names.join(", "),
            sizes.join(", ")
        );
        let _ = writeln!(
            text,
            "machine:  {}, {} CPUs, {}",
            m.cpu_model, m.cpus, m.kernel
        );
        let _ = match &self.pinning {
            Pinning::Pinned { bench, peer } => writeln!(
                text,
                "pinning:  this process on CPU {bench}, each peer process on CPU {peer}"
            ),
            Pinning::Unpinned(why) => writeln!(text, "pinning:  none: {why}"),
        };
        let _ = writeln!(
            text,
            "rings:    data area {}; shmkit-spin waits with {:?}, shmkit-block with {:?} \
             (spins, then sleeps on the futex)",
            capacities.join(" or "),
            transports::ring_waiting(Transport::ShmkitSpin, self.block_spin),
            transports::ring_waiting(Transport::ShmkitBlock, self.block_spin),
        );
        let _ = writeln!(
            text,
            "          the sender sends (Producer::send: a grant, the message copied in, a \
             commit; a stream's sender fills each grant itself, the message copied in and its \
             number written in place); the receiver reads it in place, checks it and releases it"
        );
        let _ = writeln!(
            text,
            "          shmkit-batch streams as shmkit-spin with the batch verbs: each message \
             written in place into a WriteBatch, one commit for as many as fit; the receiver \
             checks them in place with drain_while, one release for all it found"
        );
        let _ = writeln!(
            text,
            "mq:       queues hold {} messages (fs.mqueue.msg_max; fewer where RLIMIT_MSGQUEUE, \
             {} bytes, says so); messages over {} bytes (fs.mqueue.msgsize_max) need the limit \
             raised, which root does while it makes a queue",
            mq.depth, mq.bytes, mq.max_message
        );
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(size, c)| {
                let stream = match c.stream {
                    Length::Messages(n) => format!("{} messages", count_text(n)),
                    Length::Time(time) => seconds_text(time),
                };
                format!(
                    "{}: {} each way + {} + {} round trips; {} + {stream}",
                    size_text(*size),
                    count_text(c.prime),
                    count_text(c.warmup_round_trips),
                    count_text(c.round_trips),
                    count_text(c.warmup_streamed),
                )
            })
            .collect();
        let _ = writeln!(
            text,
            "messages: ping-pong: streamed each way + warm-up + measured round trips; \
             stream: a short floor, warm-up + measured time, a short floor, in {} rounds of every transport in \
             turn, each between a fresh pair of processes (the median shown)\n          {}",
            super::STREAM_TRIALS,
            counts.join("\n          ")
        );
        let _ = writeln!(
            text,
            "checks:   every receiver checks each message's sequence number and a checksum of \
             all its bytes"
        );
    }

    fn latency_table(&self, text: &mut String) {
        let mut table = Table::new(&[
            "transport",
            "size",
            "p50",
            "p99",
            "p99.9",
            "p50÷pipe",
            "p50÷floor",
        ]);
        for (size, _) in &self.counts {
            table.gap();
            let floor = self.floor(*size);
            let pipe = self.row("pipe", *size).and_then(|r| r.latency);
            let names = ["floor"]
                .into_iter()
                .chain(self.transports.iter().map(|t| t.name()));
            for name in names {
                let Some(row) = self.row(name, *size) else {
                    continue;
                };
                let Some(l) = row.latency else {
                    table.row(not_measured(row));
                    continue;
                };
                let is_floor = name == "floor";
                table.row(vec![
                    if is_floor {
                        "floor (cache line)".to_owned()
                    } else {
                        name.to_owned()
                    },
                    size_text(*size),
                    nanos_text(l.p50),
                    nanos_text(l.p99),
                    nanos_text(l.p999),
                    pipe.filter(|_| !is_floor)
                        .map_or_else(dash, |p| ratio(l.p50 as f64, p.p50 as f64)),
                    row.floor
                        .or(floor)
                        .map_or_else(dash, |f| ratio(l.p50 as f64, f.p50 as f64)),
                ]);
            }
        }
        let _ = writeln!(
            text,
            "\nround-trip latency (ping-pong: one message there and back, percentiles)\n\
             the floor bounces one cache line between the two processes; each ping-pong's \
             p50÷floor is to the floor the same\nprocesses measured just before it (the host \
             moves the CPUs, which changes it), and the floor row shows the lowest of them"
        );
        text.push_str(&table.render());
    }

    fn throughput_table(&self, text: &mut String) {
        let mut table = Table::new(&[
            "transport",
            "size",
            "msgs/s",
            "bytes/s",
            "÷pipe",
            "÷memcpy",
            "floors",
        ]);
        for (size, _) in &self.counts {
            table.gap();
            let pipe = self.row("pipe", *size).and_then(|r| r.throughput);
            let memcpy = self.row("memcpy", *size).and_then(|r| r.throughput);
            if let Some(m) = memcpy {
                table.row(vec![
                    "memcpy (1 process)".to_owned(),
                    size_text(*size),
                    rate_text(m.msgs_per_sec),
                    bytes_rate_text(m.bytes_per_sec),
                    pipe.map_or_else(dash, |p| ratio(m.bytes_per_sec, p.bytes_per_sec)),
                    "100%".to_owned(),
                    dash(),
                ]);
            }
            for transport in &self.transports {
                let Some(row) = self.row(transport.name(), *size) else {
                    continue;
                };
                let Some(t) = row.throughput else {
                    table.row(not_measured(row));
                    continue;
                };
                table.row(vec![
                    row.name.to_owned(),
                    size_text(*size),
                    rate_text(t.msgs_per_sec),
                    bytes_rate_text(t.bytes_per_sec),
                    pipe.map_or_else(dash, |p| ratio(t.bytes_per_sec, p.bytes_per_sec)),
                    memcpy.map_or_else(dash, |m| {
                        format!("{:.1}%", 100.0 * t.bytes_per_sec / m.bytes_per_sec)
                    }),
                    floors_text(&row.trials),
                ]);
            }
        }
        let _ = writeln!(
            text,
            "\none-way streaming throughput (the receiver's count over its elapsed time, the \
             median of {} streams, one a round; bytes/s in 10^6 and 10^9)\n\
             floors: the lowest and highest cache-line floor measured before and after the \
             streams, by their processes (where the host had put the CPUs)",
            super::STREAM_TRIALS
        );
        text.push_str(&table.render());
    }

    fn notes(&self, text: &mut String) {
        let notes: Vec<String> = self
            .rows
            .iter()
            .flat_map(|row| {
                row.notes
                    .iter()
                    .map(|note| format!("  {} at {}, {note}", row.name, size_text(row.size)))
            })
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(text, "\nnot measured:");
            for note in notes {
                let _ = writeln!(text, "{note}");
            }
        }
    }

    /// The targets of issue 14 for the ring, where the run measured what
    /// they need.
    fn targets(&self, text: &mut String) {
        let latency = |name: &str, size: usize| self.row(name, size).and_then(|r| r.latency);
        let throughput = |name: &str, size: usize| self.row(name, size).and_then(|r| r.throughput);
        let mut lines: Vec<(String, String, bool)> = Vec::new();
        let spin = latency("shmkit-spin", 64);
        let spin_floor = self
            .row("shmkit-spin", 64)
            .and_then(|r| r.floor)
            .or(self.floor(64));
        if let (Some(spin), Some(floor)) = (spin, spin_floor) {
            let r = spin.p50 as f64 / floor.p50 as f64;
            lines.push((
                "shmkit-spin 64 B round trip p50 at most 1.5x the floor".to_owned(),
                format!(
                    "{} the floor ({} vs {})",
                    ratio(spin.p50 as f64, floor.p50 as f64),
                    nanos_text(spin.p50),
                    nanos_text(floor.p50)
                ),
                r <= 1.5,
            ));
        }
        if let (Some(block), Some(spin)) = (latency("shmkit-block", 64), spin) {
            let r = block.p50 as f64 / spin.p50 as f64;
            lines.push((
                "shmkit-block 64 B round trip p50 at most 1.2x shmkit-spin".to_owned(),
                format!("{} shmkit-spin", ratio(block.p50 as f64, spin.p50 as f64)),
                r <= 1.2,
            ));
        }
        for (size, least) in [(8, 100e6), (64, 60e6)] {
            if let Some(t) = throughput("shmkit-batch", size) {
                lines.push((
                    format!(
                        "shmkit-batch {} stream at least {} msgs/s",
                        size_text(size),
                        rate_text(least)
                    ),
                    format!("{} msgs/s", rate_text(t.msgs_per_sec)),
                    t.msgs_per_sec >= least,
                ));
            }
        }
        if let (Some(t), Some(m)) = (
            throughput("shmkit-spin", 65536),
            throughput("memcpy", 65536),
        ) {
            let r = t.bytes_per_sec / m.bytes_per_sec;
            // The same stream against the bare slots, round by round: its
            // share of what the host moves between its CPUs at all.
            let bare = self
                .stream_ratio("shmkit-spin", "bare-slots", 65536)
                .map_or_else(String::new, |b| format!("; {b} of bare-slots"));
            lines.push((
                "shmkit-spin 64 KiB stream (zero-copy grants) at least 60% of memcpy".to_owned(),
                format!("{:.1}%{bare}", 100.0 * r),
                r >= 0.6,
            ));
        }
        for size in [8, 64, 1024, 65536] {
            if let Some(r) = self.stream_ratio("shmkit-block", "shmkit-spin", size) {
                lines.push((
                    format!(
                        "shmkit-block {} stream at least 90% of shmkit-spin",
                        size_text(size)
                    ),
                    r.to_string(),
                    r.ratio >= 0.9,
                ));
            }
        }
        if let (Some(aio), Some(block)) = (latency("shmkit-async", 64), latency("shmkit-block", 64))
        {
            let r = aio.p50 as f64 / block.p50 as f64;
            lines.push((
                "shmkit-async 64 B round trip p50 at most 2x shmkit-block's".to_owned(),
                format!("{} shmkit-block", ratio(aio.p50 as f64, block.p50 as f64)),
                r <= 2.0,
            ));
        }
        if let Some(r) = self.stream_ratio("shmkit-async", "shmkit-block", 64) {
            lines.push((
                "shmkit-async 64 B stream at least 80% of shmkit-block".to_owned(),
                r.to_string(),
                r.ratio >= 0.8,
            ));
        }
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(
            text,
            "\ntargets (from the issues; benchmarks, not tests)\n\
             a stream against another transport's is the median of the two's ratios round by \
             round, of the rounds whose two streams met one placement of the CPUs (their floors \
             within {SAME_PLACEMENT}x; * marks a round left out), or of all rounds if fewer \
             than {LEAST_PLACED_ROUNDS} did"
        );
        let mut table = Table::new(&["target", "measured", ""]);
        for (target, measured, met) in lines {
            table.row(vec![
                target,
                measured,
                if met { "met" } else { "MISSED" }.to_owned(),
            ]);
        }
        text.push_str(&table.render());
    }
}

/// A row that says a transport was not measured at a size.
fn not_measured(row: &Row) -> Vec<String> {
    vec![
        row.name.to_owned(),
        size_text(row.size),
        "not measured (see below)".to_owned(),
    ]
}

/// As a percentage, with the rounds' own and a `*` on those left out:
/// `93.4% (rounds 88.1, 93.4, 42.0*, 95.2, 99.0%)`; or, with too few rounds
/// under one placement, `80.0% (all rounds, too few under one placement:
/// 50.0, 80.0, 90.0%)`.
impl fmt::Display for StreamRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}%", 100.0 * self.ratio)?;
        if self.rounds.is_empty() {
            return Ok(());
        }
        let of_placed = self.of_placed();
        let each: Vec<String> = self
            .rounds
            .iter()
            .map(|&(r, placed)| {
                let left_out = of_placed && !placed;
                format!("{:.1}{}", 100.0 * r, if left_out { "*" } else { "" })
            })
            .collect();
        if of_placed {
            write!(f, " (rounds {}%)", each.join(", "))
        } else {
            write!(
                f,
                " (all rounds, too few under one placement: {}%)",
                each.join(", ")
            )
        }
    }
}

/// The lowest and highest floor of `trials`: `55-210 ns`, or `-`.
fn floors_text(trials: &[Trial]) -> String {
    match floor_span(trials.iter().flat_map(|t| t.floors)) {
        Some((low, high)) if low == high => nanos_text(low),
        Some((low, high)) if high < 1000 => format!("{low}-{high} ns"),
        Some((low, high)) => format!("{}-{}", nanos_text(low), nanos_text(high)),
        None => dash(),
    }
}

fn dash() -> String {
    "-".to_owned()
}

/// `a / b` with three significant digits and a `x`.
fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return dash();
    }
    format!("{}x", significant(a / b))
}

/// Three significant digits (more left of the point if there are).
fn significant(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else if x >= 0.01 {
        format!("{x:.3}")
    } else if x >= 0.001 {
        format!("{x:.4}")
    } else {
        format!("{x:.1e}")
    }
}

/// 8 B, 1000 B, 1 KiB, 64 KiB, 1 MiB.
pub fn size_text(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// 950 ns, 12.3 µs, 1.23 ms, 1.23 s.
fn nanos_text(nanos: u64) -> String {
    let n = nanos as f64;
    if nanos < 1_000 {
        format!("{nanos} ns")
    } else if nanos < 1_000_000 {
        format!("{} µs", significant(n / 1e3))
    } else if nanos < 1_000_000_000 {
        format!("{} ms", significant(n / 1e6))
    } else {
        format!("{} s", significant(n / 1e9))
    }
}

/// 950, 12.3 k, 1.23 M, 1.23 G.
fn rate_text(rate: f64) -> String {
    if rate < 1e3 {
        format!("{rate:.0}")
    } else if rate < 1e6 {
        format!("{} k", significant(rate / 1e3))
    } else if rate < 1e9 {
        format!("{} M", significant(rate / 1e6))
    } else {
        format!("{} G", significant(rate / 1e9))
    }
}

/// 950 B/s, 12.3 kB/s, 1.23 MB/s, 1.23 GB/s (powers of 10).
fn bytes_rate_text(rate: f64) -> String {
    if rate < 1e3 {
        format!("{rate:.0} B/s")
    } else if rate < 1e6 {
        format!("{} kB/s", significant(rate / 1e3))
    } else if rate < 1e9 {
        format!("{} MB/s", significant(rate / 1e6))
    } else {
        format!("{} GB/s", significant(rate / 1e9))
    }
}

/// 500, 10k, 2M: counts as the header shows them.
fn count_text(count: u64) -> String {
    if count >= 1_000_000 && count.is_multiple_of(1_000_000) {
        format!("{}M", count / 1_000_000)
    } else if count >= 1_000 && count.is_multiple_of(1_000) {
        format!("{}k", count / 1_000)
    } else {
        count.to_string()
    }
}

fn seconds_text(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{} min {:.0} s", (seconds / 60.0) as u64, seconds % 60.0)
    }
}

/// A text table: the first two columns left-aligned, the rest right.
struct Table {
    header: Vec<String>,
    rows: Vec<Option<Vec<String>>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Some(cells));
    }

    /// A blank line, between groups of rows (none before the first row).
    fn gap(&mut self) {
        if !self.rows.is_empty() {
            self.rows.push(None);
        }
    }

    fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for cells in self.rows.iter().flatten() {
            // A short row's last cell may run over the rest.
            if cells.len() < columns {
                continue;
            }
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                let last_short = cells.len() < columns && i == cells.len() - 1;
                if i < 2 || last_short {
                    out.push_str(cell);
                    if i + 1 < cells.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                } else {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.header);
        for cells in &self.rows {
            match cells {
                Some(cells) => out.push_str(&line(cells)),
                None => out.push('\n'),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(size_text(8), "8 B");
        assert_eq!(size_text(1000), "1000 B");
        assert_eq!(size_text(1024), "1 KiB");
        assert_eq!(size_text(65536), "64 KiB");
        assert_eq!(size_text(1 << 20), "1 MiB");
        assert_eq!(nanos_text(950), "950 ns");
        assert_eq!(nanos_text(12_345), "12.3 µs");
        assert_eq!(nanos_text(1_234_567), "1.23 ms");
        assert_eq!(rate_text(31_200_000.0), "31.2 M");
        assert_eq!(bytes_rate_text(2.5e9), "2.50 GB/s");
        assert_eq!(ratio(1.0, 25.0), "0.040x");
        assert_eq!(ratio(50.0, 2.0), "25.0x");
        assert_eq!(count_text(100_000), "100k");
        assert_eq!(count_text(2_000_000), "2M");
        assert_eq!(count_text(1_234), "1234");
    }

    fn report_of(rows: Vec<Row>) -> Report {
        Report {
            machine: crate::machine::Machine {
                cpu_model: "test".to_owned(),
                cpus: 2,
                kernel: "test".to_owned(),
            },
            pinning: crate::machine::Pinning::Unpinned("test".to_owned()),
            block_spin: None,
            counts: Vec::new(),
            transports: Vec::new(),
            rows,
            elapsed: Duration::ZERO,
        }
    }

    fn streamed(name: &'static str, rates: &[f64], floors: &[[u64; 2]]) -> Row {
        let mut row = Row::new(name, 64);
        for (round, (&msgs_per_sec, &floors)) in rates.iter().zip(floors).enumerate() {
            row = row.with_trial(Trial {
                round,
                msgs_per_sec,
                floors,
            });
        }
        row.settle_throughput();
        row
    }

    #[test]
    fn a_stream_target_pairs_the_rounds_under_one_placement() {
        // Rounds 1 and 4 found the CPUs far apart for both, round 5 for
        // shmkit-block alone: the medians (70 M and 30 M) were taken under
        // different placements; the ratios of rounds 1-4 were not.
        let spin = streamed(
            "shmkit-spin",
            &[30e6, 70e6, 70e6, 30e6, 72e6],
            &[[200, 205], [55, 56], [55, 54], [210, 200], [56, 57]],
        );
        let block = streamed(
            "shmkit-block",
            &[29e6, 66e6, 68e6, 28e6, 30e6],
            &[[205, 200], [57, 55], [54, 56], [200, 215], [230, 240]],
        );
        assert_eq!(spin.throughput.map(|t| t.msgs_per_sec), Some(70e6));
        assert_eq!(block.throughput.map(|t| t.msgs_per_sec), Some(30e6));
        assert_eq!(floors_text(&spin.trials), "54-210 ns");
        let report = report_of(vec![spin, block]);
        let r = report
            .stream_ratio("shmkit-block", "shmkit-spin", 64)
            .expect("both streamed");
        let placed: Vec<bool> = r.rounds.iter().map(|r| r.1).collect();
        assert_eq!(placed, [true, true, true, true, false]);
        // The median of four: the mean of the middle two.
        let middle = (66.0 / 70.0 + 29.0 / 30.0) / 2.0;
        assert!((r.ratio - middle).abs() < 1e-9, "{r:?}");
        let mut text = String::new();
        report.targets(&mut text);
        assert!(
            text.contains("95.5% (rounds 96.7, 94.3, 97.1, 93.3, 41.7*%)"),
            "{text}"
        );
        assert!(!text.contains("MISSED"), "{text}");
    }

    #[test]
    fn a_stream_the_cpus_moved_under_shares_no_placement() {
        let at = |floors| Trial {
            round: 0,
            msgs_per_sec: 1.0,
            floors,
        };
        assert!(at([200, 290]).placed_as(&at([250, 260])));
        // The CPUs moved during the stream, or between the two streams.
        assert!(!at([200, 56]).placed_as(&at([200, 210])));
        assert!(!at([56, 57]).placed_as(&at([200, 210])));
        assert!(!at([200, 310]).placed_as(&at([200, 210])));
    }

    #[test]
    fn one_round_under_one_placement_is_too_few_to_decide() {
        let spin = streamed("shmkit-spin", &[10.0, 10.0, 10.0], &[[55, 55]; 3]);
        let block = streamed(
            "shmkit-block",
            &[5.0, 8.0, 9.0],
            &[[55, 56], [200, 200], [55, 300]],
        );
        let report = report_of(vec![spin, block]);
        let r = report
            .stream_ratio("shmkit-block", "shmkit-spin", 64)
            .expect("both");
        assert_eq!(r.rounds.iter().filter(|r| r.1).count(), 1);
        assert!((r.ratio - 0.8).abs() < 1e-9, "{r:?}");
        assert!(r.to_string().contains("all rounds"), "{r}");
    }

    #[test]
    fn rounds_pair_by_their_number() {
        let spin = streamed("shmkit-spin", &[10.0, 20.0, 30.0], &[[55, 55]; 3]);
        let mut block = streamed("shmkit-block", &[9.0, 18.0, 27.0], &[[55, 55]; 3]);
        // Round 1 of shmkit-block is missing: rounds 0 and 2 pair.
        block.trials.remove(1);
        let report = report_of(vec![spin, block]);
        let r = report
            .stream_ratio("shmkit-block", "shmkit-spin", 64)
            .expect("both");
        assert_eq!(r.rounds, [(0.9, true), (0.9, true)]);
    }

    #[test]
    fn with_no_round_under_one_placement_every_round_counts() {
        let spin = streamed(
            "shmkit-spin",
            &[10.0, 10.0, 10.0],
            &[[55, 55], [55, 55], [55, 55]],
        );
        let block = streamed(
            "shmkit-block",
            &[5.0, 8.0, 9.0],
            &[[200, 200], [200, 200], [55, 300]],
        );
        let report = report_of(vec![spin, block]);
        let r = report
            .stream_ratio("shmkit-block", "shmkit-spin", 64)
            .expect("both");
        assert!(r.rounds.iter().all(|r| !r.1), "{r:?}");
        assert!((r.ratio - 0.8).abs() < 1e-9, "{r:?}");
        assert_eq!(
            r.to_string(),
            "80.0% (all rounds, too few under one placement: 50.0, 80.0, 90.0%)"
        );
    }

    #[test]
    fn without_rounds_a_stream_target_divides_the_medians() {
        let mut spin = Row::new("shmkit-spin", 64);
        spin.throughput = Some(Throughput {
            msgs_per_sec: 50e6,
            bytes_per_sec: 64.0 * 50e6,
        });
        let mut block = spin.clone();
        block.name = "shmkit-block";
        block.throughput = Some(Throughput {
            msgs_per_sec: 40e6,
            bytes_per_sec: 64.0 * 40e6,
        });
        let report = report_of(vec![spin, block]);
        let mut text = String::new();
        report.targets(&mut text);
        assert!(text.contains("80.0%") && text.contains("MISSED"), "{text}");
    }

    #[test]
    fn targets_round_ratios_as_the_tables_do() {
        let latency = |p50| {
            Some(Latency {
                p50,
                p99: p50,
                p999: p50,
            })
        };
        let mut floor = Row::new("floor", 64);
        floor.latency = latency(30);
        let mut spin = Row::new("shmkit-spin", 64);
        spin.latency = latency(1000);
        spin.floor = latency(30);
        let mut block = Row::new("shmkit-block", 64);
        block.latency = latency(1234);
        let report = Report {
            machine: crate::machine::Machine {
                cpu_model: "test".to_owned(),
                cpus: 2,
                kernel: "test".to_owned(),
            },
            pinning: crate::machine::Pinning::Unpinned("test".to_owned()),
            block_spin: None,
            counts: Vec::new(),
            transports: Vec::new(),
            rows: vec![floor, spin, block],
            elapsed: Duration::ZERO,
        };
        let mut text = String::new();
        report.targets(&mut text);
        // The latency table shows these ratios with ratio(): three digits.
        assert_eq!(ratio(1000.0, 30.0), "33.3x");
        assert!(
            text.contains("33.3x the floor (1.00 µs vs 30 ns)"),
            "{text}"
        );
        assert_eq!(ratio(1234.0, 1000.0), "1.23x");
        assert!(text.contains("1.23x shmkit-spin"), "{text}");
    }
}
