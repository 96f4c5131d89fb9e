//! What `gc` shows of the structures whose members hold places (topics and
//! services): the garbage the library found, listed, and with `--force`
//! removed. Rings have their own report (`ring::gc`: a ring's ends).

use std::io::Write;

use shmkit::ring::{Action, Garbage, Reason, Removal, Scope};

use crate::error::CliError;
use crate::ring::gc_action;

/// The `gc` part of one kind of structure (`noun`: `topic`, `service`):
/// every one of them that nobody will use, or only `names`, from
/// `collect_garbage`, listed with why, and with `force` removed; returns
/// how many it found.
pub fn report<S>(
    noun: &str,
    names: &[String],
    force: bool,
    collect_garbage: impl Fn(Scope<'_>, Action) -> shmkit::Result<Vec<Garbage<S>>>,
    out: &mut impl Write,
) -> Result<usize, CliError> {
    let action = gc_action(force);
    let mut text = String::new();
    let mut problems = Vec::new();
    let found = if names.is_empty() {
        collect_garbage(Scope::All, action)?
    } else {
        // Each name on its own: one that fails to be looked at does not
        // keep the others from being collected and reported.
        let mut found = Vec::new();
        for name in names {
            match collect_garbage(Scope::Name(name), action) {
                Ok(garbage) if garbage.is_empty() => text.push_str(&format!(
                    "{noun} {name} is not garbage: a live process is a member of it or maps it \
                     (or is joining or leaving it)\n"
                )),
                Ok(garbage) => found.extend(garbage),
                Err(err) => problems.push(err.into()),
            }
        }
        found
    };
    for garbage in &found {
        let verb = match &garbage.removal {
            Removal::Removed => "removed",
            Removal::NotAsked => "would remove",
            _ => "could not remove",
        };
        let why = match &garbage.reason {
            Reason::Abandoned => "abandoned (a member died, and none is alive)".to_owned(),
            Reason::Finished => "finished (no member, left by its last one)".to_owned(),
            reason => reason.to_string(),
        };
        text.push_str(&format!("{verb} {noun} {}: {why}\n", garbage.name));
        if let Removal::Failed(why) = &garbage.removal {
            problems.push(CliError::Message(format!(
                "{noun} {} was left in /dev/shm: {why}",
                garbage.name
            )));
        }
    }
    out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
    match problems.len() {
        0 => Ok(found.len()),
        1 => Err(problems.remove(0)),
        _ => Err(CliError::Several(problems)),
    }
}

/// The one summary after every kind's lines (`found`: how many they listed
/// together): "nothing to collect" when a `gc` without names found nothing,
/// and after a dry run that found something, how to remove it.
pub fn summary(
    names: &[String],
    force: bool,
    found: usize,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let text = if found == 0 && names.is_empty() {
        "nothing to collect\n"
    } else if found > 0 && !force {
        "(nothing was removed: `shmkit gc --force` removes them)\n"
    } else {
        return Ok(());
    };
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}
