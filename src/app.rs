//! Command runners: glue from parsed flags to discovery, planning and output.

use std::time::Duration;

use serde_json::json;

use crate::aws::{Aws, AwsOptions};
use crate::cli::{Cli, Command, GlobalArgs, PlanArgs, TargetArgs};
use crate::discover::{self, Target};
use crate::envmap::EnvOverride;
use crate::error::{Error, Result, exit};
use crate::mongo::Mongo;
use crate::plan::{self, Plan, PlanOptions};
use crate::ui;
use crate::uri::MongoUri;
use crate::world::World;

/// How long to wait for a Mongo server to answer before saying it is unreachable.
pub const MONGO_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Runs the parsed command and returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Plan(args) => plan_cmd(&cli.global, args).await,
    }
}

/// Parses the flags that shape a plan.
pub fn plan_options(t: &TargetArgs) -> Result<PlanOptions> {
    let atlas = MongoUri::parse("--atlas-uri", &t.atlas_uri)?;
    let env = t
        .env
        .iter()
        .map(|e| EnvOverride::parse(e))
        .collect::<Result<Vec<_>>>()?;
    let images = t
        .image
        .iter()
        .map(|i| {
            i.split_once('=')
                .filter(|(c, img)| !c.is_empty() && !img.is_empty())
                .map(|(c, img)| (c.to_string(), img.to_string()))
                .ok_or_else(|| Error::Usage(format!("--image '{i}' must be CONTAINER=IMAGE, e.g. --image backend=me/backend:atlas")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PlanOptions {
        atlas,
        mongo_container: t.mongo_container.clone(),
        env,
        images,
        credentials: t.credentials,
        keep_efs: t.keep_efs,
    })
}

/// Discovers the world for `t` (and the source, when `--source-uri` is given) and plans.
pub async fn discover_and_plan(global: &GlobalArgs, t: &TargetArgs) -> Result<(World, Plan)> {
    let opts = plan_options(t)?;
    let source = t
        .source_uri
        .as_deref()
        .map(|s| MongoUri::parse("--source-uri", s))
        .transpose()?;
    let aws = Aws::load(&AwsOptions {
        region: global.region.clone(),
        profile: global.profile.clone(),
    })
    .await?;
    let mut world = discover::world(
        &aws,
        &Target {
            cluster: &t.cluster,
            service: &t.service,
        },
    )
    .await?;
    if let Some(src) = &source {
        let m = Mongo::connect(src, "source", MONGO_CONNECT_TIMEOUT).await?;
        world.source = Some(discover::mongo::source(&m).await?);
    }
    let plan = plan::plan(&world, &opts)?;
    Ok((world, plan))
}

async fn plan_cmd(global: &GlobalArgs, args: &PlanArgs) -> Result<i32> {
    let (world, plan) = discover_and_plan(global, &args.target).await?;
    if args.json {
        ui::print_json(&json!({"plan": plan, "world": world}));
    } else {
        print!("{}", ui::plan_text(&plan, &world));
    }
    Ok(if plan.ready { exit::OK } else { exit::REFUSED })
}
