//! How a ring is created and how an endpoint waits: [`Options`].

use super::*;
use crate::segment::format::max_message_fits;

/// How a ring is created and how an endpoint waits.
///
/// The [capacity](Options::capacity), [maximum
/// message](Options::max_message) and [mode](Options::mode) are the
/// ring's own: they shape a ring this call creates, and when the ring
/// exists already, each one that was given must equal the ring's, or the
/// open fails with [`Error::OptionMismatch`] naming the option, the value
/// asked for and the ring's. One not given takes the ring's own, whatever
/// it is (not the default). Topics ([`topic::Options`](crate::topic::Options))
/// and services ([`service::Options`](crate::service::Options)) follow the
/// same rule.
///
/// The [maximum message](Options::max_message) must fit the capacity the
/// ring has: the one given; else, for a ring this call creates,
/// [`DEFAULT_CAPACITY`]; else the existing ring's own. One too large for
/// it is [`Error::TooLarge`], as creating a ring of that capacity says
/// (and it is checked before the equality above: an option that no ring
/// of that capacity could have is `TooLarge`, one that another ring could
/// have is `OptionMismatch`). So `max_message` alone joins an existing
/// ring of any capacity whose maximum message it is, and creating with
/// `max_message` alone fails when the default capacity cannot carry it.
/// What is wrong whatever the ring (a capacity that is not a power of two
/// in range, a maximum message over what the capacity given or the
/// largest ring carries) fails with `InvalidArgument` or `TooLarge` before
/// the ring is looked for.
///
/// The [group](Options::group) applies only to a ring this call creates
/// (an existing ring keeps its own, unchecked). [Waiting](Options::waiting),
/// [trust](Options::trust) and
/// [`wait_for_new_consumer`](Options::wait_for_new_consumer) are this
/// endpoint's own, and may differ between the two ends. An existing ring
/// is used only if its owner is trusted ([`Options::trust`]; by default
/// only this process's own uid).
///
/// ```
/// use shmkit::ring::{Options, Waiting};
///
/// let options = Options::default().capacity(1 << 16).waiting(Waiting::BusyPoll);
/// assert_eq!(options.max_message_len(), (1 << 15) - 16);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(super) capacity: Option<u64>,
    pub(super) max_message: Option<u64>,
    pub(super) mode: Option<Mode>,
    pub(super) waiting: Waiting,
    pub(super) group: Option<u32>,
    pub(super) trust: Trust,
    pub(super) wait_for_new_consumer: bool,
}

/// The data area of a ring made without [`Options::capacity`]: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;

impl Default for Options {
    /// A 1 MiB data area, the largest messages it allows, mode 0600,
    /// adaptive waiting, and a producer that fails once its consumer left.
    fn default() -> Options {
        Options {
            capacity: None,
            max_message: None,
            mode: None,
            waiting: Waiting::Adaptive,
            group: None,
            trust: Trust::me(),
            wait_for_new_consumer: false,
        }
    }
}

impl Options {
    /// Bytes in the data area: a power of two from 4 KiB to 1 TiB
    /// ([`DEFAULT_CAPACITY`] if not given).
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.capacity = Some(bytes);
        self
    }

    /// The largest message, at most about half the capacity (the
    /// default): the capacity given, else the default for a ring this call
    /// creates, else the existing ring's ([`Error::TooLarge`] if over).
    pub fn max_message(mut self, bytes: u64) -> Options {
        self.max_message = Some(bytes);
        self
    }

    /// Permission bits of the ring's segment (0600 if not given).
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = Some(mode);
        self
    }

    /// The group of the ring's segment, for sharing it with the group's
    /// members (with a mode such as 0660); this process must be a member.
    pub fn group(mut self, gid: u32) -> Options {
        self.group = Some(gid);
        self
    }

    /// Whose existing rings this endpoint joins: by default only those of
    /// this process's own uid, so that another user cannot squat the name
    /// (docs/SECURITY.md). Another owner's ring is [`Error::UntrustedOwner`].
    pub fn trust(mut self, trust: Trust) -> Options {
        self.trust = trust;
        self
    }

    /// How the endpoint waits when the ring is full or empty.
    pub fn waiting(mut self, waiting: Waiting) -> Options {
        self.waiting = waiting;
        self
    }

    /// For a producer: when the ring is full and its consumer has left
    /// (cleanly or not), wait for a new consumer instead of failing with
    /// [`Error::PeerLeft`] or [`Error::PeerGone`]. A producer that never had
    /// a consumer waits for the first one either way.
    pub fn wait_for_new_consumer(mut self, wait: bool) -> Options {
        self.wait_for_new_consumer = wait;
        self
    }

    /// The largest message a ring made with these options carries.
    pub fn max_message_len(&self) -> u64 {
        self.max_message
            .unwrap_or_else(|| layout::max_message_for(self.capacity_len()))
    }

    pub(super) fn capacity_len(&self) -> u64 {
        self.capacity.unwrap_or(DEFAULT_CAPACITY)
    }

    /// Checks what is wrong with the options whatever ring they meet,
    /// before any shared memory is touched: a capacity given that is not a
    /// power of two in range, a maximum message over what the capacity
    /// given carries, or (no capacity given) over what the largest ring
    /// carries. How the maximum message fits a capacity not given is
    /// [`fits`](Options::fits)'s, once the capacity is known.
    pub(super) fn validate(&self) -> Result<()> {
        match self.capacity {
            Some(c) => {
                if !c.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&c) {
                    return Err(Error::InvalidArgument(format!(
                        "ring capacity must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY} bytes, not {c}"
                    )));
                }
                self.fits(c)
            }
            None => self.fits(MAX_CAPACITY),
        }
    }

    /// Checks the maximum message given, if any, against the capacity the
    /// ring has or will have: the one given, the default for a ring this
    /// call creates, or an existing ring's (validated by `read_header`).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] naming the largest message `capacity` carries.
    pub(super) fn fits(&self, capacity: u64) -> Result<()> {
        max_message_fits(self.max_message, layout::max_message_for(capacity))
    }

    /// Checks the options that were given against an existing ring's
    /// (validated by `read_header`): a capacity given must be the ring's
    /// ([`Error::OptionMismatch`]); a maximum message given must fit the
    /// ring's capacity ([`Error::TooLarge`], as creating a ring of that
    /// capacity would say) and be the ring's; so must the mode.
    pub(super) fn check_against(
        &self,
        ring: &RingRef,
        segment: &Segment,
        name: &str,
    ) -> Result<()> {
        let check = FORMAT.options_of(name, segment);
        check.value("capacity", self.capacity, ring.capacity())?;
        self.fits(ring.capacity())?;
        check.value("maximum message", self.max_message, ring.max_message())?;
        check.mode(self.mode)
    }
}
