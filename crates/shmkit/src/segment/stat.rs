//! What the kernel reports about segments, and the list of all of them.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Key, Mode, PosixName};
use crate::error::{Error, Pid, Result};
use crate::sys::procfs::{self, Backing, ProcMapping, SysvRow};
use crate::sys::{posix, sysv};

/// Which kernel object backs a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A System V segment (`shmget`).
    SysV,
    /// A POSIX segment (`shm_open`, a file in `/dev/shm`).
    Posix,
}

/// The status of a segment: all of `shmid_ds`/`ipc_perm` for System V, the
/// file's status for POSIX, and both kinds' resident size and attachers.
///
/// Fields that one kind does not have are `None` for it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stat {
    /// System V or POSIX.
    pub kind: Kind,
    /// The key as the kernel reports it now (a removed System V segment's is
    /// 0), or the POSIX name.
    pub key: Key,
    /// The System V id.
    pub id: Option<i32>,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: Mode,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid (System V).
    pub cuid: Option<u32>,
    /// Creator gid (System V).
    pub cgid: Option<u32>,
    /// Creator's pid (System V).
    pub cpid: Option<Pid>,
    /// Pid of the last attach or detach (System V).
    pub lpid: Option<Pid>,
    /// Number of attachments: the kernel's count for System V, the number of
    /// mappings found in `/proc/*/maps` for POSIX.
    pub nattch: u64,
    /// Last attach (System V) or access (POSIX); `None` if never.
    pub atime: Option<SystemTime>,
    /// Last detach (System V); `None` if never.
    pub dtime: Option<SystemTime>,
    /// Last change of the permissions (System V: also creation).
    pub ctime: Option<SystemTime>,
    /// Last modification of the contents (POSIX).
    pub mtime: Option<SystemTime>,
    /// Whether removal was asked and waits for the last detach.
    pub removed: bool,
    /// Whether the pages are locked in memory (`SHM_LOCK`, System V).
    pub locked: bool,
    /// Bytes resident in memory (System V), or bytes allocated in the tmpfs
    /// (POSIX, which counts swapped pages too).
    pub resident_bytes: u64,
    /// Bytes swapped out (System V).
    pub swapped_bytes: Option<u64>,
    /// The mappings of this segment in every process whose `/proc/PID/maps`
    /// this process may read (all of them as root; its own user's otherwise).
    pub attachers: Vec<Mapping>,
}

/// One process's mapping of a segment, from `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mapping {
    /// The process id.
    pub pid: Pid,
    /// The command name (`/proc/PID/comm`).
    pub command: String,
    /// The first address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Access as the kernel prints it: `rw-s` or `r--s`.
    pub perms: String,
}

impl From<ProcMapping> for Mapping {
    fn from(m: ProcMapping) -> Mapping {
        Mapping {
            pid: m.pid,
            command: m.command,
            start: m.start,
            end: m.end,
            perms: m.perms,
        }
    }
}

/// Every segment on the machine: each System V segment in this IPC namespace
/// (from `/proc/sysvipc/shm`, whoever created it) and each POSIX segment in
/// `/dev/shm`, System V first, in the kernel's order, then POSIX by name.
///
/// POSIX semaphores, which glibc also keeps in `/dev/shm` (as `sem.NAME`),
/// are not segments and are left out, as is anything there that is not a
/// regular file (symlinks are not followed).
///
/// # Example
///
/// ```
/// use shmkit::{list, Key, Mode, Segment};
///
/// let segment = Segment::create(&Key::PRIVATE, 100, Mode::new(0o600))?;
/// let all = list()?;
/// assert!(all.iter().any(|s| s.id == segment.id()));
/// segment.remove()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn list() -> Result<Vec<Stat>> {
    let mappings = shared_mappings()?;
    let rows = procfs::sysv_rows().map_err(|e| os("reading /proc/sysvipc/shm", e))?;
    let mut all: Vec<Stat> = rows
        .into_iter()
        .map(|row| sysv_from_row(row, &mappings))
        .collect();

    let dir = std::fs::read_dir(posix::SHM_DIR).map_err(|e| os("listing /dev/shm", e))?;
    let mut posix_stats = Vec::new();
    for entry in dir.flatten() {
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if file_name.starts_with("sem.") {
            continue;
        }
        let (Ok(meta), Ok(name)) = (entry.metadata(), PosixName::new(&format!("/{file_name}")))
        else {
            continue; // gone meanwhile, or a name shm_open could never make
        };
        // `DirEntry::metadata` does not follow symlinks: a symlink, FIFO,
        // socket or directory put at a name is no segment, and is skipped
        // without being opened.
        if !meta.is_file() {
            continue;
        }
        posix_stats.push(posix_from_meta(name, &FileStatus::from(&meta), &mappings));
    }
    posix_stats.sort_by_key(|s| s.key.to_string());
    all.extend(posix_stats);
    Ok(all)
}

pub(super) fn sysv_row(id: i32) -> Result<SysvRow> {
    procfs::sysv_rows()
        .map_err(|e| os("reading /proc/sysvipc/shm", e))?
        .into_iter()
        .find(|row| row.id == id)
        .ok_or_else(|| Error::NotFound {
            segment: format!("id {id}"),
        })
}

pub(super) fn sysv_stat(id: i32) -> Result<Stat> {
    let row = sysv_row(id)?;
    Ok(sysv_from_row(row, &shared_mappings()?))
}

pub(super) fn posix_stat(name: PosixName, st: &posix::Stat) -> Result<Stat> {
    let status = FileStatus {
        size: st.st_size as u64,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        nlink: st.st_nlink,
        inode: st.st_ino,
        blocks: st.st_blocks as u64,
        atime: st.st_atime,
        mtime: st.st_mtime,
        ctime: st.st_ctime,
    };
    Ok(posix_from_meta(name, &status, &shared_mappings()?))
}

fn shared_mappings() -> Result<Vec<ProcMapping>> {
    procfs::shared_mappings().map_err(|e| os("reading /proc", e))
}

fn os(context: &str, source: std::io::Error) -> Error {
    Error::Os {
        context: context.to_owned(),
        source,
    }
}

fn time(seconds: i64) -> Option<SystemTime> {
    u64::try_from(seconds)
        .ok()
        .filter(|&s| s != 0)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

fn sysv_from_row(row: SysvRow, mappings: &[ProcMapping]) -> Stat {
    let attachers = mappings
        .iter()
        .filter(|m| m.backing == Backing::Sysv { id: row.id })
        .cloned()
        .map(Mapping::from)
        .collect();
    Stat {
        kind: Kind::SysV,
        key: Key::SysV(row.key),
        id: Some(row.id),
        size: row.size,
        mode: Mode::new(row.perms),
        uid: row.uid,
        gid: row.gid,
        cuid: Some(row.cuid),
        cgid: Some(row.cgid),
        cpid: Some(row.cpid),
        lpid: Some(row.lpid),
        nattch: row.nattch,
        atime: time(row.atime),
        dtime: time(row.dtime),
        ctime: time(row.ctime),
        mtime: None,
        removed: row.perms & sysv::SHM_DEST != 0,
        locked: row.perms & SHM_LOCKED != 0,
        resident_bytes: row.rss,
        swapped_bytes: Some(row.swap),
        attachers,
    }
}

/// `SHM_LOCKED` in `shm_perm.mode`: the segment was `SHM_LOCK`ed.
const SHM_LOCKED: u32 = 0o2000;

/// The parts of a file's status a POSIX segment's [`Stat`] needs, from either
/// `fstat` of a handle or the metadata of a `/dev/shm` entry.
struct FileStatus {
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    inode: u64,
    blocks: u64,
    atime: i64,
    mtime: i64,
    ctime: i64,
}

impl From<&std::fs::Metadata> for FileStatus {
    fn from(meta: &std::fs::Metadata) -> FileStatus {
        FileStatus {
            size: meta.size(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: meta.nlink(),
            inode: meta.ino(),
            blocks: meta.blocks(),
            atime: meta.atime(),
            mtime: meta.mtime(),
            ctime: meta.ctime(),
        }
    }
}

fn posix_from_meta(name: PosixName, st: &FileStatus, mappings: &[ProcMapping]) -> Stat {
    let attachers: Vec<Mapping> = mappings
        .iter()
        .filter(|m| m.backing == Backing::Posix { inode: st.inode })
        .cloned()
        .map(Mapping::from)
        .collect();
    Stat {
        kind: Kind::Posix,
        key: Key::Posix(name),
        id: None,
        size: st.size,
        mode: Mode::new(st.mode),
        uid: st.uid,
        gid: st.gid,
        cuid: None,
        cgid: None,
        cpid: None,
        lpid: None,
        nattch: attachers.len() as u64,
        atime: time(st.atime),
        dtime: None,
        ctime: time(st.ctime),
        mtime: time(st.mtime),
        removed: st.nlink == 0,
        locked: false,
        resident_bytes: st.blocks * 512,
        swapped_bytes: None,
        attachers,
    }
}
