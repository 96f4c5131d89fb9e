//! Two processes talking over typed channels, with two codecs.
//!
//! The program starts as the receiver, then runs itself again as the sender
//! (`typed_channel child POSTCARD_RING RKYV_RING`). The child sends a few
//! readings on a channel with the default codec (postcard, received as
//! owned values) and the same on one with the `Rkyv` codec (archives,
//! validated, read in place), then exits; the parent prints what arrives until each channel is closed.
//! Both channels remove their rings when done, so nothing is left in
//! /dev/shm.
//!
//! ```text
//! cargo run -p shmkit --example typed_channel
//! ```

use std::process::{Command, ExitCode};

use serde::{Deserialize, Serialize};
use shmkit::channel::{Receiver, Rkyv, Sender};
use shmkit::{Error, Key, Segment};

/// One message: strings, a vector, a nested enum.
#[derive(
    Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq,
)]
struct Reading {
    sensor: String,
    seq: u32,
    values: Vec<f64>,
    status: Status,
}

#[derive(
    Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq,
)]
enum Status {
    Ok,
    Warning(String),
}

fn reading(seq: u32) -> Reading {
    Reading {
        sensor: format!("thermometer-{}", seq % 2),
        seq,
        values: (0..=seq).map(|i| 20.0 + f64::from(i) * 0.25).collect(),
        status: if seq == 2 {
            Status::Warning("rising".into())
        } else {
            Status::Ok
        },
    }
}

const COUNT: u32 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("child") if args.len() == 4 => child(&args[2], &args[3]),
        None => parent(),
        _ => {
            eprintln!("usage: typed_channel");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("typed_channel: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let postcard_ring = format!("example-typed-postcard-{pid}");
    let rkyv_ring = format!("example-typed-rkyv-{pid}");
    // Normally each channel removes its ring once both ends are done; this
    // also removes them if the child dies half-way.
    let _cleanup = [RemoveRing(&postcard_ring), RemoveRing(&rkyv_ring)];

    let mut readings = Receiver::<Reading>::open(&postcard_ring)?;
    let mut archived = Receiver::<Reading, Rkyv>::open(&rkyv_ring)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", &postcard_ring, &rkyv_ring])
        .spawn()?;

    loop {
        match readings.recv() {
            Ok(reading) => println!("parent: received (postcard) {reading:?}"),
            Err(Error::Closed { .. }) => break,
            Err(err) => return Err(err.into()),
        }
    }
    loop {
        match archived.recv() {
            // Fields are read where they lie in the validated archive.
            Ok(reading) => {
                let sum: f64 = reading.values.iter().map(|v| v.to_native()).sum();
                let status = match &reading.status {
                    ArchivedStatus::Ok => "ok".to_owned(),
                    ArchivedStatus::Warning(why) => format!("warning: {why}"),
                };
                println!(
                    "parent: received (rkyv)     sensor {}, seq {}, mean {:.3}, {status}",
                    reading.sensor,
                    reading.seq,
                    sum / reading.values.len() as f64,
                );
            }
            Err(Error::Closed { .. }) => break,
            Err(err) => return Err(err.into()),
        }
    }
    drop((readings, archived));

    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the child failed: {status}").into());
    }
    let left: Vec<_> = [&postcard_ring, &rkyv_ring]
        .into_iter()
        .filter(|name| ring_key(name).is_ok_and(|key| Segment::open(&key).is_ok()))
        .collect();
    println!("parent: done; rings left in /dev/shm: {left:?}");
    Ok(())
}

fn child(postcard_ring: &str, rkyv_ring: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut readings = Sender::<Reading>::open(postcard_ring)?;
    let mut archived = Sender::<Reading, Rkyv>::open(rkyv_ring)?;
    for seq in 0..COUNT {
        let reading = reading(seq);
        println!("child:  sending           {reading:?}");
        readings.send(&reading)?;
        archived.send(&reading)?;
    }
    // Closing tells the parent that nothing more will come.
    readings.close();
    archived.close();
    println!("child:  closed both channels");
    Ok(())
}

fn ring_key(name: &str) -> shmkit::Result<Key> {
    Key::posix(&format!("{}{name}", shmkit::ring::SEGMENT_PREFIX))
}

/// Removes ring `0`'s segment, if it is still there, when dropped.
struct RemoveRing<'a>(&'a str);

impl Drop for RemoveRing<'_> {
    fn drop(&mut self) {
        if let Ok(segment) = ring_key(self.0).and_then(|key| Segment::open(&key)) {
            let _ = segment.remove();
        }
    }
}
