//! The verifier: per collection, count plus an order-independent digest of every document's
//! exact bytes on both sides, index and option comparison, and, on a mismatch, the `_id`s
//! that are missing, extra or different. It never relies on `dbHash`.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use mongodb::bson::RawDocumentBuf;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::Result;
use crate::mongo::Mongo;
use crate::mongo::compare::{
    Example, Merged, NoPatch, Partial, compare_docs, compare_indexes, compare_options,
    extra_collections, open_merge, target_meta,
};
use crate::mongo::jobs::Item;
use crate::mongo::ns::Selection;
use crate::mongo::observe::Observer;
use crate::mongo::stream::{Digest, ScanOpts, SortedScan};

/// The verdict for one collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionVerdict {
    /// Source namespace.
    pub source: String,
    /// Target namespace.
    pub target: String,
    /// collection, view, timeseries.
    pub kind: String,
    /// True when documents, indexes and options all match.
    pub ok: bool,
    /// Source digest.
    pub source_digest: Digest,
    /// Target digest.
    pub target_digest: Digest,
    /// Documents only in the source.
    pub missing: u64,
    /// Documents only in the target.
    pub extra: u64,
    /// Documents in both with different bytes (changed fields, changed types, field order).
    pub different: u64,
    /// The first differences, up to the limit.
    pub examples: Vec<Example>,
    /// Set when the `_id`s could not be pinpointed (a server does not sort `_id` like MongoDB);
    /// counts and digests are still exact.
    pub pinpoint_unavailable: Option<String>,
    /// Index differences.
    pub index_differences: Vec<String>,
    /// Collection option differences.
    pub option_differences: Vec<String>,
    /// Set when the collection was checked against the ledger: the documents the frozen sync
    /// patched, read back (the digests then hold the document counts only: the ledger's and
    /// the target's).
    pub read_back: Option<u64>,
}

/// The whole verification.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// True when every collection matches and nothing is extra.
    pub ok: bool,
    /// Per collection.
    pub collections: Vec<CollectionVerdict>,
    /// Target collections that the source does not have (within the selection).
    pub extra_collections: Vec<String>,
    /// Documents read on both sides.
    pub documents_compared: u64,
    /// Bytes read on both sides.
    pub bytes_compared: u64,
    /// Wall time.
    pub seconds: f64,
}

impl VerifyReport {
    /// A one-line account of what differs, for the error message.
    pub fn summary(&self) -> String {
        let bad: Vec<String> = self
            .collections
            .iter()
            .filter(|c| !c.ok)
            .map(|c| {
                let mut parts = Vec::new();
                if c.missing + c.extra + c.different > 0 {
                    parts.push(format!(
                        "{} missing, {} extra, {} different",
                        c.missing, c.extra, c.different
                    ));
                } else if c.read_back.is_none() && c.source_digest != c.target_digest {
                    parts.push(format!(
                        "{} vs {} documents, digests differ",
                        c.source_digest.count, c.target_digest.count
                    ));
                }
                if !c.index_differences.is_empty() {
                    parts.push(format!("{} index difference(s)", c.index_differences.len()));
                }
                if !c.option_differences.is_empty() {
                    parts.push(format!(
                        "{} option difference(s)",
                        c.option_differences.len()
                    ));
                }
                format!("{} ({})", c.source, parts.join(", "))
            })
            .chain(
                self.extra_collections
                    .iter()
                    .map(|e| format!("{e} (only on the target)")),
            )
            .collect();
        format!("verification found differences in {}", bad.join("; "))
    }
}

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Which namespaces, and where they went.
    pub selection: Selection,
    /// Collections compared at once.
    pub parallel: usize,
    /// Differing `_id`s listed per collection.
    pub max_examples: usize,
    /// Collections a sync compared against the ledger (source namespace → ledger directory,
    /// what the sync patched, how many documents the ledger holds): only the patched
    /// documents are read back, and the target's count checked.
    pub read_back: BTreeMap<String, ReadBackFrom>,
}

/// Where a collection's patched list is, and how many documents its ledger holds.
pub type ReadBackFrom = (std::path::PathBuf, crate::mongo::ledger::LedgerMark, u64);

/// Compares every selected collection.
pub async fn run(
    src: &Mongo,
    dst: &Mongo,
    items: &[Item],
    opts: &VerifyOptions,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let max_examples = opts.max_examples;
    let results = stream::iter(items)
        .map(|it| async move {
            let what = format!("comparing {}", it.source);
            // What earlier attempts compared survives a dropped connection.
            let partial = std::sync::Mutex::new(Partial::default());
            let progress = || {
                partial
                    .lock()
                    .map(|p| p.source_digest.count + p.target_digest.count)
                    .unwrap_or(0)
            };
            let read_back = opts.read_back.get(&it.source.to_string());
            crate::mongo::with_retries_progress(&what, cancel, progress, || {
                verify_collection(
                    src,
                    dst,
                    it,
                    (max_examples, read_back),
                    observer,
                    cancel,
                    &partial,
                )
            })
            .await
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect::<Vec<_>>();
    // The target's collection lists are read while the collections are compared.
    let (results, extras) = tokio::join!(results, extra_collections(dst, items, &opts.selection));
    let mut report = VerifyReport::default();
    for r in results {
        report.collections.push(r?);
    }
    report.collections.sort_by(|a, b| a.source.cmp(&b.source));
    report.extra_collections = extras?;
    report.documents_compared = report
        .collections
        .iter()
        // Documents, not sides: a document both sides hold counts once; a collection checked
        // against the ledger counts what was read back.
        .map(|c| {
            c.read_back
                .unwrap_or(c.source_digest.count.max(c.target_digest.count))
        })
        .sum();
    report.bytes_compared = report
        .collections
        .iter()
        .map(|c| c.source_digest.bytes + c.target_digest.bytes)
        .sum();
    report.ok = report.collections.iter().all(|c| c.ok) && report.extra_collections.is_empty();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The verdict from the documents the last sync patched, read back, and the target's count
/// against the ledger's (the rest was audited against the ledger before the freeze).
async fn read_back_only(
    dst: &Mongo,
    it: &Item,
    (dir, patched, ledger_count): &ReadBackFrom,
    max_examples: usize,
    v: &mut CollectionVerdict,
) -> Result<()> {
    let (rb, count) = tokio::join!(
        crate::mongo::ledger_sync::read_back(dst, it, dir, *patched),
        crate::mongo::jobs::count(dst, &it.target)
    );
    let (rb, count) = (rb?, count?);
    v.read_back = Some(rb.checked);
    v.source_digest.count = *ledger_count;
    v.target_digest.count = count;
    v.different = rb.wrong.len() as u64;
    v.examples = rb
        .wrong
        .iter()
        .take(max_examples)
        .map(|id| Example {
            kind: crate::mongo::stream::DiffKind::Different,
            id: id.clone(),
        })
        .collect();
    if count != *ledger_count {
        v.option_differences.push(format!(
            "{} holds {count} documents, the ledger of what it acknowledged {ledger_count}",
            it.target
        ));
    }
    v.ok = rb.wrong.is_empty()
        && count == *ledger_count
        && v.index_differences.is_empty()
        && v.option_differences.is_empty();
    Ok(())
}

impl CollectionVerdict {
    /// A verdict on `it` with nothing found yet.
    fn new(it: &Item) -> CollectionVerdict {
        CollectionVerdict {
            source: it.source.to_string(),
            target: it.target.to_string(),
            kind: it.meta.kind.clone(),
            ok: false,
            source_digest: Digest::default(),
            target_digest: Digest::default(),
            missing: 0,
            extra: 0,
            different: 0,
            examples: vec![],
            pinpoint_unavailable: None,
            index_differences: vec![],
            option_differences: vec![],
            read_back: None,
        }
    }
}

/// Reads the whole source collection for its digest (the target has nothing to compare).
async fn scan_source(src: &Mongo, it: &Item) -> Result<Digest> {
    let scoll = src
        .client
        .database(&it.source.db)
        .collection::<RawDocumentBuf>(&it.source.coll);
    let read_err = |e| src.err(format!("reading {}", it.source), e);
    let mut scan = SortedScan::open(&scoll, ScanOpts::hashing(it.read_shape()).on(src.role))
        .await
        .map_err(read_err)?;
    while scan.next().await.map_err(read_err)?.is_some() {}
    Ok(scan.digest)
}

/// What the merge found, into the verdict; no per-document lists when the order was
/// unreliable (counts and digests stay exact).
fn record_merge(v: &mut CollectionVerdict, merged: Merged, part: Partial) {
    v.source_digest = merged.source_digest;
    v.target_digest = merged.target_digest;
    v.missing = part.missing;
    v.extra = part.extra;
    v.different = part.different;
    v.examples = part.examples;
    if let Some(why) = merged.unreliable {
        v.pinpoint_unavailable = Some(why);
        v.missing = 0;
        v.extra = 0;
        v.different = 0;
        v.examples.clear();
    }
}

#[allow(clippy::too_many_arguments)]
async fn verify_collection(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    (max_examples, read_back): (usize, Option<&ReadBackFrom>),
    observer: &dyn Observer,
    cancel: &Cancel,
    partial: &std::sync::Mutex<Partial>,
) -> Result<CollectionVerdict> {
    let mut v = CollectionVerdict::new(it);
    // The metadata round trips overlap: against a remote target each one costs a round trip.
    let (meta, src_ix, dst_ix) = tokio::join!(
        target_meta(dst, &it.target),
        src.list_indexes(&it.source.db, &it.source.coll),
        dst.list_indexes(&it.target.db, &it.target.coll)
    );
    let Some(target_meta) = meta? else {
        v.option_differences
            .push(format!("{} does not exist on the target", it.target));
        if !it.meta.is_view() {
            // Still count the source so the report says how much is missing.
            v.source_digest = scan_source(src, it).await?;
            v.missing = v.source_digest.count;
        }
        return Ok(v);
    };
    v.option_differences = compare_options(&it.meta, &target_meta);
    if it.meta.is_view() {
        v.ok = v.option_differences.is_empty();
        return Ok(v);
    }
    v.index_differences = compare_indexes(&src_ix?, &dst_ix?);
    if let Some(from) = read_back {
        read_back_only(dst, it, from, max_examples, &mut v).await?;
        return Ok(v);
    }
    let mut part = partial
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    let outcome = match open_merge(src, dst, it, &part, false).await {
        Ok(mut merge) => {
            let none = None::<&mut NoPatch>;
            compare_docs(
                &mut merge,
                it,
                &mut part,
                max_examples,
                none,
                observer,
                cancel,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let merged = match outcome {
        Ok(m) => m,
        Err(e) => {
            if let Ok(mut p) = partial.lock() {
                *p = part;
            }
            return Err(e);
        }
    };
    record_merge(&mut v, merged, part);
    let docs_ok = v.source_digest == v.target_digest && v.missing + v.extra + v.different == 0;
    v.ok = docs_ok && v.index_differences.is_empty() && v.option_differences.is_empty();
    Ok(v)
}
