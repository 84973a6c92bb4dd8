//! The AWS side of a runner task (`--runner ecs`): its task definition, log group, temporary
//! secret and security-group rule, RunTask/StopTask/DescribeTasks, and reading its log stream.
//! Everything temporary is named or tagged so a later run (or `resume`) finds and removes it.

use aws_sdk_ec2::types::{IpPermission, UserIdGroupPair};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType,
    LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, Secret as EcsSecret, Tag,
};
use serde::{Deserialize, Serialize};

use crate::aws::{Aws, aws_error, error_code};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The runner's task-definition family.
pub const FAMILY: &str = "efs2atlas-runner";
/// The runner's container name (and so its log stream's middle part).
pub const CONTAINER: &str = "efs2atlas";
/// Its log group.
pub const LOG_GROUP: &str = "/efs2atlas/runner";
/// The awslogs stream prefix.
pub const STREAM_PREFIX: &str = "efs2atlas";
/// The environment variable the runner reads its spec from (injected from the secret).
pub const SPEC_ENV: &str = "EFS2ATLAS_RUNNER_SPEC";
/// Secrets Manager's limit on a secret's value.
pub const MAX_SPEC_BYTES: usize = 65_536;

/// What the runner task definition is made of.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerImage {
    /// Container image.
    pub image: String,
    /// Task CPU units.
    pub cpu: u32,
    /// Task memory (MiB).
    pub memory: u32,
    /// The execution role (pulls the image, reads the secret, writes the logs).
    pub execution_role: String,
}

/// Where the runner runs: the service's network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Cluster.
    pub cluster: String,
    /// Subnets.
    pub subnets: Vec<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// ENABLED or DISABLED, as the service.
    pub assign_public_ip: String,
    /// The service's platform version.
    pub platform_version: Option<String>,
}

/// A temporary ingress rule efs2atlas added so the runner reaches the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    /// The group the rule is on (the source task's).
    pub group_id: String,
    /// TCP port.
    pub port: u16,
    /// The group allowed in (the runner's).
    pub from_group: String,
}

/// How a runner task stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskState {
    /// PROVISIONING, PENDING, RUNNING, ..., STOPPED.
    pub last_status: String,
    /// Why it stopped.
    pub stopped_reason: Option<String>,
    /// The container's reason (e.g. CannotPullContainerError ...).
    pub container_reason: Option<String>,
    /// The container's exit code.
    pub exit_code: Option<i32>,
}

impl TaskState {
    /// True once the task stopped.
    pub fn stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }

    /// Why it stopped, in one line.
    pub fn why(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(r) = &self.stopped_reason {
            parts.push(r.clone());
        }
        if let Some(r) = &self.container_reason {
            parts.push(r.clone());
        }
        if let Some(c) = self.exit_code {
            parts.push(format!("exit code {c}"));
        }
        if parts.is_empty() {
            "no reason given".into()
        } else {
            parts.join("; ")
        }
    }
}

/// The log stream awslogs writes a runner task's output to.
pub fn log_stream(task_arn: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    format!("{STREAM_PREFIX}/{CONTAINER}/{id}")
}

/// Creates the log group unless it exists.
pub async fn ensure_log_group(aws: &Aws) -> Result<()> {
    match aws
        .logs
        .create_log_group()
        .log_group_name(LOG_GROUP)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
        Err(e) => Err(aws_error("logs:CreateLogGroup", Some(LOG_GROUP), e)),
    }
}

/// Writes the runner's spec (URIs and journal) into its temporary secret; returns the ARN.
pub async fn put_spec(aws: &Aws, name: &str, spec: &Secret, service_arn: &str) -> Result<String> {
    if spec.expose().len() > MAX_SPEC_BYTES {
        return Err(Error::other(format!(
            "the runner's instructions are {} bytes, over Secrets Manager's {MAX_SPEC_BYTES}: too many collections for one runner task; run efs2atlas inside the VPC instead (docs/guide.md)",
            spec.expose().len()
        )));
    }
    crate::deploy::ensure_secret(aws, name, spec, service_arn).await
}

/// Deletes the temporary secret at once (no recovery window: it held credentials).
pub async fn delete_secret(aws: &Aws, arn: &str) -> Result<()> {
    match aws
        .secrets
        .delete_secret()
        .secret_id(arn)
        .force_delete_without_recovery(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
        Err(e) => Err(aws_error("secretsmanager:DeleteSecret", Some(arn), e)),
    }
}

/// Registers the runner's task definition; returns its ARN.
pub async fn register(aws: &Aws, image: &RunnerImage, secret_arn: &str) -> Result<String> {
    let logs = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", LOG_GROUP)
        .options("awslogs-region", &aws.region)
        .options("awslogs-stream-prefix", STREAM_PREFIX)
        .build()
        .map_err(|e| Error::other(format!("runner log configuration: {e}")))?;
    let spec = EcsSecret::builder()
        .name(SPEC_ENV)
        .value_from(secret_arn)
        .build()
        .map_err(|e| Error::other(format!("runner secret reference: {e}")))?;
    let container = ContainerDefinition::builder()
        .name(CONTAINER)
        .image(&image.image)
        .essential(true)
        // The whole task's size (Fargate needs only the task's; some tools need the
        // container's too).
        .cpu(image.cpu as i32)
        .memory(image.memory as i32)
        .command("runner")
        .secrets(spec)
        .log_configuration(logs)
        .build();
    let out = aws
        .ecs
        .register_task_definition()
        .family(FAMILY)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(image.cpu.to_string())
        .memory(image.memory.to_string())
        .execution_role_arn(&image.execution_role)
        .container_definitions(container)
        .tags(Tag::builder().key("efs2atlas:runner").value("true").build())
        .send()
        .await
        .map_err(|e| aws_error("ecs:RegisterTaskDefinition", Some(FAMILY), e))?;
    out.task_definition
        .and_then(|t| t.task_definition_arn)
        .ok_or_else(|| Error::other("ECS registered the runner but returned no ARN"))
}

/// Deregisters a runner revision (idempotent).
pub async fn deregister(aws: &Aws, arn: &str) -> Result<()> {
    match aws
        .ecs
        .deregister_task_definition()
        .task_definition(arn)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ClientException") => Ok(()),
        Err(e) => Err(aws_error("ecs:DeregisterTaskDefinition", Some(arn), e)),
    }
}

/// Starts one runner task in the service's network; returns its ARN.
pub async fn run(aws: &Aws, at: &Placement, task_definition: &str, tag: &str) -> Result<String> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(at.subnets.clone()))
        .set_security_groups(Some(at.security_groups.clone()))
        .assign_public_ip(if at.assign_public_ip == "ENABLED" {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| Error::other(format!("runner network: {e}")))?;
    let out = aws
        .ecs
        .run_task()
        .cluster(&at.cluster)
        .task_definition(task_definition)
        .launch_type(LaunchType::Fargate)
        .set_platform_version(at.platform_version.clone())
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .started_by("efs2atlas")
        .tags(Tag::builder().key("efs2atlas:migration").value(tag).build())
        .count(1)
        .send()
        .await
        .map_err(|e| aws_error("ecs:RunTask", Some(&at.cluster), e))?;
    if let Some(f) = out.failures().first() {
        return Err(Error::other(format!(
            "ECS could not start the runner task: {} {}",
            f.reason().unwrap_or("(no reason)"),
            f.detail().unwrap_or("")
        )));
    }
    out.tasks()
        .first()
        .and_then(|t| t.task_arn.clone())
        .ok_or_else(|| Error::other("ECS started no runner task and gave no reason"))
}

/// How a task stands.
pub async fn describe(aws: &Aws, cluster: &str, task: &str) -> Result<TaskState> {
    let out = aws
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|e| aws_error("ecs:DescribeTasks", Some(task), e))?;
    let Some(t) = out.tasks().first() else {
        return Ok(TaskState {
            last_status: "STOPPED".into(),
            stopped_reason: Some("ECS no longer knows the task".into()),
            ..TaskState::default()
        });
    };
    let c = t.containers().iter().find(|c| c.name() == Some(CONTAINER));
    Ok(TaskState {
        last_status: t.last_status().unwrap_or("PENDING").to_string(),
        stopped_reason: t.stopped_reason().map(str::to_string),
        container_reason: c.and_then(|c| c.reason()).map(str::to_string),
        exit_code: c.and_then(|c| c.exit_code()),
    })
}

/// Asks ECS to stop a task (SIGTERM; the runner stops at a batch boundary).
pub async fn stop(aws: &Aws, cluster: &str, task: &str, reason: &str) -> Result<()> {
    aws.ecs
        .stop_task()
        .cluster(cluster)
        .task(task)
        .reason(reason)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_error("ecs:StopTask", Some(task), e))
}

/// Reads the next log lines of a runner (`token` from the previous read); an empty read
/// when the stream does not exist yet.
pub async fn read_logs(
    aws: &Aws,
    stream: &str,
    token: Option<String>,
) -> Result<(Vec<String>, Option<String>)> {
    let out = aws
        .logs
        .get_log_events()
        .log_group_name(LOG_GROUP)
        .log_stream_name(stream)
        .start_from_head(true)
        .set_next_token(token.clone())
        .send()
        .await;
    match out {
        Ok(o) => {
            let lines = o
                .events()
                .iter()
                .filter_map(|e| e.message.clone())
                .collect();
            Ok((lines, o.next_forward_token.or(token)))
        }
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok((Vec::new(), token)),
        Err(e) => Err(aws_error("logs:GetLogEvents", Some(stream), e)),
    }
}

/// The private address of the service's one running task (the source), for the runner.
pub async fn source_address(aws: &Aws, cluster: &str, service: &str) -> Result<String> {
    let arns = aws
        .ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .send()
        .await
        .map_err(|e| aws_error("ecs:ListTasks", Some(service), e))?;
    let arns = arns.task_arns().to_vec();
    if arns.is_empty() {
        return Err(Error::refused(format!(
            "service {service} runs no task: there is no source for the runner to reach"
        )));
    }
    let out = aws
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|e| aws_error("ecs:DescribeTasks", Some(service), e))?;
    let group = format!("service:{service}");
    out.tasks()
        .iter()
        .filter(|t| t.last_status() == Some("RUNNING") && t.group() == Some(group.as_str()))
        .flat_map(|t| t.attachments())
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value().map(str::to_string))
        .ok_or_else(|| {
            Error::refused(format!(
                "the running task of service {service} has no private IPv4 address (awsvpc) for the runner to reach"
            ))
        })
}

/// The source URI as the runner uses it: a loopback host (how the operator reaches the
/// mongo container through a tunnel) means the mongo task itself, at its private address and
/// the container's port; any other host is kept.
pub fn runner_source(uri: &str, task_ip: &str, port: u16) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let end = hostpart.find(['/', '?']).unwrap_or(hostpart.len());
    let (hosts, tail) = hostpart.split_at(end);
    let loopback = hosts.split(',').all(|h| {
        let host = h.rsplit_once(':').map_or(h, |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
    });
    if !loopback || scheme != "mongodb" {
        return uri.to_string();
    }
    format!("{scheme}://{userinfo}{task_ip}:{port}{tail}")
}

/// True when the source's groups admit TCP `port` from the runner's groups (a rule naming one
/// of them, or an address range covering the runner's subnets).
pub fn admits(
    permissions: &[IpPermission],
    port: u16,
    runner_groups: &[String],
    runner_cidrs: &[String],
) -> bool {
    permissions.iter().any(|p| {
        let proto = p.ip_protocol().unwrap_or("");
        let covers = proto == "-1"
            || (proto == "tcp"
                && p.from_port().unwrap_or(0) <= i32::from(port)
                && p.to_port().unwrap_or(0) >= i32::from(port));
        let by_group = p.user_id_group_pairs().iter().any(|g| {
            g.group_id()
                .is_some_and(|id| runner_groups.iter().any(|r| r == id))
        });
        let by_range = !runner_cidrs.is_empty()
            && runner_cidrs.iter().all(|sub| {
                p.ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip())
                    .any(|c| cidr_contains(c, sub))
            });
        covers && (by_group || by_range)
    })
}

/// True when IPv4 range `outer` contains range `inner`.
fn cidr_contains(outer: &str, inner: &str) -> bool {
    let parse = |c: &str| -> Option<(u32, u32)> {
        let (ip, len) = c.split_once('/')?;
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
        Some((u32::from(ip), len))
    };
    let (Some((o, ol)), Some((i, il))) = (parse(outer), parse(inner)) else {
        return false;
    };
    let mask = if ol == 0 { 0 } else { u32::MAX << (32 - ol) };
    ol <= il && (o & mask) == (i & mask)
}

/// The rule the runner needs on the source's groups, or `None` when they admit it already.
pub async fn needed_rule(
    aws: &Aws,
    source_groups: &[String],
    runner_groups: &[String],
    subnets: &[String],
    port: u16,
) -> Result<Option<IngressRule>> {
    let (Some(group), Some(from)) = (source_groups.first(), runner_groups.first()) else {
        return Ok(None);
    };
    let groups = aws
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(source_groups.to_vec()))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeSecurityGroups", Some(group), e))?;
    let perms: Vec<IpPermission> = groups
        .security_groups()
        .iter()
        .flat_map(|g| g.ip_permissions().iter().cloned())
        .collect();
    let nets = aws
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(subnets.to_vec()))
        .send()
        .await
        .map_err(|e| {
            aws_error(
                "ec2:DescribeSubnets",
                subnets.first().map(String::as_str),
                e,
            )
        })?;
    let cidrs: Vec<String> = nets
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block().map(str::to_string))
        .collect();
    if admits(&perms, port, runner_groups, &cidrs) {
        return Ok(None);
    }
    Ok(Some(IngressRule {
        group_id: group.clone(),
        port,
        from_group: from.clone(),
    }))
}

fn permission(rule: &IngressRule) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(rule.port))
        .to_port(i32::from(rule.port))
        .user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(&rule.from_group)
                .description("efs2atlas runner (temporary)")
                .build(),
        )
        .build()
}

/// Adds the temporary rule (an existing identical rule is fine).
pub async fn authorize(aws: &Aws, rule: &IngressRule) -> Result<()> {
    match aws
        .ec2
        .authorize_security_group_ingress()
        .group_id(&rule.group_id)
        .ip_permissions(permission(rule))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("InvalidPermission.Duplicate") => Ok(()),
        Err(e) => Err(aws_error(
            "ec2:AuthorizeSecurityGroupIngress",
            Some(&rule.group_id),
            e,
        )),
    }
}

/// Removes the temporary rule (a rule already gone is fine).
pub async fn revoke(aws: &Aws, rule: &IngressRule) -> Result<()> {
    match aws
        .ec2
        .revoke_security_group_ingress()
        .group_id(&rule.group_id)
        .ip_permissions(permission(rule))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("InvalidPermission.NotFound") => Ok(()),
        Err(e) => Err(aws_error(
            "ec2:RevokeSecurityGroupIngress",
            Some(&rule.group_id),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::IpRange;

    #[test]
    fn a_loopback_source_means_the_mongo_task() {
        assert_eq!(
            runner_source(
                "mongodb://root:pw@127.0.0.1:27018/?authSource=admin",
                "10.0.1.5",
                27017
            ),
            "mongodb://root:pw@10.0.1.5:27017/?authSource=admin"
        );
        assert_eq!(
            runner_source("mongodb://localhost", "10.0.1.5", 27017),
            "mongodb://10.0.1.5:27017"
        );
        // A name inside the VPC, or an SRV record, is kept as given.
        for kept in [
            "mongodb://mongo.internal:27017/x",
            "mongodb+srv://u:p@c.x.net/db",
        ] {
            assert_eq!(runner_source(kept, "10.0.1.5", 27017), kept);
        }
    }

    #[test]
    fn admitted_by_group_or_by_a_covering_range_on_the_port() {
        let by_group = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(27017)
            .to_port(27017)
            .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-run").build())
            .build();
        let by_range = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(0)
            .to_port(65535)
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/16").build())
            .build();
        let groups = ["sg-run".to_string()];
        let subnets = ["10.0.1.0/24".to_string()];
        assert!(admits(
            std::slice::from_ref(&by_group),
            27017,
            &groups,
            &subnets
        ));
        assert!(!admits(
            std::slice::from_ref(&by_group),
            27018,
            &groups,
            &subnets
        ));
        assert!(!admits(
            std::slice::from_ref(&by_group),
            27017,
            &["sg-x".into()],
            &subnets
        ));
        assert!(admits(
            std::slice::from_ref(&by_range),
            27017,
            &["sg-x".into()],
            &subnets
        ));
        assert!(!admits(
            &[by_range],
            27017,
            &["sg-x".into()],
            &["10.1.0.0/24".into()]
        ));
        assert!(cidr_contains("0.0.0.0/0", "172.31.0.0/20"));
        assert!(!cidr_contains("10.0.1.0/24", "10.0.0.0/16"));
    }

    #[test]
    fn log_stream_is_prefix_container_task_id() {
        assert_eq!(
            log_stream("arn:aws:ecs:us-east-1:1:task/c/abc123"),
            "efs2atlas/efs2atlas/abc123"
        );
    }
}
