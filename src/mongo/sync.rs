//! `sync`: makes the target equal to the source by merging the two `_id`-sorted
//! (`_id`, hash) streams — the verifier's own merge — and writing only the differences:
//! missing documents inserted, changed ones replaced, extra ones deleted. Collections and
//! views created on the source since the copy are created; ones dropped on the source are
//! dropped when efs2atlas created them; indexes follow the source.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use mongodb::Collection;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::compare::{
    Partial, Patch, compare_docs, compare_options, extra_collections, target_meta,
};
use crate::mongo::jobs::Item;
use crate::mongo::meta::IndexMeta;
use crate::mongo::ns::Selection;
use crate::mongo::observe::Observer;
use crate::mongo::progress::{CollectionSync, Counts, ProgressStore};
use crate::mongo::stream::{Diff, DiffKind, id_of, show_id};

/// Writes are sent when this many bytes of documents are pending...
const PATCH_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// ...or this many operations.
const PATCH_BATCH_OPS: usize = 1000;
/// Rounds of retrying writes that hit a unique index held by a document patched later.
const CONFLICT_ROUNDS: usize = 3;

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

/// Applies one collection's differences in batches: deletes first, then inserts; a
/// replacement is a delete and an insert (the target is not live during a sync, so the
/// moment between them is unseen). Inserts rejected by a unique index are retried after the
/// rest, so two documents swapping a unique value resolve instead of failing.
pub struct Patcher<'a> {
    src: &'a Mongo,
    dst: &'a Mongo,
    source: Collection<RawDocumentBuf>,
    coll: Collection<RawDocumentBuf>,
    ns: String,
    deletes: Vec<Bson>,
    /// `_id`s the merge found only on the target: checked against the source before deleting.
    extras: Vec<Bson>,
    inserts: Vec<RawDocumentBuf>,
    bytes: usize,
    pending: Counts,
    deferred: Vec<(RawDocumentBuf, String)>,
    /// Writes acknowledged so far.
    pub done: Counts,
}

impl Patch for Patcher<'_> {
    async fn apply(&mut self, d: Diff) -> Result<bool> {
        Patcher::apply(self, d).await
    }
}

impl<'a> Patcher<'a> {
    /// A patcher for one target collection.
    pub fn new(src: &'a Mongo, dst: &'a Mongo, it: &Item) -> Patcher<'a> {
        Patcher {
            src,
            dst,
            source: src
                .client
                .database(&it.source.db)
                .collection(&it.source.coll),
            coll: dst
                .client
                .database(&it.target.db)
                .collection(&it.target.coll),
            ns: it.target.to_string(),
            deletes: Vec::new(),
            extras: Vec::new(),
            inserts: Vec::new(),
            bytes: 0,
            pending: Counts::default(),
            deferred: Vec::new(),
            done: Counts::default(),
        }
    }

    /// Queues the write one difference needs, sending a batch when one is full; true when it
    /// sent one (every write queued so far is then acknowledged).
    pub async fn apply(&mut self, d: Diff) -> Result<bool> {
        let id = Bson::try_from(d.id.clone())
            .map_err(|e| Error::other(format!("{}: unreadable _id: {e}", self.ns)))?;
        match d.kind {
            DiffKind::Extra => {
                self.extras.push(id);
                self.pending.deleted += 1;
            }
            DiffKind::Missing | DiffKind::Different => {
                let doc = d.source_doc.ok_or_else(|| {
                    Error::other(format!(
                        "{}: no source document for _id {}",
                        self.ns,
                        show_id(&d.id)
                    ))
                })?;
                if d.kind == DiffKind::Different {
                    self.deletes.push(id);
                    self.pending.replaced += 1;
                } else {
                    self.pending.inserted += 1;
                }
                self.bytes += doc.as_bytes().len();
                self.inserts.push(doc);
            }
        }
        if self.bytes >= PATCH_BATCH_BYTES
            || self.deletes.len() + self.extras.len() + self.inserts.len() >= PATCH_BATCH_OPS
        {
            self.flush().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Forgets writes queued but not sent (after a failure: the merge finds them again).
    pub fn discard_pending(&mut self) {
        self.deletes.clear();
        self.extras.clear();
        self.inserts.clear();
        self.bytes = 0;
        self.pending = Counts::default();
    }

    async fn delete_ids(&self, ids: Vec<Bson>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.coll
            .delete_many(doc! {"_id": {"$in": ids}})
            .await
            .map_err(|e| self.dst.err(format!("deleting from {}", self.ns), e))?;
        Ok(())
    }

    /// Inserts unordered; returns the documents a unique index turned away, with the reason.
    async fn insert(&self, docs: Vec<RawDocumentBuf>) -> Result<Vec<(RawDocumentBuf, String)>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let err = match self
            .coll
            .insert_many(&docs)
            .ordered(false)
            .bypass_document_validation(true)
            .await
        {
            Ok(_) => return Ok(Vec::new()),
            Err(e) => e,
        };
        let ErrorKind::InsertMany(ime) = err.kind.as_ref() else {
            return Err(self.dst.err(format!("writing to {}", self.ns), err));
        };
        if let Some(wce) = &ime.write_concern_error {
            return Err(Error::mongo(
                format!("target: writing to {}", self.ns),
                format!("write concern not satisfied: {}", wce.message),
            ));
        }
        let mut turned_away = Vec::new();
        for we in ime.write_errors.iter().flatten() {
            let Some(doc) = docs.get(we.index) else {
                continue;
            };
            if we.code != 11000 {
                return Err(Error::mongo(
                    format!("target: writing to {}", self.ns),
                    format!(
                        "document _id {} was rejected (code {}): {}",
                        show_id(&id_of(doc)),
                        we.code,
                        we.message
                    ),
                ));
            }
            turned_away.push((doc.clone(), we.message.clone()));
        }
        Ok(turned_away)
    }

    /// Never deletes what the source still has: one cheap query per batch of deletes, so a
    /// source scan cut short in any way we did not foresee cannot make live documents look
    /// deleted.
    async fn check_extras(&self) -> Result<()> {
        if self.extras.is_empty() {
            return Ok(());
        }
        let context = format!("comparing {}", self.ns);
        let found = self
            .source
            .find_one(doc! {"_id": {"$in": self.extras.clone()}})
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| self.src.err(&context, e))?;
        match found {
            None => Ok(()),
            Some(d) => Err(Error::mongo_transient(
                format!("source ({}): {context}", self.src.uri.redacted()),
                format!(
                    "the source still has _id {} although its scan did not return it; comparing again from the last acknowledged batch",
                    show_id(&id_of(&d))
                ),
            )),
        }
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> Result<()> {
        let t = Instant::now();
        self.check_extras().await?;
        let checked = t.elapsed();
        let mut deletes = std::mem::take(&mut self.deletes);
        deletes.append(&mut self.extras);
        let n_del = deletes.len();
        self.delete_ids(deletes).await?;
        let deleted = t.elapsed();
        self.bytes = 0;
        let inserts = std::mem::take(&mut self.inserts);
        let n_ins = inserts.len();
        let turned_away = self.insert(inserts).await?;
        tracing::debug!(
            "{}: flushed {n_del} deletes, {n_ins} inserts (check {:?}, delete {:?}, total {:?})",
            self.ns,
            checked,
            deleted - checked,
            t.elapsed()
        );
        self.deferred.extend(turned_away);
        self.done.add(&self.pending);
        self.pending = Counts::default();
        Ok(())
    }

    /// Flushes, then retries the writes a unique index turned away: each round removes those
    /// `_id`s from the target and inserts them together, which also untangles swaps among
    /// them. What still conflicts after that is a real conflict and is named.
    pub async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        for _ in 0..CONFLICT_ROUNDS {
            if self.deferred.is_empty() {
                return Ok(());
            }
            let held = std::mem::take(&mut self.deferred);
            let docs: Vec<RawDocumentBuf> = held.iter().map(|(d, _)| d.clone()).collect();
            let n = docs.len() as u64;
            let ids: Vec<Bson> = docs
                .iter()
                .filter_map(|d| Bson::try_from(id_of(d)).ok())
                .collect();
            // On a failure the documents stay held, so a retry still writes them.
            let round = async {
                self.delete_ids(ids).await?;
                self.insert(docs).await
            }
            .await;
            match round {
                Ok(still) => {
                    self.deferred = still;
                    self.done.conflicts_resolved += n - self.deferred.len() as u64;
                }
                Err(e) => {
                    self.deferred = held;
                    return Err(e);
                }
            }
        }
        match self.deferred.first() {
            None => Ok(()),
            Some((doc, why)) => Err(Error::mongo(
                format!("target: writing to {}", self.ns),
                format!(
                    "{} document(s) still collide with a unique index after {CONFLICT_ROUNDS} rounds, e.g. _id {}: {why}; the target's indexes may differ from the source's (run `efs2atlas verify`)",
                    self.deferred.len(),
                    show_id(&id_of(doc))
                ),
            )),
        }
    }
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
    for group in [collections, views] {
        let results: Vec<Result<CollectionSync>> = stream::iter(group)
            .map(|it| async move {
                let r = sync_collection(src, dst, it, observer, cancel).await?;
                if let Some(j) = journal {
                    j.record_sync(&it.source.to_string(), &r)?;
                }
                Ok(r)
            })
            .buffer_unordered(opts.parallel.max(1))
            .collect()
            .await;
        for r in results {
            report.collections.push(r?);
        }
    }
    report.collections.extend(
        done.into_values()
            .filter(|c| items.iter().any(|i| i.source.to_string() == c.source)),
    );
    report.collections.sort_by(|a, b| a.source.cmp(&b.source));
    for extra in extra_collections(dst, items, &opts.selection).await? {
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

async fn sync_collection(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
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
        let r = match compare_docs(
            src,
            dst,
            it,
            &mut part,
            0,
            Some(&mut patcher),
            observer,
            cancel,
        )
        .await
        {
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
    out.documents_compared = merged.source_digest.count + merged.target_digest.count;
    out.indexes_created =
        crate::mongo::with_retries(&what, cancel, || sync_indexes(src, dst, it, false)).await?;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
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
    let s = by_name(src.list_indexes(&it.source.db, &it.source.coll).await?);
    let t = by_name(dst.list_indexes(&it.target.db, &it.target.coll).await?);
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
