//! What a migration step is called and where it stands: plain enums the plan, the runner,
//! the journal, `status` and the report share.

use serde::{Deserialize, Serialize};

/// One step of a migration, declared in the order two-pass runs them (reports list step times
/// in this order). The plan decides which run, in which order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    /// Reach both databases, prove the privileges, require empty targets.
    Preflight,
    /// Copy every document (bulk copy, with writes live under two-pass).
    Copy,
    /// Check Atlas against the ledger and sync in rounds, with writes live.
    CatchUp,
    /// Store the Atlas credentials in Secrets Manager.
    Secret,
    /// Register the task definition without the mongo container.
    Register,
    /// Stop writes on the source.
    Freeze,
    /// Patch what changed during the bulk copy.
    Sync,
    /// Compare both sides, byte for byte.
    Verify,
    /// Cut over: update the service and wait for steady state.
    Deploy,
    /// Delete the EFS file system, its mount targets and security group.
    Cleanup,
    /// Atlas (Admin API): the app's user, a temporary user for efs2atlas, the access list.
    AtlasAccess,
    /// Atlas (Admin API): remove the temporary user and entries.
    AtlasRelease,
}

impl StepId {
    /// The name the journal, `status` and `--json` use.
    pub fn name(self) -> &'static str {
        match self {
            StepId::Preflight => "preflight",
            StepId::Copy => "copy",
            StepId::CatchUp => "catch-up",
            StepId::Freeze => "freeze",
            StepId::Sync => "sync",
            StepId::Verify => "verify",
            StepId::Secret => "secret",
            StepId::Register => "register",
            StepId::Deploy => "deploy",
            StepId::Cleanup => "cleanup",
            StepId::AtlasAccess => "atlas-access",
            StepId::AtlasRelease => "atlas-release",
        }
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Where a step stands in the journal (a step with no record is pending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Started and not finished (or the process died in it).
    #[default]
    Running,
    /// Finished.
    Done,
    /// Nothing to do (the plan or the options said so).
    Skipped,
    /// Stopped with an error; `resume` runs it again.
    Failed,
    /// Kept for later by the operator (a clean-up not confirmed); `resume` offers it again.
    Pending,
    /// Stopped by Ctrl-C or SIGTERM; `resume` runs it again.
    Interrupted,
}

impl StepStatus {
    /// True when the runner moves past the step.
    pub fn is_finished(self) -> bool {
        matches!(self, StepStatus::Done | StepStatus::Skipped)
    }

    /// The name the journal and `status` use.
    pub fn name(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Pending => "pending",
            StepStatus::Interrupted => "interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_serialised_form() {
        for id in [
            StepId::Preflight,
            StepId::Copy,
            StepId::CatchUp,
            StepId::Freeze,
            StepId::Sync,
            StepId::Verify,
            StepId::Secret,
            StepId::Register,
            StepId::Deploy,
            StepId::Cleanup,
        ] {
            assert_eq!(serde_json::to_value(id).unwrap(), id.name());
        }
        for s in [
            StepStatus::Running,
            StepStatus::Done,
            StepStatus::Skipped,
            StepStatus::Failed,
            StepStatus::Pending,
            StepStatus::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }
}
