//! The ECS side of the cutover: the Atlas credentials as a Secrets Manager secret the
//! execution role may read, the new task-definition revision, the service update with a wait
//! for steady state, and the rollback to the revision that still had the mongo container.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{Service, TaskDefinitionStatus};
use serde::{Deserialize, Serialize};

use crate::aws::{Aws, aws_error, error_code};
use crate::cancel::Cancel;
use crate::discover::ecs::{efs_ids, summarize, task_definition};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::taskdef::{FROM_REVISION_TAG, TaskDefSpec, dangling_references, family_of, revision_of};
use crate::world::is_mongo_image;

/// Creates the secret, or updates its value when it already exists; returns its ARN.
pub async fn ensure_secret(
    aws: &Aws,
    name: &str,
    value: &Secret,
    service_arn: &str,
) -> Result<String> {
    let created = aws
        .secrets
        .create_secret()
        .name(name)
        .description(format!(
            "MongoDB Atlas credentials for ECS service {service_arn}, written by efs2atlas"
        ))
        .secret_string(value.expose())
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("efs2atlas:service")
                .value(service_arn)
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(o) => o.arn.ok_or_else(|| {
            Error::other(format!(
                "Secrets Manager created {name} but returned no ARN"
            ))
        }),
        Err(e) if error_code(&e) == Some("ResourceExistsException") => {
            let o = aws
                .secrets
                .put_secret_value()
                .secret_id(name)
                .secret_string(value.expose())
                .send()
                .await
                .map_err(|e| aws_error("secretsmanager:PutSecretValue", Some(name), e))?;
            o.arn.ok_or_else(|| {
                Error::other(format!(
                    "Secrets Manager updated {name} but returned no ARN"
                ))
            })
        }
        Err(e) => Err(aws_error("secretsmanager:CreateSecret", Some(name), e)),
    }
}

/// The role name inside a role ARN (`arn:aws:iam::1:role/path/name` → `name`).
pub fn role_name(role_arn: &str) -> Option<&str> {
    let (_, rest) = role_arn.split_once(":role/")?;
    rest.rsplit('/').next().filter(|n| !n.is_empty())
}

/// The inline policy that lets the execution role read exactly one secret.
pub fn read_secret_policy(secret_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Efs2atlasReadAtlasCredentials",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [secret_arn],
        }]
    })
    .to_string()
}

/// The inline policy's name for a secret.
pub fn policy_name(secret_name: &str) -> String {
    let clean: String = secret_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("efs2atlas-read-{clean}")
}

/// Grants the execution role read access to the secret (an inline policy; idempotent).
pub async fn grant_secret_read(
    aws: &Aws,
    execution_role_arn: &str,
    secret_arn: &str,
    secret_name: &str,
) -> Result<String> {
    let role = role_name(execution_role_arn).ok_or_else(|| {
        Error::refused(format!("execution role '{execution_role_arn}' is not an IAM role ARN; cannot grant it access to the secret"))
    })?;
    let name = policy_name(secret_name);
    aws.iam
        .put_role_policy()
        .role_name(role)
        .policy_name(&name)
        .policy_document(read_secret_policy(secret_arn))
        .send()
        .await
        .map_err(|e| aws_error("iam:PutRolePolicy", Some(role), e))?;
    Ok(name)
}

/// Removes an inline policy efs2atlas put on a role (one already gone is fine).
pub async fn remove_role_policy(aws: &Aws, role_arn: &str, policy: &str) -> Result<()> {
    let role = role_name(role_arn)
        .ok_or_else(|| Error::other(format!("'{role_arn}' is not an IAM role ARN")))?;
    match aws
        .iam
        .delete_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(aws_error("iam:DeleteRolePolicy", Some(role), e)),
    }
}

/// Registers `spec` as a new revision, unless the family's newest ACTIVE revision already is
/// exactly that (a re-run after a crash between register and journal).
pub async fn register(aws: &Aws, spec: &TaskDefSpec) -> Result<String> {
    let dangling = dangling_references(spec);
    if !dangling.is_empty() {
        return Err(Error::refused(format!(
            "the new task definition would be invalid ({}); nothing was registered",
            dangling.join("; ")
        )));
    }
    if let Some(arn) = latest_revision(aws, &spec.family).await? {
        let (td, tags) = task_definition(aws, &arn).await?;
        if td.family.as_deref() == Some(spec.family.as_str())
            && TaskDefSpec::from_described(&td, &tags).normalized() == spec.normalized()
        {
            return Ok(arn);
        }
    }
    let out = spec
        .register(&aws.ecs)
        .send()
        .await
        .map_err(|e| aws_error("ecs:RegisterTaskDefinition", Some(&spec.family), e))?;
    out.task_definition
        .and_then(|t| t.task_definition_arn)
        .ok_or_else(|| {
            Error::other(format!(
                "ECS registered a revision of {} but returned no ARN",
                spec.family
            ))
        })
}

/// ACTIVE revisions of exactly `family`, newest first (ordering done here, not trusted to the API).
pub async fn family_revisions(aws: &Aws, family: &str) -> Result<Vec<String>> {
    let mut arns: Vec<String> = aws
        .ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_error("ecs:ListTaskDefinitions", Some(family), e))?;
    arns.retain(|a| family_of(a) == family);
    arns.sort_by_key(|a| std::cmp::Reverse(revision_of(a).unwrap_or(0)));
    Ok(arns)
}

async fn latest_revision(aws: &Aws, family: &str) -> Result<Option<String>> {
    Ok(family_revisions(aws, family).await?.into_iter().next())
}

/// Progress of a deployment wait, for the spinner.
pub trait DeployObserver: Send + Sync {
    /// A status line (`running 1/2, 2 deployments`).
    fn status(&self, _line: &str) {}
}

/// Ignores deployment progress.
pub struct QuietDeploy;
impl DeployObserver for QuietDeploy {}

/// How a service looked when last polled.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    /// The task definition the service is set to.
    pub task_definition: String,
    /// Desired tasks.
    pub desired: i32,
    /// Running tasks.
    pub running: i32,
    /// Number of deployments.
    pub deployments: usize,
    /// The primary deployment's rollout state, when reported.
    pub rollout_state: Option<String>,
    /// The primary deployment's rollout reason, when reported.
    pub rollout_reason: Option<String>,
}

impl ServiceState {
    fn of(s: &Service) -> ServiceState {
        let primary = s
            .deployments()
            .iter()
            .find(|d| d.status.as_deref() == Some("PRIMARY"));
        ServiceState {
            task_definition: s.task_definition.clone().unwrap_or_default(),
            desired: s.desired_count,
            running: s.running_count,
            deployments: s.deployments().len(),
            rollout_state: primary
                .and_then(|d| d.rollout_state.as_ref())
                .map(|r| r.as_str().to_string()),
            rollout_reason: primary.and_then(|d| d.rollout_state_reason.clone()),
        }
    }

    /// Steady on `td`: set to it, one deployment, running == desired (the criteria of AWS's own
    /// `services-stable` waiter), and a rollout that has not FAILED. A rollout still reported as
    /// IN_PROGRESS once the old deployment is gone is accepted, as that waiter does.
    pub fn steady_on(&self, td: &str) -> bool {
        self.task_definition == td
            && self.deployments == 1
            && self.running == self.desired
            && self.rollout_state.as_deref() != Some("FAILED")
    }

    fn line(&self) -> String {
        format!(
            "running {}/{}, {} deployment(s){}",
            self.running,
            self.desired,
            self.deployments,
            self.rollout_state
                .as_deref()
                .map(|r| format!(", rollout {r}"))
                .unwrap_or_default()
        )
    }
}

/// Reads the service's current state.
pub async fn service_state(aws: &Aws, cluster: &str, service: &str) -> Result<ServiceState> {
    let out = aws
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| aws_error("ecs:DescribeServices", Some(service), e))?;
    out.services().first().map(ServiceState::of).ok_or_else(|| {
        Error::not_found(format!(
            "ECS service '{service}' is gone from cluster '{cluster}'"
        ))
    })
}

/// Why a wait ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WaitEnd {
    /// Steady on the wanted revision.
    Steady,
    /// The deadline passed.
    Timeout,
    /// The rollout failed (ECS reported FAILED).
    Failed,
    /// ECS's circuit breaker moved the service back to another revision by itself.
    CircuitBreakerRolledBack,
}

/// Polls until the service is steady on `td`, fails, or `timeout` passes.
pub async fn wait_steady(
    aws: &Aws,
    cluster: &str,
    service: &str,
    td: &str,
    timeout: Duration,
    observer: &dyn DeployObserver,
    cancel: &Cancel,
) -> Result<(WaitEnd, ServiceState)> {
    let deadline = Instant::now() + timeout;
    let poll = (timeout / 30).clamp(Duration::from_millis(500), Duration::from_secs(10));
    let _w = crate::watch::waiting_on(format!(
        "ECS: service {service} to run {} steadily (bounded by --deploy-timeout {}s)",
        td.rsplit('/').next().unwrap_or(td),
        timeout.as_secs()
    ));
    let mut last_line = String::new();
    loop {
        let st = service_state(aws, cluster, service).await?;
        let line = st.line();
        if line != last_line {
            // A rollout that changes state is moving.
            crate::watch::progress();
            last_line.clone_from(&line);
        }
        observer.status(&line);
        if st.steady_on(td) {
            return Ok((WaitEnd::Steady, st));
        }
        if st.rollout_state.as_deref() == Some("FAILED") {
            let end = if st.task_definition != td {
                WaitEnd::CircuitBreakerRolledBack
            } else {
                WaitEnd::Failed
            };
            return Ok((end, st));
        }
        if st.task_definition != td && st.deployments == 1 {
            return Ok((WaitEnd::CircuitBreakerRolledBack, st));
        }
        if Instant::now() >= deadline {
            return Ok((WaitEnd::Timeout, st));
        }
        tokio::select! {
            _ = tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(50)))) => {}
            _ = cancel.cancelled() => return Err(Error::interrupted(format!("stopped waiting for service {service}; the deployment goes on in ECS"))),
        }
    }
}

/// What a deployment did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeployReport {
    /// True when the service ended steady on the new revision.
    pub ok: bool,
    /// The revision deployed.
    pub task_definition: String,
    /// The revision it replaced.
    pub previous: String,
    /// How the wait on the new revision ended.
    pub wait: WaitEnd,
    /// Set when efs2atlas rolled the service back, and how that wait ended.
    pub rollback: Option<WaitEnd>,
    /// Seconds from update to the end.
    pub seconds: f64,
    /// The service state at the end.
    pub final_state: ServiceState,
}

impl DeployReport {
    /// The outcome in one line.
    pub fn summary(&self) -> String {
        if self.ok {
            format!(
                "service steady on {} {:.1}s after the update ({}/{} running)",
                self.task_definition,
                self.seconds,
                self.final_state.running,
                self.final_state.desired
            )
        } else {
            format!(
                "{} did not become steady ({:?}); rolled back to {} ({:?}) {:.1}s after the update",
                self.task_definition,
                self.wait,
                self.previous,
                self.rollback.clone().unwrap_or(WaitEnd::Timeout),
                self.seconds
            )
        }
    }
}

/// Points the service at `new_td`, waits for steady state, and rolls back to `old_td` (and
/// waits again) when it does not get there. A circuit breaker that already rolled back is
/// respected: efs2atlas does not deploy again on top of it.
#[allow(clippy::too_many_arguments)]
pub async fn deploy(
    aws: &Aws,
    cluster: &str,
    service: &str,
    new_td: &str,
    old_td: &str,
    timeout: Duration,
    observer: &dyn DeployObserver,
    cancel: &Cancel,
) -> Result<DeployReport> {
    let started = Instant::now();
    let current = service_state(aws, cluster, service).await?;
    if current.task_definition != new_td {
        update_service(aws, cluster, service, new_td).await?;
    }
    let (end, st) = wait_steady(aws, cluster, service, new_td, timeout, observer, cancel).await?;
    if end == WaitEnd::Steady {
        return Ok(DeployReport {
            ok: true,
            task_definition: new_td.into(),
            previous: old_td.into(),
            wait: end,
            rollback: None,
            seconds: started.elapsed().as_secs_f64(),
            final_state: st,
        });
    }
    let rb_end = if end == WaitEnd::CircuitBreakerRolledBack && st.task_definition == old_td {
        // ECS already went back; just wait for it to settle.
        wait_steady(aws, cluster, service, old_td, timeout, observer, cancel).await?
    } else {
        update_service(aws, cluster, service, old_td).await?;
        wait_steady(aws, cluster, service, old_td, timeout, observer, cancel).await?
    };
    Ok(DeployReport {
        ok: false,
        task_definition: new_td.into(),
        previous: old_td.into(),
        wait: end,
        rollback: Some(rb_end.0),
        seconds: started.elapsed().as_secs_f64(),
        final_state: rb_end.1,
    })
}

/// Sets the service's task definition.
pub async fn update_service(aws: &Aws, cluster: &str, service: &str, td: &str) -> Result<()> {
    aws.ecs
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(td)
        .send()
        .await
        .map_err(|e| aws_error("ecs:UpdateService", Some(service), e))?;
    Ok(())
}

/// The revision `rollback` would return to.
#[derive(Clone, Debug, Serialize)]
pub struct RollbackTarget {
    /// The service's current revision.
    pub current: String,
    /// The revision with the mongo container to go back to.
    pub target: String,
    /// Its EFS file systems (all still exist).
    pub file_systems: Vec<String>,
}

/// Finds the newest earlier revision of the service's family that still runs a mongo
/// container, and checks its EFS still exists.
pub async fn rollback_target(aws: &Aws, cluster: &str, service: &str) -> Result<RollbackTarget> {
    let svc = crate::discover::ecs::service(aws, cluster, service).await?;
    let (cur, cur_tags) = task_definition(aws, &svc.task_definition_arn).await?;
    let has_mongo = |td: &aws_sdk_ecs::types::TaskDefinition| {
        summarize(td)
            .containers
            .iter()
            .any(|c| is_mongo_image(&c.image))
    };
    if has_mongo(&cur) {
        return Err(Error::refused(format!(
            "service {service} already runs {}, which has the mongo container; there is nothing to roll back",
            svc.task_definition_arn
        )));
    }
    let family = cur.family.clone().unwrap_or_default();
    let tagged = cur_tags
        .iter()
        .find(|t| t.key.as_deref() == Some(FROM_REVISION_TAG))
        .and_then(|t| t.value.clone());
    let candidates: Vec<String> = match tagged {
        Some(arn) => vec![arn],
        None => family_revisions(aws, &family).await?,
    };
    for arn in candidates {
        let (td, _) = task_definition(aws, &arn).await?;
        if td.family.as_deref() != Some(family.as_str())
            || td.revision >= cur.revision
            || !has_mongo(&td)
        {
            continue;
        }
        let mut missing = Vec::new();
        let fs: Vec<String> = efs_ids(&td).into_iter().collect();
        for id in &fs {
            if crate::discover::efs::file_system(aws, id).await?.is_none() {
                missing.push(id.clone());
            }
        }
        if !missing.is_empty() {
            return Err(Error::refused(format!(
                "cannot roll back service {service} to {arn}: its EFS {} no longer exists, so MongoDB would start with an empty data directory. The data now lives only in Atlas",
                missing.join(", ")
            )));
        }
        return Ok(RollbackTarget {
            current: svc.task_definition_arn.clone(),
            target: arn,
            file_systems: fs,
        });
    }
    Err(Error::refused(format!(
        "no earlier revision of family {family} runs a mongo container; there is nothing for service {service} to roll back to"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_and_policies() {
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/ecsTaskExecutionRole"),
            Some("ecsTaskExecutionRole")
        );
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/service-role/x"),
            Some("x")
        );
        assert_eq!(role_name("ecsTaskExecutionRole"), None);
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:efs2atlas/c/s-AbC123";
        let p: serde_json::Value = serde_json::from_str(&read_secret_policy(arn)).unwrap();
        assert_eq!(p["Statement"][0]["Resource"][0], arn);
        assert_eq!(
            p["Statement"][0]["Action"][0],
            "secretsmanager:GetSecretValue"
        );
        assert_eq!(policy_name("efs2atlas/c/s"), "efs2atlas-read-efs2atlas-c-s");
    }

    #[test]
    fn steadiness_rules() {
        let st = |td: &str, d, r, n, roll: Option<&str>| ServiceState {
            task_definition: td.into(),
            desired: d,
            running: r,
            deployments: n,
            rollout_state: roll.map(String::from),
            rollout_reason: None,
        };
        assert!(st("new", 2, 2, 1, None).steady_on("new"));
        assert!(st("new", 2, 2, 1, Some("COMPLETED")).steady_on("new"));
        assert!(st("new", 2, 2, 1, Some("IN_PROGRESS")).steady_on("new"));
        assert!(!st("new", 2, 2, 1, Some("FAILED")).steady_on("new"));
        assert!(!st("new", 2, 1, 1, None).steady_on("new"));
        assert!(!st("new", 2, 2, 2, None).steady_on("new"));
        assert!(!st("old", 2, 2, 1, None).steady_on("new"));
    }
}
