//! The steps of a migration, one file each, and the one place that lists them: the plan
//! asks [`planned`] for the list it shows, and the runner runs exactly that list.

pub mod atlas;
pub mod catch_up;
pub mod cleanup;
pub mod copy;
pub mod deploy;
pub mod freeze;
pub mod preflight;
pub mod register;
pub mod secret;
pub mod sync;
pub mod verify;

use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::options::Strategy;
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::step::StepId;
use crate::error::Result;
use crate::world::World;

/// The steps a strategy runs, in order. The secret and the new revision change nothing the
/// running app uses, so they come before the freeze: the app is read-only only for what must
/// happen then (sync, verify, the cutover), never while IAM and ECS calls are made.
pub fn order(strategy: Strategy) -> &'static [StepId] {
    use StepId::*;
    match strategy {
        Strategy::TwoPass => &[
            Preflight, Copy, CatchUp, Secret, Register, Freeze, Sync, Verify, Deploy, Cleanup,
        ],
        // `sync` runs there only when a resume must catch up after an unlock.
        Strategy::FreezeFirst => &[
            Preflight, Secret, Register, Freeze, Copy, Sync, Verify, Deploy, Cleanup,
        ],
    }
}

/// Calls `$method` on the step type of `$id` (static dispatch: each step is its own type).
macro_rules! on_step {
    ($id:expr, |$s:ident| $body:expr) => {
        match $id {
            StepId::Preflight => {
                let $s = preflight::Preflight;
                $body
            }
            StepId::AtlasAccess => {
                let $s = atlas::AtlasAccess;
                $body
            }
            StepId::AtlasRelease => {
                let $s = atlas::AtlasRelease;
                $body
            }
            StepId::Copy => {
                let $s = copy::Copy;
                $body
            }
            StepId::CatchUp => {
                let $s = catch_up::CatchUp;
                $body
            }
            StepId::Freeze => {
                let $s = freeze::Freeze;
                $body
            }
            StepId::Sync => {
                let $s = sync::Sync;
                $body
            }
            StepId::Verify => {
                let $s = verify::Verify;
                $body
            }
            StepId::Secret => {
                let $s = secret::Secret;
                $body
            }
            StepId::Register => {
                let $s = register::Register;
                $body
            }
            StepId::Deploy => {
                let $s = deploy::Deploy;
                $body
            }
            StepId::Cleanup => {
                let $s = cleanup::Cleanup;
                $body
            }
        }
    };
}

/// The steps a strategy runs with the data steps in a runner task: the secret and the new
/// revision first (they change nothing the running app uses), so the runner runs every data
/// step in one task, from the preflight to the held freeze, with its ledger at hand.
pub fn order_remote(strategy: Strategy) -> Vec<StepId> {
    let first = [StepId::Secret, StepId::Register];
    let rest = order(strategy)
        .iter()
        .copied()
        .filter(|s| !first.contains(s));
    first.into_iter().chain(rest).collect()
}

/// The plan's step list: every step of its strategy, described.
pub fn planned(plan: &Plan, world: &World) -> Vec<PlannedStep> {
    let mut ids = if plan.runner.is_some() {
        order_remote(plan.strategy)
    } else {
        order(plan.strategy).to_vec()
    };
    // The Atlas side is made before anything reaches Atlas, and what was only for the
    // migration is removed after everything else.
    if plan.atlas.is_some() {
        ids.insert(0, StepId::AtlasAccess);
        ids.push(StepId::AtlasRelease);
    }
    ids.iter()
        .map(|id| on_step!(*id, |s| s.describe(plan, world)))
        .collect()
}

/// Runs step `id`'s check, then (when there is work) its apply; with `--runner ecs` a data
/// step runs in the runner task, with the same check and apply there.
pub async fn run(id: StepId, ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if ctx.remote.is_some() && crate::engine::remote::is_remote(id) {
        return crate::engine::remote::run_step(id, ctx).await;
    }
    on_step!(id, |s| match s.check(ctx).await? {
        Check::Run => s.apply(ctx).await,
        Check::Done(note) => Ok(Outcome::Done(note)),
        Check::Skip(note) => Ok(Outcome::Skipped(note)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_runs_every_step_once() {
        for s in [Strategy::TwoPass, Strategy::FreezeFirst] {
            let mut ids = order(s).to_vec();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), order(s).len(), "{s:?}");
        }
    }
}
