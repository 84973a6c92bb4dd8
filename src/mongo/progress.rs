//! What the data steps record per collection as they go (copy progress, sync results), and
//! the store they record it in. The engine's journal implements [`ProgressStore`]; the data
//! code never sees the journal file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mongo::ledger::LedgerMark;

/// Progress of one collection.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CollectionProgress {
    /// Target namespace.
    pub target: String,
    /// The target collection exists with the source's options.
    pub created: bool,
    /// Every document is on the target.
    pub data_done: bool,
    /// Indexes were built (or their failures recorded).
    pub indexes_done: bool,
    /// The last acknowledged `_id`, as canonical extended JSON.
    pub last_id: Option<serde_json::Value>,
    /// True while the source has returned `_id`s in MongoDB order, so resuming after
    /// `last_id` is safe; false means resume rescans (duplicates are checked, not rewritten).
    pub order_trusted: bool,
    /// Documents acknowledged by the target.
    pub docs: u64,
    /// Bytes acknowledged by the target.
    pub bytes: u64,
    /// Index builds that failed, with the server's reason.
    #[serde(default)]
    pub index_errors: Vec<String>,
    /// Unique index builds turned away by a duplicate key in documents copied while the app
    /// wrote (a swap straddled the scan): left to `sync`, which builds them after patching.
    #[serde(default)]
    pub index_deferred: Vec<String>,
    /// Where this collection's ledger ends (what the target acknowledged, in `_id` order).
    #[serde(default)]
    pub ledger: Option<LedgerMark>,
    /// The ledger was given up for this collection (the source did not return `_id`s in
    /// MongoDB's order, so a sorted ledger cannot be built): sync and verify read both sides.
    #[serde(default)]
    pub ledger_off: bool,
    /// A large collection is read and written in parts (`_id` ranges, in order) at once;
    /// each part keeps its own progress and ledger until all are done, when their ledgers are
    /// joined into the collection's. Empty: one cursor over the whole collection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// One `_id` range of a collection copied in parts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Part {
    /// The first `_id` of the part (canonical extended JSON); none for the first part.
    pub from: Option<serde_json::Value>,
    /// The first `_id` of the next part; none for the last part.
    pub until: Option<serde_json::Value>,
    /// The part's progress: `last_id`, counts, order, ledger mark and `data_done`.
    pub progress: CollectionProgress,
}

/// Writes applied to one collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Documents inserted (missing on the target).
    pub inserted: u64,
    /// Documents replaced (different bytes).
    pub replaced: u64,
    /// Documents deleted (not on the source any more).
    pub deleted: u64,
    /// Writes that first hit a unique index and went through on a later round.
    pub conflicts_resolved: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.inserted += o.inserted;
        self.replaced += o.replaced;
        self.deleted += o.deleted;
        self.conflicts_resolved += o.conflicts_resolved;
    }
}

/// What sync did to one collection or view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionSync {
    /// Source namespace.
    pub source: String,
    /// Target namespace.
    pub target: String,
    /// collection, view, timeseries.
    pub kind: String,
    /// Created on the target by this sync (new on the source since the copy).
    pub created: bool,
    /// Document writes.
    #[serde(flatten)]
    pub counts: Counts,
    /// Documents read on both sides.
    pub documents_compared: u64,
    /// Indexes created (new or changed on the source).
    pub indexes_created: Vec<String>,
    /// Indexes dropped (gone or changed on the source).
    pub indexes_dropped: Vec<String>,
    /// Option differences sync does not change (reported; verify flags them).
    pub option_differences: Vec<String>,
    /// Seconds spent.
    pub seconds: f64,
    /// Set when this sync compared the source with the ledger instead of reading the target:
    /// the list of what it patched, which verify reads back (and nothing else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patched: Option<LedgerMark>,
}

/// Where copy and sync keep their per-collection progress, durably.
pub trait ProgressStore: Send + Sync {
    /// The directory the ledgers live in, when this run keeps them.
    fn ledger_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// The copy progress recorded for source namespace `ns`.
    fn copied(&self, ns: &str) -> Result<Option<CollectionProgress>>;
    /// Records copy progress (saved now when `force`, else within a short interval).
    fn record_copy(&self, ns: &str, progress: CollectionProgress, force: bool) -> Result<()>;
    /// The collections a sync already finished.
    fn synced(&self) -> Result<BTreeMap<String, CollectionSync>>;
    /// Records a finished collection of a sync (saved now).
    fn record_sync(&self, ns: &str, done: &CollectionSync) -> Result<()>;
    /// Saves now.
    fn flush(&self) -> Result<()>;
}
