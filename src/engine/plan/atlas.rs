//! The Atlas side of the plan (with `--atlas-project`): what the Admin API told of the
//! cluster, its access list and its users, weighed against the source and the service's
//! egress. Pure: blockers and warnings, each with its fix.

use std::net::Ipv4Addr;

use crate::engine::options::PlanOptions;
use crate::engine::plan::model::{AtlasPlan, Finding, finding};
use crate::error::Result;
use crate::uri::MongoUri;
use crate::world::World;
use crate::world::atlas::AtlasInfo;

/// What stands for the app's password until the Atlas step has made it: 32 URI-safe
/// characters, like the real one, so every template renders the same shape; the step
/// replaces it in the rendered values and it is never stored (the plan masks passwords).
pub const PLACEHOLDER: &str = "efs2atlasPlaceholderNotAPassword";

/// The app's connection string before its password exists: `mongodb+srv://USER:*@HOST/DB`.
pub fn provisional_uri(user: &str, host: &str, db: Option<&str>) -> Result<MongoUri> {
    let host = host
        .trim_start_matches("mongodb+srv://")
        .trim_start_matches("mongodb://")
        .trim_end_matches('/');
    let placeholder = PLACEHOLDER;
    let db = db.map(crate::uri::percent_encode).unwrap_or_default();
    MongoUri::parse(
        "--atlas-project",
        &format!(
            "mongodb+srv://{}:{placeholder}@{host}/{db}",
            crate::uri::percent_encode(user)
        ),
    )
}

/// The name of the temporary user efs2atlas writes as, one per service (a resumed run finds
/// the same one).
pub fn migration_user(service: &str) -> String {
    let clean: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("efs2atlas-migration-{clean}")
}

/// True when `migrate` makes the Atlas side itself (`--atlas-project`, no `--atlas-uri`).
fn creates(opts: &PlanOptions) -> bool {
    opts.atlas_api.as_ref().is_some_and(|a| a.create_users)
}

/// What `migrate` will make on the Atlas side, when it makes it.
pub fn atlas_plan(world: &World, opts: &PlanOptions) -> Option<AtlasPlan> {
    let a = world.atlas.as_ref().filter(|_| creates(opts))?;
    let settings = opts.atlas_api.as_ref()?;
    let app_user = opts.atlas.user.clone().unwrap_or_default();
    let mut dbs: Vec<String> = match &world.source {
        Some(s) => s.databases.iter().map(|d| d.name.clone()).collect(),
        None => opts.atlas.db.iter().cloned().collect(),
    };
    dbs.sort();
    let entries = world
        .egress
        .iter()
        .flat_map(|e| e.nat_ips.iter())
        .filter(|ip| {
            let addr = ip.parse::<Ipv4Addr>().ok();
            !addr.is_some_and(|addr| a.access_list.iter().any(|x| x.admits(addr)))
        })
        .map(|ip| format!("{ip}/32"))
        .collect();
    Some(AtlasPlan {
        project: a.project.clone(),
        cluster: settings.cluster.clone(),
        app_user_exists: a.users.iter().any(|u| u.name == app_user),
        app_user,
        app_roles: dbs.iter().map(|d| format!("readWrite@{d}")).collect(),
        migration_user: migration_user(&world.service.name),
        entries,
        temporary_entry: opts.runner.is_none(),
    })
}

/// The findings about the Atlas side: `(blockers, warnings)`.
pub fn findings(world: &World, opts: &PlanOptions) -> (Vec<Finding>, Vec<Finding>) {
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    let Some(a) = &world.atlas else {
        return (blockers, warnings);
    };
    let create = creates(opts);
    // What migrate makes itself is not missing.
    let atlas_user = opts.atlas.user.as_deref().filter(|_| !create);
    let c = &a.cluster;
    let res = format!("Atlas cluster {}", c.name);
    if c.paused {
        blockers.push(finding(
            "atlas-cluster-paused",
            &res,
            "the cluster is paused and answers no connection; resume it in Atlas (Clusters > ... > Resume Cluster), then plan again",
        ));
    } else if matches!(c.state.as_str(), "CREATING" | "DELETING" | "DELETED") {
        blockers.push(finding(
            "atlas-cluster-not-ready",
            &res,
            format!(
                "the cluster is {} ; wait until Atlas shows it ready (IDLE), then plan again",
                c.state
            ),
        ));
    }
    tier_limits(world, a, &mut blockers);
    tier_rate(world, a, &mut warnings);
    version(world, a, &mut warnings);
    access(world, a, create, &mut blockers, &mut warnings);
    if create && atlas_plan(world, opts).is_some_and(|p| p.app_roles.is_empty()) {
        blockers.push(finding(
            "atlas-app-database-unknown",
            format!("database user {}", opts.atlas.user.as_deref().unwrap_or("?")),
            "the app's databases are not known, so its Atlas user's readWrite roles cannot be named: pass --source-uri (the plan then reads them from the source)",
        ));
    }
    if let Some(user) = atlas_user
        && !a.users.iter().any(|u| u.name == user)
    {
        blockers.push(finding(
            "atlas-user-missing",
            format!("database user {user}"),
            format!(
                "the Atlas URI's user {user} is not a database user of project {}; create it in Atlas (Database Access) with readWrite on the app's databases, or fix the user in --atlas-uri",
                a.project
            ),
        ));
    }
    (blockers, warnings)
}

/// The source's data and indexes, databases, collections and names against the tier.
fn tier_limits(world: &World, a: &AtlasInfo, blockers: &mut Vec<Finding>) {
    let c = &a.cluster;
    let (Some(limits), Some(src)) = (c.limits(), &world.source) else {
        return;
    };
    let res = format!("Atlas cluster {} ({})", c.name, c.tier);
    let data: i64 = src.databases.iter().filter_map(|d| d.data_size).sum();
    let index: i64 = src.databases.iter().filter_map(|d| d.index_size).sum();
    let needed = (data + index).max(0) as u64;
    if needed > limits.storage {
        blockers.push(finding(
            "atlas-storage-quota",
            &res,
            format!(
                "the source holds {} of documents and {} of indexes, more than the {} storage of an Atlas {} ({}); move the cluster to a larger tier first, or delete what the app no longer needs on the source",
                crate::units::bytes(data),
                crate::units::bytes(index),
                crate::units::bytes(limits.storage as i64),
                c.tier,
                crate::world::atlas::TIER_STORAGE
            ),
        ));
    }
    let dbs = src.databases.len() as u64;
    if let Some(max) = limits.databases.filter(|m| dbs > *m) {
        blockers.push(finding(
            "atlas-too-many-databases",
            &res,
            format!("the source has {dbs} databases; an Atlas {} holds at most {max}: choose a larger tier", c.tier),
        ));
    }
    let colls: u64 = src
        .databases
        .iter()
        .map(|d| d.collections.len() as u64)
        .sum();
    if let Some(max) = limits.collections.filter(|m| colls > *m) {
        blockers.push(finding(
            "atlas-too-many-collections",
            &res,
            format!("the source has {colls} collections and views; an Atlas {} holds at most {max}: choose a larger tier", c.tier),
        ));
    }
    if let Some(max) = limits.db_name_bytes {
        for d in src.databases.iter().filter(|d| d.name.len() > max) {
            blockers.push(finding(
                "atlas-database-name-too-long",
                format!("database {}", d.name),
                format!(
                    "the database name is {} bytes; an Atlas {} takes at most {max}: rename it on the source first (or choose a dedicated tier)",
                    d.name.len(),
                    c.tier
                ),
            ));
        }
    }
}

/// What a shared tier's operations-per-second limit costs the copy: one operation per insert
/// batch (at most 100,000 documents or 48 MB) and a few per collection (create, indexes,
/// reads back). Throttling slows the copy; it never fails it.
fn tier_rate(world: &World, a: &AtlasInfo, warnings: &mut Vec<Finding>) {
    let (Some(limits), Some(src)) = (a.cluster.limits(), &world.source) else {
        return;
    };
    let mut ops: u64 = 0;
    for d in &src.databases {
        let docs: u64 = d.collections.iter().filter_map(|c| c.documents).sum();
        let bytes = d.data_size.unwrap_or(0).max(0) as u64;
        ops += (docs / 100_000).max(bytes / (48 << 20)) + 1;
        ops += d
            .collections
            .iter()
            .map(|c| 3 + c.indexes.unwrap_or(1) as u64)
            .sum::<u64>();
    }
    let seconds = ops.div_ceil(limits.ops_per_sec);
    warnings.push(finding(
        "atlas-tier-rate",
        format!("Atlas cluster {} ({})", a.cluster.name, a.cluster.tier),
        format!(
            "an Atlas {} serves {} operations/s: the copy's ~{ops} operations (insert batches, collections, indexes) take at least ~{seconds}s there, and the app shares the same limit after the cutover",
            a.cluster.tier, limits.ops_per_sec
        ),
    ));
}

/// A cluster older than the source may lack what the app uses.
fn version(world: &World, a: &AtlasInfo, warnings: &mut Vec<Finding>) {
    let major = |v: &str| -> Option<(u32, u32)> {
        let mut p = v.split('.').map(|x| x.parse::<u32>().ok());
        Some((p.next()??, p.next()??))
    };
    let src = world.source.as_ref().and_then(|s| s.version.as_deref());
    let (Some(s), Some(t)) = (src.and_then(major), major(&a.cluster.version)) else {
        return;
    };
    if t < s {
        warnings.push(finding(
            "atlas-version-older",
            format!("Atlas cluster {}", a.cluster.name),
            format!(
                "the cluster runs MongoDB {} and the source {}: what the app uses of the newer version may not exist there; upgrade the cluster first (Atlas: Edit Configuration > MongoDB version)",
                a.cluster.version,
                src.unwrap_or("?")
            ),
        ));
    }
}

/// Whether the access list admits where the service's tasks come from.
fn access(
    world: &World,
    a: &AtlasInfo,
    create: bool,
    blockers: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) {
    let Some(e) = &world.egress else { return };
    let open = a.access_list.iter().any(|x| x.cidr == "0.0.0.0/0");
    if e.public_ip_tasks && e.nat_ips.is_empty() {
        let f = |code: &str, m: &str| finding(code, format!("service {}", world.service.name), m);
        if open {
            warnings.push(f(
                "atlas-access-list-open",
                "the tasks have public IPs of their own, which change on every deployment, so the access list admits 0.0.0.0/0 (any address; the database user's password is what protects the data); a NAT gateway with an Elastic IP gives one address to admit instead",
            ));
        } else {
            blockers.push(f(
                "atlas-access-list",
                "the tasks have public IPs of their own, which change on every deployment, and the access list admits no range they could come from: the app could not reach Atlas after the cutover; add 0.0.0.0/0 in Atlas (Network Access), or route the subnets through a NAT gateway and admit its Elastic IP",
            ));
        }
        return;
    }
    // migrate adds the NAT addresses itself when it makes the Atlas side.
    for ip in e.nat_ips.iter().filter(|_| !create) {
        let Ok(addr) = ip.parse::<Ipv4Addr>() else {
            continue;
        };
        if !a.access_list.iter().any(|x| x.admits(addr)) {
            blockers.push(finding(
                "atlas-access-list",
                format!("NAT gateway address {ip}"),
                format!(
                    "the service's tasks reach the internet from {ip} (its subnets' NAT gateway), which the project's access list does not admit: the app could not reach Atlas after the cutover; add {ip}/32 in Atlas (Network Access)"
                ),
            ));
        }
    }
    if !e.unrouted_subnets.is_empty() && !e.public_ip_tasks {
        warnings.push(finding(
            "atlas-no-egress",
            format!("subnets {}", e.unrouted_subnets.join(", ")),
            "these subnets have no route to the internet (no NAT gateway) and the tasks get no public IP: the app reaches Atlas only through peering or a private endpoint; check it can",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::atlas::{AccessEntry, Cluster, Egress};
    use crate::world::{DatabaseInfo, SourceInfo};

    fn world(tier: &str, data_mib: i64, access: &[&str], egress: Egress) -> World {
        World {
            source: Some(SourceInfo {
                uri: "mongodb://h".into(),
                version: Some("6.0.5".into()),
                databases: vec![DatabaseInfo {
                    name: "goals".into(),
                    size_on_disk: None,
                    data_size: Some(data_mib << 20),
                    index_size: Some(8 << 20),
                    collections: Vec::new(),
                }],
            }),
            atlas: Some(AtlasInfo {
                project: "p".into(),
                cluster: Cluster {
                    name: "c0".into(),
                    tier: tier.into(),
                    version: "8.0.4".into(),
                    state: "IDLE".into(),
                    paused: false,
                    srv: None,
                    private_endpoints: 0,
                },
                access_list: access
                    .iter()
                    .map(|c| AccessEntry {
                        cidr: c.to_string(),
                        comment: String::new(),
                        delete_after: None,
                    })
                    .collect(),
                users: Vec::new(),
            }),
            egress: Some(egress),
            ..World::default()
        }
    }

    fn findings(w: &World, user: Option<&str>) -> (Vec<Finding>, Vec<Finding>) {
        let mut atlas = provisional_uri("app", "c0.x.mongodb.net", None).unwrap();
        atlas.user = user.map(str::to_string);
        let opts = PlanOptions {
            atlas,
            mongo_container: None,
            env: Vec::new(),
            images: Vec::new(),
            credentials: Default::default(),
            keep_efs: false,
            strategy: Default::default(),
            drop: false,
            runner: None,
            atlas_api: None,
        };
        super::findings(w, &opts)
    }

    fn codes(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn the_quota_counts_data_and_indexes_against_the_tier() {
        let nat = Egress {
            nat_ips: vec!["203.0.113.7".into()],
            ..Egress::default()
        };
        let (b, _) = findings(&world("M0", 600, &["203.0.113.0/24"], nat.clone()), None);
        assert_eq!(codes(&b), ["atlas-storage-quota"]);
        assert!(
            b[0].message.contains("600.0 MiB") || b[0].message.contains("MiB"),
            "{b:?}"
        );
        let (b, _) = findings(&world("M0", 505, &["203.0.113.0/24"], nat.clone()), None);
        assert_eq!(
            codes(&b),
            ["atlas-storage-quota"],
            "505 MiB + 8 MiB of indexes"
        );
        let (b, _) = findings(&world("M0", 500, &["203.0.113.0/24"], nat.clone()), None);
        assert!(b.is_empty(), "500 MiB + 8 MiB of indexes fit: {b:?}");
        let (b, _) = findings(&world("FLEX", 600, &["203.0.113.0/24"], nat.clone()), None);
        assert!(b.is_empty(), "{b:?}");
        let (b, _) = findings(&world("M10", 60_000, &[], nat), None);
        assert_eq!(codes(&b), ["atlas-access-list"], "dedicated: no quota");
    }

    #[test]
    fn a_shared_tier_s_rate_and_an_older_cluster_are_said() {
        let nat = Egress {
            nat_ips: vec!["203.0.113.7".into()],
            ..Egress::default()
        };
        let mut w = world("M0", 10, &["203.0.113.7/32"], nat);
        if let Some(a) = &mut w.atlas {
            a.cluster.version = "5.0.30".into();
        }
        let (b, warn) = findings(&w, None);
        assert!(b.is_empty(), "{b:?}");
        assert_eq!(codes(&warn), ["atlas-tier-rate", "atlas-version-older"]);
        assert!(warn[0].message.contains("100 operations/s"), "{warn:?}");
    }

    #[test]
    fn public_ip_tasks_need_an_open_access_list() {
        let public = Egress {
            public_ip_tasks: true,
            ..Egress::default()
        };
        let (b, w) = findings(&world("M0", 1, &["198.51.100.1/32"], public.clone()), None);
        assert_eq!(codes(&b), ["atlas-access-list"]);
        assert_eq!(codes(&w), ["atlas-tier-rate"]);
        let (b, w) = findings(&world("M0", 1, &["0.0.0.0/0"], public), Some("app"));
        assert_eq!(codes(&b), ["atlas-user-missing"]);
        assert_eq!(codes(&w), ["atlas-tier-rate", "atlas-access-list-open"]);
    }
}
