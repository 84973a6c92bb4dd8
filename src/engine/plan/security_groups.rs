//! The security groups on the mount targets: deleted when they exist only for the deleted
//! EFS, with the NFS-only rules that name them revoked first; kept, and why, otherwise.

use std::collections::BTreeSet;

use crate::engine::options::PlanOptions;
use crate::engine::plan::model::{FileSystemPlan, Finding, SecurityGroupPlan, finding};
use crate::world::{NFS_PORT, SecurityGroupInfo, World};

/// What the groups are judged against.
struct Around<'a> {
    /// File systems that will be deleted.
    deleted_fs: BTreeSet<&'a str>,
    /// Network interfaces of their mount targets.
    mt_enis: BTreeSet<&'a str>,
    /// Groups the service's tasks use.
    task_sgs: BTreeSet<&'a str>,
}

/// What happens to each security group on the mount targets.
pub fn security_groups(
    world: &World,
    file_systems: &[FileSystemPlan],
    opts: &PlanOptions,
    warnings: &mut Vec<Finding>,
) -> Vec<SecurityGroupPlan> {
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
    let task_sgs: BTreeSet<&str> = world
        .service
        .network
        .as_ref()
        .map(|n| n.security_groups.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let around = Around {
        deleted_fs,
        mt_enis,
        task_sgs,
    };
    world
        .security_groups
        .iter()
        .map(|sg| group(sg, &around, opts, warnings))
        .collect()
}

/// One group's fate.
fn group(
    sg: &SecurityGroupInfo,
    around: &Around<'_>,
    opts: &PlanOptions,
    warnings: &mut Vec<Finding>,
) -> SecurityGroupPlan {
    let mut keep = Vec::new();
    let mut shared = false;
    if sg.name == "default" {
        keep.push("it is the VPC's default security group".to_string());
        shared = true;
    }
    if around.task_sgs.contains(sg.id.as_str()) {
        keep.push("the service's tasks use it too".into());
        shared = true;
    }
    for f in &sg.used_by_file_systems {
        if !around.deleted_fs.contains(f.as_str()) {
            keep.push(format!("mount targets of EFS {f}, which is kept, use it"));
        }
    }
    let other_enis: Vec<&str> = sg
        .network_interfaces
        .iter()
        .filter(|e| !around.mt_enis.contains(e.id.as_str()))
        .map(|e| e.id.as_str())
        .collect();
    if !other_enis.is_empty() {
        shared = true;
        keep.push(format!(
            "used by other network interfaces: {}",
            other_enis.join(", ")
        ));
    }
    let revoke = nfs_rules(sg, &mut shared, &mut keep);
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
    SecurityGroupPlan {
        id: sg.id.clone(),
        name: sg.name.clone(),
        delete,
        shared,
        keep_reasons: keep,
        rules_to_revoke: if delete { revoke } else { Vec::new() },
    }
}

/// The NFS-only rules naming `sg` (revoked before it is deleted); any other rule that names
/// it makes it shared.
fn nfs_rules(sg: &SecurityGroupInfo, shared: &mut bool, keep: &mut Vec<String>) -> Vec<String> {
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
            *shared = true;
            keep.push(format!("referenced by a non-NFS rule in {desc}"));
        }
    }
    revoke
}

fn port_range(from: Option<i32>, to: Option<i32>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) if a == -1 || (a == 0 && b == 65535) => "all ports".into(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "all ports".into(),
    }
}
