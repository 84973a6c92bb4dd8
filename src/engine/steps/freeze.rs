//! Freeze: stop writes on the source (fsync lock) and record which process holds the lock,
//! so the cutover fence can prove it still does.

use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::options::{FreezeMode, Strategy};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::{FreezeRecord, unix_now};
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::freeze::{self, Fence};
use crate::world::World;

/// The write freeze.
pub struct Freeze;

impl Step for Freeze {
    const ID: StepId = StepId::Freeze;

    fn describe(&self, plan: &Plan, _world: &World) -> PlannedStep {
        PlannedStep::new(
            Self::ID,
            match plan.strategy {
                Strategy::TwoPass => {
                    "freeze writes on the source (fsync lock): the app is read-only from here until the cutover"
                }
                Strategy::FreezeFirst => {
                    "freeze writes on the source (fsync lock) so nothing lands in the old database during the copy"
                }
            },
        )
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        if ctx.settings.freeze == FreezeMode::None {
            return Ok(Check::Run);
        }
        // A run that died after locking: the lock is still held on the server (fsync locks
        // survive their connection; locking again would need two unlocks), unless the source
        // restarted or was unlocked meanwhile.
        let Some(f) = ctx.state()?.freeze.filter(|f| f.holds_lock()) else {
            return Ok(Check::Run);
        };
        match ctx.fence().await? {
            Fence::Holds => Ok(Check::Done(format!(
                "already frozen by the interrupted run ({})",
                f.detail
            ))),
            Fence::Broken(why) => {
                ctx.operator.notice(&format!("{why}: freezing it again"));
                Ok(Check::Run)
            }
        }
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        if ctx.settings.freeze == FreezeMode::None {
            ctx.operator.notice(
                "WARNING: --freeze none: the source stays writable; writes the app makes during the copy will NOT reach Atlas",
            );
            ctx.update(|s| {
                s.freeze = Some(FreezeRecord {
                    mode: FreezeMode::None,
                    detail: "no freeze (--freeze none)".into(),
                    started_unix: unix_now(),
                    ..Default::default()
                })
            })?;
            return Ok(Outcome::Skipped("no write freeze (--freeze none)".into()));
        }
        let (src, _) = ctx.mongo().await?;
        let process_id = freeze::process_id(&src).await?;
        let out = freeze::lock(&src).await?;
        let rec = FreezeRecord {
            mode: FreezeMode::FsyncLock,
            confirmed: out.confirmed,
            detail: out.detail.clone(),
            started_unix: unix_now(),
            process_id,
            ..Default::default()
        };
        ctx.update(|s| s.freeze = Some(rec))?;
        if out.confirmed {
            return Ok(Outcome::Done(out.detail));
        }
        ctx.operator.notice(&format!(
            "WARNING: the write freeze is NOT confirmed: {}",
            out.detail
        ));
        let answer = ctx.operator.confirm(
            "Continue without a confirmed write freeze (writes made from now on may be lost)?",
        );
        if !answer.as_ref().is_ok_and(|yes| *yes) {
            ctx.unfreeze("the freeze was not confirmed").await;
            answer?;
            return Err(Error::refused(
                "stopped: the write freeze could not be confirmed",
            ));
        }
        Ok(Outcome::Done(
            "lock requested, but NOT confirmed by the server (see the warning)".into(),
        ))
    }
}
