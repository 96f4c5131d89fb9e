//! Services between real processes: eight client processes making 10,000
//! calls each on one server, every response checked against its request;
//! the server killed with SIGKILL while calls are pending (every client
//! gets `PeerGone`, none hangs); a client killed with SIGKILL (the server
//! and the other clients go on, its slot is taken over, the response to it
//! is dropped and counted).
//!
//! Children are this test binary in a role (see `processes`); they report
//! on stdout and take commands on stdin, so nothing sleeps to synchronise.
//! Every test uses its own service and a guard that removes it even if the
//! test fails; a watchdog aborts a test that hangs.

mod processes;
mod sequence;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shmkit::service::{self, Client, Options, Server};
use shmkit::{Error, Key, Segment};

use processes::{args, next_command, report, unique_ring_name, wait_until, Peer, Watchdog, ROLE};
use sequence::{mix, Rng};

/// Removes service `name`'s segment when dropped, even if the test panics.
struct ServiceCleanup(String);

impl Drop for ServiceCleanup {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(&service_key(&self.0)) {
            let _ = segment.remove();
        }
    }
}

fn service_key(name: &str) -> Key {
    Key::posix(&format!("{}{name}", service::SEGMENT_PREFIX)).unwrap()
}

fn service_exists(name: &str) -> bool {
    Segment::open(&service_key(name)).is_ok()
}

fn options() -> Options {
    Options::default().max_request(600).max_response(700)
}

/// Request `n` of client `seed`: the seed, `n`, then up to 500 random bytes.
fn request(seed: u64, n: u64) -> Vec<u8> {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend_from_slice(&n.to_le_bytes());
    let len = (mix(seed, n) % 500) as usize;
    bytes.extend(Rng::new(mix(seed, n)).bytes(len));
    bytes
}

/// What the echo server answers: the request reversed, then its length.
fn answer(request: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = request.iter().rev().copied().collect();
    bytes.extend_from_slice(&(request.len() as u32).to_le_bytes());
    bytes
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let words: Vec<String> = args().split(' ').map(str::to_owned).collect();
    let name = &words[0];
    match role.as_str() {
        "echo-server" => echo_server(name),
        "holding-server" => holding_server(name, words[1].parse().unwrap()),
        "deferring-server" => deferring_server(name, words[1].parse().unwrap()),
        "client" => client(name, words[1].parse().unwrap(), words[2].parse().unwrap()),
        "awaiting-client" => awaiting_client(name),
        "doomed-client" => doomed_client(name),
        other => panic!("unknown role {other}"),
    }
}

/// Runs `serve` on requests until the parent closes stdin.
fn serve_until_told(name: &str, mut serve: impl FnMut(shmkit::service::Request<'_>)) {
    let mut server = Server::open_with(name, &options()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        next_command();
        flag.store(true, Ordering::SeqCst);
    });
    report("ready");
    while !stop.load(Ordering::SeqCst) {
        // The timeout only lets the loop look at the stop flag.
        let request = match server.recv_request_timeout(Duration::from_millis(20)) {
            Ok(request) => request,
            Err(Error::Timeout { .. }) => continue,
            Err(other) => panic!("{other}"),
        };
        serve(request);
    }
}

/// Role: answers every request with `answer`.
fn echo_server(name: &str) {
    serve_until_told(name, |request| {
        let body = answer(&request);
        request.reply(&body).unwrap();
    });
}

/// Role: takes requests and never answers; reports `got N` after each of
/// the first `count`.
fn holding_server(name: &str, count: u64) {
    let mut server = Server::open_with(name, &options()).unwrap();
    report("ready");
    for n in 1..=count {
        let request = server.recv_request().unwrap();
        drop(request);
        report(&format!("got {n}"));
    }
    next_command(); // killed here
}

/// Role: collects `count` requests, then answers them in reverse order,
/// and again, until stdin closes; reports `answered N dropped D` after
/// each round.
fn deferring_server(name: &str, count: usize) {
    let mut server = Server::open_with(name, &options()).unwrap();
    report("ready");
    loop {
        let mut callers = Vec::new();
        while callers.len() < count {
            let request = server.recv_request().unwrap();
            callers.push((request.caller(), answer(&request)));
        }
        for (caller, body) in callers.into_iter().rev() {
            server.reply(caller, &body).unwrap();
        }
        report(&format!("answered dropped {}", server.dropped()));
        if next_command() != "again" {
            return;
        }
    }
}

/// Role: connects, reports `ready`, waits for `go`, makes `count` calls
/// (plain, with a timeout, and pipelined four at a time, waited for in
/// reverse), checking every response; reports `done`.
fn client(name: &str, seed: u64, count: u64) {
    let mut client = Client::connect_with(name, &options()).unwrap();
    report("ready");
    assert_eq!(next_command(), "go");
    let mut n = 0;
    while n < count {
        match n % 3 {
            0 => {
                let sent = request(seed, n);
                assert_eq!(&*client.call(&sent).unwrap(), answer(&sent), "call {n}");
                n += 1;
            }
            1 => {
                let sent = request(seed, n);
                let response = client.call_timeout(&sent, Duration::from_secs(60)).unwrap();
                assert_eq!(&*response, answer(&sent), "call {n}");
                n += 1;
            }
            _ => {
                let batch: Vec<_> = (n..count.min(n + 4))
                    .map(|k| (k, request(seed, k)))
                    .collect();
                let pending: Vec<_> = batch
                    .iter()
                    .map(|(_, sent)| client.send_request(sent).unwrap())
                    .collect();
                for ((k, sent), call) in batch.iter().zip(pending).rev() {
                    assert_eq!(&*client.wait(call).unwrap(), answer(sent), "call {k}");
                }
                n += batch.len() as u64;
            }
        }
    }
    report("done");
}

/// Role: sends one call, reports `sent`, and waits for it: reports how it
/// ended (`gone` for PeerGone).
fn awaiting_client(name: &str) {
    let mut client = Client::connect_with(name, &options()).unwrap();
    let call = client.send_request(b"will you answer?").unwrap();
    report("sent");
    match client.wait(call) {
        Err(Error::PeerGone { peer: "server", .. }) => report("gone"),
        other => report(&format!("unexpected {other:?}")),
    };
}

/// Role: sends one call, reports `sent SLOT`, and waits to be killed.
fn doomed_client(name: &str) {
    let mut client = Client::connect_with(name, &options()).unwrap();
    let _call = client.send_request(b"answer me after I die").unwrap();
    report(&format!("sent {}", client.slot()));
    next_command();
}

#[test]
fn eight_client_processes_make_ten_thousand_checked_calls_each() {
    let _watchdog = Watchdog::new("eight clients", Duration::from_secs(600));
    let name = unique_ring_name("service-eight");
    let _cleanup = ServiceCleanup(name.clone());
    let mut server = Peer::spawn("echo-server", &name, None);
    assert_eq!(server.expect_line(), "ready");
    let mut clients: Vec<Peer> = (0..8)
        .map(|seed| Peer::spawn("client", &format!("{name} {seed} 10000"), None))
        .collect();
    for client in &mut clients {
        assert_eq!(client.expect_line(), "ready");
    }
    let status = service::status(&name).unwrap();
    assert_eq!(status.clients.len(), 8);
    for client in &mut clients {
        client.send("go");
    }
    for client in &mut clients {
        assert_eq!(client.expect_line(), "done");
    }
    for client in clients {
        client.finish();
    }
    let status = service::status(&name).unwrap();
    assert_eq!((status.received, status.replied), (80_000, 80_000));
    assert_eq!(status.dropped, 0);
    server.finish();
    assert!(
        !service_exists(&name),
        "the last member removed the service"
    );
}

#[test]
fn a_server_killed_mid_call_fails_every_pending_call_with_peer_gone() {
    let _watchdog = Watchdog::new("server kill", Duration::from_secs(120));
    let name = unique_ring_name("service-kill-server");
    let _cleanup = ServiceCleanup(name.clone());
    let mut server = Peer::spawn("holding-server", &format!("{name} 3"), None);
    assert_eq!(server.expect_line(), "ready");
    // Three calls the server took and holds, and one it never took.
    let mut clients: Vec<Peer> = (0..4)
        .map(|_| Peer::spawn("awaiting-client", &name, None))
        .collect();
    for client in &mut clients {
        assert_eq!(client.expect_line(), "sent");
    }
    for n in 1..=3 {
        assert_eq!(server.expect_line(), format!("got {n}"));
    }
    server.kill(false);
    for client in &mut clients {
        assert_eq!(client.expect_line(), "gone");
    }
    for client in clients {
        client.finish();
    }
    // The dead server holds nothing: the last client to leave removed it.
    assert!(!service_exists(&name));
    drop(server);
}

#[test]
fn a_call_taken_by_a_killed_server_fails_even_once_a_new_server_serves() {
    let _watchdog = Watchdog::new("server replaced", Duration::from_secs(120));
    let name = unique_ring_name("service-replaced");
    let _cleanup = ServiceCleanup(name.clone());
    let mut server = Peer::spawn("holding-server", &format!("{name} 1"), None);
    assert_eq!(server.expect_line(), "ready");
    let mut taken = Peer::spawn("awaiting-client", &name, None);
    assert_eq!(taken.expect_line(), "sent");
    assert_eq!(server.expect_line(), "got 1");
    server.kill(false);
    // A new server at once: the dead one took the call, so nobody will
    // answer it, whichever the client sees first.
    let mut successor = Server::open_with(&name, &options()).unwrap();
    assert_eq!(taken.expect_line(), "gone");
    taken.finish();
    // The new server serves calls sent to it.
    let mut client = Client::connect_with(&name, &options()).unwrap();
    let call = client.send_request(b"new").unwrap();
    successor.recv_request().unwrap().reply(b"NEW").unwrap();
    assert_eq!(&*client.wait(call).unwrap(), b"NEW");
}

#[test]
fn a_service_whose_members_all_died_is_collected() {
    let _watchdog = Watchdog::new("gc", Duration::from_secs(120));
    let name = unique_ring_name("service-gc");
    let _cleanup = ServiceCleanup(name.clone());
    let mut doomed = Peer::spawn("doomed-client", &name, None);
    assert_eq!(doomed.expect_line(), "sent 0");
    let scope = shmkit::ring::Scope::Name(&name);
    let dry = service::collect_garbage(scope, shmkit::ring::Action::DryRun).unwrap();
    assert!(dry.is_empty(), "a live client's service is not garbage");
    doomed.kill(true);
    let status = service::status(&name).unwrap();
    assert!(status.abandoned());
    assert_eq!(status.clients[0].in_flight, 1);
    let collected = service::collect_garbage(scope, shmkit::ring::Action::Remove).unwrap();
    assert_eq!(collected.len(), 1);
    assert_eq!(collected[0].name, name);
    assert!(!service_exists(&name));
}

#[test]
fn a_client_killed_mid_call_leaves_the_server_and_other_clients_going() {
    let _watchdog = Watchdog::new("client kill", Duration::from_secs(120));
    let name = unique_ring_name("service-kill-client");
    let _cleanup = ServiceCleanup(name.clone());
    let mut server = Peer::spawn("deferring-server", &format!("{name} 3"), None);
    assert_eq!(server.expect_line(), "ready");
    let mut doomed = Peer::spawn("doomed-client", &name, None);
    let slot: u32 = doomed
        .expect_line()
        .strip_prefix("sent ")
        .unwrap()
        .parse()
        .unwrap();
    let mut other = Client::connect_with(&name, &options()).unwrap();
    let first = other.send_request(b"before").unwrap();
    doomed.kill(true);
    wait_until("the server finds the client dead", || {
        service::status(&name).unwrap().clients_lost == 1
    });
    // The dead client's slot is taken over by the next client.
    let mut successor = Client::connect_with(&name, &options()).unwrap();
    assert_eq!(successor.slot(), slot);
    let second = successor.send_request(b"after").unwrap();
    // The server now has three requests and answers them in reverse: the
    // response to the dead client is dropped and counted.
    assert_eq!(server.expect_line(), "answered dropped 1");
    assert_eq!(&*successor.wait(second).unwrap(), answer(b"after"));
    assert_eq!(&*other.wait(first).unwrap(), answer(b"before"));
    // And on they go.
    server.send("again");
    let calls: Vec<_> = (0..3u8)
        .map(|n| other.send_request(&[n]).unwrap())
        .collect();
    assert_eq!(server.expect_line(), "answered dropped 1");
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(&*other.wait(call).unwrap(), answer(&[n as u8]));
    }
    let status = service::status(&name).unwrap();
    assert_eq!((status.received, status.replied), (6, 5));
    drop((other, successor));
    server.finish();
    assert!(!service_exists(&name));
}
