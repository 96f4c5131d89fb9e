//! An async pipeline: one tokio task receives from two rings and a topic
//! with `tokio::select!` and forwards everything to a third ring.
//!
//! The program starts as the pipeline, then runs itself again as the feeder
//! (`async_pipeline feed LEFT RIGHT TOPIC`): a blocking process that sends a
//! few messages on each ring and publishes a few on the topic, then closes
//! them. The pipeline forwards each message, tagged with where it came
//! from, until all three inputs are closed, and a second task prints what
//! comes out of the third ring. Every ring and the topic are removed when
//! done, so nothing is left in /dev/shm.
//!
//! ```text
//! cargo run -p shmkit --features tokio --example async_pipeline
//! ```

use std::process::{Command, ExitCode};

use shmkit::aio::{AsyncConsumer, AsyncProducer, AsyncSubscriber};
use shmkit::ring::Producer;
use shmkit::topic::Publisher;
use shmkit::Error;

const COUNT: u32 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("feed") if args.len() == 5 => feed(&args[2], &args[3], &args[4]),
        None => run(),
        _ => {
            eprintln!("usage: async_pipeline");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("async_pipeline: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The feeder: blocking endpoints in another process.
fn feed(left: &str, right: &str, topic: &str) -> shmkit::Result<()> {
    let mut left = Producer::open(left)?;
    let mut right = Producer::open(right)?;
    let mut topic = Publisher::open(topic)?;
    for n in 0..COUNT {
        left.send(format!("order {n}").as_bytes())?;
        right.send(format!("payment {n}").as_bytes())?;
        topic.send(format!("price tick {n}").as_bytes())?;
    }
    left.close()?;
    right.close()?;
    topic.close();
    Ok(())
}

fn run() -> shmkit::Result<()> {
    let pid = std::process::id();
    let [left, right, topic, out] =
        ["left", "right", "ticks", "out"].map(|what| format!("example-pipeline-{what}-{pid}"));
    // The inputs exist (and the subscriber has joined) before the feeder
    // starts, so that it misses nothing.
    let inputs = (
        AsyncConsumer::open(&left)?,
        AsyncConsumer::open(&right)?,
        AsyncSubscriber::open(&topic)?,
    );
    let output = AsyncProducer::open(&out)?;
    let printer = AsyncConsumer::open(&out)?;
    let mut feeder = Command::new(std::env::current_exe().expect("this program's path"))
        .args(["feed", &left, &right, &topic])
        .spawn()
        .expect("start the feeder");

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let forwarded = runtime.block_on(async {
        let printing = tokio::spawn(print(printer));
        let forwarded = forward(inputs, output).await?;
        // The output producer is dropped: the printer sees the close.
        printing.await.expect("the printer task")?;
        Ok::<_, Error>(forwarded)
    });
    let status = feeder.wait().expect("wait for the feeder");
    let forwarded = forwarded?;
    assert!(status.success(), "the feeder failed: {status}");
    println!("forwarded {forwarded} messages");
    Ok(())
}

/// Forwards every message of the three inputs to `output`, tagged, until
/// all three are closed; returns how many.
async fn forward(
    (mut left, mut right, mut ticks): (AsyncConsumer, AsyncConsumer, AsyncSubscriber),
    mut output: AsyncProducer,
) -> shmkit::Result<u32> {
    let (mut left_open, mut right_open, mut ticks_open) = (true, true, true);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let mut forwarded = 0;
    while left_open || right_open || ticks_open {
        // Each receive is cancel-safe: the branches that lose a round take
        // nothing, and the next round receives what they would have.
        let (tag, message) = tokio::select! {
            got = left.recv_vec(&mut a), if left_open => match got {
                Ok(_) => ("left", &a),
                Err(Error::Closed { .. }) => { left_open = false; continue }
                Err(other) => return Err(other),
            },
            got = right.recv_vec(&mut b), if right_open => match got {
                Ok(_) => ("right", &b),
                Err(Error::Closed { .. }) => { right_open = false; continue }
                Err(other) => return Err(other),
            },
            got = ticks.recv_vec(&mut c), if ticks_open => match got {
                Ok(_) => ("topic", &c),
                Err(Error::Closed { .. }) => { ticks_open = false; continue }
                Err(other) => return Err(other),
            },
        };
        let mut tagged = format!("{tag}: ").into_bytes();
        tagged.extend_from_slice(message);
        output.send(&tagged).await?;
        forwarded += 1;
    }
    Ok(forwarded)
}

/// Prints what comes out of the pipeline until its ring is closed.
async fn print(mut printer: AsyncConsumer) -> shmkit::Result<()> {
    let mut line = Vec::new();
    loop {
        match printer.recv_vec(&mut line).await {
            Ok(_) => println!("{}", String::from_utf8_lossy(&line)),
            Err(Error::Closed { .. }) => return Ok(()),
            Err(other) => return Err(other),
        }
    }
}
