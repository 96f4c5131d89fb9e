//! The topic subcommands: `pub` (standard input into a topic, one message
//! per line), `sub` (a topic to standard output), and the topic parts of
//! `ls`, `stat` and `gc`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use shmkit::topic::{
    self, Options, Policy, Publisher, PublisherStatus, Subscriber, SubscriberStatus, TopicStatus,
};
use shmkit::Mode;

use crate::args::Sharing;
use crate::arrival;
use crate::error::CliError;
use crate::output;
use crate::ring;
use crate::signals;

/// How `pub` creates a topic (if it does); what is given must match an
/// existing topic.
#[derive(Debug)]
pub struct PubOptions {
    /// Drop the oldest messages instead of waiting for slow subscribers.
    pub lossy: bool,
    /// Messages per publisher kept for late subscribers (none if not given).
    pub history: Option<u32>,
    /// Bytes per publisher lane.
    pub capacity: Option<u64>,
    /// Who may use a topic this command creates, and whose it joins.
    pub sharing: Sharing,
}

/// `shmkit pub TOPIC`: one message per line of `input`, then closes this
/// publisher's stream.
pub fn publish(name: &str, options: &PubOptions, input: impl Read + AsFd) -> Result<(), CliError> {
    let mut topic = shared(Options::default(), &options.sharing);
    if let Some(messages) = options.history {
        topic = topic.history(messages);
    }
    if options.lossy {
        topic = topic.policy(Policy::DropOldest);
    }
    if let Some(bytes) = options.capacity {
        topic = topic.capacity(bytes);
    }
    // Closed only once the input is all published (or, below, after a
    // failure with nobody subscribed): a stream cut short by an error or a
    // panic must not look whole to a subscriber.
    let mut publisher = std::mem::ManuallyDrop::new(
        Publisher::open_with(name, &topic).map_err(|e| opening(name, "publisher", e))?,
    );
    let wanted = if options.lossy {
        Policy::DropOldest
    } else {
        Policy::Block
    };
    if publisher.policy() != wanted {
        eprintln!(
            "shmkit: topic {name} already exists with policy {:?}: publishing with that",
            publisher.policy()
        );
    }
    signals::catch();
    match publish_lines(&mut publisher, name, input) {
        Ok(()) => {
            std::mem::ManuallyDrop::into_inner(publisher).close();
            Ok(())
        }
        Err(err) => {
            // With a live subscriber, not closed, as `send` leaves a ring it
            // failed on: never dropped, the publisher's lock goes with this
            // process, which exits now, and the subscribers learn the
            // stream was cut short (`PeerGone`) instead of seeing it end.
            // With none, closed: a topic keeps nothing for a subscriber to
            // come, and an unclosed publisher would leave a dead one that
            // the next `sub` took for this stream's end.
            let subscribed = shmkit::topic::status(name)
                .is_ok_and(|status| status.subscribers.iter().any(|s| s.alive));
            if !subscribed {
                std::mem::ManuallyDrop::into_inner(publisher).close();
            }
            Err(err)
        }
    }
}

/// Publishes each line of `input` until its end or a stop signal.
fn publish_lines(
    publisher: &mut Publisher,
    name: &str,
    input: impl Read + AsFd,
) -> Result<(), CliError> {
    let max = publisher.max_message();
    let mut input = BufReader::with_capacity(1 << 20, signals::StopsOnSignal(input));
    let mut line = Vec::new();
    let mut number = 0u64;
    while signals::caught().is_none() {
        line.clear();
        let read = match (&mut input)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(read) => read,
            Err(_) if signals::caught().is_some() => break,
            Err(source) => {
                return Err(CliError::Io {
                    context: "reading standard input".to_owned(),
                    source,
                })
            }
        };
        if read == 0 {
            break;
        }
        number += 1;
        let message = match line.strip_suffix(b"\n") {
            Some(message) => message,
            None if read > max => {
                return Err(CliError::Message(format!(
                    "line {number} of standard input is longer than the {max} bytes of the \
                     largest message topic {name} carries; the lines before it were published, \
                     and the stream is left unfinished (a new topic of a larger `--capacity` \
                     carries longer lines)"
                )))
            }
            None => &line,
        };
        // In slices, so that a stop signal is noticed while waiting.
        loop {
            match publisher.send_timeout(message, signals::SLICE) {
                Ok(()) => break,
                Err(shmkit::Error::Timeout { .. }) if signals::caught().is_none() => {}
                Err(shmkit::Error::Timeout { .. }) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

/// What `sub` prints and when it stops.
#[derive(Debug)]
pub struct SubOptions {
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Fail if one wait for a message lasts longer.
    pub timeout: Option<Duration>,
    /// Skip the retained history.
    pub no_history: bool,
    /// Who may use a topic this command creates, and whose it joins.
    pub sharing: Sharing,
}

/// The mode, group and trusted owners of `--mode`, `--group` and
/// `--trust`, as for rings.
fn shared(topic: Options, sharing: &Sharing) -> Options {
    let mut topic = topic.trust(ring::trust(sharing));
    if let Some(mode) = sharing.mode {
        topic = topic.mode(Mode::new(mode));
    }
    match sharing.group {
        Some(gid) => topic.group(gid),
        None => topic,
    }
}

/// `shmkit sub TOPIC`: each message on its own line until every publisher
/// has closed (after at least one opened), `count` messages, or a stop
/// signal. A lossy topic's losses are reported on standard error.
pub fn subscribe(name: &str, options: &SubOptions, out: impl Write) -> Result<(), CliError> {
    let topic = shared(Options::default(), &options.sharing).receive_history(!options.no_history);
    let mut subscriber =
        Subscriber::open_with(name, &topic).map_err(|e| opening(name, "subscriber", e))?;
    signals::catch();
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let result = receive(&mut subscriber, options, &mut out);
    let flushed = out.flush().map_err(CliError::stdout);
    result.and(flushed)
}

fn receive(
    subscriber: &mut Subscriber,
    options: &SubOptions,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut buf = vec![0u8; subscriber.max_message()];
    let mut left = options.count.unwrap_or(u64::MAX);
    while left > 0 && signals::caught().is_none() {
        let got = match subscriber.try_recv(&mut buf) {
            Err(shmkit::Error::Empty { .. }) => {
                // Nothing now: show what we have before we wait.
                out.flush().map_err(CliError::stdout)?;
                wait(subscriber, &mut buf, options.timeout)?
            }
            other => Some(other),
        };
        match got {
            None => return Ok(()), // a stop signal
            Some(Ok(received)) => {
                out.write_all(&buf[..received.len])
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(CliError::stdout)?;
                left -= 1;
            }
            Some(Err(shmkit::Error::Lagged { missed, .. })) => {
                out.flush().map_err(CliError::stdout)?;
                eprintln!("shmkit: missed {missed} messages");
            }
            Some(Err(shmkit::Error::Closed { .. })) => return Ok(()),
            Some(Err(err)) => return Err(ring::receiving(err)),
        }
    }
    Ok(())
}

/// Waits for the next receive's outcome in slices short enough to notice
/// a signal (`None` then); a `timeout` is an error.
fn wait(
    subscriber: &mut Subscriber,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> Result<Option<shmkit::Result<topic::Received>>, CliError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if signals::caught().is_some() {
            return Ok(None);
        }
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(signals::SLICE),
            None => signals::SLICE,
        };
        match subscriber.recv_timeout(buf, slice) {
            Err(shmkit::Error::Timeout { .. }) => {
                // A slice without a message: if no publisher has come yet,
                // wait for one without the library's 50 looks a second.
                arrival::wait_for_publisher(subscriber.name(), deadline);
                if let (Some(deadline), Some(timeout)) = (deadline, timeout) {
                    if Instant::now() >= deadline {
                        return Err(CliError::Message(format!(
                            "timed out: no message on topic {} within {} s",
                            subscriber.name(),
                            timeout.as_secs_f64()
                        )));
                    }
                }
            }
            other => return Ok(Some(other)),
        }
    }
}

fn opening(name: &str, end: &str, err: shmkit::Error) -> CliError {
    match err {
        shmkit::Error::InvalidArgument(_) => CliError::Usage(err.to_string()),
        shmkit::Error::UntrustedOwner { uid, gid, .. } => ring::untrusted(
            "topic",
            name,
            end,
            &format!("{}{name}", topic::SEGMENT_PREFIX),
            uid,
            gid,
        ),
        other => other.into(),
    }
}

/// The `ls` table of topics (empty if there are none).
pub fn ls_table(headings: bool) -> Result<String, CliError> {
    let topics: Vec<(String, shmkit::Result<TopicStatus>)> = topic::list()?
        .into_iter()
        .map(|name| {
            let status = topic::status(&name);
            (name, status)
        })
        .filter(|(_, status)| !matches!(status, Err(shmkit::Error::NotFound { .. })))
        .collect();
    if topics.is_empty() {
        return Ok(String::new());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if headings {
        rows.push(
            [
                "NAME",
                "POLICY",
                "LANE",
                "PUBLISHED",
                "PUBLISHERS",
                "SUBSCRIBERS",
                "WORST-LAG",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
    }
    for (name, status) in &topics {
        rows.push(match status {
            Ok(t) => vec![
                name.clone(),
                t.policy.to_owned(),
                t.capacity.to_string(),
                t.published.to_string(),
                members(
                    t.publishers
                        .iter()
                        .filter(|p| !p.closed)
                        .map(|p| (p.pid, p.alive)),
                ),
                members(t.subscribers.iter().map(|s| (s.pid, s.alive))),
                worst_lag(t).map_or("-".to_owned(), |lag| lag.to_string()),
            ],
            Err(_) => {
                let mut row = vec![name.clone(), "unreadable".to_owned()];
                row.extend(std::iter::repeat_n("-".to_owned(), 5));
                row
            }
        });
    }
    Ok(format!("\nTOPICS\n{}", output::table(&rows)))
}

/// `12 34(dead)` for members' pids, or `-`.
fn members(members: impl Iterator<Item = (shmkit::Pid, bool)>) -> String {
    let all: Vec<String> = members
        .map(|(pid, alive)| {
            if alive {
                pid.to_string()
            } else {
                format!("{pid}(dead)")
            }
        })
        .collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(" ")
    }
}

/// What `stat` adds for a topic's segment: its members and counters.
pub fn stat_text(key: &str) -> Option<String> {
    let name = key.strip_prefix(topic::SEGMENT_PREFIX)?;
    let t = match topic::status(name) {
        Ok(t) => t,
        Err(err) => return Some(format!("topic {name}: {err}\n")),
    };
    let mut text = format!(
        "topic {name}: policy {}, lanes of {} bytes, largest message {}, history {}, \
         {} messages published\n  places: {} publishers, {} subscribers\n",
        t.policy,
        t.capacity,
        t.max_message,
        t.history,
        t.published,
        t.max_publishers,
        t.max_subscribers
    );
    for p in &t.publishers {
        let state = match (p.closed, p.alive) {
            (true, _) => "closed",
            (false, true) => "alive",
            (false, false) => "dead",
        };
        let relay = p.origin.map_or(String::new(), |o| {
            format!(
                ", bridge relay of host {:#018x} publisher {}",
                o.host, o.publisher
            )
        });
        text.push_str(&format!(
            "  publisher {} (lane {}): pid {}, {state}, {} messages published{relay}\n",
            p.id, p.lane, p.pid, p.published
        ));
    }
    for s in &t.subscribers {
        let bridge = is_bridge(&t, s);
        text.push_str(&format!(
            "  subscriber {}: pid {}, {}, {} received, {} missed, lag {} bytes{}\n",
            s.place,
            s.pid,
            if s.alive { "alive" } else { "dead" },
            s.received,
            s.missed,
            s.lag_bytes,
            if bridge { ", bridge" } else { "" }
        ));
    }
    Some(text)
}

/// The largest lag of a subscriber, in bytes (`None` without subscribers).
fn worst_lag(t: &TopicStatus) -> Option<u64> {
    t.subscribers.iter().map(|s| s.lag_bytes).max()
}

/// Whether subscriber `s` is a bridge's: the one in the process of the
/// topic's relays.
fn is_bridge(t: &TopicStatus, s: &SubscriberStatus) -> bool {
    t.publishers
        .iter()
        .any(|p| p.origin.is_some() && p.pid == s.pid)
}

/// A topic as `stat --json` and `ls --json` show it (docs/JSON.md,
/// "topic"): what `stat` and the `ls` table show of it.
#[derive(Debug, serde::Serialize)]
pub struct TopicJson {
    name: String,
    policy: &'static str,
    capacity: u64,
    max_message: u64,
    history: u32,
    max_publishers: u32,
    max_subscribers: u32,
    published: u64,
    publishers: Vec<TopicPublisherJson>,
    subscribers: Vec<TopicSubscriberJson>,
    worst_lag_bytes: Option<u64>,
    abandoned: bool,
}

/// One publisher lane in the JSON (docs/JSON.md, "topic publisher").
#[derive(Debug, serde::Serialize)]
struct TopicPublisherJson {
    lane: usize,
    id: u64,
    pid: shmkit::Pid,
    alive: bool,
    closed: bool,
    published: u64,
    lane_messages: u64,
    origin: Option<OriginJson>,
}

/// The remote publisher a bridge's relay carries: the host's id as text,
/// as `stat` shows it (a 64-bit hash, which some JSON readers would round).
#[derive(Debug, serde::Serialize)]
struct OriginJson {
    host: String,
    publisher: u64,
}

/// One subscriber in the JSON (docs/JSON.md, "topic subscriber").
#[derive(Debug, serde::Serialize)]
struct TopicSubscriberJson {
    #[serde(flatten)]
    status: SubscriberStatus,
    bridge: bool,
}

impl TopicPublisherJson {
    fn new(p: &PublisherStatus) -> TopicPublisherJson {
        TopicPublisherJson {
            lane: p.lane,
            id: p.id,
            pid: p.pid,
            alive: p.alive,
            closed: p.closed,
            published: p.published,
            lane_messages: p.lane_messages,
            origin: p.origin.map(|o| OriginJson {
                host: format!("{:#018x}", o.host),
                publisher: o.publisher,
            }),
        }
    }
}

/// The topic in segment `stat`, if it names one whose header reads.
pub fn json_in(stat: &shmkit::Stat) -> Option<TopicJson> {
    let key = stat.key.to_string();
    let t = topic::status(key.strip_prefix(topic::SEGMENT_PREFIX)?).ok()?;
    Some(TopicJson {
        publishers: t.publishers.iter().map(TopicPublisherJson::new).collect(),
        subscribers: t
            .subscribers
            .iter()
            .map(|s| TopicSubscriberJson {
                status: s.clone(),
                bridge: is_bridge(&t, s),
            })
            .collect(),
        worst_lag_bytes: worst_lag(&t),
        abandoned: t.abandoned(),
        name: t.name,
        policy: t.policy,
        capacity: t.capacity,
        max_message: t.max_message,
        history: t.history,
        max_publishers: t.max_publishers,
        max_subscribers: t.max_subscribers,
        published: t.published,
    })
}

/// `shmkit gc [NAME...]`: the rings' part (`ring::gc`) for every name that
/// is not a topic, then the topics' part for those that are (all of both
/// without names); returns how many it found.
pub fn gc_rings_and_topics(
    names: &[String],
    force: bool,
    out: &mut impl Write,
) -> Result<usize, CliError> {
    let (topics, rings): (Vec<String>, Vec<String>) = names
        .iter()
        .cloned()
        .partition(|name| topic::list().is_ok_and(|all| all.contains(name)));
    let rings_done = if names.is_empty() || !rings.is_empty() {
        crate::ring::gc(&rings, force, out)
    } else {
        Ok(0)
    };
    let topics_done = if names.is_empty() || !topics.is_empty() {
        gc(&topics, force, out)
    } else {
        Ok(0)
    };
    Ok(rings_done? + topics_done?)
}

/// The topic part of `gc`: topics whose members all died (only `names`, if
/// given), listed, and with `force` removed.
fn gc(names: &[String], force: bool, out: &mut impl Write) -> Result<usize, CliError> {
    crate::gc::report("topic", names, force, topic::collect_garbage, out)
}
