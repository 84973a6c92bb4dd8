//! The plan: a pure function of the discovered [`World`] and the user's options. Every
//! refusal is decided here, before anything changes. Split by concern: the service, the
//! mongo container's storage, security groups, credentials and env mapping; the step list
//! comes from the steps themselves ([`crate::engine::steps::planned`]).

pub mod atlas;
pub mod credentials;
pub mod env;
pub mod model;
pub mod resources;
pub mod runner;
pub mod security_groups;
pub mod service;
pub mod storage;

use crate::engine::options::PlanOptions;
use crate::engine::plan::model::{Finding, MongoContainerPlan, Plan, finding};
use crate::error::{Error, Result};
use crate::taskdef;
use crate::world::{ContainerInfo, World, is_mongo_image};

/// Picks the mongo container: by name when given, else by image.
pub fn pick_mongo_container<'a>(
    containers: &'a [ContainerInfo],
    by_name: Option<&str>,
    service: &str,
) -> Result<&'a ContainerInfo> {
    if let Some(name) = by_name {
        return containers.iter().find(|c| c.name == name).ok_or_else(|| {
            Error::usage(format!(
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
        [] => Err(Error::refused(format!(
            "no container in service {service} runs a MongoDB image (containers: {}); if one does under another image name, pass --mongo-container NAME",
            containers
                .iter()
                .map(|c| format!("{} ({})", c.name, c.image))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(Error::refused(format!(
            "several containers in service {service} run a MongoDB image ({}); pass --mongo-container NAME to say which one holds the data",
            many.iter()
                .map(|c| format!("{} ({})", c.name, c.image))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Builds the plan. Errors only when no plan can be made at all (no or several mongo
/// containers, a bad flag); everything else is a blocker or warning inside the plan.
pub fn plan(world: &World, opts: &PlanOptions) -> Result<Plan> {
    let td = &world.task_definition;
    let svc = &world.service;
    refuse_migrated(world, opts)?;
    let mongo = pick_mongo_container(&td.containers, opts.mongo_container.as_deref(), &svc.name)?;
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    service::findings(world, &mongo.name, &mut blockers);
    let storage = storage::mongo_storage(world, mongo, opts, &mut blockers, &mut warnings);
    let (env_mapping, env_assignments) =
        env::map_env(world, opts, &mongo.name, &mut blockers, &mut warnings)?;
    let secret = credentials::secret(world, opts, &env_assignments, &mut blockers, &mut warnings);
    let file_systems =
        storage::file_systems(world, &storage.fs_ids, opts, &blockers, &mut warnings);
    let security_groups =
        security_groups::security_groups(world, &file_systems, opts, &mut warnings);
    let mut plan = Plan {
        ready: false,
        account: world.account.clone(),
        region: world.region.clone(),
        cluster: svc.cluster.clone(),
        service: svc.name.clone(),
        strategy: opts.strategy,
        current_task_definition: td.arn.clone(),
        family: td.family.clone(),
        mongo_container: mongo_plan(mongo, opts, storage),
        env_mapping,
        credentials: opts.credentials,
        secret_name: secret,
        file_systems,
        security_groups,
        blockers,
        unchecked: unchecked(world, opts.runner.is_some()),
        warnings,
        steps: Vec::new(),
        task_definition_diff: String::new(),
        runner: opts.runner.clone(),
        new_task_definition: None,
        env_assignments,
        images: opts.images.clone(),
        atlas: atlas::atlas_plan(world, opts),
        resources: Vec::new(),
    };
    target_findings(world, opts, &mut plan.blockers);
    if let Some(r) = &opts.runner {
        runner::findings(world, r, &mut plan.blockers, &mut plan.unchecked);
    }
    let (b, w) = atlas::findings(world, opts);
    plan.blockers.extend(b);
    plan.warnings.extend(w);
    new_revision(&mut plan, world, opts)?;
    plan.steps = crate::engine::steps::planned(&plan, world);
    plan.resources = resources::resources(&plan, world);
    plan.ready = plan.blockers.is_empty();
    Ok(plan)
}

/// A service already running a revision efs2atlas registered (no mongo container, the
/// `efs2atlas:replaces` tag) was migrated: say so instead of "no MongoDB container".
fn refuse_migrated(world: &World, opts: &PlanOptions) -> Result<()> {
    let td = &world.task_definition;
    let has_mongo = td.containers.iter().any(|c| is_mongo_image(&c.image));
    match &td.replaces {
        Some(old) if !has_mongo && opts.mongo_container.is_none() => Err(Error::refused(format!(
            "service {} was already migrated: it runs {}, which efs2atlas registered to replace {old} (its data is on Atlas now); there is nothing to plan. `efs2atlas rollback --cluster {} --service {}` goes back to {old} while its EFS exists",
            world.service.name, td.arn, world.service.cluster, world.service.name
        ))),
        _ => Ok(()),
    }
}

/// What this plan did not look at, and how to have it checked.
fn unchecked(world: &World, runner: bool) -> Vec<String> {
    let mut out = Vec::new();
    if runner {
        out.push(
            "the source database (reachable only inside the VPC): the runner task's preflight checks it before anything is copied".to_string(),
        );
    } else if world.source.is_none() {
        out.push("the source database (reachable? what it holds?): pass --source-uri".to_string());
    }
    if world.target.is_none() {
        out.push(
            "the target (reachable? empty where the copy writes?): pass --target-uri (the Atlas URI, or how you reach it)".to_string(),
        );
    } else if world.source.is_none() {
        out.push(
            "whether the target is empty where the copy writes (that needs the source's collections)".to_string(),
        );
    }
    out
}

/// A target that already holds data where the copy would write blocks the plan, unless
/// `--drop` replaces it.
fn target_findings(world: &World, opts: &PlanOptions, blockers: &mut Vec<Finding>) {
    let Some(t) = &world.target else { return };
    if t.busy.is_empty() || opts.drop {
        return;
    }
    let it = if t.busy.len() == 1 { "it" } else { "them" };
    blockers.push(finding(
        "target-not-empty",
        t.uri.clone(),
        format!(
            "the target already holds data in {}; efs2atlas will not write into it. Pass --drop to replace {it} (their data is lost), or empty {it} on the target first",
            t.busy.join(", ")
        ),
    ));
}

/// The mongo container as the plan shows it.
fn mongo_plan(
    mongo: &ContainerInfo,
    opts: &PlanOptions,
    storage: storage::MongoStorage,
) -> MongoContainerPlan {
    MongoContainerPlan {
        name: mongo.name.clone(),
        image: mongo.image.clone(),
        chosen_by: if opts.mongo_container.is_some() {
            "--mongo-container".into()
        } else {
            "image".into()
        },
        port: mongo.ports.first().copied().unwrap_or(27017),
        mount_points: mongo
            .mount_points
            .iter()
            .map(|m| format!("{}:{}", m.source_volume, m.container_path))
            .collect(),
        volumes_removed: storage.volumes_removed,
        file_system_ids: storage.fs_ids,
        access_point_ids: storage.ap_ids,
    }
}

/// The new task definition and its diff (credentials masked); a rewrite that fails is a
/// blocker, a bad flag an error.
fn new_revision(plan: &mut Plan, world: &World, opts: &PlanOptions) -> Result<()> {
    let td = &world.task_definition;
    let secret_arn_shown = plan.secret_name.as_ref().map(|n| {
        format!(
            "arn:aws:secretsmanager:{}:{}:secret:{n}",
            world.region, world.account
        )
    });
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
        Err(e) if e.kind == crate::error::Kind::Usage => return Err(e),
        Err(e) => plan
            .blockers
            .push(finding("rewrite-failed", &td.arn, e.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::{CredentialMode, Strategy};
    use crate::engine::plan::model::Finding;
    use crate::envmap::EnvOverride;
    use crate::taskdef::TaskDefSpec;
    use crate::uri::MongoUri;
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
            target: None,
            atlas: None,
            egress: None,
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
            drop: false,
            runner: None,
            atlas_api: None,
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
        assert_eq!(e.kind, crate::error::Kind::Refused);
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
        assert_eq!(plan(&two, &o).unwrap_err().kind, crate::error::Kind::Usage);

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
        assert!(
            p.steps
                .iter()
                .flat_map(|s| &s.actions)
                .any(|a| a.id == "revoke-rules")
        );

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
