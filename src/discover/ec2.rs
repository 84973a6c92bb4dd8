//! Read-only EC2 discovery: the mount targets' security groups, the ENIs that carry them,
//! and rules in other groups that reference them.

use aws_sdk_ec2::types::{Filter, IpPermission, SecurityGroup};

use crate::aws::{Aws, aws_error};
use crate::error::Result;
use crate::world::{EniInfo, RuleInfo, RuleRef, SecurityGroupInfo};

/// Summarises one rule.
pub fn rule_info(p: &IpPermission) -> RuleInfo {
    RuleInfo {
        protocol: p.ip_protocol.clone().unwrap_or_default(),
        from_port: p.from_port,
        to_port: p.to_port,
        groups: p
            .user_id_group_pairs()
            .iter()
            .filter_map(|g| g.group_id.clone())
            .collect(),
        cidrs: p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip.clone())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6.clone()))
            .collect(),
    }
}

/// Describes security groups by id, with their ENIs and the rules of other groups naming them.
pub async fn security_groups(aws: &Aws, ids: &[String]) -> Result<Vec<SecurityGroupInfo>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<SecurityGroup> = aws
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(ids.to_vec()))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_error("ec2:DescribeSecurityGroups", Some(&ids.join(",")), e))?;
    let mut out = Vec::new();
    for g in groups {
        let id = g.group_id.clone().unwrap_or_default();
        let enis = network_interfaces(aws, &id).await?;
        let referenced_by = referenced_by(aws, &id).await?;
        out.push(SecurityGroupInfo {
            name: g.group_name.clone().unwrap_or_default(),
            description: g.description.clone().unwrap_or_default(),
            vpc_id: g.vpc_id.clone(),
            ingress: g.ip_permissions().iter().map(rule_info).collect(),
            egress: g.ip_permissions_egress().iter().map(rule_info).collect(),
            network_interfaces: enis,
            referenced_by,
            used_by_file_systems: Vec::new(),
            id,
        });
    }
    Ok(out)
}

/// The network interfaces in group `id`.
async fn network_interfaces(aws: &Aws, id: &str) -> Result<Vec<EniInfo>> {
    Ok(aws
        .ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("group-id").values(id).build())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_error("ec2:DescribeNetworkInterfaces", Some(id), e))?
        .into_iter()
        .map(|n| EniInfo {
            id: n.network_interface_id.clone().unwrap_or_default(),
            description: n.description.clone().unwrap_or_default(),
            interface_type: n.interface_type.as_ref().map(|t| t.as_str().to_string()),
            requester_id: n.requester_id.clone(),
        })
        .collect())
}

/// The rules of other groups that name group `id`.
async fn referenced_by(aws: &Aws, id: &str) -> Result<Vec<RuleRef>> {
    let mut out = Vec::new();
    for (filter, direction) in [
        ("ip-permission.group-id", "ingress"),
        ("egress.ip-permission.group-id", "egress"),
    ] {
        let refs: Vec<SecurityGroup> = aws
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name(filter).values(id).build())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_error("ec2:DescribeSecurityGroups", Some(id), e))?;
        for other in refs.iter().filter(|o| o.group_id.as_deref() != Some(id)) {
            let perms = if direction == "ingress" {
                other.ip_permissions()
            } else {
                other.ip_permissions_egress()
            };
            for p in perms {
                if p.user_id_group_pairs()
                    .iter()
                    .any(|pair| pair.group_id.as_deref() == Some(id))
                {
                    out.push(RuleRef {
                        group_id: other.group_id.clone().unwrap_or_default(),
                        group_name: other.group_name.clone().unwrap_or_default(),
                        direction: direction.to_string(),
                        rule: rule_info(p),
                    });
                }
            }
        }
    }
    Ok(out)
}
