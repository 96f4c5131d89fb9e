//! The bridge's messages on zenoh: what rides in a sample's attachment and
//! payload (drawn in `docs/FORMAT.md`, "Bridge messages").
//!
//! Every sample on `shmkit/TOPIC` has a 25-byte attachment: a kind byte,
//! then the origin host, the publisher's id there and its sequence number
//! (little-endian u64s). A message's payload is the message; a roster's
//! payload lists the origin's publishers (see [`Roster`]). Everything
//! decoded here came from the network: a sample that does not parse is
//! refused with the reason, never a panic.

/// The attachment's kind byte of a message.
const KIND_MESSAGE: u8 = 1;
/// The attachment's kind byte of a roster.
const KIND_ROSTER: u8 = 2;
/// Bytes of the attachment.
pub(crate) const ATTACHMENT_LEN: usize = 25;
/// Bytes of one roster entry: id, final count, open flag.
const ENTRY_LEN: usize = 17;
/// Bytes of a roster's fixed part: `max_id`, `drained`, entry count.
const ROSTER_FIXED: usize = 13;

/// What a sample's attachment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A message of `publisher` on host `origin`, its `sequence`-th.
    Message {
        origin: u64,
        publisher: u64,
        sequence: u64,
    },
    /// A roster of host `origin`'s publishers (the payload).
    Roster { origin: u64 },
}

impl Header {
    pub(crate) fn origin(&self) -> u64 {
        match *self {
            Header::Message { origin, .. } | Header::Roster { origin } => origin,
        }
    }

    pub(crate) fn encode(&self) -> [u8; ATTACHMENT_LEN] {
        let (kind, origin, publisher, sequence) = match *self {
            Header::Message {
                origin,
                publisher,
                sequence,
            } => (KIND_MESSAGE, origin, publisher, sequence),
            Header::Roster { origin } => (KIND_ROSTER, origin, 0, 0),
        };
        let mut bytes = [0u8; ATTACHMENT_LEN];
        bytes[0] = kind;
        bytes[1..9].copy_from_slice(&origin.to_le_bytes());
        bytes[9..17].copy_from_slice(&publisher.to_le_bytes());
        bytes[17..25].copy_from_slice(&sequence.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, String> {
        let bytes: &[u8; ATTACHMENT_LEN] = bytes.try_into().map_err(|_| {
            format!(
                "an attachment of {} bytes, not {ATTACHMENT_LEN}",
                bytes.len()
            )
        })?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let origin = word(1);
        if origin == 0 {
            return Err("origin host 0".to_owned());
        }
        match bytes[0] {
            KIND_MESSAGE => Ok(Header::Message {
                origin,
                publisher: word(9),
                sequence: word(17),
            }),
            KIND_ROSTER => Ok(Header::Roster { origin }),
            kind => Err(format!("kind {kind}")),
        }
    }
}

/// One local publisher in a roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: u64,
    /// Whether it still publishes (open and alive).
    pub open: bool,
    /// How many messages it committed: its last sequence number + 1.
    pub published: u64,
}

/// What a host's bridge says about the host's own publishers (not its
/// relays), after it forwarded what it had received of them: every
/// publisher with an id up to `max_id` that is not listed as open has
/// stopped, and if `drained`, everything it will ever forward of them
/// was sent before this roster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Roster {
    pub max_id: u64,
    pub drained: bool,
    pub entries: Vec<Entry>,
}

impl Roster {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(ROSTER_FIXED + ENTRY_LEN * self.entries.len());
        bytes.extend_from_slice(&self.max_id.to_le_bytes());
        bytes.push(u8::from(self.drained));
        bytes.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.id.to_le_bytes());
            bytes.extend_from_slice(&entry.published.to_le_bytes());
            bytes.push(u8::from(entry.open));
        }
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Roster, String> {
        if bytes.len() < ROSTER_FIXED {
            return Err(format!("a roster of {} bytes", bytes.len()));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
        let expected = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(ROSTER_FIXED));
        if expected != Some(bytes.len()) || bytes[8] > 1 {
            return Err(format!(
                "a roster of {} bytes that says it has {count} entries",
                bytes.len()
            ));
        }
        let entries = (0..count)
            .map(|i| {
                let at = ROSTER_FIXED + i * ENTRY_LEN;
                Entry {
                    id: u64_at(at),
                    published: u64_at(at + 8),
                    open: bytes[at + 16] != 0,
                }
            })
            .collect();
        Ok(Roster {
            max_id: u64_at(0),
            drained: bytes[8] == 1,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_rosters_survive_a_round_trip() {
        let message = Header::Message {
            origin: 9,
            publisher: 2,
            sequence: u64::MAX,
        };
        assert_eq!(Header::decode(&message.encode()), Ok(message));
        let roster = Header::Roster { origin: 5 };
        assert_eq!(Header::decode(&roster.encode()), Ok(roster));
        let list = Roster {
            max_id: 7,
            drained: true,
            entries: vec![
                Entry {
                    id: 3,
                    open: false,
                    published: 100,
                },
                Entry {
                    id: 7,
                    open: true,
                    published: 1,
                },
            ],
        };
        assert_eq!(Roster::decode(&list.encode()), Ok(list));
    }

    #[test]
    fn hostile_bytes_are_refused_not_a_panic() {
        assert!(Header::decode(&[1; 24]).is_err());
        assert!(Header::decode(&[0; 25]).is_err()); // origin 0
        let mut unknown = Header::Roster { origin: 1 }.encode();
        unknown[0] = 3;
        assert!(Header::decode(&unknown).is_err());
        let mut roster = Roster::default().encode();
        roster[9] = 0xff; // claims entries it does not have
        assert!(Roster::decode(&roster).is_err());
        assert!(Roster::decode(&[0; 12]).is_err());
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let _ = Header::decode(&bytes);
            let _ = Roster::decode(&bytes);
        }
    }
}
