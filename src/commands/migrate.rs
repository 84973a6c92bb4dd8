//! `efs2atlas migrate` and `efs2atlas status`.

use std::path::Path;

use crate::aws::{Aws, AwsOptions};
use crate::commands::{Done, Output, discover_and_plan};
use crate::engine::context::Ctx;
use crate::engine::journal::{Journal, SharedJournal};
use crate::engine::lock::JournalLock;
use crate::engine::operator::{Operator, ask_first};
use crate::engine::options::{RunOptions, Strategy, TargetOptions};
use crate::engine::plan::model::Plan;
use crate::engine::runner;
use crate::engine::state::MigrateState;
use crate::engine::step::StepId;
use crate::envmap::has_literal_uri_password;
use crate::error::{Error, Result, exit};
use crate::uri::MongoUri;
use crate::world::World;

/// Where `migrate`, `resume` and `status` keep their journal unless told otherwise.
pub const DEFAULT_JOURNAL: &str = "efs2atlas.journal.json";

/// Refuses `--env` templates that carry a literal credential (it would land in the journal).
fn check_env_templates(env: &[String], atlas: &MongoUri) -> Result<()> {
    for e in env {
        let literal_pw = has_literal_uri_password(e);
        let has_atlas_pw = atlas
            .password
            .as_ref()
            .is_some_and(|p| p.expose().len() >= 3 && e.contains(p.expose()));
        if literal_pw || has_atlas_pw {
            let name = e.split('=').next().unwrap_or("");
            return Err(Error::usage(format!(
                "--env {name}=...: the template contains a literal password; put the credentials in --atlas-uri and write {{password}} (or {{uri}}) in the template"
            )));
        }
    }
    Ok(())
}

/// What identifies a migration: its service in its account and region.
pub fn fingerprint(cluster: &str, service: &str, account: &str, region: &str) -> String {
    format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(
            format!("migrate|{account}|{region}|{cluster}|{service}").as_bytes()
        )
    )
}

/// True when the journal's run stopped before it changed anything (at preflight): starting
/// over is then as safe as resuming, and a user who fixed the cause by changing a flag
/// (`--drop`) is not sent to `resume`.
fn changed_nothing(j: &Journal) -> bool {
    j.copy.collections.is_empty()
        && j.migrate.as_ref().is_some_and(|m| {
            m.freeze.is_none()
                && m.secret_arn.is_none()
                && m.new_task_definition.is_none()
                && m.steps.keys().all(|s| *s == StepId::Preflight)
        })
}

/// Refuses to start over a journal that records another run (one that changed nothing is
/// replaced, saying so).
fn refuse_existing(path: &Path, op: &dyn Operator) -> Result<()> {
    match Journal::load(path)? {
        Some(j) if changed_nothing(&j) => {
            op.notice(&format!(
                "journal {} records a migration that stopped at preflight, before changing anything: starting over",
                path.display()
            ));
            Ok(())
        }
        Some(j) if j.migrate.as_ref().is_some_and(|m| m.finished) => Err(Error::refused(format!(
            "journal {} records a finished migration; move it aside (or pass --journal) to start another",
            path.display()
        ))),
        Some(j) => {
            let of = j
                .migrate
                .as_ref()
                .map(|m| format!(" of service {} in cluster {}", m.service, m.cluster))
                .unwrap_or_else(|| format!(" ({} journal)", j.kind));
            Err(Error::refused(format!(
                "journal {} records an unfinished migration{of}; continue it with `efs2atlas resume --journal {}`, or pass another --journal to start a different one",
                path.display(),
                path.display()
            )))
        }
        None => Ok(()),
    }
}

/// `efs2atlas migrate`.
pub async fn migrate(
    aws: &AwsOptions,
    t: &TargetOptions,
    run: &RunOptions,
    op: &dyn Operator,
) -> Result<Done> {
    check_env_templates(&t.settings.env, &t.plan.atlas)?;
    let _lock = if run.dry_run {
        None
    } else {
        let lock = JournalLock::acquire(&run.journal, "migrate")?;
        refuse_existing(&run.journal, op)?;
        Some(lock)
    };
    let aws = Aws::load(aws).await?;
    let (world, plan) = discover_and_plan(&aws, t, None).await?;
    let mut effective = t.clone();
    effective.plan.atlas = crate::commands::effective_atlas(&world, t)?;
    let t = &effective;
    op.show_plan(&plan, &world, run.dry_run);
    if run.dry_run {
        op.notice("--dry-run: nothing was changed");
        return Ok(Done {
            code: if plan.ready { exit::OK } else { exit::REFUSED },
            output: Output::Plan {
                plan: Box::new(plan),
                world: Box::new(world),
                dry_run: true,
            },
            error: None,
        });
    }
    if !plan.ready {
        let why: Vec<String> = plan.blockers.iter().map(|b| b.message.clone()).collect();
        return Err(Error::refused(format!(
            "migration refused: {}",
            why.join("; ")
        )));
    }
    let source = t.source.clone().ok_or_else(|| {
        Error::usage("--source-uri is required: it says how to reach the mongo container's database and with which user. With --runner ecs, mongodb://USER:PASS@localhost:27017/?authSource=admin means the mongo task itself; without it, give the end of a tunnel (docs/guide.md), e.g. mongodb://127.0.0.1:27017")
    })?;
    let target = match run.target.clone() {
        Some(t) => t,
        None => crate::commands::default_target(&world, t)?,
    };
    // The plan is long: what it destroys is repeated right above the question.
    let doomed: Vec<String> = plan
        .steps
        .iter()
        .flat_map(|s| s.actions.iter())
        .filter(|a| a.destructive)
        .map(|a| format!("  - {}", a.description))
        .collect();
    if !doomed.is_empty() {
        op.danger(&format!(
            "Last, once the data is verified and the service is steady on Atlas (and after one more question), this migration deletes:\n{}",
            doomed.join("\n")
        ));
    }
    if !ask_first(
        op,
        &format!(
            "Migrate service {} to {} with the plan above?",
            plan.service,
            t.plan.atlas.redacted()
        ),
    )? {
        return Err(Error::refused("not confirmed; nothing was changed"));
    }
    let journal = new_journal(&world, &plan, t, (&source, &target), &run.journal)?;
    let settings = t.settings.clone();
    let ctx = Ctx::new(aws, world, plan, (source, target), op, journal, settings);
    finish(ctx).await
}

/// The journal of a new migration, saved before any step runs.
fn new_journal(
    world: &World,
    plan: &Plan,
    t: &TargetOptions,
    (source, target): (&MongoUri, &MongoUri),
    path: &Path,
) -> Result<SharedJournal> {
    let mut journal = Journal::new(
        "migrate",
        &fingerprint(&plan.cluster, &plan.service, &world.account, &world.region),
    );
    journal.copy.source = source.redacted();
    journal.copy.target = target.redacted();
    journal.migrate = Some(MigrateState {
        cluster: plan.cluster.clone(),
        service: plan.service.clone(),
        service_arn: world.service.arn.clone(),
        account: world.account.clone(),
        region: world.region.clone(),
        atlas: t.plan.atlas.redacted(),
        source: source.redacted(),
        target: target.redacted(),
        settings: t.settings.clone(),
        plan: plan.steps.iter().map(|s| s.id).collect(),
        old_task_definition: world.task_definition.arn.clone(),
        cleanup: Some(plan.cleanup_target(world)),
        runner: plan.runner.clone(),
        ..Default::default()
    });
    journal.save(path)?;
    Ok(shared(path, journal, t.settings.strategy))
}

/// The journal of a running migration; only two-pass keeps ledgers (it audits Atlas against
/// them before the freeze, which freeze-first never does).
pub(crate) fn shared(path: &Path, journal: Journal, strategy: Strategy) -> SharedJournal {
    let shared = SharedJournal::new(
        path.to_path_buf(),
        journal,
        crate::mongo::copy::JOURNAL_INTERVAL,
    );
    match strategy {
        Strategy::TwoPass => shared.with_ledger(),
        Strategy::FreezeFirst => shared,
    }
}

/// Runs the steps and hands the report back.
pub(crate) async fn finish(ctx: Ctx<'_>) -> Result<Done> {
    let (plan, report) = runner::execute(ctx).await?;
    Ok(Done::ok(Output::Migration {
        plan: Box::new(plan),
        report: Box::new(report),
    }))
}

/// `efs2atlas status`.
pub fn status(path: &Path) -> Result<Done> {
    let j = Journal::load(path)?
        .ok_or_else(|| Error::not_found(format!("no journal at {}", path.display())))?;
    Ok(Done::ok(Output::Status {
        journal: Box::new(j),
        path: path.display().to_string(),
        active: crate::engine::lock::holder(path),
    }))
}
