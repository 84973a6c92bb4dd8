//! A migration's state as the journal keeps it: which steps ran, the freeze, and each step's
//! typed result. No secrets: URIs are stored redacted.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cleanup::{CleanupReport, CleanupTarget};
use crate::deploy::DeployReport;
use crate::engine::options::{FreezeMode, Settings};
use crate::engine::step::{StepId, StepStatus};

/// Now as Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One step's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// Where it stands.
    pub status: StepStatus,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Seconds it took (last attempt).
    pub seconds: f64,
    /// What it did, in a sentence.
    pub note: String,
}

/// The write freeze.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FreezeRecord {
    /// The mode used.
    pub mode: FreezeMode,
    /// True when the server confirmed the lock.
    pub confirmed: bool,
    /// What the server said.
    pub detail: String,
    /// Unix time the freeze began.
    pub started_unix: f64,
    /// Unix time it ended (released, or the cutover finished).
    pub ended_unix: Option<f64>,
    /// True once the lock was released.
    pub released: bool,
    /// The source's `hello.topologyVersion.processId` when it was locked: the cutover fence
    /// checks that the same process still holds the lock.
    #[serde(default)]
    pub process_id: Option<String>,
    /// True once the fence found this lock still held right before the deploy.
    #[serde(default)]
    pub fence_held: bool,
}

impl FreezeRecord {
    /// How long writes were frozen (so far).
    pub fn seconds(&self) -> f64 {
        self.ended_unix.unwrap_or_else(unix_now) - self.started_unix
    }

    /// True while this freeze holds the source's write lock.
    pub fn holds_lock(&self) -> bool {
        self.mode == FreezeMode::FsyncLock && !self.released
    }
}

/// What the copy step did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CopyResult {
    /// Documents copied.
    pub docs: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Collections copied.
    pub collections: usize,
}

/// What the sync step did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncResult {
    /// Documents inserted.
    pub inserted: u64,
    /// Documents replaced.
    pub replaced: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// Writes that first hit a unique index and went through on a later round.
    pub conflicts_resolved: u64,
    /// Documents read on both sides.
    pub documents_compared: u64,
    /// Collections dropped on the target because the source dropped them.
    pub dropped_collections: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
}

/// One catch-up round.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RoundResult {
    /// Documents inserted, replaced or deleted.
    pub patched: u64,
    /// Source documents and ledger records read.
    pub compared: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// What the catch-up step did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CatchUpResult {
    /// Documents read back from Atlas and found as the ledger says.
    pub audited: u64,
    /// The rounds, in order.
    pub rounds: Vec<RoundResult>,
    /// Seconds it took.
    pub seconds: f64,
}

/// What the verify step found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VerifyResult {
    /// True when the target equals the source.
    pub ok: bool,
    /// Documents read on both sides.
    pub documents_compared: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Each step's typed result (the report and `--json` are made from these).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// The bulk copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyResult>,
    /// The checks and rounds before the freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpResult>,
    /// The sync under the freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncResult>,
    /// The verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyResult>,
    /// The cutover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployReport>,
    /// The clean-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupReport>,
}

/// The migration's state in the journal.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MigrateState {
    /// Cluster.
    pub cluster: String,
    /// Service.
    pub service: String,
    /// Service ARN.
    pub service_arn: String,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Atlas URI, redacted.
    pub atlas: String,
    /// Source URI, redacted.
    pub source: String,
    /// Copy target URI, redacted.
    pub target: String,
    /// The flags.
    pub settings: Settings,
    /// The steps the approved plan runs, in order.
    #[serde(default)]
    pub plan: Vec<StepId>,
    /// The revision with the mongo container.
    pub old_task_definition: String,
    /// The revision efs2atlas registered.
    pub new_task_definition: Option<String>,
    /// The Secrets Manager secret.
    pub secret_arn: Option<String>,
    /// The execution role's inline policy.
    pub policy_name: Option<String>,
    /// What the Atlas step made through the Admin API (names only, never a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atlas_made: Option<AtlasMade>,
    /// What cleanup deletes.
    pub cleanup: Option<CleanupTarget>,
    /// Per step.
    pub steps: BTreeMap<StepId, StepRecord>,
    /// The freeze.
    pub freeze: Option<FreezeRecord>,
    /// Step results.
    #[serde(default)]
    pub results: Results,
    /// True once every step is done.
    pub finished: bool,
    /// The source was unlocked before the cutover and written to since: the freeze, sync
    /// and verify run again (also under freeze-first) before anything is deployed.
    #[serde(default)]
    pub resync: bool,
    /// How many times the cutover fence found the freeze gone (the source restarted or was
    /// unlocked) and froze, synced and verified again before deploying.
    #[serde(default)]
    pub refreezes: u32,
    /// `--runner ecs`: the runner task and the temporary resources around it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<crate::engine::remote::resources::RunnerState>,
}

/// The steps that run again when the copy may be behind the source.
pub const RESYNC_STEPS: [StepId; 3] = [StepId::Freeze, StepId::Sync, StepId::Verify];

impl MigrateState {
    /// The first step of `order` that is not finished.
    pub fn next_step(&self, order: &[StepId]) -> Option<StepId> {
        order
            .iter()
            .copied()
            .find(|s| self.steps.get(s).is_none_or(|r| !r.status.is_finished()))
    }

    /// True when `step` finished with `status`.
    pub fn step_is(&self, step: StepId, status: StepStatus) -> bool {
        self.steps.get(&step).is_some_and(|r| r.status == status)
    }

    /// Forgets the freeze, sync and verify so they run again before any deploy.
    pub fn forget_freeze(&mut self) {
        for step in RESYNC_STEPS {
            self.steps.remove(&step);
        }
        self.freeze = None;
        self.resync = true;
    }

    /// Ends the write freeze's clock (the app writes to Atlas from here).
    pub fn end_freeze_clock(&mut self) {
        if let Some(f) = &mut self.freeze
            && f.ended_unix.is_none()
        {
            f.ended_unix = Some(unix_now());
        }
    }
}

/// What efs2atlas made on the Atlas side, so the end of the run (or a failed cutover) undoes
/// exactly that and nothing else.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AtlasMade {
    /// The app's database user.
    pub app_user: String,
    /// True when this migration created it (a failed cutover deletes it again).
    pub app_user_created: bool,
    /// Its roles, `role@db`, as first given (a resume may not see the source to name them).
    #[serde(default)]
    pub app_roles: Vec<String>,
    /// The temporary user efs2atlas itself writes as (deleted at the end).
    pub migration_user: String,
    /// Access-list entries added for the app (kept after a cutover).
    pub entries: Vec<String>,
    /// Temporary access-list entries for efs2atlas itself (removed at the end).
    pub temporary: Vec<String>,
}
