//! The plan: a pure function of the discovered [`World`] and the user's options. Every
//! refusal is decided here, before anything changes.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::envmap::{EnvOverride, Field, Template, detect, is_mongo_uri};
use crate::error::{Error, Result};
use crate::taskdef::{self, CredentialTarget, EnvAssignment, Rewrite, TaskDefSpec};
use crate::uri::MongoUri;
use crate::world::{ContainerInfo, ShownValue, World};

/// The NFS port; rules for exactly this port exist only for EFS.
pub const NFS_PORT: i32 = 2049;

/// How the Atlas credentials reach the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// One Secrets Manager secret, referenced from the task definition's `secrets`.
    SecretsManager,
    /// Plain environment variables (the password is visible in the task definition).
    Env,
}

/// How the data moves relative to the write freeze.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Bulk copy while the app still writes, then freeze and `sync` only what changed: the
    /// app is read-only only for the sync, verify and cutover.
    #[default]
    TwoPass,
    /// Freeze first, then copy and verify: simplest, read-only for the whole copy.
    FreezeFirst,
}

/// The user's choices that shape the plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The Atlas URI.
    pub atlas: MongoUri,
    /// `--mongo-container`.
    pub mongo_container: Option<String>,
    /// `--env NAME=TEMPLATE` flags.
    pub env: Vec<EnvOverride>,
    /// `--image CONTAINER=IMAGE` flags.
    pub images: Vec<(String, String)>,
    /// `--credentials`.
    pub credentials: CredentialMode,
    /// `--keep-efs`.
    pub keep_efs: bool,
    /// `--strategy`.
    pub strategy: Strategy,
}

/// The plan, as shown to the user and carried out by `migrate`.
#[derive(Debug, Serialize)]
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
    /// Things the user should know; they do not stop the migration.
    pub warnings: Vec<Finding>,
    /// The ordered steps `migrate` would run.
    pub steps: Vec<PlannedStep>,
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
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    /// Stable step id.
    pub id: String,
    /// What it does.
    pub description: String,
    /// True when it changes or deletes something that is hard to undo.
    pub destructive: bool,
}

fn finding(code: &str, resource: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        code: code.into(),
        resource: resource.into(),
        message: message.into(),
    }
}

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

/// Picks the mongo container: by name when given, else by image.
pub fn pick_mongo_container<'a>(
    containers: &'a [ContainerInfo],
    by_name: Option<&str>,
    service: &str,
) -> Result<&'a ContainerInfo> {
    if let Some(name) = by_name {
        return containers.iter().find(|c| c.name == name).ok_or_else(|| {
            Error::Usage(format!(
                "--mongo-container {name}: the task definition of service {service} has no container of that name (it has: {})",
                containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        });
    }
    let found: Vec<&ContainerInfo> = containers
        .iter()
        .filter(|c| is_mongo_image(&c.image))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::Refused(format!(
            "no container in service {service} runs a MongoDB image (containers: {}); if one does under another image name, pass --mongo-container NAME",
            containers
                .iter()
                .map(|c| format!("{} ({})", c.name, c.image))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(Error::Refused(format!(
            "several containers in service {service} run a MongoDB image ({}); pass --mongo-container NAME to say which one holds the data",
            many.iter()
                .map(|c| format!("{} ({})", c.name, c.image))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The name of the Secrets Manager secret for a service.
pub fn secret_name(cluster: &str, service: &str) -> String {
    format!("efs2atlas/{cluster}/{service}")
}

/// Builds the plan. Errors only when no plan can be made at all (no or several mongo
/// containers, a bad flag); everything else is a blocker or warning inside the plan.
pub fn plan(world: &World, opts: &PlanOptions) -> Result<Plan> {
    let td = &world.task_definition;
    let svc = &world.service;
    let mongo = pick_mongo_container(&td.containers, opts.mongo_container.as_deref(), &svc.name)?;
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();

    if svc.status != "ACTIVE" {
        blockers.push(finding(
            "service-not-active",
            &svc.arn,
            format!("service {} is {}, not ACTIVE", svc.name, svc.status),
        ));
    }
    // One source, and only one: each task runs its own mongod on the same EFS.
    if svc.desired_count != 1 || svc.running_count != 1 {
        let scale = format!(
            "scale it to exactly one task (aws ecs update-service --cluster {} --service {} --desired-count 1), wait until it is steady (aws ecs wait services-stable), and run again",
            svc.cluster, svc.name
        );
        let message = if svc.running_count == 0 && svc.desired_count <= 1 {
            format!(
                "service {} runs no task (desired {}, running 0): there is no mongod to copy from; {scale}",
                svc.name, svc.desired_count
            )
        } else {
            format!(
                "service {} runs {} tasks with container {} (desired {}): several mongods on one EFS, so which one holds the data, and is it intact? {scale}",
                svc.name, svc.running_count, mongo.name, svc.desired_count
            )
        };
        blockers.push(finding("not-one-source", &svc.arn, message));
    }
    if svc.deployments.len() > 1 {
        blockers.push(finding(
            "deployment-in-progress",
            &svc.arn,
            format!(
                "service {} has {} deployments in progress; wait until it is steady (aws ecs wait services-stable) and run again",
                svc.name,
                svc.deployments.len()
            ),
        ));
    }

    // The mongo container's storage.
    let volumes_removed = world
        .task_definition_spec
        .volumes_only_mounted_by(&mongo.name);
    let mongo_volume_names: BTreeSet<&str> = mongo
        .mount_points
        .iter()
        .map(|m| m.source_volume.as_str())
        .collect();
    let mut fs_ids = Vec::new();
    let mut ap_ids = Vec::new();
    for v in &td.volumes {
        if !mongo_volume_names.contains(v.name.as_str()) {
            continue;
        }
        if let Some(fs) = &v.file_system_id {
            if !volumes_removed.contains(&v.name) {
                let list = if opts.keep_efs {
                    &mut warnings
                } else {
                    &mut blockers
                };
                list.push(finding(
                    "efs-volume-shared-in-task",
                    fs,
                    format!(
                        "volume {} (EFS {fs}) is also mounted by another container of this task; efs2atlas keeps it, so the EFS stays in use. Remove that mount first or pass --keep-efs",
                        v.name
                    ),
                ));
            }
            if !fs_ids.contains(fs) {
                fs_ids.push(fs.clone());
            }
        }
        if let Some(ap) = &v.access_point_id {
            ap_ids.push(ap.clone());
        }
    }
    if fs_ids.is_empty() {
        warnings.push(finding(
            "no-efs",
            &mongo.name,
            format!(
                "container {} has no EFS volume: its data lives only as long as the task; copy it before anything restarts the task",
                mongo.name
            ),
        ));
    }
    let port = mongo.ports.first().copied().unwrap_or(27017);

    // Env mapping.
    let (env_mapping, env_assignments) =
        map_env(world, opts, &mongo.name, &mut blockers, &mut warnings)?;

    let any_sensitive = env_assignments.iter().any(|a| a.sensitive);
    let use_secret = opts.credentials == CredentialMode::SecretsManager && any_sensitive;
    let secret = use_secret.then(|| secret_name(&svc.cluster, &svc.name));
    if use_secret && td.execution_role_arn.is_none() {
        blockers.push(finding(
            "no-execution-role",
            &td.arn,
            "the task definition has no execution role, so it cannot read a Secrets Manager secret: add an execution role to the task definition, or pass --credentials env (the password is then visible in the task definition)",
        ));
    }
    if opts.credentials == CredentialMode::Env && any_sensitive {
        warnings.push(finding(
            "credentials-in-env",
            &td.family,
            "--credentials env: the Atlas password will be stored in plain text in the task definition, visible to anyone who can describe it",
        ));
    }

    // File systems.
    let mut file_systems = Vec::new();
    for id in &fs_ids {
        let Some(fs) = world.file_systems.iter().find(|f| &f.id == id) else {
            warnings.push(finding(
                "efs-missing",
                id,
                format!("EFS {id} named by the task definition does not exist; nothing to delete"),
            ));
            continue;
        };
        let mut keep = Vec::new();
        if opts.keep_efs {
            keep.push("--keep-efs".to_string());
        }
        for u in world.efs_users.iter().filter(|u| &u.file_system_id == id) {
            if u.kind == "task-definition" && u.same_family {
                continue;
            }
            let what = match u.kind.as_str() {
                "task-definition" => format!("task definition family {} ({})", u.family, u.arn),
                "service" => format!("service {} (family {})", u.arn, u.family),
                _ => format!("running task {} (family {})", u.arn, u.family),
            };
            keep.push(format!("also used by {what}"));
            push_unique(
                &mut warnings,
                finding(
                    "efs-shared",
                    id,
                    format!(
                        "EFS {id} is also used by {what}; it will NOT be deleted (delete it yourself once nothing needs it)"
                    ),
                ),
            );
        }
        if blockers
            .iter()
            .chain(warnings.iter())
            .any(|b| b.code == "efs-volume-shared-in-task" && &b.resource == id)
        {
            keep.push("mounted by another container of this task".into());
        }
        if fs.lifecycle_state != "available" {
            keep.push(format!("lifecycle state is {}", fs.lifecycle_state));
        }
        let same_family_revs = world
            .efs_users
            .iter()
            .filter(|u| &u.file_system_id == id && u.kind == "task-definition" && u.same_family)
            .count();
        if same_family_revs > 0 && keep.is_empty() {
            warnings.push(finding(
                "efs-old-revisions",
                id,
                format!(
                    "{same_family_revs} other ACTIVE revision(s) of family {} mount EFS {id}; after cleanup they cannot run (efs2atlas rollback refuses once the EFS is gone)",
                    td.family
                ),
            ));
        }
        file_systems.push(FileSystemPlan {
            id: id.clone(),
            name: fs.name.clone(),
            size_bytes: fs.size_bytes,
            delete: keep.is_empty(),
            keep_reasons: keep,
            mount_targets: fs
                .mount_targets
                .iter()
                .map(|m| {
                    format!(
                        "{} ({}, {})",
                        m.id,
                        m.subnet_id,
                        m.security_groups.join(",")
                    )
                })
                .collect(),
            access_points: fs.access_points.iter().map(|a| a.id.clone()).collect(),
        });
    }

    // Security groups.
    let deleted_fs: BTreeSet<&str> = file_systems
        .iter()
        .filter(|f| f.delete)
        .map(|f| f.id.as_str())
        .collect();
    let mt_enis: BTreeSet<&str> = world
        .file_systems
        .iter()
        .filter(|f| deleted_fs.contains(f.id.as_str()))
        .flat_map(|f| {
            f.mount_targets
                .iter()
                .filter_map(|m| m.network_interface_id.as_deref())
        })
        .collect();
    let task_sgs: BTreeSet<&str> = svc
        .network
        .as_ref()
        .map(|n| n.security_groups.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut security_groups = Vec::new();
    for sg in &world.security_groups {
        let mut keep = Vec::new();
        let mut shared = false;
        if sg.name == "default" {
            keep.push("it is the VPC's default security group".to_string());
            shared = true;
        }
        if task_sgs.contains(sg.id.as_str()) {
            keep.push("the service's tasks use it too".into());
            shared = true;
        }
        for f in &sg.used_by_file_systems {
            if !deleted_fs.contains(f.as_str()) {
                keep.push(format!("mount targets of EFS {f}, which is kept, use it"));
            }
        }
        let other_enis: Vec<&str> = sg
            .network_interfaces
            .iter()
            .filter(|e| !mt_enis.contains(e.id.as_str()))
            .map(|e| e.id.as_str())
            .collect();
        if !other_enis.is_empty() {
            shared = true;
            keep.push(format!(
                "used by other network interfaces: {}",
                other_enis.join(", ")
            ));
        }
        let mut revoke = Vec::new();
        for r in &sg.referenced_by {
            let nfs_only = r.rule.protocol == "tcp"
                && r.rule.from_port == Some(NFS_PORT)
                && r.rule.to_port == Some(NFS_PORT);
            let desc = format!(
                "{} {} ({}) {} {}",
                r.group_id,
                r.direction,
                r.group_name,
                r.rule.protocol,
                port_range(r.rule.from_port, r.rule.to_port)
            );
            if nfs_only {
                revoke.push(desc);
            } else {
                shared = true;
                keep.push(format!("referenced by a non-NFS rule in {desc}"));
            }
        }
        if shared {
            warnings.push(finding(
                "security-group-shared",
                &sg.id,
                format!(
                    "security group {} ({}) is shared: {}; it will NOT be deleted",
                    sg.id,
                    sg.name,
                    keep.join("; ")
                ),
            ));
        }
        if opts.keep_efs {
            keep.push("--keep-efs".into());
        }
        let delete = keep.is_empty();
        security_groups.push(SecurityGroupPlan {
            id: sg.id.clone(),
            name: sg.name.clone(),
            delete,
            shared,
            keep_reasons: keep,
            rules_to_revoke: if delete { revoke } else { Vec::new() },
        });
    }

    // The new task definition and its diff.
    let secret_arn_shown = secret.as_ref().map(|n| {
        format!(
            "arn:aws:secretsmanager:{}:{}:secret:{n}",
            world.region, world.account
        )
    });
    let steps = steps(
        world,
        &file_systems,
        &security_groups,
        secret.as_deref(),
        &mongo.name,
        td.revision + 1,
        opts.strategy,
    );

    let mongo_plan = MongoContainerPlan {
        name: mongo.name.clone(),
        image: mongo.image.clone(),
        chosen_by: if opts.mongo_container.is_some() {
            "--mongo-container".into()
        } else {
            "image".into()
        },
        port,
        mount_points: mongo
            .mount_points
            .iter()
            .map(|m| format!("{}:{}", m.source_volume, m.container_path))
            .collect(),
        volumes_removed,
        file_system_ids: fs_ids,
        access_point_ids: ap_ids,
    };
    let mut plan = Plan {
        ready: false,
        account: world.account.clone(),
        region: world.region.clone(),
        cluster: svc.cluster.clone(),
        service: svc.name.clone(),
        current_task_definition: td.arn.clone(),
        family: td.family.clone(),
        mongo_container: mongo_plan,
        env_mapping,
        credentials: opts.credentials,
        secret_name: secret,
        file_systems,
        security_groups,
        blockers,
        warnings,
        steps,
        task_definition_diff: String::new(),
        new_task_definition: None,
        env_assignments,
        images: opts.images.clone(),
    };
    match plan.new_task_definition(world, secret_arn_shown.as_deref()) {
        Ok(new_td) => {
            let mut secrets = vec![opts.atlas.secret()];
            if let Some(p) = &opts.atlas.password {
                secrets.push(p);
            }
            let old_view = taskdef::view(&world.task_definition_spec, &secrets);
            let new_view = taskdef::view(&new_td, &secrets);
            plan.task_definition_diff = taskdef::diff(
                &old_view,
                &new_view,
                &format!("{}:{} (current)", td.family, td.revision),
                &format!("{}:{} (new)", td.family, td.revision + 1),
            );
            plan.new_task_definition = Some(new_td);
        }
        Err(Error::Usage(m)) => return Err(Error::Usage(m)),
        Err(e) => plan
            .blockers
            .push(finding("rewrite-failed", &td.arn, e.to_string())),
    }
    plan.ready = plan.blockers.is_empty();
    Ok(plan)
}

fn push_unique(v: &mut Vec<Finding>, f: Finding) {
    if !v.contains(&f) {
        v.push(f);
    }
}

fn port_range(from: Option<i32>, to: Option<i32>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) if a == -1 || (a == 0 && b == 65535) => "all ports".into(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "all ports".into(),
    }
}

type EnvPlan = (Vec<EnvMapping>, Vec<EnvAssignment>);

/// Decides which env vars of which containers are rewritten, and renders them.
fn map_env(
    world: &World,
    opts: &PlanOptions,
    mongo: &str,
    blockers: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> Result<EnvPlan> {
    let td = &world.task_definition;
    let apps: Vec<&ContainerInfo> = td.containers.iter().filter(|c| c.name != mongo).collect();

    // (container, name, template, origin, current value, where)
    struct Entry<'a> {
        container: &'a str,
        name: String,
        template: Template,
        origin: &'static str,
        current: Option<&'a ShownValue>,
        current_in: &'static str,
    }
    let mut entries: Vec<Entry> = Vec::new();
    for c in &apps {
        for e in &c.environment {
            if let Some(t) = detect(&e.name, Some(e.value.expose())) {
                entries.push(Entry {
                    container: &c.name,
                    name: e.name.clone(),
                    template: t,
                    origin: "auto",
                    current: Some(&e.value),
                    current_in: "environment",
                });
            }
        }
        for s in &c.secrets {
            if let Some(t) = detect(&s.name, None) {
                if t.uses(Field::Uri) && s.name.to_ascii_uppercase().ends_with("URL") {
                    warnings.push(finding(
                        "env-guess",
                        format!("{}/{}", c.name, s.name),
                        format!(
                            "{} in container {} is a secret reference, so its form is unknown; assuming a full connection string ({{uri}}). If it holds only a host, pass --env {}={{host}}",
                            s.name, c.name, s.name
                        ),
                    ));
                }
                entries.push(Entry {
                    container: &c.name,
                    name: s.name.clone(),
                    template: t,
                    origin: "auto",
                    current: None,
                    current_in: "secrets",
                });
            }
        }
    }
    let auto_containers: BTreeSet<&str> = entries.iter().map(|e| e.container).collect();
    for o in &opts.env {
        let defining: Vec<&&ContainerInfo> = apps
            .iter()
            .filter(|c| {
                c.environment.iter().any(|e| e.name == o.name)
                    || c.secrets.iter().any(|s| s.name == o.name)
            })
            .collect();
        let targets: Vec<&str> = if !defining.is_empty() {
            defining.iter().map(|c| c.name.as_str()).collect()
        } else if !auto_containers.is_empty() {
            auto_containers.iter().copied().collect()
        } else {
            let linked: Vec<&str> = apps
                .iter()
                .filter(|c| {
                    c.depends_on.iter().any(|d| d == mongo)
                        || c.links.iter().any(|l| l.split(':').next() == Some(mongo))
                })
                .map(|c| c.name.as_str())
                .collect();
            if linked.is_empty() {
                apps.iter()
                    .filter(|c| c.essential)
                    .map(|c| c.name.as_str())
                    .collect()
            } else {
                linked
            }
        };
        for t in targets {
            let c = apps.iter().find(|c| c.name == t).copied();
            let env = c.and_then(|c| c.environment.iter().find(|e| e.name == o.name));
            let in_secrets = c.is_some_and(|c| c.secrets.iter().any(|s| s.name == o.name));
            entries.retain(|e| !(e.container == t && e.name == o.name));
            entries.push(Entry {
                container: c.map(|c| c.name.as_str()).unwrap_or(t),
                name: o.name.clone(),
                template: o.template.clone(),
                origin: "--env",
                current: env.map(|e| &e.value),
                current_in: if env.is_some() {
                    "environment"
                } else if in_secrets {
                    "secrets"
                } else {
                    "new"
                },
            });
        }
    }
    if entries.is_empty() {
        blockers.push(finding(
            "no-app-env",
            &td.family,
            format!(
                "no env var of the app containers ({}) refers to MongoDB, so efs2atlas cannot tell how the app finds its database: pass --env NAME=TEMPLATE (e.g. --env MONGO_URI={{uri}})",
                apps.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }

    // {db}: the Atlas URI's database, else the one the app uses now.
    let db = opts.atlas.db.clone().or_else(|| {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for e in &entries {
            let Some(v) = e.current else { continue };
            if e.template.uses(Field::Db) && !v.expose().is_empty() && e.template.text() == "{db}" {
                seen.insert(v.expose().to_string());
            } else if is_mongo_uri(v.expose())
                && let Ok(u) = MongoUri::parse("env", v.expose())
                && let Some(d) = u.db
            {
                seen.insert(d);
            }
        }
        (seen.len() == 1).then(|| seen.into_iter().next().unwrap_or_default())
    });

    let mut mapping = Vec::new();
    let mut assignments = Vec::new();
    let use_secret = opts.credentials == CredentialMode::SecretsManager;
    for e in &entries {
        let sensitive = e.template.is_sensitive(&opts.atlas);
        let (value, shown) = match (
            e.template.render(&opts.atlas, db.as_deref()),
            e.template.render_shown(&opts.atlas, db.as_deref()),
        ) {
            (Ok(v), Ok(s)) => (v, s),
            (Err(err), _) | (_, Err(err)) => {
                let f = if e.template.uses(Field::Db) && db.is_none() {
                    finding(
                        "no-database-name",
                        "--atlas-uri",
                        "the Atlas URI names no database and the app's current database name could not be read from its env vars: add /DBNAME to --atlas-uri",
                    )
                } else {
                    finding(
                        "env-template",
                        format!("{}/{}", e.container, e.name),
                        err.to_string(),
                    )
                };
                push_unique(blockers, f);
                continue;
            }
        };
        mapping.push(EnvMapping {
            container: e.container.to_string(),
            name: e.name.clone(),
            template: e.template.text().to_string(),
            origin: e.origin.to_string(),
            current: e.current.map(|v| v.shown().to_string()),
            current_in: e.current_in.to_string(),
            new: shown,
            sensitive,
            new_in: if sensitive && use_secret {
                "secrets".into()
            } else {
                "environment".into()
            },
        });
        assignments.push(EnvAssignment {
            container: e.container.to_string(),
            name: e.name.clone(),
            value,
            sensitive,
        });
    }
    Ok((mapping, assignments))
}

/// The ordered steps of a migration, described for the user.
fn steps(
    world: &World,
    file_systems: &[FileSystemPlan],
    sgs: &[SecurityGroupPlan],
    secret: Option<&str>,
    mongo: &str,
    next_revision: i32,
    strategy: Strategy,
) -> Vec<PlannedStep> {
    let s = |id: &str, d: String, destructive: bool| PlannedStep {
        id: id.into(),
        description: d,
        destructive,
    };
    let td = &world.task_definition;
    let svc = &world.service;
    let preflight = s(
        "preflight",
        "check AWS identity, reach source and Atlas, require empty target databases".into(),
        false,
    );
    let verify = s("verify", "compare counts, document hashes and indexes of every collection; stop and unfreeze on any difference".into(), false);
    let mut out = match strategy {
        Strategy::TwoPass => vec![
            preflight,
            s("copy", "bulk-copy every source database to Atlas while the app keeps writing (raw BSON, streamed, resumable), indexes after the data".into(), false),
            s("freeze", "freeze writes on the source (fsync lock): the app is read-only from here until the cutover".into(), false),
            s("sync", "patch what changed during the bulk copy: merge (_id, hash) streams of both sides, insert/replace/delete only the differences".into(), false),
            verify,
        ],
        Strategy::FreezeFirst => vec![
            preflight,
            s("freeze", "freeze writes on the source (fsync lock) so nothing lands in the old database during the copy".into(), false),
            s("copy", "copy every source database to Atlas (raw BSON, streamed, resumable), indexes after the data".into(), false),
            verify,
        ],
    };
    if let Some(name) = secret {
        out.push(s(
            "secret",
            format!("store the Atlas credentials in Secrets Manager secret {name} and let execution role read it"),
            false,
        ));
    }
    out.push(s(
        "register",
        format!("register task definition {}:{next_revision}: without the {} container and its volume, app env pointed at Atlas", td.family, mongo),
        false,
    ));
    out.push(s(
        "deploy",
        format!("update service {} to the new revision, wait for steady state, roll back to {}:{} on failure", svc.name, td.family, td.revision),
        false,
    ));
    if file_systems.iter().any(|f| f.delete) {
        out.push(s(
            "deregister-old-revisions",
            format!(
                "deregister {}:{} and any other ACTIVE revision of family {} that mounts the deleted EFS, so nothing can start a task without its storage",
                td.family, td.revision, td.family
            ),
            true,
        ));
    }
    for f in file_systems {
        if !f.delete {
            out.push(s(
                "keep-efs",
                format!("keep EFS {}: {}", f.id, f.keep_reasons.join("; ")),
                false,
            ));
            continue;
        }
        if !f.access_points.is_empty() {
            out.push(s(
                "delete-access-points",
                format!(
                    "delete access points {} of {}",
                    f.access_points.join(", "),
                    f.id
                ),
                true,
            ));
        }
        if !f.mount_targets.is_empty() {
            out.push(s(
                "delete-mount-targets",
                format!(
                    "delete mount targets of {}: {}",
                    f.id,
                    f.mount_targets.join(", ")
                ),
                true,
            ));
        }
        out.push(s(
            "delete-file-system",
            format!("delete EFS file system {} (irreversible)", f.id),
            true,
        ));
    }
    for g in sgs {
        if g.delete {
            if !g.rules_to_revoke.is_empty() {
                out.push(s(
                    "revoke-rules",
                    format!(
                        "revoke NFS rules naming {}: {}",
                        g.id,
                        g.rules_to_revoke.join("; ")
                    ),
                    true,
                ));
            }
            out.push(s(
                "delete-security-group",
                format!("delete security group {} ({})", g.id, g.name),
                true,
            ));
        } else {
            out.push(s(
                "keep-security-group",
                format!(
                    "keep security group {} ({}): {}",
                    g.id,
                    g.name,
                    g.keep_reasons.join("; ")
                ),
                false,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::*;
    use aws_sdk_ecs::types::{
        ContainerCondition, ContainerDefinition, ContainerDependency, EfsVolumeConfiguration,
        KeyValuePair, MountPoint, TaskDefinition, Volume,
    };

    fn kv(n: &str, v: &str) -> KeyValuePair {
        KeyValuePair::builder().name(n).value(v).build()
    }

    fn backend(env: &[(&str, &str)]) -> ContainerDefinition {
        let mut b = ContainerDefinition::builder()
            .name("backend")
            .image("me/backend")
            .essential(true)
            .depends_on(
                ContainerDependency::builder()
                    .container_name("mongodb")
                    .condition(ContainerCondition::Start)
                    .build()
                    .unwrap(),
            );
        for (n, v) in env {
            b = b.environment(kv(n, v));
        }
        b.build()
    }

    fn mongo(name: &str, image: &str) -> ContainerDefinition {
        ContainerDefinition::builder()
            .name(name)
            .image(image)
            .environment(kv("MONGO_INITDB_ROOT_PASSWORD", "pw"))
            .mount_points(
                MountPoint::builder()
                    .source_volume("data")
                    .container_path("/data/db")
                    .build(),
            )
            .build()
    }

    fn td(containers: Vec<ContainerDefinition>, exec_role: bool) -> TaskDefinition {
        let mut b = TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:us-east-1:1:task-definition/app:3")
            .family("app")
            .revision(3)
            .set_container_definitions(Some(containers))
            .volumes(
                Volume::builder()
                    .name("data")
                    .efs_volume_configuration(
                        EfsVolumeConfiguration::builder()
                            .file_system_id("fs-1")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            );
        if exec_role {
            b = b.execution_role_arn("arn:aws:iam::1:role/exec");
        }
        b.build()
    }

    fn sg(id: &str, enis: &[&str]) -> SecurityGroupInfo {
        SecurityGroupInfo {
            id: id.into(),
            name: format!("{id}-name"),
            description: String::new(),
            vpc_id: Some("vpc-1".into()),
            ingress: vec![],
            egress: vec![],
            network_interfaces: enis
                .iter()
                .map(|e| EniInfo {
                    id: e.to_string(),
                    description: String::new(),
                    interface_type: None,
                    requester_id: None,
                })
                .collect(),
            referenced_by: vec![],
            used_by_file_systems: vec!["fs-1".into()],
        }
    }

    fn world_with(def: TaskDefinition) -> World {
        World {
            account: "1".into(),
            caller_arn: "arn:aws:iam::1:user/x".into(),
            region: "us-east-1".into(),
            service: ServiceInfo {
                cluster: "c".into(),
                cluster_arn: "arn:aws:ecs:us-east-1:1:cluster/c".into(),
                name: "s".into(),
                arn: "arn:aws:ecs:us-east-1:1:service/c/s".into(),
                status: "ACTIVE".into(),
                task_definition_arn: "arn:aws:ecs:us-east-1:1:task-definition/app:3".into(),
                desired_count: 1,
                running_count: 1,
                pending_count: 0,
                launch_type: Some("FARGATE".into()),
                capacity_providers: vec![],
                network: Some(NetworkInfo {
                    subnets: vec!["subnet-1".into()],
                    security_groups: vec!["sg-task".into()],
                    assign_public_ip: "DISABLED".into(),
                }),
                deployments: vec![],
                circuit_breaker: None,
            },
            task_definition: crate::discover::ecs::summarize(&def),
            task_definition_spec: TaskDefSpec::from_described(&def, &[]),
            file_systems: vec![FileSystemInfo {
                id: "fs-1".into(),
                arn: None,
                name: Some("db".into()),
                lifecycle_state: "available".into(),
                size_bytes: 6144,
                encrypted: true,
                number_of_mount_targets: 2,
                mount_targets: ["a", "b"]
                    .iter()
                    .map(|x| MountTargetInfo {
                        id: format!("fsmt-{x}"),
                        subnet_id: format!("subnet-{x}"),
                        availability_zone: None,
                        network_interface_id: Some(format!("eni-mt-{x}")),
                        ip_address: None,
                        security_groups: vec!["sg-nfs".into()],
                        lifecycle_state: "available".into(),
                    })
                    .collect(),
                access_points: vec![AccessPointInfo {
                    id: "fsap-1".into(),
                    name: None,
                    root_directory: Some("/data".into()),
                    lifecycle_state: "available".into(),
                }],
            }],
            security_groups: vec![sg("sg-nfs", &["eni-mt-a", "eni-mt-b"])],
            efs_users: vec![],
            source: None,
        }
    }

    fn seed_world() -> World {
        world_with(td(
            vec![
                backend(&[
                    ("MONGODB_USERNAME", "max"),
                    ("MONGODB_PASSWORD", "old"),
                    ("MONGODB_URL", "localhost"),
                    ("MONGODB_NAME", "goals"),
                ]),
                mongo("mongodb", "mongo:6"),
            ],
            true,
        ))
    }

    fn opts(uri: &str) -> PlanOptions {
        PlanOptions {
            strategy: Strategy::default(),
            atlas: MongoUri::parse("--atlas-uri", uri).unwrap(),
            mongo_container: None,
            env: vec![],
            images: vec![],
            credentials: CredentialMode::SecretsManager,
            keep_efs: false,
        }
    }

    const ATLAS: &str = "mongodb+srv://app:Secr3tPw@c0.x.mongodb.net/goals";

    fn codes(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn recognises_mongo_images() {
        for yes in [
            "mongo",
            "mongo:6.0",
            "docker.io/library/mongo:7@sha256:abc",
            "bitnami/mongodb:6.0",
            "mongodb/mongodb-community-server:7.0-ubi8",
            "123.dkr.ecr.us-east-1.amazonaws.com/mongo:5",
        ] {
            assert!(is_mongo_image(yes), "{yes}");
        }
        for no in [
            "mongo-express",
            "me/backend",
            "mongoose-app:1",
            "nginx:mongo",
        ] {
            assert!(!is_mongo_image(no), "{no}");
        }
    }

    #[test]
    fn the_seed_world_plans_cleanly() {
        let w = seed_world();
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(p.ready, "{:?}", p.blockers);
        assert_eq!(p.env_mapping.len(), 4);
        assert!(p.file_systems[0].delete);
        assert!(p.security_groups[0].delete && !p.security_groups[0].shared);
        let s = serde_json::to_string(&p).unwrap();
        assert!(!s.contains("Secr3tPw") && !s.contains("\"old\""), "{s}");
        let new = p.new_task_definition.unwrap();
        assert!(crate::taskdef::dangling_references(&new).is_empty());
        assert!(new.container("mongodb").is_none());
    }

    #[test]
    fn picks_the_mongo_container_or_says_why_not() {
        let two = world_with(td(
            vec![
                backend(&[("MONGO_URI", "mongodb://localhost/x")]),
                mongo("mongodb", "mongo:6"),
                mongo("mongo2", "mongo:7"),
            ],
            true,
        ));
        let e = plan(&two, &opts(ATLAS)).unwrap_err();
        assert!(matches!(e, Error::Refused(_)));
        assert!(
            e.to_string().contains("--mongo-container") && e.to_string().contains("mongo2"),
            "{e}"
        );
        let mut o = opts(ATLAS);
        o.mongo_container = Some("mongo2".into());
        let p = plan(&two, &o).unwrap();
        assert_eq!(p.mongo_container.name, "mongo2");
        assert_eq!(p.mongo_container.chosen_by, "--mongo-container");
        o.mongo_container = Some("nope".into());
        assert!(matches!(plan(&two, &o).unwrap_err(), Error::Usage(_)));

        let none = world_with(td(
            vec![
                backend(&[("MONGO_URI", "mongodb://localhost/x")]),
                mongo("db", "custom/dbimage"),
            ],
            true,
        ));
        let e = plan(&none, &opts(ATLAS)).unwrap_err().to_string();
        assert!(
            e.contains("no container") && e.contains("db (custom/dbimage)"),
            "{e}"
        );
    }

    #[test]
    fn a_shared_efs_is_kept_and_same_family_revisions_only_warn() {
        let mut w = seed_world();
        w.efs_users.push(EfsUser {
            file_system_id: "fs-1".into(),
            kind: "task-definition".into(),
            arn: "arn:td/app:2".into(),
            family: "app".into(),
            same_family: true,
        });
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(p.file_systems[0].delete);
        assert!(codes(&p.warnings).contains(&"efs-old-revisions"));

        w.efs_users.push(EfsUser {
            file_system_id: "fs-1".into(),
            kind: "task-definition".into(),
            arn: "arn:td/reports:1".into(),
            family: "reports".into(),
            same_family: false,
        });
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(!p.file_systems[0].delete);
        assert!(p.file_systems[0].keep_reasons[0].contains("reports"));
        assert!(codes(&p.warnings).contains(&"efs-shared"));
        // Its security group is kept too: the kept EFS's mount targets still use it.
        assert!(!p.security_groups[0].delete);
        assert!(!p.steps.iter().any(|s| s.destructive), "{:?}", p.steps);
    }

    #[test]
    fn security_group_sharing_rules() {
        let nfs_rule = RuleRef {
            group_id: "sg-task".into(),
            group_name: "task".into(),
            direction: "egress".into(),
            rule: RuleInfo {
                protocol: "tcp".into(),
                from_port: Some(2049),
                to_port: Some(2049),
                groups: vec!["sg-nfs".into()],
                cidrs: vec![],
            },
        };
        let mut w = seed_world();
        w.security_groups[0].referenced_by.push(nfs_rule.clone());
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(p.security_groups[0].delete);
        assert_eq!(p.security_groups[0].rules_to_revoke.len(), 1);
        assert!(p.steps.iter().any(|s| s.id == "revoke-rules"));

        let mut ssh = nfs_rule.clone();
        ssh.group_id = "sg-bastion".into();
        ssh.direction = "ingress".into();
        ssh.rule.from_port = Some(22);
        ssh.rule.to_port = Some(22);
        w.security_groups[0].referenced_by.push(ssh);
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(!p.security_groups[0].delete && p.security_groups[0].shared);
        assert!(
            p.security_groups[0]
                .keep_reasons
                .iter()
                .any(|r| r.contains("sg-bastion"))
        );
        assert!(p.security_groups[0].rules_to_revoke.is_empty());
        assert!(p.ready, "a shared group is kept, not a blocker");

        let mut w = seed_world();
        w.security_groups[0].network_interfaces.push(EniInfo {
            id: "eni-ec2".into(),
            description: "an instance".into(),
            interface_type: None,
            requester_id: None,
        });
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(p.security_groups[0].shared && !p.security_groups[0].delete);

        let mut w = seed_world();
        w.service
            .network
            .as_mut()
            .unwrap()
            .security_groups
            .push("sg-nfs".into());
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(!p.security_groups[0].delete);

        let mut w = seed_world();
        w.security_groups[0].name = "default".into();
        assert!(!plan(&w, &opts(ATLAS)).unwrap().security_groups[0].delete);
    }

    #[test]
    fn keep_efs_keeps_everything() {
        let mut o = opts(ATLAS);
        o.keep_efs = true;
        let p = plan(&seed_world(), &o).unwrap();
        assert!(!p.file_systems[0].delete && !p.security_groups[0].delete);
        assert!(p.steps.iter().all(|s| !s.destructive));
        assert!(p.ready);
    }

    #[test]
    fn env_mapping_blockers_and_overrides() {
        let w = world_with(td(
            vec![
                backend(&[("APP_DB", "x"), ("NODE_ENV", "production")]),
                mongo("mongodb", "mongo:6"),
            ],
            true,
        ));
        let p = plan(&w, &opts(ATLAS)).unwrap();
        assert!(!p.ready);
        assert_eq!(codes(&p.blockers), ["no-app-env"]);
        assert!(p.blockers[0].message.contains("--env"));

        let mut o = opts(ATLAS);
        o.env = vec![
            EnvOverride::parse("APP_DB={uri}").unwrap(),
            EnvOverride::parse("APP_DB_HOST={host}").unwrap(),
        ];
        let p = plan(&w, &o).unwrap();
        assert!(p.ready, "{:?}", p.blockers);
        let db = p.env_mapping.iter().find(|m| m.name == "APP_DB").unwrap();
        assert_eq!(
            (
                db.origin.as_str(),
                db.current_in.as_str(),
                db.sensitive,
                db.new_in.as_str()
            ),
            ("--env", "environment", true, "secrets")
        );
        let host = p
            .env_mapping
            .iter()
            .find(|m| m.name == "APP_DB_HOST")
            .unwrap();
        assert_eq!(
            (
                host.container.as_str(),
                host.current_in.as_str(),
                host.new.as_str()
            ),
            ("backend", "new", "c0.x.mongodb.net")
        );
    }

    #[test]
    fn credentials_mode_rules() {
        let no_role = world_with(td(
            vec![
                backend(&[("MONGODB_PASSWORD", "old")]),
                mongo("mongodb", "mongo:6"),
            ],
            false,
        ));
        let p = plan(&no_role, &opts(ATLAS)).unwrap();
        assert_eq!(codes(&p.blockers), ["no-execution-role"]);
        let mut o = opts(ATLAS);
        o.credentials = CredentialMode::Env;
        let p = plan(&no_role, &o).unwrap();
        assert!(p.ready);
        assert!(codes(&p.warnings).contains(&"credentials-in-env"));
        assert!(p.secret_name.is_none());
    }

    #[test]
    fn database_name_comes_from_the_uri_or_the_app() {
        let p = plan(
            &seed_world(),
            &opts("mongodb+srv://app:pw@c0.x.mongodb.net/?w=majority"),
        )
        .unwrap();
        assert!(p.ready, "{:?}", p.blockers);
        assert_eq!(
            p.env_mapping
                .iter()
                .find(|m| m.name == "MONGODB_NAME")
                .unwrap()
                .new,
            "goals"
        );

        let w = world_with(td(
            vec![
                backend(&[("MONGODB_USERNAME", "max"), ("MONGODB_NAME", "")]),
                mongo("mongodb", "mongo:6"),
            ],
            true,
        ));
        let p = plan(&w, &opts("mongodb+srv://app:pw@c0.x.mongodb.net/")).unwrap();
        assert_eq!(codes(&p.blockers), ["no-database-name"]);
    }

    #[test]
    fn exactly_one_task_runs_the_source() {
        for (desired, running, says) in [
            (2, 2, "runs 2 tasks"),
            (1, 2, "runs 2 tasks"),
            (0, 0, "runs no task"),
            (1, 0, "runs no task"),
        ] {
            let mut w = seed_world();
            w.service.desired_count = desired;
            w.service.running_count = running;
            let p = plan(&w, &opts(ATLAS)).unwrap();
            assert_eq!(
                codes(&p.blockers),
                ["not-one-source"],
                "{desired}/{running}"
            );
            assert!(!p.ready);
            let m = &p.blockers[0].message;
            assert!(m.contains(says) && m.contains("--desired-count 1"), "{m}");
        }
        assert!(plan(&seed_world(), &opts(ATLAS)).unwrap().ready);
    }

    #[test]
    fn an_unsteady_service_blocks() {
        let mut w = seed_world();
        let d = DeploymentInfo {
            id: "d".into(),
            status: "PRIMARY".into(),
            task_definition_arn: String::new(),
            desired_count: 1,
            running_count: 0,
            rollout_state: None,
        };
        w.service.deployments = vec![d.clone(), d];
        assert_eq!(
            codes(&plan(&w, &opts(ATLAS)).unwrap().blockers),
            ["deployment-in-progress"]
        );
    }
}
