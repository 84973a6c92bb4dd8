//! The comparison sync and verify share: both sides scanned in `_id` order and merged into
//! (`_id`, hash) differences, plus the collection-level checks (options, indexes, extra
//! collections). Verify only counts the differences; sync also patches them.

use std::collections::{BTreeMap, BTreeSet};

use mongodb::bson::{Bson, Document, RawDocumentBuf};
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::jobs::Item;
use crate::mongo::meta::{CollectionMeta, IndexMeta};
use crate::mongo::ns::{Namespace, Selection};
use crate::mongo::observe::Observer;
use crate::mongo::stream::{
    Diff, DiffKind, Digest, Merge, Next, ScanOpts, ScanSide, Sorted, SortedScan, show_id,
};

/// Writes one difference to the target (sync); verify passes none.
#[allow(async_fn_in_trait)] // awaited in place by the merge, never spawned or boxed
pub trait Patch {
    /// Queues (and, when a batch is full, writes) the fix for `d`; true when everything
    /// queued so far is acknowledged.
    async fn apply(&mut self, d: Diff) -> Result<bool>;
}

/// The patch verify passes: nothing is written.
pub enum NoPatch {}

impl Patch for NoPatch {
    async fn apply(&mut self, _d: Diff) -> Result<bool> {
        match *self {}
    }
}

/// How many differing `_id`s are listed per collection by default.
pub const DEFAULT_MAX_EXAMPLES: usize = 20;

/// One listed difference.
#[derive(Clone, Debug, Serialize)]
pub struct Example {
    /// missing / extra / different.
    pub kind: DiffKind,
    /// The `_id`, as relaxed extended JSON.
    pub id: String,
}

/// What the attempts so far compared of one collection.
#[derive(Default)]
pub(crate) struct Partial {
    pub(crate) after: Option<mongodb::bson::RawBson>,
    pub(crate) source_digest: Digest,
    pub(crate) target_digest: Digest,
    /// Documents only in the source.
    pub missing: u64,
    /// Documents only in the target.
    pub extra: u64,
    /// Documents with different bytes.
    pub different: u64,
    pub(crate) examples: Vec<Example>,
}

impl Partial {
    /// Counts one difference, listing it while there is room.
    fn count(&mut self, d: &Diff, max_examples: usize) {
        match d.kind {
            DiffKind::Missing => self.missing += 1,
            DiffKind::Extra => self.extra += 1,
            DiffKind::Different => self.different += 1,
        }
        if self.examples.len() < max_examples {
            self.examples.push(Example {
                kind: d.kind,
                id: show_id(&d.id),
            });
        }
    }

    /// Documents compared up to the checkpoint (both sides).
    pub fn compared(&self) -> u64 {
        self.source_digest.count + self.target_digest.count
    }
}

/// What a finished merge of one collection saw.
pub(crate) struct Merged {
    /// Source digest.
    pub source_digest: Digest,
    /// Target digest.
    pub target_digest: Digest,
    /// Why `_id`s could not be matched one by one, when a server does not sort like MongoDB.
    pub unreliable: Option<String>,
}

/// Both sides' sorted scans from where `part` got to, merged.
pub(crate) async fn open_merge(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    part: &Partial,
    patching: bool,
) -> Result<Merge> {
    let scoll = src
        .client
        .database(&it.source.db)
        .collection::<RawDocumentBuf>(&it.source.coll);
    let tcoll = dst
        .client
        .database(&it.target.db)
        .collection::<RawDocumentBuf>(&it.target.coll);
    let timeseries = it.meta.kind == "timeseries";
    let hashing = ScanOpts::hashing(it.read_shape()).canonical(timeseries);
    // A patch needs the source's documents; the target's are only ever hashed.
    let source = ScanOpts {
        keep_docs: patching,
        ..hashing
    };
    let (s, t) = tokio::join!(
        SortedScan::open_after(&scoll, part.after.as_ref(), source.on(src.role)),
        SortedScan::open_after(&tcoll, part.after.as_ref(), hashing.on(dst.role))
    );
    let s = s.map_err(|e| src.err(format!("reading {}", it.source), e))?;
    let t = t.map_err(|e| dst.err(format!("reading {}", it.target), e))?;
    let s = ScanSide::new(s, src, it.source.to_string());
    let t = ScanSide::new(t, dst, it.target.to_string());
    Ok(Merge::resume(s, t, part.source_digest, part.target_digest))
}

/// Merges one collection's source and target in `_id` order, counting the differences into
/// `part`. With a `patch`, each difference is also written to the target (that is `sync`;
/// verify is the same merge with no writes). Interrupted by an error, `part` keeps where a
/// retry may continue: for verify, everything compared; for sync, the last point up to which
/// every write was acknowledged (queued writes after it are found again).
pub(crate) async fn compare_docs<P: Patch, T: Sorted>(
    merge: &mut Merge<T>,
    it: &Item,
    part: &mut Partial,
    max_examples: usize,
    mut patch: Option<&mut P>,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<Merged> {
    let k = it.source.to_string();
    observer.start(&k, it.estimated_docs, 0, 0);
    let mut last_reported = merge.source_digest.count;
    let outcome: Result<()> = loop {
        if cancel.is_cancelled() {
            break Err(Error::interrupted(format!(
                "interrupted while comparing {k}"
            )));
        }
        let d = match merge.next_diff().await {
            Ok(Next::Diff(d)) => Some(d),
            Ok(Next::Quiet) => None,
            Ok(Next::End) => break Ok(()),
            Err(e) => break Err(e),
        };
        let seen = merge.source_digest.count;
        if seen - last_reported >= 1000 {
            observer.progress(&k, seen - last_reported, 0);
            last_reported = seen;
        }
        let Some(d) = d else { continue };
        if patch.is_some() && merge.unreliable() {
            break Err(Error::refused(format!(
                "{}; sync matches documents by _id order and cannot patch {k} on this server: copy it again with `efs2atlas copy --drop --ns-include {k}` instead",
                unreliable_reason(merge)
            )));
        }
        part.count(&d, max_examples);
        if let Some(p) = patch.as_deref_mut() {
            match p.apply(d).await {
                // Everything up to here is on the target: a retry may start after it.
                Ok(true) => {
                    part.after = merge.done_through.clone();
                    part.source_digest = merge.source_digest;
                    part.target_digest = merge.target_digest;
                }
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        }
    };
    if let Err(e) = outcome {
        // Keep what was compared, unless the order cannot be trusted (then restart from scratch).
        if patch.is_none() && !merge.unreliable() {
            part.after = merge.done_through.clone().or(part.after.take());
            part.source_digest = merge.source_digest;
            part.target_digest = merge.target_digest;
        }
        return Err(e);
    }
    observer.progress(&k, merge.source_digest.count - last_reported, 0);
    observer.finish(&k);
    Ok(Merged {
        source_digest: merge.source_digest,
        target_digest: merge.target_digest,
        unreliable: merge.unreliable().then(|| unreliable_reason(merge)),
    })
}

fn unreliable_reason<T: Sorted>(merge: &Merge<T>) -> String {
    let (side, (a, b)) = match (merge.source.out_of_order(), merge.target.out_of_order()) {
        (Some(p), _) => ("source", p.clone()),
        (_, Some(p)) => ("target", p.clone()),
        _ => ("", (String::new(), String::new())),
    };
    format!(
        "the {side} server returned _id {b} after {a}, which is not MongoDB's sort order, so individual documents cannot be matched; counts and digests are still exact"
    )
}

/// The target's `listCollections` entry for `ns`, if it exists.
pub(crate) async fn target_meta(dst: &Mongo, ns: &Namespace) -> Result<Option<CollectionMeta>> {
    Ok(dst
        .list_collections(&ns.db)
        .await?
        .iter()
        .filter_map(CollectionMeta::from_entry)
        .find(|m| m.name == ns.coll))
}

/// Differences between source and target collection options.
pub fn compare_options(s: &CollectionMeta, t: &CollectionMeta) -> Vec<String> {
    let mut out = Vec::new();
    if s.kind != t.kind {
        out.push(format!("type: source {} vs target {}", s.kind, t.kind));
    }
    let (so, to) = (s.comparable_options(), t.comparable_options());
    let keys: BTreeSet<&String> = so.keys().chain(to.keys()).collect();
    for k in keys {
        match (so.get(k), to.get(k)) {
            (Some(a), Some(b)) if same_value(a, b) => {}
            (Some(a), Some(b)) => out.push(format!("option {k}: source {a} vs target {b}")),
            (Some(a), None) => out.push(format!(
                "option {k}: missing on the target (source has {a})"
            )),
            (None, Some(b)) => out.push(format!("option {k}: only on the target ({b})")),
            (None, None) => {}
        }
    }
    out
}

/// Metadata values compared as the server means them: numbers by value whatever their type
/// (a 6.0 or 8.0 server stores a TTL's `expireAfterSeconds` or a capped size as Int32 where a
/// 4.4 server kept the Int64 it was given), everything else exactly.
pub fn same_value(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => same_doc(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// Two metadata documents field by field, in any order (servers list options in orders of
/// their own: 4.4 puts `unique` before `key`); see [`same_value`].
pub fn same_doc(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
}

/// Two index specs: the same options, and the same key fields in the same order (the one
/// place where order is meaning: `{a: 1, b: 1}` is another index than `{b: 1, a: 1}`).
fn same_index(a: &Document, b: &Document) -> bool {
    let key_order = |d: &Document| -> Vec<String> {
        d.get_document("key")
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default()
    };
    same_doc(a, b) && key_order(a) == key_order(b)
}

/// An integral number's value (metadata numbers are counts, sizes, seconds and weights).
fn number(v: &Bson) -> Option<i128> {
    match v {
        Bson::Int32(n) => Some(*n as i128),
        Bson::Int64(n) => Some(*n as i128),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i128),
        _ => None,
    }
}

/// Differences between source and target indexes, by name.
pub fn compare_indexes(source: &[Document], target: &[Document]) -> Vec<String> {
    let by_name = |v: &[Document]| -> BTreeMap<String, Document> {
        v.iter()
            .filter_map(IndexMeta::from_entry)
            .map(|i| (i.name.clone(), i.create_spec()))
            .collect()
    };
    let (s, t) = (by_name(source), by_name(target));
    let mut out = Vec::new();
    for (name, spec) in &s {
        match t.get(name) {
            None => out.push(format!("index {name} is missing on the target")),
            Some(ts) if !same_index(ts, spec) => out.push(format!(
                "index {name} differs: source {spec} vs target {ts}"
            )),
            _ => {}
        }
    }
    for name in t.keys() {
        if !s.contains_key(name) {
            out.push(format!("index {name} exists only on the target"));
        }
    }
    out
}

/// Target collections in the selected databases that the selection would take but the source lacks.
pub(crate) async fn extra_collections(
    dst: &Mongo,
    items: &[Item],
    sel: &Selection,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pairs: BTreeMap<(String, String), ()> = BTreeMap::new();
    for it in items {
        pairs.insert((it.source.db.clone(), it.target.db.clone()), ());
    }
    // Every database's list at once: each is a round trip to a remote Atlas.
    let lists = futures_util::future::join_all(pairs.keys().map(|(_, tdb)| async move {
        dst.client
            .database(tdb)
            .list_collection_names()
            .await
            .map_err(|e| dst.err(format!("listing collections of {tdb}"), e))
    }))
    .await;
    for ((sdb, tdb), names) in pairs.keys().zip(lists) {
        let names = names?;
        for n in names {
            // A preflight scratch collection left by a killed run is efs2atlas's, not the app's.
            if crate::mongo::access::is_scratch(&n) {
                continue;
            }
            let as_source = Namespace::new(sdb.clone(), n.clone());
            if sel.wants(&as_source)
                && !items
                    .iter()
                    .any(|i| i.target.db == *tdb && i.target.coll == n)
            {
                out.push(Namespace::new(tdb.clone(), n).to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn index_specs_compare_numbers_by_value_options_in_any_order_and_keys_in_order() {
        let src = [
            doc! {"unique": true, "key": {"a": 1, "b": -1}, "name": "ab", "expireAfterSeconds": 60i64},
        ];
        let same = [
            doc! {"key": {"a": 1, "b": -1}, "name": "ab", "unique": true, "expireAfterSeconds": 60i32},
        ];
        assert!(super::compare_indexes(&src, &same).is_empty());
        let swapped = [
            doc! {"key": {"b": -1, "a": 1}, "name": "ab", "unique": true, "expireAfterSeconds": 60},
        ];
        assert_eq!(
            super::compare_indexes(&src, &swapped).len(),
            1,
            "key order is meaning"
        );
        let other = [
            doc! {"key": {"a": 1, "b": -1}, "name": "ab", "unique": true, "expireAfterSeconds": 61},
        ];
        assert_eq!(super::compare_indexes(&src, &other).len(), 1);
        let typed = [
            doc! {"key": {"a": 1, "b": -1}, "name": "ab", "unique": "true", "expireAfterSeconds": 60},
        ];
        assert_eq!(
            super::compare_indexes(&src, &typed).len(),
            1,
            "only numbers are loose"
        );
    }

    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn index_comparison_names_each_difference() {
        let s = vec![
            doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            doc! {"v": 2, "key": {"email": 1}, "name": "email_1", "unique": true},
            doc! {"v": 2, "key": {"t": 1}, "name": "ttl", "expireAfterSeconds": 60},
        ];
        let t = vec![
            doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            doc! {"v": 2, "key": {"email": 1}, "name": "email_1"},
            doc! {"v": 2, "key": {"x": 1}, "name": "x_1"},
        ];
        let d = compare_indexes(&s, &t);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("index email_1 differs"));
        assert!(d[1].starts_with("index ttl is missing"));
        assert!(d[2].starts_with("index x_1 exists only"));
        assert!(compare_indexes(&s, &s).is_empty());
    }

    #[test]
    fn option_comparison() {
        let a = CollectionMeta::from_entry(
            &doc! {"name": "c", "options": {"validator": {"a": 1}, "uuid": 1}},
        )
        .unwrap();
        let b = CollectionMeta::from_entry(&doc! {"name": "c", "options": {"uuid": 2}}).unwrap();
        let d = compare_options(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("validator"));
        assert!(compare_options(&a, &a).is_empty());
    }
}
