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
            let estimated_docs = if meta.is_view() {
                0
            } else {
                src.client
                    .database(&db)
                    .collection::<Document>(&meta.name)
                    .estimated_document_count()
                    .await
                    .unwrap_or(0)
            };
            items.push(Item {
                target: sel.target_of(&ns),
                source: ns,
                meta,
                estimated_docs,
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
