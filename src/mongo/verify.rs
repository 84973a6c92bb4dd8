//! The verifier: per collection, count plus an order-independent digest of every document's
//! exact bytes on both sides, index and option comparison, and, on a mismatch, the `_id`s
//! that are missing, extra or different. It never relies on `dbHash`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use mongodb::bson::{Document, RawDocumentBuf};
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::copy::{Item, Observer};
use crate::mongo::meta::{CollectionMeta, IndexMeta};
use crate::mongo::ns::{Namespace, Selection};
use crate::mongo::stream::{DiffKind, Digest, Merge, SortedScan, show_id};

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

/// The verdict for one collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionVerdict {
    /// Source namespace.
    pub source: String,
    /// Target namespace.
    pub target: String,
    /// collection, view, timeseries.
    pub kind: String,
    /// True when documents, indexes and options all match.
    pub ok: bool,
    /// Source digest.
    pub source_digest: Digest,
    /// Target digest.
    pub target_digest: Digest,
    /// Documents only in the source.
    pub missing: u64,
    /// Documents only in the target.
    pub extra: u64,
    /// Documents in both with different bytes (changed fields, changed types, field order).
    pub different: u64,
    /// The first differences, up to the limit.
    pub examples: Vec<Example>,
    /// Set when the `_id`s could not be pinpointed (a server does not sort `_id` like MongoDB);
    /// counts and digests are still exact.
    pub pinpoint_unavailable: Option<String>,
    /// Index differences.
    pub index_differences: Vec<String>,
    /// Collection option differences.
    pub option_differences: Vec<String>,
}

/// The whole verification.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// True when every collection matches and nothing is extra.
    pub ok: bool,
    /// Per collection.
    pub collections: Vec<CollectionVerdict>,
    /// Target collections that the source does not have (within the selection).
    pub extra_collections: Vec<String>,
    /// Documents read on both sides.
    pub documents_compared: u64,
    /// Bytes read on both sides.
    pub bytes_compared: u64,
    /// Wall time.
    pub seconds: f64,
}

impl VerifyReport {
    /// A one-line account of what differs, for the error message.
    pub fn summary(&self) -> String {
        let bad: Vec<String> = self
            .collections
            .iter()
            .filter(|c| !c.ok)
            .map(|c| {
                let mut parts = Vec::new();
                if c.missing + c.extra + c.different > 0 {
                    parts.push(format!(
                        "{} missing, {} extra, {} different",
                        c.missing, c.extra, c.different
                    ));
                } else if c.source_digest != c.target_digest {
                    parts.push(format!(
                        "{} vs {} documents, digests differ",
                        c.source_digest.count, c.target_digest.count
                    ));
                }
                if !c.index_differences.is_empty() {
                    parts.push(format!("{} index difference(s)", c.index_differences.len()));
                }
                if !c.option_differences.is_empty() {
                    parts.push(format!(
                        "{} option difference(s)",
                        c.option_differences.len()
                    ));
                }
                format!("{} ({})", c.source, parts.join(", "))
            })
            .chain(
                self.extra_collections
                    .iter()
                    .map(|e| format!("{e} (only on the target)")),
            )
            .collect();
        format!("verification found differences in {}", bad.join("; "))
    }
}

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Which namespaces, and where they went.
    pub selection: Selection,
    /// Collections compared at once.
    pub parallel: usize,
    /// Differing `_id`s listed per collection.
    pub max_examples: usize,
}

/// Compares every selected collection.
pub async fn run(
    src: &Mongo,
    dst: &Mongo,
    items: &[Item],
    opts: &VerifyOptions,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let max_examples = opts.max_examples;
    let results: Vec<Result<CollectionVerdict>> = stream::iter(items)
        .map(|it| async move {
            let what = format!("comparing {}", it.source);
            // What earlier attempts compared survives a dropped connection.
            let partial = std::sync::Mutex::new(Partial::default());
            let progress = || {
                partial
                    .lock()
                    .map(|p| p.source_digest.count + p.target_digest.count)
                    .unwrap_or(0)
            };
            crate::mongo::with_retries_progress(&what, cancel, progress, || {
                verify_collection(src, dst, it, max_examples, observer, cancel, &partial)
            })
            .await
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    let mut report = VerifyReport::default();
    for r in results {
        report.collections.push(r?);
    }
    report.collections.sort_by(|a, b| a.source.cmp(&b.source));
    report.extra_collections = extra_collections(dst, items, &opts.selection).await?;
    report.documents_compared = report
        .collections
        .iter()
        .map(|c| c.source_digest.count + c.target_digest.count)
        .sum();
    report.bytes_compared = report
        .collections
        .iter()
        .map(|c| c.source_digest.bytes + c.target_digest.bytes)
        .sum();
    report.ok = report.collections.iter().all(|c| c.ok) && report.extra_collections.is_empty();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What the attempts so far compared of one collection.
#[derive(Default)]
pub(crate) struct Partial {
    after: Option<mongodb::bson::RawBson>,
    source_digest: Digest,
    target_digest: Digest,
    /// Documents only in the source.
    pub missing: u64,
    /// Documents only in the target.
    pub extra: u64,
    /// Documents with different bytes.
    pub different: u64,
    examples: Vec<Example>,
}

impl Partial {
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

/// Merges one collection's source and target in `_id` order, counting the differences into
/// `part`. With a `patch`, each difference is also written to the target (that is `sync`;
/// verify is the same merge with no writes). Interrupted by an error, `part` keeps where a
/// retry may continue: for verify, everything compared; for sync, the last point up to which
/// every write was acknowledged (queued writes after it are found again).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare_docs(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    part: &mut Partial,
    max_examples: usize,
    mut patch: Option<&mut crate::mongo::sync::Patcher<'_>>,
    observer: &dyn Observer,
    cancel: &Cancel,
) -> Result<Merged> {
    let k = it.source.to_string();
    observer.start(&k, it.estimated_docs, 0, 0);
    let scoll = src
        .client
        .database(&it.source.db)
        .collection::<RawDocumentBuf>(&it.source.coll);
    let tcoll = dst
        .client
        .database(&it.target.db)
        .collection::<RawDocumentBuf>(&it.target.coll);
    let (s, t) = tokio::join!(
        SortedScan::open_after(&scoll, part.after.as_ref()),
        SortedScan::open_after(&tcoll, part.after.as_ref())
    );
    let timeseries = it.meta.kind == "timeseries";
    let s = s
        .map_err(|e| src.err(format!("reading {}", it.source), e))?
        .canonical(timeseries);
    let t = t
        .map_err(|e| dst.err(format!("reading {}", it.target), e))?
        .canonical(timeseries);
    let mut merge = Merge::resume(s, t, part.source_digest, part.target_digest);
    let mut last_reported = merge.source_digest.count;
    let outcome: Result<()> = loop {
        if cancel.is_cancelled() {
            break Err(Error::Interrupted(format!(
                "interrupted while comparing {k}"
            )));
        }
        let d = match merge.next_diff().await {
            Ok(d) => d,
            Err(e) => {
                break Err(both_sides_err(
                    src,
                    dst,
                    &format!("comparing {k} with {}", it.target),
                    e,
                ));
            }
        };
        let seen = merge.source_digest.count;
        if seen - last_reported >= 1000 {
            observer.progress(&k, seen - last_reported, 0);
            last_reported = seen;
        }
        let Some(d) = d else { break Ok(()) };
        if patch.is_some() && merge.unreliable() {
            break Err(Error::Refused(format!(
                "{}; sync matches documents by _id order and cannot patch {k} on this server: copy it again with `efs2atlas copy --drop --ns-include {k}` instead",
                unreliable_reason(&merge)
            )));
        }
        match d.kind {
            DiffKind::Missing => part.missing += 1,
            DiffKind::Extra => part.extra += 1,
            DiffKind::Different => part.different += 1,
        }
        if part.examples.len() < max_examples {
            part.examples.push(Example {
                kind: d.kind,
                id: show_id(&d.id),
            });
        }
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
        unreliable: merge.unreliable().then(|| unreliable_reason(&merge)),
    })
}

fn unreliable_reason(merge: &Merge) -> String {
    let (side, (a, b)) = match (&merge.source.out_of_order, &merge.target.out_of_order) {
        (Some(p), _) => ("source", p.clone()),
        (_, Some(p)) => ("target", p.clone()),
        _ => ("", (String::new(), String::new())),
    };
    format!(
        "the {side} server returned _id {b} after {a}, which is not MongoDB's sort order, so individual documents cannot be matched; counts and digests are still exact"
    )
}

#[allow(clippy::too_many_arguments)]
async fn verify_collection(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
    max_examples: usize,
    observer: &dyn Observer,
    cancel: &Cancel,
    partial: &std::sync::Mutex<Partial>,
) -> Result<CollectionVerdict> {
    let k = it.source.to_string();
    let mut v = CollectionVerdict {
        source: k.clone(),
        target: it.target.to_string(),
        kind: it.meta.kind.clone(),
        ok: false,
        source_digest: Digest::default(),
        target_digest: Digest::default(),
        missing: 0,
        extra: 0,
        different: 0,
        examples: vec![],
        pinpoint_unavailable: None,
        index_differences: vec![],
        option_differences: vec![],
    };
    let target_meta = target_meta(dst, &it.target).await?;
    let Some(target_meta) = target_meta else {
        v.option_differences
            .push(format!("{} does not exist on the target", it.target));
        if !it.meta.is_view() {
            // Still count the source so the report says how much is missing.
            let scoll = src
                .client
                .database(&it.source.db)
                .collection::<RawDocumentBuf>(&it.source.coll);
            let mut scan = SortedScan::open(&scoll)
                .await
                .map_err(|e| src.err(format!("reading {}", it.source), e))?;
            while scan
                .next()
                .await
                .map_err(|e| src.err(format!("reading {}", it.source), e))?
                .is_some()
            {}
            v.source_digest = scan.digest;
            v.missing = scan.digest.count;
        }
        return Ok(v);
    };
    v.option_differences = compare_options(&it.meta, &target_meta);
    if it.meta.is_view() {
        v.ok = v.option_differences.is_empty();
        return Ok(v);
    }
    v.index_differences = compare_indexes(
        &src.list_indexes(&it.source.db, &it.source.coll).await?,
        &dst.list_indexes(&it.target.db, &it.target.coll).await?,
    );

    let mut part = partial
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    let outcome = compare_docs(
        src,
        dst,
        it,
        &mut part,
        max_examples,
        None,
        observer,
        cancel,
    )
    .await;
    let merged = match outcome {
        Ok(m) => m,
        Err(e) => {
            if let Ok(mut p) = partial.lock() {
                *p = part;
            }
            return Err(e);
        }
    };
    v.source_digest = merged.source_digest;
    v.target_digest = merged.target_digest;
    v.missing = part.missing;
    v.extra = part.extra;
    v.different = part.different;
    v.examples = part.examples;
    if let Some(why) = merged.unreliable {
        v.pinpoint_unavailable = Some(why);
        v.missing = 0;
        v.extra = 0;
        v.different = 0;
        v.examples.clear();
    }
    let docs_ok = v.source_digest == v.target_digest && v.missing + v.extra + v.different == 0;
    v.ok = docs_ok && v.index_differences.is_empty() && v.option_differences.is_empty();
    Ok(v)
}

/// A merge error could come from either server: scrub both URIs' credentials.
fn both_sides_err(src: &Mongo, dst: &Mongo, context: &str, e: mongodb::error::Error) -> Error {
    match src.err(context, e) {
        Error::Mongo { context, message } => Error::Mongo {
            context,
            message: crate::mongo::scrub_err(&dst.uri, &message),
        },
        Error::MongoTransient { context, message } => Error::MongoTransient {
            context,
            message: crate::mongo::scrub_err(&dst.uri, &message),
        },
        other => other,
    }
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
            (Some(a), Some(b)) if a == b => {}
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
            Some(ts) if ts != spec => out.push(format!(
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
    for (sdb, tdb) in pairs.keys() {
        let names = dst
            .client
            .database(tdb)
            .list_collection_names()
            .await
            .map_err(|e| dst.err(format!("listing collections of {tdb}"), e))?;
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
