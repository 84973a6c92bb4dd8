//! The two ends of a collection's copy: the source read reply by reply (documents never
//! copied one by one) into `insert` commands of bounded size, and each command sent unordered to
//! the target. Every byte held on the way is counted in the process's memory budget.

use std::collections::HashMap;

use mongodb::bson::{Bson, Document, RawBson, RawDocument, RawDocumentBuf, doc};
use mongodb::{Collection, Database};

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::jobs::Item as Job;
use crate::mongo::ledger::{self, LedgerWriter};
use crate::mongo::order;
use crate::mongo::progress::{CollectionProgress, ProgressStore};
use crate::mongo::raw::{self, Replies, Share};
use crate::mongo::stream::{Item, doc_hash, id_of, show_id};

/// The most document bytes one `insert` carries: a command may be 16 MiB + 16 KiB, and a lone
/// document of up to 16 MiB always goes alone.
const MAX_INSERT_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;

/// Copies of its command the driver holds for an insert in flight (see [`raw::writes`]), one
/// more while it compresses them.
pub fn insert_copies() -> usize {
    3 + crate::mongo::wire::compression_copies()
}

/// A batch read from the source, in `_id` order, as the `insert` command that writes it.
pub struct Batch {
    /// The command, documents inside.
    pub body: RawDocumentBuf,
    /// Each document's `_id`, hash and size, in order (for the ledger and duplicate checks).
    pub items: Vec<Item>,
    /// Document bytes.
    pub bytes: u64,
    /// The last `_id` in it.
    pub last_id: RawBson,
    /// False once the source has returned an `_id` out of MongoDB order.
    pub order_ok: bool,
    /// Its share of the memory budget, given back when the batch is done with.
    pub share: Share,
}

/// How one collection's source is read and batched.
pub struct Reading {
    /// A batch is sent once it holds this many bytes...
    pub batch_bytes: usize,
    /// ...or this many documents.
    pub batch_docs: usize,
    /// The source (for error messages).
    pub src: Mongo,
    /// The namespace read.
    pub ns: String,
    /// The target collection's name (the `insert` command names it).
    pub target_coll: String,
    /// The target's write concern, when its URI sets one (a raw command gets no default).
    pub write_concern: Option<Document>,
}

/// An `insert` command being filled, written as BSON directly: `{insert, ordered: false,
/// bypassDocumentValidation: true, [writeConcern], documents: [...]}`.
struct Filling {
    buf: Vec<u8>,
    array_at: usize,
    items: Vec<Item>,
    bytes: usize,
    share: Share,
}

fn cstring(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

impl Filling {
    fn new(r: &Reading, capacity: usize) -> Filling {
        let mut buf = Vec::with_capacity(capacity + r.target_coll.len() + 128);
        buf.extend_from_slice(&[0; 4]);
        buf.push(0x02);
        cstring(&mut buf, "insert");
        buf.extend_from_slice(&(r.target_coll.len() as i32 + 1).to_le_bytes());
        cstring(&mut buf, &r.target_coll);
        buf.push(0x08);
        cstring(&mut buf, "ordered");
        buf.push(0);
        // Documents the source holds go over as they are, even ones its validator would now refuse.
        buf.push(0x08);
        cstring(&mut buf, "bypassDocumentValidation");
        buf.push(1);
        if let Some(wc) = &r.write_concern
            && let Ok(raw) = RawDocumentBuf::from_document(wc)
        {
            buf.push(0x03);
            cstring(&mut buf, "writeConcern");
            buf.extend_from_slice(raw.as_bytes());
        }
        buf.push(0x04);
        cstring(&mut buf, "documents");
        let array_at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        Filling {
            buf,
            array_at,
            items: Vec::new(),
            bytes: 0,
            share: Share::default(),
        }
    }

    fn push(&mut self, d: &RawDocument, item: Item) {
        self.buf.push(0x03);
        cstring(&mut self.buf, &self.items.len().to_string());
        self.buf.extend_from_slice(d.as_bytes());
        self.bytes += d.as_bytes().len();
        self.items.push(item);
    }

    fn finish(mut self, order_ok: bool) -> Result<Batch> {
        self.buf.push(0);
        let array_len = (self.buf.len() - self.array_at) as i32;
        self.buf[self.array_at..self.array_at + 4].copy_from_slice(&array_len.to_le_bytes());
        self.buf.push(0);
        let len = self.buf.len() as i32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        let last_id = self
            .items
            .last()
            .map(|i| i.id.clone())
            .unwrap_or(RawBson::Null);
        let body = RawDocumentBuf::from_bytes(self.buf)
            .map_err(|e| Error::other(format!("building an insert command: {e}")))?;
        Ok(Batch {
            body,
            items: self.items,
            bytes: self.bytes as u64,
            last_id,
            order_ok,
            share: self.share,
        })
    }
}

/// Sends the batch being filled, if any; false when the receiver is gone.
async fn send(
    tx: &mpsc::Sender<Result<Batch>>,
    filling: &mut Option<Filling>,
    order_ok: bool,
) -> bool {
    match filling.take() {
        Some(f) => tx.send(f.finish(order_ok)).await.is_ok(),
        None => true,
    }
}

/// Reads the source reply by reply into `insert` commands and sends them down a bounded
/// channel. A batch's memory is split from the reply it was made of (whose share counts the
/// batches made of it), and a reader short of memory sends what it has filled before it
/// waits, so readers never hold one another up.
pub async fn read_batches(mut replies: Replies, tx: mpsc::Sender<Result<Batch>>, r: Reading) {
    let mut filling: Option<Filling> = None;
    let mut prev: Option<RawBson> = None;
    let mut order_ok = true;
    loop {
        if !replies.ready() && !send(&tx, &mut filling, order_ok).await {
            return;
        }
        let mut reply = match replies.next().await {
            Ok(Some(reply)) => reply,
            Ok(None) => break,
            Err(e) => {
                let _ = tx
                    .send(Err(r.src.err(format!("reading {}", r.ns), e)))
                    .await;
                return;
            }
        };
        let mut held = std::mem::take(&mut reply.share);
        for d in reply.iter() {
            let len = d.as_bytes().len();
            // A large document goes alone in a command of its size; no command passes the limit.
            let alone = |f: &Filling| {
                f.bytes + len > MAX_INSERT_BYTES || (len >= r.batch_bytes && !f.items.is_empty())
            };
            if filling.as_ref().is_some_and(alone) && !send(&tx, &mut filling, order_ok).await {
                return;
            }
            let id = id_of(d);
            if let Some(p) = &prev
                && order::cmp(&p.as_raw_bson_ref(), &id.as_raw_bson_ref())
                    != std::cmp::Ordering::Less
            {
                order_ok = false;
            }
            prev = Some(id.clone());
            let f = filling.get_or_insert_with(|| Filling::new(&r, len.max(r.batch_bytes)));
            f.share.merge(held.split(len));
            let hash = doc_hash(d.as_bytes());
            f.push(d, Item { id, hash, len });
            if (f.bytes >= r.batch_bytes || f.items.len() >= r.batch_docs)
                && !send(&tx, &mut filling, order_ok).await
            {
                return;
            }
        }
    }
    send(&tx, &mut filling, order_ok).await;
}

/// Inserts a batch, unordered, and returns what the target now holds for each document (for
/// the ledger). Duplicate `_id`s are fine when the target holds the very same bytes (a batch
/// acknowledged by the server but not yet journaled before a crash); anything else is an
/// error naming the document, except, while the source is live, an older version of it, which
/// sync patches later.
pub async fn insert_batch(
    dst: &Mongo,
    (db, coll): (&Database, &Collection<RawDocumentBuf>),
    ns: &str,
    b: &mut Batch,
    live: bool,
) -> Result<Vec<Item>> {
    let body = std::mem::take(&mut b.body);
    // Waiting here holds up no one: what holds this budget is inserts under way.
    let _copies = raw::writes()
        .take(insert_copies() * body.as_bytes().len())
        .await;
    let held = {
        let _w = crate::watch::waiting_on(format!(
            "{}: inserting into {ns} ({}, {})",
            dst.role,
            crate::units::plural(b.items.len() as u64, "document", "documents"),
            crate::units::bytes(body.as_bytes().len() as i64)
        ));
        insert(dst, (db, coll), ns, body, &b.items, live).await?
    };
    crate::watch::progress();
    Ok(std::mem::take(&mut b.items)
        .into_iter()
        .map(|mut item| {
            if let Some(&(hash, len)) = held.get(&show_id(&item.id)) {
                (item.hash, item.len) = (hash, len);
            }
            item
        })
        .collect())
}

/// A write error of an `insert` reply: (index, code, message).
fn write_errors(reply: &Document) -> Vec<(usize, i32, String)> {
    reply
        .get_array("writeErrors")
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter_map(Bson::as_document)
        .map(|e| {
            (
                e.get("index").and_then(crate::mongo::as_i64).unwrap_or(-1) as usize,
                e.get("code").and_then(crate::mongo::as_i64).unwrap_or(0) as i32,
                e.get_str("errmsg").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The insert itself; returns the documents the target holds in another version (live).
async fn insert(
    dst: &Mongo,
    (db, coll): (&Database, &Collection<RawDocumentBuf>),
    ns: &str,
    body: RawDocumentBuf,
    items: &[Item],
    live: bool,
) -> Result<HashMap<String, (u128, usize)>> {
    let reply = db
        .run_raw_command(body)
        .await
        .map_err(|e| dst.err(format!("inserting into {ns}"), e))?;
    if let Ok(wce) = reply.get_document("writeConcernError") {
        // A step-down interrupts the write's replication: inserting again is safe (a
        // document already there is told apart by its hash).
        let code = wce.get_i32("code").unwrap_or(0);
        let make = if crate::mongo::is_transient_code(code) {
            Error::mongo_transient
        } else {
            Error::mongo
        };
        return Err(make(
            format!("target: inserting into {ns}"),
            format!(
                "write concern not satisfied: {}",
                wce.get_str("errmsg").unwrap_or_default()
            ),
        ));
    }
    let mut dups = Vec::new();
    for (index, code, message) in write_errors(&reply) {
        let Some(item) = items.get(index) else {
            continue;
        };
        if code != 11000 {
            return Err(Error::mongo(
                format!("target: inserting into {ns}"),
                format!(
                    "document _id {} was rejected (code {code}): {message}",
                    show_id(&item.id)
                ),
            ));
        }
        dups.push(item);
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
    dups: &[&Item],
    live: bool,
) -> Result<HashMap<String, (u128, usize)>> {
    let mut held = HashMap::new();
    let ids: Vec<Bson> = dups
        .iter()
        .filter_map(|d| Bson::try_from(d.id.clone()).ok())
        .collect();
    let mut existing: HashMap<String, (u128, usize)> = HashMap::new();
    let read_err = |e| dst.err(format!("reading back duplicates in {ns}"), e);
    let mut cur = coll
        .find(doc! {"_id": {"$in": ids}})
        .await
        .map_err(read_err)?;
    while cur.advance().await.map_err(read_err)? {
        let raw = cur.current();
        let seen = (doc_hash(raw.as_bytes()), raw.as_bytes().len());
        existing.insert(show_id(&id_of(raw)), seen);
    }
    let refuse = |message: String| Error::mongo(format!("target: inserting into {ns}"), message);
    for d in dups {
        let id = show_id(&d.id);
        match existing.get(&id) {
            Some(&(hash, len)) if hash == d.hash && len == d.len => {}
            Some(&t) if live => {
                tracing::debug!(
                    "{ns}: _id {id} changed on the source since it was first sent; sync patches it"
                );
                held.insert(id, t);
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
    ledger_key: &str,
) -> Option<LedgerWriter> {
    let dir = store.ledger_dir()?;
    // A time series reads back in another field order than it was written: no byte ledger.
    if progress.ledger_off || !progress.order_trusted || it.meta.kind != "collection" {
        progress.ledger_off = true;
        return None;
    }
    let generation = progress.ledger.map_or(0, |m| m.generation);
    let path = ledger::path_in(&dir, ledger_key, generation);
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
