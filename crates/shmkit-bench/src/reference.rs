//! The two physical references every transport is compared with.
//!
//! - The latency floor: two processes bounce a counter in one 64-byte
//!   aligned `AtomicU64` in a shared segment, each waiting (spinning) for
//!   the other's value and writing the next. A round trip is two transfers
//!   of one cache line between the CPUs: no transport that must tell the
//!   other process anything can be faster.
//! - The throughput ceiling: one process copies a buffer of the payload
//!   size into another, over and over (memcpy bandwidth, hot in cache): a
//!   transport that delivers bytes from one process into another cannot
//!   beat the copy of them.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use shmkit::{Attachment, Key, Mode, ReadWrite, Segment};

use super::measure::histogram;
use super::peer::Peer;
use crate::Error;

/// Spins between two checks that the other process still lives.
const SPINS_PER_CHECK: u32 = 1 << 20;

/// The shared counter of the latency floor, in a segment of its own.
#[derive(Debug)]
pub struct FloorCell {
    mapping: Attachment<ReadWrite>,
}

impl FloorCell {
    /// The counter at offset 0 of `mapping`: page aligned, so alone on its
    /// cache line.
    fn cell(&self) -> Result<&AtomicU64, Error> {
        Ok(self.mapping.atomic_u64(0)?)
    }

    /// In the peer: attaches the segment the bench made.
    pub fn open(name: &str) -> Result<FloorCell, Error> {
        let segment = Segment::open(&Key::posix(name)?)?;
        Ok(FloorCell {
            mapping: segment.attach(ReadWrite)?,
        })
    }

    /// The bench's side: `warmup + rounds` times, writes an odd number and
    /// waits for the peer's next even one; records the round trips after
    /// the warm-up.
    pub fn bounce(&self, warmup: u64, rounds: u64, peer: Peer) -> Result<Histogram<u64>, Error> {
        let cell = self.cell()?;
        let mut round_trips = histogram();
        for round in 0..warmup + rounds {
            let ping = 2 * round + 1;
            let start = Instant::now();
            // Release, and Acquire in `wait_for`: the handing over of the
            // line is what is measured; no data rides on it, but these
            // are what a real hand-over uses (and free on x86).
            cell.store(ping, Ordering::Release);
            wait_for(cell, ping + 1, Some(peer), BOUNCE_PEER_GONE)?;
            let elapsed = start.elapsed();
            if round >= warmup {
                round_trips.saturating_record(elapsed.as_nanos() as u64);
            }
        }
        Ok(round_trips)
    }

    /// The peer's side: `total` times, waits for the bench's odd number and
    /// writes the next.
    pub fn answer(&self, total: u64, parent: Peer) -> Result<(), Error> {
        let cell = self.cell()?;
        for round in 0..total {
            let ping = 2 * round + 1;
            wait_for(cell, ping, Some(parent), BOUNCE_PEER_GONE)?;
            // Release: pairs with the Acquire in the bench's `wait_for`.
            cell.store(ping + 1, Ordering::Release);
        }
        Ok(())
    }
}

/// Spins until `cell` holds `value`, checking now and then that `peer`
/// still lives.
/// The floor's error when the other process of the bounce is gone.
const BOUNCE_PEER_GONE: &str = "the other process of the cache-line bounce is gone";

/// Spins until `cell` holds `value`, checking now and then that `peer`
/// (if given) still lives; `gone` is the error's text if not. The bare
/// slots (`transports::slots`) wait on their flags with it too.
pub(crate) fn wait_for(
    cell: &AtomicU64,
    value: u64,
    peer: Option<Peer>,
    gone: &str,
) -> Result<(), Error> {
    let mut spins: u32 = 0;
    // Acquire: pairs with the other side's Release store of `value`, after
    // which what that side wrote before it is visible here.
    while cell.load(Ordering::Acquire) != value {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_PER_CHECK) && peer.is_some_and(|p| !p.is_alive()) {
            return Err(Error::Message(gone.to_owned()));
        }
    }
    Ok(())
}

/// A new POSIX segment of `len` bytes at `key`, only for its owner, after
/// removing one an earlier bench of this pid (killed) left there.
pub(crate) fn fresh_segment(key: &Key, len: u64) -> Result<Segment, Error> {
    if let Ok(stale) = Segment::open(key) {
        let _ = stale.remove();
    }
    Ok(Segment::create(key, len, Mode::OWNER_ONLY)?)
}

/// The bench's floor segment: a POSIX segment of one page, removed when
/// this is dropped (and as soon as the peer has attached it).
#[derive(Debug)]
pub struct FloorSegment {
    segment: Segment,
    /// The name the peer opens it by.
    pub name: String,
    /// The bench's mapping.
    pub cell: FloorCell,
}

impl FloorSegment {
    /// Makes the segment `/shmkit-bench-PID-floor`.
    pub fn create() -> Result<FloorSegment, Error> {
        let name = format!("/shmkit-bench-{}-floor", std::process::id());
        let segment = fresh_segment(&Key::posix(&name)?, 4096)?;
        let mapping = match segment.attach(ReadWrite) {
            Ok(mapping) => mapping,
            Err(err) => {
                let _ = segment.remove();
                return Err(err.into());
            }
        };
        Ok(FloorSegment {
            segment,
            name,
            cell: FloorCell { mapping },
        })
    }

    /// Removes the segment's name; the mappings stay.
    pub fn remove(&self) {
        let _ = self.segment.remove();
    }
}

impl Drop for FloorSegment {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Copies per second and bytes per second of copying a `size`-byte buffer
/// into another, `copies` times, in this process.
pub fn memcpy(size: usize, copies: u64) -> (f64, f64) {
    let source: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut target = vec![0u8; size];
    // Warm up: the buffers in cache, the pages mapped.
    for _ in 0..copies / 10 + 1 {
        black_box(&mut target[..]).copy_from_slice(black_box(&source[..]));
    }
    let start = Instant::now();
    for _ in 0..copies {
        black_box(&mut target[..]).copy_from_slice(black_box(&source[..]));
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let rate = copies as f64 / seconds;
    (rate, rate * size as f64)
}
