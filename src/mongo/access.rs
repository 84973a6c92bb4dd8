//! What the users in the URIs may do, found before anything is copied: a source user that
//! cannot freeze writes, or a target user that cannot write or index, is named in preflight
//! with the roles to grant, not discovered half-way through a migration.

use mongodb::bson::{Bson, Document, doc};

use crate::error::{Error, Result};
use crate::mongo::Mongo;

/// Cluster actions the source user needs: `fsync`/`unlock` to freeze writes and release them,
/// `inprog` to check at the cutover that the freeze still holds (`currentOp`).
const FREEZE_ACTIONS: &[&str] = &["fsync", "unlock", "inprog"];

/// Refuses, naming the roles to grant, when the source user may not freeze writes.
pub async fn check_source_can_freeze(m: &Mongo) -> Result<()> {
    let r = m
        .client
        .database("admin")
        .run_command(doc! {"connectionStatus": 1, "showPrivileges": true})
        .await
        .map_err(|e| m.err("reading the user's privileges (connectionStatus)", e))?;
    let info = r.get_document("authInfo").cloned().unwrap_or_default();
    let users = info
        .get_array("authenticatedUsers")
        .map(|a| a.len())
        .unwrap_or(0);
    if users == 0 {
        // No access control on the server: everything is allowed.
        return Ok(());
    }
    let privileges: Vec<Document> = info
        .get_array("authenticatedUserPrivileges")
        .map(|a| a.iter().filter_map(|p| p.as_document().cloned()).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = FREEZE_ACTIONS
        .iter()
        .copied()
        .filter(|a| !privileges.iter().any(|p| grants_cluster_action(p, a)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::refused(format!(
        "the source user {} may not freeze writes: it lacks the {} privilege on the cluster. Grant it the hostManager and clusterMonitor roles on admin (or use the root user, as the mongo image's MONGO_INITDB_ROOT_USERNAME is), or pass --freeze none (writes made during the migration can then be lost)",
        m.uri.user.as_deref().unwrap_or("(none)"),
        missing.join(", ")
    )))
}

fn grants_cluster_action(p: &Document, action: &str) -> bool {
    let res = p.get_document("resource").cloned().unwrap_or_default();
    let on_cluster =
        res.get_bool("cluster").unwrap_or(false) || res.get_bool("anyResource").unwrap_or(false);
    let actions = p.get_array("actions").map(|a| a.as_slice()).unwrap_or(&[]);
    on_cluster
        && actions
            .iter()
            .any(|x| matches!(x, Bson::String(s) if s == action || s == "anyAction"))
}

/// The name prefix of the preflight's scratch collections.
const SCRATCH_PREFIX: &str = "efs2atlas_preflight_";

/// True for a preflight scratch collection (efs2atlas's own, never the app's).
pub fn is_scratch(collection: &str) -> bool {
    collection.starts_with(SCRATCH_PREFIX)
}

/// Proves the target user can create a collection, write to it, index it and drop it in each
/// database in `dbs`, on a scratch collection that is dropped again. Scratch collections a
/// killed run left behind are dropped first.
pub async fn check_target_can_write(m: &Mongo, dbs: &[String]) -> Result<()> {
    let name = format!(
        "{SCRATCH_PREFIX}{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    for db in dbs {
        let d = m.client.database(db);
        // Listing needs no more than the checks below; a failure here is left to them.
        if let Ok(names) = d.list_collection_names().await {
            for left in names.iter().filter(|n| is_scratch(n)) {
                let _ = d.run_command(doc! {"drop": left}).await;
            }
        }
        let steps: [(&str, Document); 4] = [
            ("create collections", doc! {"create": &name}),
            (
                "write documents",
                doc! {"insert": &name, "documents": [{"_id": 1}], "bypassDocumentValidation": true},
            ),
            (
                "create indexes",
                doc! {"createIndexes": &name, "indexes": [{"key": {"x": 1}, "name": "x_1"}]},
            ),
            ("drop collections", doc! {"drop": &name}),
        ];
        for (what, cmd) in steps {
            if let Err(e) = d.run_command(cmd).await {
                if what != "drop collections" {
                    let _ = d.run_command(doc! {"drop": &name}).await;
                }
                let unauthorized = matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 13);
                if unauthorized {
                    return Err(Error::refused(format!(
                        "the target user {} may not {what} in database {db} (found in preflight; nothing was copied). Give it the readWriteAnyDatabase and dbAdminAnyDatabase roles (in Atlas: a database user with \"Read and write to any database\" plus dbAdmin), then run again",
                        m.uri.user.as_deref().unwrap_or("(none)")
                    )));
                }
                return Err(m.err(format!("checking that efs2atlas may {what} in {db}"), e));
            }
        }
    }
    Ok(())
}
