//! Two "hosts" on one machine, for the bridge's tests and benchmark: two
//! network namespaces joined by a veth pair, each with a `/dev/shm` of its
//! own (a mount namespace with a fresh tmpfs), so that nothing passes
//! between them except over the network.
//!
//! Each host is held by a process (`cat`, ended by closing its standard
//! input) that `ip netns exec` started in the host's network namespace
//! after mounting the tmpfs; programs run in the host through `nsenter`
//! into that process's namespaces, so their pid is the program's own. The
//! names are this process's id and a counter; dropping [`Hosts`] kills
//! every program started in them and deletes the namespaces (and with them
//! the veth pair and the tmpfs), even when a test panics.
//! Shared by `crates/shmkit-cli/tests/bridge.rs` and
//! `crates/shmkit-bridge/examples/bench.rs` (each includes this file).

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Whether this process can make namespaces (it runs as root).
pub fn root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether `pid` is a live child of this process (so a pid that was
/// reaped and reused is never killed).
fn our_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After the command name in parentheses: state, then the parent's pid.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after.split_whitespace().nth(1) == Some(&std::process::id().to_string())
}

/// Two hosts: namespaces `names[0]` and `names[1]` at `addresses`.
pub struct Hosts {
    pub names: [String; 2],
    pub addresses: [&'static str; 2],
    holders: Vec<Child>,
    /// Pids of the programs started in the hosts, killed on drop.
    started: Mutex<Vec<u32>>,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let status = Command::new("ip").args(args).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {} failed: {status}",
            args.join(" ")
        )))
    }
}

impl Hosts {
    /// Makes the two hosts (as root).
    pub fn new() -> io::Result<Hosts> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id());
        let names = [format!("shmkb{tag}a"), format!("shmkb{tag}b")];
        let veths = [format!("skb{tag}a"), format!("skb{tag}b")];
        // The subnet exists only between the two namespaces, so every
        // pair of hosts may use the same one.
        let addresses = ["10.213.7.1", "10.213.7.2"];
        let mut hosts = Hosts {
            names: names.clone(),
            addresses,
            holders: Vec::new(),
            started: Mutex::new(Vec::new()),
        };
        for name in &names {
            ip(&["netns", "add", name])?;
        }
        ip(&[
            "link", "add", &veths[0], "type", "veth", "peer", "name", &veths[1],
        ])?;
        for i in 0..2 {
            ip(&["link", "set", &veths[i], "netns", &names[i]])?;
            let address = format!("{}/24", addresses[i]);
            ip(&["-n", &names[i], "addr", "add", &address, "dev", &veths[i]])?;
            ip(&["-n", &names[i], "link", "set", &veths[i], "up"])?;
            ip(&["-n", &names[i], "link", "set", "lo", "up"])?;
            let mut holder = Command::new("ip")
                .args(["netns", "exec", &names[i], "unshare", "--mount"])
                .args(["--propagation", "private", "sh", "-c"])
                .arg("mount -t tmpfs -o size=512m shmkit-test /dev/shm && echo ready && exec cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let mut line = String::new();
            BufReader::new(holder.stdout.take().expect("piped")).read_line(&mut line)?;
            hosts.holders.push(holder);
            if line.trim() != "ready" {
                return Err(io::Error::other(format!(
                    "host {}: mounting a tmpfs on /dev/shm failed",
                    names[i]
                )));
            }
        }
        Ok(hosts)
    }

    /// `program` to run in host `host` (0 or 1).
    pub fn command(&self, host: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.holders[host].id().to_string(), "-m", "-n", "--"])
            .arg(program);
        command
    }

    /// Starts `command` (from [`Hosts::command`]); it is killed when the
    /// hosts are dropped.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        let child = command.spawn()?;
        self.started.lock().expect("pids").push(child.id());
        Ok(child)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for pid in self.started.lock().expect("pids").drain(..) {
            if !our_child(pid) {
                continue;
            }
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        for holder in &mut self.holders {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        for name in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}
