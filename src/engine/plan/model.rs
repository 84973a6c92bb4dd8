//! The plan as data: what `plan` shows, `--json` prints and `migrate` carries out.

use serde::Serialize;

use crate::cleanup::CleanupTarget;
use crate::engine::options::{CredentialMode, Strategy};
use crate::engine::step::StepId;
use crate::error::Result;
use crate::taskdef::{self, CredentialTarget, EnvAssignment, Rewrite, TaskDefSpec};
use crate::world::World;

/// The plan, as shown to the user and carried out by `migrate`.
#[derive(Debug, Serialize, Default)]
pub struct Plan {
    /// False when something blocks the migration (see `blockers`).
    pub ready: bool,
    /// AWS account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// How the data moves relative to the write freeze.
    pub strategy: Strategy,
    /// The service's current task definition ARN.
    pub current_task_definition: String,
    /// Family of the new revision.
    pub family: String,
    /// The container that runs MongoDB.
    pub mongo_container: MongoContainerPlan,
    /// Env vars that will be written, per container.
    pub env_mapping: Vec<EnvMapping>,
    /// How credentials reach the app.
    pub credentials: CredentialMode,
    /// The Secrets Manager secret that will hold them (name), when used.
    pub secret_name: Option<String>,
    /// EFS file systems and what happens to them.
    pub file_systems: Vec<FileSystemPlan>,
    /// Security groups on the mount targets and what happens to them.
    pub security_groups: Vec<SecurityGroupPlan>,
    /// Things that stop the migration (`ready` is false when any exist).
    pub blockers: Vec<Finding>,
    /// What the plan could not check (no `--source-uri`, no `--target-uri`): "ready" means
    /// ready as far as was checked.
    pub unchecked: Vec<String>,
    /// Things the user should know; they do not stop the migration.
    pub warnings: Vec<Finding>,
    /// The ordered steps `migrate` would run.
    pub steps: Vec<PlannedStep>,
    /// `--runner ecs`: where the runner task runs, its image and the temporary rule it needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<crate::engine::remote::resources::RunnerState>,
    /// Unified diff of the task definition (old vs new), credentials masked.
    pub task_definition_diff: String,
    /// The registrable new task definition (not serialized; it may hold credentials).
    #[serde(skip)]
    pub new_task_definition: Option<TaskDefSpec>,
    /// The env assignments with real values (not serialized).
    #[serde(skip)]
    pub env_assignments: Vec<EnvAssignment>,
    /// `--image` swaps.
    pub images: Vec<(String, String)>,
    /// What `migrate` makes on the Atlas side (`--atlas-project` without `--atlas-uri`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atlas: Option<AtlasPlan>,
    /// Everything the run creates, changes or deletes, by name.
    pub resources: Vec<Resource>,
}

/// The users and access-list entries `migrate` makes through the Atlas Admin API.
#[derive(Clone, Debug, Serialize, Default)]
pub struct AtlasPlan {
    /// The project id.
    pub project: String,
    /// The cluster's name.
    pub cluster: String,
    /// The app's database user (its password goes straight into the Secrets Manager secret).
    pub app_user: String,
    /// True when the project has it already (its password is set anew).
    pub app_user_exists: bool,
    /// Its roles, `role@db`: `readWrite` on the app's databases only.
    pub app_roles: Vec<String>,
    /// The temporary user efs2atlas writes as (deleted at the end; Atlas deletes it a day
    /// later in any case).
    pub migration_user: String,
    /// Entries added for the app: its NAT gateways' addresses.
    pub entries: Vec<String>,
    /// A temporary entry for where efs2atlas runs (this machine's public address, found at
    /// run time), removed at the end.
    pub temporary_entry: bool,
}

impl Plan {
    /// The next revision; `secret_arn` is the Secrets Manager secret holding the credentials
    /// (`None` writes them as plain env vars).
    pub fn new_task_definition(
        &self,
        world: &World,
        secret_arn: Option<&str>,
    ) -> Result<TaskDefSpec> {
        let rw = Rewrite {
            mongo_container: self.mongo_container.name.clone(),
            env: self.env_assignments.clone(),
            images: self.images.clone(),
            credentials: match secret_arn {
                Some(arn) => CredentialTarget::SecretsManager {
                    secret_arn: arn.to_string(),
                },
                None => CredentialTarget::Env,
            },
        };
        let mut spec = taskdef::rewrite(&world.task_definition_spec, &rw)?;
        spec.tags
            .retain(|t| t.key.as_deref() != Some(taskdef::FROM_REVISION_TAG));
        spec.tags.push(
            aws_sdk_ecs::types::Tag::builder()
                .key(taskdef::FROM_REVISION_TAG)
                .value(&world.task_definition.arn)
                .build(),
        );
        Ok(spec)
    }

    /// What the clean-up deletes: the file systems and security groups marked for deletion.
    pub fn cleanup_target(&self, world: &World) -> CleanupTarget {
        let ids = |v: Vec<&String>| v.into_iter().cloned().collect();
        CleanupTarget {
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            service_arn: world.service.arn.clone(),
            file_systems: ids(self
                .file_systems
                .iter()
                .filter(|f| f.delete)
                .map(|f| &f.id)
                .collect()),
            security_groups: ids(self
                .security_groups
                .iter()
                .filter(|g| g.delete)
                .map(|g| &g.id)
                .collect()),
        }
    }

    /// The Secrets Manager secret's value: a JSON object of every credential-bearing env var.
    pub fn secret_value(&self) -> Option<crate::secret::Secret> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .env_assignments
            .iter()
            .filter(|a| a.sensitive)
            .map(|a| {
                (
                    a.name.clone(),
                    serde_json::Value::String(a.value.expose().to_string()),
                )
            })
            .collect();
        (!map.is_empty())
            .then(|| crate::secret::Secret::new(serde_json::Value::Object(map).to_string()))
    }
}

/// The mongo container and its storage.
#[derive(Debug, Serialize, Default)]
pub struct MongoContainerPlan {
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// How it was picked: `image` or `--mongo-container`.
    pub chosen_by: String,
    /// Container port (27017 unless mapped otherwise).
    pub port: i32,
    /// Its mount points as `volume:path`.
    pub mount_points: Vec<String>,
    /// Volumes that will be removed with it.
    pub volumes_removed: Vec<String>,
    /// EFS file systems behind those volumes.
    pub file_system_ids: Vec<String>,
    /// EFS access points those volumes use.
    pub access_point_ids: Vec<String>,
}

/// One env var that will be written.
#[derive(Debug, Serialize)]
pub struct EnvMapping {
    /// Container.
    pub container: String,
    /// Env var.
    pub name: String,
    /// The template it is filled from.
    pub template: String,
    /// `auto` (detected) or `--env`.
    pub origin: String,
    /// Current value (masked when sensitive); none when the var is new or a secret reference.
    pub current: Option<String>,
    /// Where the current value lives: `environment`, `secrets` or `new`.
    pub current_in: String,
    /// New value, credentials masked.
    pub new: String,
    /// Whether the new value carries a credential.
    pub sensitive: bool,
    /// Where it will live: `environment` or `secrets`.
    pub new_in: String,
}

/// What happens to one EFS file system.
#[derive(Debug, Serialize)]
pub struct FileSystemPlan {
    /// fs-...
    pub id: String,
    /// Name tag.
    pub name: Option<String>,
    /// Size in bytes.
    pub size_bytes: i64,
    /// True when efs2atlas will delete it after a verified, steady cutover.
    pub delete: bool,
    /// Why it is kept, when it is.
    pub keep_reasons: Vec<String>,
    /// Mount targets (id, subnet, security groups).
    pub mount_targets: Vec<String>,
    /// Access points.
    pub access_points: Vec<String>,
}

/// What happens to one security group.
#[derive(Debug, Serialize)]
pub struct SecurityGroupPlan {
    /// sg-...
    pub id: String,
    /// Group name.
    pub name: String,
    /// True when it exists only for the deleted EFS and will be deleted.
    pub delete: bool,
    /// True when something other than the EFS mount targets uses or references it.
    pub shared: bool,
    /// Why it is kept, when it is.
    pub keep_reasons: Vec<String>,
    /// Rules in other groups (NFS only) that will be revoked before deleting it.
    pub rules_to_revoke: Vec<String>,
}

/// A blocker or warning.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Stable machine-readable code.
    pub code: String,
    /// The resource concerned.
    pub resource: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// One step `migrate` would run.
/// One step `migrate` runs, in the order it runs.
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    /// Stable step id.
    pub id: StepId,
    /// What it does.
    pub description: String,
    /// True when it changes or deletes something that is hard to undo.
    pub destructive: bool,
    /// What the step does resource by resource (the clean-up's deletions and what it keeps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

impl PlannedStep {
    /// A step with a one-line description and no resource-level actions.
    pub fn new(id: StepId, description: impl Into<String>) -> PlannedStep {
        PlannedStep {
            id,
            description: description.into(),
            destructive: false,
            actions: Vec::new(),
        }
    }
}

/// One resource-level action inside a step.
#[derive(Debug, Serialize)]
pub struct Action {
    /// Stable action id, e.g. `delete-file-system`.
    pub id: String,
    /// What it does.
    pub description: String,
    /// True when it is hard to undo.
    pub destructive: bool,
}

/// A finding with a code, the resource it concerns and what to do.
pub fn finding(code: &str, resource: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        code: code.into(),
        resource: resource.into(),
        message: message.into(),
    }
}

/// Adds a finding unless the same one is already there.
pub fn push_unique(v: &mut Vec<Finding>, f: Finding) {
    if !v.contains(&f) {
        v.push(f);
    }
}

/// One thing the run makes, changes or removes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Resource {
    /// `create`, `change`, `delete`, or `temporary` (made for the run, removed at its end).
    pub action: &'static str,
    /// What kind of thing, as the console calls it (`ecs-task-definition`,
    /// `secretsmanager-secret`, `iam-inline-policy`, `logs-log-group`,
    /// `ec2-security-group-rule`, `ecs-service`, `efs-file-system`, `ec2-security-group`,
    /// `atlas-database-user`, `atlas-access-list-entry`).
    pub kind: &'static str,
    /// Its name (a task-definition family, a secret's name, `policy on role`, ...).
    pub name: String,
    /// Why, in a few words.
    pub note: String,
}
