//! Secret: the Atlas credentials in one Secrets Manager secret the execution role may read.

use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::world::World;

/// The credentials secret.
pub struct Secret;

impl Step for Secret {
    const ID: StepId = StepId::Secret;

    fn describe(&self, plan: &Plan, _world: &World) -> PlannedStep {
        let what = match &plan.secret_name {
            Some(name) => format!(
                "store the Atlas credentials in Secrets Manager secret {name} and let execution role read it"
            ),
            None => {
                "nothing to store: the credentials go in plain env vars (--credentials env)".into()
            }
        };
        PlannedStep::new(Self::ID, what)
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        if ctx.plan.secret_name.is_none() || ctx.plan.secret_value().is_none() {
            return Ok(Check::Skip("credentials go in plain env vars".into()));
        }
        Ok(Check::Run)
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let (Some(name), Some(value)) = (ctx.plan.secret_name.clone(), ctx.plan.secret_value())
        else {
            return Ok(Outcome::Skipped("credentials go in plain env vars".into()));
        };
        let arn =
            crate::deploy::ensure_secret(&ctx.aws, &name, &value, &ctx.world.service.arn).await?;
        let role = ctx.world.task_definition.execution_role_arn.clone().ok_or_else(|| {
            Error::refused("the task definition has no execution role to read the secret; use --credentials env")
        })?;
        let policy = crate::deploy::grant_secret_read(&ctx.aws, &role, &arn, &name).await?;
        let note = format!("secret {arn}; execution role may read it (inline policy {policy})");
        ctx.update(|s| {
            s.secret_arn = Some(arn);
            s.policy_name = Some(policy);
        })?;
        Ok(Outcome::Done(note))
    }
}
