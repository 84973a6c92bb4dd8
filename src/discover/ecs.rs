//! Read-only ECS discovery: the service, its task definition, and who else mounts the EFS.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_ecs::types::{
    DesiredStatus, TaskDefinition, TaskDefinitionField, TaskDefinitionStatus,
};
use futures_util::{StreamExt, stream};

use crate::aws::{Aws, aws_error, error_code};
use crate::error::{Error, Result};
use crate::world::*;

/// Describes the service, refusing clearly when the cluster or service is not there.
pub async fn service(aws: &Aws, cluster: &str, service: &str) -> Result<ServiceInfo> {
    let out = match aws
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("ClusterNotFoundException") => {
            return Err(Error::not_found(format!(
                "ECS cluster '{cluster}' does not exist in {}; check --cluster and --region (aws ecs list-clusters)",
                aws.region
            )));
        }
        Err(e) => return Err(aws_error("ecs:DescribeServices", Some(service), e)),
    };
    let s = out
        .services()
        .iter()
        .find(|s| s.status.as_deref() != Some("INACTIVE"))
        .ok_or_else(|| {
            Error::not_found(format!(
                "ECS service '{service}' does not exist in cluster '{cluster}'; check --service (aws ecs list-services --cluster {cluster})"
            ))
        })?;
    let cluster_arn = s.cluster_arn.clone().unwrap_or_default();
    let (network, deployments, circuit_breaker) = (network_of(s), deployments_of(s), breaker_of(s));
    Ok(ServiceInfo {
        cluster: cluster_arn.rsplit('/').next().unwrap_or(cluster).to_string(),
        cluster_arn,
        name: s.service_name.clone().unwrap_or_else(|| service.to_string()),
        arn: s.service_arn.clone().unwrap_or_default(),
        status: s.status.clone().unwrap_or_default(),
        task_definition_arn: s.task_definition.clone().ok_or_else(|| {
            Error::refused(format!(
                "ECS service '{service}' has no task definition (it may use an external deployment controller); efs2atlas needs an ECS-managed service"
            ))
        })?,
        desired_count: s.desired_count,
        running_count: s.running_count,
        pending_count: s.pending_count,
        launch_type: s.launch_type.as_ref().map(|l| l.as_str().to_string()),
        capacity_providers: s
            .capacity_provider_strategy()
            .iter()
            .map(|c| c.capacity_provider.clone())
            .collect(),
        network,
        deployments,
        circuit_breaker,
    })
}

/// The service's awsvpc settings.
fn network_of(s: &aws_sdk_ecs::types::Service) -> Option<NetworkInfo> {
    s.network_configuration
        .as_ref()
        .and_then(|n| n.awsvpc_configuration.as_ref())
        .map(|a| NetworkInfo {
            subnets: a.subnets.clone(),
            security_groups: a.security_groups().to_vec(),
            assign_public_ip: a
                .assign_public_ip
                .as_ref()
                .map(|x| x.as_str().to_string())
                .unwrap_or_default(),
        })
}

/// The service's deployments.
fn deployments_of(s: &aws_sdk_ecs::types::Service) -> Vec<DeploymentInfo> {
    s.deployments()
        .iter()
        .map(|d| DeploymentInfo {
            id: d.id.clone().unwrap_or_default(),
            status: d.status.clone().unwrap_or_default(),
            task_definition_arn: d.task_definition.clone().unwrap_or_default(),
            desired_count: d.desired_count,
            running_count: d.running_count,
            rollout_state: d.rollout_state.as_ref().map(|r| r.as_str().to_string()),
        })
        .collect()
}

/// The service's deployment circuit breaker.
fn breaker_of(s: &aws_sdk_ecs::types::Service) -> Option<CircuitBreaker> {
    s.deployment_configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker.as_ref())
        .map(|c| CircuitBreaker {
            enable: c.enable,
            rollback: c.rollback,
        })
}

/// Describes a task definition with its tags.
pub async fn task_definition(
    aws: &Aws,
    arn: &str,
) -> Result<(TaskDefinition, Vec<aws_sdk_ecs::types::Tag>)> {
    let out = aws
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| aws_error("ecs:DescribeTaskDefinition", Some(arn), e))?;
    let td = out.task_definition.ok_or_else(|| {
        Error::not_found(format!("task definition {arn} was not returned by ECS"))
    })?;
    Ok((td, out.tags.unwrap_or_default()))
}

/// The EFS file system ids a task definition mounts.
pub fn efs_ids(td: &TaskDefinition) -> BTreeSet<String> {
    td.volumes()
        .iter()
        .filter_map(|v| {
            v.efs_volume_configuration
                .as_ref()
                .map(|e| e.file_system_id.clone())
        })
        .collect()
}

/// Summarises a task definition for display (secrets masked).
pub fn summarize(td: &TaskDefinition) -> TaskDefInfo {
    let containers = td
        .container_definitions()
        .iter()
        .map(container_info)
        .collect();
    let volumes = td.volumes().iter().map(volume_info).collect();
    TaskDefInfo {
        arn: td.task_definition_arn.clone().unwrap_or_default(),
        family: td.family.clone().unwrap_or_default(),
        revision: td.revision,
        network_mode: td.network_mode.as_ref().map(|n| n.as_str().to_string()),
        requires_compatibilities: td
            .requires_compatibilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        execution_role_arn: td.execution_role_arn.clone(),
        task_role_arn: td.task_role_arn.clone(),
        cpu: td.cpu.clone(),
        memory: td.memory.clone(),
        containers,
        volumes,
        replaces: None,
    }
}

/// One container of a task definition, env values masked where sensitive.
fn container_info(c: &aws_sdk_ecs::types::ContainerDefinition) -> ContainerInfo {
    ContainerInfo {
        name: c.name.clone().unwrap_or_default(),
        image: c.image.clone().unwrap_or_default(),
        essential: c.essential.unwrap_or(true),
        environment: c
            .environment()
            .iter()
            .map(|kv| {
                let name = kv.name.clone().unwrap_or_default();
                let value = kv.value.clone().unwrap_or_default();
                let shown = crate::taskdef::shown_env_value(&name, &value, &[]);
                let value = if shown == value {
                    ShownValue::Plain(value)
                } else {
                    ShownValue::Sensitive {
                        shown,
                        value: crate::secret::Secret::new(value),
                    }
                };
                EnvVar { name, value }
            })
            .collect(),
        secrets: c
            .secrets()
            .iter()
            .map(|s| SecretRef {
                name: s.name.clone(),
                value_from: s.value_from.clone(),
            })
            .collect(),
        mount_points: c
            .mount_points()
            .iter()
            .map(|m| MountPointInfo {
                source_volume: m.source_volume.clone().unwrap_or_default(),
                container_path: m.container_path.clone().unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            })
            .collect(),
        depends_on: c
            .depends_on()
            .iter()
            .map(|d| d.container_name.clone())
            .collect(),
        links: c.links().to_vec(),
        volumes_from: c
            .volumes_from()
            .iter()
            .filter_map(|v| v.source_container.clone())
            .collect(),
        ports: c
            .port_mappings()
            .iter()
            .filter_map(|p| p.container_port)
            .collect(),
    }
}

/// One volume of a task definition.
fn volume_info(v: &aws_sdk_ecs::types::Volume) -> VolumeInfo {
    let (kind, fs, ap, root) = if let Some(e) = &v.efs_volume_configuration {
        (
            "efs",
            Some(e.file_system_id.clone()),
            e.authorization_config
                .as_ref()
                .and_then(|a| a.access_point_id.clone()),
            e.root_directory.clone(),
        )
    } else if v.docker_volume_configuration.is_some() {
        ("docker", None, None, None)
    } else if v.fsx_windows_file_server_volume_configuration.is_some() {
        ("fsx", None, None, None)
    } else if v.host.as_ref().is_some_and(|h| h.source_path.is_some()) {
        ("host", None, None, None)
    } else {
        ("bind", None, None, None)
    };
    VolumeInfo {
        name: v.name.clone().unwrap_or_default(),
        kind: kind.into(),
        file_system_id: fs,
        access_point_id: ap,
        root_directory: root,
    }
}

/// How many describe calls run at once while scanning the account.
const SCAN_CONCURRENCY: usize = 8;

/// Every task definition revision, service and running task in the region (other than the
/// migrated service's current revision) that mounts one of `fs_ids`.
pub async fn efs_users(
    aws: &Aws,
    fs_ids: &BTreeSet<String>,
    own_family: &str,
    own_td_arn: &str,
    own_service_arn: &str,
) -> Result<Vec<EfsUser>> {
    if fs_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut scan = Scan {
        aws,
        fs_ids,
        own_family,
        own_service_arn,
        cache: HashMap::new(),
        users: Vec::new(),
    };
    scan.task_definitions(own_td_arn).await?;
    let clusters: Vec<String> = aws
        .ecs
        .list_clusters()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_error("ecs:ListClusters", None, e))?;
    for cluster in &clusters {
        scan.services(cluster).await?;
        scan.tasks(cluster).await?;
    }
    Ok(scan.users)
}

/// The account-wide search for other users of the EFS.
struct Scan<'a> {
    aws: &'a Aws,
    fs_ids: &'a BTreeSet<String>,
    own_family: &'a str,
    own_service_arn: &'a str,
    /// Task definition ARN → the EFS ids it mounts.
    cache: HashMap<String, BTreeSet<String>>,
    users: Vec<EfsUser>,
}

impl Scan<'_> {
    /// Records `arn` (of `kind`, running `td_arn`) as a user of each EFS it mounts.
    async fn found(&mut self, kind: &str, arn: &str, td_arn: &str) -> Result<()> {
        describe_into(self.aws, &mut self.cache, vec![td_arn.to_string()]).await?;
        let Some(mounts) = self.cache.get(td_arn) else {
            return Ok(());
        };
        for fs in mounts.intersection(self.fs_ids) {
            let family = crate::taskdef::family_of(td_arn).to_string();
            self.users.push(EfsUser {
                file_system_id: fs.clone(),
                kind: kind.into(),
                arn: arn.to_string(),
                same_family: family == self.own_family,
                family,
            });
        }
        Ok(())
    }

    /// Every ACTIVE task definition revision but the service's own.
    async fn task_definitions(&mut self, own_td_arn: &str) -> Result<()> {
        let arns: Vec<String> = self
            .aws
            .ecs
            .list_task_definitions()
            .status(TaskDefinitionStatus::Active)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_error("ecs:ListTaskDefinitions", None, e))?;
        describe_into(self.aws, &mut self.cache, arns.clone()).await?;
        for arn in arns.iter().filter(|a| *a != own_td_arn) {
            self.found("task-definition", arn, arn).await?;
        }
        Ok(())
    }

    /// The other services of `cluster`.
    async fn services(&mut self, cluster: &str) -> Result<()> {
        let ecs = &self.aws.ecs;
        let services: Vec<String> = ecs
            .list_services()
            .cluster(cluster)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_error("ecs:ListServices", Some(cluster), e))?;
        for chunk in services.chunks(10) {
            let out = ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| aws_error("ecs:DescribeServices", Some(cluster), e))?;
            for s in out.services() {
                let (Some(arn), Some(td)) =
                    (s.service_arn.as_deref(), s.task_definition.as_deref())
                else {
                    continue;
                };
                if arn == self.own_service_arn || s.status.as_deref() == Some("INACTIVE") {
                    continue;
                }
                self.found("service", arn, td).await?;
            }
        }
        Ok(())
    }

    /// The running tasks of `cluster` that are not the service's own.
    async fn tasks(&mut self, cluster: &str) -> Result<()> {
        let ecs = &self.aws.ecs;
        let tasks: Vec<String> = ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(DesiredStatus::Running)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_error("ecs:ListTasks", Some(cluster), e))?;
        let own_group = format!(
            "service:{}",
            self.own_service_arn.rsplit('/').next().unwrap_or_default()
        );
        for chunk in tasks.chunks(100) {
            let out = ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| aws_error("ecs:DescribeTasks", Some(cluster), e))?;
            for t in out.tasks() {
                let (Some(arn), Some(td)) =
                    (t.task_arn.as_deref(), t.task_definition_arn.as_deref())
                else {
                    continue;
                };
                if t.group.as_deref() != Some(own_group.as_str()) {
                    self.found("task", arn, td).await?;
                }
            }
        }
        Ok(())
    }
}

/// Describes the task definitions not yet in `cache` (a few at a time) and records the EFS
/// file systems each mounts.
async fn describe_into(
    aws: &Aws,
    cache: &mut HashMap<String, BTreeSet<String>>,
    arns: Vec<String>,
) -> Result<()> {
    let todo: Vec<String> = arns
        .into_iter()
        .filter(|a| !cache.contains_key(a))
        .collect();
    let results: Vec<Result<(String, BTreeSet<String>)>> = stream::iter(todo)
        .map(|arn| async move {
            let out = aws
                .ecs
                .describe_task_definition()
                .task_definition(&arn)
                .send()
                .await
                .map_err(|e| aws_error("ecs:DescribeTaskDefinition", Some(&arn), e))?;
            Ok((
                arn,
                out.task_definition
                    .as_ref()
                    .map(efs_ids)
                    .unwrap_or_default(),
            ))
        })
        .buffer_unordered(SCAN_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        let (arn, ids) = r?;
        cache.insert(arn, ids);
    }
    Ok(())
}
