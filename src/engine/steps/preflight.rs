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

/// The copy's duration from rates measured on these servers and this link (never assumed),
/// as `; copy estimated at ~X (what was measured)`, or nothing when nothing could be measured.
async fn estimate(
    src: &crate::mongo::Mongo,
    dst: &crate::mongo::Mongo,
    items: &[crate::mongo::jobs::Item],
) -> String {
    use crate::mongo::probe;
    let data: u64 = items
        .iter()
        .map(|i| i.estimated_docs.saturating_mul(i.avg_doc_bytes))
        .sum();
    let Some(largest) = items
        .iter()
        .filter(|i| !i.meta.is_view())
        .max_by_key(|i| i.estimated_docs.saturating_mul(i.avg_doc_bytes.max(1)))
    else {
        return String::new();
    };
    if data == 0 {
        return String::new();
    }
    let read = probe::read_rate(src, items).await;
    let write = match read {
        Some(_) => probe::write_rate(dst, largest.avg_doc_bytes).await,
        None => None,
    };
    // Each collection is created, and each of its indexes built, once; the source's index
    // counts are not known here, so one index per collection is counted.
    let colls = items.iter().filter(|i| !i.meta.is_view()).count() as u64;
    match probe::estimate((data, colls, colls), read, write) {
        Some((d, why)) => format!(
            "; copy of {} estimated at ~{} ({why})",
            crate::units::bytes(data as i64),
            humantime::format_duration(Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64))
        ),
        None => String::new(),
    }
}

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
        let estimate = estimate(&src, &dst, &items).await;
        Ok(Outcome::Done(format!(
            "source {} (MongoDB {}) reachable, {}, ~{}, {} on disk; target {} (MongoDB {}) ready{estimate}",
            src.uri.redacted(),
            sv.as_deref().unwrap_or("?"),
            crate::units::plural(items.len() as u64, "collection", "collections"),
            crate::units::plural(docs, "document", "documents"),
            crate::units::bytes(size),
            dst.uri.redacted(),
            tv.as_deref().unwrap_or("?"),
        )))
    }
}
