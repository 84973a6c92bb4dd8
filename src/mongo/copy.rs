//! The bulk copy: collections created with their options, documents streamed as raw BSON in
//! `_id` order through bounded channels (reads and writes overlap, memory stays bounded),
//! indexes built after the data, views last. Every acknowledged batch is journaled, so a
//! re-run continues where the last one stopped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, FuturesOrdered, StreamExt};
use mongodb::bson::{Bson, Document, RawBson, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Cursor};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::journal::{CollectionProgress, SharedJournal};
use crate::mongo::meta::{CollectionMeta, IndexMeta};
use crate::mongo::ns::{Namespace, Selection};
use crate::mongo::order;
use crate::mongo::stream::{id_of, show_id};
use crate::mongo::{Mongo, as_i64};

/// Knobs of the copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Which namespaces, and where they go.
    pub selection: Selection,
    /// Collections in flight at once (`-j`).
    pub parallel: usize,
    /// Drop target collections before copying into them (fresh runs only).
    pub drop: bool,
    /// A batch is sent once it holds this many bytes...
    pub batch_bytes: usize,
    /// ...or this many documents.
    pub batch_docs: usize,
    /// Batches being inserted at once per collection.
    pub writers: usize,
    /// The source still takes writes (two-pass): a re-sent document that changed meanwhile
    /// is left for `sync` to patch instead of stopping the copy.
    pub live: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            selection: Selection::default(),
            parallel: 4,
            drop: false,
            batch_bytes: 2 * 1024 * 1024,
            batch_docs: 10_000,
            live: false,
            writers: 2,
        }
    }
}

/// Receives progress; the terminal UI implements it, library code never prints.
pub trait Observer: Send + Sync {
    /// A collection starts (or resumes with `done_docs` already copied).
    fn start(&self, _ns: &str, _estimated_docs: u64, _done_docs: u64, _done_bytes: u64) {}
    /// A batch was acknowledged.
    fn progress(&self, _ns: &str, _docs: u64, _bytes: u64) {}
    /// A collection is finished.
    fn finish(&self, _ns: &str) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// A source collection or view selected for copying.
#[derive(Clone, Debug)]
pub struct Item {
    /// Source namespace.
    pub source: Namespace,
    /// Target namespace.
    pub target: Namespace,
    /// Its metadata.
    pub meta: CollectionMeta,
    /// Estimated document count at the start.
    pub estimated_docs: u64,
}

/// What happened to one collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionReport {
    /// Source namespace.
    pub source: String,
    /// Target namespace.
    pub target: String,
    /// `collection`, `view`, `timeseries`.
    pub kind: String,
    /// Documents on the target for this collection (all runs).
    pub docs: u64,
    /// Bytes on the target for this collection (all runs).
    pub bytes: u64,
    /// Documents copied by this run.
    pub docs_this_run: u64,
    /// Bytes copied by this run.
    pub bytes_this_run: u64,
    /// Seconds this run spent on it.
    pub seconds: f64,
    /// Indexes built.
    pub indexes: usize,
    /// Index builds that failed, with the reason.
    pub index_errors: Vec<String>,
    /// Unique indexes left to `sync` (a duplicate key in documents copied while the app wrote).
    pub index_deferred: Vec<String>,
    /// True when this run continued an earlier one.
    pub resumed: bool,
}

/// The whole copy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    /// Per collection and view.
    pub collections: Vec<CollectionReport>,
    /// Documents copied by this run.
    pub docs: u64,
    /// Bytes copied by this run.
    pub bytes: u64,
    /// Wall time of this run.
    pub seconds: f64,
    /// Every failed index build.
    pub index_errors: Vec<String>,
    /// Every unique index left to `sync`.
    pub index_deferred: Vec<String>,
}

/// Lists the source namespaces the selection takes, with their target names.
pub async fn select(src: &Mongo, sel: &Selection) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut dbs = Vec::new();
    for (db, _) in src.list_databases().await? {
        if !sel.wants_db(&db) {
            continue;
        }
        let mut any = false;
        for entry in src.list_collections(&db).await? {
            let Some(meta) = CollectionMeta::from_entry(&entry) else {
                continue;
            };
            let ns = Namespace::new(db.clone(), meta.name.clone());
            if !sel.wants(&ns) {
                continue;
            }
            any = true;
            let estimated_docs = if meta.is_view() {
                0
            } else {
                src.client
                    .database(&db)
                    .collection::<Document>(&meta.name)
                    .estimated_document_count()
                    .await
                    .unwrap_or(0)
            };
            items.push(Item {
                target: sel.target_of(&ns),
                source: ns,
                meta,
                estimated_docs,
            });
        }
        if any {
            dbs.push(db);
        }
    }
    for d in &sel.dbs {
        if !dbs.contains(d) && !items.iter().any(|i| &i.source.db == d) {
            return Err(Error::Usage(format!(
                "--db {d}: the source has no such database with selected collections (it has: {})",
                src.list_databases()
                    .await?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    sel.check_target_db(&dbs)?;
    // Biggest first so parallel slots stay busy; views last.
    items.sort_by(|a, b| {
        a.meta
            .is_view()
            .cmp(&b.meta.is_view())
            .then(b.estimated_docs.cmp(&a.estimated_docs))
    });
    Ok(items)
}

/// Proves the target user may create, write, index and drop in every target database, then
/// refuses to write into target collections that already hold documents, unless `--drop` or
/// this journal already started them.
pub async fn check_targets(
    dst: &Mongo,
    items: &[Item],
    journal: &SharedJournal,
    drop: bool,
) -> Result<()> {
    let mut dbs: Vec<String> = items.iter().map(|i| i.target.db.clone()).collect();
    dbs.sort();
    dbs.dedup();
    crate::mongo::access::check_target_can_write(dst, &dbs).await?;
    let j = journal.snapshot()?;
    let mut busy = Vec::new();
    for it in items {
        let started = j
            .copy
            .collections
            .get(&it.source.to_string())
            .is_some_and(|p| p.created);
        if started || drop {
            continue;
        }
        if !exists(dst, &it.target).await? {
            continue;
        }
        if it.meta.is_view() {
            busy.push(format!(
                "{} (a view or collection of that name exists)",
                it.target
            ));
            continue;
        }
        let coll = dst
            .client
            .database(&it.target.db)
            .collection::<Document>(&it.target.coll);
        let one = coll
            .find_one(doc! {})
            .await
            .map_err(|e| dst.err(format!("reading {}", it.target), e))?;
        if one.is_some() {
            busy.push(it.target.to_string());
        }
    }
    if busy.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "the target already holds data in {}; efs2atlas will not write into it. Pass --drop to replace {} (their data is lost), --ns-exclude to skip {}, or copy into another database with --target-db",
        busy.join(", "),
        if busy.len() == 1 { "it" } else { "them" },
        if busy.len() == 1 { "it" } else { "them" },
    )))
}

/// Runs the copy of `items` (collections first, in parallel, then views).
pub async fn run(
    src: &Mongo,
    dst: &Mongo,
    items: &[Item],
    opts: &CopyOptions,
    journal: &SharedJournal,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<CopyReport> {
    let started = Instant::now();
    let (views, colls): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| i.meta.is_view());
    let ctx = Ctx {
        src,
        dst,
        opts,
        journal,
        observer,
        cancel,
    };
    let ctx = &ctx;
    let results: Vec<Result<CollectionReport>> = stream::iter(colls)
        .map(|it| async move {
            let r = copy_collection(ctx, it).await;
            if let Err(e) = &r
                && !matches!(e, Error::Interrupted(_))
            {
                // One failure stops the others at their next batch; the journal keeps their progress.
                cancel.cancel();
            }
            r
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    journal.flush()?;
    let mut report = CopyReport::default();
    let mut first_err = None;
    for r in results {
        match r {
            Ok(c) => report.collections.push(c),
            Err(e) => {
                // A real failure explains more than the interruptions it caused.
                if first_err
                    .as_ref()
                    .is_none_or(|f| matches!(f, Error::Interrupted(_)))
                {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    for v in views {
        report.collections.push(create_view(dst, v, journal).await?);
    }
    journal.flush()?;
    report.collections.sort_by(|a, b| a.source.cmp(&b.source));
    report.docs = report.collections.iter().map(|c| c.docs_this_run).sum();
    report.bytes = report.collections.iter().map(|c| c.bytes_this_run).sum();
    report.index_errors = report
        .collections
        .iter()
        .flat_map(|c| c.index_errors.iter().cloned())
        .collect();
    report.index_deferred = report
        .collections
        .iter()
        .flat_map(|c| c.index_deferred.iter().cloned())
        .collect();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn key(it: &Item) -> String {
    it.source.to_string()
}

async fn create_view(dst: &Mongo, it: &Item, journal: &SharedJournal) -> Result<CollectionReport> {
    let k = key(it);
    let done = journal
        .snapshot()?
        .copy
        .collections
        .get(&k)
        .is_some_and(|p| p.created);
    if !done {
        let db = dst.client.database(&it.target.db);
        if !exists(dst, &it.target).await? {
            db.run_command(it.meta.create_command(&it.target.coll))
                .await
                .map_err(|e| dst.err(format!("creating view {}", it.target), e))?;
        }
        let done = CollectionProgress {
            target: it.target.to_string(),
            created: true,
            data_done: true,
            indexes_done: true,
            order_trusted: true,
            ..Default::default()
        };
        record(journal, &k, done, true)?;
    }
    Ok(CollectionReport {
        source: k,
        target: it.target.to_string(),
        kind: it.meta.kind.clone(),
        docs: 0,
        bytes: 0,
        docs_this_run: 0,
        bytes_this_run: 0,
        seconds: 0.0,
        indexes: 0,
        index_errors: vec![],
        index_deferred: vec![],
        resumed: done,
    })
}

/// Everything one collection's copy needs from the run.
struct Ctx<'a> {
    src: &'a Mongo,
    dst: &'a Mongo,
    opts: &'a CopyOptions,
    journal: &'a SharedJournal,
    observer: &'a dyn Observer,
    cancel: &'a Cancel,
}

async fn copy_collection(ctx: &Ctx<'_>, it: &Item) -> Result<CollectionReport> {
    let Ctx {
        src,
        dst,
        opts,
        journal,
        observer,
        cancel,
    } = *ctx;
    let started = Instant::now();
    let k = key(it);
    let prior = journal.snapshot()?.copy.collections.get(&k).cloned();
    let resumed = prior.is_some();
    let mut progress = prior.unwrap_or_else(|| CollectionProgress {
        target: it.target.to_string(),
        order_trusted: true,
        ..Default::default()
    });
    if progress.data_done && progress.indexes_done {
        return Ok(report(it, &progress, (0, 0), started, resumed));
    }
    if cancel.is_cancelled() {
        return Err(interrupted());
    }
    let tdb = dst.client.database(&it.target.db);
    if !progress.created {
        // Dropping and "create unless it exists" are idempotent: a dropped link retries them.
        crate::mongo::with_retries(&format!("creating {k}"), cancel, || async {
            if opts.drop {
                tdb.collection::<Document>(&it.target.coll)
                    .drop()
                    .await
                    .map_err(|e| dst.err(format!("dropping {}", it.target), e))?;
            }
            if !exists(dst, &it.target).await? {
                tdb.run_command(it.meta.create_command(&it.target.coll))
                    .await
                    .map_err(|e| {
                        dst.err(
                            format!("creating {} with the source's options", it.target),
                            e,
                        )
                    })?;
            }
            Ok(())
        })
        .await?;
        progress.created = true;
        record(journal, &k, progress.clone(), true)?;
    }
    observer.start(&k, it.estimated_docs, progress.docs, progress.bytes);
    let mut copied_now = (0, 0);
    if !progress.data_done {
        // Each retry continues after the last acknowledged batch; progress resets the budget.
        let progress_cell = std::sync::Mutex::new(progress);
        let docs_so_far = || progress_cell.lock().map(|g| g.docs).unwrap_or(0);
        // (docs when the previous attempt started, halvings): an attempt that got nowhere
        // makes the next one use half-size batches.
        let last = std::sync::Mutex::new((None::<u64>, 0usize));
        let result = crate::mongo::with_retries_progress(
            &format!("copying {k}"),
            cancel,
            docs_so_far,
            || async {
                let mut p = progress_cell.lock().map(|g| g.clone()).unwrap_or_default();
                let halvings = match last.lock() {
                    Ok(mut l) => {
                        l.1 = if l.0 == Some(p.docs) { l.1 + 1 } else { 0 };
                        l.0 = Some(p.docs);
                        l.1
                    }
                    Err(_) => 0,
                };
                let r = copy_data(ctx, it, &mut p, halvings).await;
                if let Ok(mut g) = progress_cell.lock() {
                    *g = p;
                }
                r
            },
        )
        .await;
        progress = progress_cell.into_inner().unwrap_or_default();
        let (d, b) = result?;
        copied_now = (d, b);
    }
    if !progress.indexes_done {
        if cancel.is_cancelled() {
            return Err(interrupted());
        }
        // Building an index that already exists with the same options is a no-op: retryable.
        (progress.index_errors, progress.index_deferred) =
            crate::mongo::with_retries(&format!("indexing {k}"), cancel, || {
                build_indexes(src, dst, it)
            })
            .await?;
        progress.indexes_done = true;
        record(journal, &k, progress.clone(), true)?;
    }
    observer.finish(&k);
    Ok(report(it, &progress, copied_now, started, resumed))
}

fn report(
    it: &Item,
    p: &CollectionProgress,
    (docs_this_run, bytes_this_run): (u64, u64),
    started: Instant,
    resumed: bool,
) -> CollectionReport {
    CollectionReport {
        source: it.source.to_string(),
        target: it.target.to_string(),
        kind: it.meta.kind.clone(),
        docs: p.docs,
        bytes: p.bytes,
        docs_this_run,
        bytes_this_run,
        seconds: started.elapsed().as_secs_f64(),
        indexes: 0,
        index_errors: p.index_errors.clone(),
        index_deferred: p.index_deferred.clone(),
        resumed,
    }
}

/// True when the namespace exists (as a collection or view) on that server.
async fn exists(m: &Mongo, ns: &Namespace) -> Result<bool> {
    let names = m
        .client
        .database(&ns.db)
        .list_collection_names()
        .await
        .map_err(|e| m.err(format!("listing collections of {}", ns.db), e))?;
    Ok(names.contains(&ns.coll))
}

/// Writes one collection's progress into the journal (saved now when `force`).
fn record(
    journal: &SharedJournal,
    key: &str,
    progress: CollectionProgress,
    force: bool,
) -> Result<()> {
    journal.update(force, |j| {
        j.copy.collections.insert(key.to_string(), progress);
    })
}

fn interrupted() -> Error {
    Error::Interrupted("interrupted; progress is saved in the journal".into())
}

/// A batch read from the source, in `_id` order.
struct Batch {
    docs: Vec<RawDocumentBuf>,
    bytes: u64,
    last_id: RawBson,
    /// False once the source has returned an `_id` out of MongoDB order.
    order_ok: bool,
}

/// Parses a journaled `_id`.
fn id_from_journal(v: &serde_json::Value) -> Option<Bson> {
    Bson::try_from(v.clone()).ok()
}

async fn copy_data(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    halvings: usize,
) -> Result<(u64, u64)> {
    let Ctx {
        src,
        dst,
        opts,
        journal,
        observer,
        cancel,
    } = *ctx;
    let k = key(it);
    let scoll: Collection<RawDocumentBuf> = src
        .client
        .database(&it.source.db)
        .collection(&it.source.coll);
    let tcoll: Collection<RawDocumentBuf> = dst
        .client
        .database(&it.target.db)
        .collection(&it.target.coll);

    // Resume after the last acknowledged _id when the source's order was trustworthy;
    // otherwise rescan everything and let duplicate checks skip what is already there.
    let resume_after = match (&progress.last_id, progress.order_trusted) {
        (Some(v), true) => id_from_journal(v),
        _ => None,
    };
    let filter = match &resume_after {
        Some(b) => {
            let raw = RawBson::try_from(b.clone())
                .map_err(|e| Error::Other(format!("journal _id for {k} is unusable: {e}")))?;
            order::after_filter(&raw.as_raw_bson_ref())
        }
        None => doc! {},
    };
    // After failures without progress, smaller batches get through a link that keeps dropping.
    let shrink = 1usize << halvings.min(5);
    let cursor = scoll
        .find(filter)
        .sort(doc! {"_id": 1})
        .batch_size((2000 / shrink as u32).max(50))
        .await
        .map_err(|e| src.err(format!("reading {}", it.source), e))?;

    let (tx, mut rx) = mpsc::channel::<Result<Batch>>(2);
    let reader = tokio::spawn(read_batches(
        cursor,
        tx,
        (opts.batch_bytes / shrink).max(64 * 1024),
        (opts.batch_docs / shrink).max(100),
        src.clone(),
        it.source.to_string(),
    ));

    let mut in_flight = FuturesOrdered::new();
    let mut copied = (0u64, 0u64);
    let mut reading = true;
    let mut result: Result<()> = Ok(());
    loop {
        let can_take = reading && in_flight.len() < opts.writers.max(1) && !cancel.is_cancelled();
        tokio::select! {
            biased;
            done = in_flight.next(), if !in_flight.is_empty() => {
                let Some(done) = done else { continue };
                match done {
                    Ok((docs, bytes, last_id, order_ok)) => {
                        let (docs, bytes): (u64, u64) = (docs, bytes);
                        copied.0 += docs;
                        copied.1 += bytes;
                        progress.docs += docs;
                        progress.bytes += bytes;
                        progress.last_id = Some(Bson::try_from(last_id).map(|b| b.into_canonical_extjson()).unwrap_or(serde_json::Value::Null));
                        progress.order_trusted = progress.order_trusted && order_ok;
                        record(journal, &k, progress.clone(), false)?;
                        observer.progress(&k, docs, bytes);
                    }
                    Err(e) => { result = Err(e); break; }
                }
            }
            batch = rx.recv(), if can_take => {
                match batch {
                    Some(Ok(b)) => {
                        let tcoll = tcoll.clone();
                        let dst = dst.clone();
                        let target = it.target.to_string();
                        let live = opts.live;
                        in_flight.push_back(async move {
                            let n = b.docs.len() as u64;
                            insert_batch(&dst, &tcoll, &target, b.docs, live).await?;
                            Ok::<_, Error>((n, b.bytes, b.last_id, b.order_ok))
                        });
                    }
                    Some(Err(e)) => { result = Err(e); break; }
                    None => reading = false,
                }
            }
            _ = cancel.cancelled(), if in_flight.is_empty() && reading => {
                break;
            }
            else => break,
        }
    }
    drop(rx);
    reader.abort();
    // Whatever was acknowledged is in `progress`; make it durable before reporting anything.
    record(journal, &k, progress.clone(), true)?;
    result?;
    if reading {
        return Err(interrupted());
    }
    progress.data_done = true;
    record(journal, &k, progress.clone(), true)?;
    Ok(copied)
}

/// Reads the cursor into byte-bounded batches and sends them down a bounded channel, so at
/// most a few batches are ever held in memory.
async fn read_batches(
    mut cursor: Cursor<RawDocumentBuf>,
    tx: mpsc::Sender<Result<Batch>>,
    batch_bytes: usize,
    batch_docs: usize,
    src: Mongo,
    ns: String,
) {
    let mut docs = Vec::new();
    let mut bytes = 0usize;
    let mut prev: Option<RawBson> = None;
    let mut order_ok = true;
    loop {
        match cursor.advance().await {
            Ok(true) => {
                let raw = cursor.current();
                let id = id_of(raw);
                if let Some(p) = &prev
                    && order::cmp(&p.as_raw_bson_ref(), &id.as_raw_bson_ref())
                        != std::cmp::Ordering::Less
                {
                    order_ok = false;
                }
                prev = Some(id);
                bytes += raw.as_bytes().len();
                docs.push(raw.to_raw_document_buf());
                if bytes >= batch_bytes || docs.len() >= batch_docs {
                    let last_id = prev.clone().unwrap_or(RawBson::Null);
                    let b = Batch {
                        docs: std::mem::take(&mut docs),
                        bytes: bytes as u64,
                        last_id,
                        order_ok,
                    };
                    bytes = 0;
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(false) => break,
            Err(e) => {
                let _ = tx.send(Err(src.err(format!("reading {ns}"), e))).await;
                return;
            }
        }
    }
    if !docs.is_empty() {
        let last_id = prev.unwrap_or(RawBson::Null);
        let _ = tx
            .send(Ok(Batch {
                docs,
                bytes: bytes as u64,
                last_id,
                order_ok,
            }))
            .await;
    }
}

/// Inserts a batch, unordered. Duplicate `_id`s are fine when the target holds the very same
/// bytes (a batch acknowledged by the server but not yet journaled before a crash); anything
/// else is an error naming the document.
async fn insert_batch(
    dst: &Mongo,
    coll: &Collection<RawDocumentBuf>,
    ns: &str,
    docs: Vec<RawDocumentBuf>,
    live: bool,
) -> Result<()> {
    let err = match coll
        .insert_many(&docs)
        .ordered(false)
        // Documents the source holds go over as they are, even ones its validator would now refuse.
        .bypass_document_validation(true)
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let ErrorKind::InsertMany(ime) = err.kind.as_ref() else {
        return Err(dst.err(format!("inserting into {ns}"), err));
    };
    if let Some(wce) = &ime.write_concern_error {
        return Err(Error::Mongo {
            context: format!("target: inserting into {ns}"),
            message: format!("write concern not satisfied: {}", wce.message),
        });
    }
    let mut dups = Vec::new();
    for we in ime.write_errors.iter().flatten() {
        let Some(doc) = docs.get(we.index) else {
            continue;
        };
        if we.code == 11000 {
            dups.push(doc);
        } else {
            return Err(Error::Mongo {
                context: format!("target: inserting into {ns}"),
                message: format!(
                    "document _id {} was rejected (code {}): {}",
                    show_id(&id_of(doc)),
                    we.code,
                    we.message
                ),
            });
        }
    }
    if dups.is_empty() {
        return Ok(());
    }
    let ids: Vec<Bson> = dups
        .iter()
        .filter_map(|d| Bson::try_from(id_of(d)).ok())
        .collect();
    let mut existing: HashMap<String, RawDocumentBuf> = HashMap::new();
    let mut cur = coll
        .find(doc! {"_id": {"$in": ids}})
        .await
        .map_err(|e| dst.err(format!("reading back duplicates in {ns}"), e))?;
    while cur
        .advance()
        .await
        .map_err(|e| dst.err(format!("reading back duplicates in {ns}"), e))?
    {
        let raw = cur.current();
        existing.insert(show_id(&id_of(raw)), raw.to_raw_document_buf());
    }
    for d in dups {
        let id = show_id(&id_of(d));
        match existing.get(&id) {
            Some(t) if t.as_bytes() == d.as_bytes() => {}
            Some(_) if live => {
                tracing::debug!(
                    "{ns}: _id {id} changed on the source since it was first sent; sync patches it"
                );
            }
            Some(_) => {
                return Err(Error::Mongo {
                    context: format!("target: inserting into {ns}"),
                    message: format!(
                        "the target already holds a different document with _id {id} (left by another writer or an earlier run?); re-run with --drop to start this collection over"
                    ),
                });
            }
            None => {
                return Err(Error::Mongo {
                    context: format!("target: inserting into {ns}"),
                    message: format!(
                        "document _id {id} collides with a unique index on the target"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Builds the source's indexes on the target, one command per index, and returns the
/// failures (e.g. a unique index over duplicate values) with the server's reason.
/// Builds the source's indexes on the target; returns the failures and the unique indexes
/// a duplicate key turned away. The latter are not errors: copied while the app wrote, two
/// documents can hold one unique value for a moment (a swap straddled the scan); `sync`
/// patches them and then builds the index.
async fn build_indexes(src: &Mongo, dst: &Mongo, it: &Item) -> Result<(Vec<String>, Vec<String>)> {
    let mut errors = Vec::new();
    let mut deferred = Vec::new();
    let tdb = dst.client.database(&it.target.db);
    for entry in src.list_indexes(&it.source.db, &it.source.coll).await? {
        let Some(ix) = IndexMeta::from_entry(&entry) else {
            continue;
        };
        if ix.is_id_index() {
            continue;
        }
        if let Err(e) = tdb.run_command(ix.create_command(&it.target.coll)).await {
            let duplicate =
                matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 11000);
            if duplicate {
                let note = format!(
                    "unique index {} on {}: documents copied while the app wrote share a key for now; sync builds it after patching them",
                    ix.name, it.target
                );
                tracing::warn!("{note}");
                deferred.push(note);
            } else {
                errors.push(format!(
                    "index {} on {}: {}",
                    ix.name,
                    it.target,
                    crate::mongo::describe(&dst.uri, &e)
                ));
            }
        }
    }
    Ok((errors, deferred))
}

/// Counts documents of a collection exactly.
pub async fn count(m: &Mongo, ns: &Namespace) -> Result<u64> {
    let r = m
        .client
        .database(&ns.db)
        .run_command(doc! {"count": &ns.coll})
        .await
        .map_err(|e| m.err(format!("counting {ns}"), e))?;
    Ok(r.get("n").and_then(as_i64).unwrap_or(0) as u64)
}

/// How often the journal is written during a copy (plus at every collection boundary).
pub const JOURNAL_INTERVAL: Duration = Duration::from_millis(500);
