//! Carries a shmkit topic between machines over zenoh.
//!
//! A [`Bridge`] on each host joins the host's topic `TOPIC` and a zenoh
//! session in peer mode (no router; multicast scouting off: only the
//! endpoints it is given). It puts every message of the host's own
//! publishers on the zenoh key `shmkit/TOPIC` and republishes what other
//! hosts' bridges put there into the local topic, one relaying publisher
//! per remote publisher, so that `shmkit pub` on one host reaches
//! `shmkit sub` on another.
//!
//! - **No loops.** Every bridge has an origin id, its host's
//!   ([`origin_id`]): a bridge drops samples of its own origin, and never
//!   puts on zenoh what a relay (its own or another bridge's on the host)
//!   published locally. What came from zenoh is not sent back out.
//! - **Order and identity.** A remote publisher's messages arrive in its
//!   order (zenoh delivers one session's samples in order) through a relay
//!   of its own, whose lane names the remote publisher
//!   ([`shmkit::topic::PublisherStatus::origin`], shown by `shmkit stat`)
//!   and whose messages carry the remote publisher's own sequence numbers
//!   ([`shmkit::topic::Received::sequence`]).
//! - **Back-pressure.** On a Block topic the bridge puts with zenoh's
//!   reliable delivery and blocking congestion control, and relays with
//!   blocking sends: a slow subscriber on another host slows the
//!   publishers on this one, as a local one would. On a drop-oldest topic
//!   it puts with congestion control Drop: nobody waits, and a sample zenoh
//!   could not queue is lost.
//! - **Crashes.** A bridge killed with `kill -9` is a dead member like any
//!   other (its places are freed by the kernel's locks). Restarted, it
//!   reconnects and carries on, with the same origin id: what was lost in
//!   between is described in the README ("Across machines"). Subscribers
//!   wait for a killed bridge's relays (a dead relay is no dead
//!   publisher); the restarted bridge's relays take their lanes over, or
//!   close them if the remote publisher ended meanwhile.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use shmkit_bridge::Bridge;
//!
//! let stop = AtomicBool::new(false); // set by a signal handler, say
//! Bridge::new("telemetry")
//!     .listen("tcp/10.0.0.1:7447")
//!     .connect("tcp/10.0.0.2:7447")
//!     .run(&|| stop.load(Ordering::Relaxed), &mut |event| eprintln!("{event}"))?;
//! # Ok::<(), shmkit_bridge::Error>(())
//! ```

mod host;
mod inbound;
mod outbound;
mod wire;

use std::collections::HashSet;
use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmkit::topic::{Options, Origin, Policy, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::sample::Locality;
use zenoh::Wait;

pub use host::origin_id;

/// How long a bridge's threads wait at a time before they look at the
/// stop condition again.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// How long zenoh lets a blocking put wait for queue space before it
/// closes the link (zenoh's default is 5 s): a Block topic's remote
/// subscriber may hold a publisher back this long.
const BLOCK_BEFORE_CLOSE: Duration = Duration::from_secs(600);

/// What went wrong in a bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local topic refused something (see [`shmkit::Error`]).
    #[error(transparent)]
    Topic(#[from] shmkit::Error),
    /// Zenoh refused the configuration (a bad endpoint, say) or failed.
    #[error("zenoh: {0}")]
    Zenoh(String),
}

impl Error {
    fn zenoh(err: impl fmt::Display) -> Error {
        Error::Zenoh(err.to_string())
    }
}

/// Something a running bridge reports (the CLI prints each on stderr).
///
/// ```
/// use shmkit_bridge::Event;
///
/// let event = Event::Remote { present: true };
/// assert_eq!(event.to_string(), "remote bridges present");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The bridge joined its topic and zenoh.
    Started {
        /// This host's origin id.
        origin: u64,
        /// The local topic's policy, which chose zenoh's congestion control.
        policy: Policy,
    },
    /// Whether some other host's bridge now subscribes to the topic.
    Remote {
        /// Whether one does.
        present: bool,
    },
    /// A remote publisher's messages now arrive through local publisher `id`.
    RelayOpened {
        /// The remote publisher.
        origin: Origin,
        /// The relay's id in the local topic.
        id: u64,
    },
    /// A remote publisher stopped and all it published was relayed.
    RelayClosed {
        /// The remote publisher.
        origin: Origin,
        /// The relay's id in the local topic.
        id: u64,
    },
    /// The bridge's subscriber missed messages (drop-oldest topics).
    Missed {
        /// How many.
        messages: u64,
    },
    /// A sample the bridge could not use, and why.
    Refused {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { origin, policy } => {
                write!(f, "started: origin {origin:#018x}, policy {policy:?}")
            }
            Event::Remote { present: true } => write!(f, "remote bridges present"),
            Event::Remote { present: false } => write!(f, "no remote bridge"),
            Event::RelayOpened { origin, id } => write!(
                f,
                "relaying host {:#018x} publisher {} as publisher {id}",
                origin.host, origin.publisher
            ),
            Event::RelayClosed { origin, id } => write!(
                f,
                "closed publisher {id} (host {:#018x} publisher {} stopped)",
                origin.host, origin.publisher
            ),
            Event::Missed { messages } => write!(f, "missed {messages} messages"),
            Event::Refused { reason } => write!(f, "refused {reason}"),
        }
    }
}

/// A bridge of one topic, configured, not yet running.
///
/// ```
/// let bridge = shmkit_bridge::Bridge::new("telemetry")
///     .listen("tcp/127.0.0.1:7447")
///     .connect("tcp/127.0.0.1:7448");
/// assert_eq!(bridge.key(), "shmkit/telemetry");
/// ```
#[derive(Clone, Debug)]
pub struct Bridge {
    topic: String,
    listen: Vec<String>,
    connect: Vec<String>,
    options: Options,
    origin: u64,
}

impl Bridge {
    /// A bridge of topic `topic` with default [`Options`] (nothing given:
    /// it joins an existing topic as it is) and this host's [`origin_id`].
    pub fn new(topic: &str) -> Bridge {
        Bridge {
            topic: topic.to_owned(),
            listen: Vec::new(),
            connect: Vec::new(),
            options: Options::default(),
            origin: origin_id(),
        }
    }

    /// Also accepts zenoh sessions at `endpoint` (zenoh's form:
    /// `tcp/10.0.0.1:7447`).
    pub fn listen(mut self, endpoint: &str) -> Bridge {
        self.listen.push(endpoint.to_owned());
        self
    }

    /// Also connects to a bridge listening at `endpoint` (retrying until it
    /// is there, and again whenever the session drops).
    pub fn connect(mut self, endpoint: &str) -> Bridge {
        self.connect.push(endpoint.to_owned());
        self
    }

    /// How the local topic is joined (and created, if the bridge is first):
    /// what these options give must match an existing topic, or
    /// [`Bridge::run`] fails with [`Error::Topic`] of
    /// [`shmkit::Error::OptionMismatch`].
    pub fn options(mut self, options: Options) -> Bridge {
        self.options = options;
        self
    }

    /// The zenoh key the topic travels on.
    pub fn key(&self) -> String {
        format!("shmkit/{}", self.topic)
    }

    fn zenoh_config(&self) -> Result<zenoh::Config, Error> {
        let json = |list: &[String]| {
            let quoted: Vec<String> = list.iter().map(|e| format!("{e:?}")).collect();
            format!("[{}]", quoted.join(","))
        };
        let mut config = zenoh::Config::default();
        let settings = [
            ("mode", "\"peer\"".to_owned()),
            ("scouting/multicast/enabled", "false".to_owned()),
            ("listen/endpoints", json(&self.listen)),
            ("connect/endpoints", json(&self.connect)),
            // A restarted peer is found again within a second.
            (
                "connect/retry",
                "{ period_init_ms: 100, period_max_ms: 1000, period_increase_factor: 2 }"
                    .to_owned(),
            ),
            (
                "transport/link/tx/queue/congestion_control/block/wait_before_close",
                BLOCK_BEFORE_CLOSE.as_micros().to_string(),
            ),
        ];
        for (key, value) in settings {
            config
                .insert_json5(key, &value)
                .map_err(|err| Error::Zenoh(format!("{key} = {value}: {err}")))?;
        }
        Ok(config)
    }

    /// Runs the bridge until `stop()` says so (it is asked every 50 ms),
    /// reporting what happens to `events`.
    ///
    /// # Errors
    ///
    /// [`Error::Zenoh`] for a bad endpoint or a zenoh failure;
    /// [`Error::Topic`] if the local topic cannot be joined or is corrupt.
    pub fn run(
        self,
        stop: &(dyn Fn() -> bool + Sync),
        events: &mut dyn FnMut(Event),
    ) -> Result<(), Error> {
        let config = self.zenoh_config()?;
        let local = self.options.clone().receive_history(false);
        let subscriber = Subscriber::open_with(&self.topic, &local)?;
        let policy = subscriber.policy();
        let session = zenoh::open(config).wait().map_err(Error::zenoh)?;
        let key = self.key();
        let congestion = match policy {
            Policy::Block => CongestionControl::Block,
            Policy::DropOldest => CongestionControl::Drop,
        };
        // Reliable is zenoh's default reliability; Remote: this session's
        // own subscriber never receives what it puts.
        let publisher = session
            .declare_publisher(key.clone())
            .congestion_control(congestion)
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(Error::zenoh)?;
        let zenoh_subscriber = session
            .declare_subscriber(key)
            .allowed_origin(Locality::Remote)
            .wait()
            .map_err(Error::zenoh)?;
        let (sender, receiver) = mpsc::channel();
        events(Event::Started {
            origin: self.origin,
            policy,
        });
        let own_relays = Arc::new(Mutex::new(HashSet::new()));
        let outbound = outbound::Outbound {
            subscriber,
            publisher,
            origin: self.origin,
            own_relays: Arc::clone(&own_relays),
            events: sender.clone(),
        };
        // Relays a killed predecessor left, which the topic's subscribers
        // wait for (before this bridge opens relays of its own).
        let orphans = inbound::orphans(&self.topic)?;
        let inbound = inbound::Inbound {
            subscriber: zenoh_subscriber,
            orphans,
            topic: self.topic.clone(),
            options: self.options.clone(),
            origin: self.origin,
            own_relays,
            events: sender,
        };
        let failed = std::sync::atomic::AtomicBool::new(false);
        let halt = || stop() || failed.load(std::sync::atomic::Ordering::Relaxed);
        let fail = |result: Result<(), Error>| {
            if result.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            result
        };
        let result = std::thread::scope(|scope| {
            let out = scope.spawn(|| fail(outbound.run(&halt)));
            let into = scope.spawn(|| fail(inbound.run(&halt)));
            loop {
                match receiver.recv_timeout(SLICE) {
                    Ok(event) => events(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            let out = out.join().expect("the outbound thread panicked");
            let into = into.join().expect("the inbound thread panicked");
            out.and(into)
        });
        let closed = session.close().wait().map_err(Error::zenoh);
        result.and(closed)
    }
}
