//! Deploy: the cutover. Asks, proves the freeze still holds (the fence), updates the service,
//! waits for steady state and rolls back on failure.

use crate::engine::context::{Ctx, Outcome, Step};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::MigrateState;
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::freeze::Fence;
use crate::units::duration;
use crate::world::World;

/// The cutover.
pub struct Deploy;

impl Step for Deploy {
    const ID: StepId = StepId::Deploy;

    fn describe(&self, _plan: &Plan, world: &World) -> PlannedStep {
        let td = &world.task_definition;
        PlannedStep::new(
            Self::ID,
            format!(
                "update service {} to the new revision, wait for steady state, roll back to {}:{} on failure",
                world.service.name, td.family, td.revision
            ),
        )
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let st = ctx.state()?;
        let new = st
            .new_task_definition
            .clone()
            .ok_or_else(|| Error::other("no new task definition recorded"))?;
        // A resume after the service was already told to run the new revision: the cutover
        // is under way (the old task may be gone with its source), so there is nothing to fence.
        if ctx.world.service.task_definition_arn != new
            && let Some(again) = cut_over(ctx, &st, &new).await?
        {
            return Ok(again);
        }
        let spinner = ctx.operator.spinner("deploy");
        let r = crate::deploy::deploy(
            &ctx.aws,
            &st.cluster,
            &st.service,
            &new,
            &st.old_task_definition,
            ctx.settings.deploy_timeout(),
            &*spinner,
            &ctx.cancel,
        )
        .await;
        spinner.done();
        let r = r?;
        ctx.update(|s| s.results.deploy = Some(r.clone()))?;
        if !r.ok {
            crate::engine::remote::unfreeze_any(ctx, "the deployment was rolled back").await;
            super::atlas::undo(ctx, "the deployment was rolled back").await;
            return Err(Error::other(format!(
                "{}; the source was unlocked. Fix the cause and run `efs2atlas resume` to try the cutover again",
                r.summary()
            )));
        }
        ctx.update(MigrateState::end_freeze_clock)?;
        Ok(Outcome::Done(r.summary()))
    }
}

/// The question, then the fence: never deploy on a copy the source may have moved past.
/// `Some(Again)` when the freeze was lost and the run goes back to freeze again.
async fn cut_over(ctx: &mut Ctx<'_>, st: &MigrateState, new: &str) -> Result<Option<Outcome>> {
    let read_only = st
        .freeze
        .as_ref()
        .filter(|f| f.holds_lock())
        .map(|f| {
            format!(
                " The app has been read-only for {} and stays so until you answer.",
                duration(f.seconds())
            )
        })
        .unwrap_or_default();
    let answer = ctx.operator.confirm(&format!(
        "Cut over: deploy {new} to service {} now?{read_only}",
        st.service
    ));
    // Stopped at the question: the app must not stay read-only behind a question nobody answers.
    if let Err(e) = &answer
        && e.is_interrupted()
    {
        crate::engine::remote::unfreeze_any(ctx, "interrupted at the cutover question").await;
        return Err(Error::interrupted(
            "interrupted at the cutover question; nothing was deployed, the service still runs the old revision",
        ));
    }
    if !answer? {
        crate::engine::remote::unfreeze_any(ctx, "the cutover was declined").await;
        super::atlas::undo(ctx, "the cutover was declined").await;
        return Err(Error::refused(
            "cutover not confirmed; the service still runs the old revision",
        ));
    }
    if let Fence::Broken(why) = crate::engine::remote::fence_any(ctx).await? {
        return ctx.refreeze(&why).map(Some);
    }
    ctx.update(|s| {
        if let Some(f) = &mut s.freeze {
            f.fence_held = f.mode == crate::engine::options::FreezeMode::FsyncLock && f.confirmed;
        }
    })?;
    Ok(None)
}
