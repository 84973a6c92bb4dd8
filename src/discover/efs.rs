//! Read-only EFS discovery: file systems, mount targets (and their security groups), access points.

use crate::aws::{Aws, aws_error, error_code};
use crate::error::Result;
use crate::world::{AccessPointInfo, FileSystemInfo, MountTargetInfo};

/// Describes one file system; `None` when it does not exist.
pub async fn file_system(aws: &Aws, id: &str) -> Result<Option<FileSystemInfo>> {
    let out = match aws
        .efs
        .describe_file_systems()
        .file_system_id(id)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("FileSystemNotFound") => return Ok(None),
        Err(e) => {
            return Err(aws_error(
                "elasticfilesystem:DescribeFileSystems",
                Some(id),
                e,
            ));
        }
    };
    let Some(fs) = out.file_systems().first() else {
        return Ok(None);
    };
    let mount_targets = mount_targets(aws, id).await?;
    let access_points: Vec<AccessPointInfo> = aws
        .efs
        .describe_access_points()
        .file_system_id(id)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_error("elasticfilesystem:DescribeAccessPoints", Some(id), e))?
        .into_iter()
        .map(|ap| AccessPointInfo {
            id: ap.access_point_id.clone().unwrap_or_default(),
            name: ap.name.clone(),
            root_directory: ap.root_directory.as_ref().and_then(|r| r.path.clone()),
            lifecycle_state: ap
                .life_cycle_state
                .as_ref()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default(),
        })
        .collect();
    Ok(Some(FileSystemInfo {
        id: fs.file_system_id.clone(),
        arn: fs.file_system_arn.clone(),
        name: fs.name.clone(),
        lifecycle_state: fs.life_cycle_state.as_str().to_string(),
        size_bytes: fs.size_in_bytes.as_ref().map(|s| s.value).unwrap_or(0),
        encrypted: fs.encrypted.unwrap_or(false),
        number_of_mount_targets: fs.number_of_mount_targets,
        mount_targets,
        access_points,
    }))
}

/// The file system's mount targets, each with its security groups.
async fn mount_targets(aws: &Aws, id: &str) -> Result<Vec<MountTargetInfo>> {
    let mts = aws
        .efs
        .describe_mount_targets()
        .file_system_id(id)
        .send()
        .await
        .map_err(|e| aws_error("elasticfilesystem:DescribeMountTargets", Some(id), e))?;
    let mut mount_targets = Vec::new();
    for mt in mts.mount_targets() {
        let sgs = aws
            .efs
            .describe_mount_target_security_groups()
            .mount_target_id(&mt.mount_target_id)
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    "elasticfilesystem:DescribeMountTargetSecurityGroups",
                    Some(&mt.mount_target_id),
                    e,
                )
            })?;
        mount_targets.push(MountTargetInfo {
            id: mt.mount_target_id.clone(),
            subnet_id: mt.subnet_id.clone(),
            availability_zone: mt.availability_zone_name.clone(),
            network_interface_id: mt.network_interface_id.clone(),
            ip_address: mt.ip_address.clone(),
            security_groups: sgs.security_groups,
            lifecycle_state: mt.life_cycle_state.as_str().to_string(),
        });
    }
    Ok(mount_targets)
}
