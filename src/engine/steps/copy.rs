//! Copy: every source collection to the target (with writes live under two-pass).

use crate::engine::context::{Ctx, Outcome, Step};
use crate::engine::options::Strategy;
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::CopyResult;
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::copy::{self, CopyOptions};
use crate::mongo::jobs;
use crate::mongo::ns::Selection;
use crate::world::World;

/// The bulk copy.
pub struct Copy;

impl Step for Copy {
    const ID: StepId = StepId::Copy;

    fn describe(&self, plan: &Plan, _world: &World) -> PlannedStep {
        PlannedStep::new(
            Self::ID,
            match plan.strategy {
                Strategy::TwoPass => {
                    "bulk-copy every source database to Atlas while the app keeps writing (raw BSON, streamed, resumable), indexes after the data"
                }
                Strategy::FreezeFirst => {
                    "copy every source database to Atlas (raw BSON, streamed, resumable), indexes after the data"
                }
            },
        )
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let (src, dst) = ctx.mongo().await?;
        let items = jobs::select_retrying(&src, &Selection::default(), &ctx.cancel).await?;
        let bars = ctx
            .operator
            .bars("copy", items.iter().map(|i| i.estimated_docs).sum());
        let live = ctx.settings.strategy == Strategy::TwoPass;
        let opts = CopyOptions {
            drop: ctx.settings.drop,
            live,
            ..CopyOptions::default()
        };
        let r = copy::run(&src, &dst, &items, &opts, &ctx.journal, &*bars, &ctx.cancel).await;
        bars.done();
        let r = match r {
            Ok(r) => r,
            Err(e) => return Err(over_quota(ctx, &items, e).await),
        };
        // Under freeze-first nothing wrote during the copy, so a duplicate key is a real
        // failure; two-pass leaves those unique indexes to the sync that follows.
        let mut failed = r.index_errors.clone();
        if !live {
            failed.extend(r.index_deferred.iter().cloned());
        }
        if !failed.is_empty() {
            return Err(Error::other(format!(
                "{} index build(s) failed on the target: {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        // Totals over every attempt: a resumed copy reports the collections' full counts.
        let docs: u64 = r.collections.iter().map(|c| c.docs).sum();
        let bytes: u64 = r.collections.iter().map(|c| c.bytes).sum();
        let this_run = if docs != r.docs {
            format!("; this run {}", crate::units::count(r.docs))
        } else {
            String::new()
        };
        let note = format!(
            "copied {} ({}) in {:.1}s{this_run}{}",
            crate::units::plural(docs, "document", "documents"),
            crate::units::bytes(bytes as i64),
            r.seconds,
            r.wire.summary(r.bytes)
        );
        ctx.update(|s| {
            s.results.copy = Some(CopyResult {
                docs,
                bytes,
                seconds: r.seconds,
                collections: r.collections.len(),
            });
        })?;
        Ok(Outcome::Done(note))
    }
}

/// A copy that filled the Atlas cluster (a shared tier's space quota) cannot go on by itself:
/// the error says the quota and what the source holds, and a source this run froze (under
/// freeze-first) is unlocked, so the app is not left read-only behind a copy that cannot end.
async fn over_quota(ctx: &mut Ctx<'_>, items: &[jobs::Item], e: Error) -> Error {
    let Some((used, quota)) = crate::mongo::tier::over_quota(&e.message) else {
        return e;
    };
    let unlocked = ctx.remote.is_none() && ctx.source_locked();
    if unlocked {
        ctx.unfreeze("Atlas is over its space quota: the copy cannot finish on this tier")
            .await;
    }
    let data: u64 = items
        .iter()
        .map(|i| i.estimated_docs.saturating_mul(i.avg_doc_bytes))
        .sum();
    Error::refused(crate::mongo::tier::quota_refusal(
        used, quota, data, unlocked,
    ))
}
