//! `shmkit ls`: the segment table with columns on demand (as `ipcs -m -p
//! -t -c` and `lsipc -o` show them), its raw form for scripts, and the
//! system's limits and totals (`ipcs -l`, `ipcs -u`).

use std::io::Write;
use std::time::SystemTime;

use serde::Serialize;
use shmkit::ring::RingStatus;
use shmkit::segment::Limits;
use shmkit::{Kind, Stat};

use crate::args::{Column, LsArgs, TimeFormat};
use crate::error::CliError;
use crate::output::{self, RingRow, StatJson, SCHEMA_VERSION};
use crate::users::Names;

/// The columns `ls` shows unless told otherwise.
const DEFAULT_COLUMNS: [Column; 8] = [
    Column::Kind,
    Column::Key,
    Column::Id,
    Column::Owner,
    Column::Perms,
    Column::Bytes,
    Column::Nattch,
    Column::Status,
];

/// `shmkit ls`: the table (or raw lines, or JSON) of every segment, then
/// the rings; or the limits, or the totals.
pub fn ls(args: &LsArgs, out: &mut impl Write) -> Result<(), CliError> {
    let text = if args.limits {
        limits(args)
    } else if args.summary {
        summary(args)?
    } else if args.json {
        let all = shmkit::list()?;
        let names = Names::load();
        let rings: Vec<Option<RingStatus>> = all
            .iter()
            .map(|stat| output::ring_in(stat).and_then(|(_, ring)| ring.ok()))
            .collect();
        let objects: Vec<StatJson> = all
            .iter()
            .zip(&rings)
            .map(|(stat, ring)| StatJson::new(stat, &names, ring.as_ref()))
            .collect();
        output::json(&objects)
    } else {
        segments(args)?
    };
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}

/// The columns asked for: --output's, or the default ones and those
/// --creator, --pids and --times add.
fn columns(args: &LsArgs) -> Vec<Column> {
    if !args.output.is_empty() {
        return args.output.clone();
    }
    let mut columns = DEFAULT_COLUMNS.to_vec();
    if args.creator {
        // ipcs -c: the creator's user and group beside the owner's.
        columns.splice(4..4, [Column::Group, Column::Cuser, Column::Cgroup]);
    }
    if args.pids {
        columns.extend([Column::Cpid, Column::Lpid]);
    }
    if args.times {
        columns.extend([Column::Attached, Column::Detached, Column::Changed]);
    }
    columns
}

fn heading(column: Column) -> &'static str {
    match column {
        Column::Kind => "KIND",
        Column::Key => "KEY",
        Column::Id => "ID",
        Column::Owner => "OWNER",
        Column::Group => "GROUP",
        Column::Perms => "PERMS",
        Column::Bytes => "BYTES",
        Column::Nattch => "NATTCH",
        Column::Status => "STATUS",
        Column::Cuser => "CUSER",
        Column::Cgroup => "CGROUP",
        Column::Cpid => "CPID",
        Column::Lpid => "LPID",
        Column::Attached => "ATTACHED",
        Column::Detached => "DETACHED",
        Column::Changed => "CHANGED",
        Column::Accessed => "ACCESSED",
        Column::Modified => "MODIFIED",
        Column::Resident => "RESIDENT",
        Column::Swapped => "SWAPPED",
    }
}

/// One cell; `None` where the segment's kind has no such value.
fn cell(column: Column, stat: &Stat, names: &Names, args: &LsArgs) -> Option<String> {
    let sysv = stat.kind == Kind::SysV;
    let size = |bytes: u64| {
        if args.human {
            human_size(bytes)
        } else {
            bytes.to_string()
        }
    };
    let time = |time: Option<SystemTime>, applies: bool| {
        applies.then(|| time.map_or_else(|| "never".to_owned(), |t| format_time(t, args)))
    };
    match column {
        Column::Kind => Some(output::kind_name(stat.kind).to_owned()),
        Column::Key => Some(stat.key.to_string()),
        Column::Id => stat.id.map(|id| id.to_string()),
        Column::Owner => Some(names.user_or_number(stat.uid)),
        Column::Group => Some(names.group_or_number(stat.gid)),
        Column::Perms if args.symbolic => Some(stat.mode.to_string()),
        Column::Perms => Some(format!("{:o}", stat.mode)),
        Column::Bytes => Some(size(stat.size)),
        Column::Nattch => Some(stat.nattch.to_string()),
        Column::Status => Some(output::status_words(stat)),
        Column::Cuser => stat.cuid.map(|uid| names.user_or_number(uid)),
        Column::Cgroup => stat.cgid.map(|gid| names.group_or_number(gid)),
        Column::Cpid => stat.cpid.map(|pid| pid.to_string()),
        Column::Lpid => stat.lpid.map(|pid| pid.to_string()),
        Column::Attached => time(stat.atime, sysv),
        Column::Detached => time(stat.dtime, sysv),
        Column::Changed => time(stat.ctime, true),
        Column::Accessed => time(stat.atime, !sysv),
        Column::Modified => time(stat.mtime, !sysv),
        Column::Resident => Some(size(stat.resident_bytes)),
        Column::Swapped => stat.swapped_bytes.map(size),
    }
}

/// The segment table (or raw lines), then, unless raw, the ring table.
fn segments(args: &LsArgs) -> Result<String, CliError> {
    let all = shmkit::list()?;
    let names = Names::load();
    let columns = columns(args);
    let mut rows = Vec::new();
    if !args.noheadings {
        rows.push(columns.iter().map(|&c| heading(c).to_owned()).collect());
    }
    for stat in &all {
        rows.push(
            columns
                .iter()
                .map(|&c| cell(c, stat, &names, args).unwrap_or_else(|| "-".to_owned()))
                .collect::<Vec<String>>(),
        );
    }
    if args.raw {
        let mut text = String::new();
        for row in rows {
            let cells: Vec<String> = row
                .into_iter()
                .map(|cell| {
                    if cell.is_empty() {
                        "-".to_owned()
                    } else {
                        raw_cell(&cell)
                    }
                })
                .collect();
            text.push_str(&cells.join("\t"));
            text.push('\n');
        }
        return Ok(text);
    }
    let mut text = output::table(&rows);
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
        text.push_str(&output::rings_table(&rings, !args.noheadings));
    }
    text.push_str(&crate::topic::ls_table(!args.noheadings)?);
    text.push_str(&crate::service::ls_table(!args.noheadings)?);
    Ok(text)
}

/// A cell of `--raw` output, which a script splits at tabs and newlines:
/// a backslash and every control character (a POSIX name may hold a tab)
/// as `\\` and `\xHH`, as `lsipc --raw` escapes them.
fn raw_cell(cell: &str) -> String {
    let mut escaped = String::with_capacity(cell.len());
    for c in cell.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            c if c.is_control() => escaped.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `ls --limits`, as text or JSON.
fn limits(args: &LsArgs) -> String {
    let limits = shmkit::segment::limits();
    if args.json {
        return output::json(&LimitsJson {
            schema_version: SCHEMA_VERSION,
            limits: &limits,
        });
    }
    let size = |bytes: Option<u64>| match bytes {
        Some(bytes) if args.human => human_size(bytes),
        Some(bytes) => format!("{bytes} bytes"),
        None => "unknown".to_owned(),
    };
    let number = |n: Option<u64>| n.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    let Limits {
        sysv_max_segments,
        sysv_max_segment_bytes,
        sysv_max_total_pages,
        page_size,
        posix_size,
        posix_used,
        posix_available,
        ..
    } = limits;
    let lines = [
        (
            "System V segments at most (kernel.shmmni)",
            number(sysv_max_segments),
        ),
        (
            "System V segment size at most (kernel.shmmax)",
            size(sysv_max_segment_bytes),
        ),
        (
            "System V pages in all segments at most (kernel.shmall)",
            match sysv_max_total_pages {
                Some(pages) => format!("{pages} pages of {page_size} bytes"),
                None => "unknown".to_owned(),
            },
        ),
        ("segment size at least", "1 byte".to_owned()),
        (
            "/dev/shm size (POSIX segments at most, each and together)",
            size(posix_size),
        ),
        ("/dev/shm used", size(posix_used)),
        ("/dev/shm available", size(posix_available)),
    ];
    name_value_lines(&lines)
}

#[derive(Serialize)]
struct LimitsJson<'a> {
    schema_version: u32,
    #[serde(flatten)]
    limits: &'a Limits,
}

/// The totals of one kind of segment, for `ls --summary`.
#[derive(Debug, Default, Serialize)]
struct Totals {
    segments: u64,
    bytes: u64,
    resident_bytes: u64,
    swapped_bytes: u64,
    attachments: u64,
    removed: u64,
}

impl Totals {
    fn add(&mut self, stat: &Stat) {
        self.segments += 1;
        self.bytes += stat.size;
        self.resident_bytes += stat.resident_bytes;
        self.swapped_bytes += stat.swapped_bytes.unwrap_or(0);
        self.attachments += stat.nattch;
        self.removed += u64::from(stat.removed);
    }
}

#[derive(Serialize)]
struct SummaryJson {
    schema_version: u32,
    sysv: Totals,
    posix: Totals,
    rings: u64,
}

/// `ls --summary`, as text or JSON.
fn summary(args: &LsArgs) -> Result<String, CliError> {
    let mut summary = SummaryJson {
        schema_version: SCHEMA_VERSION,
        sysv: Totals::default(),
        posix: Totals::default(),
        rings: shmkit::ring::list()?.len() as u64,
    };
    for stat in shmkit::list()? {
        match stat.kind {
            Kind::SysV => summary.sysv.add(&stat),
            Kind::Posix => summary.posix.add(&stat),
        }
    }
    if args.json {
        return Ok(output::json(&summary));
    }
    let size = |bytes: u64| {
        if args.human {
            human_size(bytes)
        } else {
            format!("{bytes} bytes")
        }
    };
    let mut lines = Vec::new();
    for (kind, totals) in [("System V", &summary.sysv), ("POSIX", &summary.posix)] {
        lines.extend([
            (format!("{kind} segments"), totals.segments.to_string()),
            (format!("{kind} allocated"), size(totals.bytes)),
            (format!("{kind} resident"), size(totals.resident_bytes)),
            (
                format!("{kind} attachments"),
                totals.attachments.to_string(),
            ),
            (
                format!("{kind} removed, still attached"),
                totals.removed.to_string(),
            ),
        ]);
        if kind == "System V" {
            lines.push((format!("{kind} swapped"), size(totals.swapped_bytes)));
        }
    }
    lines.push(("message rings".to_owned(), summary.rings.to_string()));
    Ok(name_value_lines(&lines))
}

/// `name: value` lines, the values aligned.
fn name_value_lines<N: AsRef<str>>(lines: &[(N, String)]) -> String {
    let width = lines
        .iter()
        .map(|(n, _)| n.as_ref().len())
        .max()
        .unwrap_or(0)
        + 1;
    lines
        .iter()
        .map(|(name, value)| format!("{:<width$} {value}\n", format!("{}:", name.as_ref())))
        .collect()
}

/// A time as --time-format says.
fn format_time(time: SystemTime, args: &LsArgs) -> String {
    let seconds = output::epoch_seconds(time);
    match args.time_format {
        TimeFormat::Iso => output::utc_iso8601(seconds),
        TimeFormat::Epoch => seconds.to_string(),
        TimeFormat::Ago => {
            let now = output::epoch_seconds(SystemTime::now());
            ago(now.saturating_sub(seconds))
        }
    }
}

/// `42s`, `7m`, `3h`, `12d`: the largest whole unit.
fn ago(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Bytes in powers of 1024 as `ls -h` shows them: `512`, `4.0K`, `64K`,
/// `1.5G`: one decimal below 10, none above.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_are_powers_of_1024() {
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(4096), "4.0K");
        assert_eq!(human_size(65536), "64K");
        assert_eq!(human_size(1536 << 20), "1.5G");
        assert_eq!(human_size(u64::MAX), "16E");
    }

    #[test]
    fn raw_cells_escape_what_would_split_them() {
        assert_eq!(raw_cell("/orders"), "/orders");
        assert_eq!(raw_cell("/a\tb\nc"), r"/a\x09b\x0ac");
        assert_eq!(raw_cell(r"/back\slash"), r"/back\\slash");
    }

    #[test]
    fn ago_takes_the_largest_whole_unit() {
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(60), "1m");
        assert_eq!(ago(7200), "2h");
        assert_eq!(ago(86_400 * 3 + 5), "3d");
    }
}
