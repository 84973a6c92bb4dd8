//! The journal: durable progress in one JSON file, written atomically (temp file, fsync,
//! rename, fsync of the directory) with mode 0600. It never holds credentials: URIs are
//! stored redacted, and only `_id`s and counts are kept of the data.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The journal format this build writes and understands.
pub const FORMAT: u32 = 1;

/// The whole journal document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    /// Format version; a newer one is refused.
    pub format: u32,
    /// The efs2atlas version that wrote it.
    pub tool_version: String,
    /// `copy` or `migrate`.
    pub kind: String,
    /// Identifies the run (source, target, selection); a different run refuses to reuse it.
    pub fingerprint: String,
    /// When the run started (RFC 3339).
    pub created_at: String,
    /// Last write (RFC 3339).
    pub updated_at: String,
    /// Data copy progress.
    #[serde(default)]
    pub copy: CopyState,
    /// Migration steps (for `migrate` journals).
    #[serde(default)]
    pub migrate: Option<crate::migrate::MigrateState>,
    /// Collections `sync` finished (source namespace → what it did).
    #[serde(default)]
    pub sync: BTreeMap<String, crate::mongo::sync::CollectionSync>,
    /// xxh3 of the file's own bytes (with this field empty): a journal changed outside
    /// efs2atlas is refused instead of acted on. Last, so it is the last match in the text.
    #[serde(default)]
    pub checksum: String,
}

const CHECKSUM_KEY: &str = "\"checksum\": \"";

/// The checksum of a journal text whose checksum field is empty.
fn checksum_of(text: &[u8]) -> String {
    format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(text))
}

/// The checksum a journal text records, and the text with that field emptied.
fn split_checksum(text: &str) -> Option<(String, String)> {
    let at = text.rfind(CHECKSUM_KEY)? + CHECKSUM_KEY.len();
    let end = at + text[at..].find('"')?;
    let recorded = text[at..end].to_string();
    let emptied = format!("{}{}", &text[..at], &text[end..]);
    Some((recorded, emptied))
}

/// Progress of a data copy.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CopyState {
    /// Source URI, redacted.
    pub source: String,
    /// Target URI, redacted.
    pub target: String,
    /// Per source namespace.
    pub collections: BTreeMap<String, CollectionProgress>,
}

/// Progress of one collection.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CollectionProgress {
    /// Target namespace.
    pub target: String,
    /// The target collection exists with the source's options.
    pub created: bool,
    /// Every document is on the target.
    pub data_done: bool,
    /// Indexes were built (or their failures recorded).
    pub indexes_done: bool,
    /// The last acknowledged `_id`, as canonical extended JSON.
    pub last_id: Option<serde_json::Value>,
    /// True while the source has returned `_id`s in MongoDB order, so resuming after
    /// `last_id` is safe; false means resume rescans (duplicates are checked, not rewritten).
    pub order_trusted: bool,
    /// Documents acknowledged by the target.
    pub docs: u64,
    /// Bytes acknowledged by the target.
    pub bytes: u64,
    /// Index builds that failed, with the server's reason.
    #[serde(default)]
    pub index_errors: Vec<String>,
    /// Unique index builds turned away by a duplicate key in documents copied while the app
    /// wrote (a swap straddled the scan): left to `sync`, which builds them after patching.
    #[serde(default)]
    pub index_deferred: Vec<String>,
}

/// Now as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Journal {
    /// A fresh journal.
    pub fn new(kind: &str, fingerprint: &str) -> Journal {
        let t = now();
        Journal {
            format: FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            kind: kind.into(),
            fingerprint: fingerprint.into(),
            created_at: t.clone(),
            updated_at: t,
            copy: CopyState::default(),
            migrate: None,
            sync: BTreeMap::new(),
            checksum: String::new(),
        }
    }

    /// Reads a journal; `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Journal>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading journal {}", path.display()), e)),
        };
        let bad = |m: String| Error::Journal {
            path: path.display().to_string(),
            message: m,
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "is not valid JSON ({e}); it may be truncated or hand-edited. Move it aside to start over (the target may then hold a partial copy: use --drop)"
            ))
        })?;
        let format = v
            .get("format")
            .and_then(|f| f.as_u64())
            .ok_or_else(|| bad("has no format version; it is not an efs2atlas journal".into()))?;
        if format > FORMAT as u64 {
            return Err(bad(format!(
                "was written by a newer efs2atlas (journal format {format}, this build understands {FORMAT}); use that version to resume"
            )));
        }
        // Journals without a checksum (written before it existed) are still read.
        if let Some((recorded, emptied)) = split_checksum(&text)
            && !recorded.is_empty()
            && recorded != checksum_of(emptied.as_bytes())
        {
            return Err(bad(
                "was changed outside efs2atlas (its checksum does not match its content); refusing to act on it. Restore the original, or move it aside to start over (the target may then hold a partial copy: use --drop)".into(),
            ));
        }
        serde_json::from_value(v).map(Some).map_err(|e| {
            bad(format!(
                "has unexpected content ({e}); it may be hand-edited"
            ))
        })
    }

    /// Target namespaces efs2atlas created, as this journal records them (copied
    /// collections, and collections a sync created).
    pub fn created_targets(&self) -> std::collections::BTreeSet<String> {
        self.copy
            .collections
            .values()
            .map(|p| p.target.clone())
            .chain(
                self.sync
                    .values()
                    .filter(|c| c.created)
                    .map(|c| c.target.clone()),
            )
            .collect()
    }

    /// Writes the journal atomically with mode 0600.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated_at = now();
        self.checksum.clear();
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Other(format!("encoding journal: {e}")))?;
        self.checksum = checksum_of(text.as_bytes());
        let at = text
            .rfind(CHECKSUM_KEY)
            .map(|i| i + CHECKSUM_KEY.len())
            .ok_or_else(|| Error::Other("encoding journal: no checksum field".into()))?;
        let text = format!("{}{}{}", &text[..at], self.checksum, &text[at..]).into_bytes();
        write_atomic(path, &text)
    }
}

/// Writes `bytes` to `path` atomically: temp file (0600) + fsync + rename + directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journal".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let ctx = |what: &str| format!("{what} journal {}", path.display());
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| Error::io(ctx("creating"), e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io(ctx("writing"), e))?;
        f.sync_all().map_err(|e| Error::io(ctx("syncing"), e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(ctx("replacing"), e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A journal shared by concurrent tasks, saved at most every `interval` unless forced.
pub struct SharedJournal {
    path: PathBuf,
    state: Mutex<(Journal, Instant)>,
    interval: Duration,
}

impl SharedJournal {
    /// Wraps a journal that lives at `path`.
    pub fn new(path: PathBuf, journal: Journal, interval: Duration) -> SharedJournal {
        SharedJournal {
            path,
            state: Mutex::new((journal, Instant::now())),
            interval,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the journal; saves when forced or when the interval has passed.
    pub fn update<R>(&self, force: bool, f: impl FnOnce(&mut Journal) -> R) -> Result<R> {
        let mut g = self
            .state
            .lock()
            .map_err(|_| Error::Other("journal lock poisoned".into()))?;
        let r = f(&mut g.0);
        if force || g.1.elapsed() >= self.interval {
            g.0.save(&self.path)?;
            g.1 = Instant::now();
        }
        Ok(r)
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Result<Journal> {
        Ok(self
            .state
            .lock()
            .map_err(|_| Error::Other("journal lock poisoned".into()))?
            .0
            .clone())
    }

    /// Saves now.
    pub fn flush(&self) -> Result<()> {
        self.update(true, |_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.json");
        let mut j = Journal::new("copy", "abc");
        j.copy.collections.insert(
            "a.b".into(),
            CollectionProgress {
                target: "a.b".into(),
                docs: 5,
                ..Default::default()
            },
        );
        j.save(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let back = Journal::load(&p).unwrap().unwrap();
        assert_eq!(back.copy, j.copy);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
        assert!(
            Journal::load(&dir.path().join("missing.json"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_journals_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.json");
        let mut j = Journal::new("copy", "abc");
        j.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() / 2]).unwrap();
        assert!(
            Journal::load(&p)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        std::fs::write(&p, text.replace("\"format\": 1", "\"format\": 99")).unwrap();
        assert!(
            Journal::load(&p)
                .unwrap_err()
                .to_string()
                .contains("newer efs2atlas")
        );
        std::fs::write(&p, "{\"hello\": 1}").unwrap();
        assert!(
            Journal::load(&p)
                .unwrap_err()
                .to_string()
                .contains("not an efs2atlas journal")
        );
        // Any change to the content, even one that still parses, is caught by the checksum.
        std::fs::write(
            &p,
            text.replace("\"kind\": \"copy\"", "\"kind\": \"migrate\""),
        )
        .unwrap();
        assert!(
            Journal::load(&p)
                .unwrap_err()
                .to_string()
                .contains("changed outside efs2atlas")
        );
        // A journal without a checksum (older build) is read, and its content still checked.
        let (_, unchecked) = split_checksum(&text).unwrap();
        std::fs::write(&p, &unchecked).unwrap();
        assert!(Journal::load(&p).unwrap().is_some());
        std::fs::write(
            &p,
            unchecked
                .replace("\"docs\"", "\"docz\"")
                .replace("\"kind\": \"copy\"", "\"kind\": 5"),
        )
        .unwrap();
        assert!(
            Journal::load(&p)
                .unwrap_err()
                .to_string()
                .contains("unexpected content")
        );
    }
}

/// Who holds a journal: written into `<journal>.lock`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// The process's start time (Linux clock ticks since boot), to tell a reused pid apart.
    pub start: Option<u64>,
    /// When it took the lock.
    pub since: String,
    /// What it runs (`migrate`, `resume`, `copy`).
    pub command: String,
}

/// An exclusive hold on a journal; released (the lock file removed) on drop.
#[derive(Debug)]
pub struct JournalLock {
    path: PathBuf,
}

impl Drop for JournalLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The start time of a process (field 22 of /proc/PID/stat), when the system exposes it.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True when the holder is certainly gone: same host, and no process with that pid and
/// start time exists.
fn holder_gone(h: &LockHolder) -> bool {
    if h.host != host_name() {
        return false;
    }
    match process_start(h.pid) {
        None => {
            !Path::new(&format!("/proc/{}", h.pid)).exists() && Path::new("/proc/self").exists()
        }
        Some(start) => h.start.is_some_and(|s| s != start),
    }
}

impl JournalLock {
    /// Takes the lock next to `journal`, or refuses naming who holds it. A lock left by a
    /// process that no longer exists on this host is taken over.
    pub fn acquire(journal: &Path, command: &str) -> Result<JournalLock> {
        let path = PathBuf::from(format!("{}.lock", journal.display()));
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            start: process_start(std::process::id()),
            since: now(),
            command: command.into(),
        };
        let body = serde_json::to_vec_pretty(&me)
            .map_err(|e| Error::Other(format!("encoding lock: {e}")))?;
        for _ in 0..2 {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(&path) {
                Ok(mut f) => {
                    f.write_all(&body)
                        .map_err(|e| Error::io(format!("writing lock {}", path.display()), e))?;
                    let _ = f.sync_all();
                    return Ok(JournalLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<LockHolder> = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                    match holder {
                        Some(h) if holder_gone(&h) => {
                            tracing::warn!(
                                "taking over the lock of pid {} on {} (that process is gone)",
                                h.pid,
                                h.host
                            );
                            let _ = std::fs::remove_file(&path);
                        }
                        Some(h) => {
                            return Err(Error::Refused(format!(
                                "journal {} is in use by `efs2atlas {}` (pid {} on host {}, since {}); wait for it to finish. If that process is gone, delete {}",
                                journal.display(),
                                h.command,
                                h.pid,
                                h.host,
                                h.since,
                                path.display()
                            )));
                        }
                        None => {
                            return Err(Error::Refused(format!(
                                "journal {} is locked by {}, which cannot be read; if no efs2atlas runs on it, delete that file",
                                journal.display(),
                                path.display()
                            )));
                        }
                    }
                }
                Err(e) => return Err(Error::io(format!("creating lock {}", path.display()), e)),
            }
        }
        Err(Error::Refused(format!(
            "could not take the lock {}",
            path.display()
        )))
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_live_holder_is_named_and_a_dead_one_is_taken_over() {
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
        assert!(!dir.path().join("j.json.lock").exists());

        // A lock from a process that no longer exists on this host.
        let dead = LockHolder {
            pid: 4_000_000,
            host: host_name(),
            start: Some(1),
            since: now(),
            command: "migrate".into(),
        };
        std::fs::write(
            dir.path().join("j.json.lock"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let _taken = JournalLock::acquire(&j, "resume").unwrap();

        // Another host's lock is never taken over.
        drop(_taken);
        let other = LockHolder {
            pid: 1,
            host: "elsewhere".into(),
            start: None,
            since: now(),
            command: "migrate".into(),
        };
        std::fs::write(
            dir.path().join("j.json.lock"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        let e = JournalLock::acquire(&j, "resume").unwrap_err().to_string();
        assert!(e.contains("host elsewhere") && e.contains("delete"), "{e}");
    }
}
