//! The commands: each turns its options into discovery, a plan, steps or a data run, and
//! returns what happened as a typed [`Output`] for the CLI to print. Questions and progress
//! go through the engine's [`Operator`](crate::engine::operator::Operator).

pub mod data;
pub mod migrate;
pub mod plan;
pub mod resume;
pub mod rollback;
pub mod runner;

use std::path::PathBuf;

use crate::aws::Aws;
use crate::deploy::DeployReport;
use crate::discover::{self, Target};
use crate::engine::context::MONGO_CONNECT_TIMEOUT;
use crate::engine::journal::Journal;
use crate::engine::options::{AtlasSettings, TargetOptions};
use crate::engine::plan::model::Plan;
use crate::engine::report::MigrationReport;
use crate::error::Result;
use crate::mongo::Mongo;
use crate::mongo::copy::CopyReport;
use crate::mongo::ns::Selection;
use crate::mongo::sync::SyncReport;
use crate::mongo::verify::VerifyReport;
use crate::uri::MongoUri;
use crate::world::atlas::AtlasInfo;
use crate::world::{TargetInfo, World};

/// What a command produced, for the CLI to print as text or JSON.
pub enum Output {
    /// `plan`, or `migrate --dry-run` (the plan text was already shown).
    Plan {
        /// The plan.
        plan: Box<Plan>,
        /// What it was made from.
        world: Box<World>,
        /// True for `--dry-run`.
        dry_run: bool,
    },
    /// A finished migration.
    Migration {
        /// The plan it ran.
        plan: Box<Plan>,
        /// What it did.
        report: Box<MigrationReport>,
    },
    /// `status`.
    Status {
        /// The journal read.
        journal: Box<Journal>,
        /// Its path.
        path: String,
        /// The process running it now (none: nothing runs it; `resume` continues it).
        active: Option<crate::engine::lock::LockHolder>,
    },
    /// `copy`.
    Copy {
        /// What it copied.
        report: CopyReport,
        /// Its journal.
        journal: PathBuf,
    },
    /// `verify`.
    Verify(VerifyReport),
    /// `sync`.
    Sync(SyncReport),
    /// `rollback`.
    Rollback(DeployReport),
}

/// A finished command: its exit code, its output, and a failure to state after the output.
pub struct Done {
    /// The process exit code.
    pub code: i32,
    /// What to print.
    pub output: Output,
    /// A line for stderr after the output (the command ran but did not fully succeed).
    pub error: Option<String>,
}

impl Done {
    /// A success.
    pub fn ok(output: Output) -> Done {
        Done {
            code: crate::error::exit::OK,
            output,
            error: None,
        }
    }

    /// Ran to the end, but `error` (when there is one) makes it exit with `code`.
    pub fn unless(output: Output, error: Option<String>, code: i32) -> Done {
        Done {
            code: if error.is_some() {
                code
            } else {
                crate::error::exit::OK
            },
            output,
            error,
        }
    }
}

/// Discovers the world for `t` (and the source, when it has one) and plans; `td` plans from
/// that revision instead of the service's current one.
/// What the plan needs to know of the target, read only: its version and, when the source
/// is known, which collections the copy would write into already hold data.
async fn check_target(uri: &MongoUri, src: Option<&Mongo>, drop: bool) -> Result<TargetInfo> {
    let dst = Mongo::connect(uri, "target", MONGO_CONNECT_TIMEOUT).await?;
    let busy = match src {
        Some(src) => {
            let items = crate::mongo::jobs::select(src, &Selection::default()).await?;
            crate::mongo::copy::busy_targets(&dst, &items, |_| Ok(false), drop).await?
        }
        None => Vec::new(),
    };
    Ok(TargetInfo {
        uri: uri.redacted(),
        version: dst.version().await,
        busy,
    })
}

pub async fn discover_and_plan(
    aws: &Aws,
    t: &TargetOptions,
    td: Option<&str>,
) -> Result<(World, Plan)> {
    // Missing Atlas credentials are said before anything is read.
    if t.settings.atlas.is_some() {
        crate::atlas::Credentials::from_env(|k| std::env::var(k).ok())?;
    }
    let mut world = discover::world(
        aws,
        &Target {
            cluster: &t.cluster,
            service: &t.service,
            task_definition: td,
        },
    )
    .await?;
    // With a runner task the source is reached from inside the VPC only: the runner's
    // preflight checks it.
    let remote = t.settings.runner.as_ref();
    let src = match &t.source {
        Some(uri) if remote.is_none() => {
            Some(Mongo::connect(uri, "source", MONGO_CONNECT_TIMEOUT).await?)
        }
        _ => None,
    };
    if let Some(m) = &src {
        world.source = Some(discover::mongo::source(m).await?);
    }
    if let Some(uri) = &t.check_target {
        world.target = Some(check_target(uri, src.as_ref(), t.settings.drop).await?);
    }
    let mut opts = t.plan.clone();
    if let Some(a) = &t.settings.atlas {
        atlas_side(aws, &mut world, a).await?;
        if !t.atlas_uri_given {
            opts.atlas = app_uri(&world, a, &t.service)?;
        }
    }
    if let Some(r) = remote {
        opts.runner = Some(crate::engine::remote::setup::plan_runner(aws, &world, r).await?);
    }
    let plan = crate::engine::plan::plan(&world, &opts)?;
    Ok((world, plan))
}

/// The Atlas side through the Admin API (read only): the cluster, the IP access list, the
/// database users; and where the service's tasks reach the internet from.
async fn atlas_side(aws: &Aws, world: &mut World, a: &AtlasSettings) -> Result<()> {
    let creds = crate::atlas::Credentials::from_env(|k| std::env::var(k).ok())?;
    let api = crate::atlas::Atlas::new(None, &a.project, creds)?;
    let cluster = api.cluster(&a.cluster).await?;
    let (access_list, users) = tokio::try_join!(api.access_list(), api.users())?;
    world.atlas = Some(AtlasInfo {
        project: a.project.clone(),
        cluster,
        access_list,
        users,
    });
    if let Some(net) = &world.service.network {
        world.egress = Some(discover::egress::egress(aws, net).await?);
    }
    Ok(())
}

/// The Atlas URI the run uses: `--atlas-uri`, or with the Admin API the cluster's connection
/// string for the app user (its password made by the `atlas-access` step).
pub fn effective_atlas(world: &World, t: &TargetOptions) -> Result<MongoUri> {
    match &t.settings.atlas {
        Some(a) if !t.atlas_uri_given => app_uri(world, a, &t.service),
        _ => Ok(t.plan.atlas.clone()),
    }
}

/// Where efs2atlas writes when no `--target-uri` is given: the Atlas URI, or with the Admin
/// API the cluster itself with no user (the `atlas-access` step signs in as its own).
pub fn default_target(world: &World, t: &TargetOptions) -> Result<MongoUri> {
    match (
        &t.settings.atlas,
        world.atlas.as_ref().and_then(|a| a.cluster.srv.clone()),
    ) {
        (Some(_), Some(srv)) if !t.atlas_uri_given => {
            MongoUri::parse("the cluster's connection string", &srv)
        }
        _ => effective_atlas(world, t),
    }
}

/// The app's connection string from the cluster's (`standardSrv`), for the app user, and the
/// source's database when it has one (else `{db}` says what is missing).
fn app_uri(world: &World, a: &AtlasSettings, service: &str) -> Result<MongoUri> {
    let info = world.atlas.as_ref();
    let srv = info.and_then(|i| i.cluster.srv.clone()).ok_or_else(|| {
        crate::error::Error::refused(format!(
            "Atlas cluster {} has no connection string yet (state {}); wait until Atlas shows it ready, or pass --atlas-uri",
            a.cluster,
            info.map_or("?", |i| i.cluster.state.as_str())
        ))
    })?;
    let db = world
        .source
        .as_ref()
        .filter(|s| s.databases.len() == 1)
        .map(|s| s.databases[0].name.as_str());
    let user = a.app_user.as_deref().unwrap_or(service);
    crate::engine::plan::atlas::provisional_uri(user, &srv, db)
}
