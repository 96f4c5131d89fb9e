//! What each segment subcommand does (`stat`, `create`, `rm`, `write`,
//! `read`): find the segment, call the library, print. `ls` is in `ls`, the
//! ring commands are in `ring`, the demo in `demo`.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

use shmkit::{Key, Kind, Mode, ReadOnly, ReadWrite, Segment, Stat};

use crate::args::{parse_key, KindFilter, RmArgs, StatTarget, Target};
use crate::error::CliError;
use crate::output::{self, StatJson};
use crate::users::Names;

/// How much `read` copies per step, so that a large segment needs no large
/// buffer.
const CHUNK: usize = 1 << 20;

/// `shmkit stat`: one segment's status and attachers, and its ring's status
/// if it holds one.
pub fn stat(target: &StatTarget, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let target = target.segment();
    let stat = match open(&target) {
        Ok(segment) => segment.stat()?,
        Err(err) => listed_status(&target, err)?,
    };
    let ring = output::ring_in(&stat);
    let names = Names::load();
    let text = if json {
        let ring = ring.as_ref().and_then(|(_, ring)| ring.as_ref().ok());
        output::json(&StatJson::new(&stat, &names, ring))
    } else {
        let mut text = output::stat_text(&stat, &names);
        if let Some((_, ring)) = &ring {
            text.push_str(&output::ring_text(ring));
        }
        if let Some(topic) = crate::topic::stat_text(&stat.key.to_string()) {
            text.push_str(&topic);
        }
        if let Some(service) = crate::service::stat_text(&stat.key.to_string()) {
            text.push_str(&service);
        }
        text
    };
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}

/// What the listing knows of a POSIX segment this user may not open (its
/// file's status, as `ls` shows it): `stat` needs no more than `fstat`
/// tells. Any other failure to open stays the error it was.
fn listed_status(target: &Target, err: CliError) -> Result<Stat, CliError> {
    let denied = matches!(
        err,
        CliError::Shmkit {
            source: shmkit::Error::PermissionDenied { .. },
            ..
        }
    );
    let key = match (&target.key, denied) {
        (Some(key), true) => parse_key(key)?,
        _ => return Err(err),
    };
    shmkit::list()?
        .into_iter()
        .find(|stat| stat.kind == Kind::Posix && stat.key == key)
        .ok_or(err)
}

/// `shmkit create`: creates (or with `exclusive` false, maybe opens) and
/// prints the System V id or the POSIX name. Opening an existing segment
/// whose mode differs from an explicit `--mode` says so on stderr: the
/// kernel keeps the mode it has.
pub fn create(
    key: &str,
    size: u64,
    mode: Option<u32>,
    exclusive: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let key = parse_key(key)?;
    let asked = Mode::new(mode.unwrap_or(0o600));
    let segment = match Segment::create(&key, size, asked) {
        // With Key::PRIVATE this always creates, as `shmget(IPC_PRIVATE)` does.
        Err(shmkit::Error::AlreadyExists { .. }) if !exclusive => {
            let opened = Segment::open_or_create(&key, size, asked)?;
            if !opened.is_mine() {
                // Anyone may create a name first: say so rather than let the
                // user take a stranger's segment for their own.
                eprintln!(
                    "shmkit: note: {} already existed and belongs to {}, not to you",
                    opened.segment, opened.owner
                );
            }
            let existing = opened.segment.stat()?.mode;
            if mode.is_some() && existing.bits() & 0o777 != asked.bits() {
                eprintln!(
                    "shmkit: note: segment {} already exists with mode {existing:o}, \
                     which it keeps: --mode {asked:o} applies only to a new segment \
                     (--exclusive fails instead)",
                    opened.segment
                );
            }
            opened.segment
        }
        Err(err @ shmkit::Error::TooLarge { .. }) => return Err(naming_the_limit(&key, size, err)),
        other => other?,
    };
    match segment.id() {
        Some(id) => writeln!(out, "{id}"),
        None => writeln!(out, "{}", segment.key()),
    }
    .map_err(CliError::stdout)
}

/// A size over a limit, with the limit's name: `kernel.shmmax`,
/// `kernel.shmall`, or the size of `/dev/shm` (`ls --limits` shows them).
fn naming_the_limit(key: &Key, size: u64, err: shmkit::Error) -> CliError {
    let kind = match key {
        Key::SysV(_) => Kind::SysV,
        Key::Posix(_) => Kind::Posix,
    };
    match shmkit::segment::limits().exceeded_by(kind, size) {
        Some(limit) => CliError::Message(format!(
            "cannot create {}: {err}, the limit being {limit} (see `shmkit ls --limits`)",
            key
        )),
        None => CliError::from(err),
    }
}

/// `shmkit rm`: removes each segment named, or with `--all` each one the
/// filters select, going on after a failure like `ipcrm`, and reports every
/// failure; with `-v` prints what it removed.
pub fn rm(args: &RmArgs, out: &mut impl Write) -> Result<(), CliError> {
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    let mut record = |what: String, result: Result<(), CliError>| match result {
        Ok(()) => removed.push(what),
        Err(err) => errors.push(err),
    };
    if args.all {
        let names = Names::load();
        let owner = match &args.owner {
            Some(user) => Some(
                user.parse()
                    .ok()
                    .or_else(|| names.uid_of(user))
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "--owner {user}: no such user (give a name or a uid)"
                        ))
                    })?,
            ),
            None => None,
        };
        for stat in shmkit::list()? {
            if !selected(&stat, args, owner) {
                continue;
            }
            let (what, result) = match (stat.kind, stat.id) {
                (Kind::SysV, Some(id)) => (
                    describe_sysv(&stat, id),
                    Segment::open_id(id).and_then(|s| s.remove()),
                ),
                _ => (stat.key.to_string(), Segment::remove_key(&stat.key)),
            };
            let result = result.map_err(CliError::from);
            record(with_attachers(what, stat.nattch), result);
        }
        if args.verbose && removed.is_empty() && errors.is_empty() {
            writeln!(out, "no segment matched; nothing was removed").map_err(CliError::stdout)?;
        }
    } else {
        for text in &args.keys {
            let result = parse_key(text).and_then(|key| {
                let nattch = Segment::open(&key)
                    .and_then(|s| s.stat())
                    .map_or(0, |stat| stat.nattch);
                Segment::remove_key(&key)?;
                Ok(with_attachers(key.to_string(), nattch))
            });
            match result {
                Ok(what) => removed.push(what),
                Err(err) => errors.push(err),
            }
        }
        for &id in &args.ids {
            let result = Segment::open_id(id).and_then(|segment| {
                let nattch = segment.stat().map_or(0, |stat| stat.nattch);
                segment.remove()?;
                Ok(with_attachers(segment.to_string(), nattch))
            });
            match result {
                Ok(what) => removed.push(what),
                Err(err) => errors.push(err.into()),
            }
        }
    }
    if args.verbose {
        for what in &removed {
            writeln!(out, "removed {what}").map_err(CliError::stdout)?;
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CliError::Several(errors)),
    }
}

/// Whether `rm --all` with these filters takes this segment.
fn selected(stat: &Stat, args: &RmArgs, owner: Option<u32>) -> bool {
    let key = stat.key.to_string();
    let kind = match args.kind {
        None => true,
        Some(KindFilter::Sysv) => stat.kind == Kind::SysV,
        Some(KindFilter::Posix) => stat.kind == Kind::Posix,
        Some(KindFilter::Ring) => {
            stat.kind == Kind::Posix && key.starts_with(shmkit::ring::SEGMENT_PREFIX)
        }
        Some(KindFilter::Topic) => {
            stat.kind == Kind::Posix && key.starts_with(shmkit::topic::SEGMENT_PREFIX)
        }
        Some(KindFilter::Service) => {
            stat.kind == Kind::Posix && key.starts_with(shmkit::service::SEGMENT_PREFIX)
        }
    };
    // A segment already removed and still attached has nothing left to remove.
    kind && !stat.removed
        && owner.is_none_or(|uid| stat.uid == uid)
        && args
            .prefix
            .as_ref()
            .is_none_or(|prefix| key.starts_with(prefix.as_str()))
}

/// How `rm -v` names a System V segment: `key 0x… (id N)`, or `id N`.
fn describe_sysv(stat: &Stat, id: i32) -> String {
    if stat.key == Key::PRIVATE {
        format!("id {id}")
    } else {
        format!("key {} (id {id})", stat.key)
    }
}

/// `what`, and if processes still have it attached, that its memory stays
/// until they detach.
fn with_attachers(what: String, nattch: u64) -> String {
    match nattch {
        0 => what,
        1 => format!("{what}; its memory stays until the 1 process attached detaches"),
        n => format!("{what}; its memory stays until the {n} processes attached detach"),
    }
}

/// `shmkit write`: copies all of `input` into the segment at `offset`, or
/// nothing if it does not fit. The input is streamed: a regular file's
/// length is checked first; a pipe's bytes go to an unlinked temporary file
/// until their length is known, so memory use stays bounded.
pub fn write(target: &Target, offset: u64, input: &mut File) -> Result<(), CliError> {
    let segment = open(target)?;
    let mapping = segment.attach(ReadWrite)?;
    let size = mapping.len() as u64;
    let room = room_after(&segment, offset, size)?;
    let too_much = || {
        CliError::Message(format!(
            "standard input does not fit in segment {segment} at offset {offset}: the segment \
             has {size} bytes, so at most {room} can be written there; nothing was written"
        ))
    };
    let metadata = input.metadata().map_err(reading_stdin)?;
    let mut spooled;
    let source: &mut File = if metadata.is_file() {
        let position = input.stream_position().map_err(reading_stdin)?;
        if metadata.len().saturating_sub(position) > room {
            return Err(too_much());
        }
        input
    } else {
        spooled = spool(input, room)?;
        if spooled.metadata().map_err(reading_stdin)?.len() > room {
            return Err(too_much());
        }
        &mut spooled
    };
    // The offset fits in usize: it is at most the mapping's length.
    let mut position = offset as usize;
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = source.read(&mut buffer).map_err(reading_stdin)?;
        if read == 0 {
            return Ok(());
        }
        // A regular file may have grown since it was measured.
        if (position - offset as usize + read) as u64 > room {
            return Err(CliError::Message(format!(
                "standard input grew while it was written into segment {segment}: the first \
                 {} bytes at offset {offset} were written, the rest does not fit",
                position - offset as usize
            )));
        }
        mapping.write_at(position, &buffer[..read])?;
        position += read;
    }
}

/// Copies up to `room + 1` bytes of `input` (one more than fits tells
/// "exactly fits" from "too much" without reading an endless input to its
/// end) into an unlinked temporary file, rewound.
fn spool(input: &mut File, room: u64) -> Result<File, CliError> {
    let dir = std::env::temp_dir();
    let mut file = tempfile_in(&dir).map_err(|source| CliError::Io {
        context: format!(
            "making a temporary file in {} to hold standard input",
            dir.display()
        ),
        source,
    })?;
    io::copy(&mut input.take(room.saturating_add(1)), &mut file).map_err(|source| {
        CliError::Io {
            context: format!(
                "reading standard input into a temporary file in {}",
                dir.display()
            ),
            source,
        }
    })?;
    file.rewind().map_err(reading_stdin)?;
    Ok(file)
}

/// A file in `dir` with no name (`O_TMPFILE`), or, where the file system
/// lacks that, one whose name is removed at once.
fn tempfile_in(dir: &std::path::Path) -> io::Result<File> {
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::TMPFILE.bits() as i32)
        .open(dir);
    match unnamed {
        Ok(file) => Ok(file),
        Err(_) => {
            let path = dir.join(format!("shmkit-write-{}", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
    }
}

fn reading_stdin(source: io::Error) -> CliError {
    CliError::Io {
        context: "reading standard input".to_owned(),
        source,
    }
}

/// `shmkit read`: copies `len` bytes (default: up to the end) from `offset`
/// to `out`.
pub fn read(
    target: &Target,
    offset: u64,
    len: Option<u64>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let segment = open(target)?;
    let mapping = segment.attach(ReadOnly)?;
    let size = mapping.len() as u64;
    let room = room_after(&segment, offset, size)?;
    let len = len.unwrap_or(room);
    if len > room {
        return Err(CliError::Shmkit {
            context: Some(format!(
                "cannot read {len} bytes at offset {offset} of segment {segment}"
            )),
            source: shmkit::Error::OutOfBounds { offset, len, size },
        });
    }
    // Both fit in usize from here on: offset + len <= the mapping's length.
    let (mut position, end) = (offset as usize, (offset + len) as usize);
    let mut buffer = vec![0; CHUNK.min(end - position)];
    while position < end {
        let step = CHUNK.min(end - position);
        mapping.read_at(position, &mut buffer[..step])?;
        out.write_all(&buffer[..step]).map_err(CliError::stdout)?;
        position += step;
    }
    out.flush().map_err(CliError::stdout)
}

/// The segment a KEY or `--id` names.
fn open(target: &Target) -> Result<Segment, CliError> {
    match (&target.key, target.id) {
        (_, Some(id)) => Ok(Segment::open_id(id)?),
        (Some(key), None) => Ok(Segment::open(&parse_key(key)?)?),
        (None, None) => Err(CliError::Usage("give a KEY or --id ID".to_owned())),
    }
}

/// How many bytes lie from `offset` to the end of a segment of `size` bytes;
/// an offset past the end is an error.
fn room_after(segment: &Segment, offset: u64, size: u64) -> Result<u64, CliError> {
    size.checked_sub(offset).ok_or_else(|| {
        CliError::Message(format!(
            "offset {offset} is past the end of segment {segment}, which has {size} bytes"
        ))
    })
}
