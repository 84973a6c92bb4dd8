//! Task definitions: the registrable form of a described revision, the rewrite that removes
//! the mongo container and points the app at Atlas (pure), and a redacted JSON view to diff.

use std::collections::BTreeSet;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, EphemeralStorage, IpcMode, KeyValuePair, NetworkMode,
    PidMode, ProxyConfiguration, RuntimePlatform, Secret as EcsSecret, Tag, TaskDefinition,
    TaskDefinitionPlacementConstraint, Volume,
};
use serde_json::{Value, json};

use crate::envmap::{mask_uri_password, name_looks_secret};
use crate::error::{Error, Result};
use crate::secret::{REDACTED, Secret};

/// Tag put on revisions efs2atlas registers, naming the revision they replace.
pub const FROM_REVISION_TAG: &str = "efs2atlas:replaces";

/// The revision number at the end of a task-definition ARN.
pub fn revision_of(arn: &str) -> Option<i32> {
    arn.rsplit(':').next()?.parse().ok()
}

/// The family part of a task-definition ARN.
pub fn family_of(arn: &str) -> &str {
    let tail = arn.rsplit('/').next().unwrap_or(arn);
    tail.rsplit_once(':').map(|(f, _)| f).unwrap_or(tail)
}

/// Everything `RegisterTaskDefinition` accepts, taken from a described revision.
///
/// Read-only fields that describe returns (ARN, revision, status, compatibilities,
/// requiresAttributes, registeredAt/By, deregisteredAt) are deliberately absent, and so are
/// inference accelerators, which ECS no longer accepts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskDefSpec {
    /// Family name.
    pub family: String,
    /// Task role.
    pub task_role_arn: Option<String>,
    /// Execution role.
    pub execution_role_arn: Option<String>,
    /// Network mode.
    pub network_mode: Option<NetworkMode>,
    /// Containers, in order.
    pub containers: Vec<ContainerDefinition>,
    /// Volumes, in order.
    pub volumes: Vec<Volume>,
    /// Placement constraints.
    pub placement_constraints: Vec<TaskDefinitionPlacementConstraint>,
    /// Requested compatibilities.
    pub requires_compatibilities: Vec<Compatibility>,
    /// Task CPU.
    pub cpu: Option<String>,
    /// Task memory.
    pub memory: Option<String>,
    /// Tags (from describe with `include=TAGS`).
    pub tags: Vec<Tag>,
    /// PID mode.
    pub pid_mode: Option<PidMode>,
    /// IPC mode.
    pub ipc_mode: Option<IpcMode>,
    /// App Mesh proxy.
    pub proxy_configuration: Option<ProxyConfiguration>,
    /// Ephemeral storage.
    pub ephemeral_storage: Option<EphemeralStorage>,
    /// Runtime platform.
    pub runtime_platform: Option<RuntimePlatform>,
    /// Fault injection flag.
    pub enable_fault_injection: Option<bool>,
}

impl TaskDefSpec {
    /// Takes the registrable fields of a described task definition.
    pub fn from_described(td: &TaskDefinition, tags: &[Tag]) -> TaskDefSpec {
        TaskDefSpec {
            family: td.family.clone().unwrap_or_default(),
            task_role_arn: td.task_role_arn.clone(),
            execution_role_arn: td.execution_role_arn.clone(),
            network_mode: td.network_mode.clone(),
            containers: td.container_definitions.clone().unwrap_or_default(),
            volumes: td.volumes.clone().unwrap_or_default(),
            placement_constraints: td.placement_constraints.clone().unwrap_or_default(),
            requires_compatibilities: td.requires_compatibilities.clone().unwrap_or_default(),
            cpu: td.cpu.clone(),
            memory: td.memory.clone(),
            tags: tags.to_vec(),
            pid_mode: td.pid_mode.clone(),
            ipc_mode: td.ipc_mode.clone(),
            proxy_configuration: td.proxy_configuration.clone(),
            ephemeral_storage: td.ephemeral_storage.clone(),
            runtime_platform: td.runtime_platform.clone(),
            enable_fault_injection: td.enable_fault_injection,
        }
    }

    /// A ready `RegisterTaskDefinition` call for this spec.
    pub fn register(
        &self,
        ecs: &aws_sdk_ecs::Client,
    ) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder{
        fn some<T: Clone>(v: &[T]) -> Option<Vec<T>> {
            (!v.is_empty()).then(|| v.to_vec())
        }
        ecs.register_task_definition()
            .family(&self.family)
            .set_task_role_arn(self.task_role_arn.clone())
            .set_execution_role_arn(self.execution_role_arn.clone())
            .set_network_mode(self.network_mode.clone())
            .set_container_definitions(Some(self.containers.clone()))
            .set_volumes(some(&self.volumes))
            .set_placement_constraints(some(&self.placement_constraints))
            .set_requires_compatibilities(some(&self.requires_compatibilities))
            .set_cpu(self.cpu.clone())
            .set_memory(self.memory.clone())
            .set_tags(some(&self.tags))
            .set_pid_mode(self.pid_mode.clone())
            .set_ipc_mode(self.ipc_mode.clone())
            .set_proxy_configuration(self.proxy_configuration.clone())
            .set_ephemeral_storage(self.ephemeral_storage.clone())
            .set_runtime_platform(self.runtime_platform.clone())
            .set_enable_fault_injection(self.enable_fault_injection)
    }

    /// The same spec with empty lists and absent lists treated alike (ECS answers `[]` where
    /// `null` was registered), for comparing a described revision with a registered one.
    pub fn normalized(&self) -> TaskDefSpec {
        fn none_if_empty<T>(v: &mut Option<Vec<T>>) {
            if v.as_ref().is_some_and(|x| x.is_empty()) {
                *v = None;
            }
        }
        let mut s = self.clone();
        for c in &mut s.containers {
            none_if_empty(&mut c.links);
            none_if_empty(&mut c.port_mappings);
            none_if_empty(&mut c.entry_point);
            none_if_empty(&mut c.command);
            none_if_empty(&mut c.environment);
            none_if_empty(&mut c.environment_files);
            none_if_empty(&mut c.mount_points);
            none_if_empty(&mut c.volumes_from);
            none_if_empty(&mut c.secrets);
            none_if_empty(&mut c.depends_on);
            none_if_empty(&mut c.dns_servers);
            none_if_empty(&mut c.dns_search_domains);
            none_if_empty(&mut c.extra_hosts);
            none_if_empty(&mut c.docker_security_options);
            none_if_empty(&mut c.ulimits);
            none_if_empty(&mut c.system_controls);
            none_if_empty(&mut c.resource_requirements);
            none_if_empty(&mut c.credential_specs);
        }
        s
    }

    /// The container with this name.
    pub fn container(&self, name: &str) -> Option<&ContainerDefinition> {
        self.containers
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
    }

    /// Names of the volumes only `container` mounts (no other container mounts them, and no
    /// other container takes them through `volumesFrom` of it... which the rewrite removes).
    pub fn volumes_only_mounted_by(&self, container: &str) -> Vec<String> {
        let mounted_by = |c: &ContainerDefinition| -> BTreeSet<String> {
            c.mount_points()
                .iter()
                .filter_map(|m| m.source_volume.clone())
                .collect()
        };
        let mine = self
            .container(container)
            .map(mounted_by)
            .unwrap_or_default();
        let others: BTreeSet<String> = self
            .containers
            .iter()
            .filter(|c| c.name.as_deref() != Some(container))
            .flat_map(mounted_by)
            .collect();
        mine.difference(&others).cloned().collect()
    }
}

/// How the Atlas credentials reach the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialTarget {
    /// Plain environment variables (visible in the task definition).
    Env,
    /// `secrets` entries reading JSON keys of this Secrets Manager secret.
    SecretsManager {
        /// The secret's ARN (or a placeholder in a plan before it exists).
        secret_arn: String,
    },
}

/// One env var to set in one container.
#[derive(Clone, Debug)]
pub struct EnvAssignment {
    /// Container name.
    pub container: String,
    /// Env var name.
    pub name: String,
    /// Its new value.
    pub value: Secret,
    /// Whether the value carries a credential (goes to `secrets` in Secrets Manager mode).
    pub sensitive: bool,
}

/// What the rewrite changes.
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// The mongo container to remove.
    pub mongo_container: String,
    /// Env vars to set.
    pub env: Vec<EnvAssignment>,
    /// `--image CONTAINER=IMAGE` swaps.
    pub images: Vec<(String, String)>,
    /// Where sensitive values go.
    pub credentials: CredentialTarget,
}

/// The `valueFrom` of a JSON key in a Secrets Manager secret.
pub fn secret_value_from(secret_arn: &str, key: &str) -> String {
    format!("{secret_arn}:{key}::")
}

/// Produces the next revision: mongo container and its private volumes gone, references to
/// it removed, env vars pointed at Atlas, images swapped; everything else untouched.
pub fn rewrite(current: &TaskDefSpec, rw: &Rewrite) -> Result<TaskDefSpec> {
    let mongo = rw.mongo_container.as_str();
    if current.container(mongo).is_none() {
        return Err(Error::other(format!(
            "task definition family {} has no container named {mongo}",
            current.family
        )));
    }
    let mut next = current.clone();
    let drop_volumes: BTreeSet<String> =
        current.volumes_only_mounted_by(mongo).into_iter().collect();
    next.containers.retain(|c| c.name.as_deref() != Some(mongo));
    if next.containers.is_empty() {
        return Err(Error::refused(format!(
            "task definition family {} has only the mongo container {mongo}; there is no app to point at Atlas",
            current.family
        )));
    }
    next.volumes
        .retain(|v| !v.name.as_ref().is_some_and(|n| drop_volumes.contains(n)));

    for c in &mut next.containers {
        unlink(c, mongo, &drop_volumes);
    }

    for (container, image) in &rw.images {
        let c = next
            .containers
            .iter_mut()
            .find(|c| c.name.as_deref() == Some(container.as_str()))
            .ok_or_else(|| {
                Error::usage(format!(
                    "--image {container}=...: the task definition has no container named {container} (after removing {mongo})"
                ))
            })?;
        c.image = Some(image.clone());
    }

    for a in &rw.env {
        let c = next
            .containers
            .iter_mut()
            .find(|c| c.name.as_deref() == Some(a.container.as_str()))
            .ok_or_else(|| {
                Error::other(format!(
                    "no container named {} to set {} in",
                    a.container, a.name
                ))
            })?;
        set_env(c, a, &rw.credentials)?;
    }
    Ok(next)
}

/// Removes a container's references to the mongo container and its dropped volumes.
fn unlink(c: &mut ContainerDefinition, mongo: &str, drop_volumes: &BTreeSet<String>) {
    if let Some(deps) = &mut c.depends_on {
        deps.retain(|d| d.container_name != mongo);
        if deps.is_empty() {
            c.depends_on = None;
        }
    }
    if let Some(links) = &mut c.links {
        links.retain(|l| l.split(':').next() != Some(mongo));
        if links.is_empty() {
            c.links = None;
        }
    }
    if let Some(vf) = &mut c.volumes_from {
        vf.retain(|v| v.source_container.as_deref() != Some(mongo));
        if vf.is_empty() {
            c.volumes_from = None;
        }
    }
    if let Some(mps) = &mut c.mount_points {
        mps.retain(|m| {
            !m.source_volume
                .as_ref()
                .is_some_and(|s| drop_volumes.contains(s))
        });
        if mps.is_empty() {
            c.mount_points = None;
        }
    }
}

/// Sets one env var in a container: a secret reference for a credential under Secrets
/// Manager, else a plain value; replaced in place where it exists, so the diff shows only
/// the change.
fn set_env(
    c: &mut ContainerDefinition,
    a: &EnvAssignment,
    credentials: &CredentialTarget,
) -> Result<()> {
    let env = c.environment.get_or_insert_with(Vec::new);
    let secrets = c.secrets.get_or_insert_with(Vec::new);
    // Replace in place where the var exists so the revision diff shows only the change.
    match (credentials, a.sensitive) {
        (CredentialTarget::SecretsManager { secret_arn }, true) => {
            env.retain(|kv| kv.name.as_deref() != Some(a.name.as_str()));
            let s = EcsSecret::builder()
                .name(&a.name)
                .value_from(secret_value_from(secret_arn, &a.name))
                .build()
                .map_err(|e| Error::other(format!("building secret reference {}: {e}", a.name)))?;
            match secrets.iter_mut().find(|x| x.name == a.name) {
                Some(x) => *x = s,
                None => secrets.push(s),
            }
        }
        _ => {
            secrets.retain(|s| s.name != a.name);
            let kv = KeyValuePair::builder()
                .name(&a.name)
                .value(a.value.expose())
                .build();
            match env
                .iter_mut()
                .find(|x| x.name.as_deref() == Some(a.name.as_str()))
            {
                Some(x) => *x = kv,
                None => env.push(kv),
            }
        }
    }
    if env.is_empty() {
        c.environment = None;
    }
    if c.secrets.as_ref().is_some_and(|s| s.is_empty()) {
        c.secrets = None;
    }
    Ok(())
}

/// Problems with a spec that real ECS would reject but moto accepts: dangling mount points,
/// `dependsOn`, `links` or `volumesFrom` naming containers or volumes that are not there.
pub fn dangling_references(spec: &TaskDefSpec) -> Vec<String> {
    let containers: BTreeSet<&str> = spec
        .containers
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .filter_map(|v| v.name.as_deref())
        .collect();
    let mut out = Vec::new();
    for c in &spec.containers {
        let name = c.name.as_deref().unwrap_or("?");
        for m in c.mount_points() {
            if let Some(v) = m.source_volume.as_deref()
                && !volumes.contains(v)
            {
                out.push(format!("container {name} mounts missing volume {v}"));
            }
        }
        for d in c.depends_on() {
            if !containers.contains(d.container_name.as_str()) {
                out.push(format!(
                    "container {name} depends on missing container {}",
                    d.container_name
                ));
            }
        }
        for l in c.links() {
            let target = l.split(':').next().unwrap_or(l);
            if !containers.contains(target) {
                out.push(format!(
                    "container {name} links to missing container {target}"
                ));
            }
        }
        for v in c.volumes_from() {
            if let Some(s) = v.source_container.as_deref()
                && !containers.contains(s)
            {
                out.push(format!(
                    "container {name} takes volumes from missing container {s}"
                ));
            }
        }
    }
    out
}

/// What an env value may show: masked when its name or content says it is a credential, or
/// when it contains one of `secrets`.
pub fn shown_env_value(name: &str, value: &str, secrets: &[&Secret]) -> String {
    if name_looks_secret(name) {
        return REDACTED.to_string();
    }
    if secrets
        .iter()
        .any(|s| s.expose().len() >= 3 && value.contains(s.expose()))
    {
        return mask_uri_password(value).unwrap_or_else(|| REDACTED.to_string());
    }
    mask_uri_password(value).unwrap_or_else(|| value.to_string())
}

/// A JSON view of the fields that matter to a reviewer, with credentials masked.
///
/// Fields not shown are copied verbatim by [`rewrite`]; this view is for the diff.
pub fn view(spec: &TaskDefSpec, secrets: &[&Secret]) -> Value {
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| container_view(c, secrets))
        .collect();
    let volumes: Vec<Value> = spec.volumes.iter().map(volume_view).collect();
    json!({
        "family": spec.family,
        "taskRoleArn": spec.task_role_arn,
        "executionRoleArn": spec.execution_role_arn,
        "networkMode": spec.network_mode.as_ref().map(|n| n.as_str()),
        "requiresCompatibilities": spec.requires_compatibilities.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "cpu": spec.cpu,
        "memory": spec.memory,
        "containerDefinitions": containers,
        "volumes": volumes,
    })
}

/// One container as the reviewer sees it (empty and absent fields left out).
fn container_view(c: &ContainerDefinition, secrets: &[&Secret]) -> Value {
    fn list<T>(items: &[T], f: impl Fn(&T) -> Value) -> Value {
        Value::Array(items.iter().map(f).collect())
    }
    let env = |kv: &KeyValuePair| {
        let n = kv.name.as_deref().unwrap_or("");
        let shown = shown_env_value(n, kv.value.as_deref().unwrap_or(""), secrets);
        json!({"name": n, "value": shown})
    };
    let fields = [
        ("name", json!(c.name)),
        ("image", json!(c.image)),
        ("essential", json!(c.essential)),
        ("cpu", json!(c.cpu)),
        ("memory", json!(c.memory)),
        ("memoryReservation", json!(c.memory_reservation)),
        (
            "portMappings",
            list(
                c.port_mappings(),
                |p| json!({"containerPort": p.container_port, "protocol": p.protocol.as_ref().map(|x| x.as_str())}),
            ),
        ),
        ("command", json!(c.command)),
        ("entryPoint", json!(c.entry_point)),
        ("environment", list(c.environment(), env)),
        (
            "secrets",
            list(
                c.secrets(),
                |s| json!({"name": s.name, "valueFrom": s.value_from}),
            ),
        ),
        (
            "mountPoints",
            list(
                c.mount_points(),
                |m| json!({"sourceVolume": m.source_volume, "containerPath": m.container_path, "readOnly": m.read_only}),
            ),
        ),
        (
            "volumesFrom",
            list(
                c.volumes_from(),
                |v| json!({"sourceContainer": v.source_container}),
            ),
        ),
        (
            "dependsOn",
            list(
                c.depends_on(),
                |d| json!({"containerName": d.container_name, "condition": d.condition.as_str()}),
            ),
        ),
        ("links", json!(c.links)),
        (
            "logConfiguration",
            json!(
                c.log_configuration
                    .as_ref()
                    .map(|l| { json!({"logDriver": l.log_driver.as_str(), "options": l.options}) })
            ),
        ),
        (
            "healthCheck",
            json!(
                c.health_check
                    .as_ref()
                    .map(|h| json!({"command": h.command}))
            ),
        ),
    ];
    Value::Object(
        fields
            .into_iter()
            .filter(|(_, v)| !v.is_null() && *v != json!([]))
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// One volume as the reviewer sees it.
fn volume_view(v: &aws_sdk_ecs::types::Volume) -> Value {
    let mut o = json!({"name": v.name});
    if let Some(e) = &v.efs_volume_configuration {
        o["efsVolumeConfiguration"] = json!({
            "fileSystemId": e.file_system_id,
            "rootDirectory": e.root_directory,
            "transitEncryption": e.transit_encryption.as_ref().map(|t| t.as_str()),
            "accessPointId": e.authorization_config.as_ref().and_then(|a| a.access_point_id.clone()),
        });
    }
    if let Some(h) = &v.host {
        o["host"] = json!({"sourcePath": h.source_path});
    }
    o
}

/// A unified diff of two views.
pub fn diff(old: &Value, new: &Value, old_label: &str, new_label: &str) -> String {
    let a = serde_json::to_string_pretty(old).unwrap_or_default() + "\n";
    let b = serde_json::to_string_pretty(new).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{
        ContainerCondition, ContainerDependency, CpuArchitecture, EfsVolumeConfiguration,
        HostVolumeProperties, MountPoint, OsFamily, PortMapping,
        TaskDefinitionPlacementConstraintType, VolumeFrom,
    };

    fn kv(n: &str, v: &str) -> KeyValuePair {
        KeyValuePair::builder().name(n).value(v).build()
    }

    fn mp(v: &str, p: &str) -> MountPoint {
        MountPoint::builder()
            .source_volume(v)
            .container_path(p)
            .build()
    }

    /// A task definition with everything a rewrite could disturb.
    pub(crate) fn elaborate() -> TaskDefSpec {
        let backend = ContainerDefinition::builder()
            .name("backend")
            .image("me/backend:1")
            .essential(true)
            .environment(kv("MONGODB_USERNAME", "max"))
            .environment(kv("MONGODB_PASSWORD", "old"))
            .environment(kv("MONGODB_URL", "localhost"))
            .environment(kv("LOG_LEVEL", "info"))
            .depends_on(
                ContainerDependency::builder()
                    .container_name("mongodb")
                    .condition(ContainerCondition::Healthy)
                    .build()
                    .unwrap(),
            )
            .depends_on(
                ContainerDependency::builder()
                    .container_name("logrouter")
                    .condition(ContainerCondition::Start)
                    .build()
                    .unwrap(),
            )
            .links("mongodb:db")
            .links("logrouter")
            .volumes_from(
                VolumeFrom::builder()
                    .source_container("mongodb")
                    .read_only(true)
                    .build(),
            )
            .volumes_from(VolumeFrom::builder().source_container("logrouter").build())
            .mount_points(mp("shared", "/cache"))
            .port_mappings(PortMapping::builder().container_port(80).build())
            .build();
        let logrouter = ContainerDefinition::builder()
            .name("logrouter")
            .image("amazon/aws-for-fluent-bit")
            .essential(false)
            .mount_points(mp("logs", "/logs"))
            .build();
        let mongo = ContainerDefinition::builder()
            .name("mongodb")
            .image("mongo:7")
            .mount_points(mp("data", "/data/db"))
            .mount_points(mp("shared", "/shared"))
            .build();
        let efs = Volume::builder()
            .name("data")
            .efs_volume_configuration(
                EfsVolumeConfiguration::builder()
                    .file_system_id("fs-1")
                    .build()
                    .unwrap(),
            )
            .build();
        let host = |n: &str| {
            Volume::builder()
                .name(n)
                .host(
                    HostVolumeProperties::builder()
                        .source_path(format!("/{n}"))
                        .build(),
                )
                .build()
        };
        TaskDefSpec {
            family: "app".into(),
            task_role_arn: Some("arn:aws:iam::1:role/task".into()),
            execution_role_arn: Some("arn:aws:iam::1:role/exec".into()),
            network_mode: Some(NetworkMode::Awsvpc),
            containers: vec![backend, logrouter, mongo],
            volumes: vec![efs, host("shared"), host("logs")],
            placement_constraints: vec![
                TaskDefinitionPlacementConstraint::builder()
                    .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                    .expression("attribute:ecs.os-type == linux")
                    .build(),
            ],
            requires_compatibilities: vec![Compatibility::Fargate, Compatibility::Ec2],
            cpu: Some("1024".into()),
            memory: Some("2048".into()),
            tags: vec![Tag::builder().key("team").value("x").build()],
            pid_mode: Some(PidMode::Task),
            ipc_mode: None,
            proxy_configuration: None,
            ephemeral_storage: Some(EphemeralStorage::builder().size_in_gib(30).build()),
            runtime_platform: Some(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            ),
            enable_fault_injection: Some(false),
        }
    }

    fn rw(credentials: CredentialTarget) -> Rewrite {
        Rewrite {
            mongo_container: "mongodb".into(),
            env: vec![
                EnvAssignment {
                    container: "backend".into(),
                    name: "MONGODB_USERNAME".into(),
                    value: Secret::new("app"),
                    sensitive: false,
                },
                EnvAssignment {
                    container: "backend".into(),
                    name: "MONGODB_PASSWORD".into(),
                    value: Secret::new("newpw"),
                    sensitive: true,
                },
                EnvAssignment {
                    container: "backend".into(),
                    name: "MONGODB_URL".into(),
                    value: Secret::new("c0.mongodb.net"),
                    sensitive: false,
                },
            ],
            images: vec![("backend".into(), "me/backend:atlas".into())],
            credentials,
        }
    }

    #[test]
    fn rewrite_changes_exactly_the_intended_fields() {
        let old = elaborate();
        let new = rewrite(&old, &rw(CredentialTarget::Env)).unwrap();
        assert!(
            dangling_references(&new).is_empty(),
            "{:?}",
            dangling_references(&new)
        );

        // Build the expected result by hand from the old one.
        let mut want = old.clone();
        want.containers
            .retain(|c| c.name.as_deref() != Some("mongodb"));
        want.volumes.retain(|v| v.name.as_deref() != Some("data"));
        let b = &mut want.containers[0];
        b.image = Some("me/backend:atlas".into());
        b.environment = Some(vec![
            kv("MONGODB_USERNAME", "app"),
            kv("MONGODB_PASSWORD", "newpw"),
            kv("MONGODB_URL", "c0.mongodb.net"),
            kv("LOG_LEVEL", "info"),
        ]);
        b.depends_on = Some(vec![
            ContainerDependency::builder()
                .container_name("logrouter")
                .condition(ContainerCondition::Start)
                .build()
                .unwrap(),
        ]);
        b.links = Some(vec!["logrouter".into()]);
        b.volumes_from = Some(vec![
            VolumeFrom::builder().source_container("logrouter").build(),
        ]);
        assert_eq!(new, want);
    }

    #[test]
    fn rewrite_moves_credentials_to_secrets_manager() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:efs2atlas/c/s-AbCdEf";
        let new = rewrite(
            &elaborate(),
            &rw(CredentialTarget::SecretsManager {
                secret_arn: arn.into(),
            }),
        )
        .unwrap();
        let b = new.container("backend").unwrap();
        assert!(
            b.environment()
                .iter()
                .all(|kv| kv.name.as_deref() != Some("MONGODB_PASSWORD"))
        );
        assert!(
            b.environment()
                .iter()
                .all(|kv| kv.value.as_deref() != Some("newpw"))
        );
        assert_eq!(b.secrets().len(), 1);
        assert_eq!(b.secrets()[0].name, "MONGODB_PASSWORD");
        assert_eq!(
            b.secrets()[0].value_from,
            format!("{arn}:MONGODB_PASSWORD::")
        );
        let v = serde_json::to_string(&view(&new, &[])).unwrap();
        assert!(!v.contains("newpw"));
    }

    #[test]
    fn rewrite_keeps_a_volume_another_container_mounts() {
        let old = elaborate();
        assert_eq!(
            old.volumes_only_mounted_by("mongodb"),
            vec!["data".to_string()]
        );
        let new = rewrite(&old, &rw(CredentialTarget::Env)).unwrap();
        assert!(
            new.volumes
                .iter()
                .any(|v| v.name.as_deref() == Some("shared"))
        );
        assert!(
            new.volumes
                .iter()
                .any(|v| v.name.as_deref() == Some("logs"))
        );
    }

    #[test]
    fn rewrite_refuses_bad_input() {
        let mut r = rw(CredentialTarget::Env);
        r.images = vec![("nope".into(), "x".into())];
        assert!(
            rewrite(&elaborate(), &r)
                .unwrap_err()
                .to_string()
                .contains("no container named nope")
        );
        let mut only = elaborate();
        only.containers
            .retain(|c| c.name.as_deref() == Some("mongodb"));
        assert!(matches!(
            rewrite(&only, &rw(CredentialTarget::Env)),
            Err(e) if e.kind == crate::error::Kind::Refused
        ));
        let mut r = rw(CredentialTarget::Env);
        r.mongo_container = "db".into();
        assert!(rewrite(&elaborate(), &r).is_err());
    }

    #[test]
    fn view_masks_credentials_and_diff_shows_changes() {
        let old = elaborate();
        let pw = Secret::new("newpw");
        let new = rewrite(&old, &rw(CredentialTarget::Env)).unwrap();
        let d = diff(&view(&old, &[&pw]), &view(&new, &[&pw]), "old", "new");
        assert!(!d.contains("newpw") && !d.contains("\"old\""), "{d}");
        assert!(d.contains("-      \"name\": \"mongodb\""), "{d}");
        assert!(d.contains("+      \"image\": \"me/backend:atlas\""), "{d}");
        assert_eq!(
            shown_env_value("DB", "mongodb://u:newpw@h/x", &[&pw]),
            "mongodb://u:****@h/x"
        );
        assert_eq!(
            shown_env_value("CONN", "host=h password=newpw", &[&pw]),
            "****"
        );
    }

    #[test]
    fn arn_parts() {
        let a = "arn:aws:ecs:us-east-1:1:task-definition/goals-app:12";
        assert_eq!(revision_of(a), Some(12));
        assert_eq!(family_of(a), "goals-app");
    }

    #[test]
    fn dangling_references_are_found() {
        let mut s = elaborate();
        s.volumes.clear();
        let d = dangling_references(&s);
        assert!(
            d.iter().any(|m| m.contains("mounts missing volume data")),
            "{d:?}"
        );
        let mut s = elaborate();
        s.containers
            .retain(|c| c.name.as_deref() != Some("mongodb"));
        let d = dangling_references(&s);
        assert!(
            d.iter()
                .any(|m| m.contains("depends on missing container mongodb")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|m| m.contains("links to missing container mongodb")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|m| m.contains("volumes from missing container mongodb")),
            "{d:?}"
        );
    }
}
