//! What the kernel reports in `/proc` about shared memory: the System V table
//! (`/proc/sysvipc/shm`), its limits (`/proc/sys/kernel/shm*`) and every
//! process's mappings (`/proc/PID/maps`).
//!
//! See [proc(5)](https://man7.org/linux/man-pages/man5/proc.5.html).

use std::fs;
use std::io;

/// One row of `/proc/sysvipc/shm`: the kernel's `shmid_kernel` as any user
/// may see it, whoever created the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysvRow {
    /// `key_t`'s 32 bits (the file prints it signed); 0 (`IPC_PRIVATE`)
    /// once the segment is marked for removal.
    pub key: u32,
    /// The segment id.
    pub id: i32,
    /// `shm_perm.mode`: the 9 permission bits plus `SHM_DEST` and `SHM_LOCKED`.
    pub perms: u32,
    /// Size in bytes.
    pub size: u64,
    /// Creator's pid.
    pub cpid: crate::Pid,
    /// Pid of the last `shmat`/`shmdt`.
    pub lpid: crate::Pid,
    /// Number of attachments.
    pub nattch: u64,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// Last attach, detach and change, in seconds since the epoch (0: never).
    pub atime: i64,
    /// Last detach.
    pub dtime: i64,
    /// Last change.
    pub ctime: i64,
    /// Bytes resident in memory.
    pub rss: u64,
    /// Bytes in swap.
    pub swap: u64,
}

/// Reads every row of `/proc/sysvipc/shm`.
pub fn sysv_rows() -> io::Result<Vec<SysvRow>> {
    let text = fs::read_to_string("/proc/sysvipc/shm")?;
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(parse_sysv_row)
        .collect()
}

fn parse_sysv_row(line: &str) -> io::Result<SysvRow> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected line in /proc/sysvipc/shm: {line:?}"),
        )
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 16 {
        return Err(bad());
    }
    fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
        s.parse().ok()
    }
    (|| {
        Some(SysvRow {
            key: num::<i32>(f[0])? as u32,
            id: num(f[1])?,
            perms: u32::from_str_radix(f[2], 8).ok()?,
            size: num(f[3])?,
            cpid: num(f[4])?,
            lpid: num(f[5])?,
            nattch: num(f[6])?,
            uid: num(f[7])?,
            gid: num(f[8])?,
            cuid: num(f[9])?,
            cgid: num(f[10])?,
            atime: num(f[11])?,
            dtime: num(f[12])?,
            ctime: num(f[13])?,
            rss: num(f[14])?,
            swap: num(f[15])?,
        })
    })()
    .ok_or_else(bad)
}

/// The largest System V segment the kernel will create, `kernel.shmmax`.
pub fn sysv_max_size() -> io::Result<u64> {
    read_number("/proc/sys/kernel/shmmax")
}

/// The most pages all System V segments together may have, `kernel.shmall`.
/// (Each segment counts its size rounded up to whole pages.)
pub fn sysv_max_total_pages() -> io::Result<u64> {
    read_number("/proc/sys/kernel/shmall")
}

/// The most System V segments there may be at once, `kernel.shmmni`.
pub fn sysv_max_segments() -> io::Result<u64> {
    read_number("/proc/sys/kernel/shmmni")
}

fn read_number(path: &str) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not a number: {text:?}"),
        )
    })
}

/// When the process started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`). With the pid it names one process for good: a pid is
/// reused only by a process that starts later.
pub fn process_start_time(pid: u32) -> io::Result<u64> {
    read_stat(pid).map(|(_, start)| start)
}

/// The start time of `pid` if it is running: `None` if it is gone, a
/// zombie (it will never act again), or unreadable.
pub fn running_start_time(pid: u32) -> Option<u64> {
    match read_stat(pid) {
        Ok((state, start)) if state != 'Z' => Some(start),
        _ => None,
    }
}

/// The state letter (field 3) and start time (field 22) of
/// `/proc/PID/stat`.
fn read_stat(pid: u32) -> io::Result<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself, so count fields from the last ')'.
    let mut fields = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace());
    let state = fields
        .as_mut()
        .and_then(|f| f.next())
        .and_then(|f| f.chars().next());
    let start = fields
        .as_mut()
        .and_then(|f| f.nth(18))
        .and_then(|field| field.parse().ok());
    match (state, start) {
        (Some(state), Some(start)) => Ok((state, start)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat: {stat:?}"),
        )),
    }
}

/// The backing object of a shared mapping, as `/proc/PID/maps` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// `/SYSVkkkkkkkk (deleted)`, whose inode number is the segment id.
    Sysv {
        /// The segment id.
        id: i32,
    },
    /// A file under `/dev/shm`, with its inode number.
    Posix {
        /// The inode of the file.
        inode: u64,
    },
}

/// One shared-memory mapping of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcMapping {
    /// The process.
    pub pid: crate::Pid,
    /// Its command name (`/proc/PID/comm`).
    pub command: String,
    /// First address of the mapping.
    pub start: u64,
    /// One past its last address.
    pub end: u64,
    /// `rwxs`/`rwxp` flags as the kernel prints them.
    pub perms: String,
    /// What is mapped.
    pub backing: Backing,
}

/// Scans `/proc/*/maps` for mappings of System V segments and of files in
/// `/dev/shm`.
///
/// Processes whose maps this process may not read (another user's, unless
/// running as root) and processes that exit during the scan are skipped.
pub fn shared_mappings() -> io::Result<Vec<ProcMapping>> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<crate::Pid>().ok())
        else {
            continue;
        };
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        let mut command = None;
        for line in maps.lines() {
            let Some((start, end, perms, backing)) = parse_maps_line(line) else {
                continue;
            };
            let command = command.get_or_insert_with(|| {
                fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default()
            });
            found.push(ProcMapping {
                pid,
                command: command.clone(),
                start,
                end,
                perms: perms.to_owned(),
                backing,
            });
        }
    }
    Ok(found)
}

/// Whether process `pid` maps the segment `backing`. If its maps cannot be
/// read (another user's process as non-root, or one outside this
/// container), it is assumed to.
pub fn maps(pid: u32, backing: &Backing) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(maps) => maps
            .lines()
            .any(|line| parse_maps_line(line).is_some_and(|(_, _, _, b)| b == *backing)),
        Err(err) => err.kind() != io::ErrorKind::NotFound,
    }
}

/// How many mappings of the segment `backing` process `pid` has (lines of
/// `/proc/PID/maps`; one per attachment unless a mapping was split).
pub fn mapping_count(pid: u32, backing: &Backing) -> io::Result<u64> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(maps
        .lines()
        .filter(|line| parse_maps_line(line).is_some_and(|(_, _, _, b)| b == *backing))
        .count() as u64)
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid`): two
/// processes see each other's pids only if these are equal.
pub fn pid_namespace() -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata("/proc/self/ns/pid")?.ino())
}

/// Parses `start-end perms offset dev inode path` for shared-memory paths.
fn parse_maps_line(line: &str) -> Option<(u64, u64, &str, Backing)> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let path = fields.next()?.trim_start();
    let backing = if path.starts_with("/SYSV") {
        Backing::Sysv {
            id: i32::try_from(inode).ok()?,
        }
    } else if path.starts_with("/dev/shm/") {
        Backing::Posix { inode }
    } else {
        return None;
    };
    let (start, end) = range.split_once('-')?;
    Some((
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
        perms,
        backing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sysv_row() {
        let line = "      4660      32769   1644                  4096 12345 12346      2     0     0     0     0 1700000000 1700000001 1700000002                  4096                     0";
        let row = parse_sysv_row(line).unwrap();
        assert_eq!(row.key, 4660);
        assert_eq!(row.id, 32769);
        assert_eq!(row.perms, 0o1644);
        assert_eq!(row.size, 4096);
        assert_eq!((row.cpid, row.lpid, row.nattch), (12345, 12346, 2));
        assert_eq!(
            (row.atime, row.dtime, row.ctime),
            (1700000000, 1700000001, 1700000002)
        );
        assert_eq!((row.rss, row.swap), (4096, 0));
    }

    #[test]
    fn reads_this_process_start_time() {
        let ours = process_start_time(std::process::id()).unwrap();
        assert!(ours > 0);
        assert_eq!(process_start_time(std::process::id()).unwrap(), ours);
        assert!(process_start_time(u32::MAX).is_err());
        assert_eq!(running_start_time(std::process::id()), Some(ours));
        assert_eq!(running_start_time(u32::MAX), None);
    }

    #[test]
    fn reads_this_process_pid_namespace() {
        let ns = pid_namespace().unwrap();
        assert!(ns > 0);
        let path = std::fs::read_link("/proc/self/ns/pid").unwrap();
        assert_eq!(path.to_str().unwrap(), format!("pid:[{ns}]"));
    }

    #[test]
    fn rejects_a_short_row() {
        assert!(parse_sysv_row("1 2 3").is_err());
    }

    #[test]
    fn parses_maps_lines() {
        let sysv = "7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 32769                      /SYSV00001234 (deleted)";
        assert_eq!(
            parse_maps_line(sysv),
            Some((
                0x7f1c2a000000,
                0x7f1c2a001000,
                "rw-s",
                Backing::Sysv { id: 32769 }
            ))
        );
        let posix = "7f1c2b000000-7f1c2b002000 r--s 00000000 00:19 77                         /dev/shm/ring (deleted)";
        assert_eq!(
            parse_maps_line(posix),
            Some((
                0x7f1c2b000000,
                0x7f1c2b002000,
                "r--s",
                Backing::Posix { inode: 77 }
            ))
        );
        let lib = "7f1c2c000000-7f1c2c001000 r-xp 00000000 08:01 1234 /usr/lib/libc.so.6";
        assert_eq!(parse_maps_line(lib), None);
        assert_eq!(
            parse_maps_line("7f1c2c000000-7f1c2c001000 rw-p 00000000 00:00 0"),
            None
        );
    }
}
