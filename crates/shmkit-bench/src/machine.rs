//! The machine the bench runs on, and pinning its two processes to CPUs.

use std::io;

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// What the header says about the machine.
#[derive(Debug)]
pub struct Machine {
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs online (`processor` entries of `/proc/cpuinfo`).
    pub cpus: usize,
    /// The kernel's release and machine, from uname.
    pub kernel: String,
}

impl Machine {
    /// Reads it from `/proc/cpuinfo` and uname.
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |line: &str, name: &str| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        };
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| field(line, "model name"))
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cpus = cpuinfo
            .lines()
            .filter(|line| field(line, "processor").is_some())
            .count()
            .max(1);
        let uname = rustix::system::uname();
        let kernel = format!(
            "{} {} {}",
            uname.sysname().to_string_lossy(),
            uname.release().to_string_lossy(),
            uname.machine().to_string_lossy()
        );
        Machine {
            cpu_model,
            cpus,
            kernel,
        }
    }
}

/// Where the two processes run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// This process on `bench`, every peer on `peer`.
    Pinned { bench: usize, peer: usize },
    /// Not pinned, and why.
    Unpinned(String),
}

impl Pinning {
    /// The peer's CPU, if pinned.
    pub fn peer_cpu(&self) -> Option<usize> {
        match self {
            Pinning::Pinned { peer, .. } => Some(*peer),
            Pinning::Unpinned(_) => None,
        }
    }
}

/// Pins this process to the first CPU it may run on and picks the second
/// for the peers; or says why it cannot.
pub fn pin_pair() -> Pinning {
    let allowed = match sched_getaffinity(None) {
        Ok(allowed) => allowed,
        Err(errno) => return Pinning::Unpinned(format!("sched_getaffinity failed: {errno}")),
    };
    let mut cpus = (0..CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
    let (Some(bench), Some(peer)) = (cpus.next(), cpus.next()) else {
        return Pinning::Unpinned("only one CPU is available".to_owned());
    };
    match pin_to(bench) {
        Ok(()) => Pinning::Pinned { bench, peer },
        Err(err) => Pinning::Unpinned(format!("sched_setaffinity failed: {err}")),
    }
}

/// Pins this process (its calling thread, the only one) to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    if cpu >= CpuSet::MAX_CPU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("there is no CPU {cpu}"),
        ));
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).map_err(io::Error::from)
}
