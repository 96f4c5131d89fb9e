//! The async adapters (feature `tokio`) between real processes, under
//! tokio's multi-thread runtime: a thousand endpoints parked at once,
//! receives and sends cancelled by a timer at random moments, peers killed
//! with SIGKILL while a task awaits them, the CPU a parked endpoint uses,
//! and the polling reactor that replaces `futex_waitv` where it is refused
//! (forced by `SHMKIT_REACTOR=polling`, and by a seccomp filter).
//!
//! Every test uses its own rings (`test-TAG-PID-N`) with guards that remove
//! them even if the test fails. Nothing sleeps to synchronise: children
//! report on stdout, and the parent waits for a parked task by watching
//! its futex word in shared memory.

mod processes;
mod ring_layout;
mod sequence;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shmkit::aio::{
    reactor_kind, AsyncClient, AsyncConsumer, AsyncProducer, AsyncPublisher, AsyncServer,
    AsyncServiceServer, AsyncSubscriber, AsyncTypedSubscriber, ReactorKind,
};
use shmkit::ring::{Consumer, Options, Producer};
use shmkit::Error;

use processes::{
    args, next_command, report, unique_ring_name, wait_until, Peer, RingCleanup, TopicCleanup,
    Watchdog, ROLE,
};
use ring_layout::{map_ring, sleeping, CONSUMER_SLEEPING_AT, PRODUCER_SLEEPING_AT, SMALL};
use sequence::Rng;

/// Messages of the cancellation tests.
const STREAM: u64 = 100_000;

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let args = args();
    let args: Vec<&str> = args.split(' ').collect();
    match role.as_str() {
        "produce-many" => produce_many(args[0], args[1].parse().unwrap(), args[2].parse().unwrap()),
        "stream-out" => stream_out(args[0], args[1].parse().unwrap(), args[2].parse().unwrap()),
        "stream-in" => stream_in(args[0], args[1].parse().unwrap(), args[2].parse().unwrap()),
        "hold-producer" => hold_producer(args[0], args[1].parse().unwrap()),
        "hold-consumer" => hold_consumer(args[0]),
        "parked-cpu" => parked_cpu(args[0]),
        "service-client" => service_client(args[0], args[1].parse().unwrap()),
        "hold-server" => hold_server(args[0]),
        "service-server" => service_server(args[0], args[1].parse().unwrap()),
        "typed-client" => typed_client(args[0], args[1].parse().unwrap()),
        "typed-publisher" => typed_publisher(args[0], args[1].parse().unwrap()),
        "scenario" => {
            match args[0] {
                "seccomp-enosys" => forbid_futex_waitv(libc::ENOSYS),
                "seccomp-eperm" => forbid_futex_waitv(libc::EPERM),
                _ => {}
            }
            assert_eq!(reactor_kind(), ReactorKind::Polling, "{args:?}");
            thousand_endpoints(200);
            killed_producer_gives_peer_gone();
            select_against_timer_on_receive(20_000);
            report("scenario passed");
        }
        other => panic!("unknown role {other}"),
    }
}

/// The runtime of every test: tokio's multi-thread scheduler on two
/// workers (the machine's cores).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Message `j` of ring `i` in `produce_many`.
fn many_message(i: usize, j: usize) -> Vec<u8> {
    format!("ring {i} message {j}").into_bytes()
}

/// Child: opens the producers of rings `PREFIX-0` to `PREFIX-(count-1)`,
/// reports, and on "go" sends `per` messages to each, then closes them all.
fn produce_many(prefix: &str, count: usize, per: usize) {
    let mut producers: Vec<Producer> = (0..count)
        .map(|i| Producer::open_with(&format!("{prefix}-{i}"), &small()).unwrap())
        .collect();
    report("opened");
    assert_eq!(next_command(), "go");
    for j in 0..per {
        for (i, producer) in producers.iter_mut().enumerate() {
            producer.send(&many_message(i, j)).unwrap();
        }
    }
    for producer in producers {
        producer.close().unwrap();
    }
    report("done");
    assert_eq!(next_command(), "");
}

fn small() -> Options {
    Options::default().capacity(SMALL)
}

/// `count` async consumers, each a task parked on its own ring, are woken
/// by a child's producers and receive everything, then `Closed`.
fn thousand_endpoints(count: usize) {
    const PER: usize = 3;
    let _watchdog = Watchdog::new("parked endpoints", Duration::from_secs(120));
    let prefix = unique_ring_name("parked");
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let _cleanup: Vec<RingCleanup> = names.iter().cloned().map(RingCleanup).collect();
    let consumers: Vec<AsyncConsumer> = names
        .iter()
        .map(|name| AsyncConsumer::open_with(name, &small()).unwrap())
        .collect();
    let mut child = Peer::spawn("produce-many", &format!("{prefix} {count} {PER}"), None);
    assert_eq!(child.expect_line(), "opened");
    let headers: Vec<_> = names.iter().map(|name| map_ring(name)).collect();
    let rt = runtime();
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            rt.spawn(async move {
                let mut got = Vec::new();
                let mut buf = Vec::new();
                loop {
                    match consumer.recv_vec(&mut buf).await {
                        Ok(_) => got.push(buf.clone()),
                        Err(Error::Closed { .. }) => return got,
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    // Every task has announced its sleep (and so parked, or is about to).
    wait_until("every consumer sleeps", || {
        headers.iter().all(|h| sleeping(h, CONSUMER_SLEEPING_AT))
    });
    // Not a thread per waiting endpoint: a reactor thread per 127 (other
    // tests of this process may park a few more meanwhile). The last
    // shard's thread may still be starting (it names itself).
    let least = count.div_ceil(127);
    wait_until("the reactor's threads run", || reactor_threads() >= least);
    let reactors = reactor_threads();
    assert!(
        (least..=least + 4).contains(&reactors),
        "{reactors} reactor threads for {count} parked endpoints"
    );
    child.send("go");
    let started = Instant::now();
    rt.block_on(async {
        for (i, task) in tasks.into_iter().enumerate() {
            let got = task.await.unwrap();
            let expected: Vec<Vec<u8>> = (0..PER).map(|j| many_message(i, j)).collect();
            assert_eq!(got, expected, "ring {i}");
        }
    });
    println!(
        "{count} parked endpoints ({:?} reactor, {reactors} threads) woken and drained of {} messages in {:?}",
        reactor_kind(),
        count * PER,
        started.elapsed()
    );
    assert_eq!(child.expect_line(), "done");
    child.finish();
}

/// How many of this process's threads are the reactor's
/// (`shmkit-reactor-N`, cut to 15 bytes in `/proc/self/task/*/comm`).
fn reactor_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("shmkit-reactor"))
        .count()
}

#[test]
fn a_thousand_parked_endpoints_are_all_woken_and_drained() {
    thousand_endpoints(1000);
}

/// Message `n` of a cancellation stream: its number, then filler of a
/// length and content that depend on it.
fn stream_message(n: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&n.to_le_bytes());
    // The same length for 61 messages in turn, so that `write_while`
    // (which writes messages of one length) has runs of them.
    let filler = ((n / 61).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize;
    out.extend((0..filler).map(|k| (n as u8).wrapping_add(k as u8)));
}

/// Child: a blocking producer streams `count` messages into ring `name`,
/// pausing up to 1.5 ms at random moments, then closes.
fn stream_out(name: &str, count: u64, seed: u64) {
    let mut producer = Producer::open_with(name, &small()).unwrap();
    report("opened");
    let mut rng = Rng::new(seed);
    let mut message = Vec::new();
    for n in 0..count {
        stream_message(n, &mut message);
        producer.send(&message).unwrap();
        if rng.below(64) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
    }
    producer.close().unwrap();
}

/// Child: a blocking consumer receives from ring `name`, pausing at
/// random moments, checking every message, until `Closed`; reports how
/// many it received.
fn stream_in(name: &str, count: u64, seed: u64) {
    let mut consumer = Consumer::open_with(name, &small()).unwrap();
    report("opened");
    let mut rng = Rng::new(seed);
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    let mut n = 0;
    loop {
        match consumer.recv_vec(&mut buf) {
            Ok(_) => {
                stream_message(n, &mut expected);
                assert_eq!(buf, expected, "message {n}");
                n += 1;
            }
            Err(Error::Closed { .. }) => break,
            Err(other) => panic!("{other}"),
        }
        if rng.below(64) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
    }
    assert_eq!(n, count);
    report(&format!("received {n}"));
}

/// A receive raced against a timer of random length (in turn `recv`, the
/// stream's `next`, and a `read_while` run), `count` times over: every
/// message arrives once, in order, however often the timer wins.
fn select_against_timer_on_receive(count: u64) {
    let _watchdog = Watchdog::new("cancelled receives", Duration::from_secs(300));
    let name = unique_ring_name("cancel-recv");
    let _cleanup = RingCleanup(name.clone());
    let mut consumer = AsyncConsumer::open_with(&name, &small()).unwrap();
    let seed = u64::from(std::process::id());
    let mut child = Peer::spawn("stream-out", &format!("{name} {count} {seed}"), None);
    assert_eq!(child.expect_line(), "opened");
    let (received, single_wins, cut_runs) = runtime().block_on(async move {
        let mut rng = Rng::new(seed ^ 0x7157);
        // Timer wins over a single receive, and over a run that had taken
        // messages in earlier polls.
        let (mut n, mut single_wins, mut cut_runs) = (0, 0u64, 0u64);
        let mut buf = [0u8; 2048];
        let mut expected = Vec::new();
        for turn in 0u64.. {
            let timer = tokio::time::sleep(Duration::from_micros(rng.below(2000)));
            let got = match turn % 3 {
                0 => tokio::select! {
                    got = consumer.recv(&mut buf) => got.map(|len| Some(buf[..len].to_vec())),
                    () = timer => { single_wins += 1; continue }
                },
                1 => tokio::select! {
                    got = consumer.next() => got.transpose(),
                    () = timer => { single_wins += 1; continue }
                },
                _ => {
                    // A run of up to 64 messages, checked in the loop: what
                    // it took before the timer won (in earlier polls) is
                    // counted, the rest is the next receive's.
                    let want = 1 + rng.below(64);
                    let mut took = 0;
                    let outcome = tokio::select! {
                        got = consumer.read_while(|message| {
                            if took == want {
                                return false; // left for the next receive
                            }
                            stream_message(n + took, &mut expected);
                            assert_eq!(message, &expected[..], "message {}", n + took);
                            took += 1;
                            true
                        }) => Some(got),
                        () = timer => None,
                    };
                    n += took;
                    match outcome {
                        None => cut_runs += u64::from(took > 0),
                        Some(Ok(taken)) => assert_eq!(taken as u64, took),
                        Some(Err(Error::Closed { .. })) => break,
                        Some(Err(other)) => panic!("{other}"),
                    }
                    continue;
                }
            };
            match got {
                Ok(Some(message)) => {
                    stream_message(n, &mut expected);
                    assert_eq!(message, expected, "message {n}");
                    n += 1;
                }
                Ok(None) | Err(Error::Closed { .. }) => break,
                Err(other) => panic!("{other}"),
            }
        }
        (n, single_wins, cut_runs)
    });
    println!(
        "{received} messages received; the timer won over {single_wins} single receives \
         and {cut_runs} runs after they took messages"
    );
    assert_eq!(received, count);
    assert!(cut_runs > 0, "the timer never cut a run short");
    // (A short stream, as the polling scenario's, may see no single win.)
    if count >= STREAM {
        assert!(single_wins > 0, "the timer never won over a single receive");
    }
    child.finish();
}

#[test]
fn a_receive_cancelled_by_a_timer_at_random_moments_loses_and_duplicates_nothing() {
    select_against_timer_on_receive(STREAM);
}

/// Sends raced against a timer of random length (in turn `send` and a
/// `write_while` run) to a blocking consumer process that checks every
/// message: it gets each once, in order, however often the timer wins.
#[test]
fn a_send_cancelled_by_a_timer_at_random_moments_loses_and_duplicates_nothing() {
    let _watchdog = Watchdog::new("cancelled sends", Duration::from_secs(300));
    let name = unique_ring_name("cancel-send");
    let _cleanup = RingCleanup(name.clone());
    let mut producer = AsyncProducer::open_with(&name, &small()).unwrap();
    let seed = u64::from(std::process::id());
    let mut child = Peer::spawn("stream-in", &format!("{name} {STREAM} {seed}"), None);
    assert_eq!(child.expect_line(), "opened");
    let (single_wins, cut_runs) = runtime().block_on(async move {
        let mut rng = Rng::new(seed ^ 0x5e4d);
        // Timer wins over a single send, and over a run that had sent
        // messages in earlier polls.
        let (mut single_wins, mut cut_runs) = (0u64, 0u64);
        let (mut message, mut next) = (Vec::new(), Vec::new());
        let mut n = 0;
        for turn in 0u64.. {
            if n == STREAM {
                break;
            }
            stream_message(n, &mut message);
            let timer = tokio::time::sleep(Duration::from_micros(rng.below(2000)));
            if turn % 2 == 0 {
                tokio::select! {
                    sent = producer.send(&message) => { sent.unwrap(); n += 1 }
                    () = timer => single_wins += 1,
                }
                continue;
            }
            // A `write_while` run of up to 64 messages from `n` on, while
            // they are as long as this one; what it wrote before the timer
            // won (in earlier polls) is counted, the rest is sent again.
            let (len, want) = (message.len(), 1 + rng.below(64));
            let mut wrote = 0;
            let outcome = tokio::select! {
                sent = producer.write_while(len, |space| {
                    if wrote == want || n + wrote == STREAM {
                        return false;
                    }
                    stream_message(n + wrote, &mut next);
                    if next.len() != len {
                        return false;
                    }
                    space.copy_from_slice(&next);
                    wrote += 1;
                    true
                }) => Some(sent),
                () = timer => None,
            };
            n += wrote;
            match outcome {
                None => cut_runs += u64::from(wrote > 0),
                Some(sent) => assert_eq!(sent.unwrap() as u64, wrote),
            }
        }
        (single_wins, cut_runs)
    });
    // The producer was dropped with the runtime's task: the stream closed.
    println!(
        "{STREAM} messages sent; the timer won over {single_wins} single sends \
         and {cut_runs} runs after they sent messages"
    );
    assert_eq!(child.expect_line(), format!("received {STREAM}"));
    assert!(cut_runs > 0, "the timer never cut a run short");
    assert!(single_wins > 0, "the timer never won over a single send");
    child.finish();
}

/// Child: opens ring `name`'s producer, sends `count` messages, reports,
/// and waits (to be killed).
fn hold_producer(name: &str, count: u64) {
    let mut producer = Producer::open_with(name, &small()).unwrap();
    for n in 0..count {
        producer.send(&n.to_le_bytes()).unwrap();
    }
    report("ready");
    let _ = next_command();
}

/// Child: opens ring `name`'s consumer, reports, and waits (to be killed).
fn hold_consumer(name: &str) {
    let _consumer = Consumer::open_with(name, &small()).unwrap();
    report("ready");
    let _ = next_command();
}

/// A task awaiting a receive when its producer is killed gets every
/// committed message, then `PeerGone` naming the dead process.
fn killed_producer_gives_peer_gone() {
    let _watchdog = Watchdog::new("a killed producer", Duration::from_secs(60));
    let name = unique_ring_name("async-killed-producer");
    let _cleanup = RingCleanup(name.clone());
    let mut consumer = AsyncConsumer::open_with(&name, &small()).unwrap();
    let mut child = Peer::spawn("hold-producer", &format!("{name} 2"), None);
    assert_eq!(child.expect_line(), "ready");
    let header = map_ring(&name);
    let rt = runtime();
    let task = rt.spawn(async move {
        let mut buf = [0u8; 8];
        for n in 0..2u64 {
            consumer.recv(&mut buf).await.unwrap();
            assert_eq!(u64::from_le_bytes(buf), n);
        }
        consumer.recv(&mut buf).await
    });
    wait_until("the task sleeps", || {
        sleeping(&header, CONSUMER_SLEEPING_AT)
    });
    let pid = child.pid();
    child.kill(true);
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("PeerGone came in bounded time")
            .unwrap()
    });
    match outcome {
        Err(Error::PeerGone {
            peer, pid: dead, ..
        }) => {
            assert_eq!((peer, dead), ("producer", pid));
        }
        other => panic!("expected PeerGone, got {other:?}"),
    }
}

#[test]
fn kill_9_of_the_producer_while_a_task_awaits_a_receive_gives_peer_gone() {
    killed_producer_gives_peer_gone();
}

#[test]
fn kill_9_of_the_consumer_while_a_task_awaits_room_gives_peer_gone() {
    let _watchdog = Watchdog::new("a killed consumer", Duration::from_secs(60));
    let name = unique_ring_name("async-killed-consumer");
    let _cleanup = RingCleanup(name.clone());
    let mut producer = AsyncProducer::open_with(&name, &small()).unwrap();
    let mut child = Peer::spawn("hold-consumer", &name, None);
    assert_eq!(child.expect_line(), "ready");
    while producer.get_mut().try_send(&[7; 64]).is_ok() {}
    let header = map_ring(&name);
    let rt = runtime();
    let task = rt.spawn(async move { producer.send(&[7; 64]).await });
    wait_until("the task sleeps", || {
        sleeping(&header, PRODUCER_SLEEPING_AT)
    });
    let pid = child.pid();
    child.kill(true);
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("PeerGone came in bounded time")
            .unwrap()
    });
    match outcome {
        Err(Error::PeerGone {
            peer, pid: dead, ..
        }) => {
            assert_eq!((peer, dead), ("consumer", pid));
        }
        other => panic!("expected PeerGone, got {other:?}"),
    }
}

/// This process's CPU time so far (user and system, all threads), from
/// `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, fields) = stat.rsplit_once(')').unwrap();
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after
    // the command name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = rustix::param::clock_ticks_per_second();
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// Child: an async consumer of ring `name` parks a task, measures this
/// process's CPU time over a second, reports it in thousandths of a CPU,
/// then reports how the receive ended.
fn parked_cpu(name: &str) {
    let mut consumer = AsyncConsumer::open_with(name, &small()).unwrap();
    let header = map_ring(name);
    let rt = runtime();
    let task = rt.spawn(async move {
        let mut buf = [0u8; 8];
        consumer.recv(&mut buf).await
    });
    wait_until("the task sleeps", || {
        sleeping(&header, CONSUMER_SLEEPING_AT)
    });
    // A measurement over a second, not a wait for anything.
    let (cpu, wall) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    assert!(!task.is_finished(), "the receive is still waiting");
    let permille = (cpu.as_secs_f64() / wall.as_secs_f64() * 1000.0).round() as u64;
    report(&format!("cpu {permille} {:?}", reactor_kind()));
    let outcome = rt.block_on(task).unwrap();
    assert!(matches!(outcome, Err(Error::Closed { .. })), "{outcome:?}");
    report("closed");
}

/// A child parks one async receive, with `env`, on a ring whose producer
/// is here and idle: the thousandths of a CPU the child used over a second.
fn parked_cpu_share(env: &[(&str, &str)]) -> u64 {
    let _watchdog = Watchdog::new("a parked endpoint", Duration::from_secs(60));
    let name = unique_ring_name("async-idle");
    let _cleanup = RingCleanup(name.clone());
    let producer = Producer::open_with(&name, &small()).unwrap();
    let mut child = Peer::spawn_with_env("parked-cpu", &name, env);
    let line = child.expect_line();
    let permille: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    println!("a parked async receive: {line} (thousandths of a CPU, reactor)");
    producer.close().unwrap();
    assert_eq!(child.expect_line(), "closed");
    child.finish();
    permille
}

#[test]
fn a_parked_endpoint_uses_almost_no_cpu() {
    // Generous: the figure is a few thousandths (the peer checks every
    // 20 ms); the machine is shared.
    let permille = parked_cpu_share(&[]);
    assert!(
        permille < 50,
        "a parked endpoint used {permille}/1000 of a CPU"
    );
}

#[test]
fn a_parked_endpoint_of_the_polling_reactor_uses_little_cpu() {
    // The polling reactor's price: a look at the words every millisecond,
    // about 2% of a CPU on an idle machine (debug build), more when the
    // tests around it load the machine. Bounded, not free.
    let permille = parked_cpu_share(&[("SHMKIT_REACTOR", "polling")]);
    assert!(
        permille < 200,
        "a parked endpoint used {permille}/1000 of a CPU"
    );
}

/// Runs the polling reactor's scenario (the parked endpoints, a killed
/// producer, cancelled receives) in a child whose reactor is refused
/// `futex_waitv` by `how`.
fn polling_scenario(how: &str, env: &[(&str, &str)]) {
    use std::process::{Command, Stdio};
    let _watchdog = Watchdog::new("the polling reactor", Duration::from_secs(300));
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, "scenario")
        .env("SHMKIT_TEST_ARGS", how)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{how}: {}\n{stdout}",
        output.status
    );
    assert!(stdout.contains("@@ scenario passed"), "{stdout}");
}

#[test]
fn the_polling_reactor_forced_by_the_environment_wakes_drains_and_reports_peer_gone() {
    polling_scenario("environment", &[("SHMKIT_REACTOR", "polling")]);
}

#[test]
fn a_seccomp_filter_refusing_futex_waitv_with_enosys_makes_the_reactor_poll() {
    polling_scenario("seccomp-enosys", &[]);
}

#[test]
fn a_seccomp_filter_refusing_futex_waitv_with_eperm_makes_the_reactor_poll() {
    polling_scenario("seccomp-eperm", &[]);
}

/// Installs a seccomp filter that makes `futex_waitv` fail with `errno`,
/// as a container runtime's profile may, for this process and its children.
fn forbid_futex_waitv(errno: i32) {
    const FUTEX_WAITV: u32 = 449; // x86_64, aarch64 and the generic table
    let filter = [
        // Load the system call number (offset 0 of seccomp_data).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: FUTEX_WAITV,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | errno as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with these arguments only reads `program`, which
    // lives across the calls; the filter denies one call and allows all
    // others.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ),
            0,
            "install the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Two async subscribers, one waiting and one streaming, receive an async
/// publisher's message, and the stream ends when the publisher leaves.
#[test]
fn async_subscribers_receive_an_async_publishers_messages_then_the_end() {
    let _watchdog = Watchdog::new("async topic", Duration::from_secs(60));
    let name = unique_ring_name("async-topic");
    let _cleanup = TopicCleanup(name.clone());
    let rt = runtime();
    rt.block_on(async {
        let mut first = AsyncSubscriber::open(&name).unwrap();
        let second = AsyncSubscriber::open(&name).unwrap();
        let mut publisher = AsyncPublisher::open(&name).unwrap();
        let waiting = tokio::spawn(async move {
            let mut buf = Vec::new();
            let got = first.recv_vec(&mut buf).await.unwrap();
            (got.sequence, buf)
        });
        publisher.send(b"to all").await.unwrap();
        assert_eq!(waiting.await.unwrap(), (0, b"to all".to_vec()));
        drop(publisher);
        let all: Vec<Vec<u8>> = second.map(|m| m.unwrap().1).collect().await;
        assert_eq!(all, [b"to all".to_vec()]);
    });
}

/// Removes service `name`'s segment when dropped, even if the test panics.
struct ServiceCleanup(String);

impl Drop for ServiceCleanup {
    fn drop(&mut self) {
        let key = format!("{}{}", shmkit::service::SEGMENT_PREFIX, self.0);
        if let Ok(segment) = shmkit::Segment::open(&shmkit::Key::posix(&key).unwrap()) {
            let _ = segment.remove();
        }
    }
}

/// Child: a blocking client makes `count` calls of service `name`, each
/// checked against its request, and reports how many were answered.
fn service_client(name: &str, count: u64) {
    let mut client = shmkit::service::Client::connect(name).unwrap();
    report("connected");
    let mut request = Vec::new();
    let mut rng = Rng::new(count);
    for n in 0..count {
        stream_message(n, &mut request);
        if rng.below(64) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
        let response = client.call(&request).unwrap();
        assert_eq!(response.len(), request.len(), "call {n}");
        assert!(
            response.iter().zip(&request).all(|(a, b)| *a == !*b),
            "call {n}"
        );
    }
    report(&format!("answered {count}"));
}

#[test]
fn an_async_server_with_receives_cancelled_by_a_timer_answers_every_call_once() {
    const CALLS: u64 = 20_000;
    let _watchdog = Watchdog::new("a cancelled server", Duration::from_secs(300));
    let name = unique_ring_name("async-server");
    let _cleanup = ServiceCleanup(name.clone());
    let mut server = AsyncServer::open(&name).unwrap();
    let mut child = Peer::spawn("service-client", &format!("{name} {CALLS}"), None);
    assert_eq!(child.expect_line(), "connected");
    let (received, fired) = runtime().block_on(async move {
        let mut rng = Rng::new(u64::from(std::process::id()));
        let (mut received, mut fired) = (0, 0u64);
        let mut expected = Vec::new();
        while received < CALLS {
            let timer = tokio::time::sleep(Duration::from_micros(rng.below(2000)));
            tokio::select! {
                request = server.recv_request() => {
                    let request = request.unwrap();
                    stream_message(received, &mut expected);
                    assert_eq!(&*request, &expected[..], "request {received}");
                    let inverted: Vec<u8> = request.iter().map(|b| !b).collect();
                    request.reply(&inverted).unwrap();
                    received += 1;
                }
                () = timer => fired += 1,
            }
        }
        (received, fired)
    });
    println!("{received} requests answered; the timer won {fired} times");
    assert_eq!(child.expect_line(), format!("answered {CALLS}"));
    assert!(fired > 0, "the timer never won: nothing was cancelled");
    child.finish();
}

/// Child: a blocking server takes one request, reports, and waits (to be
/// killed) without answering.
fn hold_server(name: &str) {
    let mut server = shmkit::service::Server::open(name).unwrap();
    let caller = server.recv_request().unwrap().caller();
    report(&format!("got {}", caller.id()));
    let _ = next_command();
}

#[test]
fn kill_9_of_the_server_while_a_task_awaits_a_call_gives_peer_gone() {
    let _watchdog = Watchdog::new("a killed server", Duration::from_secs(60));
    let name = unique_ring_name("async-killed-server");
    let _cleanup = ServiceCleanup(name.clone());
    let mut client = AsyncClient::connect(&name).unwrap();
    let mut child = Peer::spawn("hold-server", &name, None);
    let rt = runtime();
    let task = rt.spawn(async move { client.call(b"never answered").await.map(|r| r.len()) });
    assert!(child.expect_line().starts_with("got "));
    let pid = child.pid();
    child.kill(true);
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("PeerGone came in bounded time")
            .unwrap()
    });
    match outcome {
        Err(Error::PeerGone {
            peer, pid: dead, ..
        }) => {
            assert_eq!((peer, dead), ("server", pid));
        }
        other => panic!("expected PeerGone, got {other:?}"),
    }
}

/// Child: a blocking server answers `count` requests of service `name`
/// with their bytes inverted, pausing at random moments, then reports.
fn service_server(name: &str, count: u64) {
    let mut server = shmkit::service::Server::open(name).unwrap();
    report("open");
    let mut rng = Rng::new(count ^ 0x5e);
    for _ in 0..count {
        let request = server.recv_request().unwrap();
        let inverted: Vec<u8> = request.iter().map(|b| !b).collect();
        if rng.below(64) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
        request.reply(&inverted).unwrap();
    }
    report(&format!("served {count}"));
    assert_eq!(next_command(), "");
}

#[test]
fn an_async_clients_sends_and_waits_cancelled_by_a_timer_lose_and_duplicate_nothing() {
    const CALLS: u64 = 20_000;
    let _watchdog = Watchdog::new("a cancelled client", Duration::from_secs(300));
    let name = unique_ring_name("async-client");
    let _cleanup = ServiceCleanup(name.clone());
    let mut child = Peer::spawn("service-server", &format!("{name} {CALLS}"), None);
    assert_eq!(child.expect_line(), "open");
    let mut client = AsyncClient::connect(&name).unwrap();
    let fired = runtime().block_on(async move {
        let mut rng = Rng::new(u64::from(std::process::id()) ^ 0xc11e);
        let mut fired = 0u64;
        let mut request = Vec::new();
        for n in 0..CALLS {
            stream_message(n, &mut request);
            let call = loop {
                let timer = tokio::time::sleep(Duration::from_micros(rng.below(2000)));
                tokio::select! {
                    call = client.send_request(&request) => break call.unwrap(),
                    () = timer => fired += 1,
                }
            };
            // A wait for a call kept here: cancelled, it stays pending.
            loop {
                let timer = tokio::time::sleep(Duration::from_micros(rng.below(2000)));
                tokio::select! {
                    ready = std::future::poll_fn(|cx| client.poll_response(cx, &call)) => {
                        ready.unwrap();
                        break;
                    }
                    () = timer => fired += 1,
                }
            }
            let response = client.get_mut().try_wait(&call).unwrap();
            let inverted: Vec<u8> = request.iter().map(|b| !b).collect();
            assert_eq!(&*response, &inverted[..], "call {n}");
        }
        fired
    });
    println!("{CALLS} calls answered; the timer won {fired} times");
    assert_eq!(child.expect_line(), format!("served {CALLS}"));
    assert!(fired > 0, "the timer never won: nothing was cancelled");
    child.finish();
}

/// Child: a blocking typed client asks service `name` for `count` squares.
fn typed_client(name: &str, count: u64) {
    let mut client = shmkit::channel::ServiceClient::<u64, String>::connect(name).unwrap();
    for n in 0..count {
        assert_eq!(client.call(&n).unwrap(), format!("{}", n * n), "call {n}");
    }
    report(&format!("answered {count}"));
}

#[test]
fn an_async_typed_server_answers_a_blocking_typed_client() {
    const CALLS: u64 = 2_000;
    let _watchdog = Watchdog::new("a typed service", Duration::from_secs(120));
    let name = unique_ring_name("async-typed-service");
    let _cleanup = ServiceCleanup(name.clone());
    let mut server = AsyncServiceServer::<u64, String>::open(&name).unwrap();
    let mut child = Peer::spawn("typed-client", &format!("{name} {CALLS}"), None);
    runtime().block_on(async move {
        for _ in 0..CALLS {
            let (caller, n) = server.recv().await.unwrap();
            server
                .get_mut()
                .reply(caller, &format!("{}", n * n))
                .unwrap();
        }
    });
    assert_eq!(child.expect_line(), format!("answered {CALLS}"));
    child.finish();
}

/// Child: a blocking typed publisher publishes `count` numbers on topic
/// `name` once told to, then leaves.
fn typed_publisher(name: &str, count: u64) {
    let mut publisher = shmkit::channel::Publisher::<u64>::open(name).unwrap();
    report("open");
    assert_eq!(next_command(), "go");
    for n in 0..count {
        publisher.send(&n).unwrap();
    }
    report("published");
    assert_eq!(next_command(), "");
}

#[test]
fn an_async_typed_subscriber_streams_a_blocking_publishers_values_to_the_end() {
    const VALUES: u64 = 5_000;
    let _watchdog = Watchdog::new("a typed topic", Duration::from_secs(120));
    let name = unique_ring_name("async-typed-topic");
    let _cleanup = TopicCleanup(name.clone());
    let subscriber = AsyncTypedSubscriber::<u64>::open(&name).unwrap();
    let mut child = Peer::spawn("typed-publisher", &format!("{name} {VALUES}"), None);
    assert_eq!(child.expect_line(), "open");
    child.send("go");
    assert_eq!(child.expect_line(), "published");
    let rt = runtime();
    let task = rt.spawn(subscriber.map(|got| got.unwrap().1).collect::<Vec<u64>>());
    child.finish(); // the publisher leaves: the stream ends
    let values = rt.block_on(task).unwrap();
    assert_eq!(values, (0..VALUES).collect::<Vec<_>>());
}
