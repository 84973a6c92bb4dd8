//! A large collection copied in `_id` parts side by side (apps keep most of their data in
//! one collection, which one cursor cannot keep a long link or the target's cores busy with):
//! boundaries from a sample of its `_id`s, each part resumable on its own, their ledgers
//! joined in order once all are done.

use std::time::Duration;

use futures_util::StreamExt;
use mongodb::bson::{Bson, Document, RawBson, doc};

use crate::error::{Error, Result};
use crate::mongo::jobs::{Item, key};
use crate::mongo::order;
use crate::mongo::pipe::{Ctx, Span, all_or_first_failure, copy_span, id_from_journal, record};
use crate::mongo::progress::{CollectionProgress, ProgressStore};

/// Copies the parts of a collection side by side, then joins their ledgers into the
/// collection's (parts follow each other in `_id` order, so the joined ledger is sorted).
pub(crate) async fn copy_parts(
    ctx: &Ctx<'_>,
    it: &Item,
    progress: &mut CollectionProgress,
    halvings: usize,
) -> Result<(u64, u64)> {
    let k = key(it);
    let whole = std::sync::Mutex::new(progress.clone());
    let save_part = |i: usize, p: &CollectionProgress, force: bool| -> Result<()> {
        let snapshot = {
            let mut w = whole
                .lock()
                .map_err(|_| Error::other("copy progress lock poisoned"))?;
            if let Some(part) = w.parts.get_mut(i) {
                part.progress = p.clone();
            }
            w.docs = w.parts.iter().map(|x| x.progress.docs).sum();
            w.bytes = w.parts.iter().map(|x| x.progress.bytes).sum();
            w.clone()
        };
        record(ctx.journal, &k, snapshot, force)
    };
    let save_part = &save_part;
    // A bound that does not parse would make its part open-ended (reading into the next
    // part's range): refuse it, as an unusable resume position is refused.
    let bound = |v: &Option<serde_json::Value>| -> Result<Option<Bson>> {
        v.as_ref()
            .map(|v| {
                id_from_journal(v).ok_or_else(|| {
                    Error::other(format!("journal part bound for {k} is unusable: {v}"))
                })
            })
            .transpose()
    };
    let mut spans = Vec::new();
    for (i, part) in progress.parts.iter().enumerate() {
        if !part.progress.data_done {
            let span = Span {
                from: bound(&part.from)?,
                until: bound(&part.until)?,
                ledger_key: format!("{k}#part{i}"),
            };
            spans.push((i, span, part.progress.clone()));
        }
    }
    let runs = spans.into_iter().map(|(i, span, mut p)| async move {
        let save = move |p: &CollectionProgress, force: bool| save_part(i, p, force);
        copy_span(ctx, it, &mut p, &span, halvings, &save).await
    });
    let results = futures_util::future::join_all(runs).await;
    *progress = whole
        .into_inner()
        .map_err(|_| Error::other("copy progress lock poisoned"))?;
    let copied = ctx.take_copied(&k);
    all_or_first_failure(results)?;
    join_ledgers(ctx.journal, it, progress)?;
    progress.data_done = true;
    record(ctx.journal, &k, progress.clone(), true)?;
    Ok(copied)
}

/// Joins the parts' ledgers, in order, into the collection's (generation 0), and removes
/// them. Any part without a ledger (its source order was not trusted) leaves the collection
/// without one: sync and verify then read both sides.
fn join_ledgers(
    store: &dyn ProgressStore,
    it: &Item,
    progress: &mut CollectionProgress,
) -> Result<()> {
    progress.order_trusted = progress.parts.iter().all(|p| p.progress.order_trusted);
    let Some(dir) = store.ledger_dir() else {
        return Ok(());
    };
    let k = key(it);
    let marks: Option<Vec<_>> = progress
        .parts
        .iter()
        .map(|p| p.progress.ledger.filter(|_| !p.progress.ledger_off))
        .collect();
    let paths: Vec<_> = (0..progress.parts.len())
        .map(|i| crate::mongo::ledger::path_in(&dir, &format!("{k}#part{i}"), 0))
        .collect();
    match marks {
        Some(marks) if progress.order_trusted && !progress.ledger_off => {
            let out = crate::mongo::ledger::path_in(&dir, &k, 0);
            let parts: Vec<_> = paths.iter().cloned().zip(marks).collect();
            match crate::mongo::ledger::join(&parts, &out) {
                Ok(mark) => progress.ledger = Some(mark),
                Err(e) => {
                    tracing::warn!("{e}; {} is compared on both sides instead", it.source);
                    progress.ledger = None;
                    progress.ledger_off = true;
                }
            }
        }
        _ => {
            progress.ledger = None;
            progress.ledger_off = true;
        }
    }
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// A collection at least this large (estimated) is read in parts...
const SPLIT_BYTES: u64 = 8 * 1024 * 1024;
/// ...when it also holds at least this many documents (a few huge documents gain nothing).
const SPLIT_DOCS: u64 = 10_000;
/// How many parts.
const PARTS: usize = 4;
/// Samples per part when choosing the boundaries.
const SAMPLES_PER_PART: usize = 64;

/// The parts a large collection is copied in, chosen from a random sample of its `_id`s
/// (`$sample`): boundaries are ObjectIds, dates or integers, all of one type, where the `_id`
/// index's order is MongoDB's whatever the collation. Anything else (a small collection, a
/// time series, string `_id`s, a sample that fails) is copied with one cursor.
pub(crate) async fn split(ctx: &Ctx<'_>, it: &Item) -> Vec<crate::mongo::progress::Part> {
    let est_bytes = it.estimated_docs.saturating_mul(it.avg_doc_bytes);
    if it.meta.kind != "collection" || est_bytes < SPLIT_BYTES || it.estimated_docs < SPLIT_DOCS {
        return vec![];
    }
    let Some(ids) = sample_ids(ctx, it).await else {
        return vec![];
    };
    match boundaries(ids) {
        Some(bounds) => parts_between(&bounds),
        None => vec![],
    }
}

/// A random sample of the collection's `_id`s (bounded: a sample that fails or takes long
/// leaves the collection to one cursor).
async fn sample_ids(ctx: &Ctx<'_>, it: &Item) -> Option<Vec<Bson>> {
    let coll = ctx
        .src
        .client
        .database(&it.source.db)
        .collection::<Document>(&it.source.coll);
    let pipeline = vec![
        doc! {"$sample": {"size": (PARTS * SAMPLES_PER_PART) as i64}},
        doc! {"$project": {"_id": 1}},
    ];
    let sample = tokio::time::timeout(Duration::from_secs(30), async {
        let mut cur = coll.aggregate(pipeline).await?;
        let mut ids = Vec::new();
        while let Some(d) = cur.next().await {
            if let Some(id) = d?.get("_id") {
                ids.push(id.clone());
            }
        }
        Ok::<_, mongodb::error::Error>(ids)
    })
    .await;
    sample.ok()?.ok()
}

/// The `PARTS - 1` boundaries, in order, from a sample: taken from the commonest splittable
/// type alone (an app's `_id`s are nearly all of one); the other brackets go to the first or
/// last part by their type clauses. `None` when too few of the sample can bound parts.
fn boundaries(ids: Vec<Bson>) -> Option<Vec<RawBson>> {
    let ids: Vec<RawBson> = ids
        .into_iter()
        .filter_map(|b| RawBson::try_from(b).ok())
        .filter(|v| {
            matches!(
                v,
                RawBson::ObjectId(_) | RawBson::DateTime(_) | RawBson::Int32(_) | RawBson::Int64(_)
            )
        })
        .collect();
    let bracket = |v: &RawBson| order::bracket(&v.as_raw_bson_ref());
    let commonest = (0u8..16).max_by_key(|b| ids.iter().filter(|v| bracket(v) == *b).count())?;
    let mut ids: Vec<RawBson> = ids
        .into_iter()
        .filter(|v| bracket(v) == commonest)
        .collect();
    if ids.len() < PARTS * SAMPLES_PER_PART / 2 {
        return None;
    }
    ids.sort_by(|a, b| order::cmp(&a.as_raw_bson_ref(), &b.as_raw_bson_ref()));
    let mut bounds: Vec<RawBson> = (1..PARTS)
        .map(|i| ids[i * ids.len() / PARTS].clone())
        .collect();
    bounds.dedup();
    Some(bounds)
}

/// The parts the boundaries make: the first from the start, the last to the end.
fn parts_between(bounds: &[RawBson]) -> Vec<crate::mongo::progress::Part> {
    use crate::mongo::progress::Part;
    let fresh = || CollectionProgress {
        order_trusted: true,
        ..Default::default()
    };
    let mut parts = Vec::new();
    let mut from = None;
    for b in bounds {
        let Ok(until) = Bson::try_from(b.clone()).map(|b| b.into_canonical_extjson()) else {
            return vec![];
        };
        parts.push(Part {
            from: from.replace(until.clone()),
            until: Some(until),
            progress: fresh(),
        });
    }
    parts.push(Part {
        from,
        until: None,
        progress: fresh(),
    });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn boundaries_come_from_the_commonest_type_in_order() {
        let mut ids: Vec<Bson> = (0..200u32)
            .map(|i| {
                let mut b = [0u8; 12];
                b[..4].copy_from_slice(&0x6500_0000u32.to_be_bytes());
                b[8..].copy_from_slice(&(i * 7919 % 200).to_be_bytes());
                Bson::ObjectId(ObjectId::from_bytes(b))
            })
            .collect();
        ids.extend((0..40).map(|i| Bson::String(format!("s{i}"))));
        ids.push(Bson::Null);
        let bounds = boundaries(ids).unwrap();
        assert_eq!(bounds.len(), PARTS - 1);
        assert!(bounds.iter().all(|b| matches!(b, RawBson::ObjectId(_))));
        for w in bounds.windows(2) {
            assert_eq!(
                order::cmp(&w[0].as_raw_bson_ref(), &w[1].as_raw_bson_ref()),
                std::cmp::Ordering::Less
            );
        }
        let parts = parts_between(&bounds);
        assert_eq!(parts.len(), PARTS);
        assert!(parts[0].from.is_none() && parts[PARTS - 1].until.is_none());
        for w in parts.windows(2) {
            assert_eq!(w[0].until, w[1].from);
        }
        // Strings only: their order depends on the collation, so no parts.
        let strings: Vec<Bson> = (0..300).map(|i| Bson::String(format!("k{i}"))).collect();
        assert!(boundaries(strings).is_none());
    }
}
