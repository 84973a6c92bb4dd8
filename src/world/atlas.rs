//! What the Atlas Administration API says of the target, as plain data (the calls are in
//! `src/atlas/`): the cluster and its tier's documented limits, the IP access list, the
//! database users; and where the service's traffic leaves AWS from (its egress).

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::secret::Secret;

/// The documented storage of the tiers, named in every fix that suggests a larger one.
pub const TIER_STORAGE: &str = "M0 stores 512 MB, Flex 5 GB, dedicated M10 and up 10 GB or more";

/// MiB in bytes, for the tiers' documented limits (Atlas counts MB of 1,048,576 bytes).
const MB: u64 = 1024 * 1024;

/// An Atlas cluster as the plan needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// Its name.
    pub name: String,
    /// The tier: `M0`, `FLEX`, `M10`, ... (`M2`/`M5` on clusters made before 2025).
    pub tier: String,
    /// The MongoDB version it runs.
    pub version: String,
    /// `IDLE`, `CREATING`, `UPDATING`, `DELETING`, `REPAIRING`.
    pub state: String,
    /// True when the cluster is paused (it answers no connection).
    pub paused: bool,
    /// `mongodb+srv://...` (no credentials), what the app connects to.
    pub srv: Option<String>,
    /// How many private-endpoint connection strings it has.
    pub private_endpoints: usize,
}

/// A tier's documented limits (Atlas docs: "Free cluster limitations", "Flex limitations").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Storage: uncompressed data plus indexes, in bytes.
    pub storage: u64,
    /// Operations a second.
    pub ops_per_sec: u64,
    /// Databases (None: no documented limit).
    pub databases: Option<u64>,
    /// Collections.
    pub collections: Option<u64>,
    /// Longest database name, in bytes.
    pub db_name_bytes: Option<usize>,
}

impl Cluster {
    /// True for the shared tiers behind Atlas's proxy (M0, Flex, and the old M2/M5).
    pub fn shared(&self) -> bool {
        matches!(self.tier.as_str(), "M0" | "M2" | "M5" | "FLEX")
    }

    /// The documented limits of a shared tier; None for dedicated clusters (sized by disk).
    pub fn limits(&self) -> Option<Limits> {
        let (storage, ops) = match self.tier.as_str() {
            "M0" => (512 * MB, 100),
            "M2" => (2 * 1024 * MB, 200),
            "M5" => (5 * 1024 * MB, 500),
            "FLEX" => (5 * 1024 * MB, 500),
            _ => return None,
        };
        let m0 = self.tier == "M0";
        Some(Limits {
            storage,
            ops_per_sec: ops,
            databases: m0.then_some(100),
            collections: m0.then_some(500),
            db_name_bytes: Some(38),
        })
    }
}

/// One entry of the project's IP access list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// `a.b.c.d/n` (a single address is `/32`).
    pub cidr: String,
    /// Atlas's comment.
    pub comment: String,
    /// When Atlas deletes it (temporary entries).
    pub delete_after: Option<String>,
}

impl AccessEntry {
    /// True when the entry admits `ip`.
    pub fn admits(&self, ip: Ipv4Addr) -> bool {
        let (net, bits) = self.cidr.split_once('/').unwrap_or((&self.cidr, "32"));
        let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
            return false;
        };
        if bits > 32 {
            return false;
        }
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        u32::from(net) & mask == u32::from(ip) & mask
    }
}

/// A database user as the plan shows it (never a password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DbUser {
    /// The user name.
    pub name: String,
    /// `role@db` for each role.
    pub roles: Vec<String>,
    /// The clusters it is limited to (empty: every cluster of the project).
    pub clusters: Vec<String>,
    /// When Atlas deletes it (temporary users).
    pub delete_after: Option<String>,
}

/// A user to create: the name, its `readWrite` databases (or `atlasAdmin`-like roles), the
/// cluster it is scoped to, and when Atlas deletes it (temporary users).
#[derive(Clone, Debug)]
pub struct NewUser {
    /// The user name.
    pub name: String,
    /// `(role, db)` pairs.
    pub roles: Vec<(String, String)>,
    /// The cluster it is scoped to.
    pub cluster: String,
    /// ISO 8601 time after which Atlas deletes it.
    pub delete_after: Option<String>,
    /// Its password: sent in the request body only.
    pub password: Secret,
}

/// What `plan` read of the Atlas side (with `--atlas-project`).
#[derive(Clone, Debug, Serialize)]
pub struct AtlasInfo {
    /// The project (group) id.
    pub project: String,
    /// The cluster.
    pub cluster: Cluster,
    /// The project's IP access list.
    pub access_list: Vec<AccessEntry>,
    /// The project's database users.
    pub users: Vec<DbUser>,
}

/// Where the service's tasks reach the internet from.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Egress {
    /// Public addresses of the NAT gateways the tasks' subnets route through.
    pub nat_ips: Vec<String>,
    /// True when tasks get public IPs of their own (a new address on every deployment).
    pub public_ip_tasks: bool,
    /// Subnets whose route to the internet was not found.
    pub unrouted_subnets: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_admits_the_addresses_of_its_block() {
        let e = |cidr: &str| AccessEntry {
            cidr: cidr.into(),
            comment: String::new(),
            delete_after: None,
        };
        let ip: Ipv4Addr = "203.0.113.7".parse().unwrap();
        assert!(e("0.0.0.0/0").admits(ip));
        assert!(e("203.0.113.0/24").admits(ip));
        assert!(e("203.0.113.7/32").admits(ip));
        assert!(!e("203.0.113.8/32").admits(ip));
        assert!(!e("nonsense").admits(ip));
    }
}
