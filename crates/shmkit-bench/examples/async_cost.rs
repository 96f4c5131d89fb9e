//! Fixed amounts of async ring work, for counting what the adapters of
//! `shmkit::aio` cost per message rather than timing them: instructions
//! under `valgrind --tool=callgrind`.
//!
//! ```text
//! async_cost one-thread SIZE COUNT WAY   # COUNT grant+commit, read in one
//!                                        # thread; WAY: async (AsyncProducer,
//!                                        # AsyncConsumer in one tokio task) or
//!                                        # block (the blocking endpoints, the
//!                                        # same loop without tokio)
//! async_cost blocks SIZE BLOCKS PER_BLOCK WAY   # a stream to a consumer
//!                                        # process, the two pinned to CPUs 0
//!                                        # and 1, both sides WAY: the median
//!                                        # rate of the consumer's blocks of
//!                                        # PER_BLOCK (as `ring_cost blocks`)
//! async_cost send SIZE COUNT WAY         # COUNT sends, each stamped, in
//!                                        # runs of 256 polled once in place
//!                                        # (then in `block_on`), into a ring
//!                                        # that holds them all; WAY async
//!                                        # (send().await), loop (write_while),
//!                                        # sink (the producer's Sink,
//!                                        # poll_ready then start_send), block
//! async_cost receive SIZE COUNT WAY      # COUNT read in place and checked,
//!                                        # from a ring a blocking producer
//!                                        # filled first; WAY async
//!                                        # (read().await), loop (read_while),
//!                                        # block, or fill (only the filling)
//! async_cost sides SIZE COUNT            # `shmkit bench`'s own stream loops
//!                                        # over shmkit-async (sender, then
//!                                        # receiver) in one thread: count each
//!                                        # side with callgrind's inclusive cost
//!                                        # of StreamSides::send and ::receive,
//!                                        # against `ring_cost sides spin`
//! async_cost topic SIZE COUNT WAY        # COUNT sends of a topic's publisher,
//!                                        # each received (copied) by its one
//!                                        # subscriber, in one thread; WAY:
//!                                        # async (one tokio task) or block
//! async_cost call SIZE COUNT WAY         # COUNT calls of a service in one
//!                                        # thread: send_request, the server's
//!                                        # recv_request and reply of a SIZE
//!                                        # body, wait; WAY async or block
//! async_cost typed-call COUNT            # COUNT calls of a typed service
//!                                        # (u64 to u64) in one task: the
//!                                        # async client's send, the async
//!                                        # server's recv, reply, the wait
//! async_cost typed-topic COUNT           # COUNT u64s of a typed topic, each
//!                                        # published (blocking), then
//!                                        # received by an async subscriber
//! async_cost wake GAP_US COUNT WAY       # COUNT wake-ups of a parked
//!                                        # consumer process (CPU 1), one every
//!                                        # GAP_US: from the send to the read
//! ```
//!
//! `send` and `receive` split `one-thread`'s count between the sides, with
//! the bench's own loops (`receive`: less its `fill`). `wake` times what a
//! wake-up costs each way of waiting, on this machine as it is now.
//! `blocks` is for timing on a busy machine: the median of many short
//! blocks leaves out the ones another process's time slice cut into. Run
//! `block` and `async` one after the other, more than once, and compare.
//!
//! Per message, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out. The async loop runs in
//! one task of a current-thread runtime, as a tokio program's loop would,
//! so tokio's cooperative budget makes it yield every 128 verbs, as it
//! would there.

use shmkit::aio::{AsyncConsumer, AsyncProducer};
use shmkit::ring::{Consumer, Producer, SEGMENT_PREFIX};
use shmkit_bench::cost::{pin, RemoveSegment};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match (
        args.first().map(String::as_str),
        args.get(3).map(String::as_str),
    ) {
        (Some("one-thread"), Some("async")) => one_thread_async(arg(1), arg(2)),
        (Some("one-thread"), Some("block")) => one_thread_block(arg(1), arg(2)),
        (Some("blocks"), Some(_)) if args.len() == 5 => {
            blocks(arg(1), arg(2), arg(3), &args[4], None);
        }
        (Some("blocks-consume"), Some(_)) => {
            blocks(arg(1), arg(2), arg(3), &args[4], Some(&args[5]))
        }
        (Some("sides"), None) if args.len() == 3 => sides(arg(1), arg(2)),
        (Some("topic"), Some(way)) => topic(arg(1), arg(2), way == "async"),
        (Some("call"), Some(way)) => call(arg(1), arg(2), way == "async"),
        (Some("typed-call"), None) if args.len() == 2 => typed_call(arg(1)),
        (Some("typed-topic"), None) if args.len() == 2 => typed_topic(arg(1)),
        (Some("send"), Some(way)) => send(arg(1), arg(2), way),
        (Some("receive"), Some(way)) => receive(arg(1), arg(2), way),
        (Some("wake"), Some(way)) => wake(arg(1), arg(2), way, args.get(4).map(String::as_str)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: async_cost one-thread SIZE COUNT async|block | blocks SIZE BLOCKS PER_BLOCK async|block \
         | sides SIZE COUNT | topic SIZE COUNT async|block | call SIZE COUNT async|block | typed-call COUNT | typed-topic COUNT | send SIZE COUNT async|block|sink | receive SIZE COUNT async|block|fill | wake GAP_US COUNT async|block"
    );
    std::process::exit(2)
}

fn one_thread_async(size: usize, count: usize) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let mut producer = AsyncProducer::open(&name).expect("a producer");
    let mut consumer = AsyncConsumer::open(&name).expect("a consumer");
    let message = vec![0x5a_u8; size];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let sum = runtime.block_on(async {
        let mut sum: u64 = 0;
        for _ in 0..count {
            let mut grant = producer.grant(size).await.expect("grant");
            grant.copy_from_slice(std::hint::black_box(&message));
            grant.commit();
            let got = consumer.read().await.expect("read");
            sum = sum.wrapping_add(u64::from(got[size - 1]));
        }
        sum
    });
    println!("{sum}");
}

fn one_thread_block(size: usize, count: usize) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let mut producer = Producer::open(&name).expect("a producer");
    let mut consumer = Consumer::open(&name).expect("a consumer");
    let message = vec![0x5a_u8; size];
    let mut sum: u64 = 0;
    for _ in 0..count {
        let mut grant = producer.grant(size).expect("grant");
        grant.copy_from_slice(std::hint::black_box(&message));
        grant.commit();
        let got = consumer.read().expect("read");
        sum = sum.wrapping_add(u64::from(got[size - 1]));
    }
    println!("{sum}");
}

/// Pins this process to `cpu` (as `shmkit bench` pins its two processes).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
}

/// The producer (no `ring`: it makes one and starts the consumer) or the
/// consumer of a stream of `blocks * per_block` messages, both `way`.
fn blocks(size: usize, blocks: usize, per_block: usize, way: &str, ring: Option<&str>) {
    let total = blocks * per_block;
    let Some(name) = ring else {
        pin(0);
        let name = format!("async-cost-{}", std::process::id());
        let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
        let producer = Producer::open(&name).expect("a producer");
        let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
            .arg("blocks-consume")
            .args([size, blocks, per_block].map(|n| n.to_string()))
            .args([way, &name])
            .spawn()
            .expect("the consumer");
        let message = vec![0x5a_u8; size];
        if way == "async" {
            let mut producer = AsyncProducer::from(producer);
            runtime().block_on(async {
                for _ in 0..total {
                    let mut grant = producer.grant(size).await.expect("grant");
                    grant.copy_from_slice(&message);
                    grant.commit();
                }
            });
            producer.into_inner().close().expect("close the ring");
        } else {
            let mut producer = producer;
            for _ in 0..total {
                let mut grant = producer.grant(size).expect("grant");
                grant.copy_from_slice(&message);
                grant.commit();
            }
            producer.close().expect("close the ring");
        }
        assert!(child.wait().expect("the consumer ends").success());
        return;
    };
    pin(1);
    let consumer = Consumer::open(name).expect("a consumer");
    let mut rates = Vec::with_capacity(blocks);
    let mut sum: u64 = 0;
    let mut add = |message: &[u8]| {
        for word in message.chunks_exact(8) {
            sum = sum.wrapping_add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
    };
    if way == "async" {
        let mut consumer = AsyncConsumer::from(consumer);
        runtime().block_on(async {
            for block in 0..blocks {
                let start = std::time::Instant::now();
                for _ in 0..per_block {
                    add(&consumer.read().await.expect("read"));
                }
                if block >= blocks / 10 {
                    rates.push(per_block as f64 / start.elapsed().as_secs_f64());
                }
            }
        });
    } else {
        let mut consumer = consumer;
        for block in 0..blocks {
            let start = std::time::Instant::now();
            for _ in 0..per_block {
                add(&consumer.read().expect("read"));
            }
            // The first tenth warms up.
            if block >= blocks / 10 {
                rates.push(per_block as f64 / start.elapsed().as_secs_f64());
            }
        }
    }
    rates.sort_unstable_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{size} B, {way}: median of {} blocks of {per_block}: {:.2} M msgs/s ({sum})",
        rates.len(),
        median / 1e6
    );
}

/// The bench's stream loops over `shmkit-async`, each side in turn.
fn sides(size: usize, count: usize) {
    let transport = shmkit_bench::Transport::ShmkitAsync;
    let mut sides = shmkit_bench::cost::StreamSides::new(transport, size, count as u64)
        .expect("a ring for the stream");
    let sent = sides.send();
    let received = sides.receive();
    assert_eq!((sent, received), (count as u64, count as u64));
}

/// `count` messages of `size` bytes through a topic, each sent and then
/// received into a buffer, awaited (`AsyncPublisher`, `AsyncSubscriber`)
/// or by the blocking members.
fn topic(size: usize, count: usize, is_async: bool) {
    use shmkit::aio::{AsyncPublisher, AsyncSubscriber};
    use shmkit::topic::{Publisher, Subscriber};
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(shmkit::topic::SEGMENT_PREFIX, &name);
    let subscriber = Subscriber::open(&name).expect("a subscriber");
    let publisher = Publisher::open(&name).expect("a publisher");
    let message = vec![0x5a_u8; size];
    let mut buf = vec![0u8; size];
    let mut sum: u64 = 0;
    if is_async {
        let mut subscriber = AsyncSubscriber::from(subscriber);
        let mut publisher = AsyncPublisher::from(publisher);
        runtime().block_on(async {
            for _ in 0..count {
                publisher
                    .send(std::hint::black_box(&message))
                    .await
                    .expect("send");
                let got = subscriber.recv(&mut buf).await.expect("recv");
                sum = sum.wrapping_add(got.sequence + u64::from(buf[size - 1]));
            }
        });
    } else {
        let (mut subscriber, mut publisher) = (subscriber, publisher);
        for _ in 0..count {
            publisher
                .send(std::hint::black_box(&message))
                .expect("send");
            let got = subscriber.recv(&mut buf).expect("recv");
            sum = sum.wrapping_add(got.sequence + u64::from(buf[size - 1]));
        }
    }
    println!("{sum}");
}

/// `count` calls of a service with `size`-byte bodies in one thread, as
/// `service_cost call` makes them, awaited (`AsyncClient`, `AsyncServer`)
/// or by the blocking members.
fn call(size: usize, count: usize, is_async: bool) {
    use shmkit::aio::{AsyncClient, AsyncServer};
    use shmkit::service::{Client, Server};
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(shmkit::service::SEGMENT_PREFIX, &name);
    let server = Server::open(&name).expect("a server");
    let client = Client::connect(&name).expect("a client");
    let body = vec![0x5a_u8; size];
    let mut sum: u64 = 0;
    if is_async {
        let (mut server, mut client) = (AsyncServer::from(server), AsyncClient::from(client));
        runtime().block_on(async {
            for _ in 0..count {
                let call = client
                    .send_request(std::hint::black_box(&body))
                    .await
                    .expect("send");
                let request = server.recv_request().await.expect("recv");
                let caller = request.caller();
                drop(request);
                server.get_mut().reply(caller, &body).expect("reply");
                let response = client.wait(call).await.expect("wait");
                sum = sum.wrapping_add(u64::from(response[size - 1]));
            }
        });
    } else {
        let (mut server, mut client) = (server, client);
        for _ in 0..count {
            let call = client
                .send_request(std::hint::black_box(&body))
                .expect("send");
            let request = server.recv_request().expect("recv");
            let caller = request.caller();
            drop(request);
            server.reply(caller, &body).expect("reply");
            let response = client.wait(call).expect("wait");
            sum = sum.wrapping_add(u64::from(response[size - 1]));
        }
    }
    println!("{sum}");
}

/// `count` calls of a typed service in one task, each awaited in turn.
fn typed_call(count: usize) {
    use shmkit::aio::{AsyncServiceClient, AsyncServiceServer};
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(shmkit::service::SEGMENT_PREFIX, &name);
    let sum = runtime().block_on(async {
        let mut server = AsyncServiceServer::<u64, u64>::open(&name).expect("a server");
        let mut client = AsyncServiceClient::<u64, u64>::connect(&name).expect("a client");
        let mut sum = 0u64;
        for n in 0..count as u64 {
            let call = client.send(&n).await.expect("send");
            let (caller, got) = server.recv().await.expect("recv");
            server.get_mut().reply(caller, &(got + 1)).expect("reply");
            sum = sum.wrapping_add(client.wait(call).await.expect("wait"));
        }
        sum
    });
    println!("{sum}");
}

/// `count` values of a typed topic, each published by a blocking
/// publisher and then received by an async subscriber, in one task.
fn typed_topic(count: usize) {
    use shmkit::aio::AsyncTypedSubscriber;
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(shmkit::topic::SEGMENT_PREFIX, &name);
    let sum = runtime().block_on(async {
        let mut subscriber = AsyncTypedSubscriber::<u64>::open(&name).expect("a subscriber");
        let mut publisher = shmkit::channel::Publisher::<u64>::open(&name).expect("a publisher");
        let mut sum = 0u64;
        for n in 0..count as u64 {
            publisher.send(&n).expect("send");
            sum = sum.wrapping_add(subscriber.recv().await.expect("recv").1);
        }
        sum
    });
    println!("{sum}");
}

/// A ring that holds `count` messages of `size` bytes, for `send` and
/// `receive` (which never wait for room).
fn ring_for(count: usize, size: usize) -> shmkit::ring::Options {
    let record = 8 + size.next_multiple_of(8);
    let capacity = ((count + 1) * record).next_power_of_two();
    shmkit::ring::Options::default().capacity(capacity as u64)
}

/// The bench's sender (`shmkit bench`'s `send_stream`): `count` messages
/// (a multiple of 256), each stamped with its number, `async`: in runs of
/// 256 as the `shmkit-async` transport sends them, `sink`: so through the
/// producer's `Sink`, else as `shmkit-block` does.
fn send(size: usize, count: usize, way: &str) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let options = ring_for(count, size);
    let producer = Producer::open_with(&name, &options).expect("a producer");
    let _consumer = Consumer::open_with(&name, &options).expect("a consumer");
    let mut message = vec![0x5a_u8; size.max(8)];
    let runtime = runtime();
    let mut producer = AsyncProducer::from(producer);
    for start in (0..count as u64).step_by(256) {
        let run = start..start + 256;
        let sent: Result<(), shmkit::Error> = if way == "async" {
            let (tx, message) = (&mut producer, &mut message);
            in_place_then_runtime(&runtime, async move {
                for sequence in run {
                    message[..8].copy_from_slice(&sequence.to_le_bytes());
                    tx.send(message).await?;
                }
                Ok(())
            })
        } else if way == "loop" {
            let (tx, message) = (&mut producer, &mut message);
            let len = message.len();
            let mut sequence = run.start;
            in_place_then_runtime(&runtime, async move {
                let written = tx.write_while(len, |space| {
                    if sequence == run.end {
                        return false;
                    }
                    space.copy_from_slice(message);
                    space[..8].copy_from_slice(&sequence.to_le_bytes());
                    sequence += 1;
                    true
                });
                written.await.map(|_| ())
            })
        } else if way == "sink" {
            use futures_sink::Sink;
            use std::pin::Pin;
            let (tx, message) = (&mut producer, &mut message);
            in_place_then_runtime(&runtime, async move {
                for sequence in run {
                    message[..8].copy_from_slice(&sequence.to_le_bytes());
                    std::future::poll_fn(|cx| Sink::<&[u8]>::poll_ready(Pin::new(&mut *tx), cx))
                        .await?;
                    Pin::new(&mut *tx).start_send(message.as_slice())?;
                }
                std::future::poll_fn(|cx| Sink::<&[u8]>::poll_flush(Pin::new(&mut *tx), cx)).await
            })
        } else {
            let tx = producer.get_mut();
            run.into_iter().try_for_each(|sequence| {
                message[..8].copy_from_slice(&sequence.to_le_bytes());
                tx.send(&message)
            })
        };
        sent.expect("send");
    }
}

/// As the `shmkit-async` transport runs a future: polled once in place,
/// then on the runtime if it must wait.
fn in_place_then_runtime<F: std::future::Future>(
    runtime: &tokio::runtime::Runtime,
    future: F,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
        return output;
    }
    runtime.block_on(future)
}

/// The bench's receiver (`receive_stream`'s loop: read in place, check the
/// length and the number) over `count` messages a blocking producer sent
/// first; `fill` sends them only.
fn receive(size: usize, count: usize, way: &str) {
    let name = format!("async-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
    let options = ring_for(count, size);
    let mut producer = Producer::open_with(&name, &options).expect("a producer");
    let consumer = Consumer::open_with(&name, &options).expect("a consumer");
    let mut message = vec![0x5a_u8; size.max(8)];
    for sequence in (0..count as u64).chain([u64::MAX]) {
        message[..8].copy_from_slice(&sequence.to_le_bytes());
        producer.send(&message).expect("send");
    }
    let mut next = 0u64;
    // Whether `bytes` is message `next` (then the next is awaited).
    let mut expected = |bytes: &[u8]| {
        let sequence = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let in_order = sequence == next;
        next += u64::from(in_order);
        in_order
    };
    let len = message.len();
    let received: Result<(), shmkit::Error> = match way {
        "async" => {
            let mut rx = AsyncConsumer::from(consumer);
            in_place_then_runtime(&runtime(), async {
                loop {
                    let message = rx.read().await?;
                    if message.len() != len || !expected(&message) {
                        return Ok(());
                    }
                }
            })
        }
        "loop" => {
            let mut rx = AsyncConsumer::from(consumer);
            in_place_then_runtime(&runtime(), async {
                let taken = rx.read_while(|message| message.len() == len && expected(message));
                taken.await.map(|_| ())
            })
        }
        "block" => {
            let mut rx = consumer;
            (|| loop {
                let message = rx.read()?;
                if message.len() != len || !expected(&message) {
                    return Ok(());
                }
            })()
        }
        _ => Ok(()),
    };
    received.expect("receive");
    println!("{next}");
}

/// `CLOCK_MONOTONIC` nanoseconds, the same in both processes.
fn monotonic_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The sender (no `ring`: it makes one and starts the consumer, then sends
/// it its clock every `gap_us`) or the consumer (CPU 1, waiting `way` for
/// each): prints percentiles of how long each message took from the send
/// to the read, which a consumer that spun past its spin and parked spends
/// being woken.
fn wake(gap_us: usize, count: usize, way: &str, ring: Option<&str>) {
    let Some(name) = ring else {
        pin(0);
        let name = format!("async-cost-{}", std::process::id());
        let _remove = RemoveSegment::new(SEGMENT_PREFIX, &name);
        let mut producer = Producer::open(&name).expect("a producer");
        let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
            .arg("wake")
            .args([gap_us, count].map(|n| n.to_string()))
            .args([way, &name])
            .spawn()
            .expect("the consumer");
        for _ in 0..count {
            std::thread::sleep(std::time::Duration::from_micros(gap_us as u64));
            producer
                .send(&monotonic_nanos().to_le_bytes())
                .expect("send");
        }
        producer.close().expect("close the ring");
        assert!(child.wait().expect("the consumer ends").success());
        return;
    };
    pin(1);
    let consumer = Consumer::open(name).expect("a consumer");
    let mut took = Vec::with_capacity(count);
    let mut stamp = |bytes: &[u8]| {
        let sent = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        took.push(monotonic_nanos().saturating_sub(sent));
    };
    if way == "async" {
        let mut consumer = AsyncConsumer::from(consumer);
        runtime().block_on(async {
            for _ in 0..count {
                stamp(&consumer.read().await.expect("read"));
            }
        });
    } else {
        let mut consumer = consumer;
        for _ in 0..count {
            stamp(&consumer.read().expect("read"));
        }
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{way}: {count} messages {gap_us} us apart, send to read: min {:.1} p10 {:.1} p50 {:.1} p90 {:.1} us",
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.9)
    );
}
