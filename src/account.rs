//! The machine's accounts, for jobs that run as one of them (`user:`), as
//! cron runs each user's crontab as that user.
//!
//! The jobs file names the user; the account is looked up when the file
//! is read (a name the machine does not know is a mistake `check` names)
//! and again before each run (a user removed or changed since is seen);
//! the switch happens in the job's process between fork and exec, with
//! async-signal-safe calls only.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A user a job runs as: who, and what cron gives such a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group the user is in, the primary one included.
    pub groups: Vec<u32>,
    /// The home folder: the job's `HOME`, and where it starts unless it
    /// has a `workdir`.
    pub home: PathBuf,
}

/// Why a job cannot run as its user.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The user database has no such name.
    #[error("no user `{0}` on this machine")]
    NotFound(String),
    /// The user database did not answer (NSS, LDAP).
    #[error("cannot look up user `{name}`: {source}")]
    Lookup {
        name: String,
        source: std::io::Error,
    },
    /// Only root can become another user.
    #[error(
        "cannot run as user `{name}`: overnight runs as uid {me}, and only root can start a job as another user"
    )]
    NotRoot { name: String, me: u32 },
}

impl Account {
    /// The account named `name` in the user database (`/etc/passwd`, or
    /// what NSS serves). Blocks on NSS: call it off the async workers.
    pub fn lookup(name: &str) -> Result<Account, AccountError> {
        let c_name = CString::new(name).map_err(|_| AccountError::NotFound(name.to_string()))?;
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
                return Err(AccountError::Lookup {
                    name: name.to_string(),
                    source: std::io::Error::from_raw_os_error(error),
                });
            }
            if found.is_null() {
                return Err(AccountError::NotFound(name.to_string()));
            }
            // SAFETY: getpwnam_r filled `entry`; its strings point into
            // `buffer`, alive here.
            let home = unsafe { CStr::from_ptr(entry.pw_dir) };
            return Ok(Account {
                name: name.to_string(),
                uid: entry.pw_uid,
                gid: entry.pw_gid,
                groups: groups_of(&c_name, entry.pw_gid),
                home: PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes())),
            });
        }
    }

    /// Whether a job run as this account runs as someone other than this
    /// process.
    pub fn is_other(&self) -> bool {
        self.uid != crate::state::me()
    }

    /// Whether this process can start a job as this account: only root
    /// can become another user.
    pub fn may_become(&self) -> Result<(), AccountError> {
        let me = crate::state::me();
        match self.uid == me || me == 0 {
            true => Ok(()),
            false => Err(AccountError::NotRoot {
                name: self.name.clone(),
                me,
            }),
        }
    }

    /// In the child, between fork and exec: becomes this account (its
    /// groups, its group, then its user), with cron's umask.
    ///
    /// # Safety
    /// Only `setgroups`, `setgid`, `setuid` and `umask`, which are
    /// async-signal-safe, on memory that lives for the call.
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
        check(unsafe { libc::setuid(self.uid) })?;
        // SAFETY: plain integer argument; umask cannot fail.
        unsafe { libc::umask(0o022) };
        Ok(())
    }
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
        assert!(matches!(
            Account::lookup("no-such-user-here"),
            Err(AccountError::NotFound(name)) if name == "no-such-user-here"
        ));
        assert!(Account::lookup("nul\0byte").is_err());
    }
}
