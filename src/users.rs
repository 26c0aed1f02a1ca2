//! The machine's users, for jobs that run as one of them (`user:`), as
//! cron runs each user's crontab as that user.
//!
//! The account is looked up when the jobs file is read (an unknown user is
//! a mistake `check` names); the switch happens in the job's process
//! between fork and exec, with only async-signal-safe calls.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A user a job runs as: who, and what cron gives such a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group the user is in, the primary one included.
    pub groups: Vec<u32>,
    /// The home folder: the job's `HOME`, and its working directory
    /// unless it has a `workdir`.
    pub home: PathBuf,
}

impl Account {
    /// The account named `name` in the user database (`/etc/passwd`, or
    /// what NSS serves); why not, when there is none.
    pub fn lookup(name: &str) -> Result<Account, String> {
        let unknown = || format!("no user `{name}` on this machine");
        let c_name = CString::new(name).map_err(|_| unknown())?;
        let mut buffer = vec![0u8; 4096];
        loop {
            // SAFETY: an all-zero passwd is a valid value to be written over.
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is to memory that outlives the call, with
            // the buffer's true length.
            let error = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut entry,
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    &mut found,
                )
            };
            if error == libc::ERANGE && buffer.len() < 1 << 20 {
                buffer.resize(buffer.len() * 4, 0);
                continue;
            }
            if error != 0 {
                return Err(format!(
                    "cannot look up user `{name}`: {}",
                    std::io::Error::from_raw_os_error(error)
                ));
            }
            if found.is_null() {
                return Err(unknown());
            }
            // SAFETY: getpwnam_r filled `entry`; its strings point into
            // `buffer`, alive here.
            let home = unsafe { CStr::from_ptr(entry.pw_dir) };
            let home = PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes()));
            let groups = groups_of(&c_name, entry.pw_gid);
            return Ok(Account {
                name: name.to_string(),
                uid: entry.pw_uid,
                gid: entry.pw_gid,
                groups,
                home,
            });
        }
    }

    /// Whether a job run as this account runs as someone other than this
    /// process.
    pub fn is_other(&self) -> bool {
        self.uid != effective_uid()
    }

    /// Why this process cannot start a job as this account, if it cannot:
    /// only root can become another user.
    pub fn refusal(&self) -> Option<String> {
        let me = effective_uid();
        (self.uid != me && me != 0).then(|| {
            format!(
                "cannot run as user `{}`: overnight runs as uid {me}, and only root can start a job as another user",
                self.name
            )
        })
    }

    /// In the child, between fork and exec: becomes this account (its
    /// groups, its group, then its user).
    ///
    /// # Safety
    /// Only `setgroups`, `setgid` and `setuid`, which are async-signal-safe,
    /// on memory that lives for the call.
    pub unsafe fn become_it(&self) -> std::io::Result<()> {
        let check = |done: libc::c_int| match done {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        };
        // SAFETY: the group list lives for the call, with its true length.
        check(unsafe { libc::setgroups(self.groups.len(), self.groups.as_ptr()) })?;
        // SAFETY: plain integer arguments.
        check(unsafe { libc::setgid(self.gid) })?;
        // SAFETY: plain integer arguments.
        check(unsafe { libc::setuid(self.uid) })
    }
}

/// The user this process runs as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Every group `name` is in, `primary` first.
fn groups_of(name: &CStr, primary: u32) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: the list has room for `count` groups; getgrouplist says how
        // many it needs when that is not enough.
        let done =
            unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut count) };
        if done >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count as usize <= groups.len() || groups.len() > 65536 {
            return vec![primary];
        }
        groups.resize(count as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_a_made_up_user_is_not() {
        let root = Account::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(
            Account::lookup("no-such-user-here").unwrap_err(),
            "no user `no-such-user-here` on this machine"
        );
        assert!(Account::lookup("nul\0byte").is_err());
    }
}
