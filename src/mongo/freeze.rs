//! Freezing writes on the source with `fsync` + `lock`, and undoing it. A server that answers
//! without `lockCount` did not really lock (the local nx-27017 pretends): that is reported as
//! "not confirmed", never as frozen.

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
    let r = m.client.database("admin").run_command(doc! {"fsync": 1, "lock": true}).await.map_err(|e| Error::Mongo {
        context: format!("source ({}): freezing writes with fsync lock", m.uri.redacted()),
        message: format!(
            "{}. The user needs the fsync privilege (e.g. the root or hostManager role); or pass --freeze none to continue without a freeze (writes during the copy can then be lost)",
            crate::mongo::scrub_err(&m.uri, &e)
        ),
    })?;
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
