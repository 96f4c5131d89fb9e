//! How segments and rings are shown: the ring table, the `stat` report and
//! attachers table, their JSON forms (docs/JSON.md), and times as UTC
//! ISO-8601. The segment table is `ls`'s.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shmkit::ring::{EndpointStatus, RingStatus};
use shmkit::{Kind, Mapping, Stat};

use crate::users::Names;

/// The version of every JSON output's layout (docs/JSON.md): raised when
/// a field changes meaning or goes; adding a field keeps it.
pub const SCHEMA_VERSION: u32 = 1;

/// What `ls` knows of one ring: its status, or why it could not be read.
pub type RingRow = (String, Result<RingStatus, shmkit::Error>);

/// The ring in a segment named `/shmkit.ring.NAME`, and its status; `None`
/// for every other segment.
pub fn ring_in(stat: &Stat) -> Option<RingRow> {
    let key = stat.key.to_string();
    let name = key.strip_prefix(shmkit::ring::SEGMENT_PREFIX)?;
    Some((name.to_owned(), shmkit::ring::status(name)))
}

/// The `ls` table of rings, one row per ring, with a header if `headings`.
/// A ring whose header cannot be read shows its name and `unreadable`.
pub fn rings_table(rings: &[RingRow], headings: bool) -> String {
    let mut rows = vec![[
        "NAME",
        "CAPACITY",
        "IN-FLIGHT",
        "SENT",
        "RECEIVED",
        "PRODUCER",
        "CONSUMER",
        "STATE",
    ]
    .map(str::to_owned)
    .to_vec()];
    if !headings {
        rows.clear();
    }
    for (name, ring) in rings {
        rows.push(match ring {
            Ok(ring) => vec![
                name.clone(),
                ring.capacity.to_string(),
                ring.bytes_in_flight.to_string(),
                ring.sent.to_string(),
                ring.received.to_string(),
                endpoint(ring.producer, "-"),
                endpoint(ring.consumer, "-"),
                ring_state(ring).to_owned(),
            ],
            Err(_) => {
                let mut row = vec![name.clone()];
                row.extend(std::iter::repeat_n("-".to_owned(), 6));
                row.push("unreadable".to_owned());
                row
            }
        });
    }
    table(&rows)
}

/// `open` while the producer may send, `closed` once it closed the stream,
/// `abandoned` if the processes that held it died (`shmkit gc` removes it).
pub fn ring_state(ring: &RingStatus) -> &'static str {
    if ring.abandoned() {
        "abandoned"
    } else if ring.closed {
        "closed"
    } else {
        "open"
    }
}

/// An end of a ring: its pid, `PID (dead)`, or `none` when nobody holds it.
fn endpoint(end: Option<EndpointStatus>, none: &str) -> String {
    match end {
        Some(EndpointStatus { pid, alive: true }) => pid.to_string(),
        Some(EndpointStatus { pid, alive: false }) => format!("{pid} (dead)"),
        None => none.to_owned(),
    }
}

/// The `ring:` section of `stat` for a segment that holds a ring.
pub fn ring_text(ring: &Result<RingStatus, shmkit::Error>) -> String {
    let ring = match ring {
        Ok(ring) => ring,
        Err(err) => return format!("ring:     unreadable: {err}\n"),
    };
    let fields = [
        ("name", ring.name.clone()),
        ("state", ring_state(ring).to_owned()),
        ("capacity", format!("{} bytes", ring.capacity)),
        ("max message", format!("{} bytes", ring.max_message)),
        ("in flight", format!("{} bytes", ring.bytes_in_flight)),
        ("sent", ring.sent.to_string()),
        ("received", ring.received.to_string()),
        ("producer", endpoint(ring.producer, "none")),
        ("consumer", endpoint(ring.consumer, "none")),
    ];
    let mut text = "ring:\n".to_owned();
    for (name, value) in fields {
        text.push_str(&format!("  {:<13}{value}\n", format!("{name}:")));
    }
    text
}

/// The JSON form of a ring's status (docs/JSON.md, "ring"): its state
/// (see [`ring_state`]) and counters.
#[derive(Debug, Serialize)]
pub struct RingJson<'a> {
    name: &'a str,
    capacity: u64,
    max_message: u64,
    bytes_in_flight: u64,
    sent: u64,
    received: u64,
    closed: bool,
    producer: Option<EndpointStatus>,
    consumer: Option<EndpointStatus>,
    state: &'static str,
}

impl<'a> RingJson<'a> {
    /// The JSON view of `status`.
    pub fn new(status: &'a RingStatus) -> RingJson<'a> {
        RingJson {
            name: &status.name,
            capacity: status.capacity,
            max_message: status.max_message,
            bytes_in_flight: status.bytes_in_flight,
            sent: status.sent,
            received: status.received,
            closed: status.closed,
            producer: status.producer,
            consumer: status.consumer,
            state: ring_state(status),
        }
    }
}

/// A mapping's address as every output shows it: `0x` and lower-case hex.
pub fn address(address: u64) -> String {
    format!("{address:#x}")
}

/// The attachers of a segment: pid, command, address range and access.
pub fn attachers_table(attachers: &[Mapping]) -> String {
    let mut rows = vec![["PID", "COMMAND", "ADDRESS", "PERMS"]
        .map(str::to_owned)
        .to_vec()];
    for m in attachers {
        rows.push(vec![
            m.pid.to_string(),
            m.command.clone(),
            format!("{}-{}", address(m.start), address(m.end)),
            m.perms.clone(),
        ]);
    }
    table(&rows)
}

/// The `stat` report: every field on its own `name: value` line, then the
/// attachers.
pub fn stat_text(stat: &Stat, names: &Names) -> String {
    let sysv = stat.kind == Kind::SysV;
    let user = |uid: u32| match names.user(uid) {
        Some(name) => format!("{uid} ({name})"),
        None => uid.to_string(),
    };
    let group = |gid: u32| match names.group(gid) {
        Some(name) => format!("{gid} ({name})"),
        None => gid.to_string(),
    };
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let time = |time: Option<SystemTime>, applies: bool| match (time, applies) {
        (Some(time), _) => utc_iso8601(epoch_seconds(time)),
        (None, true) => "never".to_owned(),
        (None, false) => "-".to_owned(),
    };
    let fields = [
        ("kind", kind_name(stat.kind).to_owned()),
        ("key", stat.key.to_string()),
        ("id", or_dash(stat.id.map(|id| id.to_string()))),
        ("size", format!("{} bytes", stat.size)),
        ("mode", format!("{:o} ({})", stat.mode, stat.mode)),
        ("uid", user(stat.uid)),
        ("gid", group(stat.gid)),
        ("cuid", or_dash(stat.cuid.map(user))),
        ("cgid", or_dash(stat.cgid.map(group))),
        ("cpid", or_dash(stat.cpid.map(|pid| pid.to_string()))),
        ("lpid", or_dash(stat.lpid.map(|pid| pid.to_string()))),
        ("nattch", stat.nattch.to_string()),
        ("atime", time(stat.atime, true)),
        ("dtime", time(stat.dtime, sysv)),
        ("ctime", time(stat.ctime, true)),
        ("mtime", time(stat.mtime, !sysv)),
        (
            "removed",
            if stat.removed {
                "yes (dest: freed when the last process detaches)".to_owned()
            } else {
                "no".to_owned()
            },
        ),
        ("locked", if stat.locked { "yes" } else { "no" }.to_owned()),
        ("resident", format!("{} bytes", stat.resident_bytes)),
        (
            "swapped",
            or_dash(stat.swapped_bytes.map(|bytes| format!("{bytes} bytes"))),
        ),
    ];
    let mut text = String::new();
    for (name, value) in fields {
        text.push_str(&format!("{:<10}{value}\n", format!("{name}:")));
    }
    if stat.attachers.is_empty() {
        text.push_str("attachers: none\n");
    } else {
        text.push_str("attachers:\n");
        for line in attachers_table(&stat.attachers).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

/// The JSON form of a [`Stat`], for `stat --json` and each element of
/// `ls --json`, documented field by field in docs/JSON.md ("segment").
/// Fields a kind does not have are `null`; times are seconds since the
/// epoch, `null` for never; System V's attach, detach and change times and
/// a POSIX file's access, modification and change times have names that
/// say which; `ring` is the status of the ring in the segment, `null` if it
/// holds none (or one that cannot be read), and `topic` and `service`
/// likewise.
#[derive(Debug, Serialize)]
pub struct StatJson<'a> {
    schema_version: u32,
    kind: Kind,
    key: String,
    id: Option<i32>,
    size: u64,
    /// The permission bits as a number: 416 for `0o640`.
    mode: u32,
    /// Octal, as text: `"640"`.
    mode_octal: String,
    /// `rw-r-----`.
    mode_symbolic: String,
    uid: u32,
    user: Option<&'a str>,
    gid: u32,
    group: Option<&'a str>,
    creator_uid: Option<u32>,
    creator_user: Option<&'a str>,
    creator_gid: Option<u32>,
    creator_group: Option<&'a str>,
    creator_pid: Option<shmkit::Pid>,
    last_pid: Option<shmkit::Pid>,
    nattch: u64,
    sysv_attach_time: Option<u64>,
    sysv_detach_time: Option<u64>,
    sysv_change_time: Option<u64>,
    file_access_time: Option<u64>,
    file_modify_time: Option<u64>,
    file_change_time: Option<u64>,
    removed: bool,
    locked: bool,
    resident_bytes: u64,
    swapped_bytes: Option<u64>,
    attachers: Vec<AttacherJson<'a>>,
    ring: Option<RingJson<'a>>,
    topic: Option<crate::topic::TopicJson>,
    service: Option<crate::service::ServiceJson>,
}

/// One attacher in the JSON (docs/JSON.md, "attacher").
#[derive(Debug, Serialize)]
pub struct AttacherJson<'a> {
    pid: shmkit::Pid,
    command: &'a str,
    start: String,
    end: String,
    perms: &'a str,
}

impl<'a> StatJson<'a> {
    /// The JSON view of `stat`, with names from `names` and the status of
    /// the ring in it, if any.
    pub fn new(stat: &'a Stat, names: &'a Names, ring: Option<&'a RingStatus>) -> StatJson<'a> {
        let sysv = stat.kind == Kind::SysV;
        let time =
            |time: Option<SystemTime>, applies: bool| time.filter(|_| applies).map(epoch_seconds);
        StatJson {
            schema_version: SCHEMA_VERSION,
            kind: stat.kind,
            key: stat.key.to_string(),
            id: stat.id,
            size: stat.size,
            mode: stat.mode.bits(),
            mode_octal: format!("{:o}", stat.mode),
            mode_symbolic: stat.mode.to_string(),
            uid: stat.uid,
            user: names.user(stat.uid),
            gid: stat.gid,
            group: names.group(stat.gid),
            creator_uid: stat.cuid,
            creator_user: stat.cuid.and_then(|uid| names.user(uid)),
            creator_gid: stat.cgid,
            creator_group: stat.cgid.and_then(|gid| names.group(gid)),
            creator_pid: stat.cpid,
            last_pid: stat.lpid,
            nattch: stat.nattch,
            sysv_attach_time: time(stat.atime, sysv),
            sysv_detach_time: time(stat.dtime, sysv),
            sysv_change_time: time(stat.ctime, sysv),
            file_access_time: time(stat.atime, !sysv),
            file_modify_time: time(stat.mtime, !sysv),
            file_change_time: time(stat.ctime, !sysv),
            removed: stat.removed,
            locked: stat.locked,
            resident_bytes: stat.resident_bytes,
            swapped_bytes: stat.swapped_bytes,
            attachers: stat
                .attachers
                .iter()
                .map(|m| AttacherJson {
                    pid: m.pid,
                    command: &m.command,
                    start: address(m.start),
                    end: address(m.end),
                    perms: &m.perms,
                })
                .collect(),
            ring: ring.map(RingJson::new),
            topic: crate::topic::json_in(stat),
            service: crate::service::json_in(stat),
        }
    }
}

/// `value` as pretty JSON followed by a newline.
pub fn json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string
    // keys, no failing Serialize impls.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// `sysv` or `posix`, as in the JSON.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::SysV => "sysv",
        Kind::Posix => "posix",
    }
}

/// The `ipcs` status words: `dest` for a pending removal, `locked`.
pub fn status_words(stat: &Stat) -> String {
    let mut words = Vec::new();
    if stat.removed {
        words.push("dest");
    }
    if stat.locked {
        words.push("locked");
    }
    words.join(" ")
}

/// Columns left-aligned to their widest cell, two spaces apart, no trailing
/// blanks.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Whole seconds since 1970-01-01 UTC (0 for a time before it).
pub fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `2024-02-29T13:05:09Z`, from seconds since the epoch, by the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`,
/// <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>).
pub fn utc_iso8601(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(1_709_211_909), "2024-02-29T13:05:09Z");
        assert_eq!(utc_iso8601(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(utc_iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["long".to_owned(), "x".to_owned(), String::new()],
        ];
        assert_eq!(table(&rows), "A     BB  C\nlong  x\n");
    }
}
