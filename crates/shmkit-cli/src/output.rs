//! How segments and rings are shown: the `ls` tables, the `stat` report and
//! attachers table, their JSON forms, and times as UTC ISO-8601.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shmkit::ring::{EndpointStatus, RingStatus};
use shmkit::{Kind, Mapping, Stat};

use crate::users::Names;

/// The `ls` table, like `ipcs -m`: one row per segment, header always.
pub fn segments_table(stats: &[Stat], names: &Names) -> String {
    let mut rows = vec![[
        "KIND", "KEY", "ID", "OWNER", "PERMS", "BYTES", "NATTCH", "STATUS",
    ]
    .map(str::to_owned)
    .to_vec()];
    for stat in stats {
        rows.push(vec![
            kind_name(stat.kind).to_owned(),
            stat.key.to_string(),
            stat.id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            names.user_or_number(stat.uid),
            format!("{:o}", stat.mode),
            stat.size.to_string(),
            stat.nattch.to_string(),
            status(stat),
        ]);
    }
    table(&rows)
}

/// What `ls` knows of one ring: its status, or why it could not be read.
pub type RingRow = (String, Result<RingStatus, shmkit::Error>);

/// The `ls` table of rings, one row per ring, header always. A ring whose
/// header cannot be read shows its name and `unreadable`.
pub fn rings_table(rings: &[RingRow]) -> String {
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

/// The JSON form of a ring's status: the fields of [`RingStatus`] and its
/// `state` (see [`ring_state`]).
#[derive(Debug, Serialize)]
pub struct RingJson<'a> {
    #[serde(flatten)]
    status: &'a RingStatus,
    state: &'static str,
}

impl<'a> RingJson<'a> {
    /// The JSON view of `status`.
    pub fn new(status: &'a RingStatus) -> RingJson<'a> {
        RingJson {
            status,
            state: ring_state(status),
        }
    }
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
            format!("{:x}-{:x}", m.start, m.end),
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
/// `ls --json`. Fields a kind does not have are `null`; times are seconds
/// since the epoch, `null` for never; `ring` is the status of the ring in
/// the segment, `null` if it holds none (or one that cannot be read).
#[derive(Debug, Serialize)]
pub struct StatJson<'a> {
    kind: Kind,
    key: String,
    id: Option<i32>,
    size: u64,
    /// Octal, as text: `"640"`.
    mode: String,
    /// `rw-r-----`.
    mode_rwx: String,
    uid: u32,
    user: Option<&'a str>,
    gid: u32,
    group: Option<&'a str>,
    cuid: Option<u32>,
    cuser: Option<&'a str>,
    cgid: Option<u32>,
    cgroup: Option<&'a str>,
    cpid: Option<shmkit::Pid>,
    lpid: Option<shmkit::Pid>,
    nattch: u64,
    atime: Option<u64>,
    dtime: Option<u64>,
    ctime: Option<u64>,
    mtime: Option<u64>,
    removed: bool,
    locked: bool,
    resident_bytes: u64,
    swapped_bytes: Option<u64>,
    attachers: &'a [Mapping],
    ring: Option<RingJson<'a>>,
}

impl<'a> StatJson<'a> {
    /// The JSON view of `stat`, with names from `names` and the status of
    /// the ring in it, if any.
    pub fn new(stat: &'a Stat, names: &'a Names, ring: Option<&'a RingStatus>) -> StatJson<'a> {
        StatJson {
            kind: stat.kind,
            key: stat.key.to_string(),
            id: stat.id,
            size: stat.size,
            mode: format!("{:o}", stat.mode),
            mode_rwx: stat.mode.to_string(),
            uid: stat.uid,
            user: names.user(stat.uid),
            gid: stat.gid,
            group: names.group(stat.gid),
            cuid: stat.cuid,
            cuser: stat.cuid.and_then(|uid| names.user(uid)),
            cgid: stat.cgid,
            cgroup: stat.cgid.and_then(|gid| names.group(gid)),
            cpid: stat.cpid,
            lpid: stat.lpid,
            nattch: stat.nattch,
            atime: stat.atime.map(epoch_seconds),
            dtime: stat.dtime.map(epoch_seconds),
            ctime: stat.ctime.map(epoch_seconds),
            mtime: stat.mtime.map(epoch_seconds),
            removed: stat.removed,
            locked: stat.locked,
            resident_bytes: stat.resident_bytes,
            swapped_bytes: stat.swapped_bytes,
            attachers: &stat.attachers,
            ring: ring.map(RingJson::new),
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
fn status(stat: &Stat) -> String {
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
fn table(rows: &[Vec<String>]) -> String {
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

fn epoch_seconds(time: SystemTime) -> u64 {
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
