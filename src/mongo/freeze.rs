//! Freezing writes on the source with `fsync` + `lock`, and undoing it. MongoDB answers with
//! `lockCount`; a server that answers without it (a MongoDB-compatible one that only
//! pretends) is reported as "not confirmed", never as frozen.

use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mongo::{Mongo, as_i64};

/// The outcome of a lock attempt.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FreezeOutcome {
    /// True when the server said it holds the lock (`lockCount` ≥ 1).
    pub confirmed: bool,
    /// What the server said, for the report.
    pub detail: String,
}

/// Locks the source against writes.
pub async fn lock(m: &Mongo) -> Result<FreezeOutcome> {
    let _w = crate::watch::waiting_on("source: fsync lock (it waits for writes under way)");
    let r = m.client.database("admin").run_command(doc! {"fsync": 1, "lock": true}).await.map_err(|e| Error::mongo(format!("source ({}): freezing writes with fsync lock", m.uri.redacted()), format!(
            "{}. The user needs the fsync privilege (e.g. the root or hostManager role); or pass --freeze none to continue without a freeze (writes during the copy can then be lost)",
            crate::mongo::scrub_err(&m.uri, &e)
        )))?;
    let count = r.get("lockCount").and_then(as_i64);
    Ok(match count {
        Some(n) if n >= 1 => FreezeOutcome {
            confirmed: true,
            detail: format!("fsync lock held (lockCount {n})"),
        },
        _ => FreezeOutcome {
            confirmed: false,
            detail: format!(
                "the server answered the fsync lock without lockCount ({r}); writes may NOT be frozen"
            ),
        },
    })
}

/// Releases the lock (best effort when it was never confirmed).
pub async fn unlock(m: &Mongo) -> Result<()> {
    m.client
        .database("admin")
        .run_command(doc! {"fsyncUnlock": 1})
        .await
        .map_err(|e| {
            m.err(
                "releasing the fsync lock (run db.fsyncUnlock() on the source by hand)",
                e,
            )
        })?;
    Ok(())
}

/// The source server's identity, `hello.topologyVersion.processId`: new on every restart, and
/// an fsync lock dies with its process.
pub async fn process_id(m: &Mongo) -> Result<Option<String>> {
    let r = m
        .client
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await
        .map_err(|e| m.err("reading its identity (hello)", e))?;
    Ok(r.get_document("topologyVersion")
        .ok()
        .and_then(|t| t.get_object_id("processId").ok())
        .map(|p| p.to_hex()))
}

/// Whether the write freeze taken earlier still holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Fence {
    /// Same server process, still fsync-locked.
    Holds,
    /// It does not; the sentence says why.
    Broken(String),
}

/// Checks that the source is the process that was frozen (`frozen_process`, when recorded) and
/// that it still holds the fsync lock (`currentOp` reports `fsyncLock: true`).
pub async fn check(m: &Mongo, frozen_process: Option<&str>) -> Result<Fence> {
    let now = process_id(m).await?;
    if let (Some(was), Some(now)) = (frozen_process, now.as_deref())
        && was != now
    {
        return Ok(Fence::Broken(format!(
            "the source mongod restarted since the freeze (process {now}, frozen was {was}): its write lock died with the old process and the app may have written since"
        )));
    }
    // A filter that matches no operation: the answer still says whether the lock is held.
    let r = m
        .client
        .database("admin")
        .run_command(doc! {"currentOp": 1, "opid": -1})
        .await
        .map_err(|e| {
            m.err(
                "checking that the write lock still holds (currentOp; the user needs the inprog privilege, e.g. the root or clusterMonitor role)",
                e,
            )
        })?;
    if r.get_bool("fsyncLock").unwrap_or(false) {
        Ok(Fence::Holds)
    } else {
        Ok(Fence::Broken(
            "the source is no longer write-locked (someone ran fsyncUnlock, or the server lost the lock): the app may have written since the freeze".into(),
        ))
    }
}
