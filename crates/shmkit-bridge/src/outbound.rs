//! Local to zenoh: the bridge's subscriber to its local topic, which puts
//! every message of this host's own publishers on `shmkit/TOPIC`, and a
//! roster of those publishers every [`ROSTER_INTERVAL`].
//!
//! Messages of relay lanes (the ones this bridge or another bridge of this
//! host republished from zenoh) are skipped: what came from zenoh never
//! goes back out, so no topology makes a loop.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmkit::topic::{self, Received, Subscriber};
use zenoh::Wait;

use crate::wire::{Entry, Header, Roster};
use crate::{Error, Event, SLICE};

/// How often the bridge tells the others which of its host's publishers
/// still publish.
pub(crate) const ROSTER_INTERVAL: Duration = Duration::from_millis(100);

/// At most this many messages are forwarded while draining for a roster.
const DRAIN_LIMIT: usize = 4096;

pub(crate) struct Outbound<'z> {
    pub subscriber: Subscriber,
    pub publisher: zenoh::pubsub::Publisher<'z>,
    pub origin: u64,
    /// Ids of this bridge's own relays (shared with the inbound side).
    pub own_relays: Arc<Mutex<HashSet<u64>>>,
    pub events: Sender<Event>,
}

impl Outbound<'_> {
    pub(crate) fn run(mut self, stop: &dyn Fn() -> bool) -> Result<(), Error> {
        let mut buf = vec![0u8; self.subscriber.max_message()];
        // Publisher id -> whether it is a relay (skipped).
        let mut relays: HashMap<u64, bool> = HashMap::new();
        let mut roster_at = Instant::now();
        let mut matching = false;
        while !stop() {
            match self.subscriber.recv_timeout(&mut buf, SLICE) {
                Ok(got) => self.forward(&mut relays, &buf, got)?,
                Err(shmkit::Error::Timeout { .. }) => {}
                Err(shmkit::Error::Lagged { missed, .. }) => {
                    let _ = self.events.send(Event::Missed { messages: missed });
                }
                // No publisher now: one may open later.
                Err(shmkit::Error::Closed { .. } | shmkit::Error::PeerGone { .. }) => {
                    std::thread::sleep(SLICE);
                }
                Err(err) => return Err(err.into()),
            }
            if roster_at.elapsed() >= ROSTER_INTERVAL {
                roster_at = Instant::now();
                self.roster(&mut relays, &mut buf)?;
                let now = self
                    .publisher
                    .matching_status()
                    .wait()
                    .map_err(Error::zenoh)?
                    .matching();
                if now != matching {
                    matching = now;
                    let _ = self.events.send(Event::Remote { present: now });
                }
            }
        }
        Ok(())
    }

    /// Puts one message on zenoh unless it came from a relay.
    fn forward(
        &self,
        relays: &mut HashMap<u64, bool>,
        buf: &[u8],
        got: Received,
    ) -> Result<(), Error> {
        let relay = match relays.get(&got.publisher) {
            Some(&relay) => relay,
            None => {
                let relay = self.is_relay(got.publisher);
                relays.insert(got.publisher, relay);
                relay
            }
        };
        if relay {
            return Ok(());
        }
        let header = Header::Message {
            origin: self.origin,
            publisher: got.publisher,
            sequence: got.sequence,
        };
        self.publisher
            .put(&buf[..got.len])
            .attachment(&header.encode()[..])
            .wait()
            .map_err(Error::zenoh)
    }

    /// Whether local publisher `id` relays another host's (its lane says
    /// so before it publishes anything: topic `Options::relay`).
    fn is_relay(&self, id: u64) -> bool {
        self.own_relays.lock().expect("relay ids").contains(&id)
            || self.subscriber.origin_of(id).is_some()
    }

    /// Reads which local publishers publish, forwards what they committed
    /// up to now, then says so on zenoh (after the messages, in order).
    fn roster(&mut self, relays: &mut HashMap<u64, bool>, buf: &mut [u8]) -> Result<(), Error> {
        let status = match topic::status(self.subscriber.name()) {
            Ok(status) => status,
            Err(_) => return Ok(()), // looked at again next time
        };
        let mut roster = Roster {
            max_id: status.publishers.iter().map(|p| p.id).max().unwrap_or(0),
            drained: false,
            entries: status
                .publishers
                .iter()
                .filter(|p| p.origin.is_none())
                .map(|p| Entry {
                    id: p.id,
                    open: p.alive && !p.closed,
                    published: p.published,
                })
                .collect(),
        };
        for _ in 0..DRAIN_LIMIT {
            match self.subscriber.try_recv(buf) {
                Ok(got) => self.forward(relays, buf, got)?,
                Err(shmkit::Error::Lagged { missed, .. }) => {
                    let _ = self.events.send(Event::Missed { messages: missed });
                }
                Err(
                    shmkit::Error::Empty { .. }
                    | shmkit::Error::Closed { .. }
                    | shmkit::Error::PeerGone { .. },
                ) => {
                    roster.drained = true;
                    break;
                }
                Err(err) => return Err(err.into()),
            }
        }
        let header = Header::Roster {
            origin: self.origin,
        };
        self.publisher
            .put(roster.encode())
            .attachment(&header.encode()[..])
            .wait()
            .map_err(Error::zenoh)
    }
}
