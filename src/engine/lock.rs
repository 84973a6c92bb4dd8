//! One run per journal: an exclusive OS file lock on `<journal>.lock`. The kernel releases it
//! when the process ends, however it ends, so there is no stale lock to judge or take over.
//! The file also names the holder, for the refusal message.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::journal::{now, private_file};
use crate::error::{Error, Result};

/// Who holds a journal: written into `<journal>.lock` while held.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When it took the lock.
    pub since: String,
    /// What it runs (`migrate`, `resume`, `copy`, `sync`).
    pub command: String,
}

/// An exclusive hold on a journal, released when dropped or when the process dies.
#[derive(Debug)]
pub struct JournalLock {
    _file: std::fs::File,
    path: PathBuf,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

impl JournalLock {
    /// Takes the lock next to `journal`, or refuses naming who holds it.
    pub fn acquire(journal: &Path, command: &str) -> Result<JournalLock> {
        let path = PathBuf::from(format!("{}.lock", journal.display()));
        let io = |what: &str, e| Error::io(format!("{what} lock {}", path.display()), e);
        let mut file = private_file(&path, false).map_err(|e| io("opening", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let held_by = serde_json::from_str::<LockHolder>(&text)
                    .map(|h| {
                        format!(
                            "`efs2atlas {}` (pid {} on host {}, since {})",
                            h.command, h.pid, h.host, h.since
                        )
                    })
                    .unwrap_or_else(|_| "another efs2atlas".into());
                return Err(Error::refused(format!(
                    "journal {} is in use by {held_by}; wait for it to finish (the lock goes away with that process)",
                    journal.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("taking", e)),
        }
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            since: now(),
            command: command.into(),
        };
        let body = serde_json::to_vec_pretty(&me)
            .map_err(|e| Error::other(format!("encoding lock: {e}")))?;
        file.set_len(0).map_err(|e| io("writing", e))?;
        file.rewind().map_err(|e| io("writing", e))?;
        file.write_all(&body).map_err(|e| io("writing", e))?;
        Ok(JournalLock { _file: file, path })
    }
}

impl Drop for JournalLock {
    fn drop(&mut self) {
        // Emptied, not removed: a waiting process may hold the file open, and removing it
        // would let a third take a lock on a new file at the same time.
        let _ = self._file.set_len(0);
        tracing::debug!("released {}", self.path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_journal_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j.json");
        let held = JournalLock::acquire(&j, "migrate").unwrap();
        let e = JournalLock::acquire(&j, "resume").unwrap_err().to_string();
        assert!(
            e.contains("in use by `efs2atlas migrate`")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        let _again = JournalLock::acquire(&j, "resume").unwrap();
    }

    #[test]
    fn a_lock_file_left_behind_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j.json");
        std::fs::write(
            dir.path().join("j.json.lock"),
            br#"{"pid": 4000000, "host": "elsewhere", "since": "then", "command": "migrate"}"#,
        )
        .unwrap();
        let _taken = JournalLock::acquire(&j, "resume").unwrap();
    }
}
