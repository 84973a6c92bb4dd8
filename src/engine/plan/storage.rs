//! The mongo container's storage: which EFS volumes go with it, and what happens to each
//! file system (deleted after a verified cutover, or kept and why).

use std::collections::BTreeSet;

use crate::engine::options::PlanOptions;
use crate::engine::plan::model::{FileSystemPlan, Finding, finding, push_unique};
use crate::world::{ContainerInfo, World};

/// What the mongo container mounts.
pub struct MongoStorage {
    /// Volumes only the mongo container mounts (removed with it).
    pub volumes_removed: Vec<String>,
    /// EFS file systems behind its volumes.
    pub fs_ids: Vec<String>,
    /// EFS access points its volumes use.
    pub ap_ids: Vec<String>,
}

/// Finds the mongo container's EFS volumes; a volume another container also mounts is a
/// blocker (a warning with `--keep-efs`).
pub fn mongo_storage(
    world: &World,
    mongo: &ContainerInfo,
    opts: &PlanOptions,
    blockers: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> MongoStorage {
    let td = &world.task_definition;
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
                    &mut *warnings
                } else {
                    &mut *blockers
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
    MongoStorage {
        volumes_removed,
        fs_ids,
        ap_ids,
    }
}

/// What happens to each file system: deleted unless something else needs it.
pub fn file_systems(
    world: &World,
    fs_ids: &[String],
    opts: &PlanOptions,
    blockers: &[Finding],
    warnings: &mut Vec<Finding>,
) -> Vec<FileSystemPlan> {
    let mut file_systems = Vec::new();
    for id in fs_ids {
        let Some(fs) = world.file_systems.iter().find(|f| &f.id == id) else {
            warnings.push(finding(
                "efs-missing",
                id,
                format!("EFS {id} named by the task definition does not exist; nothing to delete"),
            ));
            continue;
        };
        let keep = keep_reasons(world, id, &fs.lifecycle_state, opts, blockers, warnings);
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
    file_systems
}

/// Why file system `id` must be kept (empty: it can be deleted).
fn keep_reasons(
    world: &World,
    id: &str,
    lifecycle_state: &str,
    opts: &PlanOptions,
    blockers: &[Finding],
    warnings: &mut Vec<Finding>,
) -> Vec<String> {
    let td = &world.task_definition;
    let mut keep = Vec::new();
    if opts.keep_efs {
        keep.push("--keep-efs".to_string());
    }
    for u in world.efs_users.iter().filter(|u| u.file_system_id == id) {
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
            warnings,
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
        .any(|b| b.code == "efs-volume-shared-in-task" && b.resource == id)
    {
        keep.push("mounted by another container of this task".into());
    }
    if lifecycle_state != "available" {
        keep.push(format!("lifecycle state is {}", lifecycle_state));
    }
    let same_family_revs = world
        .efs_users
        .iter()
        .filter(|u| u.file_system_id == id && u.kind == "task-definition" && u.same_family)
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
    keep
}
