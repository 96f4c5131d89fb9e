//! User and group names for uids and gids, from `/etc/passwd` and
//! `/etc/group` (read directly: no NSS, so LDAP or systemd-homed users show
//! as numbers).

use std::collections::HashMap;

/// The names of the local users and groups.
#[derive(Debug, Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// Reads `/etc/passwd` and `/etc/group`; a file that cannot be read
    /// contributes no names.
    pub fn load() -> Names {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        Names {
            users: parse(&read("/etc/passwd")),
            groups: parse(&read("/etc/group")),
        }
    }

    /// The user's name, if it has one.
    pub fn user(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(String::as_str)
    }

    /// The group's name, if it has one.
    pub fn group(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(String::as_str)
    }

    /// The uid of the user called `name`.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        id_of(&self.users, name)
    }

    /// The gid of the group called `name`.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        id_of(&self.groups, name)
    }

    /// The user's name, or the number if it has none (as `ipcs` prints owners).
    pub fn user_or_number(&self, uid: u32) -> String {
        self.user(uid)
            .map_or_else(|| uid.to_string(), str::to_owned)
    }

    /// The group's name, or the number if it has none.
    pub fn group_or_number(&self, gid: u32) -> String {
        self.group(gid)
            .map_or_else(|| gid.to_string(), str::to_owned)
    }
}

/// The lowest id with this name (names are unique in sane files).
fn id_of(names: &HashMap<u32, String>, name: &str) -> Option<u32> {
    names
        .iter()
        .filter(|(_, n)| n.as_str() == name)
        .map(|(&id, _)| id)
        .min()
}

/// Maps the third field to the first in `name:password:id:…` lines, the
/// format of both files. The first line for an id wins, as in getpwuid.
fn parse(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Ok(id) = id.parse() {
            names.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group_lines() {
        let names = parse(
            "root:x:0:0:root:/root:/bin/bash\n\
             # comment:x:5:\n\
             \n\
             nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n\
             toor:x:0:0::/:/bin/sh\n\
             broken:x:notanumber\n\
             +::::::\n",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn unknown_ids_print_as_numbers() {
        let names = Names::default();
        assert_eq!(names.user_or_number(1234), "1234");
        assert_eq!(names.group(1234), None);
    }
}
