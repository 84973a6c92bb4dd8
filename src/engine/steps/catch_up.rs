//! Catch-up: before the freeze, check Atlas against the ledger of what it acknowledged (a full
//! read-back while the app still writes: anyone else writing to Atlas shows up here), then
//! sync what the app changed in rounds, against the ledger, until few changes are left. The
//! frozen sync then patches only the last seconds of writes.

use std::time::Instant;

use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::{CatchUpResult, RoundResult};
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::jobs::{self, Item};
use crate::mongo::ledger_sync;
use crate::mongo::ns::Selection;
use crate::mongo::progress::ProgressStore;
use crate::mongo::sync::{self, SyncOptions};
use crate::world::World;

/// Rounds at most, with writes live.
const MAX_ROUNDS: usize = 5;
/// A round that patches this few documents ends the catch-up.
const FEW: u64 = 100;

/// The checks and sync rounds before the freeze.
pub struct CatchUp;

impl Step for CatchUp {
    const ID: StepId = StepId::CatchUp;

    fn describe(&self, _plan: &Plan, _world: &World) -> PlannedStep {
        PlannedStep::new(
            Self::ID,
            "check Atlas against the ledger of what it acknowledged (a full read-back with writes live: catches anyone else writing to it), then sync what the app changed in rounds until few changes are left",
        )
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        if ctx.journal.ledger_dir().is_none() {
            return Ok(Check::Skip("no ledger kept".into()));
        }
        Ok(Check::Run)
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let started = Instant::now();
        let (src, _) = ctx.mongo().await?;
        let items = jobs::select_retrying(&src, &Selection::default(), &ctx.cancel).await?;
        let audited = audit(ctx, &items).await?;
        let mut rounds: Vec<RoundResult> = Vec::new();
        while rounds.len() < MAX_ROUNDS {
            let r = round(ctx, &items).await?;
            ctx.operator.notice(&format!(
                "catch-up round {}: {} document(s) patched in {:.1}s",
                rounds.len() + 1,
                r.patched,
                r.seconds
            ));
            let shrinking = rounds.last().is_none_or(|p| r.patched < p.patched);
            let done = r.patched <= FEW || !shrinking;
            rounds.push(r);
            if done {
                break;
            }
        }
        // The frozen sync starts from scratch, against the newest ledgers.
        ctx.journal.update(true, |j| j.sync.clear())?;
        let result = CatchUpResult {
            audited,
            rounds,
            seconds: started.elapsed().as_secs_f64(),
        };
        let note = format!(
            "Atlas matches the ledger ({} documents read back); {} round(s) with writes live, the last patched {}",
            result.audited,
            result.rounds.len(),
            result.rounds.last().map_or(0, |r| r.patched)
        );
        ctx.update(|s| s.results.catch_up = Some(result))?;
        Ok(Outcome::Done(note))
    }
}

/// Reads every collection with a ledger back from Atlas and compares; a difference means
/// something else wrote to Atlas (or a collection's ledger is unusable: it falls back to
/// reading both sides, loudly).
async fn audit(ctx: &mut Ctx<'_>, items: &[Item]) -> Result<u64> {
    let Some(dir) = ctx.journal.ledger_dir() else {
        return Ok(0);
    };
    let (_, dst) = ctx.mongo().await?;
    let bars = ctx
        .operator
        .bars("audit", items.iter().map(|i| i.estimated_docs).sum());
    let mut read = 0;
    for it in items {
        let ns = it.source.to_string();
        let Some(mut p) = ctx.journal.copied(&ns)? else {
            continue;
        };
        let Some(mark) = p.ledger.filter(|_| !p.ledger_off) else {
            continue;
        };
        let what = format!("checking {} against its ledger", it.target);
        let checked = crate::mongo::with_retries(&what, &ctx.cancel, || {
            ledger_sync::audit(&dst, it, &dir, mark, &*bars, &ctx.cancel)
        })
        .await;
        let a = match checked {
            Ok(a) => a,
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => {
                ctx.operator.notice(&format!(
                    "WARNING: {e}; {ns} will be synced and verified by reading both sides"
                ));
                p.ledger = None;
                p.ledger_off = true;
                ctx.journal.record_copy(&ns, p, true)?;
                continue;
            }
        };
        if a.differences > 0 {
            bars.done();
            return Err(Error::refused(format!(
                "{} document(s) of {} in Atlas are not what efs2atlas wrote (e.g. _id {}): something else writes to the target. Stop it, check those documents, then run `efs2atlas resume` (nothing is frozen yet)",
                a.differences,
                it.target,
                a.examples.join(", ")
            )));
        }
        read += a.read;
    }
    bars.done();
    Ok(read)
}

/// One sync round with writes live, and the read-back of what it patched.
async fn round(ctx: &mut Ctx<'_>, items: &[Item]) -> Result<RoundResult> {
    let started = Instant::now();
    let (src, dst) = ctx.mongo().await?;
    ctx.journal.update(true, |j| j.sync.clear())?;
    let bars = ctx
        .operator
        .bars("catch-up", items.iter().map(|i| i.estimated_docs).sum());
    let opts = SyncOptions {
        owned: ctx.journal.read(|j| j.created_targets())?,
        parallel: crate::engine::options::COLLECTIONS_AT_ONCE,
        ..SyncOptions::default()
    };
    let journal: &dyn ProgressStore = &ctx.journal;
    let r = sync::run(&src, &dst, items, &opts, Some(journal), &*bars, &ctx.cancel).await;
    bars.done();
    let r = r?;
    let dir = ctx.journal.ledger_dir();
    for c in &r.collections {
        let (Some(dir), Some(patched)) = (&dir, c.patched) else {
            continue;
        };
        let Some(it) = items.iter().find(|i| i.source.to_string() == c.source) else {
            continue;
        };
        let rb = ledger_sync::read_back(&dst, it, dir, patched).await?;
        if !rb.wrong.is_empty() {
            return Err(Error::other(format!(
                "{} document(s) efs2atlas wrote to {} read back differently (e.g. _id {}): something else writes to the target",
                rb.wrong.len(),
                it.target,
                rb.wrong[0]
            )));
        }
    }
    Ok(RoundResult {
        patched: r.counts.inserted + r.counts.replaced + r.counts.deleted,
        compared: r.documents_compared,
        seconds: started.elapsed().as_secs_f64(),
    })
}
