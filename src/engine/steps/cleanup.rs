//! Cleanup: the old storage, only after a verified, steady cutover. Its resource-level
//! actions (deregister old revisions, access points, mount targets, the file system, NFS
//! rules, the security group) are details of this one step.

use crate::cleanup::{self, CleanupOptions};
use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::operator::Typed;
use crate::engine::plan::model::{Action, Plan, PlannedStep};
use crate::engine::step::{StepId, StepStatus};
use crate::error::Result;
use crate::world::World;

/// The clean-up of EFS and its security group.
pub struct Cleanup;

fn action(id: &str, description: String, destructive: bool) -> Action {
    Action {
        id: id.into(),
        description,
        destructive,
    }
}

/// What the clean-up does, resource by resource.
fn actions(plan: &Plan, world: &World) -> Vec<Action> {
    let td = &world.task_definition;
    let mut out = Vec::new();
    if plan.file_systems.iter().any(|f| f.delete) {
        out.push(action(
            "deregister-old-revisions",
            format!(
                "deregister {}:{} and any other ACTIVE revision of family {} that mounts the deleted EFS, so nothing can start a task without its storage",
                td.family, td.revision, td.family
            ),
            true,
        ));
    }
    for f in &plan.file_systems {
        if !f.delete {
            let why = f.keep_reasons.join("; ");
            out.push(action(
                "keep-efs",
                format!("keep EFS {}: {why}", f.id),
                false,
            ));
            continue;
        }
        if !f.access_points.is_empty() {
            let aps = f.access_points.join(", ");
            let what = format!("delete access points {aps} of {}", f.id);
            out.push(action("delete-access-points", what, true));
        }
        if !f.mount_targets.is_empty() {
            let mts = f.mount_targets.join(", ");
            let what = format!("delete mount targets of {}: {mts}", f.id);
            out.push(action("delete-mount-targets", what, true));
        }
        let what = format!("delete EFS file system {} (irreversible)", f.id);
        out.push(action("delete-file-system", what, true));
    }
    for g in &plan.security_groups {
        if !g.delete {
            let why = g.keep_reasons.join("; ");
            let what = format!("keep security group {} ({}): {why}", g.id, g.name);
            out.push(action("keep-security-group", what, false));
            continue;
        }
        if !g.rules_to_revoke.is_empty() {
            let rules = g.rules_to_revoke.join("; ");
            let what = format!("revoke NFS rules naming {}: {rules}", g.id);
            out.push(action("revoke-rules", what, true));
        }
        let what = format!("delete security group {} ({})", g.id, g.name);
        out.push(action("delete-security-group", what, true));
    }
    out
}

/// What an EFS backup-policy status means for deleting it.
fn backup_meaning(status: &str) -> String {
    match status {
        "DISABLED" => "AWS Backup is DISABLED for it: no automatic backup exists, so once deleted its files are gone (its data is in Atlas, verified)".into(),
        "ENABLED" => "AWS Backup is ENABLED for it: the backup plan's recovery points outlive the file system until they expire (check they exist in the AWS Backup console if you want one)".into(),
        "ENABLING" | "DISABLING" => format!("AWS Backup is {status} for it (a change is under way)"),
        other => format!("AWS Backup {other}"),
    }
}

/// Times a mistyped id is asked again before the clean-up is kept for later.
const TRIES: usize = 3;

/// Asks for the file system id: typed right, delete; nothing typed, keep it for now; mistyped,
/// ask again ([`TRIES`] in all).
fn confirm_delete(ctx: &Ctx<'_>, fs: &str) -> Result<bool> {
    for left in (0..TRIES).rev() {
        let question = format!(
            "Type the file system id {fs} to delete it (irreversible), or press Enter to keep it for now:"
        );
        match ctx.operator.type_to_confirm(&question, fs)? {
            Typed::Confirmed => return Ok(true),
            Typed::Nothing => return Ok(false),
            Typed::Other if left > 0 => ctx.operator.notice(&format!(
                "that is not {fs}; {left} more {}",
                if left == 1 { "try" } else { "tries" }
            )),
            Typed::Other => {}
        }
    }
    Ok(false)
}

impl Step for Cleanup {
    const ID: StepId = StepId::Cleanup;

    fn describe(&self, plan: &Plan, world: &World) -> PlannedStep {
        let actions = actions(plan, world);
        let destructive = actions.iter().any(|a| a.destructive);
        PlannedStep {
            id: Self::ID,
            description: if destructive {
                "after a verified, steady cutover: delete the old storage (below), each deletion re-checked live".into()
            } else {
                "nothing to delete: the EFS and its security groups are kept (below)".into()
            },
            destructive,
            actions,
        }
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        let st = ctx.state()?;
        let target = st.cleanup.unwrap_or_default();
        if st.settings.keep_efs
            || (target.file_systems.is_empty() && target.security_groups.is_empty())
        {
            return Ok(Check::Skip("EFS and security groups kept".into()));
        }
        Ok(Check::Run)
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let st = ctx.state()?;
        let target = st.cleanup.clone().unwrap_or_default();
        let doomed: Vec<String> = actions(&ctx.plan, &ctx.world)
            .into_iter()
            .filter(|a| a.destructive)
            .map(|a| format!("  - {}", a.description))
            .collect();
        ctx.operator.danger(&format!(
            "About to delete, irreversibly (the service already runs without them, on data verified in Atlas):\n{}",
            doomed.join("\n")
        ));
        for fs in &target.file_systems {
            let status = cleanup::backup_status(&ctx.aws, fs).await?;
            ctx.operator
                .notice(&format!("EFS {fs}: {}", backup_meaning(&status)));
        }
        for fs in &target.file_systems {
            if !confirm_delete(ctx, fs)? {
                return Ok(Outcome::Pending(format!(
                    "kept EFS {fs} for now; nothing was deleted. When you are ready, `efs2atlas resume --journal {}` asks again",
                    ctx.journal.path().display()
                )));
            }
        }
        let verified = st.step_is(StepId::Verify, StepStatus::Done);
        let opts = CleanupOptions::default();
        let r = cleanup::run(&ctx.aws, &target, verified, &opts, &ctx.cancel).await?;
        let note = format!("deleted {}", r.deleted.join(", "));
        ctx.update(|s| s.results.cleanup = Some(r))?;
        Ok(Outcome::Done(note))
    }
}
