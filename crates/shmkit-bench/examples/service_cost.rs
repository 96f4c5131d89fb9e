//! A fixed number of service calls, for counting what a call costs rather
//! than timing it (as `ring_cost` does for the ring): instructions under
//! `valgrind --tool=callgrind`, which do not depend on how busy the
//! machine is.
//!
//! ```text
//! service_cost call SIZE COUNT    # COUNT calls in one thread, as shmkit-service
//!                                 # makes them: send_request, the server's
//!                                 # recv_request and reply of a SIZE body, wait
//! service_cost rings SIZE COUNT   # COUNT round trips over two rings, as
//!                                 # shmkit-spin makes them: send, read in
//!                                 # place, send it back, read in place
//! ```
//!
//! Per call, take the difference of two counts: `COUNT = 2N` minus
//! `COUNT = N`, divided by N, leaves the set-up out. The two modes' figures
//! side by side are what the request–response layer adds to a round trip.

use shmkit::ring::{Consumer, Producer};
use shmkit::service::{Client, Options, Server, Waiting};
use shmkit_bench::cost::RemoveSegment;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.first().map(String::as_str) {
        Some("call") => call(arg(1), arg(2)),
        Some("rings") => rings(arg(1), arg(2)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: service_cost call SIZE COUNT | rings SIZE COUNT");
    std::process::exit(2)
}

/// The bench's service (`shmkit-service`): one client slot, busy-polling;
/// the server checks the request in place, copies it out and replies with
/// the copy, and the client reads the response in place.
fn call(size: usize, count: usize) {
    let name = format!("service-cost-{}", std::process::id());
    let _remove = RemoveSegment::new(shmkit::service::SEGMENT_PREFIX, &name);
    let options = Options::default()
        .max_clients(1)
        .max_request(size as u64)
        .max_response(size as u64)
        .waiting(Waiting::BusyPoll);
    let mut server = Server::open_with(&name, &options).expect("a server");
    let mut client = Client::connect_with(&name, &options).expect("a client");
    let message = vec![0x5a_u8; size];
    let mut buf = vec![0_u8; size];
    let mut sum: u64 = 0;
    for _ in 0..count {
        let call = client
            .send_request(std::hint::black_box(&message))
            .expect("send_request");
        let request = server.recv_request().expect("recv_request");
        assert_eq!(request.len(), size);
        buf.copy_from_slice(&request);
        request.reply(&buf).expect("reply");
        let response = client.wait(call).expect("wait");
        sum = sum.wrapping_add(u64::from(response[size - 1]));
    }
    println!("{sum}");
}

/// Two busy-polling rings, as `shmkit-spin`'s round trip: the echo sends
/// the request straight from its ring into the other.
fn rings(size: usize, count: usize) {
    let pid = std::process::id();
    let (to, from) = (
        format!("service-cost-{pid}-to"),
        format!("service-cost-{pid}-from"),
    );
    let _remove = [&to, &from].map(|name| RemoveSegment::new(shmkit::ring::SEGMENT_PREFIX, name));
    let options = shmkit::ring::Options::default().waiting(shmkit::ring::Waiting::BusyPoll);
    let mut requests = Producer::open_with(&to, &options).expect("a producer");
    let mut served = Consumer::open_with(&to, &options).expect("a consumer");
    let mut answers = Producer::open_with(&from, &options).expect("a producer");
    let mut responses = Consumer::open_with(&from, &options).expect("a consumer");
    let message = vec![0x5a_u8; size];
    let mut sum: u64 = 0;
    for _ in 0..count {
        requests.send(std::hint::black_box(&message)).expect("send");
        let request = served.read().expect("read");
        assert_eq!(request.len(), size);
        answers.send(&request).expect("send back");
        request.release();
        let response = responses.read().expect("read back");
        sum = sum.wrapping_add(u64::from(response[size - 1]));
    }
    println!("{sum}");
}
