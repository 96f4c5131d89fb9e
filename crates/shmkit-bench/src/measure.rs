//! The timed loops over any [`Link`] — ping-pong round trips and one-way
//! streams — and the messages they carry.
//!
//! A message of `size` bytes carries its sequence number in its first 8
//! bytes (little-endian) and a fixed pattern after them. Every receiver
//! checks every message ([`Message::check`]): its length, its sequence
//! number, so that a lost, repeated or reordered message fails the run,
//! and a checksum of all its bytes, so that each byte is really read (and
//! a damaged one fails the run). Senders send from one buffer in which only
//! the sequence number changes.
//!
//! A stream ends with an end message, whose sequence number is the number
//! of messages before it with [`END`] set: so a stream can run for a time
//! rather than a count, and a receiver still notices a message lost at the
//! end.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::transports::Link;
use super::Counts;
use crate::Error;

/// The shortest message: room for the sequence number.
pub const MIN_SIZE: usize = 8;

/// The bit that marks a stream's end message.
const END: u64 = 1 << 63;

/// How often a sender that streams for a time reads the clock.
const MESSAGES_PER_CLOCK_READ: u64 = 256;

/// The longest round trip an HDR histogram records exactly: a minute (a
/// longer one is recorded as a minute).
const LONGEST_NS: u64 = 60_000_000_000;

/// A histogram of nanoseconds with three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LONGEST_NS, 3).expect("the bounds are valid")
}

/// The message a sender sends, or a receiver expects.
#[derive(Debug)]
pub struct Message {
    bytes: Vec<u8>,
    /// The checksum of the pattern after the sequence number (its words
    /// from there).
    pattern_sum: u64,
}

impl Message {
    /// A message of `size` (at least [`MIN_SIZE`]) bytes with sequence
    /// number 0.
    pub fn new(size: usize) -> Message {
        assert!(
            size >= MIN_SIZE,
            "a message has room for its sequence number"
        );
        let mut bytes: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(167).wrapping_add(13))
            .collect();
        bytes[..MIN_SIZE].fill(0);
        let pattern_sum = checksum(&bytes[MIN_SIZE..]);
        Message { bytes, pattern_sum }
    }

    /// Writes sequence number `sequence` into the message.
    pub fn stamp(&mut self, sequence: u64) {
        self.bytes[..8].copy_from_slice(&sequence.to_le_bytes());
    }

    /// The message's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks that `received` is message number `expected`, whole and
    /// intact. Reads every byte.
    pub fn check(&self, received: &[u8], expected: u64) -> Result<(), String> {
        match self.sequence(received, expected)? {
            sequence if sequence == expected => Ok(()),
            sequence => Err(out_of_order(expected, sequence)),
        }
    }

    /// Checks that `received` is whole and intact, and returns the
    /// sequence number it carries. Reads every byte. (`expected` is for
    /// the messages.) Inlined into each receiver's loop, so that checking
    /// a small message costs it no call and no `Result` in memory.
    #[inline(always)]
    fn sequence(&self, received: &[u8], expected: u64) -> Result<u64, String> {
        if received.len() != self.bytes.len() {
            return Err(wrong_size(expected, received.len(), self.bytes.len()));
        }
        // The first word is the number (a damaged one is a wrong number),
        // the pattern after it has its checksum.
        let (number, pattern) = received.split_at(MIN_SIZE);
        let sequence = u64::from_le_bytes(number.try_into().expect("a word"));
        if checksum(pattern) != self.pattern_sum {
            return Err(damaged(expected));
        }
        Ok(sequence)
    }
}

#[cold]
#[inline(never)]
fn wrong_size(expected: u64, len: usize, size: usize) -> String {
    format!("message {expected} has {len} bytes, not {size}")
}

#[cold]
#[inline(never)]
fn damaged(expected: u64) -> String {
    format!("message {expected} is damaged: its checksum is wrong")
}

#[cold]
#[inline(never)]
fn out_of_order(expected: u64, sequence: u64) -> String {
    format!(
        "message {expected} carries sequence number {sequence}: a message was lost, repeated \
         or reordered"
    )
}

/// The wrapping sum of `bytes` as little-endian 64-bit words (the last one
/// padded with zeroes). The compiler vectorises it: it reads bytes about as
/// fast as memory delivers them. The last word's bytes are added one by one
/// (at most seven), not copied into a padded word: a copy of a length known
/// only at run time is a call of `memcpy`, which costs a small message's
/// check more than its words.
#[inline(always)]
fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut sum: u64 = 0;
    for word in &mut words {
        let mut le = [0; 8];
        le.copy_from_slice(word);
        sum = sum.wrapping_add(u64::from_le_bytes(le));
    }
    let last = words
        .remainder()
        .iter()
        .enumerate()
        .fold(0, |last, (i, &byte)| last | u64::from(byte) << (8 * i));
    sum.wrapping_add(last)
}

/// Sends messages `sequences` one after the other (a stream without end).
fn send_messages<L: Link>(
    link: &mut L,
    message: &mut Message,
    sequences: std::ops::Range<u64>,
) -> Result<(), Error> {
    link.send_sequence(message, sequences)
}

/// Receives and checks messages `sequences`.
fn receive_messages<L: Link>(
    link: &mut L,
    size: usize,
    sequences: std::ops::Range<u64>,
) -> Result<(), Error> {
    let expected = Message::new(size);
    let mut buf = vec![0; size];
    for sequence in sequences {
        link.recv(&mut buf, |bytes| expected.check(bytes, sequence))?
            .map_err(Error::Message)?;
    }
    Ok(())
}

/// Ping-pong, the parent's side. Warms up by streaming `counts.prime`
/// messages to the peer and receiving as many back (which primes buffers
/// and every page of a ring), then with `counts.warmup_round_trips` round
/// trips; then sends `counts.round_trips` messages one at a time, each
/// after the reply to the one before, and records each round trip: from
/// just before the send until the reply is received and checked.
pub fn ping_pong<L: Link>(
    link: &mut L,
    size: usize,
    counts: &Counts,
) -> Result<Histogram<u64>, Error> {
    let mut message = Message::new(size);
    send_messages(link, &mut message, 0..counts.prime)?;
    receive_messages(link, size, 0..counts.prime)?;
    let mut reply = vec![0; size];
    let mut round_trips = histogram();
    let warmup = counts.warmup_round_trips;
    for sequence in 0..warmup + counts.round_trips {
        message.stamp(sequence);
        let start = Instant::now();
        link.send(message.bytes())?;
        let checked = link.recv(&mut reply, |bytes| message.check(bytes, sequence))?;
        let elapsed = start.elapsed();
        checked.map_err(|why| Error::Message(format!("the reply to {why}")))?;
        if sequence >= warmup {
            round_trips.saturating_record(elapsed.as_nanos() as u64);
        }
    }
    Ok(round_trips)
}

/// Ping-pong, the peer's side: receives `prime` messages and sends as many
/// back, then receives, checks and sends back `round_trips` messages.
pub fn echo<L: Link>(link: &mut L, size: usize, prime: u64, round_trips: u64) -> Result<(), Error> {
    let mut message = Message::new(size);
    receive_messages(link, size, 0..prime)?;
    send_messages(link, &mut message, 0..prime)?;
    let mut buf = vec![0; size];
    for sequence in 0..round_trips {
        link.echo(&mut buf, |bytes| {
            message.check(bytes, sequence).map_err(Error::Message)
        })?;
    }
    Ok(())
}

/// How long a stream's measured part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// This many messages.
    Messages(u64),
    /// As many messages as the sender sends in this time.
    Time(Duration),
}

/// Streaming, the sender's side: sends `warmup` messages, then the
/// measured ones as fast as the link takes them, then the end message;
/// returns how many were measured. With `skip` (fault injection for
/// tests), the first measured message carries the next one's sequence
/// number, as if one were lost.
pub fn send_stream<L: Link>(
    link: &mut L,
    size: usize,
    warmup: u64,
    length: Length,
    skip: bool,
) -> Result<u64, Error> {
    let mut message = Message::new(size);
    send_messages(link, &mut message, 0..warmup)?;
    let shift = u64::from(skip);
    let mut sent = 0;
    match length {
        Length::Messages(n) => {
            send_messages(link, &mut message, warmup + shift..warmup + n + shift)?;
            sent = n;
        }
        Length::Time(time) => {
            let until = Instant::now() + time;
            loop {
                let next = warmup + shift + sent;
                let batch = next..next + MESSAGES_PER_CLOCK_READ;
                send_messages(link, &mut message, batch)?;
                sent += MESSAGES_PER_CLOCK_READ;
                if Instant::now() >= until {
                    break;
                }
            }
        }
    }
    message.stamp(END | (warmup + sent));
    link.send(message.bytes())?;
    Ok(sent)
}

/// Streaming, the receiver's side: receives and checks `warmup` messages,
/// then every message up to the end message, and returns how many those
/// were and how long they took: from the end of the warm-up until the end
/// message is checked.
pub fn receive_stream<L: Link>(
    link: &mut L,
    size: usize,
    warmup: u64,
) -> Result<(u64, Duration), Error> {
    receive_messages(link, size, 0..warmup)?;
    let expected = Message::new(size);
    let mut buf = vec![0; size];
    let start = Instant::now();
    let mut next = warmup;
    let mut outcome = Ok(());
    link.recv_while(&mut buf, |bytes| match expected.sequence(bytes, next) {
        Ok(sequence) if sequence == next => {
            next += 1;
            true
        }
        Ok(sequence) if sequence == END | next => false,
        Ok(sequence) => {
            outcome = Err(out_of_order(next, sequence));
            false
        }
        Err(why) => {
            outcome = Err(why);
            false
        }
    })?;
    let elapsed = start.elapsed();
    outcome.map_err(Error::Message)?;
    Ok((next - warmup, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_check_their_number_and_every_byte() {
        for size in [8, 9, 64, 1000, 1024] {
            let mut message = Message::new(size);
            message.stamp(41);
            let sent = message.bytes().to_vec();
            let receiver = Message::new(size);
            assert_eq!(receiver.check(&sent, 41), Ok(()));
            assert!(receiver.check(&sent, 42).unwrap_err().contains("reordered"));
            assert!(receiver.check(&sent[..size - 1], 41).is_err());
            for byte in 8..size {
                let mut damaged = sent.clone();
                damaged[byte] ^= 0x10;
                assert!(
                    receiver
                        .check(&damaged, 41)
                        .unwrap_err()
                        .contains("damaged"),
                    "size {size}, byte {byte}"
                );
            }
        }
    }
}
