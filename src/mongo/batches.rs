//! The two ends of a collection's copy: the source cursor read into byte-bounded batches
//! (a bounded channel holds at most a few), and each batch inserted unordered on the target.

use std::collections::HashMap;
use std::sync::Arc;

use mongodb::bson::{Bson, RawBson, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Cursor};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::jobs::{Item as Job, key};
use crate::mongo::ledger::{self, LedgerWriter};
use crate::mongo::order;
use crate::mongo::progress::{CollectionProgress, ProgressStore};
use crate::mongo::stream::{Item, doc_hash, id_of, show_id};

/// A batch read from the source, in `_id` order.
pub struct Batch {
    /// The documents.
    pub docs: Vec<RawDocumentBuf>,
    /// Their size.
    pub bytes: u64,
    /// The last `_id` in it.
    pub last_id: RawBson,
    /// False once the source has returned an `_id` out of MongoDB order.
    pub order_ok: bool,
    /// Its share of the copy's memory budget, given back when the batch is done with.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// How one collection's cursor is read.
pub struct Reading {
    /// A batch is sent once it holds this many bytes...
    pub batch_bytes: usize,
    /// ...or this many documents.
    pub batch_docs: usize,
    /// The source (for error messages).
    pub src: Mongo,
    /// The namespace read.
    pub ns: String,
    /// The bytes (in KiB) every collection's batches may hold at once, read but not yet
    /// acknowledged: memory stays bounded however large the documents and however many
    /// collections are in flight.
    pub budget: Arc<Semaphore>,
    /// The budget's size in KiB (a document larger than it takes all of it).
    pub budget_kib: usize,
}

/// A batch being filled.
#[derive(Default)]
struct Filling {
    docs: Vec<RawDocumentBuf>,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Filling {
    fn take(&mut self, last_id: RawBson, order_ok: bool) -> Batch {
        let f = std::mem::take(self);
        Batch {
            docs: f.docs,
            bytes: f.bytes as u64,
            last_id,
            order_ok,
            permit: f.permit,
        }
    }
}

/// The share of the budget a document of `len` bytes takes (never more than all of it).
fn units(len: usize, total: usize) -> u32 {
    (len / 1024 + 1).min(total.max(1)).min(u32::MAX as usize) as u32
}

/// Reads the cursor into byte-bounded batches and sends them down a bounded channel; every
/// document first takes its share of the shared budget, so at most the budget's bytes are
/// ever held across all collections (a batch being filled is sent rather than waited on).
pub async fn read_batches(
    mut cursor: Cursor<RawDocumentBuf>,
    tx: mpsc::Sender<Result<Batch>>,
    r: Reading,
) {
    let mut filling = Filling::default();
    let mut prev: Option<RawBson> = None;
    let mut order_ok = true;
    loop {
        match cursor.advance().await {
            Ok(true) => {
                let raw = cursor.current();
                let n = units(raw.as_bytes().len(), r.budget_kib);
                let permit = match r.budget.clone().try_acquire_many_owned(n) {
                    Ok(p) => p,
                    Err(_) => {
                        if !filling.docs.is_empty() {
                            let last = prev.clone().unwrap_or(RawBson::Null);
                            if tx.send(Ok(filling.take(last, order_ok))).await.is_err() {
                                return;
                            }
                        }
                        match r.budget.clone().acquire_many_owned(n).await {
                            Ok(p) => p,
                            Err(_) => return,
                        }
                    }
                };
                match &mut filling.permit {
                    Some(p) => p.merge(permit),
                    None => filling.permit = Some(permit),
                }
                let id = id_of(raw);
                if let Some(p) = &prev
                    && order::cmp(&p.as_raw_bson_ref(), &id.as_raw_bson_ref())
                        != std::cmp::Ordering::Less
                {
                    order_ok = false;
                }
                prev = Some(id);
                filling.bytes += raw.as_bytes().len();
                filling.docs.push(raw.to_raw_document_buf());
                if filling.bytes >= r.batch_bytes || filling.docs.len() >= r.batch_docs {
                    let last = prev.clone().unwrap_or(RawBson::Null);
                    if tx.send(Ok(filling.take(last, order_ok))).await.is_err() {
                        return;
                    }
                }
            }
            Ok(false) => break,
            Err(e) => {
                let _ = tx
                    .send(Err(r.src.err(format!("reading {}", r.ns), e)))
                    .await;
                return;
            }
        }
    }
    if !filling.docs.is_empty() {
        let last = prev.unwrap_or(RawBson::Null);
        let _ = tx.send(Ok(filling.take(last, order_ok))).await;
    }
}

/// Inserts a batch, unordered, and returns what the target now holds for each document (for
/// the ledger). Duplicate `_id`s are fine when the target holds the very same bytes (a batch
/// acknowledged by the server but not yet journaled before a crash); anything else is an
/// error naming the document, except, while the source is live, an older version of it, which
/// sync patches later.
pub async fn insert_batch(
    dst: &Mongo,
    coll: &Collection<RawDocumentBuf>,
    ns: &str,
    docs: Vec<RawDocumentBuf>,
    live: bool,
) -> Result<Vec<Item>> {
    let held = insert(dst, coll, ns, &docs, live).await?;
    Ok(docs
        .iter()
        .map(|d| {
            let id = id_of(d);
            let (hash, len) = held
                .get(&show_id(&id))
                .copied()
                .unwrap_or_else(|| (doc_hash(d.as_bytes()), d.as_bytes().len()));
            Item { id, hash, len }
        })
        .collect())
}

/// The insert itself; returns the documents the target holds in another version (live).
async fn insert(
    dst: &Mongo,
    coll: &Collection<RawDocumentBuf>,
    ns: &str,
    docs: &[RawDocumentBuf],
    live: bool,
) -> Result<HashMap<String, (u128, usize)>> {
    let err = match coll
        .insert_many(docs)
        .ordered(false)
        // Documents the source holds go over as they are, even ones its validator would now refuse.
        .bypass_document_validation(true)
        .await
    {
        Ok(_) => return Ok(HashMap::new()),
        Err(e) => e,
    };
    let ErrorKind::InsertMany(ime) = err.kind.as_ref() else {
        return Err(dst.err(format!("inserting into {ns}"), err));
    };
    if let Some(wce) = &ime.write_concern_error {
        return Err(Error::mongo(
            format!("target: inserting into {ns}"),
            format!("write concern not satisfied: {}", wce.message),
        ));
    }
    let mut dups = Vec::new();
    for we in ime.write_errors.iter().flatten() {
        let Some(doc) = docs.get(we.index) else {
            continue;
        };
        if we.code != 11000 {
            return Err(Error::mongo(
                format!("target: inserting into {ns}"),
                format!(
                    "document _id {} was rejected (code {}): {}",
                    show_id(&id_of(doc)),
                    we.code,
                    we.message
                ),
            ));
        }
        dups.push(doc);
    }
    if dups.is_empty() {
        return Ok(HashMap::new());
    }
    check_duplicates(dst, coll, ns, &dups, live).await
}

/// Reads back the documents a duplicate `_id` turned away: the very same bytes are fine
/// (sent before a crash), a changed document is left to sync when the source is live (and
/// returned with what the target holds instead).
async fn check_duplicates(
    dst: &Mongo,
    coll: &Collection<RawDocumentBuf>,
    ns: &str,
    dups: &[&RawDocumentBuf],
    live: bool,
) -> Result<HashMap<String, (u128, usize)>> {
    let mut held = HashMap::new();
    let ids: Vec<Bson> = dups
        .iter()
        .filter_map(|d| Bson::try_from(id_of(d)).ok())
        .collect();
    let mut existing: HashMap<String, RawDocumentBuf> = HashMap::new();
    let read_err = |e| dst.err(format!("reading back duplicates in {ns}"), e);
    let mut cur = coll
        .find(doc! {"_id": {"$in": ids}})
        .await
        .map_err(read_err)?;
    while cur.advance().await.map_err(read_err)? {
        let raw = cur.current();
        existing.insert(show_id(&id_of(raw)), raw.to_raw_document_buf());
    }
    let refuse = |message: String| Error::mongo(format!("target: inserting into {ns}"), message);
    for d in dups {
        let id = show_id(&id_of(d));
        match existing.get(&id) {
            Some(t) if t.as_bytes() == d.as_bytes() => {}
            Some(t) if live => {
                tracing::debug!(
                    "{ns}: _id {id} changed on the source since it was first sent; sync patches it"
                );
                held.insert(id, (doc_hash(t.as_bytes()), t.as_bytes().len()));
            }
            Some(_) => {
                return Err(refuse(format!(
                    "the target already holds a different document with _id {id} (left by another writer or an earlier run?); re-run with --drop to start this collection over"
                )));
            }
            None => {
                return Err(refuse(format!(
                    "document _id {id} collides with a unique index on the target"
                )));
            }
        }
    }
    Ok(held)
}

/// The collection's ledger, continued at its journaled mark; `None` when this run keeps no
/// ledger or this collection cannot have one (then sync and verify read both sides).
pub fn open_ledger(
    store: &dyn ProgressStore,
    it: &Job,
    progress: &mut CollectionProgress,
) -> Option<LedgerWriter> {
    let dir = store.ledger_dir()?;
    // A time series reads back in another field order than it was written: no byte ledger.
    if progress.ledger_off || !progress.order_trusted || it.meta.kind != "collection" {
        progress.ledger_off = true;
        return None;
    }
    let generation = progress.ledger.map_or(0, |m| m.generation);
    let path = ledger::path_in(&dir, &key(it), generation);
    match LedgerWriter::open(&path, progress.ledger) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("{e}; {} is compared on both sides instead", it.source);
            progress.ledger = None;
            progress.ledger_off = true;
            None
        }
    }
}

/// A batch the target acknowledged.
pub struct Acked {
    /// Documents.
    pub docs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The last `_id`.
    pub last_id: RawBson,
    /// The batch came in MongoDB order.
    pub order_ok: bool,
    /// What the target holds for each document, in `_id` order.
    pub entries: Vec<crate::mongo::stream::Item>,
}

/// Counts an acknowledged batch into the collection's progress and its ledger (a source that
/// returns `_id`s out of MongoDB's order ends the ledger: it could not be merged in order).
pub fn acknowledged(
    p: &mut CollectionProgress,
    acked: Acked,
    ledger: &mut Option<LedgerWriter>,
) -> Result<()> {
    p.docs += acked.docs;
    p.bytes += acked.bytes;
    p.last_id = Some(
        Bson::try_from(acked.last_id)
            .map(|b| b.into_canonical_extjson())
            .unwrap_or(serde_json::Value::Null),
    );
    p.order_trusted = p.order_trusted && acked.order_ok;
    if !p.order_trusted {
        *ledger = None;
        p.ledger = None;
        p.ledger_off = true;
    }
    if let Some(w) = ledger {
        for e in &acked.entries {
            w.append(&e.id, e.hash, e.len as u32)?;
        }
        p.ledger = Some(w.flush()?);
    }
    Ok(())
}
