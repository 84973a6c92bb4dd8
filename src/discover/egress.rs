//! Where an ECS service's tasks reach the internet (and so Atlas) from: the public addresses
//! of the NAT gateways its subnets route `0.0.0.0/0` through, or public IPs of the tasks'
//! own (which change on every deployment). Read only.

use aws_sdk_ec2::types::Filter;

use crate::aws::{Aws, aws_error};
use crate::error::Result;
use crate::world::NetworkInfo;
use crate::world::atlas::Egress;

/// The egress of tasks placed as `net` says.
pub async fn egress(aws: &Aws, net: &NetworkInfo) -> Result<Egress> {
    let mut out = Egress {
        public_ip_tasks: net.assign_public_ip.eq_ignore_ascii_case("ENABLED"),
        ..Egress::default()
    };
    let mut nats: Vec<String> = Vec::new();
    for subnet in &net.subnets {
        match nat_of(aws, subnet).await? {
            Some(n) => {
                if !nats.contains(&n) {
                    nats.push(n);
                }
            }
            None => out.unrouted_subnets.push(subnet.clone()),
        }
    }
    if nats.is_empty() {
        return Ok(out);
    }
    let gws = aws
        .ec2
        .describe_nat_gateways()
        .set_nat_gateway_ids(Some(nats.clone()))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeNatGateways", Some(&nats.join(",")), e))?;
    for g in gws.nat_gateways() {
        for a in g.nat_gateway_addresses() {
            if let Some(ip) = &a.public_ip
                && !out.nat_ips.contains(ip)
            {
                out.nat_ips.push(ip.clone());
            }
        }
    }
    Ok(out)
}

/// The NAT gateway `subnet`'s default route goes through: its own route table, else its
/// VPC's main one.
async fn nat_of(aws: &Aws, subnet: &str) -> Result<Option<String>> {
    let by = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
    let tables = aws
        .ec2
        .describe_route_tables()
        .filters(by("association.subnet-id", subnet))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeRouteTables", Some(subnet), e))?;
    let mut tables = tables.route_tables().to_vec();
    if tables.is_empty() {
        let subnets = aws
            .ec2
            .describe_subnets()
            .subnet_ids(subnet)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeSubnets", Some(subnet), e))?;
        let Some(vpc) = subnets.subnets().first().and_then(|s| s.vpc_id.clone()) else {
            return Ok(None);
        };
        tables = aws
            .ec2
            .describe_route_tables()
            .filters(by("vpc-id", &vpc))
            .filters(by("association.main", "true"))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeRouteTables", Some(&vpc), e))?
            .route_tables()
            .to_vec();
    }
    Ok(tables
        .iter()
        .flat_map(|t| t.routes())
        .filter(|r| r.destination_cidr_block.as_deref() == Some("0.0.0.0/0"))
        .find_map(|r| r.nat_gateway_id.clone()))
}
