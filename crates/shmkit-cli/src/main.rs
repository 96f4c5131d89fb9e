//! `shmkit`: inspect and use System V and POSIX shared memory from the shell.
//!
//! This binary is thin: it parses the command line ([`args`]), calls the
//! `shmkit` library ([`commands`], [`ls`], [`top`], [`ring`], [`demo`];
//! `shmkit bench` is the `shmkit_bench` crate), and formats what comes
//! back ([`output`]); [`generate`] makes the completions, the manual page
//! and the help from [`args`]. Errors print as `shmkit: <message>`
//! with the exit status documented in `--help` ([`error`]).

mod args;
mod arrival;
#[cfg(feature = "bridge")]
mod bridge;
mod commands;
mod demo;
mod error;
mod gc;
mod generate;
mod ls;
mod output;
mod ring;
mod service;
mod signals;
mod top;
mod topic;
mod users;

use std::io;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return generate::report_clap(&err),
    };
    let code = match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => err.report(),
    };
    // A command stopped by a signal has cleaned up; now it dies of it.
    signals::reraise();
    code
}

fn run(command: Command) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match command {
        Command::Ls(args) => ls::ls(&args, &mut out),
        Command::Stat { target, json } => commands::stat(&target, json, &mut out),
        Command::Create {
            key,
            size,
            mode,
            exclusive,
        } => commands::create(&key, size, mode, exclusive, &mut out),
        Command::Rm(args) => commands::rm(&args, &mut out),
        Command::Write { target, offset } => commands::write(&target, offset, &mut ring::stdin()?),
        Command::Top(args) => top::run(&args, &mut out),
        Command::Completions { shell } => generate::completions(shell, &mut out),
        Command::Man { dir } => generate::man(dir.as_deref(), &mut out),
        Command::Help { command } => generate::help(&command, &mut out),
        Command::Read {
            target,
            offset,
            len,
        } => commands::read(&target, offset, len, &mut out),
        Command::Send {
            name,
            capacity,
            timeout,
            wait_for_consumer,
            raw,
            sharing,
        } => {
            let options = ring::SendOptions {
                timeout,
                wait_for_consumer,
                raw,
            };
            let ring = ring::options(capacity, &sharing);
            ring::send(&name, ring, &options, ring::stdin()?)
        }
        Command::Recv {
            name,
            capacity,
            count,
            timeout,
            raw,
            sharing,
        } => {
            let options = ring::RecvOptions {
                count,
                timeout,
                raw,
            };
            ring::recv(
                &name,
                &ring::options(capacity, &sharing),
                &options,
                &mut out,
            )
        }
        Command::Gc { names, force } => {
            let (services, others): (Vec<String>, Vec<String>) =
                names.iter().cloned().partition(|n| service::is_service(n));
            let others_found = if names.is_empty() || !others.is_empty() {
                topic::gc_rings_and_topics(&others, force, &mut out)
            } else {
                Ok(0)
            };
            let services_found = if names.is_empty() || !services.is_empty() {
                service::gc(&services, force, &mut out)
            } else {
                Ok(0)
            };
            // After a scan that failed, "nothing to collect" would not be
            // known: the summary only follows whole scans.
            let found = others_found? + services_found?;
            gc::summary(&names, force, found, &mut out)
        }
        Command::Serve {
            name,
            command,
            sharing,
        } => service::serve(&name, &command, &sharing),
        Command::Call {
            name,
            requests,
            timeout,
            sharing,
        } => service::call(
            &name,
            &requests,
            timeout,
            &sharing,
            ring::stdin()?,
            &mut out,
        ),
        Command::Pub {
            name,
            lossy,
            history,
            capacity,
            sharing,
        } => {
            let options = topic::PubOptions {
                lossy,
                history,
                capacity,
                sharing,
            };
            topic::publish(&name, &options, ring::stdin()?)
        }
        Command::Sub {
            name,
            count,
            timeout,
            no_history,
            sharing,
        } => {
            let options = topic::SubOptions {
                count,
                timeout,
                no_history,
                sharing,
            };
            topic::subscribe(&name, &options, &mut out)
        }
        #[cfg(feature = "bridge")]
        Command::Bridge {
            name,
            listen,
            connect,
            lossy,
        } => bridge::run(&name, &listen, &connect, lossy),
        Command::Bench(args) => Ok(shmkit_bench::run(&args, &mut out)?),
        Command::BenchPeer { job } => Ok(shmkit_bench::run_peer(&job, &mut out)?),
        Command::Demo { messages } => demo::run(messages, &mut out),
        Command::DemoChild { id } => demo::child(id, &mut io::stdin().lock(), &mut out),
        Command::DemoProducer { ring, messages } => {
            demo::ring::producer(&ring, messages, &mut io::stdin().lock(), &mut out)
        }
        Command::DemoConsumer { ring, messages } => {
            demo::ring::consumer(&ring, messages, &mut io::stdin().lock(), &mut out)
        }
    }?;
    io::Write::flush(&mut out).map_err(CliError::stdout)
}
