//! Running a step as another user: who that user is, and becoming them in the child process.
//!
//! Owns: looking a user name up in the system's user database (uid, primary gid, supplementary
//! groups), and switching a child process to that identity between fork and exec with
//! setgroups, setgid and setuid — no `sudo`, no shell. Must not know: job documents, or who
//! may run as whom (that is [`super::permissions`]).
//!
//! Written on `libc` directly: the component already links it, and the four calls needed here
//! (getpwnam_r, getgrouplist, and the set*id calls in the child) do not justify another crate.
//! The supplementary groups are resolved in the parent, because initgroups(3) reads the group
//! database and is not async-signal-safe, so it must not run between fork and exec of a
//! multi-threaded process; the child only makes the plain system calls.

use std::ffi::{CStr, CString};
use std::io;

/// A user to run a process as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group included), as initgroups(3) would set them.
    pub groups: Vec<u32>,
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Looks `name` up; `Ok(None)` when there is no such user.
pub fn lookup(name: &str) -> Result<Option<Identity>, String> {
    let c_name = CString::new(name).map_err(|_| format!("user name {name:?} contains NUL"))?;
    let mut buf_len = 16 * 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; buf_len];
        // SAFETY: a zeroed passwd is a valid out-parameter; getpwnam_r fills it with pointers
        // into `buf`, which outlives every use below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the lengths given.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf_len < 1024 * 1024 {
            buf_len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "looking up user {name:?}: {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: getpwnam_r succeeded, so pw_name points at a NUL-terminated string in buf.
        let real_name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        let groups = group_list(&c_name, pwd.pw_gid)?;
        return Ok(Some(Identity {
            name: real_name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            groups,
        }));
    }
}

fn group_list(name: &CStr, gid: libc::gid_t) -> Result<Vec<u32>, String> {
    let mut count: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let asked = count;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most that many and
        // sets `count` to the number it needs.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= asked {
            // Some implementations do not report the size needed: grow ourselves.
            count = asked.saturating_mul(2);
        }
        if count > 65_536 {
            return Err("the user is in too many groups".to_owned());
        }
    }
}

/// Makes `command`'s child process run as `identity`.
pub fn apply(command: &mut tokio::process::Command, identity: &Identity) {
    let groups: Vec<libc::gid_t> = identity.groups.clone();
    let (uid, gid) = (identity.uid, identity.gid);
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls on data prepared before the fork (no allocation).
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_unknown_users_are_not() {
        let root = lookup("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(lookup("no-such-user-ggjh").unwrap(), None);
    }
}
