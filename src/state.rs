//! The state directory: ours alone.
//!
//! Everything the runner keeps between commands lives under one folder: the
//! history, the journal, the run-id counter, capture files, lock files, the
//! daemon's card with its API token. A user who could write there could
//! plant a symlink and have root's runner overwrite a file of their
//! choosing, or read the token and start runs. So:
//!
//! - folders are made 0700 and files 0600, whatever the umask, and a file
//!   found with looser bits (an older version's) is narrowed when opened;
//! - an existing state directory owned by someone else, or writable by
//!   group or others, is refused with the fix in the message;
//! - files are opened with `O_NOFOLLOW` and must be regular files owned by
//!   this user: a planted symlink or a foreign file is an error, never
//!   followed;
//! - a file replaced whole (the daemon's card) is written under a random
//!   name made with `O_EXCL` in the same folder, then renamed over.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Folders the runner makes: its user's alone.
const DIR_MODE: u32 = 0o700;

/// Files the runner makes: its user's alone.
const FILE_MODE: u32 = 0o600;

/// This process's effective user.
pub fn me() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes the state directory `dir` (and missing parents) 0700, or checks
/// an existing one: it must be this user's and writable by no one else
/// (group or others' read bits are taken away).
pub fn prepare(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    let refuse = |why: String| {
        let msg = format!(
            "state directory `{}` {why}; it must be yours alone: use another one \
             (`state_dir:` in the jobs file, or $OVERNIGHT_STATE_DIR), or fix it with \
             `chown $(id -u) {0}` and `chmod 700 {0}`",
            dir.display()
        );
        io::Error::new(io::ErrorKind::PermissionDenied, Refused(msg))
    };
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != me() {
        return Err(refuse(format!(
            "belongs to uid {}, not to you (uid {})",
            meta.uid(),
            me()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "may be written by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Why a state directory or a file in it is refused: it is not this
/// user's alone. Nothing may be written there, not even a job's output.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Whether `e` is a refusal (rather than the disk failing).
pub fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

/// Makes a folder inside the state directory (and missing parents), 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that never follow a symlink and make files 0600.
fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    options
}

/// Opens (creating if need be) a file for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    checked(options().append(true).create(true).open(path)?, path)
}

/// Opens (creating if need be) a file to read and write, keeping what it
/// holds.
pub fn open_rw(path: &Path) -> io::Result<File> {
    let file = options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    checked(file, path)
}

/// Creates a file, or empties an existing one (once it is known to be
/// ours: a foreign file is refused untouched).
pub fn create(path: &Path) -> io::Result<File> {
    let file = options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let file = checked(file, path)?;
    file.set_len(0)?;
    Ok(file)
}

/// Creates a file that must not exist yet.
pub fn create_new(path: &Path) -> io::Result<File> {
    options().write(true).create_new(true).open(path)
}

/// Opens a file to read, refusing a symlink.
pub fn open_read(path: &Path) -> io::Result<File> {
    options().read(true).open(path)
}

/// Opens a file of ours to read, as [`open_rw`] checks it (a regular
/// file, this user's, private), without waiting at the open.
pub fn open_read_own(path: &Path) -> io::Result<File> {
    checked(open_read_nonblocking(path)?, path)
}

/// Opens a file to read without waiting at the open (a FIFO with no
/// writer), never through a symlink; reads of a regular file are as usual.
pub fn open_read_nonblocking(path: &Path) -> io::Result<File> {
    options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Replaces `path` whole with `bytes`: written under a random name made
/// new in the same folder, then renamed over it, so a reader sees the old
/// file or the new one, and nothing planted there is written through.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{:016x}", random_u64()?));
    let written = options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes));
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// 64 random bits from the kernel.
pub fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    random_bytes(&mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

/// `n` random bytes as hex: a token, a session id.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Fills `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`,
        // which we own mutably for the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match n {
            n if n > 0 => filled += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// `file` if it is a regular file of this user's, narrowed to 0600.
fn checked(file: File, path: &Path) -> io::Result<File> {
    let meta = file.metadata()?;
    let refuse = |why: String| {
        let msg = format!("`{}` {why}; remove it", path.display());
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            Refused(msg),
        ))
    };
    if !meta.is_file() {
        return refuse("is not a regular file".into());
    }
    if meta.uid() != me() {
        return refuse(format!("belongs to uid {}, not to you", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn folders_and_files_are_private_and_symlinks_are_not_followed() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("state");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let victim = top.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let planted = dir.join("planted");
        symlink(&victim, &planted).unwrap();
        for open in [open_append, open_rw, create] {
            let e = open(&planted).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

        let card = dir.join("card.json");
        replace(&card, b"{}").unwrap();
        assert_eq!(mode(&card), 0o600);
        // A symlink planted at the card's name is replaced, not written through.
        std::fs::remove_file(&card).unwrap();
        symlink(&victim, &card).unwrap();
        replace(&card, b"{\"token\":1}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&card).unwrap().is_symlink());

        // An older version's looser file is narrowed when opened.
        let old = dir.join("old");
        std::fs::write(&old, "x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_append(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
    }

    #[test]
    fn a_state_directory_others_may_write_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare(&dir).unwrap_err().to_string();
        assert!(
            e.contains("may be written by group or others (mode 777)"),
            "{e}"
        );
        assert!(e.contains("chmod 700"), "{e}");
        // Readable by others only: narrowed.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
