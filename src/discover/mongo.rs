//! Read-only look at the source MongoDB for the plan: databases, collections, counts.

use crate::error::Result;
use crate::mongo::Mongo;
use crate::world::{CollectionInfo, DatabaseInfo, SourceInfo};

/// Lists user databases and their collections with estimated counts and index counts.
pub async fn source(m: &Mongo) -> Result<SourceInfo> {
    let version = m.version().await;
    let mut databases = Vec::new();
    for (name, size) in m.list_databases().await? {
        let mut collections = Vec::new();
        for entry in m.list_collections(&name).await? {
            let Ok(cname) = entry.get_str("name") else {
                continue;
            };
            if cname.starts_with("system.") {
                continue;
            }
            let kind = entry.get_str("type").unwrap_or("collection").to_string();
            let (documents, indexes) = if kind == "view" {
                (None, None)
            } else {
                let coll = m
                    .client
                    .database(&name)
                    .collection::<mongodb::bson::Document>(cname);
                let count = coll.estimated_document_count().await.ok();
                let idx = m.list_indexes(&name, cname).await.ok().map(|v| v.len());
                (count, idx)
            };
            collections.push(CollectionInfo {
                name: cname.to_string(),
                kind,
                documents,
                indexes,
            });
        }
        collections.sort_by(|a, b| a.name.cmp(&b.name));
        // dbStats needs dbStats on the database (readAnyDatabase has it); without it the
        // plan says the size is unknown rather than failing.
        let stats = m
            .client
            .database(&name)
            .run_command(mongodb::bson::doc! {"dbStats": 1})
            .await
            .ok();
        let stat = |k: &str| {
            stats
                .as_ref()
                .and_then(|s| s.get(k))
                .and_then(crate::mongo::as_i64)
        };
        databases.push(DatabaseInfo {
            data_size: stat("dataSize"),
            index_size: stat("indexSize"),
            name,
            size_on_disk: size,
            collections,
        });
    }
    Ok(SourceInfo {
        uri: m.uri.redacted(),
        version,
        databases,
    })
}
