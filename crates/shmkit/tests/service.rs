//! Services within one process: pipelined calls answered out of order,
//! timeouts, the in-flight bound, the largest requests and responses, a
//! closed server, more than 32 clients, and hostile bytes in the segment
//! (a corrupt header, a corrupt request, a response without an id), which
//! give errors, never a crash. The cross-process cases are in
//! `service_processes.rs`.

mod processes;

use std::time::Duration;

use proptest::prelude::*;
use shmkit::service::{self, Client, Options, Server};
use shmkit::{Error, Key, Mode, ReadWrite, Segment};

use processes::{unique_ring_name, Watchdog};

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

fn fresh(tag: &str) -> (String, ServiceCleanup) {
    let name = unique_ring_name(tag);
    (name.clone(), ServiceCleanup(name))
}

#[test]
fn pipelined_calls_are_answered_out_of_order_each_to_its_own() {
    let (name, _cleanup) = fresh("service-order");
    let mut server = Server::open(&name).unwrap();
    let mut a = Client::connect(&name).unwrap();
    let mut b = Client::connect(&name).unwrap();
    let a_calls: Vec<_> = (0..5u8)
        .map(|n| a.send_request(&[b'a', n]).unwrap())
        .collect();
    let b_calls: Vec<_> = (0..3u8)
        .map(|n| b.send_request(&[b'b', n]).unwrap())
        .collect();
    let mut callers = Vec::new();
    while let Ok(request) = server.try_recv_request() {
        callers.push((request.caller(), request.to_vec()));
    }
    assert_eq!(callers.len(), 8);
    // Clients are served in turn: a and b alternate while both have requests.
    assert_eq!(callers[0].1, b"a\0");
    assert_eq!(callers[1].1, b"b\0");
    // Answer everything in reverse.
    for (caller, body) in callers.iter().rev() {
        let mut answer = body.clone();
        answer.push(b'!');
        server.reply(*caller, &answer).unwrap();
    }
    // Waited for in yet another order: middle, first, last.
    let mut a_calls: Vec<Option<_>> = a_calls.into_iter().map(Some).collect();
    for n in [2usize, 0, 4, 1, 3] {
        let response = a.wait(a_calls[n].take().unwrap()).unwrap();
        assert_eq!(&*response, &[b'a', n as u8, b'!']);
    }
    for (n, call) in b_calls.into_iter().enumerate() {
        assert_eq!(&*b.wait(call).unwrap(), &[b'b', n as u8, b'!']);
    }
    assert_eq!((a.in_flight(), b.in_flight()), (0, 0));
    assert_eq!(server.dropped(), 0);
}

#[test]
fn a_call_times_out_and_its_late_response_is_skipped() {
    let (name, _cleanup) = fresh("service-timeout");
    let mut client = Client::connect(&name).unwrap();
    // No server at all.
    let err = client
        .call_timeout(b"hello?", Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    // A server that answers too late.
    let mut server = Server::open(&name).unwrap();
    let late = server.recv_request().unwrap().caller();
    let call = client.send_request(b"second").unwrap();
    let err = client
        .wait_timeout(&call, Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    server.reply(late, b"answer to the abandoned call").unwrap();
    let second = server.recv_request().unwrap();
    assert_eq!(&*second, b"second");
    second.reply(b"answer to the second").unwrap();
    // The call that timed out with wait_timeout is still pending.
    assert_eq!(&*client.wait(call).unwrap(), b"answer to the second");
    assert_eq!(client.in_flight(), 0, "the late response was skipped");
    // And the server's side.
    let err = server
        .recv_request_timeout(Duration::from_millis(10))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(matches!(
        server.try_recv_request(),
        Err(Error::Empty { .. })
    ));
}

#[test]
fn a_client_at_its_in_flight_bound_gets_full_or_waits() {
    let _watchdog = Watchdog::new("in-flight bound", Duration::from_secs(60));
    let (name, _cleanup) = fresh("service-bound");
    let options = Options::default().max_in_flight(2);
    let mut client = Client::connect_with(&name, &options).unwrap();
    let mut server = Server::open(&name).unwrap();
    let first = client.try_send_request(b"1").unwrap();
    let second = client.try_send_request(b"2").unwrap();
    let err = client.try_send_request(b"3").unwrap_err();
    assert!(matches!(err, Error::Full { .. }), "{err}");
    let err = client
        .send_request_timeout(b"3", Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                let request = server.recv_request().unwrap();
                let body = request.to_vec();
                request.reply(&body).unwrap();
            }
        });
        // Waits until a response comes off the ring for `first` or `second`.
        let third = client.send_request(b"3").unwrap();
        assert_eq!(&*client.wait(third).unwrap(), b"3");
    });
    assert_eq!(&*client.wait(second).unwrap(), b"2");
    assert_eq!(&*client.wait(first).unwrap(), b"1");
}

#[test]
fn requests_and_responses_of_the_largest_size_go_through() {
    let _watchdog = Watchdog::new("largest", Duration::from_secs(60));
    let (name, _cleanup) = fresh("service-largest");
    let options = Options::default()
        .max_request(1 << 20)
        .max_response((1 << 20) + 3)
        .max_in_flight(2);
    let mut server = Server::open_with(&name, &options).unwrap();
    let mut client = Client::connect(&name).unwrap();
    assert_eq!(client.max_request(), 1 << 20);
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let err = client.send_request(&vec![0; (1 << 20) + 1]).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { size, limit, .. } if size == (1 << 20) + 1 && limit == 1 << 20),
        "{err}"
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                let request = server.recv_request().unwrap();
                let caller = request.caller();
                let mut answer = request.to_vec();
                drop(request);
                answer.extend_from_slice(b"end");
                let too_big = server.reply(caller, &[answer.as_slice(), b"x"].concat());
                assert!(matches!(too_big, Err(Error::TooLarge { .. })));
                let mut grant = server.reply_grant(caller, answer.len()).unwrap();
                grant.copy_from_slice(&answer);
                grant.commit();
            }
        });
        for _ in 0..3 {
            let response = client.call(&big).unwrap();
            assert_eq!(response.len(), (1 << 20) + 3);
            assert_eq!(&response[..1 << 20], &big[..]);
            assert_eq!(&response[1 << 20..], b"end");
        }
    });
}

#[test]
fn a_closed_server_fails_pending_calls_and_a_new_server_answers() {
    let (name, _cleanup) = fresh("service-close");
    let mut client = Client::connect(&name).unwrap();
    let server = Server::open(&name).unwrap();
    let call = client.send_request(b"anyone?").unwrap();
    server.close();
    let err = client.wait(call).unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");
    // The request was never taken: a new server answers it and the next.
    let mut server = Server::open(&name).unwrap();
    let call = client.send_request(b"again").unwrap();
    let stale = server.recv_request().unwrap();
    assert_eq!(&*stale, b"anyone?");
    stale.reply(b"nobody waits for this").unwrap();
    server.recv_request().unwrap().reply(b"yes").unwrap();
    assert_eq!(&*client.wait(call).unwrap(), b"yes");
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn forty_clients_call_one_server() {
    let _watchdog = Watchdog::new("forty clients", Duration::from_secs(60));
    let (name, _cleanup) = fresh("service-forty");
    let options = Options::default().max_clients(40);
    let mut server = Server::open_with(&name, &options).unwrap();
    let mut clients: Vec<Client> = (0..40).map(|_| Client::connect(&name).unwrap()).collect();
    let err = Client::connect(&name).unwrap_err();
    assert!(matches!(err, Error::ServiceFull { max: 40, .. }), "{err}");
    assert_eq!(server.clients(), 40);
    let calls: Vec<_> = clients
        .iter_mut()
        .enumerate()
        .map(|(i, c)| c.send_request(&(i as u32).to_le_bytes()).unwrap())
        .collect();
    for _ in 0..40 {
        let request = server.recv_request().unwrap();
        assert_eq!(&*request, &request.caller().client().to_le_bytes());
        let body: Vec<u8> = request.iter().map(|b| !b).collect();
        request.reply(&body).unwrap();
    }
    for (i, (client, call)) in clients.iter_mut().zip(calls).enumerate() {
        let expected: Vec<u8> = (i as u32).to_le_bytes().iter().map(|b| !b).collect();
        assert_eq!(&*client.wait(call).unwrap(), &expected[..]);
    }
    drop(clients);
    assert_eq!(server.clients(), 0);
}

/// Writes `bytes` at `offset` of service `name`'s segment.
fn poke(name: &str, offset: usize, bytes: &[u8]) {
    let segment = Segment::open(&service_key(name)).unwrap();
    segment
        .attach(ReadWrite)
        .unwrap()
        .write_at(offset, bytes)
        .unwrap();
}

#[test]
fn corrupt_headers_are_errors_never_crashes() {
    // (offset, bytes, what the open must say)
    let cases: [(usize, Vec<u8>, &str); 8] = [
        (0, b"NOTASERV".to_vec(), "magic"),
        (8, 9u32.to_le_bytes().to_vec(), "version"),
        (12, 1u32.to_le_bytes().to_vec(), "flags"),
        (16, 0u32.to_le_bytes().to_vec(), "out of range"),
        (16, 5000u32.to_le_bytes().to_vec(), "out of range"),
        (20, 0u32.to_le_bytes().to_vec(), "out of range"),
        (40, 4096u64.to_le_bytes().to_vec(), "do not match"),
        (72, u64::MAX.to_le_bytes().to_vec(), "do not match"),
    ];
    for (offset, bytes, says) in cases {
        let (name, _cleanup) = fresh("service-corrupt");
        // A member holds it, so that nothing removes it meanwhile.
        let holder = Client::connect(&name).unwrap();
        poke(&name, offset, &bytes);
        for err in [
            Server::open(&name).map(drop).unwrap_err(),
            Client::connect(&name).map(drop).unwrap_err(),
            service::status(&name).map(drop).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(
                matches!(err, Error::Corrupt(_) | Error::VersionMismatch { .. }),
                "{offset}: {text}"
            );
            assert!(text.contains(says) || says == "version", "{offset}: {text}");
        }
        drop(holder);
    }
}

#[test]
fn a_shrunk_service_is_truncated() {
    let (name, _cleanup) = fresh("service-shrunk");
    let holder = Client::connect(&name).unwrap();
    let segment = Segment::open(&service_key(&name)).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{}{name}", service::SEGMENT_PREFIX))
        .unwrap();
    file.set_len(8192).unwrap();
    let err = Client::connect(&name).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    drop((holder, segment));
}

/// The request ring's data area of slot 0 with default options: the
/// 640-byte header, the slot's 256 bytes, the ring's 512-byte header.
const SLOT0_REQUESTS: usize = 640 + 256 + 512;
/// Its response ring's: past the 64 KiB request data and another header.
const SLOT0_RESPONSES: usize = SLOT0_REQUESTS + (1 << 16) + 512;

/// A response whose bytes ran onto pages a peer cut away is never handed
/// out as a copy: `copied` says Truncated, though its word and call id
/// still read.
#[test]
fn a_response_cut_in_two_is_truncated_when_copied() {
    let (name, _cleanup) = fresh("service-cut-response");
    let mut server = Server::open(&name).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let call = client.send_request(b"long answer, please").unwrap();
    let request = server.recv_request().unwrap();
    assert_eq!(request.copied().unwrap(), b"long answer, please");
    request.reply(&[7; 4000]).unwrap();
    // The response's record starts in the page that holds SLOT0_RESPONSES
    // (2 KiB before its end) and ends in the next: keep that page, cut the
    // rest.
    let keep = (SLOT0_RESPONSES as u64 / 4096 + 1) * 4096;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{}{name}", service::SEGMENT_PREFIX))
        .unwrap();
    file.set_len(keep).unwrap();
    let response = client.wait(call).unwrap();
    let err = response.copied().unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
}

#[test]
fn a_client_writing_a_corrupt_request_is_skipped_and_the_others_go_on() {
    let (name, _cleanup) = fresh("service-hostile-client");
    let mut server = Server::open(&name).unwrap();
    let hostile = Client::connect(&name).unwrap();
    assert_eq!(hostile.slot(), 0);
    let mut honest = Client::connect(&name).unwrap();
    // A record word of an unknown kind where slot 0's next request goes.
    poke(&name, SLOT0_REQUESTS, &(7u64 << 32 | 12).to_le_bytes());
    let call = honest.send_request(b"fine").unwrap();
    let request = server.recv_request().unwrap();
    assert_eq!(request.caller().client(), 1);
    request.reply(b"FINE").unwrap();
    assert_eq!(&*honest.wait(call).unwrap(), b"FINE");
    assert_eq!(server.dropped(), 1, "the corrupt request was counted");
    assert!(matches!(
        server.try_recv_request(),
        Err(Error::Empty { .. })
    ));
    drop(hostile);
}

#[test]
fn a_response_without_a_call_id_is_corrupt() {
    let (name, _cleanup) = fresh("service-hostile-server");
    let _server = Server::open(&name).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let call = client.send_request(b"x").unwrap();
    // A committed message of 4 bytes: too short for an id.
    poke(&name, SLOT0_RESPONSES, &(1u64 << 32 | 4).to_le_bytes());
    let err = client.try_wait(&call).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt(why) if why.contains("no call id")),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_header_bytes_never_crash_an_opener(
        header in proptest::collection::vec(any::<u8>(), 512),
        keep_magic in any::<bool>(),
    ) {
        let (name, _cleanup) = fresh("service-arbitrary");
        let segment = Segment::create(&service_key(&name), 1 << 20, Mode::OWNER_ONLY).unwrap();
        let mapping = segment.attach(ReadWrite).unwrap();
        mapping.write_at(0, &header).unwrap();
        if keep_magic {
            mapping.write_at(0, b"SHMKSERV").unwrap();
        }
        // Any answer but a panic; a header that happens to be valid opens.
        let _ = service::status(&name);
        let _ = Client::connect(&name).map(drop);
        let _ = Server::open(&name).map(drop);
        let _ = service::collect_garbage(
            shmkit::ring::Scope::Name(&name),
            shmkit::ring::Action::DryRun,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random request and response sizes (to the largest, so that the
    /// small rings wrap many times), pipelined up to the in-flight bound,
    /// answered and awaited in random orders: every response is its own
    /// call's.
    #[test]
    fn random_sizes_and_orders_keep_every_response_with_its_call(
        calls in proptest::collection::vec((8usize..=300, 0usize..=300), 1..80),
        depth in 1usize..=4,
        seed in any::<u64>(),
    ) {
        let (name, _cleanup) = fresh("service-random");
        let options = Options::default()
            .max_request(300)
            .max_response(300)
            .max_in_flight(4);
        let mut server = Server::open_with(&name, &options).unwrap();
        let mut client = Client::connect(&name).unwrap();
        // A request starts with its call's number; the rest is a pattern.
        let body = |n: usize, len: usize, salt: u8| -> Vec<u8> {
            let mut bytes: Vec<u8> = (0..len).map(|i| (n * 31 + i * 7) as u8 ^ salt).collect();
            if salt == 0 {
                bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            }
            bytes
        };
        let mut rng = seed | 1;
        let mut next = move |bound: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % bound as u64) as usize
        };
        for (start, batch) in calls.chunks(depth).enumerate().map(|(k, b)| (k * depth, b)) {
            let mut pending: Vec<_> = batch
                .iter()
                .enumerate()
                .map(|(k, &(request, _))| {
                    let n = start + k;
                    (n, client.try_send_request(&body(n, request, 0)).unwrap())
                })
                .collect();
            let mut callers = Vec::new();
            while let Ok(request) = server.try_recv_request() {
                callers.push((request.caller(), request.to_vec()));
            }
            prop_assert_eq!(callers.len(), batch.len());
            while !callers.is_empty() {
                let (caller, request) = callers.swap_remove(next(callers.len()));
                let n = u64::from_le_bytes(request[..8].try_into().unwrap()) as usize;
                prop_assert_eq!(&request, &body(n, calls[n].0, 0));
                server.reply(caller, &body(n, calls[n].1, 0xa5)).unwrap();
            }
            while !pending.is_empty() {
                let (n, call) = pending.swap_remove(next(pending.len()));
                let response = client.wait(call).unwrap();
                prop_assert_eq!(&*response, &body(n, calls[n].1, 0xa5)[..]);
            }
        }
        prop_assert_eq!(client.in_flight(), 0);
        prop_assert_eq!(server.dropped(), 0);
    }
}

#[test]
fn a_long_waiting_call_keeps_its_entry_while_later_calls_come_and_go() {
    // Two in flight at most: the table has two entries, and the first
    // call's stays held while later calls are sent and answered around it.
    let (name, _cleanup) = fresh("service-table");
    let options = Options::default().max_in_flight(2);
    let mut server = Server::open_with(&name, &options).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let slow = client.send_request(b"slow").unwrap();
    let mut slow_caller = None;
    for round in 0..10u8 {
        let call = client.send_request(&[round]).unwrap();
        assert_ne!(call.id(), slow.id());
        if slow_caller.is_none() {
            slow_caller = Some(server.recv_request().unwrap().caller());
        }
        let request = server.recv_request().unwrap();
        assert_eq!(&*request, &[round]);
        request.reply(&[round, round]).unwrap();
        assert_eq!(&*client.wait(call).unwrap(), &[round, round]);
    }
    // A later call answered before the slow one: waiting for the slow call
    // copies the other's response out for it.
    let last = client.send_request(b"last").unwrap();
    server.recv_request().unwrap().reply(b"last!").unwrap();
    server.reply(slow_caller.unwrap(), b"slow!").unwrap();
    assert_eq!(&*client.wait(slow).unwrap(), b"slow!");
    assert_eq!(&*client.wait(last).unwrap(), b"last!");
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn a_full_service_says_so_by_its_name() {
    let (name, _cleanup) = fresh("service-full");
    let options = Options::default().max_clients(2);
    let _server = Server::open_with(&name, &options).unwrap();
    let _clients: Vec<Client> = (0..2).map(|_| Client::connect(&name).unwrap()).collect();
    let err = Client::connect(&name).unwrap_err();
    match &err {
        Error::ServiceFull { service, max } => {
            assert_eq!(service, &name);
            assert_eq!(*max, 2);
        }
        other => panic!("expected ServiceFull, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&format!("service {name}")), "{message}");
    assert!(!message.contains("topic"), "{message}");
}

#[test]
fn a_caller_handed_to_another_server_is_refused_and_reaches_nobody() {
    let (first, _first_cleanup) = fresh("service-caller-a");
    let (second, _second_cleanup) = fresh("service-caller-b");
    let mut a = Server::open(&first).unwrap();
    let mut b = Server::open(&second).unwrap();
    let mut a_client = Client::connect(&first).unwrap();
    let mut b_client = Client::connect(&second).unwrap();
    // The same slot (0) and, being the first holders, the same generation:
    // only the Caller's server tells them apart.
    let a_call = a_client.send_request(b"for a").unwrap();
    let b_call = b_client.send_request(b"for b").unwrap();
    let a_caller = a.recv_request().unwrap().caller();
    let b_caller = b.recv_request().unwrap().caller();
    assert_eq!(
        (a_caller.client(), a_caller.id()),
        (b_caller.client(), b_caller.id())
    );
    for err in [
        b.reply(a_caller, b"wrong server").unwrap_err(),
        b.reply_grant(a_caller, 4).map(|_| ()).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::InvalidArgument(why) if why.contains("another server")),
            "{err}"
        );
    }
    assert!(matches!(
        b_client.try_wait(&b_call),
        Err(Error::Empty { .. })
    ));
    assert_eq!(b.dropped(), 0);
    // A later server of the same service refuses the earlier one's too.
    drop(a);
    let mut again = Server::open(&first).unwrap();
    let err = again.reply(a_caller, b"stale").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Each server still answers its own.
    b.reply(b_caller, b"from b").unwrap();
    assert_eq!(&*b_client.wait(b_call).unwrap(), b"from b");
    // Its request was taken by the server that closed: no server answers it.
    let err = a_client.try_wait(&a_call).unwrap_err();
    assert!(matches!(err, Error::PeerGone { .. }), "{err}");
}

/// `opened` failed with the `OptionMismatch` of `option` on service
/// `name`: the value asked for, the service's, and a message naming it.
fn assert_mismatch<T>(
    opened: Result<T, Error>,
    name: &str,
    option: &str,
    asked: &str,
    found: &str,
) {
    let place = format!("service {name}");
    let Err(err) = opened else {
        panic!("{option}: expected OptionMismatch, it opened");
    };
    let Error::OptionMismatch {
        place: p,
        option: o,
        asked: a,
        found: f,
    } = &err
    else {
        panic!("{option}: expected OptionMismatch, got {err:?}");
    };
    assert_eq!((&**p, *o, &**a, &**f), (&*place, option, asked, found));
    assert_eq!(
        err.to_string(),
        format!("{place} exists with {option} {found}, not the {asked} asked for")
    );
}

/// No service option's limit depends on another's, so what is given alone
/// is checked on its own limits, the same whether the service is found or
/// made: a body the service was made with, over the default 4 KiB, joins;
/// one over 16 MiB is `TooLarge`, as creating says; one within the limit
/// but not the service's is `OptionMismatch`; and creating with a body
/// over the limit makes nothing.
#[test]
fn a_body_limit_alone_is_checked_against_the_existing_service() {
    const BODY: u64 = 1 << 20;
    const LIMIT: u64 = 1 << 24;
    let (name, _cleanup) = fresh("service-body-alone");
    let made = Options::default()
        .max_clients(1)
        .max_in_flight(1)
        .max_request(BODY)
        .max_response(BODY);
    let server = Server::open_with(&name, &made).unwrap();

    let client = Client::connect_with(&name, &Options::default().max_request(BODY)).unwrap();
    assert_eq!(
        (client.max_request() as u64, client.max_response() as u64),
        (BODY, BODY)
    );
    drop(client);

    let too_large = |opened: Result<Client, Error>, what: &str| match opened {
        Err(Error::TooLarge {
            what: w,
            size,
            limit,
        }) => {
            assert_eq!((w, size, limit), (what, LIMIT + 1, LIMIT));
        }
        Err(other) => panic!("expected TooLarge, got {other:?}"),
        Ok(_) => panic!("expected TooLarge, it connected"),
    };
    too_large(
        Client::connect_with(&name, &Options::default().max_request(LIMIT + 1)),
        "maximum request",
    );
    too_large(
        Client::connect_with(&name, &Options::default().max_response(LIMIT + 1)),
        "maximum response",
    );
    assert_mismatch(
        Client::connect_with(&name, &Options::default().max_request(2 * BODY)),
        &name,
        "maximum request",
        &(2 * BODY).to_string(),
        &BODY.to_string(),
    );

    // Creating with a body over the limit: refused, and nothing is made.
    let (absent, _absent_cleanup) = fresh("service-body-alone-fresh");
    match Server::open_with(&absent, &Options::default().max_request(LIMIT + 1)) {
        Err(Error::TooLarge { size, limit, .. }) => assert_eq!((size, limit), (LIMIT + 1, LIMIT)),
        Err(other) => panic!("expected TooLarge, got {other:?}"),
        Ok(_) => panic!("expected TooLarge, it opened"),
    }
    assert!(Segment::open(&service_key(&absent)).is_err());
    drop(server);
}

/// Options given to connect to (or serve) an existing service must match
/// it, raw and typed; options not given take the service's own; waiting
/// and trust are a member's own; and a refused client takes no slot.
#[test]
fn options_that_differ_from_the_existing_service_are_refused() {
    use shmkit::channel::{ServiceClient, ServiceServer};
    use shmkit::service::Waiting;

    let (name, _cleanup) = fresh("service-options");
    let made = Options::default()
        .max_clients(2)
        .max_request(100)
        .max_response(200)
        .max_in_flight(3)
        .mode(Mode::OWNER_ONLY);
    let mut server = Server::open_with(&name, &made).unwrap();
    let cases: [(&str, Options, &str, &str); 5] = [
        (
            "maximum clients",
            Options::default().max_clients(32),
            "32",
            "2",
        ),
        (
            "maximum request",
            Options::default().max_request(4096),
            "4096",
            "100",
        ),
        (
            "maximum response",
            Options::default().max_response(199),
            "199",
            "200",
        ),
        (
            "maximum in flight",
            Options::default().max_in_flight(8),
            "8",
            "3",
        ),
        (
            "mode",
            Options::default().mode(Mode::new(0o666)),
            "0666",
            "0600",
        ),
    ];
    // More refused clients than the service has slots: none takes one.
    for (option, options, asked, found) in &cases {
        assert_mismatch(
            Client::connect_with(&name, options),
            &name,
            option,
            asked,
            found,
        );
        // Refused for its options before it is refused for the live server.
        assert_mismatch(
            Server::open_with(&name, options),
            &name,
            option,
            asked,
            found,
        );
        assert_mismatch(
            ServiceClient::<u32, u32>::connect_with(&name, options),
            &name,
            option,
            asked,
            found,
        );
        assert_mismatch(
            ServiceServer::<u32, u32>::open_with(&name, options),
            &name,
            option,
            asked,
            found,
        );
    }
    assert_mismatch(
        Client::connect_with(&name, &made.clone().max_in_flight(4)),
        &name,
        "maximum in flight",
        "4",
        "3",
    );
    assert!(service::status(&name).unwrap().clients.is_empty());
    // The right options, all of them, reach the live server's InUse.
    assert!(matches!(
        Server::open_with(&name, &made),
        Err(Error::InUse { .. })
    ));

    // Nothing given: the service's own, not the defaults.
    let mut defaults = Client::connect(&name).unwrap();
    assert_eq!(
        (
            defaults.max_request(),
            defaults.max_response(),
            defaults.max_in_flight()
        ),
        (100, 200, 3)
    );
    // All given and the service's, with a member's own waiting and trust.
    let own = made
        .clone()
        .waiting(Waiting::BusyPoll)
        .trust(shmkit::Trust::me());
    let mut same = Client::connect_with(&name, &own).unwrap();
    for client in [&mut defaults, &mut same] {
        let call = client.send_request(b"ping").unwrap();
        let request = server.recv_request().unwrap();
        assert_eq!(&*request, b"ping");
        request.reply(b"pong").unwrap();
        assert_eq!(&*client.wait(call).unwrap(), b"pong");
    }
    assert_eq!(service::status(&name).unwrap().clients.len(), 2);
}
