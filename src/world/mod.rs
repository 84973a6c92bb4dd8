//! What discovery found: plain, serializable data (secrets already redacted or wrapped).

pub mod atlas;

use serde::Serialize;

use crate::secret::Secret;
use crate::taskdef::TaskDefSpec;

/// The NFS port; rules for exactly this port exist only for EFS.
pub const NFS_PORT: i32 = 2049;

/// True when an image reference names a MongoDB server image.
pub fn is_mongo_image(image: &str) -> bool {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let repo = last.split(':').next().unwrap_or(last).to_ascii_lowercase();
    matches!(
        repo.as_str(),
        "mongo"
            | "mongodb"
            | "mongodb-community-server"
            | "mongodb-enterprise-server"
            | "percona-server-mongodb"
    )
}

/// Everything the plan is decided from.
#[derive(Debug, Serialize, Default)]
pub struct World {
    /// The AWS account the credentials belong to.
    pub account: String,
    /// The caller's ARN (user or assumed role).
    pub caller_arn: String,
    /// The region every call went to.
    pub region: String,
    /// The ECS service being migrated.
    pub service: ServiceInfo,
    /// Its current task definition.
    pub task_definition: TaskDefInfo,
    /// The registrable form of the current task definition (full fidelity; not serialized).
    #[serde(skip)]
    pub task_definition_spec: TaskDefSpec,
    /// The EFS file systems behind the task definition's volumes.
    pub file_systems: Vec<FileSystemInfo>,
    /// Security groups on those file systems' mount targets.
    pub security_groups: Vec<SecurityGroupInfo>,
    /// Other users of those file systems (task definitions, services, tasks).
    pub efs_users: Vec<EfsUser>,
    /// The source MongoDB, when `--source-uri` was given.
    pub source: Option<SourceInfo>,
    /// Where efs2atlas would write, when `plan` or `--dry-run` was given `--target-uri`.
    pub target: Option<TargetInfo>,
    /// The Atlas side as the Admin API tells it, with `--atlas-project`/`--atlas-cluster`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atlas: Option<atlas::AtlasInfo>,
    /// Where the service's tasks reach the internet from (read with `--atlas-project`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<atlas::Egress>,
}

/// What `plan` found on the target (read only: nothing is written).
#[derive(Clone, Debug, Serialize)]
pub struct TargetInfo {
    /// The URI, redacted.
    pub uri: String,
    /// Server version from buildInfo.
    pub version: Option<String>,
    /// Target collections the copy would write into that already hold data (checked only
    /// when the source was given too).
    pub busy: Vec<String>,
}

/// The ECS service and how it runs.
#[derive(Clone, Debug, Serialize, Default)]
pub struct ServiceInfo {
    /// Cluster name.
    pub cluster: String,
    /// Cluster ARN.
    pub cluster_arn: String,
    /// Service name.
    pub name: String,
    /// Service ARN.
    pub arn: String,
    /// ACTIVE, DRAINING, ...
    pub status: String,
    /// The task definition the service runs now.
    pub task_definition_arn: String,
    /// Desired task count.
    pub desired_count: i32,
    /// Running task count.
    pub running_count: i32,
    /// Pending task count.
    pub pending_count: i32,
    /// FARGATE, EC2, EXTERNAL, or none when a capacity provider strategy is used.
    pub launch_type: Option<String>,
    /// Capacity providers, when used instead of a launch type.
    pub capacity_providers: Vec<String>,
    /// awsvpc network configuration, if any.
    pub network: Option<NetworkInfo>,
    /// Current deployments.
    pub deployments: Vec<DeploymentInfo>,
    /// Whether the ECS deployment circuit breaker is on, and whether it rolls back.
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// awsvpc settings of a service.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkInfo {
    /// Subnets tasks are placed in.
    pub subnets: Vec<String>,
    /// Security groups on the tasks' ENIs.
    pub security_groups: Vec<String>,
    /// ENABLED or DISABLED.
    pub assign_public_ip: String,
}

/// One deployment of a service.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentInfo {
    /// Deployment id.
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    /// Its task definition.
    pub task_definition_arn: String,
    /// Desired tasks.
    pub desired_count: i32,
    /// Running tasks.
    pub running_count: i32,
    /// IN_PROGRESS, COMPLETED, FAILED, when reported.
    pub rollout_state: Option<String>,
}

/// The deployment circuit breaker settings.
#[derive(Clone, Debug, Serialize)]
pub struct CircuitBreaker {
    /// Enabled.
    pub enable: bool,
    /// Rolls back on failure by itself.
    pub rollback: bool,
}

/// A summary of a task definition (for display and planning).
#[derive(Clone, Debug, Serialize, Default)]
pub struct TaskDefInfo {
    /// Full ARN.
    pub arn: String,
    /// Family.
    pub family: String,
    /// Revision number.
    pub revision: i32,
    /// awsvpc, bridge, host, none.
    pub network_mode: Option<String>,
    /// FARGATE / EC2 compatibilities it was registered for.
    pub requires_compatibilities: Vec<String>,
    /// The execution role (needed to read Secrets Manager secrets).
    pub execution_role_arn: Option<String>,
    /// The task role.
    pub task_role_arn: Option<String>,
    /// Task-level CPU.
    pub cpu: Option<String>,
    /// Task-level memory.
    pub memory: Option<String>,
    /// Containers.
    pub containers: Vec<ContainerInfo>,
    /// Volumes.
    pub volumes: Vec<VolumeInfo>,
    /// The revision this one replaces, when efs2atlas registered it (its `efs2atlas:replaces`
    /// tag).
    pub replaces: Option<String>,
}

/// A container definition, secrets redacted.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerInfo {
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Essential flag.
    pub essential: bool,
    /// Plain environment variables (values that look secret are redacted).
    pub environment: Vec<EnvVar>,
    /// `secrets` entries (name → valueFrom ARN; the ARN is not secret).
    pub secrets: Vec<SecretRef>,
    /// Mount points.
    pub mount_points: Vec<MountPointInfo>,
    /// Containers this one waits for.
    pub depends_on: Vec<String>,
    /// Legacy links.
    pub links: Vec<String>,
    /// Containers whose volumes this one mounts.
    pub volumes_from: Vec<String>,
    /// Container ports.
    pub ports: Vec<i32>,
}

/// An environment variable; the value is wrapped so it cannot leak.
#[derive(Clone, Debug, Serialize)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value, shown as-is unless it looks secret.
    pub value: ShownValue,
}

/// A value that is shown unless it is sensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShownValue {
    /// Safe to show.
    Plain(String),
    /// Shown as `****` (or with its password masked).
    Sensitive {
        /// What can be shown (the whole value masked, or a URI with the password masked).
        shown: String,
        /// The real value.
        value: Secret,
    },
}

impl ShownValue {
    /// The real value (do not print).
    pub fn expose(&self) -> &str {
        match self {
            ShownValue::Plain(v) => v,
            ShownValue::Sensitive { value, .. } => value.expose(),
        }
    }

    /// What may be printed.
    pub fn shown(&self) -> &str {
        match self {
            ShownValue::Plain(v) => v,
            ShownValue::Sensitive { shown, .. } => shown,
        }
    }
}

impl Serialize for ShownValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

/// A `secrets` entry of a container.
#[derive(Clone, Debug, Serialize)]
pub struct SecretRef {
    /// The env var name.
    pub name: String,
    /// Secrets Manager / SSM ARN it is read from.
    pub value_from: String,
}

/// A mount point.
#[derive(Clone, Debug, Serialize)]
pub struct MountPointInfo {
    /// Volume name.
    pub source_volume: String,
    /// Path in the container.
    pub container_path: String,
    /// Read-only flag.
    pub read_only: bool,
}

/// A task volume.
#[derive(Clone, Debug, Serialize)]
pub struct VolumeInfo {
    /// Volume name.
    pub name: String,
    /// efs, host, docker, bind (ephemeral), fsx.
    pub kind: String,
    /// EFS file system id, for EFS volumes.
    pub file_system_id: Option<String>,
    /// EFS access point id, for EFS volumes that use one.
    pub access_point_id: Option<String>,
    /// Root directory on the file system.
    pub root_directory: Option<String>,
}

/// An EFS file system and what hangs off it.
#[derive(Clone, Debug, Serialize)]
pub struct FileSystemInfo {
    /// fs-...
    pub id: String,
    /// Its ARN.
    pub arn: Option<String>,
    /// Name tag.
    pub name: Option<String>,
    /// available, creating, deleting, ...
    pub lifecycle_state: String,
    /// Metered size in bytes.
    pub size_bytes: i64,
    /// Encrypted at rest.
    pub encrypted: bool,
    /// Number of mount targets as EFS reports it.
    pub number_of_mount_targets: i32,
    /// Mount targets.
    pub mount_targets: Vec<MountTargetInfo>,
    /// Access points.
    pub access_points: Vec<AccessPointInfo>,
}

/// An EFS mount target (its IP is recorded for display only and never dialed).
#[derive(Clone, Debug, Serialize)]
pub struct MountTargetInfo {
    /// fsmt-...
    pub id: String,
    /// Subnet.
    pub subnet_id: String,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// The ENI EFS made for it.
    pub network_interface_id: Option<String>,
    /// Its private IP (never contacted).
    pub ip_address: Option<String>,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// available, creating, deleting, ...
    pub lifecycle_state: String,
}

/// An EFS access point.
#[derive(Clone, Debug, Serialize)]
pub struct AccessPointInfo {
    /// fsap-...
    pub id: String,
    /// Name tag.
    pub name: Option<String>,
    /// Root directory path.
    pub root_directory: Option<String>,
    /// available, ...
    pub lifecycle_state: String,
}

/// A security group on a mount target, and everything that uses or references it.
#[derive(Clone, Debug, Serialize)]
pub struct SecurityGroupInfo {
    /// sg-...
    pub id: String,
    /// Group name.
    pub name: String,
    /// Description.
    pub description: String,
    /// VPC.
    pub vpc_id: Option<String>,
    /// Inbound rules.
    pub ingress: Vec<RuleInfo>,
    /// Outbound rules.
    pub egress: Vec<RuleInfo>,
    /// Network interfaces that carry this group.
    pub network_interfaces: Vec<EniInfo>,
    /// Rules in *other* groups that name this group as source or destination.
    pub referenced_by: Vec<RuleRef>,
    /// File systems whose mount targets carry it.
    pub used_by_file_systems: Vec<String>,
}

/// A security group rule, summarised.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleInfo {
    /// tcp, udp, icmp, -1 (all).
    pub protocol: String,
    /// First port.
    pub from_port: Option<i32>,
    /// Last port.
    pub to_port: Option<i32>,
    /// Groups it names.
    pub groups: Vec<String>,
    /// CIDRs it names.
    pub cidrs: Vec<String>,
}

/// A network interface.
#[derive(Clone, Debug, Serialize)]
pub struct EniInfo {
    /// eni-...
    pub id: String,
    /// What AWS says it is for.
    pub description: String,
    /// interface, efs, ...
    pub interface_type: Option<String>,
    /// Who asked for it, if AWS says.
    pub requester_id: Option<String>,
}

/// A rule in another group that names a group.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleRef {
    /// The group holding the rule.
    pub group_id: String,
    /// Its name.
    pub group_name: String,
    /// ingress or egress.
    pub direction: String,
    /// The rule.
    pub rule: RuleInfo,
}

/// Something other than the migrated service that uses one of the file systems.
#[derive(Clone, Debug, Serialize)]
pub struct EfsUser {
    /// The file system.
    pub file_system_id: String,
    /// task-definition, service or task.
    pub kind: String,
    /// ARN of the user.
    pub arn: String,
    /// The task-definition family involved.
    pub family: String,
    /// True when it is another revision of the migrated service's own family.
    pub same_family: bool,
}

/// The source MongoDB as seen through `--source-uri`.
#[derive(Clone, Debug, Serialize)]
pub struct SourceInfo {
    /// The URI, redacted.
    pub uri: String,
    /// Server version from buildInfo.
    pub version: Option<String>,
    /// User databases (admin/local/config left out).
    pub databases: Vec<DatabaseInfo>,
}

/// One source database.
#[derive(Clone, Debug, Serialize)]
pub struct DatabaseInfo {
    /// Name.
    pub name: String,
    /// Size on disk, as the server reports it.
    pub size_on_disk: Option<i64>,
    /// Uncompressed size of its documents (`dbStats.dataSize`): what Atlas's quota counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_size: Option<i64>,
    /// Size of its indexes (`dbStats.indexSize`), counted in Atlas's quota too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_size: Option<i64>,
    /// Collections and views.
    pub collections: Vec<CollectionInfo>,
}

/// One source collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// collection, view, timeseries.
    pub kind: String,
    /// Estimated document count.
    pub documents: Option<u64>,
    /// Number of indexes.
    pub indexes: Option<usize>,
}
