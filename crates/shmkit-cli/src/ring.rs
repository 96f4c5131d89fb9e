//! The message-ring subcommands: `send` (standard input into a ring),
//! `recv` (a ring to standard output) and `gc` (rings nobody will use).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use shmkit::ring::{
    collect_garbage, Action, Consumer, EndpointStatus, Garbage, Options, Producer, ReadGrant,
    Reason, Removal, Scope, SEGMENT_PREFIX,
};
use shmkit::{Mode, Trust};

use crate::args::{Sharing, Trusted};
use crate::arrival;
use crate::error::CliError;
use crate::signals;
use crate::users::Names;

/// How much of standard input `send` reads at once.
const INPUT_BUFFER: usize = 1 << 20;

/// How much output `recv` gathers before writing, while messages keep
/// coming.
const OUTPUT_BUFFER: usize = 1 << 16;

/// How `send` waits.
#[derive(Debug)]
pub struct SendOptions {
    /// Fail if one wait for room lasts longer.
    pub timeout: Option<Duration>,
    /// When the consumer left a full ring, wait for a new one.
    pub wait_for_consumer: bool,
    /// Chunks as they come instead of lines.
    pub raw: bool,
}

/// The ring options of `send` and `recv`: the capacity, mode and group of
/// a ring they create (the capacity and mode, if given, must match an
/// existing ring's), and the owners whose rings they join.
pub fn options(capacity: Option<u64>, sharing: &Sharing) -> Options {
    let mut options = Options::default().trust(trust(sharing));
    if let Some(bytes) = capacity {
        options = options.capacity(bytes);
    }
    if let Some(mode) = sharing.mode {
        options = options.mode(Mode::new(mode));
    }
    match sharing.group {
        Some(gid) => options.group(gid),
        None => options,
    }
}

/// The owners `--trust` names, beside this process's own uid (rings and
/// topics alike).
pub fn trust(sharing: &Sharing) -> Trust {
    sharing
        .trust
        .iter()
        .fold(Trust::me(), |trust, trusted| match *trusted {
            Trusted::User(uid) => trust.user(uid),
            Trusted::Group(gid) => trust.group(gid),
        })
}

/// `shmkit send NAME`: one message per line of `input` (or, with `raw`,
/// chunks as they come), then closes the ring. A stop signal ends the input
/// early, as the end of input would.
pub fn send(
    name: &str,
    ring: Options,
    options: &SendOptions,
    input: impl Read + AsFd,
) -> Result<(), CliError> {
    let ring = ring.wait_for_new_consumer(options.wait_for_consumer);
    // Closed only once the input is all sent: a stream cut short by an
    // error or a panic must not look whole. Never dropped, the producer's
    // lock goes with this process, and the consumer gets what was sent,
    // then `PeerGone`.
    let mut producer = std::mem::ManuallyDrop::new(
        Producer::open_with(name, &ring).map_err(|err| opening(name, "producer", err))?,
    );
    signals::catch();
    let input = signals::StopsOnSignal(input);
    let sent = if options.raw {
        send_chunks(&mut producer, options.timeout, input)
    } else {
        let input = BufReader::with_capacity(INPUT_BUFFER, input);
        send_lines(&mut producer, options.timeout, input)
    };
    sent?;
    std::mem::ManuallyDrop::into_inner(producer)
        .close()
        .or_else(|err| left_behind(name, err))
}

/// A ring that its last endpoint should have removed but could not (it is
/// another user's, say) is not a failure of the command: say so, and go on.
fn left_behind(name: &str, err: shmkit::Error) -> Result<(), CliError> {
    eprintln!(
        "shmkit: ring {name} was left in /dev/shm: {err}; its owner's next `shmkit recv {name}` \
         or `shmkit gc --force {name}` removes it"
    );
    Ok(())
}

/// What stops one wait: its share of the `timeout`, or a slice short
/// enough to notice a signal; `None` once a signal was caught.
fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    if signals::caught().is_some() {
        return None;
    }
    Some(match deadline {
        Some(deadline) => deadline
            .saturating_duration_since(Instant::now())
            .min(signals::SLICE),
        None => signals::SLICE,
    })
}

fn timed_out(place: &str, timeout: Duration, what: &str) -> CliError {
    CliError::Message(format!(
        "timed out: no {what} on {place} within {} s",
        timeout.as_secs_f64()
    ))
}

/// Sends one message, waiting for room in slices; `Ok(false)` if a stop
/// signal came first.
fn send_one(
    producer: &mut Producer,
    timeout: Option<Duration>,
    message: &[u8],
) -> Result<bool, CliError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let Some(slice) = next_slice(deadline) else {
            return Ok(false);
        };
        match producer.send_timeout(message, slice) {
            Ok(()) => return Ok(true),
            Err(shmkit::Error::Timeout { .. }) => {
                if let (Some(deadline), Some(timeout)) = (deadline, timeout) {
                    if Instant::now() >= deadline {
                        return Err(timed_out(
                            &format!("ring {}", producer.name()),
                            timeout,
                            "room",
                        ));
                    }
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn send_lines(
    producer: &mut Producer,
    timeout: Option<Duration>,
    mut input: impl BufRead,
) -> Result<(), CliError> {
    let max = producer.max_message();
    let mut line = Vec::new();
    let mut number: u64 = 0;
    loop {
        line.clear();
        // At most the largest message and its newline: a line with no
        // newline among those bytes is too long, found without holding
        // all of it in memory.
        let read = match (&mut input)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(read) => read,
            Err(err) => return input_failed(err),
        };
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let message = match line.strip_suffix(b"\n") {
            Some(message) => message,
            None if read > max => {
                let len = read as u64 + rest_of_line(&mut input)?;
                let before = match number - 1 {
                    0 => "nothing was sent".to_owned(),
                    1 => "the line before it was sent".to_owned(),
                    n => format!("the {n} lines before it were sent"),
                };
                return Err(CliError::Message(format!(
                    "line {number} of standard input is {len} bytes long, more than the {max} bytes \
                     of the largest message ring {} carries; {before}, and the stream is left \
                     unfinished (a new ring of a larger `--capacity` carries longer lines; \
                     `--raw` sends chunks, not lines)",
                    producer.name(),
                )));
            }
            None => &line,
        };
        if !send_one(producer, timeout, message)? {
            return Ok(());
        }
    }
}

/// A failed read of standard input: the end of input if a stop signal
/// interrupted it, else an error.
fn input_failed(err: io::Error) -> Result<(), CliError> {
    match signals::caught() {
        Some(_) => Ok(()),
        None => Err(reading_stdin(err)),
    }
}

/// Skips to the end of the line; returns how many bytes that was, the
/// newline not counted.
fn rest_of_line(input: &mut impl BufRead) -> Result<u64, CliError> {
    let mut skipped = 0;
    loop {
        let buffer = input.fill_buf().map_err(reading_stdin)?;
        if buffer.is_empty() {
            return Ok(skipped);
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return Ok(skipped + end as u64);
            }
            None => {
                let len = buffer.len();
                input.consume(len);
                skipped += len as u64;
            }
        }
    }
}

/// `send --raw`: each read of standard input (of up to the largest
/// message, or 1 MiB: a pipe gives at most 64 KiB at a time anyway) is sent
/// as one message. It is read into a buffer of our own and copied into the
/// ring, not read into a grant: `read` would need a `&mut [u8]` over memory
/// a protocol-breaking consumer could write.
fn send_chunks(
    producer: &mut Producer,
    timeout: Option<Duration>,
    mut input: impl Read,
) -> Result<(), CliError> {
    let mut chunk = vec![0u8; producer.max_message().min(1 << 20)];
    loop {
        let read = match input.read(&mut chunk) {
            Ok(read) => read,
            // Stopped by a signal: the end of the input.
            Err(_) if signals::caught().is_some() => 0,
            Err(err) => return Err(reading_stdin(err)),
        };
        if read == 0 || !send_one(producer, timeout, &chunk[..read])? {
            return Ok(());
        }
    }
}

/// What `recv` does with each message, and when it stops.
#[derive(Debug)]
pub struct RecvOptions {
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Fail if one wait for a message lasts longer.
    pub timeout: Option<Duration>,
    /// No newline after each message.
    pub raw: bool,
}

/// `shmkit recv NAME`: messages to `out` until the end of the stream, or
/// `count` of them, or a stop signal.
pub fn recv(
    name: &str,
    ring: &Options,
    options: &RecvOptions,
    out: impl Write,
) -> Result<(), CliError> {
    let mut consumer =
        Consumer::open_with(name, ring).map_err(|err| opening(name, "consumer", err))?;
    signals::catch();
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, out);
    let result = receive(&mut consumer, options, &mut out);
    // Every message taken from the ring reaches the output before any
    // error is reported.
    let flushed = out.flush().map_err(CliError::stdout);
    let closed = consumer.close();
    result.and(flushed)?;
    closed.or_else(|err| left_behind(name, err))
}

fn receive(
    consumer: &mut Consumer,
    options: &RecvOptions,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let separator: &[u8] = if options.raw { b"" } else { b"\n" };
    let mut left = options.count.unwrap_or(u64::MAX);
    let mut copy = Vec::new();
    // Until the first message, a wait begins with `arrival`'s, for a
    // producer that may not be there yet; after it (a producer sent it),
    // a wait costs no look at the ring's status, which a stream whose ring
    // runs empty often would pay.
    let mut producer_seen = false;
    while left > 0 && signals::caught().is_none() {
        // Whatever is in the ring now, without waiting or flushing.
        match consumer.try_read() {
            Ok(message) => {
                write(out, &message, &mut copy, separator)?;
                left -= 1;
                producer_seen = true;
                continue;
            }
            Err(shmkit::Error::Empty { .. }) => {}
            Err(err) => return finished(err),
        }
        // The ring is empty: show what we have before we wait.
        out.flush().map_err(CliError::stdout)?;
        let deadline = options.timeout.map(|t| Instant::now() + t);
        if !producer_seen {
            arrival::wait_for_producer(consumer.name(), deadline);
        }
        loop {
            let Some(slice) = next_slice(deadline) else {
                return Ok(());
            };
            match consumer.read_timeout(slice) {
                Ok(message) => {
                    write(out, &message, &mut copy, separator)?;
                    producer_seen = true;
                    break;
                }
                Err(shmkit::Error::Timeout { place, .. }) => {
                    if let (Some(deadline), Some(timeout)) = (deadline, options.timeout) {
                        if Instant::now() >= deadline {
                            return Err(timed_out(&place, timeout, "message"));
                        }
                    }
                }
                Err(err) => return finished(err),
            }
        }
        left -= 1;
    }
    Ok(())
}

/// Writes `message` to `out`, copying it out of the ring first through the
/// grant's raw pointer (into `copy`, reused): a `&[u8]` over the ring would
/// be a reference to bytes a protocol-breaking producer could change.
fn write(
    out: &mut impl Write,
    message: &ReadGrant<'_>,
    copy: &mut Vec<u8>,
    separator: &[u8],
) -> Result<(), CliError> {
    message.copy_to(copy);
    out.write_all(copy)
        .and_then(|()| out.write_all(separator))
        .map_err(CliError::stdout)
}

/// The end of the stream is success; anything else (`PeerGone`, …) fails.
fn finished(err: shmkit::Error) -> Result<(), CliError> {
    match err {
        shmkit::Error::Closed { .. } => Ok(()),
        other => Err(receiving(other)),
    }
}

/// The error of a receive (rings and topics): a sender gone without
/// closing its stream (it failed, or was killed) says the output is
/// incomplete.
pub fn receiving(err: shmkit::Error) -> CliError {
    match err {
        shmkit::Error::PeerGone { .. } => CliError::Message(format!(
            "{err} without finishing the stream (it failed or was killed): what came before is \
             all there is, and it is incomplete"
        )),
        other => other.into(),
    }
}

/// The error of opening an end of ring `name`: a name or capacity that can
/// never work is a usage error; a closed ring that is still being read is
/// explained.
fn opening(name: &str, end: &str, err: shmkit::Error) -> CliError {
    match err {
        shmkit::Error::InvalidArgument(_) => CliError::Usage(err.to_string()),
        shmkit::Error::Closed { .. } => CliError::Message(format!(
            "cannot open ring {name} as its {end}: its producer closed it, and its consumer has \
             not read everything yet (`shmkit recv {name}` reads the rest)"
        )),
        shmkit::Error::UntrustedOwner { uid, gid, .. } => untrusted(
            "ring",
            name,
            end,
            &format!("{SEGMENT_PREFIX}{name}"),
            uid,
            gid,
        ),
        other => other.into(),
    }
}

/// Why joining ring or topic `name` (whose segment is `segment`) as its
/// `end` was refused: its owner is not trusted. Names the owner, the
/// `--trust` that would join it, and how to remove it.
pub fn untrusted(kind: &str, name: &str, end: &str, segment: &str, uid: u32, gid: u32) -> CliError {
    let names = Names::load();
    let user = names.user_or_number(uid);
    let group = names
        .group(gid)
        .map_or_else(|| gid.to_string(), str::to_owned);
    let owner = match names.user(uid) {
        Some(user) => format!("user {user} (uid {uid}, group {group})"),
        None => format!("uid {uid} (group {group})"),
    };
    CliError::Message(format!(
        "{kind} {name} belongs to {owner}, not to you: \
         refusing to join it as its {end}, since its owner could read what you send or \
         forge what you receive. `--trust {user}` (or `--trust group:{group}`) joins it \
         anyway; if it is not meant to be there, remove it: \
         shmkit rm {segment}"
    ))
}

/// Standard input as a plain file, unbuffered: `send` reads it into its
/// own large buffer, or (`--raw`) straight into the ring.
pub fn stdin() -> Result<File, CliError> {
    let fd = io::stdin().as_fd().try_clone_to_owned();
    Ok(File::from(fd.map_err(reading_stdin)?))
}

fn reading_stdin(source: io::Error) -> CliError {
    CliError::Io {
        context: "reading standard input".to_owned(),
        source,
    }
}

/// What `gc` does with what it finds: with `--force` removes it, else
/// only lists it (rings and topics alike).
pub fn gc_action(force: bool) -> Action {
    if force {
        Action::Remove
    } else {
        Action::DryRun
    }
}

/// The rings' part of `gc`: lists the rings nobody will use (only `names`,
/// if given), with why, and with `force` removes them; returns how many
/// it found (`gc::summary` then says it once for every kind).
pub fn gc(names: &[String], force: bool, out: &mut impl Write) -> Result<usize, CliError> {
    let action = gc_action(force);
    let mut found: Vec<Garbage> = Vec::new();
    let mut problems = Vec::new();
    let mut text = String::new();
    if names.is_empty() {
        found = collect_garbage(Scope::All, action)?;
    }
    for name in names {
        match collect_garbage(Scope::Name(name), action) {
            Ok(garbage) if garbage.is_empty() => {
                text.push_str(&format!(
                    "ring {name} is not garbage: a live process uses it, or it holds messages \
                     or an end of stream for a consumer to come\n"
                ));
            }
            Ok(garbage) => found.extend(garbage),
            Err(shmkit::Error::NotFound { .. }) => problems.push(CliError::Message(format!(
                "no ring, topic or service is named {name}"
            ))),
            Err(err) => problems.push(err.into()),
        }
    }
    for garbage in &found {
        let verb = match &garbage.removal {
            Removal::Removed => "removed",
            Removal::NotAsked => "would remove",
            _ => "could not remove",
        };
        let why = match (&garbage.reason, &garbage.status) {
            (Reason::Abandoned, Some(status)) => format!(
                "abandoned (producer {}, consumer {})",
                end(status.producer),
                end(status.consumer)
            ),
            (reason, _) => reason.to_string(),
        };
        text.push_str(&format!("{verb} ring {}: {why}", garbage.name));
        if let Removal::Failed(why) = &garbage.removal {
            problems.push(CliError::Message(format!(
                "ring {} was left in /dev/shm: {why}",
                garbage.name
            )));
        }
        text.push('\n');
    }
    out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
    match problems.len() {
        0 => Ok(found.len()),
        1 => Err(problems.remove(0)),
        _ => Err(CliError::Several(problems)),
    }
}

fn end(end: Option<EndpointStatus>) -> String {
    match end {
        Some(EndpointStatus { pid, alive: false }) => format!("pid {pid} dead"),
        Some(EndpointStatus { pid, alive: true }) => format!("pid {pid} running"),
        None => "none".to_owned(),
    }
}
