//! The one runner: takes the plan's step list, runs the first unfinished step each round,
//! and journals every start, end and failure, so `resume` continues where a run stopped.

use std::time::Instant;

use crate::engine::context::{Ctx, Outcome};
use crate::engine::journal::now;
use crate::engine::plan::model::Plan;
use crate::engine::report::MigrationReport;
use crate::engine::state::{MigrateState, StepRecord};
use crate::engine::step::{StepId, StepStatus};
use crate::engine::steps;
use crate::error::{Error, Result};

/// Runs every unfinished step of the plan, then returns the plan it ran and the report.
pub async fn execute(mut ctx: Ctx<'_>) -> Result<(Plan, MigrationReport)> {
    let journal_path = ctx.journal.path().display().to_string();
    let pending = run_steps(&mut ctx).await;
    if ctx.remote.is_some() {
        // However the run ends, nothing temporary stays (a resume makes it again).
        crate::engine::remote::teardown(&mut ctx).await;
    }
    let pending = pending?;
    ctx.update(|s| {
        s.finished = !pending;
        s.end_freeze_clock();
    })?;
    // The ledgers hold `_id`s of the app's data; nothing needs them once the app runs on Atlas.
    if ctx.state()?.step_is(StepId::Deploy, StepStatus::Done) {
        let _ = std::fs::remove_dir_all(ctx.journal.ledger_path());
    }
    let report = MigrationReport::new(&ctx.state()?, &journal_path);
    Ok((ctx.plan, report))
}

/// Runs the plan's unfinished steps in order; true when one was kept pending (the run ends
/// there, `resume` offers it again).
pub async fn run_steps(ctx: &mut Ctx<'_>) -> Result<bool> {
    ctx.cancel.on_signals();
    let journal_path = ctx.journal.path().display().to_string();
    crate::cancel::set_last_words(format!(
        "interrupted; the run could not stop cleanly. Check the source's write lock (db.currentOp() shows fsyncLock), then continue with `efs2atlas resume --journal {journal_path}`"
    ));
    let order: Vec<StepId> = ctx.plan.steps.iter().map(|s| s.id).collect();
    // The Atlas step's passwords live only in the process that set them: a run with work
    // left makes them again first.
    if order.contains(&StepId::AtlasAccess) && ctx.state()?.next_step(&order).is_some() {
        ctx.update(|s| drop(s.steps.remove(&StepId::AtlasAccess)))?;
    }
    // Each round runs the first unfinished step: a step may send the run back (the cutover
    // fence forgets freeze, sync and verify when the freeze no longer holds).
    while let Some(step) = ctx.state()?.next_step(&order) {
        if ctx.cancel.is_cancelled() {
            return Err(interrupted(step, &journal_path, ctx));
        }
        if run_one(ctx, step, &journal_path).await? == StepStatus::Pending {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs one step and journals how it ended (its status, or `Running` when it sent the run
/// back).
async fn run_one(ctx: &mut Ctx<'_>, step: StepId, journal_path: &str) -> Result<StepStatus> {
    let started = Instant::now();
    let started_at = now();
    let record = |status, note: String| StepRecord {
        status,
        started_at: started_at.clone(),
        finished_at: Some(now()),
        seconds: started.elapsed().as_secs_f64(),
        note,
    };
    ctx.update(|s| {
        s.steps.insert(
            step,
            StepRecord {
                started_at: started_at.clone(),
                ..Default::default()
            },
        );
    })?;
    tracing::info!("step {step}");
    let outcome = run_watched(step, ctx).await;
    let (status, note) = match outcome {
        Ok(Outcome::Again) => {
            ctx.update(|s| drop(s.steps.remove(&step)))?;
            return Ok(StepStatus::Running);
        }
        Ok(Outcome::Done(note)) => (StepStatus::Done, note),
        Ok(Outcome::Skipped(note)) => (StepStatus::Skipped, note),
        Ok(Outcome::Pending(note)) => (StepStatus::Pending, note),
        Err(e) if e.is_interrupted() => {
            let _ = ctx.update(|s| {
                drop(
                    s.steps
                        .insert(step, record(StepStatus::Interrupted, e.message.clone())),
                )
            });
            ctx.journal.flush()?;
            // What the step says of where it stopped (at a question, say) goes first.
            let said = Some(e.message.as_str()).filter(|m| !m.starts_with("interrupted;"));
            return Err(interrupted_with(step, journal_path, ctx, said));
        }
        Err(e) => {
            let _ = ctx.update(|s| {
                drop(
                    s.steps
                        .insert(step, record(StepStatus::Failed, e.to_string())),
                )
            });
            return Err(failed(e, step, journal_path, ctx.source_locked()));
        }
    };
    // A runner task's step said its note already, in its place among the runner's lines.
    let said = ctx.remote.is_some() && crate::engine::remote::is_remote(step);
    if !note.is_empty() && !said {
        ctx.operator.notice(&format!("{step}: {note}"));
    }
    ctx.update(|s| {
        if step == StepId::Deploy {
            // The app writes to Atlas from here: the write freeze is over for it.
            s.end_freeze_clock();
        }
        s.steps.insert(step, record(status, note.clone()));
    })?;
    ctx.operator.step_ended(step, status, &note);
    Ok(status)
}

/// Runs one step under the watchdog, which says on the screen and in the lock file `status`
/// reads what a step that makes no progress waits on. A forced stop (a second Ctrl-C, or the
/// step not stopping at a safe point in time) drops the step where it waits, so nothing it
/// waits on can hold the run; the source is then unlocked if this run froze it.
async fn run_watched(step: StepId, ctx: &mut Ctx<'_>) -> Result<Outcome> {
    let operator = ctx.operator;
    let journal = ctx.journal.path().to_path_buf();
    let name = step.to_string();
    let watched = crate::watch::watched(&name, steps::run(step, ctx), |r| match r {
        crate::watch::Report::Stalled(line) => {
            operator.notice(&line);
            crate::engine::lock::note_waiting(&journal, Some(&line));
        }
        crate::watch::Report::Moving => {
            operator.notice(&format!("{step}: moving again"));
            crate::engine::lock::note_waiting(&journal, None);
        }
    });
    // What the step waited on is read before it is dropped.
    let forced = async {
        crate::cancel::until_forced().await;
        crate::watch::longest_wait()
    };
    let outcome = tokio::select! {
        r = watched => r,
        stuck = forced => Err(Error::interrupted(format!(
            "{}{}",
            crate::cancel::forced_why(),
            stuck
                .map(|(what, _)| format!("; it was waiting on {what}"))
                .unwrap_or_default()
        ))),
    };
    if crate::cancel::forced() {
        unlock_on_forced_stop(ctx).await;
    }
    outcome
}

/// How long a forced stop may spend unlocking the source.
const FORCED_UNLOCK: std::time::Duration = std::time::Duration::from_secs(5);

/// A forced stop does not leave the app read-only behind a run that could not finish: the
/// source is unlocked if this run froze it (resume freezes, syncs and verifies again), within
/// a bound. With `--runner ecs` the runner holds the lock; it was told to stop and unlocks on
/// its own forced stop.
async fn unlock_on_forced_stop(ctx: &mut Ctx<'_>) {
    if ctx.remote.is_some() || !ctx.source_locked() {
        return;
    }
    let unlocked = tokio::time::timeout(
        FORCED_UNLOCK,
        ctx.unfreeze("the run was stopped before it could finish"),
    )
    .await;
    if unlocked.is_err() {
        ctx.operator.error_line(&format!(
            "could not unlock the source within {}s (it does not answer): run db.fsyncUnlock() on it by hand, or `efs2atlas resume`",
            FORCED_UNLOCK.as_secs()
        ));
    }
}

/// A step's error with what to do next.
fn failed(e: Error, step: StepId, journal_path: &str, locked: bool) -> Error {
    if e.kind == crate::error::Kind::Mismatch {
        return e.with_hint(&format!(
            "`efs2atlas resume --journal {journal_path}` freezes the source again, syncs the differences and verifies again"
        ));
    }
    e.with_hint(&format!(
        "step {step} stopped; the journal is saved. Once the cause is fixed, continue with `efs2atlas resume --journal {journal_path}`{}",
        if locked {
            " (the source is still write-locked, so nothing written since the copy can be lost)"
        } else {
            ""
        }
    ))
}

fn interrupted(step: StepId, journal: &str, ctx: &Ctx<'_>) -> Error {
    interrupted_with(step, journal, ctx, None)
}

fn interrupted_with(step: StepId, journal: &str, ctx: &Ctx<'_>, said: Option<&str>) -> Error {
    let said = said.map(|s| format!(" ({s})")).unwrap_or_default();
    Error::interrupted(format!(
        "interrupted during step {step}{said}; progress is saved. Continue with `efs2atlas resume --journal {journal}`{}",
        if ctx.source_locked() {
            " (the source is still write-locked)"
        } else {
            ""
        }
    ))
}

/// A resumed migration whose source was unlocked before the cutover (verify failed, the
/// cutover was declined or rolled back), or whose last verify failed, must not deploy the
/// copy as it is: the old app may have written since. Freeze, sync and verify again. Returns
/// the notice to show when it did.
pub fn catch_up_after_unlock(m: &mut MigrateState) -> Option<&'static str> {
    let unlocked = m
        .freeze
        .as_ref()
        .is_some_and(|f| f.released && f.mode == crate::engine::options::FreezeMode::FsyncLock);
    let mismatch = m.step_is(StepId::Verify, StepStatus::Failed);
    let deployed = m.step_is(StepId::Deploy, StepStatus::Done);
    if !(unlocked || mismatch) || deployed {
        return None;
    }
    m.forget_freeze();
    Some(if unlocked {
        "the source was unlocked before the cutover: freezing it again and syncing what changed since"
    } else {
        "the last verify found differences: syncing them and verifying again"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::FreezeMode;
    use crate::engine::state::FreezeRecord;

    fn step(status: StepStatus) -> StepRecord {
        StepRecord {
            status,
            ..Default::default()
        }
    }

    #[test]
    fn resume_after_an_unlock_or_a_mismatch_syncs_again_but_never_after_the_cutover() {
        use StepId::*;
        let mut m = MigrateState::default();
        for s in [Preflight, Copy, Freeze, Sync, Verify, Secret, Register] {
            m.steps.insert(s, step(StepStatus::Done));
        }
        m.steps.insert(Deploy, step(StepStatus::Failed));
        m.freeze = Some(FreezeRecord {
            mode: FreezeMode::FsyncLock,
            released: true,
            ..Default::default()
        });
        let mut a = m.clone();
        assert!(catch_up_after_unlock(&mut a).is_some());
        assert!(a.resync && a.freeze.is_none());
        assert!(
            [Freeze, Sync, Verify]
                .iter()
                .all(|s| !a.steps.contains_key(s))
        );
        assert!(a.steps.contains_key(&Register), "AWS steps stay done");

        // Still locked: nothing to catch up.
        let mut b = m.clone();
        b.freeze.as_mut().unwrap().released = false;
        let before = b.clone();
        assert!(catch_up_after_unlock(&mut b).is_none());
        assert_eq!(b, before);

        // A failed verify without any lock (--freeze none) syncs again too.
        let mut c = m.clone();
        c.freeze = None;
        c.steps.insert(Verify, step(StepStatus::Failed));
        assert!(catch_up_after_unlock(&mut c).is_some());

        // After the cutover the app writes to Atlas: never re-sync from the old database.
        let mut d = m.clone();
        d.steps.insert(Deploy, step(StepStatus::Done));
        assert!(catch_up_after_unlock(&mut d).is_none());
    }
}
