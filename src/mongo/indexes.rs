//! Indexes, built on the target after the data, one command per index.

use crate::error::Result;
use crate::mongo::Mongo;
use crate::mongo::jobs::Item;
use crate::mongo::meta::IndexMeta;

/// Builds the source's indexes on the target; returns the failures and the unique indexes
/// a duplicate key turned away. The latter are not errors: copied while the app wrote, two
/// documents can hold one unique value for a moment (a swap straddled the scan); `sync`
/// patches them and then builds the index.
pub async fn build_indexes(
    src: &Mongo,
    dst: &Mongo,
    it: &Item,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut errors = Vec::new();
    let mut deferred = Vec::new();
    let tdb = dst.client.database(&it.target.db);
    for entry in src.list_indexes(&it.source.db, &it.source.coll).await? {
        let Some(ix) = IndexMeta::from_entry(&entry) else {
            continue;
        };
        if ix.is_id_index() {
            continue;
        }
        if let Err(e) = tdb.run_command(ix.create_command(&it.target.coll)).await {
            let duplicate =
                matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 11000);
            if duplicate {
                let note = format!(
                    "unique index {} on {}: documents copied while the app wrote share a key for now; sync builds it after patching them",
                    ix.name, it.target
                );
                tracing::warn!("{note}");
                deferred.push(note);
            } else {
                errors.push(format!(
                    "index {} on {}: {}",
                    ix.name,
                    it.target,
                    crate::mongo::describe(&dst.uri, &e)
                ));
            }
        }
    }
    Ok((errors, deferred))
}
