//! The ledger: per collection, the (`_id`, hash of the exact bytes, size) of every document the
//! target acknowledged, in `_id` order, in an append-only file next to the journal. It lets
//! the frozen sync compare the source with what Atlas holds without reading Atlas back.
//!
//! A record is `[u32 n][n bytes: the document {_id: …}][u128 hash][u32 size]`, little-endian.
//! The journal keeps a [`LedgerMark`] per collection (length, record count, and a hash chain
//! over every record): a file shorter, longer or different than its mark is refused as
//! damaged, and callers fall back to reading both sides. No document content beyond the
//! `_id`, and no credentials, are written.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mongodb::bson::{RawBson, RawDocumentBuf};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mongo::stream::Item;

/// Where a collection's ledger ends, as the journal records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMark {
    /// Which file: each sync round writes the next generation beside the last, so a crash
    /// between writing it and journaling it leaves the journaled one intact.
    #[serde(default)]
    pub generation: u32,
    /// Bytes in the file.
    pub len: u64,
    /// Records in the file.
    pub count: u64,
    /// xxh3 chain over the records (each record hashed with the previous value as seed).
    pub chain: u64,
}

impl LedgerMark {
    /// An empty ledger of the given generation.
    pub fn empty(generation: u32) -> LedgerMark {
        LedgerMark {
            generation,
            ..LedgerMark::default()
        }
    }

    fn add(&mut self, record: &[u8]) {
        self.len += record.len() as u64;
        self.count += 1;
        self.chain = xxhash_rust::xxh3::xxh3_64_with_seed(record, self.chain);
    }
}

/// The ledger file of source namespace `ns`, generation `generation`, in directory `dir`.
pub fn path_in(dir: &Path, ns: &str, generation: u32) -> PathBuf {
    dir.join(format!(
        "{:016x}.{generation}.ledger",
        xxhash_rust::xxh3::xxh3_64(ns.as_bytes())
    ))
}

/// The file listing what the sync round that wrote ledger `generation` patched.
pub fn patched_path(dir: &Path, ns: &str, generation: u32) -> PathBuf {
    dir.join(format!(
        "{:016x}.{generation}.patched",
        xxhash_rust::xxh3::xxh3_64(ns.as_bytes())
    ))
}

fn damaged(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::other(format!("ledger {} is damaged ({why})", path.display()))
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} ledger {}", path.display()), e)
}

/// One record's bytes.
fn encode(id: &RawBson, hash: u128, size: u32) -> Result<Vec<u8>> {
    let mut doc = RawDocumentBuf::new();
    doc.append("_id", id.clone());
    let bytes = doc.as_bytes();
    let mut out = Vec::with_capacity(4 + bytes.len() + 20);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    Ok(out)
}

/// Appends records for one collection, continuing exactly where its mark says.
pub struct LedgerWriter {
    path: PathBuf,
    file: BufWriter<File>,
    mark: LedgerMark,
}

impl LedgerWriter {
    /// A new, empty ledger of `generation` at `path` (replacing any file there).
    pub fn create(path: &Path, generation: u32) -> Result<LedgerWriter> {
        let mut w = LedgerWriter::open(path, None)?;
        w.mark.generation = generation;
        Ok(w)
    }

    /// Opens the ledger at `path` to continue after `mark` (a fresh file when `None`); what
    /// lies beyond the mark (appended but never journaled) is cut off. The kept part is
    /// checked against the mark first.
    pub fn open(path: &Path, mark: Option<LedgerMark>) -> Result<LedgerWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(path, "creating the directory of", e))?;
        }
        let mark = match mark {
            Some(m) => {
                LedgerReader::open(path, m)?.check_to_end()?;
                m
            }
            None => LedgerMark::default(),
        };
        let mut file = private(path).map_err(|e| io(path, "opening", e))?;
        file.set_len(mark.len)
            .map_err(|e| io(path, "truncating", e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| io(path, "seeking in", e))?;
        Ok(LedgerWriter {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            mark,
        })
    }

    /// Appends one acknowledged document.
    pub fn append(&mut self, id: &RawBson, hash: u128, size: u32) -> Result<()> {
        let record = encode(id, hash, size)?;
        self.file
            .write_all(&record)
            .map_err(|e| io(&self.path, "writing", e))?;
        self.mark.add(&record);
        Ok(())
    }

    /// Hands what was appended to the OS and returns the mark to journal.
    pub fn flush(&mut self) -> Result<LedgerMark> {
        self.file
            .flush()
            .map_err(|e| io(&self.path, "writing", e))?;
        Ok(self.mark)
    }

    /// Flushes and syncs the file to disk.
    pub fn finish(&mut self) -> Result<LedgerMark> {
        let mark = self.flush()?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| io(&self.path, "syncing", e))?;
        Ok(mark)
    }
}

/// Writes the ledgers of a collection's parts, in order, as one ledger of generation 0 at
/// `out`, each part checked against its mark as it is read; returns the joined mark.
pub fn join(parts: &[(PathBuf, LedgerMark)], out: &Path) -> Result<LedgerMark> {
    let mut w = LedgerWriter::create(out, 0)?;
    for (path, mark) in parts {
        let mut r = LedgerReader::open(path, *mark)?;
        while let Some(item) = r.read_next()? {
            w.append(&item.id, item.hash, item.len as u32)?;
        }
    }
    w.finish()
}

/// Opens (creating, mode 0600) a ledger file for reading and writing.
fn private(path: &Path) -> std::io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Reads a collection's ledger in order, checking it against its mark as it goes: the end
/// of the file must come exactly at the mark, with the same chain.
pub struct LedgerReader {
    path: PathBuf,
    /// `None` for an empty ledger, which has no file.
    file: Option<BufReader<File>>,
    expected: LedgerMark,
    seen: LedgerMark,
}

impl LedgerReader {
    /// Opens the ledger at `path`, which must match `mark` (a missing file is damaged too).
    pub fn open(path: &Path, mark: LedgerMark) -> Result<LedgerReader> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && mark.len == 0 => {
                // Nothing was ever appended: an empty ledger needs no file.
                return Ok(LedgerReader {
                    path: path.to_path_buf(),
                    file: None,
                    expected: mark,
                    seen: LedgerMark::empty(mark.generation),
                });
            }
            Err(e) => return Err(damaged(path, format!("cannot open it: {e}"))),
        };
        let len = file.metadata().map_err(|e| io(path, "reading", e))?.len();
        if len < mark.len {
            return Err(damaged(
                path,
                format!("{len} bytes, the journal expects {}", mark.len),
            ));
        }
        Ok(LedgerReader {
            path: path.to_path_buf(),
            file: Some(BufReader::with_capacity(256 * 1024, file)),
            expected: mark,
            seen: LedgerMark::empty(mark.generation),
        })
    }

    /// The next record, or `None` at the mark (after checking the chain).
    pub fn read_next(&mut self) -> Result<Option<Item>> {
        if self.seen.len >= self.expected.len {
            if self.seen != self.expected {
                return Err(damaged(
                    &self.path,
                    "its records do not match the checksum the journal holds",
                ));
            }
            return Ok(None);
        }
        let mut n = [0u8; 4];
        self.read(&mut n)?;
        let n = u32::from_le_bytes(n) as usize;
        if n > 17 * 1024 * 1024 {
            return Err(damaged(&self.path, "a record claims an impossible size"));
        }
        let mut record = vec![0u8; 4 + n + 20];
        record[..4].copy_from_slice(&(n as u32).to_le_bytes());
        self.read(&mut record[4..])?;
        self.seen.add(&record);
        let doc = RawDocumentBuf::from_bytes(record[4..4 + n].to_vec())
            .map_err(|e| damaged(&self.path, e))?;
        let id = match doc.get("_id") {
            Ok(Some(v)) => v.to_raw_bson(),
            _ => return Err(damaged(&self.path, "a record has no _id")),
        };
        let hash = u128::from_le_bytes(record[4 + n..4 + n + 16].try_into().unwrap_or([0; 16]));
        let size = u32::from_le_bytes(record[4 + n + 16..].try_into().unwrap_or([0; 4]));
        Ok(Some(Item {
            id,
            hash,
            len: size as usize,
        }))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        let Some(file) = &mut self.file else {
            return Err(damaged(&self.path, "it is missing"));
        };
        file.read_exact(buf)
            .map_err(|e| damaged(&self.path, format!("it ends early: {e}")))
    }

    /// Reads every record, checking the whole file against the mark.
    pub fn check_to_end(mut self) -> Result<()> {
        while self.read_next()?.is_some() {}
        Ok(())
    }
}

impl crate::mongo::stream::Sorted for LedgerReader {
    async fn next_item(&mut self) -> Result<Option<Item>> {
        self.read_next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    fn ids(n: usize) -> Vec<RawBson> {
        (0..n)
            .map(|i| RawBson::String(format!("id{i:05}")))
            .chain(std::iter::once(RawBson::ObjectId(ObjectId::new())))
            .collect()
    }

    #[test]
    fn appends_resume_at_the_mark_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_in(dir.path(), "shop.users", 0);
        let all = ids(1000);
        let mut w = LedgerWriter::open(&p, None).unwrap();
        for (i, id) in all[..600].iter().enumerate() {
            w.append(id, i as u128 * 7, 100 + i as u32).unwrap();
        }
        let mark = w.flush().unwrap();
        // Appended but never journaled (the process died before the journal was written).
        w.append(&all[600], 1, 1).unwrap();
        w.finish().unwrap();
        let mut w = LedgerWriter::open(&p, Some(mark)).unwrap();
        for (i, id) in all[600..].iter().enumerate() {
            let i = i + 600;
            w.append(id, i as u128 * 7, 100 + i as u32).unwrap();
        }
        let mark = w.finish().unwrap();
        assert_eq!(mark.count, 1001);
        let mut r = LedgerReader::open(&p, mark).unwrap();
        for (i, id) in all.iter().enumerate() {
            let item = r.read_next().unwrap().unwrap();
            assert_eq!(&item.id, id);
            assert_eq!(item.hash, i as u128 * 7);
            assert_eq!(item.len, 100 + i);
        }
        assert!(r.read_next().unwrap().is_none());
    }

    #[test]
    fn a_changed_cut_or_missing_ledger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_in(dir.path(), "a.b", 0);
        let mut w = LedgerWriter::open(&p, None).unwrap();
        for (i, id) in ids(50).iter().enumerate() {
            w.append(id, i as u128, 10).unwrap();
        }
        let mark = w.finish().unwrap();
        let good = std::fs::read(&p).unwrap();
        let refused = |bytes: Option<&[u8]>| {
            match bytes {
                Some(b) => std::fs::write(&p, b).unwrap(),
                None => std::fs::remove_file(&p).unwrap(),
            }
            let e = LedgerReader::open(&p, mark)
                .and_then(LedgerReader::check_to_end)
                .unwrap_err();
            assert!(e.to_string().contains("damaged"), "{e}");
        };
        let mut flipped = good.clone();
        flipped[40] ^= 1;
        refused(Some(&flipped));
        refused(Some(&good[..good.len() - 3]));
        refused(None);
        // Extra bytes after the mark are someone's unjournaled tail, not damage.
        let mut longer = good.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&p, &longer).unwrap();
        LedgerReader::open(&p, mark)
            .unwrap()
            .check_to_end()
            .unwrap();
    }
}
