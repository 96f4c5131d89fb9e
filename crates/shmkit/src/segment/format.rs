//! What the POSIX segments of shmkit's named structures (rings, topics,
//! services) have in common, whatever their header says: a name rule and a
//! `/dev/shm` prefix; creation whole, so that no opener ever sees one half
//! made; the checks an opener makes before it trusts one; a gate lock,
//! held while members join and leave; member locks, held while a member
//! lives; and exact removal.
//!
//! Each structure describes itself once with a [`Format`], and keeps only
//! what is its own (its header's fields, its members' places).

use std::ops::Range;

use super::{AccessMode, Attachment, Key, Mode, ReadWrite, Segment, Trust};
use crate::error::{Error, Result};
use crate::sync::{AtomicU32, Ordering};
use crate::sys::range_lock::RangeLock;

/// How many times an opener goes back to the name after finding the
/// segment there removed (or half-made) under it, before it gives up.
pub(crate) const OPEN_ATTEMPTS: u32 = 32;

/// Checks an opener's options against those an existing structure was
/// made with, the one rule of rings, topics and services: an option given
/// (`Some`) must equal the structure's, or the open fails with
/// [`Error::OptionMismatch`]; one not given (`None`) takes the
/// structure's own. Each structure first checks the options given against
/// each other with the structure's values for those not given (a maximum
/// message that its capacity cannot carry is [`Error::TooLarge`], as a
/// create with those values would say), then with this.
pub(crate) struct OptionCheck<'a> {
    place: String,
    segment: &'a Segment,
}

impl OptionCheck<'_> {
    /// `option`, if `asked`, must be `found` (the header's value).
    pub(crate) fn value<T: PartialEq + std::fmt::Debug>(
        &self,
        option: &'static str,
        asked: Option<T>,
        found: T,
    ) -> Result<()> {
        match asked {
            Some(asked) if asked != found => {
                Err(self.mismatch(option, format!("{asked:?}"), format!("{found:?}")))
            }
            _ => Ok(()),
        }
    }

    /// The mode, if `asked`, must be the segment file's permission bits.
    pub(crate) fn mode(&self, asked: Option<Mode>) -> Result<()> {
        let Some(asked) = asked else {
            return Ok(());
        };
        let stat =
            crate::sys::posix::fstat(self.segment.posix_fd()?).map_err(|source| Error::Os {
                context: format!("reading the mode of {}", self.place),
                source,
            })?;
        let found = stat.st_mode & 0o777;
        if found == asked.bits() {
            return Ok(());
        }
        Err(self.mismatch(
            "mode",
            format!("{:04o}", asked.bits()),
            format!("{found:04o}"),
        ))
    }

    fn mismatch(&self, option: &'static str, asked: String, found: String) -> Error {
        Error::OptionMismatch {
            place: self.place.clone(),
            option,
            asked,
            found,
        }
    }
}

/// A maximum message given (`Some`) must be at most `limit`, what the
/// capacity it will live in carries: else [`Error::TooLarge`] naming the
/// limit, as rings and topics say it whether they check before a create
/// or against the structure found.
pub(crate) fn max_message_fits(max_message: Option<u64>, limit: u64) -> Result<()> {
    match max_message {
        Some(size) if size > limit => Err(Error::TooLarge {
            what: "maximum message",
            size,
            limit,
        }),
        _ => Ok(()),
    }
}

/// How one kind of named structure keeps its segment.
#[derive(Clone, Debug)]
pub(crate) struct Format {
    /// The structure's noun in messages: `ring`, `topic`.
    pub noun: &'static str,
    /// Its segments' POSIX names are this and the structure's name.
    pub prefix: &'static str,
    /// The least size of a segment: its header. A nonzero `u64` magic
    /// number at offset 0, stored last with Release, says it is written.
    pub header_size: u64,
    /// The structure's magic number (offset 0).
    pub magic: u64,
    /// The format version this code reads and writes (a `u32` at offset 8;
    /// a `u32` of flags, none defined yet, follows).
    pub version: u32,
    /// The byte whose OFD lock is the gate.
    pub gate: u64,
    /// The bytes whose OFD locks the members hold while they live (past
    /// the file's end, or touching no byte a reader needs).
    pub members: Range<u64>,
}

impl Format {
    /// `ring NAME`, `topic NAME`: how messages name a structure.
    pub(crate) fn place(&self, name: &str) -> String {
        format!("{} {name}", self.noun)
    }

    /// The checks of the options an opener gave against the existing
    /// structure `name` it found (not one it created), made under the gate.
    pub(crate) fn options_of<'a>(&self, name: &str, segment: &'a Segment) -> OptionCheck<'a> {
        OptionCheck {
            place: self.place(name),
            segment,
        }
    }

    /// Checks what every header starts with, written by someone else: a
    /// whole header mapped, the magic number (Acquire: pairs with the
    /// creator's Release, so the rest is visible), the version and no
    /// flags.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`], or [`Error::VersionMismatch`].
    pub(crate) fn check_header<A: AccessMode>(
        &self,
        mapping: &Attachment<A>,
        name: &str,
    ) -> Result<()> {
        let place = self.place(name);
        let len = mapping.len() as u64;
        if len < self.header_size {
            return Err(Error::Corrupt(format!(
                "{place}: segment of {len} bytes is smaller than the header"
            )));
        }
        let magic = mapping.load_u64(0, Ordering::Acquire)?;
        if magic != self.magic {
            return Err(Error::Corrupt(format!(
                "{place}: magic {magic:#018x} is not a shmkit {}'s",
                self.noun
            )));
        }
        let version = mapping.load_u32(8, Ordering::Relaxed)?;
        if version != self.version {
            return Err(Error::VersionMismatch {
                segment: place,
                found: version,
                expected: self.version,
            });
        }
        let flags = mapping.load_u32(12, Ordering::Relaxed)?;
        if flags != 0 {
            return Err(Error::Corrupt(format!("{place}: unknown flags {flags:#x}")));
        }
        Ok(())
    }

    /// The key of structure `name`, after checking the name: 1 to 200
    /// letters, digits, `-`, `_` or `.`, not starting with `.`.
    pub(crate) fn key(&self, name: &str) -> Result<Key> {
        let ok = !name.is_empty()
            && name.len() <= 200
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "{} name {name:?} must be 1 to 200 letters, digits, '-', '_' or '.', not starting with '.'",
                self.noun
            )));
        }
        Key::posix(&format!("{}{name}", self.prefix))
    }

    /// The names of all structures of this kind on the machine: regular
    /// files in `/dev/shm` whose name is the prefix and a valid name,
    /// sorted. (The type comes from readdir: a symlink, FIFO or directory
    /// at such a name is no structure, and nothing is followed or opened.)
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let prefix = &self.prefix[1..];
        let dir = std::fs::read_dir(crate::sys::posix::SHM_DIR).map_err(|source| Error::Os {
            context: "listing /dev/shm".to_owned(),
            source,
        })?;
        let mut names: Vec<String> = dir
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()?
                    .strip_prefix(prefix)
                    .map(str::to_owned)
            })
            .filter(|name| self.key(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Creates a segment of `size` bytes whose header `init` writes before
    /// any other process can open it (see [`Segment::create_initialised`]),
    /// with `mode`, in group `group` if given.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if another creator named one first (open
    /// theirs); as [`Segment::create`]; whatever `init` returns.
    pub(crate) fn create(
        &self,
        key: &Key,
        size: u64,
        mode: Mode,
        group: Option<u32>,
        init: impl FnOnce(&Attachment<ReadWrite>) -> Result<()>,
    ) -> Result<(Segment, Attachment<ReadWrite>)> {
        debug_assert!(size >= self.header_size);
        Segment::create_initialised(key, size, mode, |segment, mapping| {
            if let Some(gid) = group {
                // The group, then the mode again (a chown may clear bits); no
                // other process can open it before the link.
                segment.set_group(gid)?;
                segment.set_mode(mode)?;
            }
            init(mapping)
        })
    }

    /// Maps an existing segment of structure `name` read-write, once its
    /// owner is trusted and it has at least a header with a magic number.
    /// A half-made one (0 bytes, or no magic: never one of shmkit's own,
    /// which appear whole, but a file someone else made at the name) that
    /// no process uses is removed at once, and `None` returned: go back to
    /// the name.
    ///
    /// # Errors
    ///
    /// [`Error::UntrustedOwner`]; [`Error::Truncated`] if it has more than
    /// 0 bytes but fewer than a header, or 0 bytes and a process uses it;
    /// [`Error::Corrupt`] if it has no magic and a process uses it.
    pub(crate) fn attach_existing(
        &self,
        segment: &Segment,
        name: &str,
        trust: &Trust,
    ) -> Result<Option<Attachment<ReadWrite>>> {
        let place = self.place(name);
        trust.check(segment, &place)?;
        let size = segment.size()?;
        if size > 0 && size < self.header_size {
            // A creator sizes the file before it is named: this one was cut.
            return Err(Error::Truncated {
                segment: place,
                size,
                expected: self.header_size,
            });
        }
        if size >= self.header_size {
            let mapping = segment.attach(ReadWrite)?;
            // Acquire: pairs with the creator's Release of the magic.
            if mapping.atomic_u64(0)?.load(Ordering::Acquire) != 0 {
                return Ok(Some(mapping));
            }
        }
        let gate = self.gate(segment)?;
        if let Err(users) = self.unused(segment) {
            if size == 0 {
                // In use, so it was whole once (shmkit names no file of 0
                // bytes): cut to nothing.
                return Err(Error::Truncated {
                    segment: place,
                    size,
                    expected: self.header_size,
                });
            }
            return Err(Error::Corrupt(format!(
                "{place} was never initialised, and {users}; \
                 `shmkit gc --force {name}` removes it once they are gone"
            )));
        }
        match segment.remove() {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
        drop(gate);
        Ok(None)
    }

    /// Waits for the gate of the structure in `segment`, and takes it.
    pub(crate) fn gate(&self, segment: &Segment) -> Result<RangeLock> {
        segment.lock_range(self.gate, 1)
    }

    /// Takes the gate if no other process holds it now.
    pub(crate) fn try_gate(&self, segment: &Segment) -> Result<Option<RangeLock>> {
        segment.try_lock_range(self.gate, 1)
    }

    /// Whether a live process holds a member's lock (an answer the kernel
    /// cannot give counts as yes: a live member is never taken for dead).
    pub(crate) fn has_members(&self, segment: &Segment) -> bool {
        let span = self.members.end - self.members.start;
        segment.range_held(self.members.start, span).unwrap_or(true)
    }

    /// `Ok` if no live process is a member of the structure or maps its
    /// segment (this process's own mappings do not count: its members
    /// hold locks); else who is, in words.
    pub(crate) fn unused(&self, segment: &Segment) -> std::result::Result<(), String> {
        if self.has_members(segment) {
            return Err(format!("a live process is a member of the {}", self.noun));
        }
        let me = std::process::id();
        match segment.stat() {
            Ok(stat) => {
                let pids: Vec<String> = stat
                    .attachers
                    .iter()
                    .filter(|a| a.pid != me)
                    .map(|a| a.pid.to_string())
                    .collect();
                if pids.is_empty() {
                    return Ok(());
                }
                Err(format!("process {} maps it", pids.join(", ")))
            }
            Err(err) => Err(format!("who maps it cannot be told ({err})")),
        }
    }
}

/// What the shared code here needs of a member's view of its structure:
/// the segment, and the header's `removed` word (1 once the last member
/// unlinked it; an opener that finds it set goes back to the name).
pub(crate) trait Opened {
    fn segment(&self) -> &Segment;
    fn removed(&self) -> &AtomicU32;
}

/// Whether [`Format::find_or_create`] found the structure or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Made {
    Found,
    Created,
}

/// How a structure is created when an opener finds none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Creation {
    pub size: u64,
    pub mode: Mode,
    pub group: Option<u32>,
}

/// What a look at a structure under its gate found (see
/// [`Format::examine`]).
#[derive(Debug)]
pub(crate) enum Examined<T> {
    /// Its header reads: the structure as `describe` saw it.
    Readable(T),
    /// No header: a file of this many bytes whose magic is not written.
    HalfMade(u64),
    /// A header that does not read, and why.
    Corrupt(String),
}

/// What [`Format::examine`] found in a structure nobody uses, and the
/// outcome of removing it (`None` when not asked).
#[derive(Debug)]
pub(crate) struct Examination<S> {
    pub found: Examined<S>,
    pub removal: Option<Result<()>>,
}

impl Format {
    /// Finds structure `name`, or creates it as `creation` says with a
    /// header that `init` writes, then views it with `open` (which checks
    /// the header, and is told whether this call created it) and takes its
    /// gate: the caller claims its place and drops the gate. An existing
    /// one is used only if its owner is trusted; a half-made one nobody
    /// uses is removed and the name tried again, as is one removed between
    /// our open and our gate.
    ///
    /// `creation` runs only when no structure is found, each time: it
    /// checks the options against the defaults that fill those not given
    /// (an error refuses to create), so that an opener of an existing
    /// structure is checked against the structure's own values instead.
    ///
    /// # Errors
    ///
    /// As [`attach_existing`](Format::attach_existing), [`create`](Format::create),
    /// `creation` and `open`; [`Error::Busy`] if the name keeps changing
    /// under us.
    pub(crate) fn find_or_create<T: Opened>(
        &self,
        name: &str,
        trust: &Trust,
        mut creation: impl FnMut() -> Result<Creation>,
        mut init: impl FnMut(&Attachment<ReadWrite>) -> Result<()>,
        mut open: impl FnMut(Segment, Attachment<ReadWrite>, Made) -> Result<T>,
    ) -> Result<(T, RangeLock)> {
        let key = self.key(name)?;
        // A handful of rounds is plenty: each is a whole member's lifetime.
        for _ in 0..OPEN_ATTEMPTS {
            let (segment, mapping, made) = match Segment::open(&key) {
                Ok(segment) => match self.attach_existing(&segment, name, trust)? {
                    Some(mapping) => (segment, mapping, Made::Found),
                    // A half-made file, removed: go back to the name.
                    None => continue,
                },
                Err(Error::NotFound { .. }) => {
                    let creation = creation()?;
                    let made = self.create(
                        &key,
                        creation.size,
                        creation.mode,
                        creation.group,
                        &mut init,
                    );
                    match made {
                        Ok((segment, mapping)) => (segment, mapping, Made::Created),
                        // Another opener created it first: open theirs.
                        Err(Error::AlreadyExists { .. }) => continue,
                        Err(other) => return Err(other),
                    }
                }
                Err(other) => return Err(other),
            };
            let opened = open(segment, mapping, made)?;
            let gate = self.gate(opened.segment())?;
            if opened.removed().load(Ordering::SeqCst) != 0 {
                continue;
            }
            return Ok((opened, gate));
        }
        Err(Error::Corrupt(format!(
            "{} was removed and made again under this opener {OPEN_ATTEMPTS} times in a row",
            self.place(name)
        )))
    }

    /// After a member gave up its place (and dropped its lock), under the
    /// gate: removes the structure if no member is left. Once removed, the
    /// name may be another structure's: it is never unlinked twice.
    pub(crate) fn remove_if_last(&self, opened: &impl Opened) {
        let removed = opened.removed();
        if removed.load(Ordering::SeqCst) == 0 && !self.has_members(opened.segment()) {
            let _ = remove_exactly(Some(removed), opened.segment());
        }
    }

    /// Looks at structure `name` for garbage collection, under its gate:
    /// `None` if the gate is held (a member is joining or leaving) or a
    /// live process is a member or maps it; otherwise what it holds (its
    /// header checked by `check`, then viewed by `open`) and, if `remove`,
    /// the outcome of removing it exactly (a readable one that is already
    /// marked removed counts as removed). What a readable one holds is
    /// `describe`'s.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such structure, and any error
    /// opening, mapping or viewing it.
    pub(crate) fn examine<T: Opened, S>(
        &self,
        name: &str,
        remove: bool,
        check: impl FnOnce(&Attachment<ReadWrite>) -> Result<()>,
        open: impl FnOnce(Segment, Attachment<ReadWrite>) -> Result<T>,
        describe: impl FnOnce(&T) -> S,
    ) -> Result<Option<Examination<S>>> {
        let segment = Segment::open(&self.key(name)?)?;
        let Some(_gate) = self.try_gate(&segment)? else {
            return Ok(None);
        };
        if self.unused(&segment).is_err() {
            return Ok(None);
        }
        let size = segment.size()?;
        let mapping = match size {
            0 => {
                return Ok(Some(self.unreadable(
                    Examined::HalfMade(0),
                    remove,
                    &segment,
                )))
            }
            _ => segment.attach(ReadWrite)?,
        };
        if let Err(err) = check(&mapping) {
            // Acquire: pairs with the creator's Release of the magic.
            let found = if size >= self.header_size
                && mapping.atomic_u64(0)?.load(Ordering::Acquire) == 0
            {
                Examined::HalfMade(size)
            } else {
                Examined::Corrupt(err.to_string())
            };
            return Ok(Some(self.unreadable(found, remove, &segment)));
        }
        let opened = open(segment, mapping)?;
        let described = describe(&opened);
        let removed = opened.removed();
        let removal = match (remove, removed.load(Ordering::SeqCst)) {
            (false, _) => None,
            (true, 0) => Some(remove_exactly(Some(removed), opened.segment())),
            (true, _) => Some(Ok(())),
        };
        Ok(Some(Examination {
            found: Examined::Readable(described),
            removal,
        }))
    }

    /// `examine`'s answer for a structure whose header does not read.
    fn unreadable<S>(&self, found: Examined<S>, remove: bool, segment: &Segment) -> Examination<S> {
        Examination {
            found,
            removal: remove.then(|| remove_exactly(None, segment)),
        }
    }
}

/// The owner word a member records in its structure's header, for
/// messages and `status` (liveness comes from its lock): this process's pid
/// (in its own pid namespace) in the low 32 bits, and the low 32 bits of its
/// start time in the high 32, so that a reused pid is not taken for it.
pub(crate) fn owner_word() -> Result<u64> {
    let pid = std::process::id();
    let start = crate::sys::procfs::process_start_time(pid).map_err(|source| Error::Os {
        context: "reading this process's start time".to_owned(),
        source,
    })?;
    Ok((start & 0xffff_ffff) << 32 | u64::from(pid))
}

/// The pid in an owner word.
pub(crate) fn pid_of(owner: u64) -> crate::Pid {
    owner as u32
}

/// Removes a structure's segment, under its gate, exactly (the name must
/// still stand for it), and marks it `removed` for openers that mapped it
/// before (they go back to the name). One already gone is fine.
/// (`removed` is `None` when the caller may not write the header, or it is
/// not valid: then no opener can have mapped it as this structure.)
pub(crate) fn remove_exactly(removed: Option<&AtomicU32>, segment: &Segment) -> Result<()> {
    match segment.remove() {
        // Gone already: whoever unlinked it, it is not at the name.
        Ok(()) | Err(Error::NotFound { .. }) => {
            if let Some(removed) = removed {
                removed.store(1, Ordering::SeqCst);
            }
            Ok(())
        }
        Err(other) => Err(other),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const TEST: Format = Format {
        noun: "thing",
        prefix: "/shmkit-test-format.",
        header_size: 4096,
        magic: 7,
        version: 1,
        gate: 0,
        members: 8..16,
    };

    fn name(what: &str) -> String {
        format!("{what}-{}", std::process::id())
    }

    #[test]
    fn names_follow_one_rule_and_messages_say_the_noun() {
        assert!(TEST.key("a-b_c.d").is_ok());
        for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(201)] {
            let err = TEST.key(bad).unwrap_err().to_string();
            assert!(err.contains("thing name"), "{err}");
        }
        assert_eq!(TEST.place("x"), "thing x");
    }

    #[test]
    fn a_created_segment_appears_whole_and_is_listed() {
        let name = name("whole");
        let key = TEST.key(&name).unwrap();
        let (segment, mapping) = TEST
            .create(&key, 8192, Mode::OWNER_ONLY, None, |mapping| {
                // Nobody can open it yet: it has no name.
                assert!(matches!(
                    Segment::open(&TEST.key(&name).unwrap()),
                    Err(Error::NotFound { .. })
                ));
                mapping.write_at(0, &7u64.to_le_bytes())
            })
            .unwrap();
        let _guard = Removal(&segment);
        assert!(TEST.list().unwrap().contains(&name));
        let opened = Segment::open(&key).unwrap();
        let found = TEST
            .attach_existing(&opened, &name, &Trust::me())
            .unwrap()
            .expect("a whole segment is attached");
        assert_eq!(found.atomic_u64(0).unwrap().load(Ordering::Relaxed), 7);
        drop(mapping);
    }

    #[test]
    fn a_half_made_file_nobody_uses_is_removed_by_its_opener() {
        let name = name("half");
        let key = TEST.key(&name).unwrap();
        // A file with no magic at the name, as another program may leave.
        let hostile = Segment::create(&key, 4096, Mode::OWNER_ONLY).unwrap();
        let _guard = Removal(&hostile);
        let opened = Segment::open(&key).unwrap();
        assert!(TEST
            .attach_existing(&opened, &name, &Trust::me())
            .unwrap()
            .is_none());
        assert!(matches!(Segment::open(&key), Err(Error::NotFound { .. })));
    }

    #[test]
    fn a_half_made_file_a_member_holds_is_corrupt_and_stays() {
        let name = name("held");
        let key = TEST.key(&name).unwrap();
        let hostile = Segment::create(&key, 4096, Mode::OWNER_ONLY).unwrap();
        let _guard = Removal(&hostile);
        let _member = hostile.try_lock_range(9, 1).unwrap().unwrap();
        let opened = Segment::open(&key).unwrap();
        let err = TEST
            .attach_existing(&opened, &name, &Trust::me())
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt(why) if why.contains("never initialised")),
            "{err}"
        );
        assert!(Segment::open(&key).is_ok());
    }

    #[test]
    fn a_file_shorter_than_a_header_is_truncated() {
        let name = name("short");
        let key = TEST.key(&name).unwrap();
        let short = Segment::create(&key, 100, Mode::OWNER_ONLY).unwrap();
        let _guard = Removal(&short);
        let err = TEST
            .attach_existing(&Segment::open(&key).unwrap(), &name, &Trust::me())
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated {
                    size: 100,
                    expected: 4096,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// A member's view for the shared paths: `removed` at offset 16.
    struct View {
        segment: Segment,
        mapping: Attachment<ReadWrite>,
        made: Option<Made>,
    }

    impl Opened for View {
        fn segment(&self) -> &Segment {
            &self.segment
        }

        fn removed(&self) -> &AtomicU32 {
            self.mapping.atomic_u32(16).unwrap()
        }
    }

    fn find_or_create(name: &str) -> Result<(View, RangeLock)> {
        let creation = Creation {
            size: 4096,
            mode: Mode::OWNER_ONLY,
            group: None,
        };
        TEST.find_or_create(
            name,
            &Trust::me(),
            || Ok(creation),
            |mapping| {
                mapping.write_at(8, &1u32.to_le_bytes())?;
                mapping.write_at(0, &7u64.to_le_bytes())
            },
            |segment, mapping, made| {
                TEST.check_header(&mapping, name)?;
                Ok(View {
                    segment,
                    mapping,
                    made: Some(made),
                })
            },
        )
    }

    #[test]
    fn find_or_create_makes_one_then_finds_it_and_passes_over_a_removed_one() {
        let name = name("find");
        let (first, gate) = find_or_create(&name).unwrap();
        let _guard = Removal(&first.segment);
        drop(gate);
        let (second, gate) = find_or_create(&name).unwrap();
        drop(gate);
        assert_eq!(
            (first.made, second.made),
            (Some(Made::Created), Some(Made::Found))
        );
        second.mapping.write_at(24, &[1]).unwrap();
        assert_eq!(first.mapping.load_u32(24, Ordering::Relaxed).unwrap(), 1);
        // The last member leaves: no member lock is held, so it goes, and
        // an opener that mapped it before finds `removed` and makes a new one.
        TEST.remove_if_last(&first);
        assert_eq!(first.removed().load(Ordering::SeqCst), 1);
        assert!(matches!(
            Segment::open(&TEST.key(&name).unwrap()),
            Err(Error::NotFound { .. })
        ));
        let (third, gate) = find_or_create(&name).unwrap();
        drop(gate);
        let _guard = Removal(&third.segment);
        assert_eq!(third.made, Some(Made::Created));
        assert_eq!(third.mapping.load_u32(24, Ordering::Relaxed).unwrap(), 0);
    }

    #[test]
    fn examine_tells_half_made_from_corrupt_and_leaves_what_a_member_holds() {
        let examine = |name: &str, remove: bool| {
            TEST.examine(
                name,
                remove,
                |mapping| TEST.check_header(mapping, name),
                |segment, mapping| {
                    Ok(View {
                        segment,
                        mapping,
                        made: None,
                    })
                },
                |view| view.mapping.load_u32(24, Ordering::Relaxed).unwrap(),
            )
        };
        let half = name("examine-half");
        let made = Segment::create(&TEST.key(&half).unwrap(), 4096, Mode::OWNER_ONLY).unwrap();
        let _guard = Removal(&made);
        assert!(matches!(
            examine(&half, false).unwrap(),
            Some(Examination {
                found: Examined::HalfMade(4096),
                removal: None
            })
        ));
        let corrupt = name("examine-corrupt");
        let made = Segment::create(&TEST.key(&corrupt).unwrap(), 4096, Mode::OWNER_ONLY).unwrap();
        let _guard = Removal(&made);
        made.attach(ReadWrite)
            .unwrap()
            .write_at(0, &9u64.to_le_bytes())
            .unwrap();
        let member = made.try_lock_range(8, 1).unwrap().unwrap();
        assert!(
            examine(&corrupt, true).unwrap().is_none(),
            "a member holds it"
        );
        drop(member);
        let found = examine(&corrupt, true).unwrap();
        assert!(
            matches!(
                &found,
                Some(Examination { found: Examined::Corrupt(why), removal: Some(Ok(())) })
                    if why.contains("magic")
            ),
            "{found:?}"
        );
        assert!(matches!(
            Segment::open(&TEST.key(&corrupt).unwrap()),
            Err(Error::NotFound { .. })
        ));
        let (whole, gate) = find_or_create(&name("examine-whole")).unwrap();
        drop(gate);
        let _guard = Removal(&whole.segment);
        whole.mapping.write_at(24, &[5]).unwrap();
        let found = examine(&name("examine-whole"), false).unwrap();
        assert!(
            matches!(
                found,
                Some(Examination {
                    found: Examined::Readable(5),
                    removal: None
                })
            ),
            "{found:?}"
        );
    }

    /// Removes a test's segment even on panic.
    struct Removal<'a>(&'a Segment);

    impl Drop for Removal<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }
}
