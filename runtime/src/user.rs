//! Resolve `-u user[:group]` from the image's own `/etc/passwd` and
//! `/etc/group`, as runc's `GetExecUser` does for Docker.

use crate::error::{Error, Result};

/// The identity a job runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// Home directory (for `HOME`).
    pub home: String,
}

#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// Resolve `spec` (`""`, `user`, `uid`, `user:group`, `uid:gid`, …) against
/// the image's passwd and group files (either may be absent).
///
/// - a name must exist; a number need not (it then has home `/`, gid 0);
/// - without a group, the primary gid comes from passwd and the
///   supplementary groups are those that list the user;
/// - with a group, that is the only group;
/// - the primary group is always among the supplementary ones.
pub fn resolve_user(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid: Option<u32> = user_part.parse().ok();
    let entry = passwd.and_then(|p| {
        passwd_entries(p).find(|e| match numeric_uid {
            Some(uid) => e.uid == uid || e.name == user_part,
            None => e.name == user_part,
        })
    });
    let (uid, mut gid, home, name) = match (&entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name.to_string())),
        (None, Some(uid)) => (uid, 0, "/".to_string(), None),
        (None, None) => return Err(Error::UserNotFound(user_part.to_string())),
    };
    let home = if home.is_empty() {
        "/".to_string()
    } else {
        home
    };
    let mut additional_gids = Vec::new();
    let explicit_group = group_part.is_some_and(|g| !g.is_empty());
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            let numeric_gid: Option<u32> = g.parse().ok();
            let found = group.and_then(|t| {
                group_entries(t).find(|e| match numeric_gid {
                    Some(n) => e.gid == n || e.name == g,
                    None => e.name == g,
                })
            });
            gid = match (found, numeric_gid) {
                (Some(e), _) => e.gid,
                (None, Some(n)) => n,
                (None, None) => return Err(Error::GroupNotFound(g.to_string())),
            };
        }
        None => {
            // Like Docker (runc's GetExecUser since the 2023 supplementary
            // group fix): the primary group is a supplementary group too.
            additional_gids.push(gid);
            if let (Some(name), Some(t)) = (&name, group) {
                for e in group_entries(t) {
                    if e.members.iter().any(|m| m == name) && !additional_gids.contains(&e.gid) {
                        additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    if explicit_group {
        additional_gids.push(gid);
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// `--group-add`: each entry a gid, or a group name in the image's group
/// file; appended to `user`'s supplementary groups, as Docker does.
pub fn add_groups(user: &mut ExecUser, groups: &[String], group: Option<&str>) -> Result<()> {
    for g in groups {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .and_then(|t| group_entries(t).find(|e| e.name == g.as_str()))
                .map(|e| e.gid)
                .ok_or_else(|| Error::GroupNotFound(g.clone()))?,
        };
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_add_groups_numbers_and_names() {
        let group = "root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n";
        let mut u = resolve_user("1000", None, Some(group)).expect("user");
        add_groups(
            &mut u,
            &["1234".into(), "staff".into(), "0".into()],
            Some(group),
        )
        .expect("groups");
        assert_eq!(u.additional_gids, vec![0, 1234, 50]);
        let e = add_groups(&mut u, &["wheel".into()], Some(group)).expect_err("unknown");
        assert!(e.to_string().contains("wheel"), "{e}");
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnobody:x:65534:\napp:x:1000:\nextra:x:2000:app\n";

    #[test]
    fn test_resolve_user_by_name_with_groups() {
        let u = resolve_user("app", Some(PASSWD), Some(GROUP)).expect("ok");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 2000]);
        assert_eq!(u.home, "/home/app");
    }

    #[test]
    fn test_resolve_user_default_root() {
        let u = resolve_user("", Some(PASSWD), Some(GROUP)).expect("ok");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn test_resolve_user_numeric_unknown() {
        let u = resolve_user("4242", Some(PASSWD), None).expect("ok");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let u = resolve_user("4242:77", None, None).expect("ok");
        assert_eq!((u.uid, u.gid), (4242, 77));
    }

    #[test]
    fn test_resolve_user_explicit_group_replaces_supplementary() {
        let u = resolve_user("app:extra", Some(PASSWD), Some(GROUP)).expect("ok");
        assert_eq!((u.uid, u.gid), (1000, 2000));
        assert_eq!(u.additional_gids, vec![2000]);
        let u = resolve_user("1000:1000", Some(PASSWD), Some(GROUP)).expect("ok");
        assert_eq!((u.uid, u.gid), (1000, 1000));
    }

    #[test]
    fn test_resolve_user_unknown_names_fail() {
        assert!(matches!(
            resolve_user("ghost", Some(PASSWD), Some(GROUP)),
            Err(Error::UserNotFound(_))
        ));
        assert!(matches!(
            resolve_user("app:ghosts", Some(PASSWD), Some(GROUP)),
            Err(Error::GroupNotFound(_))
        ));
    }
}
