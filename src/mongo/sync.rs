//! `sync`: makes the target equal to the source by merging the two `_id`-sorted
//! (`_id`, hash) streams — the verifier's own merge — and writing only the differences:
//! missing documents inserted, changed ones replaced, extra ones deleted. Collections and
//! views created on the source since the copy are created; ones dropped on the source are
//! dropped when efs2atlas created them; indexes follow the source.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use mongodb::bson::{Document, doc};
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::Result;
use crate::mongo::Mongo;
use crate::mongo::compare::{
    Partial, compare_docs, compare_options, extra_collections, open_merge, target_meta,
};
use crate::mongo::jobs::Item;
use crate::mongo::meta::IndexMeta;
use crate::mongo::ns::Selection;
use crate::mongo::observe::Observer;
use crate::mongo::patch::Patcher;
use crate::mongo::progress::{CollectionSync, Counts, ProgressStore};

/// How to sync.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Which namespaces, and where they go.
    pub selection: Selection,
    /// Collections at once.
    pub parallel: usize,
    /// Target namespaces efs2atlas created (by copy or an earlier sync): extra ones among
    /// them are dropped; other extra collections are left alone and reported.
    pub owned: BTreeSet<String>,
}

/// The whole sync.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    /// Per collection and view.
    pub collections: Vec<CollectionSync>,
    /// Target collections dropped because the source no longer has them.
    pub dropped_collections: Vec<String>,
    /// Target collections the source does not have that efs2atlas did not create: left alone.
    pub kept_extra_collections: Vec<String>,
    /// Totals.
    #[serde(flatten)]
    pub counts: Counts,
    /// Documents read on both sides.
    pub documents_compared: u64,
    /// Collections skipped because an earlier run of this journal finished them.
    pub resumed: usize,
    /// Wall time.
    pub seconds: f64,
}

/// Syncs every selected collection; collections a journal records as synced are skipped.
pub async fn run(
    src: &Mongo,
    dst: &Mongo,
    items: &[Item],
    opts: &SyncOptions,
    journal: Option<&dyn ProgressStore>,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<SyncReport> {
    let started = Instant::now();
    let done: BTreeMap<String, CollectionSync> = match journal {
        Some(j) => j.synced()?,
        None => BTreeMap::new(),
    };
    let mut report = SyncReport::default();
    let todo: Vec<&Item> = items
        .iter()
        .filter(|i| !done.contains_key(&i.source.to_string()))
        .collect();
    report.resumed = items.len() - todo.len();
    // Views after collections: a view may read a collection this sync creates.
    let (collections, views): (Vec<&Item>, Vec<&Item>) =
        todo.into_iter().partition(|i| !i.meta.is_view());
    let synced = async {
        let mut out = Vec::new();
        for group in [collections, views] {
            let results: Vec<Result<CollectionSync>> = stream::iter(group)
                .map(|it| async move {
                    let ledger = journal.and_then(|j| ledger_of(j, it));
                    let r = sync_collection(src, dst, it, ledger, observer, cancel).await?;
                    if let Some(j) = journal {
                        j.record_sync(&it.source.to_string(), &r)?;
                    }
                    Ok(r)
                })
                .buffer_unordered(opts.parallel.max(1))
                .collect()
                .await;
            for r in results {
                out.push(r?);
            }
        }
        Ok::<_, crate::error::Error>(out)
    };
    // The target's collection lists are read while the collections sync (round trips that
    // would otherwise come after them): an extra collection is one the source lacks, which
    // the sync neither creates nor touches.
    let (synced, extras) = tokio::join!(synced, extra_collections(dst, items, &opts.selection));
    report.collections = synced?;
    report.collections.extend(
        done.into_values()
            .filter(|c| items.iter().any(|i| i.source.to_string() == c.source)),
    );
    report.collections.sort_by(|a, b| a.source.cmp(&b.source));
    for extra in extras? {
        if opts.owned.contains(&extra) {
            let (db, coll) = extra.split_once('.').unwrap_or((&extra, ""));
            dst.client
                .database(db)
                .collection::<Document>(coll)
                .drop()
                .await
                .map_err(|e| dst.err(format!("dropping {extra} (dropped on the source)"), e))?;
            report.dropped_collections.push(extra);
        } else {
            report.kept_extra_collections.push(extra);
        }
    }
    for c in &report.collections {
        report.counts.add(&c.counts);
        report.documents_compared += c.documents_compared;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Where the ledger of `it` is, when this run keeps one and it can be used.
fn ledger_of<'a>(store: &'a dyn ProgressStore, it: &Item) -> Option<LedgerAt<'a>> {
    let dir = store.ledger_dir()?;
    let p = store.copied(&it.source.to_string()).ok().flatten()?;
    let mark = p.ledger.filter(|_| !p.ledger_off)?;
    Some((store, dir, mark))
}

/// A ledger the run has, and where its mark is journaled.
type LedgerAt<'a> = (
    &'a dyn ProgressStore,
    std::path::PathBuf,
    crate::mongo::ledger::LedgerMark,
);

async fn sync_collection(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    ledger: Option<LedgerAt<'_>>,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<CollectionSync> {
    let started = Instant::now();
    let what = format!("syncing {}", it.source);
    let mut out =
        crate::mongo::with_retries(&what, cancel, || prepare_collection(src, dst, it)).await?;
    if it.meta.is_view() {
        out.seconds = started.elapsed().as_secs_f64();
        return Ok(out);
    }
    if let Some(at) = ledger
        && let Some(r) = against_ledger(src, dst, it, at, observer, cancel).await?
    {
        out.counts = r.counts;
        out.documents_compared = r.compared;
        out.patched = Some(r.patched);
        out.indexes_created =
            crate::mongo::with_retries(&what, cancel, || sync_indexes(src, dst, it, false)).await?;
        out.seconds = started.elapsed().as_secs_f64();
        return Ok(out);
    }
    // The patcher and the merge's checkpoint outlive a failed attempt: a retry continues
    // after the last acknowledged batch and still holds the writes a unique index deferred.
    let state = Mutex::new(Some((Patcher::new(src, dst, it), Partial::default())));
    let checkpoint = || {
        state
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(_, p)| p.compared()))
            .unwrap_or(0)
    };
    let merged = crate::mongo::with_retries_progress(&what, cancel, checkpoint, || async {
        let taken = state.lock().ok().and_then(|mut g| g.take());
        let (mut patcher, mut part) =
            taken.unwrap_or_else(|| (Patcher::new(src, dst, it), Partial::default()));
        patcher.discard_pending();
        let r = match open_merge(src, dst, it, &part, true).await {
            Ok(mut merge) => {
                let patch = Some(&mut patcher);
                compare_docs(&mut merge, it, &mut part, 0, patch, observer, cancel).await
            }
            Err(e) => Err(e),
        };
        let r = match r {
            Ok(m) => patcher.finish().await.map(|_| m),
            Err(e) => Err(e),
        };
        if let Ok(mut g) = state.lock() {
            *g = Some((patcher, part));
        }
        r
    })
    .await;
    // Writes acknowledged by attempts that then failed are done all the same.
    out.counts = state
        .lock()
        .ok()
        .and_then(|mut g| g.take())
        .map(|(p, _)| p.done)
        .unwrap_or_default();
    let merged = merged?;
    // Documents, not sides: a document both sides hold counts once.
    out.documents_compared = merged.source_digest.count.max(merged.target_digest.count);
    out.indexes_created =
        crate::mongo::with_retries(&what, cancel, || sync_indexes(src, dst, it, false)).await?;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// One round against the ledger (retried whole on a dropped connection), then its marks
/// journaled and older generations removed.
async fn against_ledger(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    (store, dir, mark): LedgerAt<'_>,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<Option<crate::mongo::ledger_sync::Round>> {
    let what = format!("syncing {} against its ledger", it.source);
    let r = crate::mongo::with_retries(&what, cancel, || {
        crate::mongo::ledger_sync::round((src, dst), it, &dir, mark, observer, cancel)
    })
    .await;
    let r = match r {
        Ok(r) => r,
        Err(e) if e.is_interrupted() => return Err(e),
        Err(e) => {
            // Loudly: the ledger cannot be used, so this collection is read on both sides.
            tracing::warn!(
                "{e}; {} is compared by reading both sides instead",
                it.source
            );
            return Ok(None);
        }
    };
    let ns = it.source.to_string();
    let mut p = store.copied(&ns)?.unwrap_or_default();
    p.ledger = Some(r.ledger);
    store.record_copy(&ns, p, true)?;
    crate::mongo::ledger_sync::remove_old(&dir, &ns, r.ledger.generation);
    Ok(Some(r))
}

/// Creates what the source has and the target lacks (a new collection, a redefined view),
/// and drops the target's stale indexes; notes option differences sync does not change.
async fn prepare_collection(src: &Mongo, dst: &Mongo, it: &Item) -> Result<CollectionSync> {
    let mut out = CollectionSync {
        source: it.source.to_string(),
        target: it.target.to_string(),
        kind: it.meta.kind.clone(),
        ..Default::default()
    };
    let tdb = dst.client.database(&it.target.db);
    let create = || async {
        tdb.run_command(it.meta.create_command(&it.target.coll))
            .await
            .map_err(|e| dst.err(format!("creating {} (new on the source)", it.target), e))
    };
    match target_meta(dst, &it.target).await? {
        None => {
            create().await?;
            out.created = true;
        }
        Some(t) if it.meta.is_view() => {
            if !compare_options(&it.meta, &t).is_empty() {
                // A view holds no data: redefining it is drop and create.
                tdb.collection::<Document>(&it.target.coll)
                    .drop()
                    .await
                    .map_err(|e| {
                        dst.err(format!("dropping view {} to redefine it", it.target), e)
                    })?;
                create().await?;
                out.created = true;
            }
        }
        Some(t) => out.option_differences = compare_options(&it.meta, &t),
    }
    if !it.meta.is_view() {
        out.indexes_dropped = sync_indexes(src, dst, it, true).await?;
    }
    Ok(out)
}

/// Makes the target's indexes the source's, by name. Before the data (`stale_only`): drops
/// indexes the source no longer has or has changed, so a removed unique index cannot block
/// the patch. After it: creates the missing ones. Never touches `_id_`.
async fn sync_indexes(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    stale_only: bool,
) -> Result<Vec<String>> {
    let by_name = |v: Vec<Document>| -> BTreeMap<String, IndexMeta> {
        v.iter()
            .filter_map(IndexMeta::from_entry)
            .filter(|i| !i.is_id_index())
            .map(|i| (i.name.clone(), i))
            .collect()
    };
    let (s, t) = tokio::join!(
        src.list_indexes(&it.source.db, &it.source.coll),
        dst.list_indexes(&it.target.db, &it.target.coll)
    );
    let (s, t) = (by_name(s?), by_name(t?));
    let tdb = dst.client.database(&it.target.db);
    let mut changed = Vec::new();
    if stale_only {
        for (name, ix) in &t {
            if s.get(name)
                .is_none_or(|sx| sx.create_spec() != ix.create_spec())
            {
                tdb.run_command(doc! {"dropIndexes": &it.target.coll, "index": name})
                    .await
                    .map_err(|e| dst.err(format!("dropping index {name} on {}", it.target), e))?;
                changed.push(name.clone());
            }
        }
    } else {
        for (name, ix) in &s {
            if t.get(name)
                .is_none_or(|tx| tx.create_spec() != ix.create_spec())
            {
                tdb.run_command(ix.create_command(&it.target.coll))
                    .await
                    .map_err(|e| dst.err(format!("creating index {name} on {}", it.target), e))?;
                changed.push(name.clone());
            }
        }
    }
    Ok(changed)
}
