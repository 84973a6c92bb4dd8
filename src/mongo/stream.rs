//! Sorted `(_id, hash)` streams over a collection, order-independent digests, and the merge
//! of two such streams into differences. Verify and sync share this code.

use std::cmp::Ordering;

use mongodb::Collection;
use mongodb::bson::{RawBson, RawDocument, RawDocumentBuf};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::mongo::order;
use crate::mongo::raw::{Keep, ReadShape, Replies, Reply};

/// The 128-bit hash of a document's exact bytes.
pub fn doc_hash(raw: &[u8]) -> u128 {
    xxh3_128(raw)
}

/// An order-independent digest of a set of documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Documents.
    pub count: u64,
    /// Total BSON bytes.
    pub bytes: u64,
    /// Wrapping sum of document hashes.
    pub sum: u128,
    /// Xor of document hashes.
    pub xor: u128,
}

impl Digest {
    /// Adds one document.
    pub fn add(&mut self, hash: u128, len: usize) {
        self.count += 1;
        self.bytes += len as u64;
        self.sum = self.sum.wrapping_add(hash);
        self.xor ^= hash;
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Digest", 4)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("bytes", &self.bytes)?;
        st.serialize_field("sum", &format!("{:032x}", self.sum))?;
        st.serialize_field("xor", &format!("{:032x}", self.xor))?;
        st.end()
    }
}

/// One document of a scan: its `_id`, the hash of its bytes, and its size.
#[derive(Clone, Debug)]
pub struct Item {
    /// The `_id` value.
    pub id: RawBson,
    /// Hash of the whole document.
    pub hash: u128,
    /// BSON length.
    pub len: usize,
}

/// How a scan reads: the reply shape, whether it keeps the documents (sync patches the
/// source's), and whether it hashes with top-level fields sorted (time series).
#[derive(Clone, Copy, Debug)]
pub struct ScanOpts {
    /// Documents per reply and the reply size to expect.
    pub shape: ReadShape,
    /// Keep each reply until its documents are passed (`take_current`); otherwise a reply is
    /// dropped as soon as it is hashed.
    pub keep_docs: bool,
    /// Hash with the top-level fields sorted by name (see [`ScanOpts::canonical`]).
    pub canonical: bool,
    /// Which server is read (`source` or `target`), for the watchdog.
    pub side: &'static str,
}

impl ScanOpts {
    /// A scan that only hashes.
    pub fn hashing(shape: ReadShape) -> ScanOpts {
        ScanOpts {
            shape,
            keep_docs: false,
            canonical: false,
            side: "source",
        }
    }

    /// A scan that keeps the documents for patches.
    pub fn keeping(shape: ReadShape) -> ScanOpts {
        ScanOpts {
            keep_docs: true,
            ..ScanOpts::hashing(shape)
        }
    }

    /// The same, reading `side` (`source` or `target`).
    pub fn on(self, side: &'static str) -> ScanOpts {
        ScanOpts { side, ..self }
    }

    /// The same, hashing each document with its top-level fields sorted by name when `on`: a
    /// time-series collection hands measurements back with those fields in an order of its
    /// own (MongoDB rebuilds them from buckets; even the source's own order changes), so there
    /// only names, values and types can be compared. Values stay byte-exact: a type change
    /// still shows.
    pub fn canonical(self, on: bool) -> ScanOpts {
        ScanOpts {
            canonical: on,
            ..self
        }
    }
}

/// One reply's items, hashed by the read-ahead task, and the reply itself when kept.
struct Chunk {
    items: Vec<Item>,
    reply: Option<Reply>,
}

/// A scan of one collection in `_id` order, digesting as it goes and checking that the
/// server really returns `_id`s in MongoDB's order.
///
/// A task reads the cursor a reply ahead and hashes it, so the server keeps working and the
/// hashing runs beside the merge: two scans merged side by side drift out of step as soon as
/// one side has a document the other lacks, and without read-ahead their round trips would
/// then take turns instead of overlapping. A scan that keeps documents holds at most three
/// replies (the current one, one handed over, one being read), counted in the retention
/// budget; a hashing scan holds memory only while it reads and hashes a reply.
pub struct SortedScan {
    rx: tokio::sync::mpsc::Receiver<mongodb::error::Result<Chunk>>,
    items: std::vec::IntoIter<Item>,
    reply: Option<Reply>,
    next_index: usize,
    current: Option<usize>,
    _reader: AbortOnDrop,
    prev: Option<RawBson>,
    /// Digest of everything read so far.
    pub digest: Digest,
    /// The first pair of `_id`s seen out of MongoDB order, if any (rendered for messages).
    pub out_of_order: Option<(String, String)>,
}

impl SortedScan {
    /// Opens a scan of the whole collection sorted by `_id`.
    pub async fn open(
        coll: &Collection<RawDocumentBuf>,
        opts: ScanOpts,
    ) -> mongodb::error::Result<SortedScan> {
        SortedScan::open_after(coll, None, opts).await
    }

    /// Opens a scan of the documents whose `_id` sorts after `after` (all when `None`).
    pub async fn open_after(
        coll: &Collection<RawDocumentBuf>,
        after: Option<&RawBson>,
        opts: ScanOpts,
    ) -> mongodb::error::Result<SortedScan> {
        let filter = after
            .map(|a| order::after_filter(&a.as_raw_bson_ref()))
            .unwrap_or_default();
        // Kept replies wait on the merge, which may wait on the other side's reads: they are
        // counted in the retention budget, never in the read budget both sides read with.
        let keep = if opts.keep_docs {
            Keep::Retained
        } else {
            Keep::Read(1)
        };
        let replies = Replies::by_id((coll, opts.side), filter, opts.shape, keep).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(read_ahead(replies, tx, opts));
        Ok(SortedScan {
            rx,
            items: Vec::new().into_iter(),
            reply: None,
            next_index: 0,
            current: None,
            _reader: AbortOnDrop(reader),
            prev: None,
            digest: Digest::default(),
            out_of_order: None,
        })
    }

    /// The next document's `_id` and hash; `None` at the end.
    pub async fn next(&mut self) -> mongodb::error::Result<Option<Item>> {
        let item = loop {
            if let Some(item) = self.items.next() {
                self.current = Some(self.next_index);
                self.next_index += 1;
                break item;
            }
            // Every document of the current reply is settled (`take_current` follows the
            // `next` that returned it): give the reply back before waiting for the next one,
            // whose reader may be waiting for exactly that memory.
            self.reply = None;
            match self.rx.recv().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.items = chunk.items.into_iter();
                    self.reply = chunk.reply;
                    self.next_index = 0;
                }
                None => {
                    self.current = None;
                    self.reply = None;
                    return Ok(None);
                }
            }
        };
        self.digest.add(item.hash, item.len);
        if self.out_of_order.is_none()
            && let Some(p) = &self.prev
            && order::cmp(&p.as_raw_bson_ref(), &item.id.as_raw_bson_ref()) != Ordering::Less
        {
            self.out_of_order = Some((show_id(p), show_id(&item.id)));
        }
        self.prev = Some(item.id.clone());
        Ok(Some(item))
    }

    /// The document `next` returned last, copied out (a scan that keeps documents only).
    pub fn take_current(&mut self) -> Option<RawDocumentBuf> {
        let i = self.current.take()?;
        self.reply.as_ref().map(|r| r.doc(i).to_raw_document_buf())
    }
}

/// Reads replies ahead, hashes each, and hands the items over (with the reply when kept).
async fn read_ahead(
    mut replies: Replies,
    tx: tokio::sync::mpsc::Sender<mongodb::error::Result<Chunk>>,
    opts: ScanOpts,
) {
    loop {
        let reply = match replies.next().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let items = reply
            .iter()
            .map(|d| {
                let bytes = d.as_bytes();
                let hash = if opts.canonical {
                    doc_hash(&sorted_top_level(d))
                } else {
                    doc_hash(bytes)
                };
                Item {
                    id: id_of(d),
                    hash,
                    len: bytes.len(),
                }
            })
            .collect();
        let reply = opts.keep_docs.then_some(reply);
        if tx.send(Ok(Chunk { items, reply })).await.is_err() {
            return;
        }
    }
}

/// The document's bytes with its top-level fields sorted by name (the bytes as they are if
/// any element cannot be read).
fn sorted_top_level(raw: &RawDocument) -> Vec<u8> {
    let Ok(mut fields) = raw.iter().collect::<std::result::Result<Vec<_>, _>>() else {
        return raw.as_bytes().to_vec();
    };
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = RawDocumentBuf::new();
    for (k, v) in fields {
        out.append(k, v.to_raw_bson());
    }
    out.into_bytes()
}

/// Stops the read-ahead task when its scan is dropped (its cursor is then dropped too).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The `_id` of a raw document (`Null` when missing or malformed).
pub fn id_of(raw: &RawDocument) -> RawBson {
    match raw.get("_id") {
        Ok(Some(v)) => v.to_raw_bson(),
        _ => RawBson::Null,
    }
}

/// An `_id` as extended JSON, short enough for a message.
pub fn show_id(id: &RawBson) -> String {
    let b: mongodb::bson::Bson = id.clone().try_into().unwrap_or(mongodb::bson::Bson::Null);
    let s = b.into_relaxed_extjson().to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(80)])
    } else {
        s
    }
}

/// How two collections differ at one `_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    /// In the source, not in the target.
    Missing,
    /// In the target, not in the source.
    Extra,
    /// In both, with different bytes.
    Different,
}

/// One difference, with the source document when the target needs it.
#[derive(Debug)]
pub struct Diff {
    /// What kind.
    pub kind: DiffKind,
    /// The `_id`.
    pub id: RawBson,
    /// The source document (for `Missing` and `Different`).
    pub source_doc: Option<RawDocumentBuf>,
}

/// A stream of (`_id`, hash, size) in MongoDB's `_id` order: a scan of a collection, or a
/// ledger of what the target acknowledged.
#[allow(async_fn_in_trait)] // awaited in place by the merge, never boxed
pub trait Sorted {
    /// The next item, or `None` at the end.
    async fn next_item(&mut self) -> crate::error::Result<Option<Item>>;
    /// The first pair of `_id`s seen out of MongoDB order, if any.
    fn out_of_order(&self) -> Option<&(String, String)> {
        None
    }
}

/// A sorted scan of one side's collection, its errors named after that side.
pub struct ScanSide {
    /// The scan.
    pub scan: SortedScan,
    mongo: crate::mongo::Mongo,
    what: String,
}

impl ScanSide {
    /// `scan` of `mongo`, reading `what` (e.g. `shop.users`) for messages.
    pub fn new(scan: SortedScan, mongo: &crate::mongo::Mongo, what: String) -> ScanSide {
        ScanSide {
            scan,
            mongo: mongo.clone(),
            what,
        }
    }
}

impl Sorted for ScanSide {
    async fn next_item(&mut self) -> crate::error::Result<Option<Item>> {
        self.scan
            .next()
            .await
            .map_err(|e| self.mongo.err(format!("reading {}", self.what), e))
    }

    fn out_of_order(&self) -> Option<&(String, String)> {
        self.scan.out_of_order.as_ref()
    }
}

/// Documents that matched between two [`Next::Quiet`]s.
pub const QUIET_STRIDE: usize = 1000;

/// What [`Merge::next_diff`] found.
#[derive(Debug)]
pub enum Next {
    /// A difference.
    Diff(Diff),
    /// [`QUIET_STRIDE`] documents matched since the last answer.
    Quiet,
    /// Both sides are exhausted.
    End,
}

impl From<Option<Diff>> for Next {
    fn from(d: Option<Diff>) -> Next {
        d.map_or(Next::End, Next::Diff)
    }
}

/// Receives, in order, every item the merge settles, as the target will hold it once the
/// differences are patched (sync writes the next ledger from it).
pub trait Tap: Send {
    /// One item the target holds after the patch.
    fn keep(&mut self, item: &Item) -> crate::error::Result<()>;
}

/// The merge of a source scan with a target stream (a scan, or a ledger) into differences.
pub struct Merge<T: Sorted = ScanSide> {
    /// Source side.
    pub source: ScanSide,
    /// Target side.
    pub target: T,
    /// Digest of the source documents the merge has consumed.
    pub source_digest: Digest,
    /// Digest of the target documents the merge has consumed.
    pub target_digest: Digest,
    /// Every `_id` up to this one is fully compared on both sides: a merge restarted with
    /// [`SortedScan::open_after`] from here, with these digests, continues exactly.
    pub done_through: Option<RawBson>,
    /// Receives what the target holds after the patch, item by item.
    pub tap: Option<Box<dyn Tap>>,
    a: Option<Item>,
    b: Option<Item>,
    advance_a: bool,
    advance_b: bool,
}

impl<T: Sorted> Merge<T> {
    /// A merge of two whole collections.
    pub fn new(source: ScanSide, target: T) -> Merge<T> {
        Merge::resume(source, target, Digest::default(), Digest::default())
    }

    /// A merge continuing after `done_through`, with the digests so far.
    pub fn resume(
        source: ScanSide,
        target: T,
        source_digest: Digest,
        target_digest: Digest,
    ) -> Merge<T> {
        Merge {
            source,
            target,
            source_digest,
            target_digest,
            done_through: None,
            tap: None,
            a: None,
            b: None,
            advance_a: true,
            advance_b: true,
        }
    }

    /// True when a side returned `_id`s out of MongoDB order (documents cannot be matched
    /// one by one then; digests are still exact).
    pub fn unreliable(&self) -> bool {
        self.source.out_of_order().is_some() || self.target.out_of_order().is_some()
    }

    fn take_a(&mut self, kind: Option<DiffKind>) -> crate::error::Result<Option<Diff>> {
        let Some(a) = self.a.take() else {
            return Ok(None);
        };
        self.advance_a = true;
        self.source_digest.add(a.hash, a.len);
        self.done_through = Some(a.id.clone());
        // Equal, missing or different: after the patch the target holds the source's version.
        if let Some(tap) = &mut self.tap {
            tap.keep(&a)?;
        }
        Ok(kind.map(|kind| Diff {
            kind,
            id: a.id,
            source_doc: self.source.scan.take_current(),
        }))
    }

    fn take_b(&mut self) -> Option<Diff> {
        let b = self.b.take()?;
        self.advance_b = true;
        self.target_digest.add(b.hash, b.len);
        self.done_through = Some(b.id.clone());
        Some(Diff {
            kind: DiffKind::Extra,
            id: b.id,
            source_doc: None,
        })
    }

    async fn advance(&mut self) -> crate::error::Result<()> {
        match (self.advance_a, self.advance_b) {
            (true, true) => {
                let (x, y) = tokio::join!(self.source.next_item(), self.target.next_item());
                self.a = x?;
                self.b = y?;
            }
            (true, false) => self.a = self.source.next_item().await?,
            (false, true) => self.b = self.target.next_item().await?,
            (false, false) => {}
        }
        self.advance_a = false;
        self.advance_b = false;
        Ok(())
    }

    /// The next difference; [`Next::Quiet`] after every [`QUIET_STRIDE`] documents that
    /// matched (so the caller can show progress and notice Ctrl-C during a long identical
    /// stretch); [`Next::End`] when both sides are exhausted.
    pub async fn next_diff(&mut self) -> crate::error::Result<Next> {
        let mut quiet = 0;
        loop {
            if quiet >= QUIET_STRIDE {
                return Ok(Next::Quiet);
            }
            quiet += 1;
            self.advance().await?;
            let order = match (&self.a, &self.b) {
                (None, None) => return Ok(Next::End),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => order::cmp(&a.id.as_raw_bson_ref(), &b.id.as_raw_bson_ref()),
            };
            match order {
                Ordering::Less => return Ok(Next::from(self.take_a(Some(DiffKind::Missing))?)),
                Ordering::Greater => return Ok(Next::from(self.take_b())),
                Ordering::Equal => {
                    let same = matches!((&self.a, &self.b), (Some(a), Some(b)) if a.hash == b.hash && a.len == b.len);
                    if let Some(b) = self.b.take() {
                        self.advance_b = true;
                        self.target_digest.add(b.hash, b.len);
                    }
                    let kind = (!same).then_some(DiffKind::Different);
                    if let Some(d) = self.take_a(kind)? {
                        return Ok(Next::Diff(d));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn time_series_documents_compare_by_name_value_and_type_not_field_order() {
        use mongodb::bson::{doc, to_vec};
        let raw =
            |d: mongodb::bson::Document| RawDocumentBuf::from_bytes(to_vec(&d).unwrap()).unwrap();
        let a = raw(doc! {"_id": 1, "ts": 5i64, "v": 1.5, "meta": {"b": 1, "a": 2}});
        let b = raw(doc! {"ts": 5i64, "v": 1.5, "meta": {"b": 1, "a": 2}, "_id": 1});
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(sorted_top_level(&a), sorted_top_level(&b));
        let int32 = raw(doc! {"ts": 5i32, "v": 1.5, "meta": {"b": 1, "a": 2}, "_id": 1});
        assert_ne!(
            sorted_top_level(&a),
            sorted_top_level(&int32),
            "a type change shows"
        );
        let nested = raw(doc! {"_id": 1, "ts": 5i64, "v": 1.5, "meta": {"a": 2, "b": 1}});
        assert_ne!(
            sorted_top_level(&a),
            sorted_top_level(&nested),
            "nested order is kept"
        );
    }

    use super::*;
    use mongodb::bson::rawdoc;

    #[test]
    fn digest_is_order_independent_and_sensitive_to_bytes() {
        let docs = [
            rawdoc! {"_id": 1, "a": "x"},
            rawdoc! {"_id": 2, "a": "y"},
            rawdoc! {"_id": 3, "a": "z"},
        ];
        let mut d1 = Digest::default();
        let mut d2 = Digest::default();
        for d in &docs {
            d1.add(doc_hash(d.as_bytes()), d.as_bytes().len());
        }
        for d in docs.iter().rev() {
            d2.add(doc_hash(d.as_bytes()), d.as_bytes().len());
        }
        assert_eq!(d1, d2);
        let mut d3 = Digest::default();
        for d in [
            rawdoc! {"_id": 1, "a": "x"},
            rawdoc! {"_id": 2, "a": "y"},
            rawdoc! {"_id": 3_i64, "a": "z"},
        ] {
            d3.add(doc_hash(d.as_bytes()), d.as_bytes().len());
        }
        assert_ne!(d1, d3, "an Int32 -> Int64 change must change the digest");
        let mut swapped = Digest::default();
        for d in [
            rawdoc! {"_id": 1, "a": "x"},
            rawdoc! {"_id": 2, "a": "y"},
            rawdoc! {"a": "z", "_id": 3},
        ] {
            swapped.add(doc_hash(d.as_bytes()), d.as_bytes().len());
        }
        assert_ne!(d1, swapped, "field order is part of the bytes");
    }
}
