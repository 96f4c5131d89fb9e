//! The message-ring subcommands: `send` (standard input into a ring),
//! `recv` (a ring to standard output) and `gc` (rings whose processes died).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use shmkit::ring::{
    collect_garbage, Consumer, EndpointStatus, Options, Producer, ReadGrant, RingStatus,
    SEGMENT_PREFIX,
};
use shmkit::{Key, Mode, Segment, Trust};

use crate::args::{Sharing, Trusted};
use crate::error::CliError;
use crate::users::Names;

/// How much of standard input `send` reads at once.
const INPUT_BUFFER: usize = 1 << 20;

/// How much output `recv` gathers before writing, while messages keep
/// coming.
const OUTPUT_BUFFER: usize = 1 << 16;

/// The ring options of `send` and `recv`: the capacity, mode and group of
/// a ring they create, and the owners whose rings they join.
pub fn options(capacity: u64, sharing: &Sharing) -> Options {
    let trust = sharing
        .trust
        .iter()
        .fold(Trust::me(), |trust, trusted| match *trusted {
            Trusted::User(uid) => trust.user(uid),
            Trusted::Group(gid) => trust.group(gid),
        });
    let options = Options::default()
        .capacity(capacity)
        .mode(Mode::new(sharing.mode))
        .trust(trust);
    match sharing.group {
        Some(gid) => options.group(gid),
        None => options,
    }
}

/// `shmkit send NAME`: one message per line of `input` (or, with `raw`,
/// chunks as they come), then closes the ring by dropping the producer.
pub fn send(name: &str, options: &Options, raw: bool, input: impl Read) -> Result<(), CliError> {
    let mut producer =
        Producer::open_with(name, options).map_err(|err| opening(name, "producer", err))?;
    // Returning drops the producer, which closes the ring, also after an
    // error: the consumer gets what was sent, then the end.
    if raw {
        send_chunks(&mut producer, input)
    } else {
        send_lines(&mut producer, BufReader::with_capacity(INPUT_BUFFER, input))
    }
}

fn send_lines(producer: &mut Producer, mut input: impl BufRead) -> Result<(), CliError> {
    let max = producer.max_message();
    let mut line = Vec::new();
    let mut number: u64 = 0;
    loop {
        line.clear();
        // At most the largest message and its newline: a line with no
        // newline among those bytes is too long, found without holding
        // all of it in memory.
        let read = (&mut input)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(reading_stdin)?;
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
                     of the largest message ring {} carries; {before}",
                    producer.name(),
                )));
            }
            None => &line,
        };
        producer.send(message)?;
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
fn send_chunks(producer: &mut Producer, mut input: impl Read) -> Result<(), CliError> {
    let mut chunk = vec![0u8; producer.max_message().min(1 << 20)];
    loop {
        let read = loop {
            match input.read(&mut chunk) {
                Ok(read) => break read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(reading_stdin(err)),
            }
        };
        if read == 0 {
            return Ok(());
        }
        producer.send(&chunk[..read])?;
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
/// `count` of them.
pub fn recv(
    name: &str,
    ring: &Options,
    options: &RecvOptions,
    out: impl Write,
) -> Result<(), CliError> {
    let mut consumer =
        Consumer::open_with(name, ring).map_err(|err| opening(name, "consumer", err))?;
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, out);
    let result = receive(&mut consumer, options, &mut out);
    // Every message taken from the ring reaches the output before any
    // error is reported.
    let flushed = out.flush().map_err(CliError::stdout);
    result.and(flushed)
}

fn receive(
    consumer: &mut Consumer,
    options: &RecvOptions,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let separator: &[u8] = if options.raw { b"" } else { b"\n" };
    let mut left = options.count.unwrap_or(u64::MAX);
    let mut copy = Vec::new();
    while left > 0 {
        // Whatever is in the ring now, without waiting or flushing.
        match consumer.try_read() {
            Ok(message) => {
                write(out, &message, &mut copy, separator)?;
                left -= 1;
                continue;
            }
            Err(shmkit::Error::Empty { .. }) => {}
            Err(err) => return finished(err),
        }
        // The ring is empty: show what we have before we wait.
        out.flush().map_err(CliError::stdout)?;
        let message = match options.timeout {
            Some(timeout) => consumer.read_timeout(timeout),
            None => consumer.read(),
        };
        match message {
            Ok(message) => write(out, &message, &mut copy, separator)?,
            Err(shmkit::Error::Timeout { ring, .. }) => {
                return Err(CliError::Message(format!(
                    "timed out: no message on ring {ring} within {} s",
                    options.timeout.unwrap_or_default().as_secs_f64()
                )))
            }
            Err(err) => return finished(err),
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
        other => Err(other.into()),
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
        shmkit::Error::UntrustedOwner { uid, gid, .. } => {
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
                "ring {name} belongs to {owner}, not to you: \
                 refusing to join it as its {end}, since its owner could read what you send or \
                 forge what you receive. `--trust {user}` (or `--trust group:{group}`) joins it \
                 anyway; if it is not meant to be there, remove it: \
                 shmkit rm {SEGMENT_PREFIX}{name}"
            ))
        }
        other => other.into(),
    }
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

/// `shmkit gc`: lists the rings whose processes all died (only `names`, if
/// given), and with `force` removes them.
pub fn gc(names: &[String], force: bool, out: &mut impl Write) -> Result<(), CliError> {
    let wanted = |ring: &RingStatus| names.is_empty() || names.contains(&ring.name);
    let rings: Vec<RingStatus> = if force && names.is_empty() {
        collect_garbage(true)?
    } else {
        let rings: Vec<RingStatus> = collect_garbage(false)?
            .into_iter()
            .filter(|ring| wanted(ring))
            .collect();
        if force {
            for ring in &rings {
                remove(&ring.name)?;
            }
        }
        rings
    };
    let mut text = String::new();
    for ring in &rings {
        text.push_str(&format!(
            "{} ring {} (producer {}, consumer {})\n",
            if force { "removed" } else { "would remove" },
            ring.name,
            end(ring.producer),
            end(ring.consumer)
        ));
    }
    if rings.is_empty() {
        text.push_str("nothing to collect\n");
    } else if !force {
        text.push_str("(nothing was removed: `shmkit gc --force` removes them)\n");
    }
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}

/// Removes ring `name`'s segment; one already gone is fine.
fn remove(name: &str) -> Result<(), CliError> {
    let key = Key::posix(&format!("{SEGMENT_PREFIX}{name}"))?;
    match Segment::open(&key).and_then(|segment| segment.remove()) {
        Ok(()) | Err(shmkit::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn end(end: Option<EndpointStatus>) -> String {
    match end {
        Some(EndpointStatus { pid, alive: false }) => format!("pid {pid} dead"),
        Some(EndpointStatus { pid, alive: true }) => format!("pid {pid} running"),
        None => "none".to_owned(),
    }
}
