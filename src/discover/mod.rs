//! Discovery: reads the world (ECS → task definition → EFS → security groups, and the source
//! Mongo) into one [`World`]. Nothing here writes.

pub mod ec2;
pub mod ecs;
pub mod efs;
pub mod egress;
pub mod mongo;

use std::collections::BTreeSet;

use crate::aws::{Aws, aws_error};
use crate::error::Result;
use crate::taskdef::TaskDefSpec;
use crate::world::World;

/// What to discover.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// Cluster name or ARN.
    pub cluster: &'a str,
    /// Service name or ARN.
    pub service: &'a str,
    /// Plan from this revision instead of the service's current one (resume after cutover).
    pub task_definition: Option<&'a str>,
}

/// The AWS account these credentials act in, and the caller's ARN.
pub async fn identity(aws: &Aws) -> Result<(String, String)> {
    let me = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws_error("sts:GetCallerIdentity", None, e))?;
    Ok((me.account.unwrap_or_default(), me.arn.unwrap_or_default()))
}

/// Reads the AWS side of the world. The source Mongo is added by the caller when a
/// `--source-uri` was given.
pub async fn world(aws: &Aws, target: &Target<'_>) -> Result<World> {
    let (account, caller_arn) = identity(aws).await?;
    let service = ecs::service(aws, target.cluster, target.service).await?;
    let td_arn = target
        .task_definition
        .unwrap_or(&service.task_definition_arn)
        .to_string();
    let (td, tags) = ecs::task_definition(aws, &td_arn).await?;
    let fs_ids = ecs::efs_ids(&td);
    let mut file_systems = Vec::new();
    for id in &fs_ids {
        if let Some(fs) = efs::file_system(aws, id).await? {
            file_systems.push(fs);
        }
    }
    let sg_ids: BTreeSet<String> = file_systems
        .iter()
        .flat_map(|f| {
            f.mount_targets
                .iter()
                .flat_map(|m| m.security_groups.iter().cloned())
        })
        .collect();
    let mut security_groups =
        ec2::security_groups(aws, &sg_ids.into_iter().collect::<Vec<_>>()).await?;
    for sg in &mut security_groups {
        sg.used_by_file_systems = file_systems
            .iter()
            .filter(|f| {
                f.mount_targets
                    .iter()
                    .any(|m| m.security_groups.contains(&sg.id))
            })
            .map(|f| f.id.clone())
            .collect();
    }
    let mut info = ecs::summarize(&td);
    info.replaces = tags
        .iter()
        .find(|t| t.key.as_deref() == Some(crate::taskdef::FROM_REVISION_TAG))
        .and_then(|t| t.value.clone());
    let efs_users = ecs::efs_users(aws, &fs_ids, &info.family, &info.arn, &service.arn).await?;
    Ok(World {
        account,
        caller_arn,
        region: aws.region.clone(),
        task_definition_spec: TaskDefSpec::from_described(&td, &tags),
        task_definition: info,
        service,
        file_systems,
        security_groups,
        efs_users,
        source: None,
        target: None,
        atlas: None,
        egress: None,
    })
}
