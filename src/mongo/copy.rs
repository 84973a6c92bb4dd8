//! The bulk copy: collections created with their options, documents streamed as raw BSON in
//! `_id` order through bounded channels (reads and writes overlap, memory stays bounded),
//! indexes built after the data, views last. Every acknowledged batch is journaled, so a
//! re-run continues where the last one stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, FuturesOrdered, StreamExt};
use mongodb::bson::{Bson, Document, RawBson, RawDocumentBuf, doc};
use mongodb::{Collection, Database};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::batches::{
    Acked, Batch, Reading, acknowledged, insert_batch, open_ledger, read_batches,
};
use crate::mongo::indexes::build_indexes;
use crate::mongo::jobs::{Item, exists, key};
use crate::mongo::ledger::LedgerWriter;
use crate::mongo::ns::Selection;
use crate::mongo::observe::Observer;
use crate::mongo::order;
use crate::mongo::progress::{CollectionProgress, ProgressStore};
use crate::mongo::raw::{Keep, ReadShape, Replies};

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
    /// Batches being inserted at once per collection, at least.
    pub writers: usize,
    /// Batches being inserted at once by the whole copy: the collections still copying share
    /// them, so the last big collection (apps keep most of their data in one) keeps as many
    /// inserts in flight as four collections would, enough to fill a long link (its
    /// bandwidth-delay product) and the target's cores. The write budget bounds their memory.
    pub in_flight: usize,
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
            in_flight: 8,
        }
    }
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
    /// What crossed the wire, as the servers counted it.
    pub wire: crate::mongo::traffic::WireReport,
}

/// Proves the target user may create, write, index and drop in every target database of
/// `items` (with a scratch collection it removes).
pub async fn check_target_access(dst: &Mongo, items: &[Item]) -> Result<()> {
    let mut dbs: Vec<String> = items.iter().map(|i| i.target.db.clone()).collect();
    dbs.sort();
    dbs.dedup();
    crate::mongo::access::check_target_can_write(dst, &dbs).await
}

/// True when `journal` records that this run created the target of `it` (its documents are
/// this run's own).
pub fn started_by(journal: &dyn ProgressStore, it: &Item) -> Result<bool> {
    Ok(journal.copied(&key(it))?.is_some_and(|p| p.created))
}

/// Lists the target collections that already hold documents (or a view of the same name),
/// leaving out those `--drop` replaces and those `started` says this run created. Reads only.
pub async fn busy_targets(
    dst: &Mongo,
    items: &[Item],
    started: impl Fn(&Item) -> Result<bool>,
    drop: bool,
) -> Result<Vec<String>> {
    let mut busy = Vec::new();
    for it in items {
        if drop || started(it)? {
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
    Ok(busy)
}

/// The refusal for target collections that hold data; `what_to_do` is told "it" or "them"
/// and names what the command at hand accepts.
pub fn refuse_busy(busy: &[String], what_to_do: impl Fn(&str) -> String) -> Result<()> {
    if busy.is_empty() {
        return Ok(());
    }
    Err(Error::refused(format!(
        "the target already holds data in {}; efs2atlas will not write into it. {}",
        busy.join(", "),
        what_to_do(if busy.len() == 1 { "it" } else { "them" })
    )))
}

/// Runs the copy of `items` (collections first, in parallel, then views).
pub async fn run(
    src: &Mongo,
    dst: &Mongo,
    items: &[Item],
    opts: &CopyOptions,
    journal: &dyn ProgressStore,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<CopyReport> {
    let started = Instant::now();
    let wire = crate::mongo::traffic::WireStart::take(src, dst).await;
    let (views, colls): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| i.meta.is_view());
    let ctx = Ctx {
        src,
        dst,
        opts,
        journal,
        observer,
        cancel,
        copying: AtomicUsize::new(0),
        copied: Default::default(),
    };
    let ctx = &ctx;
    let copying = stream::iter(colls)
        .map(|it| async move {
            let r = copy_collection(ctx, it).await;
            if let Err(e) = &r
                && !e.is_interrupted()
            {
                // One failure stops the others at their next batch; the journal keeps their progress.
                cancel.cancel();
            }
            r
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect::<Vec<Result<CollectionReport>>>();
    // The rate on the wire rides along on the progress line; it never ends by itself.
    let results = tokio::select! {
        r = copying => r,
        never = crate::mongo::traffic::watch_rate(dst, observer) => match never {},
    };
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
                    .is_none_or(|f: &Error| f.is_interrupted())
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
    report.wire = wire.since(src, dst, report.bytes).await;
    Ok(report)
}

async fn create_view(
    dst: &Mongo,
    it: &Item,
    journal: &dyn ProgressStore,
) -> Result<CollectionReport> {
    let k = key(it);
    let done = journal.copied(&k)?.is_some_and(|p| p.created);
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
    journal: &'a dyn ProgressStore,
    observer: &'a dyn Observer,
    cancel: &'a Cancel,
    /// Cursors copying documents right now (a collection in parts counts each part).
    copying: AtomicUsize,
    /// What this run copied per collection, by every cursor of it.
    copied: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl Ctx<'_> {
    fn count_copied(&self, k: &str, docs: u64, bytes: u64) {
        if let Ok(mut m) = self.copied.lock() {
            let e = m.entry(k.to_string()).or_default();
            e.0 += docs;
            e.1 += bytes;
        }
    }

    /// What this run copied of `k` since the last call.
    fn take_copied(&self, k: &str) -> (u64, u64) {
        self.copied
            .lock()
            .ok()
            .and_then(|mut m| m.remove(k))
            .unwrap_or_default()
    }

    /// How many batches one collection may have in flight now: its share of the copy's
    /// in-flight inserts, never fewer than `writers`.
    fn writers_now(&self) -> usize {
        let copying = self.copying.load(Ordering::Relaxed).max(1);
        (self.opts.in_flight / copying)
            .max(self.opts.writers)
            .max(1)
    }
}

/// Counts a cursor as copying while it lives.
struct Copying<'a>(&'a AtomicUsize);

impl<'a> Copying<'a> {
    fn new(n: &'a AtomicUsize) -> Copying<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Copying(n)
    }
}

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn copy_collection(ctx: &Ctx<'_>, it: &Item) -> Result<CollectionReport> {
    let started = Instant::now();
    let k = key(it);
    let prior = ctx.journal.copied(&k)?;
    let resumed = prior.is_some();
    let mut progress = prior.unwrap_or_else(|| CollectionProgress {
        target: it.target.to_string(),
        order_trusted: true,
        ..Default::default()
    });
    if progress.data_done && progress.indexes_done {
        return Ok(report(it, &progress, (0, 0), started, resumed));
    }
    if ctx.cancel.is_cancelled() {
        return Err(interrupted());
    }
    if !progress.created {
        create_target(ctx, it).await?;
        progress.created = true;
        record(ctx.journal, &k, progress.clone(), true)?;
    }
    ctx.observer
        .start(&k, it.estimated_docs, progress.docs, progress.bytes);
    let mut copied_now = (0, 0);
    if !progress.data_done {
        let (p, r) = copy_with_retries(ctx, it, progress).await;
        progress = p;
        copied_now = r?;
    }
    if !progress.indexes_done {
        if ctx.cancel.is_cancelled() {
            return Err(interrupted());
        }
        // Building an index that already exists with the same options is a no-op: retryable.
        (progress.index_errors, progress.index_deferred) =
            crate::mongo::with_retries(&format!("indexing {k}"), ctx.cancel, || {
                build_indexes(ctx.src, ctx.dst, it)
            })
            .await?;
        progress.indexes_done = true;
        record(ctx.journal, &k, progress.clone(), true)?;
    }
    ctx.observer.finish(&k);
    Ok(report(it, &progress, copied_now, started, resumed))
}

/// Creates the target collection with the source's options (dropping it first with
/// `--drop`). Both are idempotent, so a dropped link retries them.
async fn create_target(ctx: &Ctx<'_>, it: &Item) -> Result<()> {
    let (dst, opts) = (ctx.dst, ctx.opts);
    let tdb = dst.client.database(&it.target.db);
    let what = format!("creating {}", key(it));
    crate::mongo::with_retries(&what, ctx.cancel, || async {
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
    .await
}

/// Copies the documents, retrying from the last acknowledged batch; an attempt that got
/// nowhere makes the next one use half-size batches. Returns the progress (whatever
/// happened) and what this run copied.
async fn copy_with_retries(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: CollectionProgress,
) -> (CollectionProgress, Result<(u64, u64)>) {
    let progress_cell = std::sync::Mutex::new(progress);
    let docs_so_far = || progress_cell.lock().map(|g| g.docs).unwrap_or(0);
    // (docs when the previous attempt started, halvings)
    let last = std::sync::Mutex::new((None::<u64>, 0usize));
    let result = crate::mongo::with_retries_progress(
        &format!("copying {}", key(it)),
        ctx.cancel,
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
    (progress_cell.into_inner().unwrap_or_default(), result)
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

/// Writes one collection's progress into the journal (saved now when `force`).
fn record(
    journal: &dyn ProgressStore,
    key: &str,
    progress: CollectionProgress,
    force: bool,
) -> Result<()> {
    journal.record_copy(key, progress, force)
}

fn interrupted() -> Error {
    Error::interrupted("interrupted; progress is saved in the journal")
}

/// Parses a journaled `_id`.
fn id_from_journal(v: &serde_json::Value) -> Option<Bson> {
    Bson::try_from(v.clone()).ok()
}

/// Where one cursor of a collection reads: all of it, or one part (`_id` from `from`, before
/// `until`), and the file its ledger goes to.
struct Span {
    from: Option<Bson>,
    until: Option<Bson>,
    ledger_key: String,
}

impl Span {
    fn whole(it: &Item) -> Span {
        Span {
            from: None,
            until: None,
            ledger_key: key(it),
        }
    }
}

/// Opens the source after the last acknowledged `_id` when the source's order was
/// trustworthy; otherwise rescans the span (duplicate checks skip what is already there).
async fn open_source(
    src: &Mongo,
    it: &Item,
    progress: &CollectionProgress,
    span: &Span,
    shape: ReadShape,
) -> Result<Replies> {
    let scoll: Collection<RawDocumentBuf> = src
        .client
        .database(&it.source.db)
        .collection(&it.source.coll);
    let resume_after = match (&progress.last_id, progress.order_trusted) {
        (Some(v), true) => id_from_journal(v),
        _ => None,
    };
    let raw = |b: &Bson| {
        RawBson::try_from(b.clone())
            .map_err(|e| Error::other(format!("journal _id for {} is unusable: {e}", key(it))))
    };
    let lower = match (&resume_after, &span.from) {
        (Some(after), _) => Some((raw(after)?, false)),
        (None, Some(from)) => Some((raw(from)?, true)),
        (None, None) => None,
    };
    let upper = span.until.as_ref().map(raw).transpose()?;
    let lower_ref = lower.as_ref().map(|(v, inc)| (v.as_raw_bson_ref(), *inc));
    let upper_ref = upper.as_ref().map(|v| v.as_raw_bson_ref());
    let filter = order::range_filter(
        lower_ref.as_ref().map(|(v, inc)| (v, *inc)),
        upper_ref.as_ref(),
    );
    // A reply stays counted for itself and for the insert commands made of it.
    Replies::by_id((&scoll, "source"), filter, shape, Keep::Read(2))
        .await
        .map_err(|e| src.err(format!("reading {}", it.source), e))
}

/// Saves a cursor's progress into the journal (`true`: now).
type Save<'a> = dyn Fn(&CollectionProgress, bool) -> Result<()> + Sync + 'a;

async fn copy_data(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    halvings: usize,
) -> Result<(u64, u64)> {
    if progress.parts.is_empty() && progress.docs == 0 && progress.last_id.is_none() {
        progress.parts = split(ctx, it).await;
        if !progress.parts.is_empty() {
            record(ctx.journal, &key(it), progress.clone(), true)?;
        }
    }
    if !progress.parts.is_empty() {
        return copy_parts(ctx, it, progress, halvings).await;
    }
    let k = key(it);
    let save = |p: &CollectionProgress, force: bool| record(ctx.journal, &k, p.clone(), force);
    copy_span(ctx, it, progress, &Span::whole(it), halvings, &save).await?;
    Ok(ctx.take_copied(&k))
}

/// Copies one span of a collection to its end, `progress` its own; marks it `data_done`.
async fn copy_span(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    span: &Span,
    halvings: usize,
    save: &Save<'_>,
) -> Result<()> {
    let opts = ctx.opts;
    // After failures without progress, smaller batches get through a link that keeps dropping.
    let shrink = 1usize << halvings.min(5);
    let mut shape = it.read_shape();
    shape.batch_size = (shape.batch_size / shrink as u32).max(1);
    let replies = open_source(ctx.src, it, progress, span, shape).await?;
    let _copying = Copying::new(&ctx.copying);
    let (tx, rx) = mpsc::channel::<Result<Batch>>(2);
    let write_concern = ctx
        .dst
        .client
        .database(&it.target.db)
        .write_concern()
        .and_then(|wc| mongodb::bson::to_document(wc).ok())
        .filter(|d| !d.is_empty());
    let reading = Reading {
        batch_bytes: (opts.batch_bytes / shrink).max(64 * 1024),
        batch_docs: (opts.batch_docs / shrink).max(100),
        src: ctx.src.clone(),
        ns: it.source.to_string(),
        target_coll: it.target.coll.clone(),
        write_concern,
    };
    let reader = tokio::spawn(read_batches(replies, tx, reading));
    let mut ledger = open_ledger(ctx.journal, it, progress, &span.ledger_key);
    let (reading, result) = pump(ctx, it, progress, rx, &mut ledger, save).await;
    reader.abort();
    // Whatever was acknowledged is in `progress`; make it durable before reporting anything.
    save(progress, true)?;
    result?;
    if reading {
        return Err(interrupted());
    }
    if let Some(mut w) = ledger {
        progress.ledger = Some(w.finish()?);
    }
    progress.data_done = true;
    save(progress, true)
}

/// Copies the parts of a collection side by side, then joins their ledgers into the
/// collection's (parts follow each other in `_id` order, so the joined ledger is sorted).
async fn copy_parts(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    halvings: usize,
) -> Result<(u64, u64)> {
    let k = key(it);
    let whole = std::sync::Mutex::new(progress.clone());
    let save_part = |i: usize, p: &CollectionProgress, force: bool| -> Result<()> {
        let snapshot = {
            let mut w = whole
                .lock()
                .map_err(|_| Error::other("copy progress lock poisoned"))?;
            if let Some(part) = w.parts.get_mut(i) {
                part.progress = p.clone();
            }
            w.docs = w.parts.iter().map(|x| x.progress.docs).sum();
            w.bytes = w.parts.iter().map(|x| x.progress.bytes).sum();
            w.clone()
        };
        record(ctx.journal, &k, snapshot, force)
    };
    let save_part = &save_part;
    let runs = progress
        .parts
        .iter()
        .enumerate()
        .filter(|(_, part)| !part.progress.data_done)
        .map(|(i, part)| {
            let span = Span {
                from: part.from.as_ref().and_then(id_from_journal),
                until: part.until.as_ref().and_then(id_from_journal),
                ledger_key: format!("{k}#part{i}"),
            };
            let mut p = part.progress.clone();
            async move {
                let save = move |p: &CollectionProgress, force: bool| save_part(i, p, force);
                copy_span(ctx, it, &mut p, &span, halvings, &save).await
            }
        });
    let results = futures_util::future::join_all(runs).await;
    *progress = whole
        .into_inner()
        .map_err(|_| Error::other("copy progress lock poisoned"))?;
    let copied = ctx.take_copied(&k);
    // A real failure explains more than the interruptions it caused.
    let mut first_err: Option<Error> = None;
    for r in results {
        if let Err(e) = r
            && first_err.as_ref().is_none_or(|f| f.is_interrupted())
        {
            first_err = Some(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    join_ledgers(ctx.journal, it, progress)?;
    progress.data_done = true;
    record(ctx.journal, &k, progress.clone(), true)?;
    Ok(copied)
}

/// Joins the parts' ledgers, in order, into the collection's (generation 0), and removes
/// them. Any part without a ledger (its source order was not trusted) leaves the collection
/// without one: sync and verify then read both sides.
fn join_ledgers(
    store: &dyn ProgressStore,
    it: &Item,
    progress: &mut CollectionProgress,
) -> Result<()> {
    progress.order_trusted = progress.parts.iter().all(|p| p.progress.order_trusted);
    let Some(dir) = store.ledger_dir() else {
        return Ok(());
    };
    let k = key(it);
    let marks: Option<Vec<_>> = progress
        .parts
        .iter()
        .map(|p| p.progress.ledger.filter(|_| !p.progress.ledger_off))
        .collect();
    let paths: Vec<_> = (0..progress.parts.len())
        .map(|i| crate::mongo::ledger::path_in(&dir, &format!("{k}#part{i}"), 0))
        .collect();
    match marks {
        Some(marks) if progress.order_trusted && !progress.ledger_off => {
            let out = crate::mongo::ledger::path_in(&dir, &k, 0);
            let parts: Vec<_> = paths.iter().cloned().zip(marks).collect();
            match crate::mongo::ledger::join(&parts, &out) {
                Ok(mark) => progress.ledger = Some(mark),
                Err(e) => {
                    tracing::warn!("{e}; {} is compared on both sides instead", it.source);
                    progress.ledger = None;
                    progress.ledger_off = true;
                }
            }
        }
        _ => {
            progress.ledger = None;
            progress.ledger_off = true;
        }
    }
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// A collection at least this large (estimated) is read in parts...
const SPLIT_BYTES: u64 = 8 * 1024 * 1024;
/// ...when it also holds at least this many documents (a few huge documents gain nothing).
const SPLIT_DOCS: u64 = 10_000;
/// How many parts.
const PARTS: usize = 4;
/// Samples per part when choosing the boundaries.
const SAMPLES_PER_PART: usize = 64;

/// The parts a large collection is copied in, chosen from a random sample of its `_id`s
/// (`$sample`): boundaries are ObjectIds, dates or integers, all of one type, where the `_id`
/// index's order is MongoDB's whatever the collation. Anything else (a small collection, a
/// time series, string `_id`s, a sample that fails) is copied with one cursor.
async fn split(ctx: &Ctx<'_>, it: &Item) -> Vec<crate::mongo::progress::Part> {
    use crate::mongo::progress::Part;
    let est_bytes = it.estimated_docs.saturating_mul(it.avg_doc_bytes);
    if it.meta.kind != "collection" || est_bytes < SPLIT_BYTES || it.estimated_docs < SPLIT_DOCS {
        return vec![];
    }
    let coll = ctx
        .src
        .client
        .database(&it.source.db)
        .collection::<Document>(&it.source.coll);
    let pipeline = vec![
        doc! {"$sample": {"size": (PARTS * SAMPLES_PER_PART) as i64}},
        doc! {"$project": {"_id": 1}},
    ];
    let sample = tokio::time::timeout(Duration::from_secs(30), async {
        let mut cur = coll.aggregate(pipeline).await?;
        let mut ids = Vec::new();
        while let Some(d) = cur.next().await {
            if let Some(id) = d?.get("_id") {
                ids.push(id.clone());
            }
        }
        Ok::<_, mongodb::error::Error>(ids)
    })
    .await;
    let Ok(Ok(ids)) = sample else {
        return vec![];
    };
    // Boundaries come from the commonest splittable type alone (an app's `_id`s are nearly
    // all of one): the other brackets go to the first or last part by their type clauses.
    let ids: Vec<RawBson> = ids
        .into_iter()
        .filter_map(|b| RawBson::try_from(b).ok())
        .filter(|v| {
            matches!(
                v,
                RawBson::ObjectId(_) | RawBson::DateTime(_) | RawBson::Int32(_) | RawBson::Int64(_)
            )
        })
        .collect();
    let commonest = (0u8..16)
        .max_by_key(|b| {
            ids.iter()
                .filter(|v| order::bracket(&v.as_raw_bson_ref()) == *b)
                .count()
        })
        .unwrap_or(0);
    let mut ids: Vec<RawBson> = ids
        .into_iter()
        .filter(|v| order::bracket(&v.as_raw_bson_ref()) == commonest)
        .collect();
    if ids.len() < PARTS * SAMPLES_PER_PART / 2 {
        return vec![];
    }
    ids.sort_by(|a, b| order::cmp(&a.as_raw_bson_ref(), &b.as_raw_bson_ref()));
    let mut bounds: Vec<RawBson> = (1..PARTS)
        .map(|i| ids[i * ids.len() / PARTS].clone())
        .collect();
    bounds.dedup();
    let json = |v: &RawBson| {
        Bson::try_from(v.clone())
            .map(|b| b.into_canonical_extjson())
            .ok()
    };
    let mut parts = Vec::new();
    let mut from = None;
    for b in &bounds {
        let until = json(b);
        if until.is_none() {
            return vec![];
        }
        parts.push(Part {
            from: from.clone(),
            until: until.clone(),
            progress: CollectionProgress {
                order_trusted: true,
                ..Default::default()
            },
        });
        from = until;
    }
    parts.push(Part {
        from,
        until: None,
        progress: CollectionProgress {
            order_trusted: true,
            ..Default::default()
        },
    });
    parts
}

/// Inserts the batches as they come, a few in flight, recording each acknowledged one.
/// Returns what was copied, whether the source still had more (stopped early), and how it
/// ended.
async fn pump(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    mut rx: mpsc::Receiver<Result<Batch>>,
    ledger: &mut Option<LedgerWriter>,
    save: &Save<'_>,
) -> (bool, Result<()>) {
    let k = key(it);
    let tdb: Database = ctx.dst.client.database(&it.target.db);
    let tcoll: Collection<RawDocumentBuf> = tdb.collection(&it.target.coll);
    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    let result: Result<()> = loop {
        let can_take = reading && in_flight.len() < ctx.writers_now() && !ctx.cancel.is_cancelled();
        tokio::select! {
            biased;
            done = in_flight.next(), if !in_flight.is_empty() => {
                let Some(done) = done else { continue };
                let acked: Acked = match done {
                    Ok(d) => d,
                    Err(e) => break Err(e),
                };
                let (docs, bytes) = (acked.docs, acked.bytes);
                ctx.count_copied(&k, docs, bytes);
                let recorded = acknowledged(progress, acked, ledger)
                    .and_then(|()| save(progress, false));
                if let Err(e) = recorded {
                    break Err(e);
                }
                ctx.observer.progress(&k, docs, bytes);
            }
            batch = rx.recv(), if can_take => match batch {
                Some(Ok(mut b)) => {
                    let (tdb, tcoll, dst) = (tdb.clone(), tcoll.clone(), ctx.dst.clone());
                    let (target, live) = (it.target.to_string(), ctx.opts.live);
                    in_flight.push_back(async move {
                        let docs = b.items.len() as u64;
                        let entries =
                            insert_batch(&dst, (&tdb, &tcoll), &target, &mut b, live).await?;
                        // The batch's share of the budget is given back once it is acknowledged.
                        let (bytes, last_id, order_ok) = (b.bytes, b.last_id, b.order_ok);
                        Ok::<_, Error>(Acked { docs, bytes, last_id, order_ok, entries })
                    });
                }
                Some(Err(e)) => break Err(e),
                None => reading = false,
            },
            _ = ctx.cancel.cancelled(), if in_flight.is_empty() && reading => break Ok(()),
            else => break Ok(()),
        }
    };
    (reading, result)
}

/// How often the journal is written during a copy (plus at every collection boundary).
pub const JOURNAL_INTERVAL: Duration = Duration::from_millis(500);
