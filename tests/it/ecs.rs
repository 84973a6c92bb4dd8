//! The ECS cutover on moto: the task-definition rewrite round-trips through ECS, credentials
//! in Secrets Manager or env, deploy with wait and rollback, the `rollback` command, retries.

use std::time::Duration;

use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, CpuArchitecture,
    EphemeralStorage, HealthCheck, HostVolumeProperties, MountPoint, NetworkMode, OsFamily,
    RuntimePlatform, Secret as EcsSecret, Tag, Ulimit, UlimitName, Volume,
};
use efs2atlas::aws::Aws;
use efs2atlas::cancel::Cancel;
use efs2atlas::deploy::{self, QuietDeploy, WaitEnd};
use efs2atlas::discover::{self, Target};
use efs2atlas::engine::options::{CredentialMode, PlanOptions};
use efs2atlas::engine::plan;
use efs2atlas::taskdef::{FROM_REVISION_TAG, TaskDefSpec, dangling_references};
use efs2atlas::uri::MongoUri;

use crate::common::{ATLAS_PASSWORD, Account, account, atlas_uri};
use crate::proxy::FaultProxy;
use crate::world::{self, Fixture, OLD_MONGO_PASSWORD};

fn aws(acct: &Account) -> Aws {
    Aws::from_conf(&acct.conf, "us-east-1".into())
}

fn opts(credentials: CredentialMode) -> PlanOptions {
    PlanOptions {
        strategy: Default::default(),
        atlas: MongoUri::parse("--atlas-uri", &atlas_uri()).unwrap(),
        mongo_container: None,
        env: vec![],
        images: vec![("backend".into(), "academind/goals-backend:atlas".into())],
        credentials,
        keep_efs: false,
        drop: false,
        runner: None,
        atlas_api: None,
    }
}

/// Registers a task definition with much more in it than the seed's, and points the service at it.
async fn elaborate(acct: &Account, fx: &Fixture) -> String {
    let ecs = aws_sdk_ecs::Client::new(&acct.conf);
    let mut backend = world::backend_container();
    backend.depends_on = Some(vec![
        ContainerDependency::builder()
            .container_name("mongodb")
            .condition(ContainerCondition::Healthy)
            .build()
            .unwrap(),
        ContainerDependency::builder()
            .container_name("xray")
            .condition(ContainerCondition::Start)
            .build()
            .unwrap(),
    ]);
    backend.secrets = Some(vec![
        EcsSecret::builder()
            .name("API_KEY")
            .value_from("arn:aws:ssm:us-east-1:1:parameter/api-key")
            .build()
            .unwrap(),
    ]);
    backend.health_check = Some(
        HealthCheck::builder()
            .command("CMD-SHELL")
            .command("curl -f http://localhost/ || exit 1")
            .interval(30)
            .build()
            .unwrap(),
    );
    backend.ulimits = Some(vec![
        Ulimit::builder()
            .name(UlimitName::Nofile)
            .soft_limit(4096)
            .hard_limit(8192)
            .build()
            .unwrap(),
    ]);
    backend.docker_labels = Some([("team".to_string(), "goals".to_string())].into());
    backend.mount_points = Some(vec![
        MountPoint::builder()
            .source_volume("cache")
            .container_path("/cache")
            .build(),
    ]);
    let xray = ContainerDefinition::builder()
        .name("xray")
        .image("amazon/aws-xray-daemon")
        .essential(false)
        .memory(128)
        .mount_points(
            MountPoint::builder()
                .source_volume("cache")
                .container_path("/shared")
                .read_only(true)
                .build(),
        )
        .build();
    let mut mongo = world::mongo_container("mongodb", "data");
    mongo.mount_points.get_or_insert_with(Vec::new).push(
        MountPoint::builder()
            .source_volume("scratch")
            .container_path("/tmp/mongo")
            .build(),
    );
    mongo.health_check = Some(
        HealthCheck::builder()
            .command("CMD")
            .command("mongosh")
            .command("--eval")
            .command("db.adminCommand('ping')")
            .build()
            .unwrap(),
    );
    let td = ecs
        .register_task_definition()
        .family(&fx.family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("1024")
        .memory("3072")
        .execution_role_arn(&fx.execution_role_arn)
        .task_role_arn(format!("arn:aws:iam::{}:role/goals-task-role", acct.id))
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::Arm64)
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .ephemeral_storage(EphemeralStorage::builder().size_in_gib(40).build())
        .container_definitions(backend)
        .container_definitions(xray)
        .container_definitions(mongo)
        .volumes(world::efs_volume(
            "data",
            &fx.file_system_id,
            &fx.access_point_id,
        ))
        .volumes(Volume::builder().name("cache").build())
        .volumes(
            Volume::builder()
                .name("scratch")
                .host(HostVolumeProperties::builder().build())
                .build(),
        )
        .tags(Tag::builder().key("app").value("goals").build())
        .tags(Tag::builder().key("cost-center").value("42").build())
        .send()
        .await
        .unwrap();
    let arn = td.task_definition.unwrap().task_definition_arn.unwrap();
    ecs.update_service()
        .cluster(&fx.cluster)
        .service(&fx.service)
        .task_definition(&arn)
        .desired_count(1)
        .send()
        .await
        .unwrap();
    arn
}

#[tokio::test]
async fn rewrite_round_trips_through_ecs_and_changes_only_what_it_should() {
    let acct = account().await;
    let fx = world::build(&acct.conf, "goals").await;
    let old_arn = elaborate(&acct, &fx).await;
    let a = aws(&acct);
    let w = discover::world(
        &a,
        &Target {
            cluster: &fx.cluster,
            service: &fx.service,
            task_definition: None,
        },
    )
    .await
    .unwrap();
    let p = plan::plan(&w, &opts(CredentialMode::Env)).unwrap();
    assert!(p.ready, "{:?}", p.blockers);
    let spec = p.new_task_definition(&w, None).unwrap();
    let new_arn = deploy::register(&a, &spec).await.unwrap();
    assert_ne!(new_arn, old_arn);
    let (td, tags) = discover::ecs::task_definition(&a, &new_arn).await.unwrap();
    let back = TaskDefSpec::from_described(&td, &tags);
    assert_eq!(
        back.normalized(),
        spec.normalized(),
        "what ECS stored is exactly what efs2atlas registered"
    );
    assert!(
        dangling_references(&back).is_empty(),
        "{:?}",
        dangling_references(&back)
    );

    // Everything but the intended changes is as it was.
    let old = &w.task_definition_spec;
    assert_eq!(
        (&back.family, &back.cpu, &back.memory, &back.network_mode),
        (&old.family, &old.cpu, &old.memory, &old.network_mode)
    );
    assert_eq!(
        (&back.task_role_arn, &back.execution_role_arn),
        (&old.task_role_arn, &old.execution_role_arn)
    );
    assert_eq!(
        (&back.runtime_platform, &back.ephemeral_storage),
        (&old.runtime_platform, &old.ephemeral_storage)
    );
    assert_eq!(back.requires_compatibilities, old.requires_compatibilities);
    let names: Vec<_> = back
        .containers
        .iter()
        .map(|c| c.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["backend", "xray"]);
    assert_eq!(
        back.normalized().container("xray"),
        old.normalized().container("xray")
    );
    let vols: Vec<_> = back
        .volumes
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    assert_eq!(
        vols,
        ["cache"],
        "the EFS volume and the mongo-only scratch volume are gone"
    );
    let (back, old) = (back.normalized(), old.normalized());
    let (b, ob) = (
        back.container("backend").unwrap(),
        old.container("backend").unwrap(),
    );
    assert_eq!(b.image.as_deref(), Some("academind/goals-backend:atlas"));
    assert_eq!(b.depends_on().len(), 1);
    assert_eq!(b.depends_on()[0].container_name, "xray");
    assert_eq!(
        (
            &b.health_check,
            &b.ulimits,
            &b.docker_labels,
            &b.log_configuration
        ),
        (
            &ob.health_check,
            &ob.ulimits,
            &ob.docker_labels,
            &ob.log_configuration
        )
    );
    assert_eq!(
        (&b.secrets, &b.mount_points, &b.port_mappings),
        (&ob.secrets, &ob.mount_points, &ob.port_mappings)
    );
    let env: Vec<(String, String)> = b
        .environment()
        .iter()
        .map(|kv| (kv.name.clone().unwrap(), kv.value.clone().unwrap()))
        .collect();
    assert_eq!(
        env,
        [
            ("MONGODB_USERNAME".into(), "app_user".into()),
            ("MONGODB_PASSWORD".into(), ATLAS_PASSWORD.into()),
            ("MONGODB_URL".into(), "cluster0.ab1cd.mongodb.net".into()),
            ("MONGODB_NAME".into(), "goals".into()),
            ("NODE_ENV".into(), "production".into()),
        ]
    );
    let mut want_tags = old.tags.clone();
    want_tags.push(
        Tag::builder()
            .key(FROM_REVISION_TAG)
            .value(&old_arn)
            .build(),
    );
    assert_eq!(back.tags, want_tags);

    // Registering the same spec again reuses the revision.
    assert_eq!(deploy::register(&a, &spec).await.unwrap(), new_arn);
}

#[tokio::test]
async fn credentials_go_to_secrets_manager_and_the_execution_role_may_read_them() {
    let acct = account().await;
    let fx = world::build(&acct.conf, "goals").await;
    let a = aws(&acct);
    let w = discover::world(
        &a,
        &Target {
            cluster: &fx.cluster,
            service: &fx.service,
            task_definition: None,
        },
    )
    .await
    .unwrap();
    let p = plan::plan(&w, &opts(CredentialMode::SecretsManager)).unwrap();
    let name = p.secret_name.clone().unwrap();
    let value = p.secret_value().unwrap();
    let arn = deploy::ensure_secret(&a, &name, &value, &w.service.arn)
        .await
        .unwrap();
    // Idempotent: a second run updates, does not fail.
    assert_eq!(
        deploy::ensure_secret(&a, &name, &value, &w.service.arn)
            .await
            .unwrap(),
        arn
    );
    let policy = deploy::grant_secret_read(&a, &fx.execution_role_arn, &arn, &name)
        .await
        .unwrap();
    let spec = p.new_task_definition(&w, Some(&arn)).unwrap();
    let new_arn = deploy::register(&a, &spec).await.unwrap();

    let sm = aws_sdk_secretsmanager::Client::new(&acct.conf);
    let stored = sm
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"MONGODB_PASSWORD": ATLAS_PASSWORD})
    );

    let iam = aws_sdk_iam::Client::new(&acct.conf);
    let role = deploy::role_name(&fx.execution_role_arn).unwrap();
    let doc = iam
        .get_role_policy()
        .role_name(role)
        .policy_name(&policy)
        .send()
        .await
        .unwrap()
        .policy_document;
    let doc = efs2atlas::uri::percent_decode(&doc).unwrap_or(doc);
    assert!(
        doc.contains(&arn) && doc.contains("secretsmanager:GetSecretValue"),
        "{doc}"
    );

    let (td, _) = discover::ecs::task_definition(&a, &new_arn).await.unwrap();
    let backend = td
        .container_definitions()
        .iter()
        .find(|c| c.name.as_deref() == Some("backend"))
        .unwrap();
    for kv in backend.environment() {
        assert_ne!(
            kv.value.as_deref(),
            Some(ATLAS_PASSWORD),
            "no password in plain env"
        );
        assert_ne!(kv.name.as_deref(), Some("MONGODB_PASSWORD"));
    }
    assert_eq!(backend.secrets().len(), 1);
    assert_eq!(
        backend.secrets()[0].value_from,
        format!("{arn}:MONGODB_PASSWORD::")
    );
    let _ = OLD_MONGO_PASSWORD;
}

async fn registered_new(acct: &Account, fx: &Fixture) -> (Aws, String) {
    let a = aws(acct);
    let w = discover::world(
        &a,
        &Target {
            cluster: &fx.cluster,
            service: &fx.service,
            task_definition: None,
        },
    )
    .await
    .unwrap();
    let p = plan::plan(&w, &opts(CredentialMode::Env)).unwrap();
    let arn = deploy::register(&a, &p.new_task_definition(&w, None).unwrap())
        .await
        .unwrap();
    (a, arn)
}

#[tokio::test]
async fn deploy_reaches_steady_state_then_rollback_command_returns_to_mongo() {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "goals").await;
    let (a, new_arn) = registered_new(&acct, &fx).await;
    let r = deploy::deploy(
        &a,
        &fx.cluster,
        &fx.service,
        &new_arn,
        &fx.task_definition_arn,
        Duration::from_secs(20),
        &QuietDeploy,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.wait, WaitEnd::Steady);
    assert_eq!(
        deploy::service_state(&a, &fx.cluster, &fx.service)
            .await
            .unwrap()
            .task_definition,
        new_arn
    );

    let run = acct.run(&[
        "rollback",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
    ]);
    assert_eq!(run.code, 3, "no terminal without --yes: {}", run.stderr);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    let run = acct.run(&[
        "rollback",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--yes",
        "--deploy-timeout",
        "20s",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("not in the old MongoDB")
            || run.stdout.contains("not in the old MongoDB"),
        "{}",
        run.stderr
    );
    assert_eq!(
        deploy::service_state(&a, &fx.cluster, &fx.service)
            .await
            .unwrap()
            .task_definition,
        fx.task_definition_arn
    );

    let run = acct.run(&[
        "rollback",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--yes",
    ]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("nothing to roll back"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn rollback_refuses_once_the_efs_is_gone() {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "goals").await;
    let (a, new_arn) = registered_new(&acct, &fx).await;
    deploy::update_service(&a, &fx.cluster, &fx.service, &new_arn)
        .await
        .unwrap();
    let efs = aws_sdk_efs::Client::new(&acct.conf);
    efs.delete_access_point()
        .access_point_id(&fx.access_point_id)
        .send()
        .await
        .unwrap();
    for mt in &fx.mount_targets {
        efs.delete_mount_target()
            .mount_target_id(mt)
            .send()
            .await
            .unwrap();
    }
    efs.delete_file_system()
        .file_system_id(&fx.file_system_id)
        .send()
        .await
        .unwrap();
    let run = acct.run(&[
        "rollback",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--yes",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&fx.file_system_id) && run.stderr.contains("no longer exists"),
        "{}",
        run.stderr
    );
    assert_eq!(
        deploy::service_state(&a, &fx.cluster, &fx.service)
            .await
            .unwrap()
            .task_definition,
        new_arn
    );
}

#[tokio::test]
async fn a_deploy_that_never_gets_steady_times_out_and_rolls_back() {
    let acct = account().await;
    // The fixture's service never reaches running == desired in moto.
    let fx = world::build(&acct.conf, "goals").await;
    let (a, new_arn) = registered_new(&acct, &fx).await;
    let t = std::time::Instant::now();
    let r = deploy::deploy(
        &a,
        &fx.cluster,
        &fx.service,
        &new_arn,
        &fx.task_definition_arn,
        Duration::from_secs(2),
        &QuietDeploy,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(!r.ok);
    assert_eq!(r.wait, WaitEnd::Timeout);
    assert!(r.rollback.is_some());
    assert_eq!(
        r.final_state.task_definition, fx.task_definition_arn,
        "back on the old revision"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(
        deploy::service_state(&a, &fx.cluster, &fx.service)
            .await
            .unwrap()
            .task_definition,
        fx.task_definition_arn
    );
}

#[tokio::test]
async fn throttling_is_retried() {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "goals").await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_json_error("UpdateService", 2, 400, "ThrottlingException");
    proxy.inject_json_error("DescribeServices", 1, 503, "ServiceUnavailableException");
    let conf = acct.conf.to_builder().endpoint_url(&proxy.url).build();
    let (_, new_arn) = registered_new(&acct, &fx).await;
    let a = Aws::from_conf(&conf, "us-east-1".into());
    let r = deploy::deploy(
        &a,
        &fx.cluster,
        &fx.service,
        &new_arn,
        &fx.task_definition_arn,
        Duration::from_secs(20),
        &QuietDeploy,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(
        proxy.count("UpdateService"),
        3,
        "two throttled attempts, then through"
    );
}
