//! The daemon's card in the state directory: where it listens, its pid, and
//! the token that state-changing API calls must present.
//!
//! `<state_dir>/daemon.json` is written with mode 0600 at start and removed
//! at a clean stop; a card whose pid is gone is ignored, so a crash leaves
//! nothing that misleads the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How to reach a running daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// The daemon's pid.
    pub pid: u32,
    /// The API's address.
    pub addr: SocketAddr,
    /// The bearer token for state-changing calls.
    pub token: String,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("daemon.json")
}

impl DaemonInfo {
    /// A card for this process, with a fresh random token.
    pub fn new(addr: SocketAddr) -> std::io::Result<DaemonInfo> {
        Ok(DaemonInfo {
            pid: std::process::id(),
            addr,
            token: crate::state::random_hex(16)?,
        })
    }

    /// Writes the card, readable by its owner only.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        crate::state::prepare(state_dir)?;
        let card = serde_json::to_vec(self).expect("a card always serialises");
        crate::state::replace(&path(state_dir), &card)
    }

    /// The card of a live daemon on this state directory, if there is one.
    pub fn read(state_dir: &Path) -> Option<DaemonInfo> {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut crate::state::open_read(&path(state_dir)).ok()?,
            &mut text,
        )
        .ok()?;
        let info: DaemonInfo = serde_json::from_str(&text).ok()?;
        crate::process::exists(info.pid).then_some(info)
    }

    /// Removes the card, if it is this process's.
    pub fn remove(state_dir: &Path) {
        if Self::read(state_dir).is_some_and(|i| i.pid == std::process::id()) {
            let _ = std::fs::remove_file(path(state_dir));
        }
    }
}
