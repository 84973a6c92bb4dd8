//! `efs2atlas resume`: continue a migration from its journal. The options come back from the
//! journal (never from flags), the credentials from the environment.

use std::path::Path;

use crate::aws::{Aws, AwsOptions};
use crate::commands::migrate::{fingerprint, finish, shared, status};
use crate::commands::{Done, discover_and_plan};
use crate::engine::context::Ctx;
use crate::engine::journal::Journal;
use crate::engine::lock::JournalLock;
use crate::engine::operator::Operator;
use crate::engine::options::TargetOptions;
use crate::engine::runner::catch_up_after_unlock;
use crate::engine::state::MigrateState;
use crate::error::{Error, Result};
use crate::uri::MongoUri;

/// The URIs `resume` was given (the journal never stores credentials).
#[derive(Clone, Debug, Default)]
pub struct ResumeUris {
    /// `--atlas-uri`.
    pub atlas: Option<MongoUri>,
    /// `--source-uri`.
    pub source: Option<MongoUri>,
    /// `--target-uri`.
    pub target: Option<MongoUri>,
    /// `--drop`: replace target collections that hold data (this migration's own are kept).
    pub drop: bool,
}

/// `efs2atlas resume`.
pub async fn resume(
    aws: &AwsOptions,
    path: &Path,
    uris: ResumeUris,
    op: &dyn Operator,
) -> Result<Done> {
    let _lock = JournalLock::acquire(path, "resume")?;
    let mut journal = load(path)?;
    let Some(st) = journal.migrate.as_mut() else {
        return Err(bad(path, "has no migration in it".into()));
    };
    if st.finished {
        op.notice(&format!(
            "the migration of {} recorded in {} is already finished",
            st.service,
            path.display()
        ));
        return status(path);
    }
    if uris.drop && !st.settings.drop {
        op.notice("--drop: target collections that hold data will be replaced (those this migration copied are kept)");
        st.settings.drop = true;
    }
    if let Some(why) = catch_up_after_unlock(st) {
        op.notice(why);
        // What the earlier sync finished is stale now.
        journal.sync.clear();
    }
    let st = journal.migrate.clone().unwrap_or_default();
    let (source, target, t) = options(&st, uris)?;
    let mut aws = aws.clone();
    aws.region.get_or_insert_with(|| st.region.clone());
    let aws = Aws::load(&aws).await?;
    // Before anything is read or changed: the journal must belong to this account.
    let (account, _) = crate::discover::identity(&aws).await?;
    if account != st.account {
        return Err(Error::usage(format!(
            "these AWS credentials are for account {account}, but the migration in {} runs in {}; use the same profile",
            path.display(),
            st.account
        )));
    }
    let (world, plan) = discover_and_plan(&aws, &t, Some(&st.old_task_definition)).await?;
    let order: Vec<_> = plan.steps.iter().map(|s| s.id).collect();
    let next = st.next_step(&order).map(|s| s.name()).unwrap_or("report");
    op.notice(&format!(
        "resuming the migration of {} at step {next}",
        st.service
    ));
    let journal = shared(path, journal, st.settings.strategy);
    let settings = st.settings.clone();
    let ctx = Ctx::new(aws, world, plan, (source, target), op, journal, settings);
    finish(ctx).await
}

fn bad(path: &Path, message: String) -> Error {
    Error::journal(path.display().to_string(), message)
}

/// The journal at `path`, which must be an untouched migration journal.
fn load(path: &Path) -> Result<Journal> {
    let journal = Journal::load(path)?.ok_or_else(|| {
        Error::not_found(format!(
            "no journal at {}; pass --journal PATH (migrate writes {} by default)",
            path.display(),
            crate::commands::migrate::DEFAULT_JOURNAL
        ))
    })?;
    let st = match (&journal.kind[..], &journal.migrate) {
        ("migrate", Some(st)) => st,
        (kind, _) => {
            return Err(bad(
                path,
                format!("is a {kind} journal, not a migration; re-run that command instead"),
            ));
        }
    };
    if journal.fingerprint != fingerprint(&st.cluster, &st.service, &st.account, &st.region) {
        return Err(bad(
            path,
            "was edited: its fingerprint does not match its service; refusing to act on it".into(),
        ));
    }
    Ok(journal)
}

/// Checks that `given` (or, when it has no credentials, the journal's copy) is the URI
/// the migration uses.
fn same_uri(what: &str, given: Option<MongoUri>, journaled: &str, needs: &str) -> Result<MongoUri> {
    let uri = match given {
        Some(u) => u,
        None if !journaled.contains("****") => {
            MongoUri::parse(&format!("journal {what}"), journaled)?
        }
        None => return Err(Error::usage(needs.to_string())),
    };
    if uri.redacted() != journaled {
        return Err(Error::usage(format!(
            "the {what} URI {} is not the one this migration uses ({journaled})",
            uri.redacted()
        )));
    }
    Ok(uri)
}

/// The source, target and plan options, rebuilt from the journal and the given URIs.
fn options(st: &MigrateState, uris: ResumeUris) -> Result<(MongoUri, MongoUri, TargetOptions)> {
    // With the Admin API the app's connection string comes from Atlas again.
    // The wire as the migration began (journaled), for every connection of this run.
    crate::mongo::wire::set_from(st.settings.compressors.as_deref())?;
    let made_by_api = st.settings.atlas.as_ref().is_some_and(|a| a.create_users);
    let atlas = match uris.atlas {
        None if made_by_api => MongoUri::parse(
            "the journal's Atlas URI",
            &st.atlas
                .replace(crate::secret::REDACTED, crate::engine::plan::atlas::PLACEHOLDER),
        )?,
        given => given.ok_or_else(|| {
            Error::usage("the Atlas URI is needed to resume (the journal never stores credentials): set EFS2ATLAS_ATLAS_URI or pass --atlas-uri")
        })?,
    };
    if atlas.redacted() != st.atlas {
        return Err(Error::usage(format!(
            "the Atlas URI {} is not the one this migration uses ({})",
            atlas.redacted(),
            st.atlas
        )));
    }
    let source = same_uri(
        "source",
        uris.source,
        &st.source,
        "the source URI has credentials: set EFS2ATLAS_SOURCE_URI or pass --source-uri to resume",
    )?;
    let target = match uris.target {
        None if st.target == st.atlas => atlas.clone(),
        given => same_uri(
            "target",
            given,
            &st.target,
            &format!(
                "the migration writes to {} (its --target-uri), which has credentials: set EFS2ATLAS_TARGET_URI or pass --target-uri to resume",
                st.target
            ),
        )?,
    };
    let t = TargetOptions {
        cluster: st.cluster.clone(),
        service: st.service.clone(),
        source: None,
        check_target: None,
        plan: st.settings.plan_options(atlas)?,
        atlas_uri_given: !made_by_api,
        settings: st.settings.clone(),
    };
    Ok((source, target, t))
}
