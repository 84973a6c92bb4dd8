//! The writes a merge's differences need: queued, sent in batches (deletes, then unordered
//! inserts), with a guard that never deletes an `_id` the source still has, and rounds that
//! untangle documents swapping a unique value. Sync uses it against the target or the ledger.

use std::time::Instant;

use mongodb::Collection;
use mongodb::bson::{Bson, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;

use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::compare::Patch;
use crate::mongo::jobs::Item;
use crate::mongo::progress::Counts;
use crate::mongo::stream::{Diff, DiffKind, id_of, show_id};

/// Writes are sent when this many bytes of documents are pending...
const PATCH_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// ...or this many operations.
const PATCH_BATCH_OPS: usize = 1000;
/// Rounds of retrying writes that hit a unique index held by a document patched later.
const CONFLICT_ROUNDS: usize = 3;

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
    /// The target is known through the ledger, not read: a "missing" document may be there
    /// already (a round that died after writing it), so it is replaced, not just inserted.
    blind: bool,
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
            blind: false,
            done: Counts::default(),
        }
    }

    /// A patcher for a merge against the ledger (see `blind`).
    pub fn blind(mut self) -> Self {
        self.blind = true;
        self
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
                    if self.blind {
                        self.deletes.push(id);
                    }
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
        // The driver's copies of the command count in the write budget, as the copy's inserts
        // do (a patch may be one 16 MiB document).
        let bytes: usize = docs.iter().map(|d| d.as_bytes().len()).sum();
        let _copies = crate::mongo::raw::writes()
            .take(crate::mongo::batches::insert_copies() * bytes)
            .await;
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
            // A step-down interrupts the write's replication: writing again is safe.
            let make = if crate::mongo::is_transient_code(wce.code) {
                Error::mongo_transient
            } else {
                Error::mongo
            };
            return Err(make(
                format!("target: writing to {}", self.ns),
                format!(
                    "write concern not satisfied: {} ({})",
                    wce.message, wce.code_name
                ),
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
        let _w = crate::watch::waiting_on(format!(
            "{}: writing {} patch(es) to {}",
            self.dst.role,
            self.deletes.len() + self.extras.len() + self.inserts.len(),
            self.ns
        ));
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
        crate::watch::progress();
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
