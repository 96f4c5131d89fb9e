//! The checker: the logs of every run against the documented guarantee.

use super::log::*;
use crate::*;

/// One producer process: the first number it sends, how many of its sends
/// it logged as committed, and how many it said a batch would make.
#[derive(Clone, Copy, Debug)]
pub struct ProducerRun {
    pub start: u64,
    pub count: u64,
    pub pending: u64,
}

impl ProducerRun {
    /// One past the last number this run may have committed: its logged
    /// commits, and the one it may have committed without logging it (a
    /// send), or the whole batch it was committing.
    pub fn possible_end(&self) -> u64 {
        self.start + (self.count + 1).max(self.pending)
    }
}

/// What one consumer process left for the next one to receive again: its
/// last operation's messages, if that was a read grant or a drain batch
/// (the ones it may not have handed back).
#[derive(Debug, Default)]
pub struct Unreleased {
    pub messages: HashMap<u64, u64>,
}

/// Everything the checker counts, and what it found wrong.
#[derive(Debug, Default)]
pub struct Tally {
    pub kills_producer: u64,
    pub kills_consumer: u64,
    pub kills_both: u64,
    pub kills_before_ready: u64,
    pub committed: u64,
    pub delivered: u64,
    pub unlogged_commits_delivered: u64,
    pub redelivered: u64,
    pub redelivered_read: u64,
    pub redelivered_drain: u64,
    pub max_redelivered_per_kill: u64,
    pub lost_in_recv: u64,
    pub failures: Vec<String>,
}

impl Tally {
    pub fn kills(&self) -> u64 {
        self.kills_producer + self.kills_consumer + 2 * self.kills_both
    }

    pub fn fail(&mut self, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }
}

pub struct Checker {
    pub producers: Vec<ProducerRun>,
    pub last_seq: Option<u64>,
    pub last_n: Option<u64>,
    pub unreleased: Unreleased,
    /// Messages a consumer killed inside `recv` may have taken with it:
    /// one per such consumer since the last new message.
    pub losses_allowed: u64,
    pub tally: Tally,
}

impl Checker {
    pub fn new() -> Checker {
        Checker {
            producers: Vec::new(),
            last_seq: None,
            last_n: None,
            unreleased: Unreleased::default(),
            losses_allowed: 0,
            tally: Tally::default(),
        }
    }

    /// The producer run that message `n` belongs to, if any: `n` in
    /// `start..possible_end` (the last ones committed but perhaps not
    /// logged, if the run was killed).
    pub fn run_of(&self, n: u64) -> Option<ProducerRun> {
        let i = self.producers.partition_point(|run| run.start <= n);
        let run = *self.producers.get(i.checked_sub(1)?)?;
        (n < run.possible_end()).then_some(run)
    }

    /// Logged commits with numbers in `after+1..before`.
    pub fn committed_between(&self, after: Option<u64>, before: u64) -> u64 {
        let low = after.map_or(0, |a| a + 1);
        self.producers
            .iter()
            .map(|run| {
                let end = (run.start + run.count).min(before);
                end.saturating_sub(run.start.max(low))
            })
            .sum()
    }

    /// Checks the log of one consumer process, which has ended (`killed`
    /// or not). `producers` is the producer runs so far, with their counts
    /// as logged now.
    pub fn consumer_ended(
        &mut self,
        incarnation: u64,
        seed: u64,
        entries: &[Entry],
        killed: bool,
        producers: &[ProducerRun],
    ) {
        self.producers = producers.to_vec();
        let mut redelivered_here = 0;
        let mut seen_new = false;
        for (i, entry) in entries.iter().enumerate() {
            // Only formatted on a failure: this runs for every message.
            let at = || {
                format!(
                    "consumer {incarnation}, entry {i}: number {} at sequence {}",
                    entry.n, entry.seq
                )
            };
            let old = self.last_seq.is_some_and(|last| entry.seq <= last);
            if old != entry.duplicate {
                self.tally.fail(format!(
                    "{}: the consumer's duplicate mark disagrees with the checker",
                    at()
                ));
            }
            if old {
                // Delivered again: only right after a takeover, and only
                // what the killed consumer had not handed back.
                redelivered_here += 1;
                match self.unreleased.messages.get(&entry.seq) {
                    Some(&n) if n == entry.n && !seen_new => {
                        self.tally.redelivered += 1;
                        match entry.verb {
                            Verb::Drain => self.tally.redelivered_drain += 1,
                            _ => self.tally.redelivered_read += 1,
                        }
                    }
                    Some(&n) if n != entry.n => {
                        let what = format!("{}: sequence number reused, it was message {n}", at());
                        self.tally.fail(what);
                    }
                    _ => {
                        let what = format!(
                            "{}: delivered twice, beyond the guarantee \
                             (not an unreleased message of a killed consumer)",
                            at()
                        );
                        self.tally.fail(what);
                    }
                }
                continue;
            }
            seen_new = true;
            if self.last_n.is_some_and(|last| entry.n <= last) {
                self.tally.fail(format!(
                    "{}: out of order, after message {}",
                    at(),
                    self.last_n.unwrap()
                ));
            }
            let fast = self.last_n.is_some_and(|last| entry.n == last + 1);
            if !fast {
                if self.run_of(entry.n).is_none() {
                    self.tally.fail(format!(
                        "{}: no producer sent a message of that number",
                        at()
                    ));
                }
                let missing = self.committed_between(self.last_n, entry.n);
                let lost = missing.saturating_sub(self.losses_allowed);
                self.tally.lost_in_recv += missing - lost;
                if lost > 0 {
                    self.tally.fail(format!(
                        "{}: {lost} committed message(s) after message {:?} never arrived",
                        at(),
                        self.last_n
                    ));
                }
            }
            self.losses_allowed = 0;
            self.last_seq = Some(entry.seq);
            self.last_n = Some(entry.n);
            self.tally.delivered += 1;
        }
        self.tally.max_redelivered_per_kill =
            self.tally.max_redelivered_per_kill.max(redelivered_here);
        if !killed {
            return;
        }
        // What the next consumer may receive again or never see.
        if let Some(last) = entries.last() {
            self.unreleased.messages.clear();
            let batch = match last.verb {
                Verb::Recv => &entries[..0],
                Verb::Read => &entries[entries.len() - 1..],
                Verb::Drain => {
                    let start = entries.iter().rposition(|e| e.batch_start).unwrap_or(0);
                    &entries[start..]
                }
            };
            for entry in batch {
                self.unreleased.messages.insert(entry.seq, entry.n);
            }
        }
        if Verb::choose(seed, incarnation, entries.len() as u64) == Verb::Recv {
            self.losses_allowed += 1;
        }
    }

    /// After the final close: every logged commit arrived.
    pub fn finished(&mut self, producers: &[ProducerRun]) {
        self.producers = producers.to_vec();
        self.tally.committed = producers.iter().map(|run| run.count).sum();
        // What arrived beyond the logged commits, less what recv lost:
        // messages a killed producer committed and could not log.
        self.tally.unlogged_commits_delivered =
            (self.tally.delivered + self.tally.lost_in_recv).saturating_sub(self.tally.committed);
        let end = producers.last().map_or(0, |run| run.start + run.count);
        let lost = self.committed_between(self.last_n, end);
        if lost > 0 {
            self.tally.fail(format!(
                "{lost} committed message(s) after message {:?} never arrived before Closed",
                self.last_n
            ));
        }
    }
}
