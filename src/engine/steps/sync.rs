//! Sync: under the freeze, patch what changed on the source during the bulk copy.

use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::options::Strategy;
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::SyncResult;
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::jobs;
use crate::mongo::ns::Selection;
use crate::mongo::sync::{self, SyncOptions};
use crate::world::World;

/// The sync of what changed.
pub struct Sync;

impl Step for Sync {
    const ID: StepId = StepId::Sync;

    fn describe(&self, plan: &Plan, _world: &World) -> PlannedStep {
        PlannedStep::new(
            Self::ID,
            match plan.strategy {
                Strategy::TwoPass => {
                    "patch what changed during the bulk copy: merge (_id, hash) streams of both sides, insert/replace/delete only the differences"
                }
                Strategy::FreezeFirst => {
                    "only when a resume must catch up with writes made after the source was unlocked: patch the differences"
                }
            },
        )
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        let st = ctx.state()?;
        if st.settings.strategy == Strategy::FreezeFirst && !st.resync {
            return Ok(Check::Skip(
                "freeze-first: the copy ran with writes frozen".into(),
            ));
        }
        Ok(Check::Run)
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let (src, dst) = ctx.mongo().await?;
        let items = jobs::select_retrying(&src, &Selection::default(), &ctx.cancel).await?;
        let bars = ctx
            .operator
            .bars("sync", items.iter().map(|i| i.estimated_docs).sum());
        // What efs2atlas created on the target may be dropped when the source dropped it.
        let owned = ctx.journal.read(|j| j.created_targets())?;
        // Collections in parallel: under the freeze the round trips to a remote Atlas (its
        // metadata, the patches) overlap instead of adding up.
        let opts = SyncOptions {
            owned,
            parallel: crate::engine::options::COLLECTIONS_AT_ONCE,
            ..SyncOptions::default()
        };
        let r = sync::run(
            &src,
            &dst,
            &items,
            &opts,
            Some(&ctx.journal),
            &*bars,
            &ctx.cancel,
        )
        .await;
        bars.done();
        let r = r?;
        ctx.update(|s| {
            // A sync that runs again (after the freeze was lost, or a failed verify) adds to
            // the earlier passes: the report's totals are the migration's.
            let before = s.results.sync.take().unwrap_or_default();
            let mut dropped = before.dropped_collections;
            dropped.extend(r.dropped_collections.iter().cloned());
            s.results.sync = Some(SyncResult {
                inserted: before.inserted + r.counts.inserted,
                replaced: before.replaced + r.counts.replaced,
                deleted: before.deleted + r.counts.deleted,
                conflicts_resolved: before.conflicts_resolved + r.counts.conflicts_resolved,
                documents_compared: before.documents_compared + r.documents_compared,
                dropped_collections: dropped,
                seconds: before.seconds + r.seconds,
            });
        })?;
        if !r.kept_extra_collections.is_empty() {
            return Err(Error::refused(format!(
                "the target has collection(s) the source does not, which efs2atlas did not create: {}; drop them or move them elsewhere, then resume",
                r.kept_extra_collections.join(", ")
            )));
        }
        Ok(Outcome::Done(format!(
            "patched {} inserted, {} replaced, {} deleted ({} compared) in {:.1}s",
            crate::units::count(r.counts.inserted),
            crate::units::count(r.counts.replaced),
            crate::units::count(r.counts.deleted),
            crate::units::plural(r.documents_compared, "document", "documents"),
            r.seconds
        )))
    }
}
