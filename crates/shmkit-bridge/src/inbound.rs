//! Zenoh to local: the bridge's zenoh subscriber to `shmkit/TOPIC`, which
//! republishes each remote publisher's messages into the local topic
//! through a relaying publisher of its own (topic `Options::relay`), in
//! the order they arrive, with the remote publisher's sequence numbers.
//!
//! A relay closes when the remote host's roster says its publisher
//! stopped and everything it published was relayed (or its bridge had
//! forwarded all it ever will, `drained`). A remote host whose bridge is
//! gone keeps its relays open: its bridge may come back and carry on.
//!
//! A relay of a killed predecessor (an *orphan*) is waited for by the
//! topic's subscribers; its origin's next message reopens its lane through
//! a new relay, and a roster that says its origin stopped closes it.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use shmkit::topic::{Options, Origin, Policy, Publisher};
use zenoh::handlers::FifoChannelHandler;
use zenoh::sample::Sample;

use crate::wire::{Header, Roster};
use crate::{Error, Event, SLICE};

/// One remote publisher being relayed.
struct Relay {
    publisher: Publisher,
    /// The sequence number after the last one relayed.
    next: u64,
    /// Close once `next` reaches this (the remote publisher's final count).
    close_at: Option<u64>,
}

/// The origins of `topic`'s orphans: relays' lanes left open by a dead
/// publisher (a killed bridge), which the topic's subscribers wait for.
pub(crate) fn orphans(topic: &str) -> Result<HashSet<Origin>, Error> {
    Ok(shmkit::topic::status(topic)?
        .publishers
        .into_iter()
        .filter(|p| !p.alive && !p.closed)
        .filter_map(|p| p.origin)
        .collect())
}

pub(crate) struct Inbound {
    pub subscriber: zenoh::pubsub::Subscriber<FifoChannelHandler<Sample>>,
    /// The origins of dead relays' open lanes, when the bridge started.
    pub orphans: HashSet<Origin>,
    pub topic: String,
    pub options: Options,
    pub origin: u64,
    pub own_relays: Arc<Mutex<HashSet<u64>>>,
    pub events: Sender<Event>,
}

impl Inbound {
    pub(crate) fn run(mut self, stop: &dyn Fn() -> bool) -> Result<(), Error> {
        let mut relays: HashMap<Origin, Relay> = HashMap::new();
        while !stop() {
            let sample = match self.subscriber.recv_timeout(SLICE) {
                Ok(Some(sample)) => sample,
                Ok(None) => continue,
                Err(err) => return Err(Error::zenoh(err)),
            };
            let header = match sample.attachment().map(|a| Header::decode(&a.to_bytes())) {
                Some(Ok(header)) => header,
                Some(Err(reason)) => {
                    self.refuse(format!("a sample with {reason}"));
                    continue;
                }
                None => {
                    self.refuse("a sample without an attachment".to_owned());
                    continue;
                }
            };
            if header.origin() == self.origin {
                continue; // this host's own: never back in
            }
            let payload = sample.payload().to_bytes();
            match header {
                Header::Message {
                    origin,
                    publisher,
                    sequence,
                } => {
                    let origin = Origin {
                        host: origin,
                        publisher,
                    };
                    self.relay(&mut relays, origin, sequence, &payload, stop)?;
                }
                Header::Roster { origin } => match Roster::decode(&payload) {
                    Ok(roster) => {
                        self.apply(&mut relays, origin, &roster);
                        self.retire_orphans(origin, &roster)?;
                    }
                    Err(reason) => self.refuse(format!("{reason} from host {origin:#x}")),
                },
            }
        }
        Ok(())
    }

    fn refuse(&self, reason: String) {
        let _ = self.events.send(Event::Refused { reason });
    }

    fn relay(
        &mut self,
        relays: &mut HashMap<Origin, Relay>,
        origin: Origin,
        sequence: u64,
        message: &[u8],
        stop: &dyn Fn() -> bool,
    ) -> Result<(), Error> {
        let relay = match relays.entry(origin) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let publisher =
                    match Publisher::open_with(&self.topic, &self.options.clone().relay(origin)) {
                        Ok(publisher) => publisher,
                        Err(err @ shmkit::Error::TopicFull { .. }) => {
                            self.refuse(format!("a message of {origin:?}: {err}"));
                            return Ok(());
                        }
                        Err(err) => return Err(err.into()),
                    };
                // It took over the orphan's lane, if there was one.
                self.orphans.remove(&origin);
                self.own_relays
                    .lock()
                    .expect("relay ids")
                    .insert(publisher.id());
                let _ = self.events.send(Event::RelayOpened {
                    origin,
                    id: publisher.id(),
                });
                entry.insert(Relay {
                    publisher,
                    next: sequence,
                    close_at: None,
                })
            }
        };
        relay.publisher.set_sequence(sequence)?;
        if message.len() > relay.publisher.max_message() {
            self.refuse(format!(
                "message {sequence} of {origin:?}: {} bytes, more than the {} of the local topic",
                message.len(),
                relay.publisher.max_message()
            ));
        } else if relay.publisher.policy() == Policy::DropOldest {
            relay.publisher.send(message)?;
        } else {
            // In slices, so that a stop is noticed while a slow local
            // subscriber holds the relay back.
            loop {
                match relay.publisher.send_timeout(message, SLICE) {
                    Ok(()) => break,
                    Err(shmkit::Error::Timeout { .. }) if !stop() => {}
                    Err(shmkit::Error::Timeout { .. }) => return Ok(()),
                    Err(err) => return Err(err.into()),
                }
            }
        }
        relay.next = sequence.wrapping_add(1);
        if relay.close_at.is_some_and(|at| relay.next >= at) {
            self.close(relays, origin);
        }
        Ok(())
    }

    /// Closes the relays of `host`'s publishers that its roster says stopped.
    fn apply(&self, relays: &mut HashMap<Origin, Relay>, host: u64, roster: &Roster) {
        let stopped: Vec<(Origin, bool)> = relays
            .iter_mut()
            .filter(|(origin, _)| origin.host == host && origin.publisher <= roster.max_id)
            .filter_map(|(origin, relay)| {
                let entry = roster.entries.iter().find(|e| e.id == origin.publisher);
                if entry.is_some_and(|e| e.open) {
                    return None;
                }
                let published = entry.map(|e| e.published);
                relay.close_at = published;
                let done = roster.drained || published.is_some_and(|p| relay.next >= p);
                Some((*origin, done))
            })
            .collect();
        for (origin, done) in stopped {
            if done {
                self.close(relays, origin);
            }
        }
    }

    /// Closes the orphans of `host`'s publishers that its roster says
    /// stopped: a relay of the same origin takes the lane over and closes.
    /// What they published while no bridge of this host listened is lost.
    fn retire_orphans(&mut self, host: u64, roster: &Roster) -> Result<(), Error> {
        let stopped: Vec<Origin> = self
            .orphans
            .iter()
            .filter(|o| o.host == host && o.publisher <= roster.max_id)
            .filter(|o| !roster.entries.iter().any(|e| e.id == o.publisher && e.open))
            .copied()
            .collect();
        if stopped.is_empty() {
            return Ok(());
        }
        // Still there? A lane taken over since is no orphan, and a relay
        // opened for it would take (and keep in use) another lane.
        let left = orphans(&self.topic)?;
        for origin in stopped {
            self.orphans.remove(&origin);
            if !left.contains(&origin) {
                continue;
            }
            match Publisher::open_with(&self.topic, &self.options.clone().relay(origin)) {
                Ok(relay) => {
                    let id = relay.id();
                    relay.close();
                    let _ = self.events.send(Event::RelayClosed { origin, id });
                }
                // No place for it now: the orphan stays for the operator.
                Err(err @ shmkit::Error::TopicFull { .. }) => {
                    self.refuse(format!("closing the dead relay of {origin:?}: {err}"));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    fn close(&self, relays: &mut HashMap<Origin, Relay>, origin: Origin) {
        if let Some(relay) = relays.remove(&origin) {
            let id = relay.publisher.id();
            relay.publisher.close();
            let _ = self.events.send(Event::RelayClosed { origin, id });
        }
    }
}
