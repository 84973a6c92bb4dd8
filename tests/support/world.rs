//! The seed's "before" world, built in moto through the real AWS SDK, and sample data for the
//! source Mongo. Shared by the integration tests and `examples/demo_world.rs`.
#![allow(dead_code)]

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, IpPermission, IpRange, UserIdGroupPair};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerCondition, ContainerDefinition,
    ContainerDependency, EfsAuthorizationConfig, EfsAuthorizationConfigIam, EfsTransitEncryption,
    EfsVolumeConfiguration, KeyValuePair, LaunchType, LogConfiguration, LogDriver, MountPoint,
    NetworkConfiguration, NetworkMode, PortMapping, TransportProtocol, Volume,
};
use aws_sdk_efs::types::{CreationInfo, PosixUser, RootDirectory};
use mongodb::bson::{Document, doc};

/// Names of everything the fixture makes.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub cluster: String,
    pub service: String,
    pub family: String,
    pub task_definition_arn: String,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub task_sg: String,
    pub nfs_sg: String,
    pub file_system_id: String,
    pub mount_targets: Vec<String>,
    pub access_point_id: String,
    pub execution_role_arn: String,
}

/// The backend's current (plain-env) Mongo password in the "before" world.
pub const OLD_MONGO_PASSWORD: &str = "old-container-pw-Q7";

/// The seed's app container: env vars in the MONGODB_USERNAME/PASSWORD/URL/NAME style.
pub fn backend_container() -> ContainerDefinition {
    let env = |n: &str, v: &str| KeyValuePair::builder().name(n).value(v).build();
    ContainerDefinition::builder()
        .name("backend")
        .image("academind/goals-backend:latest")
        .essential(true)
        .memory(512)
        .port_mappings(
            PortMapping::builder()
                .container_port(80)
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .environment(env("MONGODB_USERNAME", "max"))
        .environment(env("MONGODB_PASSWORD", OLD_MONGO_PASSWORD))
        .environment(env("MONGODB_URL", "localhost"))
        .environment(env("MONGODB_NAME", "goals"))
        .environment(env("NODE_ENV", "production"))
        .depends_on(
            ContainerDependency::builder()
                .container_name("mongodb")
                .condition(ContainerCondition::Start)
                .build()
                .expect("dependency"),
        )
        .log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", "/ecs/goals")
                .options("awslogs-region", "us-east-1")
                .options("awslogs-stream-prefix", "backend")
                .build()
                .expect("log config"),
        )
        .build()
}

/// The seed's mongo container with its EFS volume at /data/db.
pub fn mongo_container(name: &str, volume: &str) -> ContainerDefinition {
    let env = |n: &str, v: &str| KeyValuePair::builder().name(n).value(v).build();
    ContainerDefinition::builder()
        .name(name)
        .image("mongo:6.0")
        .essential(true)
        .memory(1024)
        .port_mappings(
            PortMapping::builder()
                .container_port(27017)
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .environment(env("MONGO_INITDB_ROOT_USERNAME", "max"))
        .environment(env("MONGO_INITDB_ROOT_PASSWORD", OLD_MONGO_PASSWORD))
        .mount_points(
            MountPoint::builder()
                .source_volume(volume)
                .container_path("/data/db")
                .read_only(false)
                .build(),
        )
        .build()
}

/// The EFS volume as the console creates it.
pub fn efs_volume(name: &str, fs: &str, ap: &str) -> Volume {
    Volume::builder()
        .name(name)
        .efs_volume_configuration(
            EfsVolumeConfiguration::builder()
                .file_system_id(fs)
                .root_directory("/")
                .transit_encryption(EfsTransitEncryption::Enabled)
                .authorization_config(
                    EfsAuthorizationConfig::builder()
                        .access_point_id(ap)
                        .iam(EfsAuthorizationConfigIam::Enabled)
                        .build(),
                )
                .build()
                .expect("efs volume"),
        )
        .build()
}

/// Builds the "before" world under `prefix` (names are `{prefix}-...`).
pub async fn build(conf: &SdkConfig, prefix: &str) -> Fixture {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let efs = aws_sdk_efs::Client::new(conf);
    let ecs = aws_sdk_ecs::Client::new(conf);
    let iam = aws_sdk_iam::Client::new(conf);
    let region = conf
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());

    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("vpc");
    let vpc_id = vpc.vpc.and_then(|v| v.vpc_id).expect("vpc id");
    for attr in ["hostnames", "support"] {
        let b = ec2.modify_vpc_attribute().vpc_id(&vpc_id);
        let v = AttributeBooleanValue::builder().value(true).build();
        let b = if attr == "hostnames" {
            b.enable_dns_hostnames(v)
        } else {
            b.enable_dns_support(v)
        };
        b.send().await.expect("vpc dns");
    }
    let mut subnets = Vec::new();
    for (i, az) in ["a", "b"].iter().enumerate() {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.0.{}.0/24", i + 1))
            .availability_zone(format!("{region}{az}"))
            .send()
            .await
            .expect("subnet");
        subnets.push(s.subnet.and_then(|s| s.subnet_id).expect("subnet id"));
    }
    let task_sg = ec2
        .create_security_group()
        .group_name(format!("{prefix}-task-sg"))
        .description("goals tasks")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("task sg")
        .group_id
        .expect("sg id");
    ec2.authorize_security_group_ingress()
        .group_id(&task_sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .expect("task sg rule");
    let nfs_sg = ec2
        .create_security_group()
        .group_name(format!("{prefix}-efs-sg"))
        .description("NFS from goals tasks")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("nfs sg")
        .group_id
        .expect("sg id");
    ec2.authorize_security_group_ingress()
        .group_id(&nfs_sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(2049)
                .to_port(2049)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&task_sg).build())
                .build(),
        )
        .send()
        .await
        .expect("nfs rule");

    let fs = efs
        .create_file_system()
        .creation_token(format!("{prefix}-db"))
        .encrypted(true)
        .tags(
            aws_sdk_efs::types::Tag::builder()
                .key("Name")
                .value(format!("{prefix}-db"))
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("efs");
    let file_system_id = fs.file_system_id;
    let mut mount_targets = Vec::new();
    for s in &subnets {
        let mt = efs
            .create_mount_target()
            .file_system_id(&file_system_id)
            .subnet_id(s)
            .security_groups(&nfs_sg)
            .send()
            .await
            .expect("mount target");
        mount_targets.push(mt.mount_target_id);
    }
    let ap = efs
        .create_access_point()
        .client_token(format!("{prefix}-ap"))
        .file_system_id(&file_system_id)
        .posix_user(
            PosixUser::builder()
                .uid(999)
                .gid(999)
                .build()
                .expect("posix"),
        )
        .root_directory(
            RootDirectory::builder()
                .path("/data/db")
                .creation_info(
                    CreationInfo::builder()
                        .owner_uid(999)
                        .owner_gid(999)
                        .permissions("755")
                        .build()
                        .expect("ci"),
                )
                .build(),
        )
        .send()
        .await
        .expect("access point");
    let access_point_id = ap.access_point_id.expect("ap id");

    let role = iam
        .create_role()
        .role_name(format!("{prefix}-ecsTaskExecutionRole"))
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("role");
    let execution_role_arn = role.role.map(|r| r.arn).expect("role arn");

    let cluster = format!("{prefix}-cluster");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("cluster");
    let family = format!("{prefix}-app");
    let td = ecs
        .register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("512")
        .memory("2048")
        .execution_role_arn(&execution_role_arn)
        .container_definitions(backend_container())
        .container_definitions(mongo_container("mongodb", "data"))
        .volumes(efs_volume("data", &file_system_id, &access_point_id))
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("app")
                .value("goals")
                .build(),
        )
        .send()
        .await
        .expect("task definition");
    let task_definition_arn = td
        .task_definition
        .and_then(|t| t.task_definition_arn)
        .expect("td arn");
    let service = format!("{prefix}-service");
    ecs.create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&task_definition_arn)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(subnets.clone()))
                        .security_groups(&task_sg)
                        .assign_public_ip(AssignPublicIp::Enabled)
                        .build()
                        .expect("awsvpc"),
                )
                .build(),
        )
        .send()
        .await
        .expect("service");

    Fixture {
        cluster,
        service,
        family,
        task_definition_arn,
        vpc_id,
        subnets,
        task_sg,
        nfs_sg,
        file_system_id,
        mount_targets,
        access_point_id,
        execution_role_arn,
    }
}

/// Sets the service's desired count (moto then reports that many running: its tasks "run").
pub async fn scale(conf: &SdkConfig, fx: &Fixture, n: i32) {
    aws_sdk_ecs::Client::new(conf)
        .update_service()
        .cluster(&fx.cluster)
        .service(&fx.service)
        .desired_count(n)
        .send()
        .await
        .expect("update_service desired_count");
}

/// The fixture with its service steady on one running mongo task (moto only moves
/// runningCount when a desired count is passed).
pub async fn steady(conf: &SdkConfig, prefix: &str) -> Fixture {
    let fx = build(conf, prefix).await;
    scale(conf, &fx, 1).await;
    fx
}

/// Security groups in the fixture's VPC (id, name).
pub async fn security_groups(conf: &SdkConfig, vpc_id: &str) -> Vec<(String, String)> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .expect("sgs");
    out.security_groups()
        .iter()
        .map(|g| {
            (
                g.group_id.clone().unwrap_or_default(),
                g.group_name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The seed's data: a `goals` app database and an `analytics` one, with indexes.
pub async fn seed_mongo(uri: &str) {
    let client = mongodb::Client::with_uri_str(uri)
        .await
        .expect("source mongo");
    let goals = client.database("goals");
    let docs: Vec<Document> = (0..50)
        .map(|i| doc! {"_id": i, "text": format!("Goal number {i}"), "done": i % 3 == 0, "tags": ["x", "y"]})
        .collect();
    goals
        .collection::<Document>("goals")
        .insert_many(docs)
        .await
        .expect("goals");
    let users: Vec<Document> = (0..20)
        .map(|i| doc! {"email": format!("user{i}@example.com"), "name": format!("User {i}"), "créé": i})
        .collect();
    goals
        .collection::<Document>("users")
        .insert_many(users)
        .await
        .expect("users");
    goals
        .run_command(doc! {"createIndexes": "users", "indexes": [{"key": {"email": 1}, "name": "email_1", "unique": true}]})
        .await
        .expect("index");
    let analytics = client.database("analytics");
    let events: Vec<Document> = (0..500)
        .map(|i| doc! {"kind": if i % 2 == 0 {"view"} else {"click"}, "n": i, "payload": "x".repeat(100)})
        .collect();
    analytics
        .collection::<Document>("events")
        .insert_many(events)
        .await
        .expect("events");
    analytics
        .run_command(doc! {"createIndexes": "events", "indexes": [{"key": {"kind": 1, "n": -1}, "name": "kind_1_n_-1"}]})
        .await
        .expect("index");
    analytics
        .run_command(doc! {"create": "empty"})
        .await
        .expect("empty collection");
}
