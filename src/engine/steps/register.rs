//! Register: the new task-definition revision, without the mongo container and its volume,
//! the app's env pointed at Atlas.

use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::step::StepId;
use crate::error::Result;
use crate::world::World;

/// The new revision.
pub struct Register;

impl Step for Register {
    const ID: StepId = StepId::Register;

    fn describe(&self, plan: &Plan, world: &World) -> PlannedStep {
        let td = &world.task_definition;
        PlannedStep::new(
            Self::ID,
            format!(
                "register task definition {}:{}: without the {} container and its volume, app env pointed at Atlas",
                td.family,
                td.revision + 1,
                plan.mongo_container.name
            ),
        )
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        // Registered by an earlier run that died before recording the step: do not add a
        // second revision.
        Ok(match ctx.state()?.new_task_definition {
            Some(arn) => Check::Done(format!("registered {arn}")),
            None => Check::Run,
        })
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let secret = ctx.state()?.secret_arn;
        let spec = ctx
            .plan
            .new_task_definition(&ctx.world, secret.as_deref())?;
        let arn = crate::deploy::register(&ctx.aws, &spec).await?;
        ctx.update(|s| s.new_task_definition = Some(arn.clone()))?;
        Ok(Outcome::Done(format!("registered {arn}")))
    }
}
