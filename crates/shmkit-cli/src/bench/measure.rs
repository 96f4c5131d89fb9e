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

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::transports::Link;
use crate::error::CliError;

/// The shortest message: room for the sequence number.
pub const MIN_SIZE: usize = 8;

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
    /// The checksum of the pattern after the sequence number.
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
        bytes[..8].fill(0);
        let pattern_sum = checksum(&bytes);
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
        if received.len() != self.bytes.len() {
            return Err(format!(
                "message {expected} has {} bytes, not {}",
                received.len(),
                self.bytes.len()
            ));
        }
        let mut number = [0; 8];
        number.copy_from_slice(&received[..8]);
        let sequence = u64::from_le_bytes(number);
        if sequence != expected {
            return Err(format!(
                "message {expected} carries sequence number {sequence}: a message was lost, \
                 repeated or reordered"
            ));
        }
        if checksum(received) != self.pattern_sum.wrapping_add(sequence) {
            return Err(format!(
                "message {expected} is damaged: its checksum is wrong"
            ));
        }
        Ok(())
    }
}

/// The wrapping sum of `bytes` as little-endian 64-bit words (the last one
/// padded with zeroes). The compiler vectorises it: it reads bytes about as
/// fast as memory delivers them.
fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut sum: u64 = 0;
    for word in &mut words {
        let mut le = [0; 8];
        le.copy_from_slice(word);
        sum = sum.wrapping_add(u64::from_le_bytes(le));
    }
    let mut last = [0; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    sum.wrapping_add(u64::from_le_bytes(last))
}

/// Ping-pong, the parent's side: sends `warmup + rounds` messages one at a
/// time, each after the reply to the one before, and records the round
/// trips after the warm-up: from just before the send until the reply is
/// received and checked.
pub fn ping_pong<L: Link>(
    link: &mut L,
    size: usize,
    warmup: u64,
    rounds: u64,
) -> Result<Histogram<u64>, CliError> {
    let mut message = Message::new(size);
    let mut reply = vec![0; size];
    let mut round_trips = histogram();
    for sequence in 0..warmup + rounds {
        message.stamp(sequence);
        let start = Instant::now();
        link.send(message.bytes())?;
        let checked = link.recv(&mut reply, |bytes| message.check(bytes, sequence))?;
        let elapsed = start.elapsed();
        checked.map_err(|why| CliError::Message(format!("the reply to {why}")))?;
        if sequence >= warmup {
            round_trips.saturating_record(elapsed.as_nanos() as u64);
        }
    }
    Ok(round_trips)
}

/// Ping-pong, the peer's side: receives, checks and sends back `total`
/// messages.
pub fn echo<L: Link>(link: &mut L, size: usize, total: u64) -> Result<(), CliError> {
    let message = Message::new(size);
    let mut buf = vec![0; size];
    for sequence in 0..total {
        link.echo(&mut buf, |bytes| {
            message.check(bytes, sequence).map_err(CliError::Message)
        })?;
    }
    Ok(())
}

/// Streaming, the sender's side: sends `total` messages as fast as the
/// link takes them. With `skip` (fault injection for tests), the sequence
/// numbers jump by one at message `skip`.
pub fn send_stream<L: Link>(
    link: &mut L,
    size: usize,
    total: u64,
    skip: Option<u64>,
) -> Result<(), CliError> {
    let mut message = Message::new(size);
    for n in 0..total {
        let sequence = match skip {
            Some(skip) if n >= skip => n + 1,
            _ => n,
        };
        message.stamp(sequence);
        link.send(message.bytes())?;
    }
    Ok(())
}

/// Streaming, the receiver's side: receives and checks `warmup` messages,
/// then `messages` more, and returns how long those took: from the end of
/// the warm-up until the last one is checked.
pub fn receive_stream<L: Link>(
    link: &mut L,
    size: usize,
    warmup: u64,
    messages: u64,
) -> Result<Duration, CliError> {
    let message = Message::new(size);
    let mut buf = vec![0; size];
    let mut receive = |sequence: u64| -> Result<(), CliError> {
        link.recv(&mut buf, |bytes| message.check(bytes, sequence))?
            .map_err(CliError::Message)
    };
    for sequence in 0..warmup {
        receive(sequence)?;
    }
    let start = Instant::now();
    for sequence in warmup..warmup + messages {
        receive(sequence)?;
    }
    Ok(start.elapsed())
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
