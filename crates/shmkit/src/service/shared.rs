//! A service's mapping, shared by its server and clients: creating or
//! finding it, validating its header, the views of each slot's rings, and
//! leaving (which removes the service when its last member goes).

use std::ptr::NonNull;

use super::layout::{
    self, Geometry, Header, SlotLine, WaitLine, CLIENT_LOCKS, GATE_BYTE, HEADER_SIZE, ID_LEN,
    MAGIC, MAX_BODY, MAX_CLIENTS, MAX_IN_FLIGHT, SERVER_LOCK, VERSION,
};
use super::{Options, SEGMENT_PREFIX};
use crate::error::{Error, Result};
use crate::ring::layout::{
    Header as RingHeader, HEADER_SIZE as RING_HEADER_SIZE, MAGIC as RING_MAGIC,
    VERSION as RING_VERSION,
};
use crate::ring::protocol::RingRef;
use crate::ring::wait::WakeLine;
use crate::segment::format::{Creation, Format, Made, Opened};
use crate::segment::{AccessMode, Attachment, Key, Mode, ReadWrite, Segment};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys::range_lock::RangeLock;

impl WakeLine for WaitLine {
    fn full_fences(&self) -> &AtomicU32 {
        &self.full_fences
    }

    fn woken_at(&self) -> &AtomicU64 {
        &self.woken_at
    }
}

/// The service as one member sees it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub geometry: Geometry,
    pub max_request: u64,
    pub max_response: u64,
    pub max_in_flight: u32,
    header: NonNull<Header>,
    base: NonNull<u8>,
    pub segment: Segment,
    // Declared last: unmapped after everything that points in.
    pub mapping: Attachment<ReadWrite>,
}

// SAFETY: every pointer is into `mapping`, owned alongside; shared memory
// is reached through atomics and the ring protocol only.
unsafe impl Send for Shared {}

/// How a service keeps its segment (see `segment::format`).
pub(crate) const FORMAT: Format = Format {
    noun: "service",
    prefix: SEGMENT_PREFIX,
    header_size: HEADER_SIZE,
    magic: MAGIC,
    version: VERSION,
    gate: GATE_BYTE,
    members: SERVER_LOCK..CLIENT_LOCKS + MAX_CLIENTS as u64,
};

/// The key of service `name`, after checking the name.
pub(crate) fn key_of(name: &str) -> Result<Key> {
    FORMAT.key(name)
}

impl Options {
    /// Checks the options, before any shared memory is touched. Each is
    /// checked on its own limits (no service option's limit depends on
    /// another's), so what is checked here holds for a service found as
    /// for one made; against a service found, `check_against` follows.
    fn validate(&self) -> Result<()> {
        if !(1..=MAX_CLIENTS).contains(&self.max_clients_len()) {
            return Err(Error::InvalidArgument(format!(
                "a service has 1 to {MAX_CLIENTS} client slots, not {}",
                self.max_clients_len()
            )));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.in_flight_len()) {
            return Err(Error::InvalidArgument(format!(
                "a client may have 1 to {MAX_IN_FLIGHT} calls in flight, not {}",
                self.in_flight_len()
            )));
        }
        for (what, size) in [
            ("maximum request", self.max_request_len()),
            ("maximum response", self.max_response_len()),
        ] {
            if size > MAX_BODY {
                return Err(Error::TooLarge {
                    what,
                    size,
                    limit: MAX_BODY,
                });
            }
        }
        Ok(())
    }

    fn geometry(&self) -> Geometry {
        Geometry::new(
            self.max_clients_len(),
            self.in_flight_len(),
            self.max_request_len(),
            self.max_response_len(),
        )
    }

    /// Checks the options that were given against an existing service's
    /// (its header's, as `shared` read and validated them), under the
    /// gate: the rule of `ring::Options`.
    fn check_against(&self, shared: &Shared) -> Result<()> {
        let check = FORMAT.options_of(&shared.name, &shared.segment);
        check.value("maximum clients", self.max_clients, shared.geometry.clients)?;
        check.value("maximum request", self.max_request, shared.max_request)?;
        check.value("maximum response", self.max_response, shared.max_response)?;
        check.value(
            "maximum in flight",
            self.max_in_flight,
            shared.max_in_flight,
        )?;
        check.mode(self.mode)
    }

    pub(crate) fn waiting_of(&self) -> crate::ring::Waiting {
        self.waiting
    }
}

impl Shared {
    /// Finds service `name`, or creates it with `options`, and takes its
    /// gate: the caller claims its place and then drops the gate.
    pub(crate) fn open(name: &str, options: &Options) -> Result<(Shared, RangeLock)> {
        options.validate()?;
        let geometry = options.geometry();
        // No option's limit depends on another's: `validate` checked them
        // all, whether the service is found or made.
        let creation = || {
            Ok(Creation {
                size: geometry.size,
                mode: options.mode.unwrap_or(Mode::OWNER_ONLY),
                group: options.group,
            })
        };
        let mut found = false;
        let (shared, gate) = FORMAT.find_or_create(
            name,
            &options.trust,
            creation,
            |mapping| {
                initialise(mapping, options, &geometry);
                Ok(())
            },
            |segment, mapping, made| {
                found = made == Made::Found;
                Shared::from_mapping(name, segment, mapping)
            },
        )?;
        if found {
            options.check_against(&shared)?;
        }
        if !crate::sys::membarrier::register_global_expedited() {
            shared.use_full_fences();
        }
        // A call's records go to fresh ring bytes at every lap: fault the
        // pages in now, not one in every 50 calls.
        shared.mapping.populate();
        Ok((shared, gate))
    }

    /// Validates the header of a mapping and keeps the views' bases.
    pub(crate) fn from_mapping(
        name: &str,
        segment: Segment,
        mapping: Attachment<ReadWrite>,
    ) -> Result<Shared> {
        let header = read_header(&mapping, name)?;
        let config = &header.config;
        let geometry = Geometry::new(
            config.max_clients.load(Ordering::Relaxed),
            config.max_in_flight.load(Ordering::Relaxed),
            config.max_request.load(Ordering::Relaxed),
            config.max_response.load(Ordering::Relaxed),
        );
        let shared = Shared {
            name: name.to_owned(),
            geometry,
            max_request: config.max_request.load(Ordering::Relaxed),
            max_response: config.max_response.load(Ordering::Relaxed),
            max_in_flight: config.max_in_flight.load(Ordering::Relaxed),
            header: NonNull::from(header),
            base: NonNull::new(mapping.as_mut_ptr()).expect("a mapping is never null"),
            segment,
            mapping,
        };
        Ok(shared)
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: inside the mapping we own, validated; all atomics.
        unsafe { self.header.as_ref() }
    }

    /// Slot `i`'s line.
    #[inline]
    pub(crate) fn slot(&self, i: u32) -> &SlotLine {
        debug_assert!(i < self.geometry.clients);
        // SAFETY: i < clients, so the slot lies inside the segment, whose
        // size read_header checked against the mapping; slots start at
        // multiples of 128 from a page; atomics only.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(self.geometry.slot(i) as usize)
                .cast::<SlotLine>()
        }
    }

    /// The ring at `offset` (a ring header and `capacity` data bytes inside
    /// the segment, by the geometry) carrying records of `max_message`.
    fn ring_at(&self, offset: u64, capacity: u64, max_message: u64) -> RingRef {
        // SAFETY: the geometry was validated against the mapping's length
        // (read_header), so the header and its data area lie inside the
        // mapping, which outlives every view (the member owns both); the
        // header starts at a multiple of 128 and the data 512 after it;
        // capacity is a power of two whose max_message_for is at least
        // `max_message` (layout::ring_capacity).
        unsafe {
            let header = self.base.as_ptr().add(offset as usize);
            RingRef::new(
                NonNull::new_unchecked(header.cast::<RingHeader>()),
                NonNull::new_unchecked(header.add(RING_HEADER_SIZE as usize)),
                capacity,
                max_message,
            )
        }
    }

    /// Slot `i`'s request ring.
    pub(crate) fn requests(&self, i: u32) -> RingRef {
        self.ring_at(
            self.geometry.slot(i) + layout::REQUEST_RING,
            self.geometry.request_capacity,
            ID_LEN + self.max_request,
        )
    }

    /// Slot `i`'s response ring.
    pub(crate) fn responses(&self, i: u32) -> RingRef {
        self.ring_at(
            self.geometry.response_ring(i),
            self.geometry.response_capacity,
            ID_LEN + self.max_response,
        )
    }

    /// Sets `full_fences` everywhere a waker of this member reads it: this
    /// process cannot receive the sleepers' membarrier.
    fn use_full_fences(&self) {
        self.header().wait.full_fences.store(1, Ordering::SeqCst);
        for i in 0..self.geometry.clients {
            for ring in [self.requests(i), self.responses(i)] {
                ring.header().wait.full_fences.store(1, Ordering::SeqCst);
            }
        }
    }

    /// Whether a live process holds the lock on `byte` (an unanswerable
    /// question counts as yes).
    pub(crate) fn held(&self, byte: u64) -> bool {
        self.segment.range_held(byte, 1).unwrap_or(true)
    }

    pub(crate) fn server_alive(&self) -> bool {
        self.held(SERVER_LOCK)
    }

    pub(crate) fn client_alive(&self, i: u32) -> bool {
        self.held(CLIENT_LOCKS + u64::from(i))
    }

    /// Whether bit `i` of `active` is set.
    pub(crate) fn active(&self, i: u32) -> bool {
        let word = &self.header().active.bits[(i / 64) as usize];
        word.load(Ordering::Relaxed) & 1 << (i % 64) != 0
    }

    /// After a member gave up its place (and dropped its lock), under the
    /// gate: removes the service if no member is left (rule 8).
    pub(crate) fn remove_if_last(&self) {
        FORMAT.remove_if_last(self);
    }
}

impl Opened for Shared {
    fn segment(&self) -> &Segment {
        &self.segment
    }

    fn removed(&self) -> &AtomicU32 {
        &self.header().wait.removed
    }
}

/// Writes a fresh service's header and ring headers; `magic` last, with
/// Release.
fn initialise(mapping: &Attachment<ReadWrite>, options: &Options, geometry: &Geometry) {
    let base = mapping.as_mut_ptr();
    for i in 0..geometry.clients {
        let rings = [
            (
                geometry.slot(i) + layout::REQUEST_RING,
                geometry.request_capacity,
                ID_LEN + options.max_request_len(),
            ),
            (
                geometry.response_ring(i),
                geometry.response_capacity,
                ID_LEN + options.max_response_len(),
            ),
        ];
        for (offset, capacity, max_message) in rings {
            // SAFETY: a fresh mapping of geometry.size bytes, which hold
            // every slot's rings; nobody else can reach it yet (it has no
            // name); ring headers are atomics at multiples of 128.
            let ring = unsafe { &*base.add(offset as usize).cast::<RingHeader>() };
            let config = &ring.config;
            config.version.store(RING_VERSION, Ordering::Relaxed);
            config.capacity.store(capacity, Ordering::Relaxed);
            config.max_message.store(max_message, Ordering::Relaxed);
            config
                .data_offset
                .store(RING_HEADER_SIZE, Ordering::Relaxed);
            config.magic.store(RING_MAGIC, Ordering::Relaxed);
        }
    }
    // SAFETY: as above, the header at offset 0.
    let header = unsafe { &*base.cast::<Header>() };
    let config = &header.config;
    config.version.store(VERSION, Ordering::Relaxed);
    config
        .max_clients
        .store(geometry.clients, Ordering::Relaxed);
    config
        .max_in_flight
        .store(options.in_flight_len(), Ordering::Relaxed);
    config
        .max_request
        .store(options.max_request_len(), Ordering::Relaxed);
    config
        .max_response
        .store(options.max_response_len(), Ordering::Relaxed);
    config
        .request_capacity
        .store(geometry.request_capacity, Ordering::Relaxed);
    config
        .response_capacity
        .store(geometry.response_capacity, Ordering::Relaxed);
    config
        .slot_size
        .store(geometry.slot_size, Ordering::Relaxed);
    config.slots_offset.store(HEADER_SIZE, Ordering::Relaxed);
    config.size.store(geometry.size, Ordering::Relaxed);
    // Release: publishes everything above; pairs with the Acquire in
    // `read_header`.
    config.magic.store(MAGIC, Ordering::Release);
}

/// The header of a service mapping, every configuration field checked, so
/// that every slot and ring the geometry names lies inside the mapping.
pub(crate) fn read_header<'m, A: AccessMode>(
    mapping: &'m Attachment<A>,
    name: &str,
) -> Result<&'m Header> {
    FORMAT.check_header(mapping, name)?;
    let len = mapping.len() as u64;
    let corrupt = |what: String| Error::Corrupt(format!("service {name}: {what}"));
    // SAFETY: check_header found at least HEADER_SIZE bytes, page aligned;
    // only atomics inside.
    let header = unsafe { &*mapping.as_ptr().cast::<Header>() };
    let config = &header.config;
    let clients = config.max_clients.load(Ordering::Relaxed);
    let in_flight = config.max_in_flight.load(Ordering::Relaxed);
    let max_request = config.max_request.load(Ordering::Relaxed);
    let max_response = config.max_response.load(Ordering::Relaxed);
    if !(1..=MAX_CLIENTS).contains(&clients)
        || !(1..=MAX_IN_FLIGHT).contains(&in_flight)
        || max_request > MAX_BODY
        || max_response > MAX_BODY
    {
        return Err(corrupt(format!(
            "{clients} clients, {in_flight} calls in flight, requests of {max_request} \
             and responses of {max_response} bytes are out of range"
        )));
    }
    let geometry = Geometry::new(clients, in_flight, max_request, max_response);
    let found = (
        config.request_capacity.load(Ordering::Relaxed),
        config.response_capacity.load(Ordering::Relaxed),
        config.slot_size.load(Ordering::Relaxed),
        config.slots_offset.load(Ordering::Relaxed),
        config.size.load(Ordering::Relaxed),
    );
    let expected = (
        geometry.request_capacity,
        geometry.response_capacity,
        geometry.slot_size,
        HEADER_SIZE,
        geometry.size,
    );
    if found != expected {
        return Err(corrupt(format!(
            "ring capacities, slot size, slots offset and size {found:?} do not match the configuration's {expected:?}"
        )));
    }
    if geometry.size > len {
        return Err(Error::Truncated {
            segment: format!("service {name}"),
            size: len,
            expected: geometry.size,
        });
    }
    Ok(header)
}
