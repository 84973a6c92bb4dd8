//! Preflight: both databases reachable, the privileges proven, the targets empty.

use std::time::Duration;

use crate::engine::context::{Ctx, Outcome, Step};
use crate::engine::options::FreezeMode;
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::jobs;
use crate::mongo::ns::Selection;
use crate::world::World;

/// Copy speed assumed for the estimate (documents and bytes per second).
const ASSUMED_DOCS_PER_SEC: f64 = 3000.0;
const ASSUMED_BYTES_PER_SEC: f64 = 5.0 * 1024.0 * 1024.0;

/// Checks identity and both databases before anything changes.
pub struct Preflight;

impl Step for Preflight {
    const ID: StepId = StepId::Preflight;

    fn describe(&self, _plan: &Plan, _world: &World) -> PlannedStep {
        PlannedStep::new(
            Self::ID,
            "check AWS identity, reach source and Atlas, require empty target databases",
        )
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        ctx.operator.notice(&format!(
            "AWS account {} region {} as {}",
            ctx.world.account, ctx.world.region, ctx.world.caller_arn
        ));
        let (src, dst) = ctx.mongo().await?;
        let (sv, tv) = tokio::join!(src.version(), dst.version());
        let items = jobs::select_retrying(&src, &Selection::default(), &ctx.cancel).await?;
        if items.is_empty() {
            return Err(Error::refused(format!(
                "the source {} has no user databases to copy",
                src.uri.redacted()
            )));
        }
        if ctx.settings.freeze == FreezeMode::FsyncLock {
            crate::mongo::access::check_source_can_freeze(&src).await?;
        }
        crate::mongo::copy::check_target_access(&dst, &items).await?;
        let started = |it: &_| crate::mongo::copy::started_by(&ctx.journal, it);
        let busy =
            crate::mongo::copy::busy_targets(&dst, &items, started, ctx.settings.drop).await?;
        crate::mongo::copy::refuse_busy(&busy, |it| {
            format!(
                "Nothing was changed: run `efs2atlas migrate` again with --drop (or `efs2atlas resume --drop`) to replace {it} (their data is lost), or empty {it} on the target first"
            )
        })?;
        let docs: u64 = items.iter().map(|i| i.estimated_docs).sum();
        let size: i64 = src.list_databases().await?.iter().filter_map(|d| d.1).sum();
        // A rough guide only: the real rate depends on the link to Atlas (scripts/bench measures it).
        let eta_secs =
            (docs as f64 / ASSUMED_DOCS_PER_SEC).max(size as f64 / ASSUMED_BYTES_PER_SEC);
        Ok(Outcome::Done(format!(
            "source {} (MongoDB {}) reachable, {}, ~{}, {} on disk; target {} (MongoDB {}) ready; copy estimated at ~{} (assuming {} or {}/s)",
            src.uri.redacted(),
            sv.as_deref().unwrap_or("?"),
            crate::units::plural(items.len() as u64, "collection", "collections"),
            crate::units::plural(docs, "document", "documents"),
            crate::units::bytes(size),
            dst.uri.redacted(),
            tv.as_deref().unwrap_or("?"),
            humantime::format_duration(Duration::from_secs(eta_secs.ceil() as u64)),
            crate::units::rate(ASSUMED_DOCS_PER_SEC, "docs"),
            crate::units::bytes(ASSUMED_BYTES_PER_SEC as i64)
        )))
    }
}
