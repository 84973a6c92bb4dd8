//! The collections a run works on: what the selection takes from the source, under which
//! target names, and small facts about a namespace on a server.

use mongodb::bson::{Document, doc};

use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::as_i64;
use crate::mongo::meta::CollectionMeta;
use crate::mongo::ns::{Namespace, Selection};

/// A source collection or view selected for copying.
#[derive(Clone, Debug)]
pub struct Item {
    /// Source namespace.
    pub source: Namespace,
    /// Target namespace.
    pub target: Namespace,
    /// Its metadata.
    pub meta: CollectionMeta,
    /// Estimated document count at the start.
    pub estimated_docs: u64,
    /// Average document size in bytes, as the server reports it (0: unknown); readers size
    /// their replies from it.
    pub avg_doc_bytes: u64,
}

impl Item {
    /// How this collection is read.
    pub fn read_shape(&self) -> crate::mongo::raw::ReadShape {
        crate::mongo::raw::ReadShape::for_avg(self.avg_doc_bytes)
    }
}

/// The document count and average size of a collection: `collStats` where the user may run
/// it, else the estimated count alone.
async fn stats(src: &Mongo, db: &str, coll: &str) -> (u64, u64) {
    let d = src.client.database(db);
    if let Ok(r) = d.run_command(doc! {"collStats": coll}).await {
        let count = r.get("count").and_then(as_i64).unwrap_or(0).max(0) as u64;
        let avg = r.get("avgObjSize").and_then(as_i64).unwrap_or(0).max(0) as u64;
        return (count, avg);
    }
    let count = d
        .collection::<Document>(coll)
        .estimated_document_count()
        .await
        .unwrap_or(0);
    (count, 0)
}

/// Lists the source namespaces the selection takes, with their target names.
pub async fn select(src: &Mongo, sel: &Selection) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut dbs = Vec::new();
    for (db, _) in src.list_databases().await? {
        if !sel.wants_db(&db) {
            continue;
        }
        let mut any = false;
        for entry in src.list_collections(&db).await? {
            let Some(meta) = CollectionMeta::from_entry(&entry) else {
                continue;
            };
            let ns = Namespace::new(db.clone(), meta.name.clone());
            if !sel.wants(&ns) {
                continue;
            }
            any = true;
            let (estimated_docs, avg_doc_bytes) = if meta.is_view() {
                (0, 0)
            } else {
                stats(src, &db, &meta.name).await
            };
            items.push(Item {
                target: sel.target_of(&ns),
                source: ns,
                meta,
                estimated_docs,
                avg_doc_bytes,
            });
        }
        if any {
            dbs.push(db);
        }
    }
    for d in &sel.dbs {
        if !dbs.contains(d) && !items.iter().any(|i| &i.source.db == d) {
            return Err(Error::usage(format!(
                "--db {d}: the source has no such database with selected collections (it has: {})",
                src.list_databases()
                    .await?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    sel.check_target_db(&dbs)?;
    // Biggest first so parallel slots stay busy; views last.
    items.sort_by(|a, b| {
        a.meta
            .is_view()
            .cmp(&b.meta.is_view())
            .then(b.estimated_docs.cmp(&a.estimated_docs))
    });
    Ok(items)
}

/// [`select`], retried while the source is briefly unreachable (a restart, a failover): a
/// step that starts right then should wait for it, not fail.
pub async fn select_retrying(
    src: &Mongo,
    sel: &Selection,
    cancel: &crate::cancel::Cancel,
) -> Result<Vec<Item>> {
    crate::mongo::with_retries("listing the source's collections", cancel, || {
        select(src, sel)
    })
    .await
}

/// The journal key of an item: its source namespace.
pub fn key(it: &Item) -> String {
    it.source.to_string()
}

/// True when the namespace exists (as a collection or view) on that server.
pub async fn exists(m: &Mongo, ns: &Namespace) -> Result<bool> {
    let names = m
        .client
        .database(&ns.db)
        .list_collection_names()
        .await
        .map_err(|e| m.err(format!("listing collections of {}", ns.db), e))?;
    Ok(names.contains(&ns.coll))
}

/// Counts documents of a collection exactly.
pub async fn count(m: &Mongo, ns: &Namespace) -> Result<u64> {
    let r = m
        .client
        .database(&ns.db)
        .run_command(doc! {"count": &ns.coll})
        .await
        .map_err(|e| m.err(format!("counting {ns}"), e))?;
    Ok(r.get("n").and_then(as_i64).unwrap_or(0) as u64)
}
