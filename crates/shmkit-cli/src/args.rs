//! The command line: the subcommands, their arguments, and the parsers for
//! sizes, modes and keys.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shmkit::{ring, service, topic, Key};

use crate::error::CliError;

/// What KEY and NAME are, a paragraph each: the end of `shmkit --help`,
/// and the section KEYS AND NAMES of shmkit(1).
pub const KEYS_AND_NAMES: [&str; 2] = [
    "KEY names a segment: a System V key in decimal or 0x hex (as `ipcs -m` shows \
     it), ftok:PATH:PROJ, or a POSIX name beginning with / (a file in /dev/shm). \
     `--id ID` selects a System V segment by its id instead.",
    "NAME names a message ring: 1 to 200 letters, digits, '-', '_' or '.', not \
     starting with '.'. Its segment is the POSIX segment /shmkit.ring.NAME. `send` \
     and `recv` create the ring if it does not exist, so either may start first; \
     the ring removes itself when both have left after the producer closed it and \
     the consumer read everything.",
];

/// Each exit status and what it means: the end of `shmkit --help`, and the
/// section EXIT STATUS of shmkit(1).
pub const EXIT_STATUS: [(&str, &str); 3] = [
    (
        "0",
        "success, also when standard output is closed early (e.g. by `head`)",
    ),
    (
        "1",
        "the operation failed: no such segment, permission denied, out of bounds, \
         peer gone, timed out, ...",
    ),
    (
        "2",
        "the command line is wrong: unknown option, bad number, malformed KEY",
    ),
];

/// The text after the options in `shmkit --help`: [`KEYS_AND_NAMES`], then
/// [`EXIT_STATUS`].
fn after_help() -> String {
    let mut text = KEYS_AND_NAMES.join("\n\n");
    text.push_str("\n\nExit status:");
    for (code, meaning) in EXIT_STATUS {
        text.push_str(&format!("\n  {code}  {meaning}"));
    }
    text
}

/// `shmkit`: the whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "shmkit",
    version,
    about = "Inspect and use shared memory (System V and POSIX) from the shell",
    after_help = after_help(),
    // Our own `help` subcommand, so that `shmkit help --help` works too.
    disable_help_subcommand = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every shared-memory segment, System V and POSIX (like `ipcs -m`), then the message rings
    ///
    /// The columns are KIND KEY ID OWNER PERMS BYTES NATTCH STATUS unless
    /// --output names others; --pids, --times and --creator add columns
    /// as `ipcs -p`, `-t` and `-c` show them. --limits and --summary print
    /// the system's limits (`ipcs -l`) and the totals (`ipcs -u`) instead.
    Ls(LsArgs),
    /// Show everything known about one segment and the processes attached to it (and the ring, topic or service in it, if any)
    Stat {
        #[command(flatten)]
        target: StatTarget,
        /// Print one JSON object (see docs/JSON.md): times in seconds since
        /// the epoch, or null; "ring", "topic" and "service" are the status of
        /// the ring, topic or service in the segment, or null if it holds none
        #[arg(long)]
        json: bool,
    },
    /// Create a segment, or open it if the key exists; print its id (System V) or name (POSIX)
    Create {
        /// 0x1234, 4660, ftok:PATH:PROJ, /name, or `private` (also IPC_PRIVATE
        /// or 0) for a new System V segment reachable only by its id
        #[arg(value_name = "KEY", allow_negative_numbers = true)]
        key: String,
        /// Size in bytes; a K, M or G suffix multiplies by 1024, 1024² or 1024³
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        size: u64,
        /// Permission bits, in octal [default: 600]. An existing segment
        /// keeps its mode: create then says so on standard error
        #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
        mode: Option<u32>,
        /// Fail if the key already names a segment
        #[arg(long)]
        exclusive: bool,
    },
    /// Remove segments; each one's memory is freed when its last process detaches
    ///
    /// Every segment that cannot be removed is reported, one line each, and
    /// the others are removed all the same (exit status 1 if any failed).
    #[command(override_usage = "shmkit rm [-v] <KEY>... [--id <ID>]...\n       \
                                shmkit rm [-v] --all [--kind <KIND>] [--owner <USER>] [--prefix <PREFIX>]")]
    Rm(RmArgs),
    /// Copy standard input into a segment; nothing is written unless all of it fits
    ///
    /// Standard input is streamed: a file is checked against the room first;
    /// a pipe is spooled to an unlinked temporary file (in $TMPDIR, else
    /// /tmp) until it is known to fit, so memory use stays small whatever
    /// the input's size.
    Write {
        #[command(flatten)]
        target: Target,
        /// Where in the segment the data starts
        #[arg(long, value_name = "N", default_value = "0", value_parser = parse_size)]
        offset: u64,
    },
    /// Copy bytes of a segment to standard output
    Read {
        #[command(flatten)]
        target: Target,
        /// The first byte to copy
        #[arg(long, value_name = "N", default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// How many bytes to copy [default: to the end of the segment]
        #[arg(long, value_name = "N", value_parser = parse_size)]
        len: Option<u64>,
    },
    /// Send standard input into message ring NAME as its producer, one message per line
    ///
    /// Each line of standard input becomes one message, without its newline
    /// (a last line without a newline is sent too). At the end of the input
    /// the ring is closed: the consumer gets every message, then the end.
    /// Waits while the ring is full; fails if the consumer dies or leaves
    /// meanwhile (unless --wait-for-consumer). A line longer than the
    /// largest message (or --timeout) is an error: the lines before it are
    /// sent, and the ring is left unfinished, so the consumer gets them,
    /// then fails with "peer gone". SIGINT, SIGTERM and SIGHUP close the
    /// ring cleanly.
    Send {
        /// The ring's name (its segment is /shmkit.ring.NAME)
        #[arg(value_name = "NAME")]
        name: String,
        /// Size of the ring's data area: a power of two from 4K; the
        /// largest message is about half of it. A K, M or G suffix
        /// multiplies by 1024, 1024² or 1024³. An existing ring of another
        /// size is an error [default: 1M, or the existing ring's]
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        capacity: Option<u64>,
        /// Fail (exit 1) if waiting for room in the ring takes longer than
        /// SECS (a decimal number)
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// When the consumer has left a full ring, wait for a new one
        /// instead of failing
        #[arg(long)]
        wait_for_consumer: bool,
        /// Send standard input as it comes, in chunks of up to the largest
        /// message, instead of line by line (use with `recv --raw`)
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Receive messages from ring NAME as its consumer and print each on its own line
    ///
    /// Writes each message followed by a newline (with --raw: nothing
    /// between messages) until the producer closes the ring, then exits 0.
    /// Fails with "peer gone" if the producer died or failed, after
    /// printing every message it sent. Output is written in blocks, and whenever the ring
    /// is empty. Until a producer comes, recv looks for one every 20 ms at
    /// first, then less often, down to twice a second. When recv exits early (--count, --timeout, a signal), a
    /// ring that still has a producer or unread messages stays for the
    /// next consumer; one with neither is removed. SIGINT, SIGTERM and
    /// SIGHUP end recv cleanly.
    Recv {
        /// The ring's name (its segment is /shmkit.ring.NAME)
        #[arg(value_name = "NAME")]
        name: String,
        /// Size of the ring's data area (see `send`)
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        capacity: Option<u64>,
        /// Exit after N messages, leaving the rest in the ring for the next consumer
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Fail (exit 1) if waiting for a message takes longer than SECS (a decimal number)
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Write messages exactly as they are, with nothing after each
        /// (`send --raw | recv --raw` copies bytes unchanged)
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Publish standard input to topic TOPIC, one message per line
    ///
    /// Each line becomes one message (without its newline) that every
    /// subscriber receives. At the end of the input this publisher closes
    /// its part of the stream; if it fails first (a line longer than a
    /// lane takes), the lines before it were sent, and a live subscriber
    /// gets them, then fails with "peer gone". The topic is created if
    /// needed, with --lossy, --history and --capacity; given for an
    /// existing topic, they must match it. A Block topic (the default)
    /// waits for its slowest live subscriber.
    Pub {
        /// The topic's name (its segment is /shmkit.topic.TOPIC)
        #[arg(value_name = "TOPIC")]
        name: String,
        /// Never wait: overwrite the oldest messages; slow subscribers are
        /// told how many they missed
        #[arg(long)]
        lossy: bool,
        /// Keep the last N messages of each publisher for subscribers that
        /// join late [default: 0, or the existing topic's]
        #[arg(long, value_name = "N")]
        history: Option<u32>,
        /// Bytes of each publisher's lane: a power of two from 4K (K, M, G
        /// suffixes) [default: 256K, or the existing topic's]
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        capacity: Option<u64>,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Print each message of topic TOPIC on its own line
    ///
    /// Starts with the retained history when the topic keeps one. Exits 0
    /// once at least one publisher has opened the topic and every publisher
    /// has closed; fails with "peer gone" after the messages of a publisher
    /// that died or failed. On a lossy topic, `shmkit: missed N messages`
    /// on standard error says how many were overwritten before they were
    /// read. Until a publisher comes, sub looks for one every 20 ms at
    /// first, then less often, down to twice a second.
    Sub {
        /// The topic's name (its segment is /shmkit.topic.TOPIC)
        #[arg(value_name = "TOPIC")]
        name: String,
        /// Exit after N messages
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Fail (exit 1) if waiting for a message takes longer than SECS
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Skip the retained history: only messages published from now on
        #[arg(long)]
        no_history: bool,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Carry topic TOPIC between machines over zenoh (feature `bridge`)
    ///
    /// Puts the messages of this host's publishers on the zenoh key
    /// shmkit/TOPIC and republishes into TOPIC what other hosts' bridges put
    /// there, each remote publisher through a local publisher of its own
    /// (marked as a bridge relay by `shmkit stat`). Zenoh runs in peer mode
    /// with multicast scouting off: give each bridge the endpoints to listen
    /// on and to connect to. Runs until SIGINT, SIGTERM or SIGHUP; reports
    /// what happens on standard error.
    #[cfg(feature = "bridge")]
    Bridge {
        /// The topic's name (its segment is /shmkit.topic.TOPIC)
        #[arg(value_name = "TOPIC")]
        name: String,
        /// Accept other bridges at ENDPOINT, e.g. tcp/10.0.0.1:7447 (repeatable)
        #[arg(long, value_name = "ENDPOINT")]
        listen: Vec<String>,
        /// Connect to a bridge listening at ENDPOINT, retrying until it
        /// answers (repeatable)
        #[arg(long, value_name = "ENDPOINT")]
        connect: Vec<String>,
        /// Never wait, overwrite the oldest messages (of a topic this
        /// creates; an existing topic must be lossy already)
        #[arg(long)]
        lossy: bool,
    },
    /// Serve requests of service NAME with COMMAND, one line each way
    ///
    /// Runs COMMAND once. Each request becomes one line of its standard
    /// input (a newline inside a request becomes a space), and the next
    /// line of its standard output is the response, so COMMAND must answer
    /// every line with one line and flush it (`sed -u`, `grep
    /// --line-buffered`). If COMMAND exits or closes its output, serve
    /// closes the service (pending calls fail) and exits 1. The service is
    /// created if needed. Example: `shmkit serve upper -- sed -u 's/.*/\U&/'`.
    Serve {
        /// The service's name (its segment is /shmkit.service.NAME)
        #[arg(value_name = "NAME")]
        name: String,
        /// The command and its arguments, after --
        #[arg(value_name = "COMMAND", last = true, required = true)]
        command: Vec<String>,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Call service NAME with each REQUEST, or each line of standard input, and print each response on its own line
    ///
    /// Calls one at a time, in order. Fails (exit 1) if the server dies or
    /// closes before it answers, or with --timeout if an answer takes
    /// longer. With no server yet, a call waits for one, looking every
    /// 20 ms at first, then less often, down to twice a second.
    Call {
        /// The service's name (its segment is /shmkit.service.NAME)
        #[arg(value_name = "NAME")]
        name: String,
        /// The requests [default: each line of standard input]
        #[arg(value_name = "REQUEST")]
        requests: Vec<String>,
        /// Fail (exit 1) if a call takes longer than SECS
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// List rings, topics and services nobody will use, and with --force remove them
    ///
    /// A ring is garbage when no live process holds an end of it or has it
    /// mapped, and either a process that held an end died without leaving
    /// (abandoned), nothing is left in it to read (finished), its creator
    /// died before initialising it (half-made), or its header is corrupt.
    /// A topic or a service is garbage on the same grounds when no live
    /// process is a member of it or maps it. Each is listed with its reason. Without --force nothing is removed.
    Gc {
        /// Only these rings, topics or services [default: all of them]
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Remove them instead of only listing them
        #[arg(long)]
        force: bool,
    },
    /// A live view of every segment, ring, topic and service on the machine, refreshed every second
    ///
    /// Shows each object's kind, name, size, resident bytes, attachers,
    /// messages and bytes per second (from the counters in each ring's,
    /// topic's and service's header, sampled without joining and without locks), fill
    /// level (a topic's: its worst subscriber's lag) and state; a dead
    /// member is marked. Keys: q quits; / filters by
    /// name; n, k, s, r, a, m, b, f sort by name, kind, size, resident,
    /// attachers, messages/s, bytes/s, fill (again: reverse); space
    /// refreshes now. As a user who may not read some objects, it shows
    /// the rest and says which it could not read.
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    ///
    /// bash: `shmkit completions bash > ~/.local/share/bash-completion/completions/shmkit`;
    /// zsh: `shmkit completions zsh > ~/.zfunc/_shmkit` (with ~/.zfunc in
    /// $fpath); fish: `shmkit completions fish > ~/.config/fish/completions/shmkit.fish`.
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page shmkit(1) in roff, or with --dir write it and a page per subcommand
    ///
    /// `shmkit man | man -l -` reads it; `shmkit man --dir ~/.local/share/man/man1`
    /// installs shmkit.1, shmkit-ls.1, ….
    Man {
        /// Write shmkit.1 and shmkit-SUBCOMMAND.1 into this directory instead
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Print the help of shmkit or of its subcommands
    Help {
        /// The subcommand (and its subcommands) to explain
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Show, step by step, two processes sharing a System V segment, then
    /// two more streaming messages through a ring
    Demo {
        /// How many 64-byte messages the ring part streams
        #[arg(long, value_name = "N", default_value = "2000000")]
        messages: u64,
    },
    /// Measure rings, topics, services and async rings against pipes, sockets, message queues and iceoryx2 between two processes
    ///
    /// For each transport and payload size, two processes (this one and a
    /// copy of it, pinned to different CPUs when there are two) measure the
    /// round trip by ping-pong (p50, p99 and p99.9 of an HDR histogram) and
    /// the throughput of a one-way stream, whose receiver checks every
    /// message's sequence number and checksum: a lost, reordered or damaged
    /// message fails the run. The same run measures the references: a cache
    /// line bounced between the processes (the latency floor) and memcpy in
    /// one process (the throughput ceiling). Progress goes to standard error.
    Bench(shmkit_bench::BenchArgs),
    /// A peer process of `shmkit bench` (not for direct use)
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer {
        /// What to do, as JSON
        #[arg(long)]
        job: String,
    },
    /// The child process of `shmkit demo` (not for direct use)
    #[command(name = "__demo-child", hide = true)]
    DemoChild {
        /// The segment the parent created
        #[arg(long)]
        id: i32,
    },
    /// The producer process of `shmkit demo` (not for direct use)
    #[command(name = "__demo-producer", hide = true)]
    DemoProducer {
        /// The ring's name
        #[arg(long)]
        ring: String,
        /// How many messages to send
        #[arg(long)]
        messages: u64,
    },
    /// The consumer process of `shmkit demo` (not for direct use)
    #[command(name = "__demo-consumer", hide = true)]
    DemoConsumer {
        /// The ring's name
        #[arg(long)]
        ring: String,
        /// How many messages to expect
        #[arg(long)]
        messages: u64,
    },
}

/// Who may use a ring, topic or service that the command creates, and
/// whose existing ones it joins (docs/SECURITY.md).
#[derive(Debug, Args)]
pub struct Sharing {
    /// Permission bits of the segment (the ring's, topic's or service's), in
    /// octal; 660 with --group shares it with a group. It applies when this
    /// command creates it; an existing ring, topic or service of another
    /// mode is an error
    /// [default: 600, or the existing one's]
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Group of the segment if this command creates it: a group name or gid
    /// you are a member of
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    pub group: Option<u32>,
    /// Also join an existing ring, topic or service owned by USER (a name or
    /// uid), or whose group is GROUP (group:NAME or group:GID); repeatable.
    /// Without it only those of your own uid are joined, so that another
    /// user cannot take the name first and read or forge your messages
    #[arg(long, value_name = "USER|group:GROUP", value_parser = parse_trusted)]
    pub trust: Vec<Trusted>,
}

/// An owner named by `--trust`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trusted {
    /// A uid.
    User(u32),
    /// A gid.
    Group(u32),
}

/// Parses `--trust`: a user name or uid, or `group:` and a group name or gid.
pub fn parse_trusted(text: &str) -> Result<Trusted, String> {
    let names = crate::users::Names::load();
    match text.strip_prefix("group:") {
        Some(group) => parse_group(group).map(Trusted::Group),
        None => text
            .parse()
            .ok()
            .or_else(|| names.uid_of(text))
            .map(Trusted::User)
            .ok_or_else(|| format!("no user {text:?}: give a user name or uid, or group:GROUP")),
    }
}

/// Parses a group name or gid.
pub fn parse_group(text: &str) -> Result<u32, String> {
    text.parse()
        .ok()
        .or_else(|| crate::users::Names::load().gid_of(text))
        .ok_or_else(|| format!("no group {text:?}: give a group name or gid"))
}

/// The options of `shmkit ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print a JSON array of the objects `stat --json` prints, one per
    /// segment (see docs/JSON.md); with --limits or --summary, one object
    #[arg(long)]
    pub json: bool,
    /// Exactly these columns, comma-separated, in this order (see below)
    #[arg(
        short = 'o',
        long,
        value_name = "COLUMNS",
        value_delimiter = ',',
        value_enum,
        conflicts_with_all = ["pids", "times", "creator"]
    )]
    pub output: Vec<Column>,
    /// Add the creator's and the last attacher's pids, CPID and LPID (as `ipcs -p`)
    #[arg(short = 'p', long)]
    pub pids: bool,
    /// Add the times of the last attach, detach and change: ATTACHED,
    /// DETACHED, CHANGED (as `ipcs -t`; a POSIX segment has no attach or
    /// detach time: see --output accessed,modified)
    #[arg(short = 't', long)]
    pub times: bool,
    /// Add the creator's user and group, CUSER and CGROUP, and the owner's group (as `ipcs -c`)
    #[arg(short = 'c', long)]
    pub creator: bool,
    /// Show PERMS as rw-r----- instead of octal 640
    #[arg(long)]
    pub symbolic: bool,
    /// How times are shown
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "iso")]
    pub time_format: TimeFormat,
    /// Sizes as 4.0K, 12M, 1.5G (powers of 1024) instead of bytes
    #[arg(long)]
    pub human: bool,
    /// Leave out the header line
    #[arg(short = 'n', long)]
    pub noheadings: bool,
    /// For scripts: one line per segment, columns separated by one tab, a
    /// missing value as `-`, a backslash or control character in a value
    /// as `\\` or `\xHH`, no ring table
    #[arg(short = 'r', long)]
    pub raw: bool,
    /// Show the system's limits instead: kernel.shmmni, kernel.shmmax,
    /// kernel.shmall, and the size and use of /dev/shm (as `ipcs -l`)
    #[arg(long, conflicts_with_all = ["summary", "output", "pids", "times", "creator"])]
    pub limits: bool,
    /// Show the totals instead: segments, bytes allocated, resident and
    /// swapped, per kind (as `ipcs -u`)
    #[arg(long, conflicts_with_all = ["output", "pids", "times", "creator"])]
    pub summary: bool,
}

/// A column of `ls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Column {
    /// sysv or posix
    Kind,
    /// The System V key or the POSIX name
    Key,
    /// The System V id
    Id,
    /// The owner's user name (or uid)
    Owner,
    /// The owner's group name (or gid)
    Group,
    /// The permission bits
    Perms,
    /// The size
    Bytes,
    /// The number of attachments
    Nattch,
    /// dest (removal pending), locked
    Status,
    /// The creator's user (System V)
    Cuser,
    /// The creator's group (System V)
    Cgroup,
    /// The creator's pid (System V)
    Cpid,
    /// The pid of the last attach or detach (System V)
    Lpid,
    /// The last attach (System V)
    Attached,
    /// The last detach (System V)
    Detached,
    /// The last change of the permissions, or creation (System V); the
    /// last change of the file's status (POSIX)
    Changed,
    /// The file's last access (POSIX)
    Accessed,
    /// The file's last modification (POSIX)
    Modified,
    /// Bytes resident in memory (System V) or allocated in /dev/shm (POSIX)
    Resident,
    /// Bytes swapped out (System V)
    Swapped,
}

/// How `ls` shows times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFormat {
    /// 2024-02-29T13:05:09Z (UTC)
    Iso,
    /// Seconds since 1970-01-01 UTC
    Epoch,
    /// How long ago: 42s, 7m, 3h, 12d
    Ago,
}

/// The options of `shmkit rm`.
#[derive(Debug, Args)]
#[group(id = "which", required = true, multiple = true, args = ["keys", "ids", "all"])]
pub struct RmArgs {
    /// Keys of the segments: 0x1234, 4660, ftok:PATH:PROJ, or /name
    #[arg(value_name = "KEY", allow_negative_numbers = true)]
    pub keys: Vec<String>,
    /// Select a System V segment by its id (repeatable)
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i32>,
    /// Remove every segment that --kind, --owner and --prefix select (all of them without those)
    #[arg(long, conflicts_with_all = ["keys", "ids"])]
    pub all: bool,
    /// With --all: only segments of this kind (ring, topic, service: the
    /// segments of rings, of topics, of services, live or not)
    #[arg(long, value_name = "KIND", value_enum, requires = "all")]
    pub kind: Option<KindFilter>,
    /// With --all: only segments this user owns (a name or a uid)
    #[arg(long, value_name = "USER", requires = "all")]
    pub owner: Option<String>,
    /// With --all: only segments whose KEY, as `ls` shows it, starts with PREFIX (/shmkit.ring., 0x5c)
    #[arg(long, value_name = "PREFIX", requires = "all")]
    pub prefix: Option<String>,
    /// Print a line for each segment removed
    #[arg(short, long)]
    pub verbose: bool,
}

/// The kinds `rm --all --kind` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KindFilter {
    /// System V segments
    Sysv,
    /// POSIX segments (those of rings, topics and services included)
    Posix,
    /// The segments of message rings (/shmkit.ring.NAME)
    Ring,
    /// The segments of topics (/shmkit.topic.NAME)
    Topic,
    /// The segments of services (/shmkit.service.NAME)
    Service,
}

/// The options of `shmkit top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one snapshot as text and exit (rates over one --interval)
    #[arg(long)]
    pub once: bool,
    /// With --once: print the snapshot as JSON (see docs/JSON.md)
    #[arg(long, requires = "once")]
    pub json: bool,
    /// Seconds between refreshes, and the span the rates are measured over
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// The column to sort by
    #[arg(long, value_name = "KEY", value_enum, default_value = "name")]
    pub sort: SortKey,
    /// Sort in descending order
    #[arg(long)]
    pub reverse: bool,
    /// Only objects whose name contains TEXT
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
}

/// What `top` sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// The name (key)
    Name,
    /// The kind, then the name
    Kind,
    /// The size
    Size,
    /// The resident bytes
    Resident,
    /// The number of attachers
    Attachers,
    /// Messages per second
    Messages,
    /// Bytes per second
    Bytes,
    /// The fill level
    Fill,
}

/// What `stat` shows: a segment by key or System V id, or the segment of a
/// ring, topic or service.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StatTarget {
    /// The segment's key: 0x1234, 4660, ftok:PATH:PROJ, or /name
    #[arg(value_name = "KEY", allow_negative_numbers = true)]
    pub key: Option<String>,
    /// Select a System V segment by its id (the shmid of `ipcs -m`) instead of a KEY
    #[arg(long, value_name = "ID")]
    pub id: Option<i32>,
    /// Select the segment of ring NAME (the same as the KEY /shmkit.ring.NAME)
    #[arg(long, value_name = "NAME")]
    pub ring: Option<String>,
    /// Select the segment of topic NAME (the same as the KEY /shmkit.topic.NAME)
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Select the segment of service NAME (the same as the KEY /shmkit.service.NAME)
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
}

impl StatTarget {
    /// The same segment as a [`Target`].
    pub fn segment(&self) -> Target {
        let object = [
            (&self.ring, ring::SEGMENT_PREFIX),
            (&self.topic, topic::SEGMENT_PREFIX),
            (&self.service, service::SEGMENT_PREFIX),
        ]
        .into_iter()
        .find_map(|(name, prefix)| name.as_ref().map(|name| format!("{prefix}{name}")));
        Target {
            key: self.key.clone().or(object),
            id: self.id,
        }
    }
}

/// One segment, by key or by System V id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The segment's key: 0x1234, 4660, ftok:PATH:PROJ, or /name
    #[arg(value_name = "KEY", allow_negative_numbers = true)]
    pub key: Option<String>,
    /// Select a System V segment by its id (the shmid of `ipcs -m`) instead of a KEY
    #[arg(long, value_name = "ID")]
    pub id: Option<i32>,
}

/// Parses a KEY as the library does (`private` included).
///
/// Text that can never be a key is a usage error (exit 2); a key that needs
/// the system and fails (ftok of a missing file) is a runtime error.
pub fn parse_key(text: &str) -> Result<Key, CliError> {
    text.parse().map_err(|err| match err {
        shmkit::Error::InvalidName { .. } | shmkit::Error::InvalidArgument(_) => {
            CliError::Usage(err.to_string())
        }
        other => CliError::from(other),
    })
}

/// Parses a byte count: plain digits, or digits with a K, M, G or T suffix
/// (optionally `KiB` etc.) multiplying by a power of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let expected = || "expected a number of bytes such as 4096, 64K, 1M or 2G".to_owned();
    if digits.is_empty() {
        return Err(expected());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(expected()),
    };
    let too_large = || format!("{text} is more than the largest size, {} bytes", u64::MAX);
    digits
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(1 << shift)
        .ok_or_else(too_large)
}

/// Parses a number of seconds, fractions allowed (`2`, `0.25`), at most
/// about 584 years.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let expected = || "expected a number of seconds such as 5 or 0.25".to_owned();
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(expected());
    }
    let seconds: f64 = text.parse().map_err(|_| expected())?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text} seconds is too long"))
}

/// Parses `top`'s refresh interval: seconds as [`parse_seconds`], from a
/// tenth of a second (faster would cost the machine more than it shows).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_seconds(text)?;
    if interval < Duration::from_millis(100) {
        return Err("the interval must be at least 0.1 seconds".to_owned());
    }
    Ok(interval)
}

/// Parses permission bits in octal (`644`, `0644` or `0o644`), at most `777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(bits) if bits <= 0o777 && !digits.starts_with('+') => Ok(bits),
        Ok(_) => Err("expected at most 777: the nine permission bits".to_owned()),
        Err(_) => Err("expected octal permission bits such as 600 or 644".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "K", "12Q", "-1", "1.5M", " 1", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("17179869184G").is_err());
    }

    #[test]
    fn seconds_take_fractions() {
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["", "-1", "+1", "inf", "NaN", "1s", "1e400", " 1"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        for bad in ["", "8", "1777", "rw", "+600", "0o"] {
            assert!(parse_mode(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn trusted_owners_are_users_or_groups() {
        assert_eq!(parse_trusted("0"), Ok(Trusted::User(0)));
        assert_eq!(parse_trusted("65534"), Ok(Trusted::User(65534)));
        assert_eq!(parse_trusted("group:100"), Ok(Trusted::Group(100)));
        assert_eq!(parse_trusted("root"), Ok(Trusted::User(0)));
        assert_eq!(parse_trusted("group:root"), Ok(Trusted::Group(0)));
        assert!(parse_trusted("surely-no-such-user").is_err());
        assert!(parse_trusted("group:surely-no-such-group").is_err());
        assert_eq!(parse_group("root"), Ok(0));
    }

    #[test]
    fn keys_include_private() {
        assert_eq!(parse_key("private").unwrap(), Key::PRIVATE);
        assert_eq!(parse_key("IPC_PRIVATE").unwrap(), Key::PRIVATE);
        assert_eq!(parse_key("0").unwrap(), Key::PRIVATE);
        assert_eq!(parse_key("0x10").unwrap(), Key::SysV(16));
        assert!(matches!(parse_key("/a/b"), Err(CliError::Usage(_))));
        assert!(matches!(parse_key("twelve"), Err(CliError::Usage(_))));
        assert!(matches!(
            parse_key("ftok:/surely/not/here:1"),
            Err(CliError::Shmkit { .. })
        ));
    }
}
