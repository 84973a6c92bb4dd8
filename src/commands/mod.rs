//! The commands: each turns its options into discovery, a plan, steps or a data run, and
//! returns what happened as a typed [`Output`] for the CLI to print. Questions and progress
//! go through the engine's [`Operator`](crate::engine::operator::Operator).

pub mod data;
pub mod migrate;
pub mod plan;
pub mod resume;
pub mod rollback;

use std::path::PathBuf;

use crate::aws::Aws;
use crate::deploy::DeployReport;
use crate::discover::{self, Target};
use crate::engine::context::MONGO_CONNECT_TIMEOUT;
use crate::engine::journal::Journal;
use crate::engine::options::TargetOptions;
use crate::engine::plan::model::Plan;
use crate::engine::report::MigrationReport;
use crate::error::Result;
use crate::mongo::Mongo;
use crate::mongo::copy::CopyReport;
use crate::mongo::sync::SyncReport;
use crate::mongo::verify::VerifyReport;
use crate::world::World;

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
pub async fn discover_and_plan(
    aws: &Aws,
    t: &TargetOptions,
    td: Option<&str>,
) -> Result<(World, Plan)> {
    let mut world = discover::world(
        aws,
        &Target {
            cluster: &t.cluster,
            service: &t.service,
            task_definition: td,
        },
    )
    .await?;
    if let Some(src) = &t.source {
        let m = Mongo::connect(src, "source", MONGO_CONNECT_TIMEOUT).await?;
        world.source = Some(discover::mongo::source(&m).await?);
    }
    let plan = crate::engine::plan::plan(&world, &t.plan)?;
    Ok((world, plan))
}
