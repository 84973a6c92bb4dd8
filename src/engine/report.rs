//! The migration's report, made from the journaled state's typed results: the text report,
//! `--json` and `status` all read this one value.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::deploy::DeployReport;
use crate::engine::options::{FreezeMode, Strategy};
use crate::engine::state::{
    CatchUpResult, CopyResult, MigrateState, StepRecord, SyncResult, VerifyResult,
};
use crate::engine::step::{StepId, StepStatus};

/// The freeze as reported.
#[derive(Clone, Debug, Serialize)]
pub struct FreezeReport {
    /// The mode used.
    pub mode: FreezeMode,
    /// True when the server confirmed the lock.
    pub confirmed: bool,
    /// How long writes were frozen (so far).
    pub seconds: f64,
    /// What the server said.
    pub detail: String,
    /// True when the fence found the lock still held right before the deploy.
    pub fence_held: bool,
    /// How many times the run froze again after losing the lock.
    pub refreezes: u32,
}

/// The final report (`migration` in `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct MigrationReport {
    /// True once every step finished.
    pub ok: bool,
    /// Cluster.
    pub cluster: String,
    /// Service.
    pub service: String,
    /// The revision with the mongo container.
    pub old_task_definition: String,
    /// The revision efs2atlas registered.
    pub new_task_definition: Option<String>,
    /// The credentials secret.
    pub secret_arn: Option<String>,
    /// The strategy.
    pub strategy: Strategy,
    /// The bulk copy.
    pub copy: Option<CopyResult>,
    /// The checks and rounds before the freeze.
    pub catch_up: Option<CatchUpResult>,
    /// The sync.
    pub sync: Option<SyncResult>,
    /// The verification.
    pub verify: Option<VerifyResult>,
    /// The cutover.
    pub deploy: Option<DeployReport>,
    /// What the clean-up deleted.
    pub deleted: Vec<String>,
    /// The freeze.
    pub freeze: Option<FreezeReport>,
    /// Each step's record, in the order they run.
    pub steps: BTreeMap<StepId, StepRecord>,
    /// Steps the operator kept for later (`step: what and how to finish it`).
    pub pending: Vec<String>,
    /// The journal file.
    pub journal: String,
}

impl MigrationReport {
    /// The report of a migration's state; `journal` names its file.
    pub fn new(st: &MigrateState, journal: &str) -> MigrationReport {
        let r = &st.results;
        MigrationReport {
            ok: st.finished,
            cluster: st.cluster.clone(),
            service: st.service.clone(),
            old_task_definition: st.old_task_definition.clone(),
            new_task_definition: st.new_task_definition.clone(),
            secret_arn: st.secret_arn.clone(),
            strategy: st.settings.strategy,
            copy: r.copy.clone(),
            catch_up: r.catch_up.clone(),
            sync: r.sync.clone(),
            verify: r.verify.clone(),
            deploy: r.deploy.clone(),
            deleted: r
                .cleanup
                .as_ref()
                .map(|c| c.deleted.clone())
                .unwrap_or_default(),
            freeze: st.freeze.as_ref().map(|f| FreezeReport {
                mode: f.mode,
                confirmed: f.confirmed,
                seconds: f.seconds(),
                detail: f.detail.clone(),
                fence_held: f.fence_held,
                refreezes: st.refreezes,
            }),
            steps: st.steps.clone(),
            pending: st
                .steps
                .iter()
                .filter(|(_, r)| r.status == StepStatus::Pending)
                .map(|(id, r)| format!("{id}: {}", r.note))
                .collect(),
            journal: journal.to_string(),
        }
    }
}
