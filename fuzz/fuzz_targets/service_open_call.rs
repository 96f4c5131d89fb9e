//! Fuzzes a service's readers of shared bytes: a valid service (two client
//! slots, bodies of up to 64 bytes, a server, a client with two calls in
//! flight, one of them answered) has the input laid over it, from the
//! offset its first byte picks (0: the header, 640: slot 0's lines, 896:
//! its request ring's header, 1408: its request records, 5504: its
//! response ring's header, 6016: its response records), and then a new
//! client connects and calls, the server receives and replies, the first
//! client waits for its calls, and the status and garbage collection look
//! at it. Only `try_` verbs: whatever the bytes, every call must return or
//! fail cleanly, no panic, no out-of-bounds access, no hang. Each input's
//! service is made and removed (`/dev/shm/shmkit.service.fuzz-PID`); a run
//! that crashed leaves one, which the next run removes.
//!
//! Run: `cargo fuzz run -s none service_open_call`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::ring::{Action, Scope};
use shmkit::service::{self, Client, Options, Server};
use shmkit::{Key, ReadWrite, Segment};

const PREFIX: &str = "shmkit.service.fuzz-";

fuzz_target!(|data: &[u8]| {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| shmkit_fuzz::remove_leftovers(PREFIX));

    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let at = [0usize, 640, 896, 1408, 5504, 6016][usize::from(pick % 6)];
    let options = Options::default()
        .max_clients(2)
        .max_request(64)
        .max_response(64)
        .max_in_flight(2);
    let name = format!("fuzz-{}", std::process::id());
    let key = Key::posix(&format!("/{PREFIX}{}", std::process::id())).unwrap();
    if let Ok(old) = Segment::open(&key) {
        let _ = old.remove();
    }
    {
        let mut server = Server::open_with(&name, &options).unwrap();
        let mut client = Client::connect_with(&name, &options).unwrap();
        let answered = client.send_request(b"first").unwrap();
        let waiting = client.send_request(b"second").unwrap();
        let caller = server.try_recv_request().unwrap().caller();
        server.reply(caller, b"FIRST").unwrap();

        let segment = Segment::open(&key).unwrap();
        let memory = segment.attach(ReadWrite).unwrap();
        let n = bytes.len().min(memory.len() - at);
        let mut image = bytes[..n].to_vec();
        if at == 0 && image.len() >= 8 && image[..8] == [0; 8] {
            // A zero magic is a half-made segment: keep it a service's.
            image[..8].copy_from_slice(b"SHMKSERV");
        }
        memory.write_at(at, &image).unwrap();

        let _ = service::status(&name);
        if let Ok(mut second) = Client::connect_with(&name, &options) {
            if let Ok(call) = second.try_send_request(b"from the second client") {
                let _ = second.try_wait(&call).map(|r| r.len());
            }
        }
        for _ in 0..4 {
            let Ok(request) = server.try_recv_request() else {
                break;
            };
            let body = request.to_vec();
            let _ = request.reply(&body);
        }
        let _ = client.try_wait(&answered).map(|r| r.len());
        let _ = client.try_wait(&waiting).map(|r| r.len());
        let _ = client.try_send_request(b"third");
        let _ = service::collect_garbage(Scope::Name(&name), Action::DryRun);
        drop((waiting, answered, client, server));
    }
    if let Ok(segment) = Segment::open(&key) {
        let _ = segment.remove();
    }
});
