//! `efs2atlas plan`: discover and plan; changes nothing.

use crate::aws::{Aws, AwsOptions};
use crate::commands::{Done, Output, discover_and_plan};
use crate::engine::options::TargetOptions;
use crate::error::{Result, exit};

/// Shows what a migration would do.
pub async fn plan(aws: &AwsOptions, t: &TargetOptions) -> Result<Done> {
    let aws = Aws::load(aws).await?;
    let (world, plan) = discover_and_plan(&aws, t, None).await?;
    Ok(Done {
        code: if plan.ready { exit::OK } else { exit::REFUSED },
        output: Output::Plan {
            plan: Box::new(plan),
            world: Box::new(world),
            dry_run: false,
        },
        error: None,
    })
}
