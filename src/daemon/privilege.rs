//! `--run-as USER[:GROUP]`: a daemon started as root becomes an ordinary
//! user once it listens and has loaded its key, so a flaw in the code that
//! faces the network does not hand out root.
//!
//! The user is looked up at start ([`lookup`], before the sandbox closes
//! the passwd and group files); the switch ([`drop_to`]) sets the
//! supplementary groups, then the group, then the user (the only order that
//! works: each step needs root), each with real, effective and saved ids
//! alike, and then checks that root cannot be had back.

use std::ffi::{CStr, CString};
use std::io;

use crate::config::RunAs;

/// Who `--run-as` names, looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// `USER` or `USER:GROUP`, as given.
    pub name: String,
    /// The user's id.
    pub uid: libc::uid_t,
    /// The primary group: GROUP's id when given, else the user's.
    pub gid: libc::gid_t,
    /// The supplementary groups: the user's (from the group database), or
    /// only GROUP when one is given.
    pub groups: Vec<libc::gid_t>,
}

/// Where `--run-as` (or its absence) left the daemon, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Now this user, no longer root.
    Dropped(Account),
    /// Started as that user already: nothing to change.
    AlreadyThatUser(Account),
    /// Root, and no `--run-as`: works, but deserves a warning.
    StillRoot,
    /// Not root, and no `--run-as`.
    Unprivileged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Dropped(a) => write!(
                f,
                "running as {} (uid {}, gid {}, groups {:?}); root dropped",
                a.name, a.uid, a.gid, a.groups
            ),
            Outcome::AlreadyThatUser(a) => {
                write!(f, "running as {} (uid {}) already", a.name, a.uid)
            }
            Outcome::StillRoot => f.write_str(
                "running as root: --run-as USER would make nctls an ordinary user once it \
                 listens and has loaded its key",
            ),
            Outcome::Unprivileged => Ok(()),
        }
    }
}

/// Applies `--run-as` (looked up beforehand), once the daemon listens and
/// has its key: as root, becomes the user; as that user already, nothing;
/// as anyone else, an error (only root can change user).
pub fn apply(account: Option<Account>) -> Result<Outcome, String> {
    // SAFETY: geteuid has no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    match account {
        Some(a) if euid == 0 => {
            drop_to(&a)?;
            Ok(Outcome::Dropped(a))
        }
        Some(a) if euid == a.uid => Ok(Outcome::AlreadyThatUser(a)),
        Some(a) => Err(format!(
            "--run-as {}: only root can change user (nctls runs as uid {euid})",
            a.name
        )),
        None if euid == 0 => Ok(Outcome::StillRoot),
        None => Ok(Outcome::Unprivileged),
    }
}

/// Looks up the user (and group) in the passwd and group databases.
pub fn lookup(run_as: &RunAs) -> Result<Account, String> {
    let origin = format!("--run-as {run_as}");
    let user =
        CString::new(run_as.user.as_str()).map_err(|_| format!("{origin}: a NUL in the name"))?;
    let (uid, primary) = passwd(&user)
        .map_err(|e| format!("{origin}: cannot look up user {:?}: {e}", run_as.user))?
        .ok_or_else(|| format!("{origin}: no user {:?} (see getent passwd)", run_as.user))?;
    let (gid, groups) = match &run_as.group {
        Some(name) => {
            let group =
                CString::new(name.as_str()).map_err(|_| format!("{origin}: a NUL in the name"))?;
            let gid = group_id(&group)
                .map_err(|e| format!("{origin}: cannot look up group {name:?}: {e}"))?
                .ok_or_else(|| format!("{origin}: no group {name:?} (see getent group)"))?;
            (gid, vec![gid])
        }
        None => (primary, group_list(&user, primary)),
    };
    Ok(Account {
        name: run_as.to_string(),
        uid,
        gid,
        groups,
    })
}

/// Becomes `account`: supplementary groups, group, user; then checks that
/// every id changed and that root cannot be taken back.
pub fn drop_to(account: &Account) -> Result<(), String> {
    let fail = |what: &str, e: io::Error| format!("--run-as {}: {what}: {e}", account.name);
    // SAFETY: the pointer and length describe `account.groups`.
    if unsafe { libc::setgroups(account.groups.len(), account.groups.as_ptr()) } != 0 {
        return Err(fail("setgroups", io::Error::last_os_error()));
    }
    let (uid, gid) = (account.uid, account.gid);
    // SAFETY: plain id arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(fail("setresgid", io::Error::last_os_error()));
    }
    // SAFETY: plain id arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(fail("setresuid", io::Error::last_os_error()));
    }
    let ids = current_ids();
    if ids != (uid, uid, uid, gid, gid, gid) {
        return Err(format!(
            "--run-as {}: the ids did not all change (uid/euid/suid/gid/egid/sgid now {ids:?})",
            account.name
        ));
    }
    // SAFETY: plain id argument; succeeding here would be the failure.
    if uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(format!(
            "--run-as {}: root could be taken back after the switch",
            account.name
        ));
    }
    Ok(())
}

/// Real, effective and saved user and group ids.
fn current_ids() -> (
    libc::uid_t,
    libc::uid_t,
    libc::uid_t,
    libc::gid_t,
    libc::gid_t,
    libc::gid_t,
) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: each pointer is to a local of the right type.
    unsafe {
        libc::getresuid(&mut r, &mut e, &mut s);
        libc::getresgid(&mut rg, &mut eg, &mut sg);
    }
    (r, e, s, rg, eg, sg)
}

/// A user's uid and primary gid, `None` if there is no such user.
fn passwd(name: &CStr) -> io::Result<Option<(libc::uid_t, libc::gid_t)>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the buffer's length is given.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                entry.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            // SAFETY: found is non-null, so getpwnam_r filled `entry`.
            0 => return Ok(Some(unsafe { ((*found).pw_uid, (*found).pw_gid) })),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// A group's gid, `None` if there is no such group.
fn group_id(name: &CStr) -> io::Result<Option<libc::gid_t>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut entry = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the buffer's length is given.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                entry.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            // SAFETY: found is non-null, so getgrnam_r filled `entry`.
            0 => return Ok(Some(unsafe { (*found).gr_gid })),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// Every group `user` is in (its primary group first), from the group
/// database.
fn group_list(user: &CStr, primary: libc::gid_t) -> Vec<libc::gid_t> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `count` is the buffer's length; getgrouplist writes at most that many.
        let rc =
            unsafe { libc::getgrouplist(user.as_ptr(), primary, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        // Too small: `count` is now the number needed.
        let needed = (count.max(0) as usize).max(groups.len() * 2);
        if needed > 1 << 16 {
            return vec![primary];
        }
        groups.resize(needed, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_its_group_are_found() {
        let root = lookup(&RunAs {
            user: "root".into(),
            group: None,
        })
        .unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        let with_group = lookup(&RunAs {
            user: "root".into(),
            group: Some("root".into()),
        })
        .unwrap();
        assert_eq!(with_group.groups, [0]);
    }

    #[test]
    fn unknown_names_are_one_line_errors() {
        let e = lookup(&RunAs {
            user: "no-such-user-nctls".into(),
            group: None,
        })
        .unwrap_err();
        assert_eq!(
            e,
            "--run-as no-such-user-nctls: no user \"no-such-user-nctls\" (see getent passwd)"
        );
        let e = lookup(&RunAs {
            user: "root".into(),
            group: Some("no-such-group-nctls".into()),
        })
        .unwrap_err();
        assert!(
            e.ends_with("no group \"no-such-group-nctls\" (see getent group)"),
            "{e}"
        );
    }
}
