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
    /// What the run has waited on with no progress for a while (the watchdog's line), while
    /// it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// An exclusive hold on a journal, released when dropped or when the process dies.
#[derive(Debug)]
pub struct JournalLock {
    file: std::fs::File,
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
        // A holder removes the file as it finishes: a lock taken on a file that was removed
        // meanwhile locks nothing, so take it again on the file now at the path.
        for _ in 0..10 {
            let file = private_file(&path, false).map_err(|e| io_err(&path, "opening", e))?;
            take(&file, journal, &path)?;
            if same_file(&file, &path) {
                return Self::hold(file, path, command);
            }
        }
        Err(Error::refused(format!(
            "journal {} keeps changing hands; try again",
            journal.display()
        )))
    }

    /// Writes who holds the lock into the held file.
    fn hold(mut file: std::fs::File, path: PathBuf, command: &str) -> Result<JournalLock> {
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            since: now(),
            command: command.into(),
            waiting: None,
        };
        let body = serde_json::to_vec_pretty(&me)
            .map_err(|e| Error::other(format!("encoding lock: {e}")))?;
        file.set_len(0).map_err(|e| io_err(&path, "writing", e))?;
        file.rewind().map_err(|e| io_err(&path, "writing", e))?;
        file.write_all(&body)
            .map_err(|e| io_err(&path, "writing", e))?;
        Ok(JournalLock { file, path })
    }
}

/// Notes in the lock file of `journal` (which this process holds) what the run waits on, or
/// that it moves again (`None`), for `status` to show. Best effort: a line on the screen said
/// it already.
pub fn note_waiting(journal: &Path, waiting: Option<&str>) {
    let path = PathBuf::from(format!("{}.lock", journal.display()));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let Ok(mut h) = serde_json::from_str::<LockHolder>(&text) else {
        return;
    };
    if h.pid != std::process::id() {
        return;
    }
    h.waiting = waiting.map(str::to_string);
    if let (Ok(body), Ok(mut f)) = (
        serde_json::to_vec_pretty(&h),
        std::fs::OpenOptions::new().write(true).open(&path),
    ) {
        // In place: the lock is this file (its inode), so it is never replaced.
        let _ = f.set_len(0).and_then(|_| f.write_all(&body));
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} lock {}", path.display()), e)
}

/// The process running `journal` right now, if any (`status` tells a live run from one that
/// died: a step journaled as running with no holder was stopped).
pub fn holder(journal: &Path) -> Option<LockHolder> {
    let path = PathBuf::from(format!("{}.lock", journal.display()));
    let mut file = std::fs::File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Some(serde_json::from_str(&text).unwrap_or(LockHolder {
                pid: 0,
                host: "unknown".into(),
                since: String::new(),
                command: "efs2atlas".into(),
                waiting: None,
            }))
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Takes the OS lock on `file`, or refuses naming the holder it records.
fn take(file: &std::fs::File, journal: &Path, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = (&*file).read_to_string(&mut text);
            let held_by = serde_json::from_str::<LockHolder>(&text)
                .map(|h| {
                    format!(
                        "`efs2atlas {}` (pid {} on host {}, since {})",
                        h.command, h.pid, h.host, h.since
                    )
                })
                .unwrap_or_else(|_| "another efs2atlas".into());
            Err(Error::refused(format!(
                "journal {} is in use by {held_by}; wait for it to finish (the lock goes away with that process)",
                journal.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(path, "taking", e)),
    }
}

/// True when `path` still names the very file `file` is.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl Drop for JournalLock {
    fn drop(&mut self) {
        // Removed while still held; anyone who opened it meanwhile sees it is gone
        // (`same_file`) and takes the lock on a new one. The kernel releases the lock when
        // the file closes, right after.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
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
        assert!(
            !dir.path().join("j.json.lock").exists(),
            "removed when released"
        );
        let _again = JournalLock::acquire(&j, "resume").unwrap();
    }

    #[test]
    fn holder_names_a_live_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j.json");
        assert_eq!(holder(&journal), None);
        let lock = JournalLock::acquire(&journal, "migrate").unwrap();
        let h = holder(&journal).unwrap();
        assert_eq!((h.pid, h.command.as_str()), (std::process::id(), "migrate"));
        drop(lock);
        assert_eq!(holder(&journal), None);
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
