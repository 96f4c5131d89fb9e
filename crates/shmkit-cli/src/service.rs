//! The service subcommands: `serve` (a command's line-by-line standard
//! input and output as a service), `call` (requests from the command line
//! or standard input, one response per line), and the service parts of
//! `ls`, `stat` and `gc`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::service::{self, Client, Options, Server, ServiceStatus};
use shmkit::Mode;

use crate::args::Sharing;
use crate::arrival;
use crate::error::CliError;
use crate::output;
use crate::ring;
use crate::signals;

/// The mode, group and trusted owners of `--mode`, `--group` and
/// `--trust`, as for rings and topics.
fn shared(sharing: &Sharing) -> Options {
    let mut options = Options::default().trust(ring::trust(sharing));
    if let Some(mode) = sharing.mode {
        options = options.mode(Mode::new(mode));
    }
    match sharing.group {
        Some(gid) => options.group(gid),
        None => options,
    }
}

fn opening(name: &str, end: &str, err: shmkit::Error) -> CliError {
    match err {
        shmkit::Error::InvalidArgument(_) => CliError::Usage(err.to_string()),
        shmkit::Error::UntrustedOwner { uid, gid, .. } => ring::untrusted(
            "service",
            name,
            end,
            &format!("{}{name}", service::SEGMENT_PREFIX),
            uid,
            gid,
        ),
        shmkit::Error::InUse { pid, .. } => CliError::Message(format!(
            "service {name} already has a server: pid {pid}, still running"
        )),
        other => other.into(),
    }
}

/// `shmkit serve NAME -- COMMAND [ARGS...]`: runs COMMAND once; writes each
/// request (a newline in it becomes a space) as a line to its standard
/// input, and answers with the next line of its standard output. Stops at
/// a stop signal (closing COMMAND's input, and waiting for it), and fails
/// once COMMAND exits or closes its output: the server closes, so every
/// pending call fails.
pub fn serve(name: &str, command: &[String], sharing: &Sharing) -> Result<(), CliError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::Usage("serve needs a COMMAND after --".to_owned()))?;
    let mut server =
        Server::open_with(name, &shared(sharing)).map_err(|e| opening(name, "server", e))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| CliError::Io {
            context: format!("starting {program}"),
            source,
        })?;
    signals::catch();
    let mut input = child.stdin.take().expect("piped");
    // COMMAND's lines arrive on a channel, so that a wait for one can also
    // watch for signals and for COMMAND's exit.
    let lines = read_lines(child.stdout.take().expect("piped"));
    let result = serve_lines(&mut server, &mut child, &mut input, &lines);
    drop(input);
    match result {
        Ok(()) => {
            // A stop signal: COMMAND sees the end of its input.
            let _ = child.wait();
            Ok(())
        }
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(err)
        }
    }
}

/// Each line of `output`, in order, on the returned channel; it ends when
/// the output does.
fn read_lines(output: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        let mut output = BufReader::new(output);
        loop {
            let mut line = Vec::new();
            match output.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if send.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    lines
}

fn serve_lines(
    server: &mut Server,
    child: &mut Child,
    input: &mut ChildStdin,
    lines: &mpsc::Receiver<Vec<u8>>,
) -> Result<(), CliError> {
    let name = server.name().to_owned();
    let program_exited = |child: &mut Child, why: &str| {
        let status = child
            .try_wait()
            .ok()
            .flatten()
            .map_or("is still running".to_owned(), |s| format!("exited ({s})"));
        CliError::Message(format!(
            "the command {why} and {status}: service {name} is closed, its pending calls fail"
        ))
    };
    let max = server.max_response();
    let mut line = Vec::new();
    while signals::caught().is_none() {
        let request = match server.recv_request_timeout(signals::SLICE) {
            Ok(request) => request,
            Err(shmkit::Error::Timeout { .. }) => {
                if child.try_wait().ok().flatten().is_some() {
                    return Err(program_exited(child, "ended"));
                }
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        let caller = request.caller();
        line.clear();
        line.extend(request.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        drop(request);
        line.push(b'\n');
        if input.write_all(&line).and_then(|()| input.flush()).is_err() {
            return Err(program_exited(child, "stopped reading its input"));
        }
        let answer = loop {
            match lines.recv_timeout(signals::SLICE) {
                Ok(answer) => break answer,
                Err(mpsc::RecvTimeoutError::Timeout) if signals::caught().is_some() => {
                    return Ok(())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(program_exited(child, "closed its output"))
                }
            }
        };
        if answer.len() > max {
            return Err(CliError::Message(format!(
                "the command answered with a line of {} bytes, longer than the {max} bytes \
                 of the largest response service {name} carries",
                answer.len(),
            )));
        }
        server.reply(caller, &answer)?;
    }
    Ok(())
}

/// `shmkit call NAME [REQUEST...]`: each request (each argument, or each
/// line of `input` when there are none), one at a time, with its response
/// printed on its own line.
pub fn call(
    name: &str,
    requests: &[String],
    timeout: Option<Duration>,
    sharing: &Sharing,
    input: impl Read + AsFd,
    out: impl Write,
) -> Result<(), CliError> {
    let mut client =
        Client::connect_with(name, &shared(sharing)).map_err(|e| opening(name, "client", e))?;
    signals::catch();
    let mut out = BufWriter::new(out);
    if !requests.is_empty() {
        for request in requests {
            if !call_one(&mut client, request.as_bytes(), timeout, &mut out)? {
                break;
            }
        }
        return out.flush().map_err(CliError::stdout);
    }
    let mut input = BufReader::new(signals::StopsOnSignal(input));
    let mut line = Vec::new();
    while signals::caught().is_none() {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) if signals::caught().is_some() => break,
            Err(source) => {
                return Err(CliError::Io {
                    context: "reading standard input".to_owned(),
                    source,
                })
            }
        }
        let request = line.strip_suffix(b"\n").unwrap_or(&line);
        if !call_one(&mut client, request, timeout, &mut out)? {
            break;
        }
    }
    out.flush().map_err(CliError::stdout)
}

/// One call, its response printed; `false` if a stop signal came first.
fn call_one(
    client: &mut Client,
    request: &[u8],
    timeout: Option<Duration>,
    out: &mut impl Write,
) -> Result<bool, CliError> {
    let name = client.name().to_owned();
    let failed = |err: shmkit::Error| match err {
        shmkit::Error::Closed { .. } => CliError::Message(format!(
            "service {name} closed: its server stopped before answering"
        )),
        shmkit::Error::PeerGone { pid, .. } => CliError::Message(format!(
            "the server of service {name} (pid {pid}) died before answering"
        )),
        other => other.into(),
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let call = client.send_request(request).map_err(failed)?;
    // In slices, so that a stop signal is noticed while waiting.
    loop {
        if signals::caught().is_some() {
            return Ok(false);
        }
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(signals::SLICE),
            None => signals::SLICE,
        };
        match client.wait_timeout(&call, slice) {
            Ok(response) => {
                out.write_all(&response)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(CliError::stdout)?;
                return Ok(true);
            }
            Err(shmkit::Error::Timeout { .. }) => {
                // A slice without an answer: if no server has come yet,
                // wait for one without the library's 50 looks a second.
                arrival::wait_for_server(&name, deadline);
                if let (Some(deadline), Some(timeout)) = (deadline, timeout) {
                    if Instant::now() >= deadline {
                        return Err(CliError::Message(format!(
                            "timed out: no answer from service {name} within {} s",
                            timeout.as_secs_f64()
                        )));
                    }
                }
            }
            Err(err) => return Err(failed(err)),
        }
    }
}

/// The `ls` table of services (empty if there are none).
pub fn ls_table(headings: bool) -> Result<String, CliError> {
    let services: Vec<(String, shmkit::Result<ServiceStatus>)> = service::list()?
        .into_iter()
        .map(|name| {
            let status = service::status(&name);
            (name, status)
        })
        .filter(|(_, status)| !matches!(status, Err(shmkit::Error::NotFound { .. })))
        .collect();
    if services.is_empty() {
        return Ok(String::new());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if headings {
        rows.push(
            ["NAME", "SERVER", "CLIENTS", "IN-FLIGHT", "CALLS", "DROPPED"]
                .map(str::to_owned)
                .to_vec(),
        );
    }
    for (name, status) in &services {
        rows.push(match status {
            Ok(s) => vec![
                name.clone(),
                match (s.server, s.closed) {
                    (Some(server), _) if server.alive => server.pid.to_string(),
                    (Some(server), false) => format!("{}(dead)", server.pid),
                    _ => "-".to_owned(),
                },
                format!(
                    "{}/{}",
                    s.clients.iter().filter(|c| c.alive).count(),
                    s.max_clients
                ),
                s.in_flight().to_string(),
                s.received.to_string(),
                s.dropped.to_string(),
            ],
            Err(_) => {
                let mut row = vec![name.clone(), "unreadable".to_owned()];
                row.extend(std::iter::repeat_n("-".to_owned(), 4));
                row
            }
        });
    }
    Ok(format!("\nSERVICES\n{}", output::table(&rows)))
}

/// A service as `stat --json` and `ls --json` show it (docs/JSON.md,
/// "service"): its status, and the calls in flight over all clients.
#[derive(Debug, serde::Serialize)]
pub struct ServiceJson {
    #[serde(flatten)]
    status: ServiceStatus,
    in_flight: u64,
    abandoned: bool,
}

/// The service in segment `stat`, if it names one whose header reads.
pub fn json_in(stat: &shmkit::Stat) -> Option<ServiceJson> {
    let key = stat.key.to_string();
    let status = service::status(key.strip_prefix(service::SEGMENT_PREFIX)?).ok()?;
    Some(ServiceJson {
        in_flight: status.in_flight(),
        abandoned: status.abandoned(),
        status,
    })
}

/// What `stat` adds for a service's segment: its server, clients and
/// counters.
pub fn stat_text(key: &str) -> Option<String> {
    let name = key.strip_prefix(service::SEGMENT_PREFIX)?;
    let s = match service::status(name) {
        Ok(s) => s,
        Err(err) => return Some(format!("service {name}: {err}\n")),
    };
    let server = match (s.server, s.closed) {
        (Some(server), _) if server.alive => format!("pid {}, alive", server.pid),
        (Some(server), false) => format!("pid {}, dead", server.pid),
        (_, true) => "closed".to_owned(),
        _ => "none yet".to_owned(),
    };
    let mut text = format!(
        "service {name}: server {server}; {} requests received, {} answered, {} dropped, \
         {} clients lost\n  slots: {} clients, {} calls in flight each, requests up to {} \
         bytes, responses up to {}\n",
        s.received,
        s.replied,
        s.dropped,
        s.clients_lost,
        s.max_clients,
        s.max_in_flight,
        s.max_request,
        s.max_response
    );
    for c in &s.clients {
        text.push_str(&format!(
            "  client {}: pid {}, {}, {} calls, {} in flight\n",
            c.slot,
            c.pid,
            if c.alive { "alive" } else { "dead" },
            c.calls,
            c.in_flight
        ));
    }
    Some(text)
}

/// Whether `name` is a service's.
pub fn is_service(name: &str) -> bool {
    service::list().is_ok_and(|all| all.iter().any(|s| s == name))
}

/// The service part of `gc`: services nobody will use (only `names`, if
/// given), listed, and with `force` removed.
pub fn gc(names: &[String], force: bool, out: &mut impl Write) -> Result<usize, CliError> {
    crate::gc::report("service", names, force, service::collect_garbage, out)
}
