//! Whose segment this is, and whose segments a process agrees to use.
//!
//! Segment names are shared by everyone on the machine: any user may create
//! a ring's segment before its rightful owner does ("squatting") and then
//! read what the owner sends or feed the owner's consumer. So a ring opens
//! an existing segment only if its owner is trusted: by default the process's
//! own effective uid, root's included (root is the most valuable victim).
//! Sharing between users is opt-in, by naming the users or the group to
//! trust (docs/SECURITY.md).

use std::fmt;

use super::{Segment, Stat};
use crate::error::{Error, Result};

/// The owner of a segment: its uid and gid (`shm_perm.uid`/`gid` for
/// System V, the file's owner for POSIX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The owner's uid.
    pub uid: u32,
    /// The segment's group.
    pub gid: u32,
}

impl Owner {
    /// Whether the owner is this process's effective uid.
    pub fn is_me(&self) -> bool {
        self.uid == effective_uid()
    }
}

/// `uid 1000, gid 1000`.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {}, gid {}", self.uid, self.gid)
    }
}

/// The owners whose segments a process agrees to use: always its own
/// effective uid, and the users and groups added here.
///
/// Trusting a group trusts every segment whose group it is. Only members
/// of the group (and root) can give a segment that group, so this trusts
/// every member.
///
/// # Example: trust a second user and a group
///
/// ```
/// use shmkit::{Owner, Trust};
///
/// let trust = Trust::me().user(4242).group(100);
/// assert!(trust.trusts(Owner { uid: 4242, gid: 4242 }));
/// assert!(trust.trusts(Owner { uid: 5000, gid: 100 }));
/// let stranger = Owner { uid: 4_000_000_000, gid: 4_000_000_000 };
/// assert!(!trust.trusts(stranger));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    users: Vec<u32>,
    groups: Vec<u32>,
}

impl Trust {
    /// This process's own effective uid only (the default).
    pub fn me() -> Trust {
        Trust::default()
    }

    /// Also trusts segments owned by `uid`.
    pub fn user(mut self, uid: u32) -> Trust {
        self.users.push(uid);
        self
    }

    /// Also trusts segments whose group is `gid`.
    pub fn group(mut self, gid: u32) -> Trust {
        self.groups.push(gid);
        self
    }

    /// Whether a segment of this owner may be used.
    pub fn trusts(&self, owner: Owner) -> bool {
        owner.is_me() || self.users.contains(&owner.uid) || self.groups.contains(&owner.gid)
    }

    /// Checks that `segment`'s owner is trusted; `what` names it in the
    /// error (`ring NAME`).
    ///
    /// # Errors
    ///
    /// [`Error::UntrustedOwner`] naming the owner found.
    pub fn check(&self, segment: &Segment, what: &str) -> Result<Owner> {
        let owner = segment.owner()?;
        if self.trusts(owner) {
            return Ok(owner);
        }
        Err(Error::UntrustedOwner {
            segment: what.to_owned(),
            uid: owner.uid,
            gid: owner.gid,
            me: effective_uid(),
        })
    }
}

/// What [`Segment::open_or_create`] got: a segment it created, or one that
/// was there, maybe another user's.
#[derive(Debug)]
#[non_exhaustive]
pub struct Opened {
    /// The segment.
    pub segment: Segment,
    /// Whether this call created it.
    pub created: bool,
    /// Its owner: this process's uid if it was created here.
    pub owner: Owner,
}

impl Opened {
    /// Whether the segment belongs to this process's effective uid.
    pub fn is_mine(&self) -> bool {
        self.owner.is_me()
    }
}

impl From<&Stat> for Owner {
    fn from(stat: &Stat) -> Owner {
        Owner {
            uid: stat.uid,
            gid: stat.gid,
        }
    }
}

fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}
