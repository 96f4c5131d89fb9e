//! What each segment subcommand does (`ls`, `stat`, `create`, `rm`, `write`,
//! `read`): find the segment, call the library, print. The ring commands are
//! in `ring`, the demo in `demo`.

use std::io::{Read, Write};

use shmkit::ring::{RingStatus, SEGMENT_PREFIX};
use shmkit::{Mode, ReadOnly, ReadWrite, Segment, Stat};

use crate::args::{parse_key, StatTarget, Target, Targets};
use crate::error::CliError;
use crate::output::{self, RingRow, StatJson};
use crate::users::Names;

/// How much `read` copies per step, so that a large segment needs no large
/// buffer.
const CHUNK: usize = 1 << 20;

/// `shmkit ls`: every segment, as a table or a JSON array, then a table of
/// the rings if there are any.
pub fn ls(json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let all = shmkit::list()?;
    let names = Names::load();
    let text = if json {
        let rings: Vec<Option<RingStatus>> = all
            .iter()
            .map(|stat| ring_in(stat).and_then(|(_, ring)| ring.ok()))
            .collect();
        let objects: Vec<StatJson> = all
            .iter()
            .zip(&rings)
            .map(|(stat, ring)| StatJson::new(stat, &names, ring.as_ref()))
            .collect();
        output::json(&objects)
    } else {
        let mut text = output::segments_table(&all, &names);
        let rings: Vec<RingRow> = shmkit::ring::list()?
            .into_iter()
            .map(|name| {
                let status = shmkit::ring::status(&name);
                (name, status)
            })
            // Gone between the listing and the look: not worth a row.
            .filter(|(_, status)| !matches!(status, Err(shmkit::Error::NotFound { .. })))
            .collect();
        if !rings.is_empty() {
            text.push_str("\nRINGS\n");
            text.push_str(&output::rings_table(&rings));
        }
        text
    };
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}

/// `shmkit stat`: one segment's status and attachers, and its ring's status
/// if it holds one.
pub fn stat(target: &StatTarget, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let stat = open(&target.segment())?.stat()?;
    let ring = ring_in(&stat);
    let names = Names::load();
    let text = if json {
        let ring = ring.as_ref().and_then(|(_, ring)| ring.as_ref().ok());
        output::json(&StatJson::new(&stat, &names, ring))
    } else {
        let mut text = output::stat_text(&stat, &names);
        if let Some((_, ring)) = &ring {
            text.push_str(&output::ring_text(ring));
        }
        text
    };
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}

/// The ring in a segment named `/shmkit.ring.NAME`, and its status; `None`
/// for every other segment.
fn ring_in(stat: &Stat) -> Option<RingRow> {
    let key = stat.key.to_string();
    let name = key.strip_prefix(SEGMENT_PREFIX)?;
    Some((name.to_owned(), shmkit::ring::status(name)))
}

/// `shmkit create`: creates (or with `exclusive` false, maybe opens) and
/// prints the System V id or the POSIX name.
pub fn create(
    key: &str,
    size: u64,
    mode: u32,
    exclusive: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let key = parse_key(key)?;
    let mode = Mode::new(mode);
    let segment = if exclusive {
        Segment::create(&key, size, mode)?
    } else {
        // With Key::PRIVATE this always creates, as `shmget(IPC_PRIVATE)` does.
        let opened = Segment::open_or_create(&key, size, mode)?;
        if !opened.is_mine() {
            // Anyone may create a name first: say so rather than let the
            // user take a stranger's segment for their own.
            eprintln!(
                "shmkit: note: {} already existed and belongs to {}, not to you",
                opened.segment, opened.owner
            );
        }
        opened.segment
    };
    match segment.id() {
        Some(id) => writeln!(out, "{id}"),
        None => writeln!(out, "{}", segment.key()),
    }
    .map_err(CliError::stdout)
}

/// `shmkit rm`: removes each segment, going on after a failure like
/// `ipcrm`, and reports every failure.
pub fn rm(targets: &Targets) -> Result<(), CliError> {
    let remove_key =
        |text: &String| -> Result<(), CliError> { Ok(Segment::open(&parse_key(text)?)?.remove()?) };
    let remove_id = |id: &i32| -> Result<(), CliError> { Ok(Segment::open_id(*id)?.remove()?) };
    let mut errors: Vec<CliError> = targets
        .keys
        .iter()
        .map(remove_key)
        .chain(targets.ids.iter().map(remove_id))
        .filter_map(Result::err)
        .collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CliError::Several(errors)),
    }
}

/// `shmkit write`: copies all of `input` into the segment at `offset`, or
/// nothing if it does not fit.
pub fn write(target: &Target, offset: u64, input: &mut impl Read) -> Result<(), CliError> {
    let segment = open(target)?;
    let mapping = segment.attach(ReadWrite)?;
    let size = mapping.len() as u64;
    let room = room_after(&segment, offset, size)?;
    // Read one byte more than fits, to tell "exactly fits" from "too much"
    // without reading an endless input to its end.
    let mut data = Vec::new();
    input
        .take(room.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|source| CliError::Io {
            context: "reading standard input".to_owned(),
            source,
        })?;
    if data.len() as u64 > room {
        return Err(CliError::Message(format!(
            "standard input does not fit in segment {segment} at offset {offset}: the segment \
             has {size} bytes, so at most {room} can be written there; nothing was written"
        )));
    }
    // The offset fits in usize: it is at most the mapping's length.
    mapping.write_at(offset as usize, &data)?;
    Ok(())
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
