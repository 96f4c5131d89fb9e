//! Part 2 of `shmkit demo`: a producer process streams numbered, checksummed
//! messages through a ring to a consumer process, which checks every one;
//! the parent measures the stream and shows the ring's status.
//!
//! The three processes synchronise over the children's pipes, never by
//! sleeping:
//!
//! - the consumer (`__demo-consumer`) opens the ring, says `ready`, reads
//!   and checks messages until the end of the stream, says `received N`,
//!   and waits for a line before it leaves the ring;
//! - the producer (`__demo-producer`) opens the ring, says `ready`, waits
//!   for a line, sends its messages, and closes the ring by exiting.
//!
//! The consumer stays in the ring until the parent has read its final
//! status: the last end to leave a closed, drained ring removes it.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use shmkit::ring::{status, Consumer, Producer, RingStatus, SEGMENT_PREFIX};
use shmkit::{Key, Segment};

use super::{check, DemoProcess};
use crate::error::CliError;

/// Bytes in each message.
const MESSAGE_LEN: usize = 64;

/// The words of a message: the sequence number, six words of payload made
/// from it, and a checksum of the seven.
const WORDS: usize = MESSAGE_LEN / 8;

/// Part 2, steps 9 to 13: fails if any check fails, and leaves no ring
/// behind (the guards kill the children, then remove the ring).
pub fn run(messages: u64, out: &mut impl Write) -> Result<(), CliError> {
    let mut say = |text: String| writeln!(out, "{text}").map_err(CliError::stdout);
    let name = format!("demo-{}", std::process::id());
    let segment = format!("/dev/shm{SEGMENT_PREFIX}{name}");
    // Declared before the children, so dropped after they are killed.
    let _cleanup = RemoveRing::new(&name)?;
    say(format!(
        "\nshmkit demo, part 2: two more processes stream {messages} messages of {MESSAGE_LEN} \
         bytes through a ring\n"
    ))?;

    let count = messages.to_string();
    let args = |role| [role, "--ring", &name, "--messages", &count];
    let mut consumer = DemoProcess::spawn("consumer", &args("__demo-consumer"))?;
    expect_ready(&mut consumer)?;
    let ring = status(&name)?;
    say(format!(
        "9. the consumer (pid {}) opened ring {name}, which created it: the segment {segment}, \
         a data area of {} bytes, messages of up to {} bytes; it waits for the first",
        consumer.pid(),
        ring.capacity,
        ring.max_message
    ))?;
    check_ends(&ring, None, Some(consumer.pid()))?;

    let mut producer = DemoProcess::spawn("producer", &args("__demo-producer"))?;
    expect_ready(&mut producer)?;
    let ring = status(&name)?;
    say(format!(
        "10. the producer (pid {}) opened the same ring; status: producer {}, consumer {}",
        producer.pid(),
        producer.pid(),
        consumer.pid()
    ))?;
    check_ends(&ring, Some(producer.pid()), Some(consumer.pid()))?;

    let start = Instant::now();
    producer.tell("go");
    let said = consumer.read_line()?;
    let elapsed = start.elapsed();
    if said.is_empty() {
        // It failed, and said why on standard error; its status says how.
        consumer.finish()?;
    }
    check(said == format!("received {messages}"), || {
        format!("the consumer says \"received {messages}\", not {said:?}")
    })?;
    producer.finish()?;
    say(format!(
        "11. the producer wrote each message in place (grant, write, commit), then closed the \
         ring; the consumer read each in place and checked it: sequence numbers 0 to {} in \
         order, every checksum right",
        messages.saturating_sub(1)
    ))?;
    say(format!("    {}", rate(messages, elapsed)))?;

    let ring = status(&name)?;
    say(format!(
        "12. ring status: sent {}, received {}, {} bytes in flight, {}; producer {}, consumer {}",
        ring.sent,
        ring.received,
        ring.bytes_in_flight,
        if ring.closed { "closed" } else { "open" },
        ring.producer
            .map_or_else(|| "gone".to_owned(), |end| format!("pid {}", end.pid)),
        ring.consumer
            .map_or_else(|| "gone".to_owned(), |end| format!("pid {}", end.pid)),
    ))?;
    check(ring.sent == messages && ring.received == messages, || {
        format!(
            "sent = received = {messages}, not sent {} and received {}",
            ring.sent, ring.received
        )
    })?;
    check(ring.closed && ring.bytes_in_flight == 0, || {
        "the ring is closed and empty".to_owned()
    })?;
    check_ends(&ring, None, Some(consumer.pid()))?;

    consumer.tell("go");
    consumer.finish()?;
    let gone = matches!(status(&name), Err(shmkit::Error::NotFound { .. }))
        && !Path::new(&segment).exists();
    say(format!(
        "13. told the consumer to go: the last end left a closed, drained ring, so the ring \
         removed itself; {segment} is {}",
        if gone { "gone" } else { "still there" }
    ))?;
    check(gone, || format!("{segment} is gone once both ends left"))
}

/// Messages per second and megabytes (10⁶) per second.
fn rate(messages: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let bytes = messages as f64 * MESSAGE_LEN as f64;
    format!(
        "{messages} messages ({:.1} MB) in {seconds:.3} s: {:.2} million messages/s, {:.0} MB/s",
        bytes / 1e6,
        messages as f64 / seconds / 1e6,
        bytes / seconds / 1e6
    )
}

fn expect_ready(process: &mut DemoProcess) -> Result<(), CliError> {
    let line = process.read_line()?;
    if line.is_empty() {
        // It failed, and said why on standard error; its status says how.
        process.finish()?;
    }
    check(line == "ready", || {
        format!("the {} process says \"ready\", not {line:?}", process.role)
    })
}

/// Checks which processes hold the ring's ends.
fn check_ends(
    ring: &RingStatus,
    producer: Option<u32>,
    consumer: Option<u32>,
) -> Result<(), CliError> {
    let pid = |end: Option<shmkit::ring::EndpointStatus>| end.filter(|e| e.alive).map(|e| e.pid);
    let found = (pid(ring.producer), pid(ring.consumer));
    check(found == (producer, consumer), || {
        format!(
            "the ring's (producer, consumer) are {:?}, not {found:?}",
            (producer, consumer)
        )
    })
}

/// `shmkit __demo-producer`: opens the ring, says `ready`, waits for a line
/// (or the end) on `input`, sends `messages` messages and closes the ring.
pub fn producer(
    name: &str,
    messages: u64,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut producer = Producer::open(name)?;
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)?;
    let mut line = String::new();
    input.read_line(&mut line).map_err(|source| CliError::Io {
        context: "reading standard input".to_owned(),
        source,
    })?;
    if line.is_empty() {
        return Err(CliError::Message(
            "the demo ended before the producer started".to_owned(),
        ));
    }
    for sequence in 0..messages {
        let mut grant = producer.grant(MESSAGE_LEN)?;
        encode(sequence, &mut grant);
        grant.commit();
    }
    producer.close()?;
    Ok(())
}

/// `shmkit __demo-consumer`: opens the ring, says `ready`, checks every
/// message until the end of the stream, says `received N`, and leaves the
/// ring after a line (or the end) on `input`.
pub fn consumer(
    name: &str,
    messages: u64,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut consumer = Consumer::open(name)?;
    let mut tell = |text: String| {
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)
    };
    tell("ready".to_owned())?;
    let mut received: u64 = 0;
    loop {
        match consumer.read() {
            Ok(message) => decode(received, &message).map_err(CliError::Message)?,
            Err(shmkit::Error::Closed { .. }) => break,
            Err(err) => return Err(err.into()),
        }
        received += 1;
    }
    if received != messages {
        return Err(CliError::Message(format!(
            "the stream ended after {received} messages, not {messages}"
        )));
    }
    tell(format!("received {received}"))?;
    let mut line = String::new();
    input.read_line(&mut line).map_err(|source| CliError::Io {
        context: "reading standard input".to_owned(),
        source,
    })?;
    drop(consumer);
    Ok(())
}

/// Message `sequence`: the number, six payload words from it, and the
/// checksum of those seven words, each little-endian.
fn encode(sequence: u64, message: &mut [u8]) {
    let mut words = [0u64; WORDS];
    words[0] = sequence;
    for (i, word) in words[1..WORDS - 1].iter_mut().enumerate() {
        *word = splitmix64(sequence.wrapping_mul(8).wrapping_add(i as u64));
    }
    words[WORDS - 1] = checksum(&words[..WORDS - 1]);
    for (bytes, word) in message.chunks_exact_mut(8).zip(words) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
}

/// Checks that `message` is message number `expected`, intact.
fn decode(expected: u64, message: &[u8]) -> Result<(), String> {
    if message.len() != MESSAGE_LEN {
        return Err(format!(
            "message {expected} has {} bytes, not {MESSAGE_LEN}",
            message.len()
        ));
    }
    let mut words = [0u64; WORDS];
    for (word, bytes) in words.iter_mut().zip(message.chunks_exact(8)) {
        let mut le = [0; 8];
        le.copy_from_slice(bytes);
        *word = u64::from_le_bytes(le);
    }
    if words[0] != expected {
        return Err(format!(
            "message {expected} has sequence number {}: out of order or lost",
            words[0]
        ));
    }
    let sum = checksum(&words[..WORDS - 1]);
    if words[WORDS - 1] != sum {
        return Err(format!(
            "message {expected} is corrupt: checksum {:#018x}, computed {sum:#018x}",
            words[WORDS - 1]
        ));
    }
    Ok(())
}

/// A checksum of 64-bit words: FNV-1a's step with whole words for bytes,
/// and a shift to mix the high bits down.
fn checksum(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash: u64, &word| {
            let hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
            hash ^ hash >> 29
        })
}

/// SplitMix64's output function (Steele, Lea and Flood, "Fast Splittable
/// Pseudorandom Number Generators", 2014): distinct words from a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ z >> 30).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ z >> 27).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ z >> 31
}

/// Removes the demo's ring when the demo ends, however it ends (a ring
/// left over by an earlier demo with this pid is removed at the start).
struct RemoveRing(Key);

impl RemoveRing {
    fn new(name: &str) -> Result<RemoveRing, CliError> {
        let guard = RemoveRing(Key::posix(&format!("{SEGMENT_PREFIX}{name}"))?);
        guard.remove();
        Ok(guard)
    }

    fn remove(&self) {
        if let Ok(segment) = Segment::open(&self.0) {
            let _ = segment.remove();
        }
    }
}

impl Drop for RemoveRing {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_damage_is_caught() {
        let mut message = [0u8; MESSAGE_LEN];
        encode(41, &mut message);
        assert_eq!(decode(41, &message), Ok(()));
        assert!(decode(42, &message).unwrap_err().contains("out of order"));
        for byte in 8..MESSAGE_LEN {
            let mut damaged = message;
            damaged[byte] ^= 0x10;
            assert!(
                decode(41, &damaged).unwrap_err().contains("corrupt"),
                "byte {byte}"
            );
        }
        assert!(decode(41, &message[..63]).is_err());
    }
}
