//! Server replies kept whole, and the one memory budget every reader takes its share from.
//!
//! A reply is the driver's raw batch: one buffer, its documents slices of it, never copied one
//! by one. Before asking the server for a reply, a reader takes from the process's budget
//! three times the bytes it expects (the driver holds up to three copies of a reply while it
//! reads and parses it), then keeps what the reply really holds. Inserts in flight take the
//! driver's copies of their command from a second budget. Memory stays bounded however large
//! the documents (up to 16 MiB each) and however many collections are read at once.

use std::sync::{Arc, LazyLock};

use futures_util::StreamExt;
use mongodb::bson::{Document, RawDocument, RawDocumentBuf, doc};
use mongodb::raw_batch_cursor::{RawBatch, RawBatchCursor};
use mongodb::{Collection, error::Result as MongoResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest reply a server sends: a batch stops at 16 MiB, or holds one document of up to
/// 16 MiB, plus the reply's own fields.
pub const MAX_REPLY: usize = 16 * 1024 * 1024 + 16 * 1024;

/// The reply size readers aim for when choosing how many documents to ask for.
const TARGET_REPLY: usize = 4 * 1024 * 1024;

/// The most documents asked for in one reply.
pub const MAX_BATCH_DOCS: u32 = 2000;

/// Bytes every reader of the process may hold at once (read but not yet written or hashed),
/// the driver's own copies included.
pub const BUDGET_BYTES: usize = 48 * 1024 * 1024;

/// Bytes the driver may hold for inserts in flight (its copies of each command).
pub const WRITE_BUDGET_BYTES: usize = 48 * 1024 * 1024;

/// Copies of a reply the driver may hold while it receives it, one more while it decompresses
/// it.
fn read_copies() -> usize {
    3 + crate::mongo::wire::compression_copies()
}

static BUDGET: LazyLock<Budget> =
    LazyLock::new(|| Budget::named(BUDGET_BYTES, "the read budget (replies being read)"));

static RETENTION: LazyLock<Budget> = LazyLock::new(|| {
    Budget::named(
        BUDGET_BYTES / 2,
        "the retention budget (replies a merge holds)",
    )
});

static WRITES: LazyLock<Budget> =
    LazyLock::new(|| Budget::named(WRITE_BUDGET_BYTES, "the write budget (inserts under way)"));

/// The budget of inserts in flight: the driver clones a command, serialises the clone into a
/// message and copies that onto the wire, so an insert of `n` bytes holds `3n` more than the
/// command itself until it is answered.
pub fn writes() -> &'static Budget {
    &WRITES
}

/// Makes the C allocator hand buffers of 8 MiB and more (large documents) back to the system
/// when they are freed: glibc otherwise raises its mmap threshold after the first large free
/// and keeps later 16 MiB replies in its heaps, where peak memory grows with fragmentation, not
/// with the budget. Smaller replies stay in the heaps, which are trimmed only past 32 MiB free
/// (trimming at every free re-faults the same pages: 2.7 s of system time in a 4 s verify).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tuning parameters of glibc's allocator; called before any
    // thread is started, it races with nothing.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// The process's memory budget, shared by every copy, sync and verify reader.
pub fn budget() -> &'static Budget {
    &BUDGET
}

/// The budget of replies kept for a merge (sync needs the source's documents to patch): a
/// kept reply is counted here, not in the read budget. A reader keeping replies takes its
/// share of this budget *before* its share of the read budget (always in that order), and
/// what holds a kept reply never waits for the read budget: so a merge's own replies can
/// never stand between its reader and the memory it waits for, and a scan that only hashes
/// always finds memory to read with.
pub fn retention() -> &'static Budget {
    &RETENTION
}

/// A byte budget (kept in KiB). A request larger than all of it is granted alone: it takes
/// all of it, once every other holder has given its share back (holders only ever wait on a
/// server, never on a share of the same budget), so it is a wait with an end, never one that
/// cannot be satisfied.
#[derive(Clone, Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    kib: usize,
    name: &'static str,
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Budget {
        Budget::named(bytes, "a memory budget")
    }

    /// A budget of `bytes`, named for the watchdog's line.
    pub fn named(bytes: usize, name: &'static str) -> Budget {
        let kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Budget {
            sem: Arc::new(Semaphore::new(kib)),
            kib,
            name,
        }
    }

    fn units(&self, bytes: usize) -> u32 {
        bytes
            .div_ceil(1024)
            .clamp(1, self.kib)
            .min(u32::MAX as usize) as u32
    }

    /// Waits for `bytes` of the budget.
    pub async fn take(&self, bytes: usize) -> Share {
        if let Some(s) = self.try_take(bytes) {
            return s;
        }
        let units = self.units(bytes);
        let _w = crate::watch::waiting_on(format!(
            "memory: {} KiB of {} ({} of {} KiB free)",
            units,
            self.name,
            self.free_kib(),
            self.kib
        ));
        // The semaphore is never closed, so this only fails if it were: then hold nothing.
        Share(self.sem.clone().acquire_many_owned(units).await.ok())
    }

    /// `bytes` of the budget if they are free now.
    pub fn try_take(&self, bytes: usize) -> Option<Share> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.units(bytes))
            .ok()
            .map(|p| Share(Some(p)))
    }

    /// KiB free now (for tests and debug logs).
    pub fn free_kib(&self) -> usize {
        self.sem.available_permits()
    }
}

/// A share of the budget, given back when dropped.
#[derive(Debug, Default)]
pub struct Share(Option<OwnedSemaphorePermit>);

impl Share {
    /// Bytes it holds (a multiple of 1 KiB).
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits() * 1024)
    }

    /// Adds `other` to this share.
    pub fn merge(&mut self, other: Share) {
        match (&mut self.0, other.0) {
            (Some(p), Some(o)) => p.merge(o),
            (None, o) => self.0 = o,
            (_, None) => {}
        }
    }

    /// Splits off up to `bytes` (rounded up to KiB) into a share of its own.
    pub fn split(&mut self, bytes: usize) -> Share {
        let Some(p) = &mut self.0 else {
            return Share(None);
        };
        let n = bytes.div_ceil(1024).min(p.num_permits());
        if n == p.num_permits() {
            return Share(self.0.take());
        }
        Share(p.split(n))
    }

    /// Gives back everything above `bytes`.
    pub fn keep(&mut self, bytes: usize) {
        let held = self.bytes();
        if held > bytes {
            let _ = self.split(held - bytes.div_ceil(1024) * 1024);
        }
    }
}

/// How a collection is read: documents per reply, and the reply size to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadShape {
    /// Documents asked for per reply.
    pub batch_size: u32,
    /// Bytes a reply may hold (an estimate that errs high).
    pub expect: usize,
}

impl ReadShape {
    /// The shape for documents of `avg` bytes on average (0: unknown): about 4 MiB a reply;
    /// one document at a time when they are large, when a reply may be a 16 MiB document.
    pub fn for_avg(avg: u64) -> ReadShape {
        let avg = (avg as usize).max(64);
        let batch_size = (TARGET_REPLY / avg).clamp(1, MAX_BATCH_DOCS as usize) as u32;
        let expect = if batch_size <= 2 {
            MAX_REPLY
        } else {
            (batch_size as usize * avg * 2).clamp(64 * 1024, MAX_REPLY)
        };
        ReadShape { batch_size, expect }
    }
}

/// The empty document, for a slice that could not be read back (never expected: every slice
/// was read from the reply when it arrived).
static EMPTY: LazyLock<RawDocumentBuf> = LazyLock::new(RawDocumentBuf::new);

/// One server reply and where its documents lie in it.
pub struct Reply {
    batch: RawBatch,
    docs: Vec<(u32, u32)>,
    /// The budget the reply's memory is counted in.
    pub share: Share,
}

impl Reply {
    fn new(batch: RawBatch, share: Share) -> MongoResult<Reply> {
        let base = batch.as_raw_document().as_bytes().as_ptr() as usize;
        let mut docs = Vec::new();
        for v in batch.doc_slices()? {
            let d = v?.as_document().ok_or_else(|| {
                mongodb::error::Error::custom(
                    "the server sent a batch entry that is not a document",
                )
            })?;
            let at = d.as_bytes().as_ptr() as usize - base;
            docs.push((at as u32, d.as_bytes().len() as u32));
        }
        Ok(Reply { batch, docs, share })
    }

    /// Documents in it.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when it holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Bytes of the whole reply.
    pub fn bytes(&self) -> usize {
        self.batch.as_raw_document().as_bytes().len()
    }

    /// Document `i`.
    pub fn doc(&self, i: usize) -> &RawDocument {
        let all = self.batch.as_raw_document().as_bytes();
        let slice = self
            .docs
            .get(i)
            .and_then(|&(at, len)| all.get(at as usize..(at + len) as usize));
        slice
            .and_then(|s| RawDocument::from_bytes(s).ok())
            .unwrap_or(&EMPTY)
    }

    /// Every document, in order.
    pub fn iter(&self) -> impl Iterator<Item = &RawDocument> {
        (0..self.docs.len()).map(|i| self.doc(i))
    }
}

/// How long a reply stays counted once read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// In the read budget, at this many times its size (a copy counts the batches made from
    /// it too), until the reply is dropped. The holder must never wait on a merge.
    Read(usize),
    /// In the [`retention`] budget, at its size: for replies a merge holds until it is done
    /// with their documents.
    Retained,
}

/// The shares for one reply, taken before it is asked for.
#[derive(Debug)]
struct Ahead {
    /// Of the read budget: the driver's copies while it reads.
    read: Share,
    /// Of the retention budget, for a kept reply.
    kept: Share,
}

/// A cursor read reply by reply, each reply's memory taken from the budget before it is
/// asked for.
pub struct Replies {
    cursor: RawBatchCursor,
    budget: &'static Budget,
    shape: ReadShape,
    /// The shares taken for the next reply, when taken ahead.
    pending: Option<Ahead>,
    keep: Keep,
    /// What a wait for the next reply is, for the watchdog.
    what: String,
}

impl Replies {
    /// Runs `find` (sorted when `sort` is given) after taking the first reply's share; `side`
    /// (source or target) names the server for the watchdog.
    pub async fn open(
        (coll, side): (&Collection<RawDocumentBuf>, &str),
        filter: Document,
        sort: Option<Document>,
        shape: ReadShape,
        keep: Keep,
    ) -> MongoResult<Replies> {
        let budget = budget();
        let pending = Replies::ahead(budget, keep, shape.expect).await;
        let mut find = coll.find(filter).batch_size(shape.batch_size);
        if let Some(s) = sort {
            find = find.sort(s);
        }
        let what = format!("{side}: reading {}", coll.namespace());
        let cursor = {
            let _w = crate::watch::waiting_on(&what);
            find.batch().await?
        };
        crate::watch::progress();
        Ok(Replies {
            cursor,
            budget,
            shape,
            pending: Some(pending),
            keep,
            what,
        })
    }

    /// Opens a scan sorted by `_id`.
    pub async fn by_id(
        coll: (&Collection<RawDocumentBuf>, &str),
        filter: Document,
        shape: ReadShape,
        keep: Keep,
    ) -> MongoResult<Replies> {
        Replies::open(coll, filter, Some(doc! {"_id": 1}), shape, keep).await
    }

    /// The shares one reply of `expect` bytes needs: a kept reply's retention first, then the
    /// read budget (never the other way round: a reader holding the read budget never waits
    /// on what a merge holds).
    async fn ahead(budget: &'static Budget, keep: Keep, expect: usize) -> Ahead {
        let kept = match keep {
            Keep::Retained => retention().take(expect).await,
            Keep::Read(_) => Share::default(),
        };
        let read = budget.take(read_copies() * expect).await;
        Ahead { read, kept }
    }

    /// Takes the next reply's share now if it is free; false when `next` would wait for memory
    /// (a caller holding a batch it has not sent should send it first).
    pub fn ready(&mut self) -> bool {
        if self.pending.is_none() && matches!(self.keep, Keep::Read(_)) {
            self.pending = self
                .budget
                .try_take(read_copies() * self.shape.expect)
                .map(|read| Ahead {
                    read,
                    kept: Share::default(),
                });
        }
        self.pending.is_some()
    }

    /// The next reply, `None` at the end.
    pub async fn next(&mut self) -> MongoResult<Option<Reply>> {
        let ahead = match self.pending.take() {
            Some(s) => s,
            None => Replies::ahead(self.budget, self.keep, self.shape.expect).await,
        };
        let next = {
            let _w = crate::watch::waiting_on(&self.what);
            self.cursor.next().await.transpose()?
        };
        crate::watch::progress();
        let Some(batch) = next else {
            return Ok(None);
        };
        let actual = batch.as_raw_document().as_bytes().len();
        let share = match self.keep {
            Keep::Read(times) => {
                let mut share = ahead.read;
                let want = times.max(1) * actual;
                if share.bytes() >= want {
                    share.keep(want);
                } else if let Some(more) = self.budget.try_take(want - share.bytes()) {
                    share.merge(more);
                }
                share
            }
            // The read budget goes back now: the reply is one buffer from here on.
            Keep::Retained => {
                let mut share = ahead.kept;
                share.keep(actual);
                share
            }
        };
        // Expect the next reply as large as the largest so far (with room to grow): a smaller
        // reply says nothing of the next document's size.
        self.shape.expect = self.shape.expect.max((actual * 2).min(MAX_REPLY));
        Reply::new(batch, share).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_aim_at_a_few_mib_and_read_large_documents_one_by_one() {
        let small = ReadShape::for_avg(100);
        assert_eq!(small.batch_size, MAX_BATCH_DOCS);
        assert!(small.expect < MAX_REPLY);
        let unknown = ReadShape::for_avg(0);
        assert_eq!(unknown.batch_size, MAX_BATCH_DOCS);
        let big = ReadShape::for_avg(3 * 1024 * 1024);
        assert_eq!(big.batch_size, 1);
        assert_eq!(big.expect, MAX_REPLY, "a reply may be a 16 MiB document");
        let mid = ReadShape::for_avg(100 * 1024);
        assert_eq!(mid.batch_size, 40);
        assert_eq!(mid.expect, 40 * 100 * 1024 * 2);
    }

    #[tokio::test]
    async fn shares_split_merge_and_give_back() {
        let b = Budget::new(10 * 1024);
        let mut s = b.take(6 * 1024).await;
        assert_eq!(b.free_kib(), 4);
        let part = s.split(2 * 1024);
        assert_eq!((s.bytes(), part.bytes()), (4 * 1024, 2 * 1024));
        drop(part);
        assert_eq!(b.free_kib(), 6);
        s.keep(1024);
        assert_eq!(b.free_kib(), 9);
        assert!(b.try_take(10 * 1024).is_none());
        drop(s);
        let all = b.take(1 << 40).await.bytes();
        assert_eq!(
            all,
            10 * 1024,
            "a request beyond the whole budget takes all of it"
        );
    }
}
