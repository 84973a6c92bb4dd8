//! `efs2atlas plan` against the fixture world in moto.

use serde_json::Value;

use crate::common::{ATLAS_PASSWORD, Account, account, atlas_uri};
use crate::mongod::Mongod;
use crate::world::{self, Fixture, OLD_MONGO_PASSWORD};

/// The fixture with its one mongo task running.
async fn setup() -> (Account, Fixture) {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "goals").await;
    (acct, fx)
}

#[tokio::test]
async fn several_tasks_or_none_block_with_the_reason() {
    let (acct, fx) = setup().await;
    let src = Mongod::source();
    for (n, says) in [(2, "runs 2 tasks"), (0, "runs no task")] {
        world::scale(&acct.conf, &fx, n).await;
        let (r, v) = plan_json(&acct, &fx, &[]);
        assert_eq!(r.code, 3, "{n} tasks: {}", r.stderr);
        assert_eq!(v["plan"]["ready"], false);
        let b = v["plan"]["blockers"].to_string();
        assert!(
            b.contains("not-one-source") && b.contains(says) && b.contains("--desired-count 1"),
            "{b}"
        );
        // migrate refuses the same way, and changes nothing.
        let uri = atlas_uri();
        let r = acct.run_env(
            &[
                "migrate",
                "--cluster",
                &fx.cluster,
                "--service",
                &fx.service,
                "--yes",
            ],
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("EFS2ATLAS_SOURCE_URI", &src.uri()),
            ],
        );
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
}

fn plan_json(acct: &Account, fx: &Fixture, extra: &[&str]) -> (crate::common::Run, Value) {
    let uri = atlas_uri();
    let mut args = vec![
        "plan",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-uri",
        &uri,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = acct.run(&args);
    run.assert_no_secret(&[ATLAS_PASSWORD, OLD_MONGO_PASSWORD]);
    let v = run.json();
    (run, v)
}

fn mapping<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["env_mapping"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no mapping for {name}: {plan:#}"))
}

#[tokio::test]
async fn plan_on_the_fixture_finds_container_efs_groups_mapping_and_steps() {
    let (acct, fx) = setup().await;
    let (run, v) = plan_json(&acct, &fx, &[]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let p = &v["plan"];
    assert_eq!(p["ready"], true, "{p:#}");
    assert_eq!(p["mongo_container"]["name"], "mongodb");
    assert_eq!(p["mongo_container"]["chosen_by"], "image");
    assert_eq!(
        p["mongo_container"]["file_system_ids"],
        serde_json::json!([fx.file_system_id])
    );
    assert_eq!(
        p["mongo_container"]["access_point_ids"],
        serde_json::json!([fx.access_point_id])
    );
    assert_eq!(
        p["mongo_container"]["volumes_removed"],
        serde_json::json!(["data"])
    );

    assert_eq!(mapping(p, "MONGODB_USERNAME")["template"], "{user}");
    assert_eq!(mapping(p, "MONGODB_USERNAME")["new"], "app_user");
    assert_eq!(mapping(p, "MONGODB_PASSWORD")["template"], "{password}");
    assert_eq!(mapping(p, "MONGODB_PASSWORD")["new"], "****");
    assert_eq!(mapping(p, "MONGODB_PASSWORD")["new_in"], "secrets");
    assert_eq!(mapping(p, "MONGODB_URL")["template"], "{host}");
    assert_eq!(mapping(p, "MONGODB_URL")["current"], "localhost");
    assert_eq!(
        mapping(p, "MONGODB_URL")["new"],
        "cluster0.ab1cd.mongodb.net"
    );
    assert_eq!(mapping(p, "MONGODB_NAME")["new"], "goals");
    assert_eq!(p["env_mapping"].as_array().unwrap().len(), 4, "{p:#}");

    let fs = &p["file_systems"][0];
    assert_eq!(fs["id"], fx.file_system_id.as_str());
    assert_eq!(fs["delete"], true);
    let sgs = p["security_groups"].as_array().unwrap();
    assert_eq!(
        sgs.len(),
        1,
        "only the NFS group sits on the mount targets: {sgs:#?}"
    );
    assert_eq!(sgs[0]["id"], fx.nfs_sg.as_str());
    assert_eq!(sgs[0]["delete"], true);
    assert_eq!(sgs[0]["shared"], false);

    // The plan's steps are the very list the runner runs; the clean-up's deletions are
    // actions of its one step.
    let steps: Vec<&str> = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(steps, crate::migrate_steps());
    let cleanup = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "cleanup")
        .unwrap();
    let actions: Vec<&str> = cleanup["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "deregister-old-revisions",
            "delete-access-points",
            "delete-mount-targets",
            "delete-file-system",
            "delete-security-group"
        ]
    );
    assert_eq!(cleanup["destructive"], true);
    let diff = p["task_definition_diff"].as_str().unwrap();
    assert!(diff.contains("-      \"name\": \"mongodb\""), "{diff}");
    assert!(diff.contains("\"fileSystemId\""), "{diff}");
    assert!(
        diff.contains("secret:efs2atlas/goals-cluster/goals-service:MONGODB_PASSWORD::"),
        "{diff}"
    );
    assert!(
        !diff.contains("+          \"name\": \"MONGODB_PASSWORD\",\n+          \"value\""),
        "{diff}"
    );

    let w = &v["world"];
    assert_eq!(w["service"]["launch_type"], "FARGATE");
    assert_eq!(w["task_definition"]["revision"], 1);
    assert_eq!(w["account"], acct.id.as_str());
}

#[tokio::test]
async fn plan_text_is_readable_and_redacted() {
    let (acct, fx) = setup().await;
    let uri = atlas_uri();
    let run = acct.run(&[
        "plan",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-uri",
        &uri,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.assert_no_secret(&[ATLAS_PASSWORD, OLD_MONGO_PASSWORD]);
    for want in [
        "MongoDB container: mongodb",
        &fx.file_system_id,
        &fx.nfs_sg,
        "DELETE",
        "MONGODB_URL",
        // Without --source-uri and --target-uri, "ready" only goes as far as was checked.
        "Not checked by this plan",
        "the source database",
        "pass --target-uri",
        "Ready as far as checked:",
    ] {
        assert!(run.stdout.contains(want), "missing {want}:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("Ready:"), "{}", run.stdout);
}

#[tokio::test]
async fn plan_with_source_lists_databases() {
    let (acct, fx) = setup().await;
    let mongod = Mongod::source();
    world::seed_mongo(&mongod.uri()).await;
    let src = mongod.uri();
    let (run, v) = plan_json(&acct, &fx, &["--source-uri", &src]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dbs = v["world"]["source"]["databases"].as_array().unwrap();
    let names: Vec<&str> = dbs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["analytics", "goals"]);
    let goals = dbs.iter().find(|d| d["name"] == "goals").unwrap();
    let users = goals["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "users")
        .unwrap();
    assert_eq!(users["documents"], 20);
    assert_eq!(users["indexes"], 2);
}

#[tokio::test]
async fn shared_efs_used_by_another_family_is_kept() {
    let (acct, fx) = setup().await;
    let ecs = aws_sdk_ecs::Client::new(&acct.conf);
    ecs.register_task_definition()
        .family("reports")
        .container_definitions(world::mongo_container("reportsdb", "shared"))
        .volumes(world::efs_volume(
            "shared",
            &fx.file_system_id,
            &fx.access_point_id,
        ))
        .send()
        .await
        .unwrap();
    let (run, v) = plan_json(&acct, &fx, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let p = &v["plan"];
    assert_eq!(p["file_systems"][0]["delete"], false, "{p:#}");
    let reasons = p["file_systems"][0]["keep_reasons"].to_string();
    assert!(reasons.contains("reports"), "{reasons}");
    assert_eq!(p["security_groups"][0]["delete"], false);
    let steps = p["steps"].to_string();
    assert!(
        !steps.contains("delete-file-system") && steps.contains("keep-efs"),
        "{steps}"
    );
    assert!(v["world"]["efs_users"].to_string().contains("reports"));
}

#[tokio::test]
async fn security_group_referenced_by_another_group_is_shared() {
    let (acct, fx) = setup().await;
    let ec2 = aws_sdk_ec2::Client::new(&acct.conf);
    let bastion = ec2
        .create_security_group()
        .group_name("bastion")
        .description("bastion")
        .vpc_id(&fx.vpc_id)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    let pair = aws_sdk_ec2::types::UserIdGroupPair::builder()
        .group_id(&fx.nfs_sg)
        .build();
    ec2.authorize_security_group_ingress()
        .group_id(&bastion)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .user_id_group_pairs(pair.clone())
                .build(),
        )
        .send()
        .await
        .unwrap();
    // An NFS-only rule in the task group's egress exists just for the EFS: revocable.
    ec2.authorize_security_group_egress()
        .group_id(&fx.task_sg)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(2049)
                .to_port(2049)
                .user_id_group_pairs(pair)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (run, v) = plan_json(&acct, &fx, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sg = &v["plan"]["security_groups"][0];
    assert_eq!(sg["shared"], true, "{sg:#}");
    assert_eq!(sg["delete"], false);
    assert!(sg["keep_reasons"].to_string().contains(&bastion), "{sg:#}");
    let refs = v["world"]["security_groups"][0]["referenced_by"]
        .as_array()
        .unwrap();
    assert_eq!(refs.len(), 2, "{refs:#?}");
    // The EFS itself is still exclusively this app's.
    assert_eq!(v["plan"]["file_systems"][0]["delete"], true);
}

#[tokio::test]
async fn two_mongo_containers_is_a_clear_refusal() {
    let (acct, fx) = setup().await;
    let ecs = aws_sdk_ecs::Client::new(&acct.conf);
    let td = ecs
        .register_task_definition()
        .family(&fx.family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .execution_role_arn(&fx.execution_role_arn)
        .container_definitions(world::backend_container())
        .container_definitions(world::mongo_container("mongodb", "data"))
        .container_definitions(world::mongo_container("mongo-replica", "data"))
        .volumes(world::efs_volume(
            "data",
            &fx.file_system_id,
            &fx.access_point_id,
        ))
        .send()
        .await
        .unwrap();
    let arn = td.task_definition.unwrap().task_definition_arn.unwrap();
    ecs.update_service()
        .cluster(&fx.cluster)
        .service(&fx.service)
        .task_definition(&arn)
        .send()
        .await
        .unwrap();
    let uri = atlas_uri();
    let run = acct.run(&[
        "plan",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-uri",
        &uri,
    ]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("several containers") && run.stderr.contains("--mongo-container"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    // Naming one is not enough here: the other still mounts the same EFS volume.
    let run = acct.run(&[
        "plan",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-uri",
        &uri,
        "--mongo-container",
        "mongodb",
        "--json",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["plan"]["mongo_container"]["name"], "mongodb");
    assert_eq!(
        v["plan"]["blockers"][0]["code"], "efs-volume-shared-in-task",
        "{v:#}"
    );
    let run = acct.run(&[
        "plan",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-uri",
        &uri,
        "--mongo-container",
        "mongodb",
        "--keep-efs",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["plan"]["file_systems"][0]["delete"], false);
}

#[tokio::test]
async fn custom_env_names_with_env_flags() {
    let (acct, fx) = setup().await;
    let ecs = aws_sdk_ecs::Client::new(&acct.conf);
    let env = |n: &str, v: &str| {
        aws_sdk_ecs::types::KeyValuePair::builder()
            .name(n)
            .value(v)
            .build()
    };
    let mut backend = world::backend_container();
    backend.environment = Some(vec![
        env("APP_DB_HOST", "localhost"),
        env("APP_DB_SECRET", "x"),
        env("NODE_ENV", "production"),
    ]);
    let td = ecs
        .register_task_definition()
        .family(&fx.family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .execution_role_arn(&fx.execution_role_arn)
        .container_definitions(backend)
        .container_definitions(world::mongo_container("mongodb", "data"))
        .volumes(world::efs_volume(
            "data",
            &fx.file_system_id,
            &fx.access_point_id,
        ))
        .send()
        .await
        .unwrap();
    let arn = td.task_definition.unwrap().task_definition_arn.unwrap();
    ecs.update_service()
        .cluster(&fx.cluster)
        .service(&fx.service)
        .task_definition(&arn)
        .send()
        .await
        .unwrap();

    let (run, v) = plan_json(&acct, &fx, &[]);
    assert_eq!(
        run.code, 3,
        "nothing refers to Mongo by name: {}",
        run.stderr
    );
    assert_eq!(v["plan"]["blockers"][0]["code"], "no-app-env");

    let (run, v) = plan_json(
        &acct,
        &fx,
        &[
            "--env",
            "APP_DB_HOST={host}",
            "--env",
            "APP_DB_SECRET={password}",
            "--env",
            "APP_DB_URI=mongodb+srv://{user}:{password}@{host}/{db}",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let p = &v["plan"];
    assert_eq!(
        mapping(p, "APP_DB_HOST")["new"],
        "cluster0.ab1cd.mongodb.net"
    );
    assert_eq!(mapping(p, "APP_DB_SECRET")["new_in"], "secrets");
    assert_eq!(
        mapping(p, "APP_DB_URI")["new"],
        "mongodb+srv://app_user:****@cluster0.ab1cd.mongodb.net/goals"
    );
    assert_eq!(mapping(p, "APP_DB_URI")["current_in"], "new");

    let uri = atlas_uri();
    let run = acct.run(&[
        "plan",
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-uri",
        &uri,
        "--env",
        "APP_DB={pasword}",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown field {pasword}"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn bad_input_gets_one_clear_sentence() {
    let (acct, fx) = setup().await;
    let uri = atlas_uri();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--cluster", "nope", "--service", &fx.service],
            vec![],
            2,
            "ECS cluster 'nope' does not exist",
        ),
        (
            vec!["--cluster", &fx.cluster, "--service", "nope"],
            vec![],
            2,
            "ECS service 'nope' does not exist in cluster",
        ),
        (
            vec![
                "--cluster",
                &fx.cluster,
                "--service",
                &fx.service,
                "--atlas-uri",
                "https://x",
            ],
            vec![],
            2,
            "must start with mongodb://",
        ),
        (
            vec![
                "--cluster",
                &fx.cluster,
                "--service",
                &fx.service,
                "--atlas-uri",
                "mongodb+srv://u:Atl4s-S3cret-pw@a.net,b.net/x",
            ],
            vec![],
            2,
            "exactly one host",
        ),
        (
            vec!["--cluster", &fx.cluster, "--service", &fx.service],
            vec![("AWS_REGION", "")],
            2,
            "no AWS region",
        ),
        (
            vec!["--cluster", &fx.cluster, "--service", &fx.service],
            vec![
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("AWS_MAX_ATTEMPTS", "1"),
            ],
            1,
            "could not reach the AWS endpoint http://127.0.0.1:9",
        ),
        (
            vec!["--cluster", &fx.cluster, "--service", &fx.service],
            vec![
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
                ("AWS_SESSION_TOKEN", ""),
            ],
            2,
            "no usable AWS credentials",
        ),
        (
            vec![
                "--cluster",
                &fx.cluster,
                "--service",
                &fx.service,
                "--source-uri",
                "mongodb://127.0.0.1:9",
            ],
            vec![],
            1,
            "--source-uri",
        ),
    ];
    for (args, env, code, want) in cases {
        let mut full = vec!["plan"];
        full.extend(args.iter().copied());
        if !args.contains(&"--atlas-uri") {
            full.extend(["--atlas-uri", uri.as_str()]);
        }
        let run = acct.run_env(&full, &env);
        assert_eq!(run.code, code, "{args:?} {env:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(want),
            "{args:?}: want {want:?} in:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("DispatchFailure"),
            "{}",
            run.stderr
        );
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "one sentence: {}",
            run.stderr
        );
        run.assert_no_secret(&[ATLAS_PASSWORD]);
    }
}

#[tokio::test]
async fn plan_changes_nothing() {
    let (acct, fx) = setup().await;
    let before = crate::common::snapshot(&acct.conf).await;
    assert!(
        before["file_systems"].as_array().unwrap().len() == 1,
        "{before:#}"
    );
    let (run, _) = plan_json(&acct, &fx, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = crate::common::snapshot(&acct.conf).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_dry_run_check_the_target_is_empty_and_change_nothing() {
    let s = crate::migrate::setup(10).await;
    let left = mongodb::bson::doc! {"_id": "left-over"};
    crate::mongod::client(&s.dst.uri())
        .await
        .database("goals")
        .collection::<mongodb::bson::Document>("goals")
        .insert_one(left.clone())
        .await
        .unwrap();
    let (src, dst) = (s.src.uri(), s.target_uri());
    let flags = ["--source-uri", src.as_str(), "--target-uri", dst.as_str()];
    let (r, v) = plan_json(&s.acct, &s.fx, &flags);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let blockers = v["plan"]["blockers"].to_string();
    assert!(
        blockers.contains("target-not-empty") && blockers.contains("goals.goals"),
        "{blockers}"
    );
    assert!(blockers.contains("--drop"), "{blockers}");
    assert_eq!(v["plan"]["unchecked"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["world"]["target"]["busy"][0], "goals.goals");

    // With --drop the plan is ready: migrate --drop would replace it.
    let mut with_drop = flags.to_vec();
    with_drop.push("--drop");
    let (r, v) = plan_json(&s.acct, &s.fx, &with_drop);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["plan"]["ready"], true);

    // migrate --dry-run refuses the same way, and says nothing changed.
    let r = s.migrate(&["--dry-run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stdout.contains("target-not-empty"), "{}", r.stdout);
    assert!(!r.stdout.contains("Ready"), "{}", r.stdout);
    assert!(
        crate::mongod::client(&s.dst.uri())
            .await
            .database("goals")
            .collection::<mongodb::bson::Document>("goals")
            .find_one(left)
            .await
            .unwrap()
            .is_some(),
        "the target's data is untouched"
    );
    assert!(!std::path::Path::new(&s.journal()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_on_a_migrated_service_says_it_was_migrated_and_by_which_revision() {
    let s = crate::migrate::setup(10).await;
    let r = s.migrate(&["--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (r, _) = plan_json(&s.acct, &s.fx, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("was already migrated") && r.stderr.contains(&s.fx.task_definition_arn),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("efs2atlas rollback"), "{}", r.stderr);
}

#[tokio::test]
async fn a_stage_from_efs2atlas_toml_supplies_the_flags_and_the_command_line_wins() {
    let (acct, fx) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("efs2atlas.toml");
    std::fs::write(
        &file,
        format!(
            "[stage.dev]\ncluster = \"{}\"\nservice = \"{}\"\natlas_uri_env = \"ATLAS_URI_DEV\"\n\n\
             [stage.prod]\ncluster = \"{}\"\nservice = \"no-such-service\"\natlas_uri_env = \"ATLAS_URI_PROD\"\n",
            fx.cluster, fx.service, fx.cluster
        ),
    )
    .unwrap();
    let config = file.display().to_string();
    let uri = atlas_uri();
    let env = [
        ("ATLAS_URI_DEV", uri.as_str()),
        ("ATLAS_URI_PROD", uri.as_str()),
    ];
    let plan = |args: &[&str]| {
        let mut all = vec!["plan", "--config", &config, "--json"];
        all.extend_from_slice(args);
        acct.run_env(&all, &env)
    };
    let r = plan(&["--stage", "dev"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["plan"]["service"], fx.service.as_str());
    assert!(
        r.stderr.contains("Stage dev from") && r.stderr.contains("atlas_uri_env (ATLAS_URI_DEV)"),
        "{}",
        r.stderr
    );
    r.assert_no_secret(&[ATLAS_PASSWORD]);
    // The prod stage names a service that does not exist; the command line overrides it.
    let r = plan(&["--stage", "prod"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-service"), "{}", r.stderr);
    let r = plan(&["--stage", "prod", "--service", &fx.service]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = plan(&["--stage", "staging"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has no [stage.staging]"), "{}", r.stderr);
    // A mistake in the file names the file, the line and the key; nothing runs.
    std::fs::write(&file, "[stage.dev]\ncluster = \"c\"\nsevrice = \"s\"\n").unwrap();
    let r = plan(&["--stage", "dev"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{config} line 3: unknown key `sevrice`"))
            && r.stderr.contains("`service`")
            && !r.stderr.contains("`drop`"),
        "{}",
        r.stderr
    );
}
