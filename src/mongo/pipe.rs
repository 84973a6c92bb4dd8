//! One cursor's copy into the target: a span of a collection (all of it, or one `_id` part)
//! read as raw BSON in `_id` order through a bounded channel into batches, inserted a few at
//! a time (reads and writes overlap, memory stays bounded), every acknowledged batch recorded
//! in the journal and the ledger, so a re-run continues where the last one stopped.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::stream::{FuturesOrdered, StreamExt};
use mongodb::bson::{Bson, RawBson, RawDocumentBuf};
use mongodb::{Collection, Database};
use tokio::sync::mpsc;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::batches::{
    Acked, Batch, Reading, acknowledged, insert_batch, open_ledger, read_batches,
};
use crate::mongo::jobs::{Item, key};
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

/// Everything one collection's copy needs from the run.
pub(crate) struct Ctx<'a> {
    pub(crate) src: &'a Mongo,
    pub(crate) dst: &'a Mongo,
    pub(crate) opts: &'a CopyOptions,
    pub(crate) journal: &'a dyn ProgressStore,
    pub(crate) observer: &'a dyn Observer,
    pub(crate) cancel: &'a Cancel,
    /// Cursors copying documents right now (a collection in parts counts each part).
    pub(crate) copying: AtomicUsize,
    /// What this run copied per collection, by every cursor of it.
    pub(crate) copied: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
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
    pub(crate) fn take_copied(&self, k: &str) -> (u64, u64) {
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

/// Writes one collection's progress into the journal (saved now when `force`).
pub(crate) fn record(
    journal: &dyn ProgressStore,
    key: &str,
    progress: CollectionProgress,
    force: bool,
) -> Result<()> {
    journal.record_copy(key, progress, force)
}

/// All the values, or the error that explains the most: a real failure rather than the
/// interruptions it caused (one failure stops the other cursors at their next batch).
pub(crate) fn all_or_first_failure<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(results.len());
    let mut first_err: Option<Error> = None;
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                if first_err.as_ref().is_none_or(|f| f.is_interrupted()) {
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub(crate) fn interrupted() -> Error {
    Error::interrupted("interrupted; progress is saved in the journal")
}

/// Parses a journaled `_id`.
pub(crate) fn id_from_journal(v: &serde_json::Value) -> Option<Bson> {
    Bson::try_from(v.clone()).ok()
}

/// Where one cursor of a collection reads: all of it, or one part (`_id` from `from`, before
/// `until`), and the file its ledger goes to.
pub(crate) struct Span {
    pub(crate) from: Option<Bson>,
    pub(crate) until: Option<Bson>,
    pub(crate) ledger_key: String,
}

impl Span {
    pub(crate) fn whole(it: &Item) -> Span {
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
pub(crate) type Save<'a> = dyn Fn(&CollectionProgress, bool) -> Result<()> + Sync + 'a;

/// Copies one span of a collection to its end, `progress` its own; marks it `data_done`.
pub(crate) async fn copy_span(
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
