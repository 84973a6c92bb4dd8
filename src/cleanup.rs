//! Cleanup of the old storage, only when it is safe: guards re-checked live, then access
//! points → mount targets (wait until gone) → file system (wait until gone) → NFS-only rules
//! in other groups → the NFS security group, retrying `FileSystemInUse` and
//! `DependencyViolation` while AWS releases ENIs. Every deletion treats "already gone" as done.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{IpPermission, UserIdGroupPair};
use serde::{Deserialize, Serialize};

use crate::aws::{Aws, aws_error, error_code};
use crate::cancel::Cancel;
use crate::discover;
use crate::error::{Error, Result};
use crate::world::{NFS_PORT, is_mongo_image};

/// The cleanup's inputs: what the plan marked for deletion, and the service it must not break.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CleanupTarget {
    /// Cluster.
    pub cluster: String,
    /// Service.
    pub service: String,
    /// The service's ARN (its own tasks are not "other users").
    pub service_arn: String,
    /// File systems to delete.
    pub file_systems: Vec<String>,
    /// Security groups to delete.
    pub security_groups: Vec<String>,
}

/// How long to keep retrying while AWS releases resources.
#[derive(Clone, Debug)]
pub struct CleanupOptions {
    /// Give up after this long per resource.
    pub timeout: Duration,
    /// First retry delay (doubles, capped at 15 s).
    pub first_backoff: Duration,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions {
            timeout: Duration::from_secs(600),
            first_backoff: Duration::from_secs(2),
        }
    }
}

/// What the cleanup did, resource by resource.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CleanupReport {
    /// Deleted (or found already gone): `kind id`.
    pub deleted: Vec<String>,
    /// Backup status per file system, as AWS Backup reports it.
    pub backups: Vec<String>,
    /// Retries that were needed, e.g. `DependencyViolation on sg-... x3`.
    pub retries: Vec<String>,
}

/// Whether AWS Backup protects a file system (so a recovery point may exist).
pub async fn backup_status(aws: &Aws, fs: &str) -> Result<String> {
    match aws
        .efs
        .describe_backup_policy()
        .file_system_id(fs)
        .send()
        .await
    {
        Ok(o) => Ok(o
            .backup_policy
            .map(|p| p.status.as_str().to_string())
            .unwrap_or_else(|| "UNKNOWN".into())),
        Err(e) if matches!(error_code(&e), Some("PolicyNotFound")) => Ok("DISABLED".into()),
        Err(e) if matches!(error_code(&e), Some("FileSystemNotFound")) => Ok("GONE".into()),
        // Informational only: an unreadable backup policy must not stop or start a deletion.
        Err(e) => Ok(format!(
            "status unknown ({})",
            aws_error("elasticfilesystem:DescribeBackupPolicy", Some(fs), e)
        )),
    }
}

/// Re-checks, live, everything that must hold before anything is deleted. Returns the
/// same-family revisions that still mount the file systems (to deregister), or a refusal
/// naming the blocking resource.
pub async fn check_guards(aws: &Aws, t: &CleanupTarget, verified: bool) -> Result<Vec<String>> {
    if !verified {
        return Err(Error::refused(
            "cleanup refused: the copy has not been verified clean",
        ));
    }
    let svc = discover::ecs::service(aws, &t.cluster, &t.service).await?;
    let (td, _) = discover::ecs::task_definition(aws, &svc.task_definition_arn).await?;
    let info = discover::ecs::summarize(&td);
    if let Some(c) = info.containers.iter().find(|c| is_mongo_image(&c.image)) {
        return Err(Error::refused(format!(
            "cleanup refused: service {} runs {} which still has the MongoDB container {}",
            t.service, svc.task_definition_arn, c.name
        )));
    }
    let mounted = discover::ecs::efs_ids(&td);
    if let Some(fs) = t.file_systems.iter().find(|f| mounted.contains(*f)) {
        return Err(Error::refused(format!(
            "cleanup refused: service {} still mounts EFS {fs}",
            t.service
        )));
    }
    let primary_ok = svc.deployments.len() == 1 && svc.running_count == svc.desired_count;
    if !primary_ok {
        return Err(Error::refused(format!(
            "cleanup refused: service {} is not steady ({} deployments, {}/{} running); run `efs2atlas resume` once it is",
            t.service,
            svc.deployments.len(),
            svc.running_count,
            svc.desired_count
        )));
    }
    let ids: BTreeSet<String> = t.file_systems.iter().cloned().collect();
    let users =
        discover::ecs::efs_users(aws, &ids, &info.family, &svc.task_definition_arn, &svc.arn)
            .await?;
    let mut own_old = Vec::new();
    for u in users {
        if u.kind == "task-definition" && u.same_family {
            own_old.push(u.arn);
            continue;
        }
        return Err(Error::refused(format!(
            "cleanup refused: EFS {} is still used by {} {} (family {}); nothing was deleted",
            u.file_system_id, u.kind, u.arn, u.family
        )));
    }
    for sg in &t.security_groups {
        check_security_group(aws, sg, &t.file_systems).await?;
    }
    own_old.sort();
    own_old.dedup();
    Ok(own_old)
}

/// A security group may go when only the deleted file systems' mount targets carry it and
/// every rule elsewhere that names it is an NFS-only rule.
async fn check_security_group(aws: &Aws, sg: &str, file_systems: &[String]) -> Result<()> {
    let Some(g) = discover::ec2::security_groups(aws, &[sg.to_string()])
        .await
        .ok()
        .and_then(|mut v| v.pop())
    else {
        return Ok(()); // already gone
    };
    let mut mt_enis = BTreeSet::new();
    for fs in file_systems {
        if let Some(f) = discover::efs::file_system(aws, fs).await? {
            mt_enis.extend(
                f.mount_targets
                    .iter()
                    .filter_map(|m| m.network_interface_id.clone()),
            );
        }
    }
    if let Some(e) = g
        .network_interfaces
        .iter()
        .find(|e| !mt_enis.contains(&e.id) && !is_efs_eni(&e.description))
    {
        return Err(Error::refused(format!(
            "cleanup refused: security group {sg} is also on network interface {} ({}); nothing was deleted",
            e.id, e.description
        )));
    }
    if let Some(r) = g.referenced_by.iter().find(|r| !nfs_only(&r.rule)) {
        return Err(Error::refused(format!(
            "cleanup refused: security group {sg} is referenced by a non-NFS {} rule in {} ({}); nothing was deleted",
            r.direction, r.group_id, r.group_name
        )));
    }
    Ok(())
}

fn is_efs_eni(description: &str) -> bool {
    description
        .to_ascii_lowercase()
        .contains("efs mount target")
}

fn nfs_only(r: &crate::world::RuleInfo) -> bool {
    r.protocol == "tcp" && r.from_port == Some(NFS_PORT) && r.to_port == Some(NFS_PORT)
}

/// Retries `op` while it fails with one of `codes`, with exponential backoff up to the timeout.
async fn retry<T, F, Fut>(
    what: &str,
    codes: &[&str],
    opts: &CleanupOptions,
    cancel: &Cancel,
    report: &mut CleanupReport,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, (Option<String>, Error)>>,
{
    let deadline = Instant::now() + opts.timeout;
    let mut wait = opts.first_backoff;
    let mut tries = 0;
    loop {
        match op().await {
            Ok(v) => {
                if tries > 0 {
                    report
                        .retries
                        .push(format!("{what}: retried {tries} time(s)"));
                }
                return Ok(v);
            }
            Err((Some(code), e)) if codes.contains(&code.as_str()) => {
                tries += 1;
                if Instant::now() + wait > deadline {
                    return Err(Error::other(format!(
                        "{what} still failed with {code} after {:.0}s of retries ({e}); run `efs2atlas resume` later to finish the cleanup",
                        opts.timeout.as_secs_f64()
                    )));
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return Err(Error::interrupted(format!("interrupted while waiting to retry {what}"))),
                }
                wait = (wait * 2).min(Duration::from_secs(15));
            }
            Err((_, e)) => return Err(e),
        }
    }
}

/// Deregisters the migrated family's old revisions that mount the deleted file systems, so
/// nothing can start a task against storage that no longer exists.
pub async fn deregister(aws: &Aws, arns: &[String], report: &mut CleanupReport) -> Result<()> {
    for arn in arns {
        aws.ecs
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DeregisterTaskDefinition", Some(arn), e))?;
        report
            .deleted
            .push(format!("task-definition {arn} (deregistered)"));
    }
    Ok(())
}

/// Deletes one file system with its access points and mount targets.
pub async fn delete_file_system(
    aws: &Aws,
    fs: &str,
    opts: &CleanupOptions,
    cancel: &Cancel,
    report: &mut CleanupReport,
) -> Result<()> {
    let Some(info) = discover::efs::file_system(aws, fs).await? else {
        report.deleted.push(format!("efs {fs} (already gone)"));
        return Ok(());
    };
    delete_attachments(aws, &info, report).await?;
    // Mount targets take a while to go; the file system cannot be deleted before.
    wait_mount_targets_gone(aws, fs, opts, cancel, report).await?;
    retry(
        &format!("deleting EFS {fs}"),
        &["FileSystemInUse"],
        opts,
        cancel,
        report,
        || async {
            match aws.efs.delete_file_system().file_system_id(fs).send().await {
                Ok(_) => Ok(()),
                Err(e) if error_code(&e) == Some("FileSystemNotFound") => Ok(()),
                Err(e) => Err((
                    error_code(&e).map(str::to_string),
                    aws_error("elasticfilesystem:DeleteFileSystem", Some(fs), e),
                )),
            }
        },
    )
    .await?;
    retry(
        &format!("waiting for EFS {fs} to be gone"),
        &["StillDeleting"],
        opts,
        cancel,
        report,
        || async {
            match discover::efs::file_system(aws, fs).await {
                Ok(None) => Ok(()),
                Ok(Some(f)) => Err((
                    Some("StillDeleting".into()),
                    Error::other(format!("EFS {fs} is {}", f.lifecycle_state)),
                )),
                Err(e) => Err((None, e)),
            }
        },
    )
    .await?;
    report.deleted.push(format!("efs {fs}"));
    Ok(())
}

/// Deletes a file system's access points and mount targets ("already gone" is done).
async fn delete_attachments(
    aws: &Aws,
    info: &crate::world::FileSystemInfo,
    report: &mut CleanupReport,
) -> Result<()> {
    for ap in &info.access_points {
        match aws
            .efs
            .delete_access_point()
            .access_point_id(&ap.id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("AccessPointNotFound") => {}
            Err(e) => {
                return Err(aws_error(
                    "elasticfilesystem:DeleteAccessPoint",
                    Some(&ap.id),
                    e,
                ));
            }
        }
        report.deleted.push(format!("access-point {}", ap.id));
    }
    for mt in &info.mount_targets {
        match aws
            .efs
            .delete_mount_target()
            .mount_target_id(&mt.id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("MountTargetNotFound") => {}
            Err(e) => {
                return Err(aws_error(
                    "elasticfilesystem:DeleteMountTarget",
                    Some(&mt.id),
                    e,
                ));
            }
        }
        report.deleted.push(format!("mount-target {}", mt.id));
    }
    Ok(())
}

/// Waits until no mount target of `fs` is left.
async fn wait_mount_targets_gone(
    aws: &Aws,
    fs: &str,
    opts: &CleanupOptions,
    cancel: &Cancel,
    report: &mut CleanupReport,
) -> Result<()> {
    retry(
        &format!("waiting for the mount targets of {fs} to be deleted"),
        &["MountTargetsRemain"],
        opts,
        cancel,
        report,
        || async {
            let left = aws
                .efs
                .describe_mount_targets()
                .file_system_id(fs)
                .send()
                .await
                .map_err(|e| {
                    (
                        None,
                        aws_error("elasticfilesystem:DescribeMountTargets", Some(fs), e),
                    )
                })?;
            if left.mount_targets().is_empty() {
                Ok(())
            } else {
                Err((
                    Some("MountTargetsRemain".into()),
                    Error::other(format!(
                        "{} mount target(s) left",
                        left.mount_targets().len()
                    )),
                ))
            }
        },
    )
    .await
}

/// Revokes NFS-only rules in other groups that name `sg`, then deletes `sg`.
pub async fn delete_security_group(
    aws: &Aws,
    sg: &str,
    opts: &CleanupOptions,
    cancel: &Cancel,
    report: &mut CleanupReport,
) -> Result<()> {
    let Some(g) = discover::ec2::security_groups(aws, &[sg.to_string()])
        .await
        .ok()
        .and_then(|mut v| v.pop())
    else {
        report
            .deleted
            .push(format!("security-group {sg} (already gone)"));
        return Ok(());
    };
    for r in &g.referenced_by {
        if !nfs_only(&r.rule) {
            return Err(Error::refused(format!(
                "security group {sg} is referenced by a non-NFS rule in {}; it was kept",
                r.group_id
            )));
        }
        let res = revoke(aws, sg, r).await;
        match res {
            Ok(()) => {}
            Err((Some(code), _)) if code == "InvalidPermission.NotFound" => {}
            Err((_, e)) => return Err(e),
        }
        report.deleted.push(format!(
            "rule {} {} tcp {NFS_PORT} -> {sg}",
            r.group_id, r.direction
        ));
    }
    retry(
        &format!("deleting security group {sg}"),
        &["DependencyViolation"],
        opts,
        cancel,
        report,
        || async {
            match aws.ec2.delete_security_group().group_id(sg).send().await {
                Ok(_) => Ok(()),
                Err(e) if matches!(error_code(&e), Some("InvalidGroup.NotFound")) => Ok(()),
                Err(e) => Err((
                    error_code(&e).map(str::to_string),
                    aws_error("ec2:DeleteSecurityGroup", Some(sg), e),
                )),
            }
        },
    )
    .await?;
    report.deleted.push(format!("security-group {sg}"));
    Ok(())
}

/// Revokes one NFS rule of another group that names `sg`.
async fn revoke(
    aws: &Aws,
    sg: &str,
    r: &crate::world::RuleRef,
) -> std::result::Result<(), (Option<String>, Error)> {
    let perm = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(NFS_PORT)
        .to_port(NFS_PORT)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(sg).build())
        .build();
    if r.direction == "ingress" {
        let res = aws
            .ec2
            .revoke_security_group_ingress()
            .group_id(&r.group_id)
            .ip_permissions(perm)
            .send()
            .await;
        res.map(|_| ()).map_err(|e| {
            (
                error_code(&e).map(str::to_string),
                aws_error("ec2:RevokeSecurityGroupIngress", Some(&r.group_id), e),
            )
        })
    } else {
        let res = aws
            .ec2
            .revoke_security_group_egress()
            .group_id(&r.group_id)
            .ip_permissions(perm)
            .send()
            .await;
        res.map(|_| ()).map_err(|e| {
            (
                error_code(&e).map(str::to_string),
                aws_error("ec2:RevokeSecurityGroupEgress", Some(&r.group_id), e),
            )
        })
    }
}

/// The whole cleanup: guards, deregistration of old revisions, file systems, security groups.
pub async fn run(
    aws: &Aws,
    t: &CleanupTarget,
    verified: bool,
    opts: &CleanupOptions,
    cancel: &Cancel,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    for fs in &t.file_systems {
        report.backups.push(format!(
            "{fs}: AWS Backup {}",
            backup_status(aws, fs).await?
        ));
    }
    let old = check_guards(aws, t, verified).await?;
    deregister(aws, &old, &mut report).await?;
    for fs in &t.file_systems {
        delete_file_system(aws, fs, opts, cancel, &mut report).await?;
    }
    for sg in &t.security_groups {
        delete_security_group(aws, sg, opts, cancel, &mut report).await?;
    }
    Ok(report)
}
