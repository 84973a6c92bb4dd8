//! The bulk copy: collections created with their options, documents streamed as raw BSON in
//! `_id` order through bounded channels (reads and writes overlap, memory stays bounded),
//! indexes built after the data, views last. Every acknowledged batch is journaled, so a
//! re-run continues where the last one stopped.

use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use mongodb::bson::{Document, doc};
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::indexes::build_indexes;
use crate::mongo::jobs::{Item, exists, key};
use crate::mongo::observe::Observer;
pub use crate::mongo::pipe::CopyOptions;
use crate::mongo::pipe::{Ctx, Span, copy_span, interrupted, record};
use crate::mongo::progress::{CollectionProgress, ProgressStore};

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
    let mut report = CopyReport {
        collections: crate::mongo::pipe::all_or_first_failure(results)?,
        ..CopyReport::default()
    };
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

async fn copy_data(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    halvings: usize,
) -> Result<(u64, u64)> {
    if progress.parts.is_empty() && progress.docs == 0 && progress.last_id.is_none() {
        progress.parts = crate::mongo::parts::split(ctx, it).await;
        if !progress.parts.is_empty() {
            record(ctx.journal, &key(it), progress.clone(), true)?;
        }
    }
    if !progress.parts.is_empty() {
        return crate::mongo::parts::copy_parts(ctx, it, progress, halvings).await;
    }
    let k = key(it);
    let save = |p: &CollectionProgress, force: bool| record(ctx.journal, &k, p.clone(), force);
    copy_span(ctx, it, progress, &Span::whole(it), halvings, &save).await?;
    Ok(ctx.take_copied(&k))
}

/// How often the journal is written during a copy (plus at every collection boundary).
pub const JOURNAL_INTERVAL: Duration = Duration::from_millis(500);
