//! Verify: both sides compared, counts and the bytes of every document; any difference
//! stops the migration before the cutover (and unfreezes the source).

use std::collections::BTreeMap;

use crate::engine::context::{Ctx, Outcome, Step};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::VerifyResult;
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::freeze::Fence;
use crate::mongo::jobs;
use crate::mongo::ns::Selection;
use crate::mongo::progress::ProgressStore;
use crate::mongo::verify::{self, ReadBackFrom, VerifyOptions};
use crate::world::World;

/// The verification.
pub struct Verify;

/// The collections the last sync compared with the ledger: their patched lists and the
/// number of documents their ledgers hold.
fn read_back(ctx: &Ctx<'_>) -> Result<BTreeMap<String, ReadBackFrom>> {
    let Some(dir) = ctx.journal.ledger_dir() else {
        return Ok(BTreeMap::new());
    };
    ctx.journal.read(|j| {
        j.sync
            .iter()
            .filter_map(|(ns, c)| {
                let patched = c.patched?;
                let ledger = j.copy.collections.get(ns)?.ledger?;
                Some((ns.clone(), (dir.clone(), patched, ledger.count)))
            })
            .collect()
    })
}

impl Step for Verify {
    const ID: StepId = StepId::Verify;

    fn describe(&self, _plan: &Plan, _world: &World) -> PlannedStep {
        PlannedStep::new(
            Self::ID,
            "compare counts, document hashes and indexes of every collection; stop and unfreeze on any difference",
        )
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let (src, dst) = ctx.mongo().await?;
        let sel = Selection::default();
        let items = jobs::select_retrying(&src, &sel, &ctx.cancel).await?;
        let bars = ctx
            .operator
            .bars("verify", items.iter().map(|i| i.estimated_docs).sum());
        let read_back = read_back(ctx)?;
        if !read_back.is_empty() {
            ctx.operator.notice(&format!(
                "verify: {} collection(s) were synced against the ledger: reading back only the documents the frozen sync patched (the rest was checked against Atlas before the freeze)",
                read_back.len()
            ));
        }
        let opts = VerifyOptions {
            selection: sel,
            parallel: crate::engine::options::COLLECTIONS_AT_ONCE,
            max_examples: 20,
            read_back,
        };
        let r = verify::run(&src, &dst, &items, &opts, &*bars, &ctx.cancel).await;
        bars.done();
        let r = r?;
        ctx.update(|s| {
            s.results.verify = Some(VerifyResult {
                ok: r.ok,
                documents_compared: r.documents_compared,
                seconds: r.seconds,
            });
        })?;
        if r.ok {
            return Ok(Outcome::Done(format!(
                "target equals source: {} compared in {:.1}s",
                crate::units::plural(r.documents_compared, "document", "documents"),
                r.seconds
            )));
        }
        ctx.operator.show_verify(&r);
        // A source that restarted under the freeze explains a difference: freeze again.
        if let Fence::Broken(why) = ctx.fence().await? {
            return ctx.refreeze(&format!("verify found differences and {why}"));
        }
        ctx.unfreeze("verification failed").await;
        Err(Error::mismatch(format!(
            "{}; nothing was deployed",
            r.summary()
        )))
    }
}
