//! Work against the ledger instead of reading the target in full: the audit (is the target
//! exactly what it acknowledged?), a sync round (source merged with the ledger, only the
//! differences written, the next ledger written as they are acknowledged), and the read-back
//! of just the documents a round patched.

use std::path::Path;
use std::sync::{Arc, Mutex};

use mongodb::bson::{Bson, RawDocumentBuf, doc};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::compare::{Partial, Patch, compare_docs};
use crate::mongo::jobs::Item;
use crate::mongo::ledger::{self, LedgerMark, LedgerReader, LedgerWriter};
use crate::mongo::observe::Observer;
use crate::mongo::patch::Patcher;
use crate::mongo::progress::Counts;
use crate::mongo::stream::{
    self, Diff, DiffKind, Merge, ScanOpts, ScanSide, SortedScan, Tap, doc_hash, id_of, show_id,
};

/// Documents read back from the target per query when checking a round's patches.
const READ_BACK_BATCH: usize = 500;

/// What a sync round against the ledger did to one collection.
#[derive(Clone, Debug, Default)]
pub struct Round {
    /// Writes acknowledged.
    pub counts: Counts,
    /// Source documents read plus ledger records read.
    pub compared: u64,
    /// The ledger the round wrote (what the target holds now).
    pub ledger: LedgerMark,
    /// The list of what it patched (to read back).
    pub patched: LedgerMark,
}

/// The next ledger, written as the merge settles each document.
struct NextLedger(Arc<Mutex<LedgerWriter>>);

impl Tap for NextLedger {
    fn keep(&mut self, item: &stream::Item) -> Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::other("ledger writer poisoned"))?
            .append(&item.id, item.hash, item.len as u32)
    }
}

/// The patcher, noting every difference it is given in the round's patched list.
struct Noting<'a> {
    patcher: Patcher<'a>,
    patched: LedgerWriter,
}

impl Patch for Noting<'_> {
    async fn apply(&mut self, d: Diff) -> Result<bool> {
        let (hash, len) = match (&d.kind, &d.source_doc) {
            (DiffKind::Extra, _) | (_, None) => (0, 0),
            (_, Some(doc)) => (doc_hash(doc.as_bytes()), doc.as_bytes().len()),
        };
        self.patched.append(&d.id, hash, len as u32)?;
        self.patcher.apply(d).await
    }
}

fn source_scan(src: &Mongo, it: &Item) -> mongodb::Collection<RawDocumentBuf> {
    src.client
        .database(&it.source.db)
        .collection::<RawDocumentBuf>(&it.source.coll)
}

/// One sync round of `it` against its ledger `mark` in `dir`: the source is scanned, the
/// target is only written to. Returns what it did and the marks to journal; a failure leaves
/// the journaled ledger as it was (the next round finds the same differences again; the
/// patcher replaces rather than inserts, so writes already made are harmless).
pub async fn round(
    (src, dst): (&Mongo, &Mongo),
    it: &Item,
    dir: &Path,
    mark: LedgerMark,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<Round> {
    let ns = it.source.to_string();
    let next = mark.generation + 1;
    let reader = LedgerReader::open(&ledger::path_in(dir, &ns, mark.generation), mark)?;
    let opts = ScanOpts::keeping(it.read_shape()).on(src.role);
    let scan = SortedScan::open(&source_scan(src, it), opts)
        .await
        .map_err(|e| src.err(format!("reading {}", it.source), e))?;
    let mut merge = Merge::new(ScanSide::new(scan, src, ns.clone()), reader);
    let writer = Arc::new(Mutex::new(LedgerWriter::create(
        &ledger::path_in(dir, &ns, next),
        next,
    )?));
    merge.tap = Some(Box::new(NextLedger(writer.clone())));
    let mut noting = Noting {
        patcher: Patcher::new(src, dst, it).blind(),
        patched: LedgerWriter::create(&ledger::patched_path(dir, &ns, next), next)?,
    };
    let mut part = Partial::default();
    let merged = compare_docs(
        &mut merge,
        it,
        &mut part,
        0,
        Some(&mut noting),
        observer,
        cancel,
    )
    .await?;
    noting.patcher.finish().await?;
    drop(merge);
    let ledger = writer
        .lock()
        .map_err(|_| Error::other("ledger writer poisoned"))?
        .finish()?;
    Ok(Round {
        counts: noting.patcher.done,
        compared: merged.source_digest.count.max(merged.target_digest.count),
        ledger,
        patched: noting.patched.finish()?,
    })
}

/// What reading back a round's patches found.
#[derive(Clone, Debug, Default)]
pub struct ReadBack {
    /// Documents read back (or confirmed gone).
    pub checked: u64,
    /// The `_id`s that do not hold what was written.
    pub wrong: Vec<String>,
}

/// Reads back from the target only the documents the round that wrote `patched` patched, and
/// checks each holds exactly what was written (or is gone, for a delete).
pub async fn read_back(
    dst: &Mongo,
    it: &Item,
    dir: &Path,
    patched: LedgerMark,
) -> Result<ReadBack> {
    let path = ledger::patched_path(dir, &it.source.to_string(), patched.generation);
    let mut reader = LedgerReader::open(&path, patched)?;
    let coll = dst
        .client
        .database(&it.target.db)
        .collection::<RawDocumentBuf>(&it.target.coll);
    let mut out = ReadBack::default();
    loop {
        let mut batch = Vec::with_capacity(READ_BACK_BATCH);
        while batch.len() < READ_BACK_BATCH {
            match reader.read_next()? {
                Some(x) => batch.push(x),
                None => break,
            }
        }
        if batch.is_empty() {
            return Ok(out);
        }
        check_batch(dst, &coll, it, &batch, &mut out).await?;
    }
}

async fn check_batch(
    dst: &Mongo,
    coll: &mongodb::Collection<RawDocumentBuf>,
    it: &Item,
    batch: &[stream::Item],
    out: &mut ReadBack,
) -> Result<()> {
    let ids: Vec<Bson> = batch
        .iter()
        .filter_map(|x| Bson::try_from(x.id.clone()).ok())
        .collect();
    let read_err = |e| dst.err(format!("reading back {}", it.target), e);
    let mut cur = coll
        .find(doc! {"_id": {"$in": ids}})
        .await
        .map_err(read_err)?;
    let mut held = std::collections::HashMap::new();
    while cur.advance().await.map_err(read_err)? {
        let raw = cur.current();
        let bytes = raw.as_bytes();
        held.insert(show_id(&id_of(raw)), (doc_hash(bytes), bytes.len()));
    }
    for x in batch {
        out.checked += 1;
        let expected = (x.len > 0).then_some((x.hash, x.len));
        if held.get(&show_id(&x.id)).copied() != expected {
            out.wrong.push(show_id(&x.id));
        }
    }
    Ok(())
}

/// What the audit of one collection found.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Target documents read back.
    pub read: u64,
    /// Documents the target holds that it never acknowledged, or holds changed, or lost.
    pub differences: u64,
    /// A few of their `_id`s.
    pub examples: Vec<String>,
}

/// Reads the target of `it` in full and compares it with its ledger: anything else writing
/// to the target shows up here (run it while the app still writes to the source).
pub async fn audit(
    dst: &Mongo,
    it: &Item,
    dir: &Path,
    mark: LedgerMark,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<Audit> {
    let reader = LedgerReader::open(
        &ledger::path_in(dir, &it.source.to_string(), mark.generation),
        mark,
    )?;
    let coll = dst
        .client
        .database(&it.target.db)
        .collection::<RawDocumentBuf>(&it.target.coll);
    let scan = SortedScan::open(&coll, ScanOpts::hashing(it.read_shape()).on(dst.role))
        .await
        .map_err(|e| dst.err(format!("reading {}", it.target), e))?;
    let mut merge = Merge::new(ScanSide::new(scan, dst, it.target.to_string()), reader);
    let mut part = Partial::default();
    let none = None::<&mut crate::mongo::compare::NoPatch>;
    let merged = compare_docs(&mut merge, it, &mut part, 5, none, observer, cancel).await?;
    Ok(Audit {
        read: merged.source_digest.count,
        differences: part.missing + part.extra + part.different,
        examples: part.examples.iter().map(|e| e.id.clone()).collect(),
    })
}

/// The ledger directory and files of `ns` that generations before `keep` left behind.
pub fn remove_old(dir: &Path, ns: &str, keep: u32) {
    for g in keep.saturating_sub(3)..keep {
        for p in [
            ledger::path_in(dir, ns, g),
            ledger::patched_path(dir, ns, g),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}
