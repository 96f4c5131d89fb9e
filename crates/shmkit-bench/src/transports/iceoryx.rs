//! `iceoryx2` and `iceoryx2-event` (feature `iceoryx2`): eclipse iceoryx2's
//! publish–subscribe over shared memory, as a peer to compare the ring with.
//!
//! Each direction is one publish–subscribe service of `[u8]` slices, with
//! one publisher and one subscriber, no overflow (a full subscriber queue
//! makes the publisher retry, iceoryx2's `RetryUntilDelivered`: nothing is
//! lost) and a queue as deep as the bench's ring holds messages (at most
//! [`MAX_DEPTH`]). Per message the sender loans a slice of the size,
//! copies the message into it and sends it; the receiver takes the sample
//! and checks it in place, as with the ring.
//!
//! - `iceoryx2` busy-polls: the receiver calls `receive` until a sample
//!   comes.
//! - `iceoryx2-event` blocks: each direction also has an event service;
//!   the sender notifies after every sample, and the receiver, when it
//!   finds no sample, waits in a `WaitSet` on its listener (then takes the
//!   notifications).
//!
//! A waiting side checks now and then that the other process is alive, as
//! the other transports do.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::{event, publish_subscribe};
use serde::{Deserialize, Serialize};

use super::{one_way, ring_capacity, ring_record, wrong_length, AnyLink, Link, Opened, PeerEnd};
use super::{Setup, Transport};
use crate::peer::Peer;
use crate::Error;

/// The deepest subscriber queue the bench asks for.
const MAX_DEPTH: u64 = 4096;

/// Polls between two checks that the other process lives.
const POLLS_PER_CHECK: u32 = 1 << 16;

/// How long a blocked side waits before it checks the other process.
const PATIENCE: Duration = Duration::from_secs(1);

/// The subscriber queue for messages of `size` bytes: as many messages as
/// the bench's ring holds, at most [`MAX_DEPTH`].
fn depth(size: usize) -> usize {
    (ring_capacity(size) / ring_record(size)).clamp(2, MAX_DEPTH) as usize
}

fn failed<E: Debug>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |err| Error::Message(format!("iceoryx2: {what}: {err:?}"))
}

/// An iceoryx2 domain of one measurement's own: its files in /dev/shm
/// begin with `prefix`, the others are below `root`. iceoryx2 keeps a
/// domain's management segment for good (later processes may join it), so
/// the bench gives each measurement a domain, which the parent removes
/// when the measurement ends, with whatever a killed peer left in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    prefix: String,
    root: PathBuf,
}

impl Domain {
    /// `shmkit-bench-PID-N-iox2-` and a folder of that name in the
    /// temporary directory.
    fn new() -> Domain {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("shmkit-bench-{}-{n}-iox2-", std::process::id());
        let root = std::env::temp_dir().join(&prefix);
        Domain { prefix, root }
    }

    fn config(&self) -> Result<Config, Error> {
        let mut config = Config::default();
        config.global.prefix =
            FileName::new(self.prefix.as_bytes()).map_err(failed("a file prefix"))?;
        let mut root = self.root.to_string_lossy().into_owned();
        root.push('/');
        config.global.set_root_path(
            &iceoryx2::prelude::Path::new(root.as_bytes()).map_err(failed("a path"))?,
        );
        Ok(config)
    }

    /// Removes the domain's files: exactly those this measurement made.
    fn remove(&self) {
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&self.prefix)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Removes a [`Domain`] when dropped.
#[derive(Debug)]
struct RemoveDomain(Domain);

impl Drop for RemoveDomain {
    fn drop(&mut self) {
        self.0.remove();
    }
}

/// Both ends' services and the parent's ports: a service to the peer, and
/// one back if `both`.
pub fn open(transport: Transport, both: bool, size: usize) -> Result<Opened, Error> {
    let blocking = transport == Transport::Iceoryx2Event;
    let domain = Domain::new();
    let remove = RemoveDomain(domain.clone());
    let to_peer = "to-peer".to_owned();
    let from_peer = both.then(|| "from-peer".to_owned());
    let mut ports = Ports::new(
        &domain,
        size,
        blocking,
        Some(&to_peer),
        from_peer.as_deref(),
    )?;
    ports.domain = Some(remove);
    Ok(Opened::Ready(Box::new(Setup {
        link: AnyLink::Iceoryx2(ports),
        peer_end: PeerEnd::Iceoryx2 {
            domain,
            rx: to_peer,
            tx: from_peer,
        },
        inherit: Vec::new(),
        rings: Vec::new(),
    })))
}

/// In the peer: its ports on the services the parent made.
pub fn peer_link(
    transport: Transport,
    size: usize,
    domain: &Domain,
    rx: &str,
    tx: Option<&str>,
    parent: Peer,
) -> Result<AnyLink, Error> {
    let blocking = transport == Transport::Iceoryx2Event;
    let mut ports = Ports::new(domain, size, blocking, tx, Some(rx))?;
    ports.watch(parent);
    Ok(AnyLink::Iceoryx2(ports))
}

/// The sending half of one direction.
#[derive(Debug)]
struct Sender {
    publisher: Publisher<ipc::Service, [u8], ()>,
    notifier: Option<Notifier<ipc::Service>>,
}

/// The receiving half of one direction.
#[derive(Debug)]
struct Receiver {
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    listener: Option<Listener<ipc::Service>>,
}

/// One process's ports. A [`Link`] borrows them ([`Ports::with_link`]),
/// because a `WaitSet` borrows what it waits on.
#[derive(Debug)]
pub struct Ports {
    tx: Option<Sender>,
    rx: Option<Receiver>,
    /// The services, kept open as long as the ports.
    _data: Vec<publish_subscribe::PortFactory<ipc::Service, [u8], ()>>,
    _events: Vec<event::PortFactory<ipc::Service>>,
    /// The other process, once known: a publisher blocked on a full queue
    /// gives up when it is gone.
    peer: Arc<OnceLock<Peer>>,
    /// Dropped after the ports: they belong to it.
    _node: Node<ipc::Service>,
    /// The parent's: removes the domain, after everything else.
    domain: Option<RemoveDomain>,
}

impl Ports {
    /// A node with a publisher on service `tx` and a subscriber on `rx`
    /// (each opened, or created if this side comes first), and with
    /// `blocking` their event services' notifier and listener.
    fn new(
        domain: &Domain,
        size: usize,
        blocking: bool,
        tx: Option<&str>,
        rx: Option<&str>,
    ) -> Result<Ports, Error> {
        // iceoryx2 reports failures as values; its log would only repeat
        // them on standard error, which is the peer's channel for errors.
        set_log_level(LogLevel::Fatal);
        let node = NodeBuilder::new()
            .config(&domain.config()?)
            // The bench's processes end as they are told, not on signals.
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(failed("creating a node"))?;
        let peer = Arc::new(OnceLock::<Peer>::new());
        let mut data = Vec::new();
        let mut events = Vec::new();
        let open = |name: &str| -> Result<_, Error> {
            let service_name: ServiceName = name.try_into().map_err(failed("a service name"))?;
            let service = node
                .service_builder(&service_name)
                .publish_subscribe::<[u8]>()
                .enable_safe_overflow(false)
                .subscriber_max_buffer_size(depth(size))
                .max_publishers(1)
                .max_subscribers(1)
                .open_or_create()
                .map_err(failed("opening a publish-subscribe service"))?;
            let event = if blocking {
                let event = node
                    .service_builder(&service_name)
                    .event()
                    .max_notifiers(1)
                    .max_listeners(1)
                    .open_or_create()
                    .map_err(failed("opening an event service"))?;
                Some(event)
            } else {
                None
            };
            Ok((service, event))
        };
        let tx = match tx {
            Some(name) => {
                let (service, event) = open(name)?;
                let watched = Arc::clone(&peer);
                let publisher = service
                    .publisher_builder()
                    .initial_max_slice_len(size)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .set_backpressure_handler(move |info: &BackpressureInfo| {
                        if info.elapsed_time >= PATIENCE
                            && watched.get().is_some_and(|peer| !peer.is_alive())
                        {
                            BackpressureAction::DiscardDataAndFail
                        } else {
                            BackpressureAction::Retry
                        }
                    })
                    .create()
                    .map_err(failed("creating a publisher"))?;
                let notifier = event
                    .as_ref()
                    .map(|event| event.notifier_builder().create())
                    .transpose()
                    .map_err(failed("creating a notifier"))?;
                data.push(service);
                events.extend(event);
                Some(Sender {
                    publisher,
                    notifier,
                })
            }
            None => None,
        };
        let rx = match rx {
            Some(name) => {
                let (service, event) = open(name)?;
                let subscriber = service
                    .subscriber_builder()
                    .buffer_size(depth(size))
                    .create()
                    .map_err(failed("creating a subscriber"))?;
                let listener = event
                    .as_ref()
                    .map(|event| event.listener_builder().create())
                    .transpose()
                    .map_err(failed("creating a listener"))?;
                data.push(service);
                events.extend(event);
                Some(Receiver {
                    subscriber,
                    listener,
                })
            }
            None => None,
        };
        Ok(Ports {
            tx,
            rx,
            _data: data,
            _events: events,
            peer,
            _node: node,
            domain: None,
        })
    }

    /// Tells the ports which process is at the other end.
    pub fn watch(&mut self, peer: Peer) {
        let _ = self.peer.set(peer);
    }

    /// Runs `f` with a link over these ports (and, when they block, a
    /// `WaitSet` with the listener attached).
    pub fn with_link<T>(
        &mut self,
        f: impl FnOnce(&mut Iceoryx2Link<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let peer = self.peer.get().copied();
        let listener = self.rx.as_ref().and_then(|rx| rx.listener.as_ref());
        let Some(listener) = listener else {
            return f(&mut Iceoryx2Link {
                ports: self,
                waitset: None,
                peer,
            });
        };
        let waitset = WaitSetBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(failed("creating a WaitSet"))?;
        let _guard = waitset
            .attach_notification(listener)
            .map_err(failed("attaching the listener to the WaitSet"))?;
        f(&mut Iceoryx2Link {
            ports: self,
            waitset: Some(&waitset),
            peer,
        })
    }
}

/// The link over a process's [`Ports`].
#[derive(Debug)]
pub struct Iceoryx2Link<'a> {
    ports: &'a Ports,
    /// With `iceoryx2-event`: the WaitSet the listener is attached to.
    waitset: Option<&'a WaitSet<ipc::Service>>,
    peer: Option<Peer>,
}

impl Iceoryx2Link<'_> {
    fn sender(&self) -> Result<&Sender, Error> {
        self.ports.tx.as_ref().ok_or_else(|| one_way("send"))
    }

    fn publish(&self, message: &[u8]) -> Result<(), Error> {
        let sender = self.sender()?;
        let sample = sender
            .publisher
            .loan_slice_uninit(message.len())
            .map_err(failed("loaning a sample"))?;
        sample
            .write_from_slice(message)
            .send()
            .map_err(failed("sending a sample"))?;
        if let Some(notifier) = &sender.notifier {
            notifier.notify().map_err(failed("notifying"))?;
        }
        Ok(())
    }

    /// The next sample, waiting for it as the transport does.
    fn next(&self) -> Result<iceoryx2::sample::Sample<ipc::Service, [u8], ()>, Error> {
        let rx = self.ports.rx.as_ref().ok_or_else(|| one_way("receive"))?;
        let mut polls: u32 = 0;
        loop {
            if let Some(sample) = rx
                .subscriber
                .receive()
                .map_err(failed("receiving a sample"))?
            {
                return Ok(sample);
            }
            match (self.waitset, &rx.listener) {
                (Some(waitset), Some(listener)) => {
                    let mut woken = false;
                    waitset
                        .wait_and_process_once_with_timeout(
                            |_| {
                                woken = true;
                                CallbackProgression::Continue
                            },
                            PATIENCE,
                        )
                        .map_err(failed("waiting in the WaitSet"))?;
                    // Takes the notifications, so that the next wait
                    // sleeps until there are new ones.
                    listener
                        .try_wait(|_| {})
                        .map_err(failed("taking notifications"))?;
                    if !woken {
                        self.check_peer()?;
                    }
                }
                _ => {
                    std::hint::spin_loop();
                    polls = polls.wrapping_add(1);
                    if polls.is_multiple_of(POLLS_PER_CHECK) {
                        self.check_peer()?;
                    }
                }
            }
        }
    }

    fn check_peer(&self) -> Result<(), Error> {
        match self.peer {
            Some(peer) if !peer.is_alive() => Err(Error::Message(
                "the other side of the iceoryx2 service is gone".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

impl Link for Iceoryx2Link<'_> {
    // Inlined into the loops of `measure`, as the shmkit links are, so
    // that no transport pays a call per message the others do not.
    #[inline]
    fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        self.publish(message)
    }

    #[inline]
    fn recv<R>(&mut self, buf: &mut [u8], inspect: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let sample = self.next()?;
        let payload = sample.payload();
        if payload.len() != buf.len() {
            return Err(wrong_length(payload.len(), buf.len()));
        }
        Ok(inspect(payload))
    }

    /// Checks the sample in place and copies it straight into a loan of
    /// the other service, as the ring's echo does.
    fn echo(
        &mut self,
        buf: &mut [u8],
        check: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.sender()?;
        let sample = self.next()?;
        let payload = sample.payload();
        if payload.len() != buf.len() {
            return Err(wrong_length(payload.len(), buf.len()));
        }
        check(payload)?;
        self.publish(payload)
    }
}
