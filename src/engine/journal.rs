//! The journal: durable progress in one JSON file, written atomically (temp file, fsync,
//! rename, fsync of the directory) with mode 0600. It never holds credentials: URIs are
//! stored redacted, and only `_id`s and counts are kept of the data.
//!
//! On disk it is an envelope: `{"format": 2, "checksum": "xxh3:…", "journal": {…}}`, where the
//! checksum covers the exact bytes of the `journal` body, so a journal changed outside
//! efs2atlas is refused instead of acted on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::state::MigrateState;
use crate::error::{Error, Result};
use crate::mongo::progress::{CollectionProgress, CollectionSync, ProgressStore};

/// The journal format this build writes and understands.
pub const FORMAT: u32 = 2;

/// The whole journal document (the envelope's body).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    /// The efs2atlas version that wrote it.
    pub tool_version: String,
    /// `copy`, `sync` or `migrate`.
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
    pub migrate: Option<MigrateState>,
    /// Collections `sync` finished (source namespace → what it did).
    #[serde(default)]
    pub sync: BTreeMap<String, CollectionSync>,
}

/// The file: the body and the checksum of its exact bytes.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    format: u32,
    checksum: String,
    #[serde(borrow)]
    journal: &'a RawValue,
}

/// The checksum of a journal body.
fn checksum_of(body: &[u8]) -> String {
    format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(body))
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

/// Now as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Journal {
    /// A fresh journal.
    pub fn new(kind: &str, fingerprint: &str) -> Journal {
        let t = now();
        Journal {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            kind: kind.into(),
            fingerprint: fingerprint.into(),
            created_at: t.clone(),
            updated_at: t,
            copy: CopyState::default(),
            migrate: None,
            sync: BTreeMap::new(),
        }
    }

    /// Reads a journal; `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Journal>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading journal {}", path.display()), e)),
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|message| Error::journal(path.display().to_string(), message))
    }

    /// Checks and decodes a journal file's text; the error says what is wrong and what to do.
    fn parse(text: &str) -> std::result::Result<Journal, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "is not valid JSON ({e}); it may be truncated or hand-edited. Move it aside to start over (the target may then hold a partial copy: use --drop)"
            )
        })?;
        let format = v
            .get("format")
            .and_then(|f| f.as_u64())
            .ok_or("has no format version; it is not an efs2atlas journal")?;
        if format > FORMAT as u64 {
            return Err(format!(
                "was written by a newer efs2atlas (journal format {format}, this build understands {FORMAT}); use that version to resume"
            ));
        }
        if format < FORMAT as u64 {
            return Err(format!(
                "was written by an older efs2atlas (journal format {format}); finish that run with the version that started it, or move the journal aside to start over"
            ));
        }
        let env: Envelope<'_> = serde_json::from_str(text)
            .map_err(|e| format!("has unexpected content ({e}); it may be hand-edited"))?;
        if env.checksum != checksum_of(env.journal.get().as_bytes()) {
            return Err("was changed outside efs2atlas (its checksum does not match its content); refusing to act on it. Restore the original, or move it aside to start over (the target may then hold a partial copy: use --drop)".into());
        }
        serde_json::from_str(env.journal.get())
            .map_err(|e| format!("has unexpected content ({e}); it may be hand-edited"))
    }

    /// Target namespaces efs2atlas created, as this journal records them (copied
    /// collections, and collections a sync created).
    pub fn created_targets(&self) -> BTreeSet<String> {
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
        let encode = |e: serde_json::Error| Error::other(format!("encoding journal: {e}"));
        let body = serde_json::to_string_pretty(self).map_err(encode)?;
        let journal = RawValue::from_string(body).map_err(encode)?;
        let env = Envelope {
            format: FORMAT,
            checksum: checksum_of(journal.get().as_bytes()),
            journal: &journal,
        };
        let text = serde_json::to_vec_pretty(&env).map_err(encode)?;
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
        let mut f = private_file(&tmp, true).map_err(|e| Error::io(ctx("creating"), e))?;
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

/// Opens (creating, mode 0600) a file only its owner may read.
pub fn private_file(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// A journal shared by concurrent tasks, saved at most every `interval` unless forced.
pub struct SharedJournal {
    path: PathBuf,
    state: Mutex<(Journal, Instant)>,
    interval: Duration,
    /// Whether the copy keeps ledgers next to this journal.
    ledger: bool,
}

impl SharedJournal {
    /// Wraps a journal that lives at `path`.
    pub fn new(path: PathBuf, journal: Journal, interval: Duration) -> SharedJournal {
        SharedJournal {
            path,
            state: Mutex::new((journal, Instant::now())),
            interval,
            ledger: false,
        }
    }

    /// Keeps ledgers (what the target acknowledged) in a directory next to the journal.
    pub fn with_ledger(mut self) -> SharedJournal {
        self.ledger = true;
        self
    }

    /// The directory the ledgers of this journal live in.
    pub fn ledger_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.ledger", self.path.display()))
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
            .map_err(|_| Error::other("journal lock poisoned"))?;
        let r = f(&mut g.0);
        if force || g.1.elapsed() >= self.interval {
            g.0.save(&self.path)?;
            g.1 = Instant::now();
        }
        Ok(r)
    }

    /// Reads the current state without copying all of it.
    pub fn read<R>(&self, f: impl FnOnce(&Journal) -> R) -> Result<R> {
        let g = self
            .state
            .lock()
            .map_err(|_| Error::other("journal lock poisoned"))?;
        Ok(f(&g.0))
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Result<Journal> {
        self.read(Journal::clone)
    }

    /// Saves now.
    pub fn flush(&self) -> Result<()> {
        self.update(true, |_| ())
    }
}

impl ProgressStore for SharedJournal {
    fn ledger_dir(&self) -> Option<PathBuf> {
        self.ledger.then(|| self.ledger_path())
    }

    fn copied(&self, ns: &str) -> Result<Option<CollectionProgress>> {
        self.read(|j| j.copy.collections.get(ns).cloned())
    }

    fn record_copy(&self, ns: &str, progress: CollectionProgress, force: bool) -> Result<()> {
        self.update(force, |j| {
            j.copy.collections.insert(ns.to_string(), progress);
        })
    }

    fn synced(&self) -> Result<BTreeMap<String, CollectionSync>> {
        self.read(|j| j.sync.clone())
    }

    fn record_sync(&self, ns: &str, done: &CollectionSync) -> Result<()> {
        self.update(true, |j| {
            j.sync.insert(ns.to_string(), done.clone());
        })
    }

    fn flush(&self) -> Result<()> {
        SharedJournal::flush(self)
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
        let refused = |t: &str, says: &str| {
            std::fs::write(&p, t).unwrap();
            let e = Journal::load(&p).unwrap_err().to_string();
            assert!(e.contains(says), "wants '{says}': {e}");
        };
        refused(&text[..text.len() / 2], "truncated");
        refused(
            &text.replace("\"format\": 2", "\"format\": 99"),
            "newer efs2atlas",
        );
        refused(
            &text.replace("\"format\": 2", "\"format\": 1"),
            "older efs2atlas",
        );
        refused("{\"hello\": 1}", "not an efs2atlas journal");
        // Any change to the body, even one that still parses, is caught by the checksum.
        refused(
            &text.replace("\"kind\": \"copy\"", "\"kind\": \"migrate\""),
            "changed outside efs2atlas",
        );
        refused(
            &text.replace("\"checksum\"", "\"checksun\""),
            "unexpected content",
        );
        // The envelope's own layout does not matter, only the body's bytes.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let body = text.find("\"journal\": ").map(|i| &text[i + 11..]).unwrap();
        let body = &body[..body.rfind('}').unwrap()];
        let compact = format!(
            "{{\"checksum\":{},\"format\":2,\"journal\":{}}}",
            v["checksum"],
            body.trim_end()
        );
        std::fs::write(&p, compact).unwrap();
        assert!(Journal::load(&p).unwrap().is_some());
    }
}
