//! `--runner ecs`: the data steps in a one-off Fargate task (played by `fakefargate`), this
//! process following it through CloudWatch Logs. End states are the local migrate's; the
//! temporary rule, secret, policy and runner revision are gone afterwards.

use crate::common::{Account, atlas_uri};
use crate::fakefargate::FakeFargate;
use crate::migrate::{Setup, assert_migrated, secrets, setup};

async fn fargate(s: &Setup) -> FakeFargate {
    crate::fakefargate::service_task(&s.acct.conf, &s.fx).await;
    FakeFargate::start(
        &s.acct.conf,
        &s.fx.cluster,
        &format!("127.0.0.1:{}", s.src.port()),
    )
}

fn runner_args(s: &Setup, extra: &[&str]) -> Vec<String> {
    let mut a = s.args();
    a.extend(
        ["--runner", "ecs", "--runner-image", "efs2atlas:test"]
            .iter()
            .chain(extra)
            .map(|x| x.to_string()),
    );
    a
}

/// What is left of the runner in the account: secrets named for it, ACTIVE runner revisions,
/// rules from the runner's group on the task group, inline policies on the execution role.
async fn leftovers(acct: &Account, s: &Setup) -> Vec<String> {
    let mut left = Vec::new();
    let sm = aws_sdk_secretsmanager::Client::new(&acct.conf);
    for sec in sm.list_secrets().send().await.unwrap().secret_list() {
        let name = sec.name().unwrap_or_default();
        if name.starts_with("efs2atlas/runner") {
            left.push(format!("secret {name}"));
        }
    }
    let ecs = aws_sdk_ecs::Client::new(&acct.conf);
    let tds = ecs
        .list_task_definitions()
        .family_prefix("efs2atlas-runner")
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    left.extend(
        tds.task_definition_arns()
            .iter()
            .map(|a| format!("revision {a}")),
    );
    let ec2 = aws_sdk_ec2::Client::new(&acct.conf);
    let g = ec2
        .describe_security_groups()
        .group_ids(&s.fx.task_sg)
        .send()
        .await
        .unwrap();
    for p in g.security_groups()[0].ip_permissions() {
        if p.from_port() == Some(27017) {
            left.push(format!("rule {:?}", p));
        }
    }
    let iam = aws_sdk_iam::Client::new(&acct.conf);
    let role = s.fx.execution_role_arn.rsplit('/').next().unwrap();
    let policies = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    for p in policies.policy_names() {
        if p.contains("runner") {
            left.push(format!("policy {p}"));
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_with_a_runner_task_reaches_the_same_end_state_and_leaves_nothing_behind() {
    let s = setup(2_000).await;
    let fake = fargate(&s).await;
    let args = runner_args(&s, &["--yes", "--json"]);
    let r = s.cmd(&args).run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.assert_no_secret(&secrets());
    let v = r.json();
    assert_eq!(v["migration"]["ok"], true, "{v}");
    assert!(
        r.stderr.contains("runner task") && r.stderr.contains("temporary rule"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("copy: copied").count(),
        1,
        "each step's note once: {}",
        r.stderr
    );
    assert_eq!(
        fake.started.lock().unwrap().len(),
        1,
        "one runner for all data steps"
    );
    assert_migrated(&s).await;
    assert_eq!(leftovers(&s.acct, &s).await, Vec::<String>::new());
    let j = s.journal_json();
    assert_eq!(j["migrate"]["steps"]["verify"]["status"], "done");
    assert!(j["migrate"]["results"]["copy"].is_object(), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_fails_or_never_starts_gives_one_clear_error_and_cleans_up() {
    let s = setup(0).await;
    let fake = fargate(&s).await;
    // The image cannot be pulled: ECS stops the task with a reason.
    *fake.fail_next.lock().unwrap() =
        Some("CannotPullContainerError: pull image manifest has been retried 5 time(s)".into());
    let r = s.cmd(&runner_args(&s, &["--yes"])).run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("CannotPullContainerError") && r.stderr.contains("--runner-image"),
        "{}",
        r.stderr
    );
    assert_eq!(leftovers(&s.acct, &s).await, Vec::<String>::new());
    // A wrong Atlas password: the runner's preflight says so, nothing is left behind.
    std::fs::remove_file(s.journal()).ok();
    let mut args = runner_args(&s, &["--yes"]);
    let i = args.iter().position(|a| a == "--target-uri").unwrap();
    args[i + 1] = s.dst.uri_as("atlas_app", "wrong-password");
    let r = s.cmd(&args).run();
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("rejected the login"), "{}", r.stderr);
    r.assert_no_secret(&secrets());
    assert!(!r.stderr.contains("wrong-password"), "{}", r.stderr);
    assert_eq!(leftovers(&s.acct, &s).await, Vec::<String>::new());
}

/// `plan --runner ecs` of the setup's service, then `extra`.
fn plan_args<'a>(s: &'a Setup, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "plan",
        "--cluster",
        &s.fx.cluster,
        "--service",
        &s.fx.service,
        "--runner",
        "ecs",
    ];
    a.extend_from_slice(extra);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_with_a_runner_shows_where_it_runs_and_changes_nothing() {
    let s = setup(0).await;
    let before = crate::common::snapshot(&s.acct.conf).await;
    let uri = atlas_uri();
    let plan = plan_args(&s, &["--runner-image", "example/efs2atlas:1"]);
    let r = s.acct.run_env(
        &[&plan[..], &["--json"]].concat(),
        &[("EFS2ATLAS_ATLAS_URI", &uri)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let runner = &v["plan"]["runner"];
    assert_eq!(runner["image"]["image"], "example/efs2atlas:1");
    assert_eq!(
        runner["placement"]["security_groups"][0],
        s.fx.task_sg.as_str()
    );
    assert!(
        !runner["placement"]["subnets"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(runner["temporary_rule"]["port"], 27017);
    assert_eq!(runner["temporary_rule"]["group_id"], s.fx.task_sg.as_str());
    let ids: Vec<&str> = v["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(&ids[..3], ["secret", "register", "preflight"]);
    // Everything the run would make in the account is named, the runner's family first.
    let named: Vec<(String, String, String)> = v["plan"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (f("action"), f("kind"), f("name"))
        })
        .collect();
    let has = |action: &str, kind: &str, name: &str| {
        named
            .iter()
            .any(|(a, k, n)| a == action && k == kind && n.contains(name))
    };
    for (action, kind, name) in [
        ("temporary", "ecs-task-definition", "efs2atlas-runner"),
        ("create", "logs-log-group", "/efs2atlas/runner"),
        ("temporary", "secretsmanager-secret", "efs2atlas/runner/"),
        (
            "temporary",
            "iam-inline-policy",
            "efs2atlas-read-efs2atlas-runner-",
        ),
        (
            "temporary",
            "ec2-security-group-rule",
            s.fx.task_sg.as_str(),
        ),
        ("create", "secretsmanager-secret", "efs2atlas/"),
        ("create", "ecs-task-definition", "goals-app"),
        ("change", "ecs-service", s.fx.service.as_str()),
        ("delete", "efs-file-system", "fs-"),
    ] {
        assert!(
            has(action, kind, name),
            "{action} {kind} {name}: {named:#?}"
        );
    }
    // The text a person reads names them too.
    let t = s.acct.run_env(&plan, &[("EFS2ATLAS_ATLAS_URI", &uri)]);
    assert!(
        t.stdout.contains("would create, change and delete")
            && t.stdout.contains("efs2atlas-runner")
            && t.stdout.contains("/efs2atlas/runner"),
        "{}",
        t.stdout
    );
    assert_eq!(crate::common::snapshot(&s.acct.conf).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_this_process_during_the_copy_then_resume_follows_the_same_runner() {
    let (s, fake, mut child) = copying().await;
    child.kill().unwrap();
    child.wait().unwrap();
    s.link.set(Default::default());
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("following the runner task the interrupted run started"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fake.started.lock().unwrap().len(),
        1,
        "resume follows the runner that still runs instead of starting another"
    );
    assert_migrated(&s).await;
    assert_eq!(leftovers(&s.acct, &s).await, Vec::<String>::new());
}

/// A migration with a runner, part-way through the copy of a big collection (the link to the
/// target slowed so it lasts).
async fn copying() -> (Setup, FakeFargate, std::process::Child) {
    let s = setup(40_000).await;
    s.slow_link();
    let fake = fargate(&s).await;
    let mut child = s
        .cmd(&runner_args(&s, &["--yes"]))
        .log_to(s.dir.path().join("child.log"))
        .spawn();
    wait_for_copy(&s, &mut child).await;
    (s, fake, child)
}

/// Waits until the runner has copied part of the big collection (as the journal shows).
async fn wait_for_copy(s: &Setup, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let j = crate::common::journal_at(s.journal());
        let docs = j["copy"]["collections"]["goals.history"]["docs"]
            .as_u64()
            .unwrap_or(0);
        if docs > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the copy never got under way: {}",
            std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_runner_at_a_batch_boundary_and_resume_starts_a_new_one() {
    let (s, fake, mut child) = copying().await;
    // SAFETY: a plain kill(2) of the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(5), "{log}");
    assert!(log.contains("efs2atlas resume"), "{log}");
    let first = fake.started.lock().unwrap()[0].clone();
    let ecs = aws_sdk_ecs::Client::new(&s.acct.conf);
    let t = ecs
        .describe_tasks()
        .cluster(&s.fx.cluster)
        .tasks(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.tasks()[0].last_status(),
        Some("STOPPED"),
        "the runner was stopped"
    );
    assert_eq!(leftovers(&s.acct, &s).await, Vec::<String>::new());
    s.link.set(Default::default());
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        fake.started.lock().unwrap().len(),
        2,
        "a new runner continued"
    );
    assert_migrated(&s).await;
    assert_eq!(leftovers(&s.acct, &s).await, Vec::<String>::new());
}

/// Makes `repository` in the test account's ECR holding one image tagged `tag`.
async fn push_to_ecr(conf: &aws_config::SdkConfig, repository: &str, tag: &str) {
    let ecr = aws_sdk_ecr::Client::new(conf);
    ecr.create_repository()
        .repository_name(repository)
        .send()
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000001",
        },
        "layers": [],
    });
    ecr.put_image()
        .repository_name(repository)
        .image_tag(tag)
        .image_manifest(manifest.to_string())
        .send()
        .await
        .unwrap();
}

/// No image given: the plan blocks with the three commands that build and push one to this
/// account's ECR, and migrate refuses before changing anything. An image in that ECR is found;
/// one missing from it blocks (with `create-repository` only when the repository is missing
/// too); one elsewhere is not checked. The environment and the stage key give it as the flag
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_plan_finds_its_image_or_blocks_with_the_commands_that_make_one() {
    let s = setup(0).await;
    let before = crate::common::snapshot(&s.acct.conf).await;
    let uri = atlas_uri();
    let plan = |extra: &[&str], env: &[(&str, &str)]| {
        let a = plan_args(&s, extra);
        let mut e = vec![("EFS2ATLAS_ATLAS_URI", uri.as_str())];
        e.extend_from_slice(env);
        s.acct.run_env(&a, &e)
    };
    let blocker = |v: &serde_json::Value, code: &str| -> String {
        let b = v["plan"]["blockers"].as_array().unwrap();
        let f = b.iter().find(|b| b["code"] == code);
        f.unwrap_or_else(|| panic!("no {code}: {b:#?}"))["message"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // An empty value is none (an unset variable expanded in a script).
    let r = plan(&["--json", "--runner-image", ""], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let v = r.json();
    let (account, region) = (
        v["plan"]["account"].as_str().unwrap().to_string(),
        v["plan"]["region"].as_str().unwrap().to_string(),
    );
    let registry = format!("{account}.dkr.ecr.{region}.amazonaws.com");
    let ours = format!("{registry}/efs2atlas:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(v["plan"]["runner"]["image_check"]["status"], "missing");
    let m = blocker(&v, "runner-image-missing");
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(
        lines[1..],
        [
            format!("scripts/image {ours}"),
            format!("aws ecr create-repository --repository-name efs2atlas --region {region}"),
            format!("docker push {ours}"),
        ],
        "{m}"
    );
    assert!(lines[0].contains("EFS2ATLAS_RUNNER_IMAGE"), "{m}");
    // The text: one sentence, the commands indented under it.
    let t = plan(&[], &[]);
    assert_eq!(t.code, 3, "{}", t.stderr);
    assert!(
        t.stdout
            .contains("[runner-image-missing] --runner ecs needs")
            && t.stdout
                .contains(&format!("\n      scripts/image {ours}\n"))
            && t.stdout.contains(&format!("\n      docker push {ours}\n")),
        "{}",
        t.stdout
    );
    let m = s.migrate(&["--runner", "ecs", "--yes"]);
    assert_eq!(m.code, 3, "{}", m.stderr);
    assert!(
        format!("{}{}", m.stdout, m.stderr).contains("runner-image-missing"),
        "{}\n{}",
        m.stdout,
        m.stderr
    );
    assert_eq!(crate::common::snapshot(&s.acct.conf).await, before);

    // In this account's ECR: found, and the plan is ready.
    push_to_ecr(&s.acct.conf, "efs2atlas", env!("CARGO_PKG_VERSION")).await;
    let r = plan(&["--json", "--runner-image", &ours], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["plan"]["runner"]["image_check"]["status"], "exists");
    assert_eq!(v["plan"]["runner"]["image"]["image"], ours.as_str());
    let t = plan(&["--runner-image", &ours], &[]);
    assert!(
        t.stdout
            .contains(&format!("image {ours}, found in this account's ECR")),
        "{}",
        t.stdout
    );
    // Through the environment: a tag the repository does not have blocks; pushing it is enough.
    let other = format!("{registry}/efs2atlas:9.9.9");
    let r = plan(&["--json"], &[("EFS2ATLAS_RUNNER_IMAGE", &other)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["plan"]["runner"]["image_check"]["status"], "not-found");
    let m = blocker(&v, "runner-image-not-found");
    assert!(
        m.contains("has no image tagged 9.9.9")
            && !m.contains("create-repository")
            && m.ends_with(&format!("docker push {other}")),
        "{m}"
    );
    // No such repository: the commands create it.
    let r = plan(
        &["--json", "--runner-image", &format!("{registry}/nope:1")],
        &[],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let m = blocker(&r.json(), "runner-image-not-found");
    assert!(
        m.contains(&format!(
            "aws ecr create-repository --repository-name nope --region {region}"
        )),
        "{m}"
    );
    // From the stage file, elsewhere: not checked, and the plan says so.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("efs2atlas.toml");
    std::fs::write(&file, "[stage.x]\nrunner_image = \"example/efs2atlas:1\"\n").unwrap();
    let config = file.display().to_string();
    let r = plan(&["--json", "--config", &config, "--stage", "x"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["plan"]["runner"]["image_check"]["status"], "not-checked");
    let unchecked = v["plan"]["unchecked"].to_string();
    assert!(
        unchecked.contains("the runner image example/efs2atlas:1 (it is not in an ECR registry"),
        "{unchecked}"
    );
}
