//! Short measurements on the real servers, so the preflight's copy estimate comes from these
//! servers and this link instead of an assumed rate: a timed read of the source's largest
//! collection, and a timed insert of a small batch into a scratch collection on the target,
//! dropped at once.
//!
//! The scratch collection lives in a database of its own ([`PROBE_DB`]), never one a
//! migration copies into: a run killed mid-probe leaves nothing where sync and verify look
//! (they compare the selected databases), and the next probe drops what it left.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mongodb::bson::{Binary, RawDocumentBuf, doc, spec::BinarySubtype};

use crate::mongo::Mongo;
use crate::mongo::jobs::Item;

/// How long the source is read for at most.
const READ_FOR: Duration = Duration::from_millis(1500);
/// How much of it at most.
const READ_BYTES: u64 = 32 * 1024 * 1024;
/// The probe insert's size.
const WRITE_BYTES: usize = 2 * 1024 * 1024;
/// Each probe is given this long before it is given up on.
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// The target database the insert probe writes into (and empties).
pub const PROBE_DB: &str = "efs2atlas_probe";

/// A measured rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Bytes moved.
    pub bytes: u64,
    /// In this long.
    pub seconds: f64,
}

/// What the target probe measured: its insert rate, and what creating a collection costs there
/// (the copy creates every collection and builds its indexes, each a round trip or more).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetProbe {
    /// The insert rate.
    pub write: Rate,
    /// Seconds to create a collection (its first insert).
    pub create_secs: f64,
}

impl Rate {
    /// Bytes per second.
    pub fn per_sec(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-3)
    }
}

/// Reads the start of the largest collection of `items` for up to [`READ_FOR`]; `None` when
/// there is nothing to read or the read fails (the estimate is then not shown).
pub async fn read_rate(src: &Mongo, items: &[Item]) -> Option<Rate> {
    let it = items
        .iter()
        .filter(|i| !i.meta.is_view())
        .max_by_key(|i| i.estimated_docs.saturating_mul(i.avg_doc_bytes.max(1)))?;
    let coll = src
        .client
        .database(&it.source.db)
        .collection::<RawDocumentBuf>(&it.source.coll);
    let shape = it.read_shape();
    let _w = crate::watch::waiting_on(format!(
        "{}: a timed read of {} (the copy estimate)",
        src.role, it.source
    ));
    let probe = async {
        let started = Instant::now();
        let mut cursor = coll
            .find(doc! {})
            .batch_size(shape.batch_size)
            .batch()
            .await
            .ok()?;
        let mut bytes = 0u64;
        while let Some(batch) = cursor.next().await {
            bytes += batch.ok()?.as_raw_document().as_bytes().len() as u64;
            if bytes >= READ_BYTES || started.elapsed() >= READ_FOR {
                break;
            }
        }
        (bytes > 0).then(|| Rate {
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    };
    tokio::time::timeout(PROBE_LIMIT, probe)
        .await
        .ok()
        .flatten()
}

/// Inserts [`WRITE_BYTES`] of documents shaped like the source's (their average size, bytes
/// that do not compress) into a scratch collection in [`PROBE_DB`] on the target, then drops
/// it, with whatever a killed run left there. `None` when it could not (a user allowed only
/// the app's databases, say).
pub async fn write_rate(dst: &Mongo, avg_doc_bytes: u64) -> Option<TargetProbe> {
    let db = PROBE_DB;
    if let Ok(names) = dst.client.database(db).list_collection_names().await {
        for left in names.iter().filter(|n| n.starts_with("probe_")) {
            let _ = dst
                .client
                .database(db)
                .collection::<RawDocumentBuf>(left)
                .drop()
                .await;
        }
    }
    let avg = (avg_doc_bytes as usize).clamp(64, WRITE_BYTES);
    let n = (WRITE_BYTES / avg).max(1);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let docs: Vec<RawDocumentBuf> = (0..n)
        .map(|i| {
            let bytes: Vec<u8> = (0..avg.saturating_sub(40))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut d = RawDocumentBuf::new();
            d.append("_id", i as i64 + 1);
            d.append(
                "pad",
                Binary {
                    subtype: BinarySubtype::Generic,
                    bytes,
                },
            );
            d
        })
        .collect();
    let bytes = docs.iter().map(|d| d.as_bytes().len() as u64).sum();
    let coll = dst
        .client
        .database(db)
        .collection::<RawDocumentBuf>(&format!("probe_{}", std::process::id()));
    let probe = async {
        let _w = crate::watch::waiting_on(format!(
            "{}: a timed insert into {db}.{} (the copy estimate)",
            dst.role,
            coll.name()
        ));
        let started = Instant::now();
        let mut first = RawDocumentBuf::new();
        first.append("_id", 0i64);
        coll.insert_one(&first).await.ok()?;
        let create_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        coll.insert_many(&docs).ordered(false).await.ok()?;
        let seconds = started.elapsed().as_secs_f64();
        Some(TargetProbe {
            write: Rate { bytes, seconds },
            create_secs,
        })
    };
    let rate = tokio::time::timeout(PROBE_LIMIT, probe)
        .await
        .ok()
        .flatten();
    // Gone however the insert went; a failed drop leaves a collection the verify would name.
    if let Err(e) = coll.drop().await {
        tracing::warn!(
            "could not drop the probe collection {db}.{}: {e}",
            coll.name()
        );
    }
    rate
}

/// The copy's estimated duration for `bytes` of data in `collections` collections (with
/// `indexes` secondary indexes) at the slower of the two rates, plus what creating them costs,
/// and the words that say where it comes from.
pub fn estimate(
    (bytes, collections, indexes): (u64, u64, u64),
    read: Option<Rate>,
    target: Option<TargetProbe>,
) -> Option<(Duration, String)> {
    let read = read?;
    let mb = |r: &Rate| format!("{:.0} MB/s", r.per_sec() / 1e6);
    match target {
        Some(t) => {
            let rate = read.per_sec().min(t.write.per_sec());
            let setup = (collections + indexes) as f64 * t.create_secs;
            Some((
                Duration::from_secs_f64(bytes as f64 / rate + setup),
                format!(
                    "measured here: the source reads at {}, Atlas takes {} from this link and {} ms to create a collection",
                    mb(&read),
                    mb(&t.write),
                    (t.create_secs * 1000.0).round()
                ),
            ))
        }
        None => Some((
            Duration::from_secs_f64(bytes as f64 / read.per_sec()),
            format!(
                "at least: the source reads at {} (measured here); Atlas's rate could not be measured",
                mb(&read)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_takes_the_slower_side_and_says_what_it_measured() {
        let read = Rate {
            bytes: 100_000_000,
            seconds: 1.0,
        };
        let write = Rate {
            bytes: 10_000_000,
            seconds: 1.0,
        };
        let target = TargetProbe {
            write,
            create_secs: 0.5,
        };
        let (d, why) = estimate((1_000_000_000, 10, 10), Some(read), Some(target)).unwrap();
        assert_eq!(d.as_secs(), 110, "100 s of data and 20 creations of 0.5 s");
        assert!(why.contains("100 MB/s") && why.contains("10 MB/s"), "{why}");
        let (d, why) = estimate((1_000_000_000, 10, 10), Some(read), None).unwrap();
        assert_eq!(d.as_secs(), 10);
        assert!(why.starts_with("at least"), "{why}");
        let none = estimate((1, 1, 0), None, Some(target));
        assert!(none.is_none(), "nothing measured: no estimate");
    }
}
