//! AWS faults across a whole `migrate`: the HTTP fault proxy in front of moto answers chosen
//! calls with throttling, 500/503, stalls past `--aws-timeout`, DependencyViolation and
//! FileSystemInUse. Transient faults are retried and the run completes; a permanent one stops
//! the run naming the call and resource, with a journal `resume` finishes from.

use std::time::Duration;

use crate::common::{Run, atlas_uri, snapshot};
use crate::migrate::{Setup, assert_migrated, secrets, setup};
use crate::proxy::FaultProxy;

/// Runs `migrate --yes` (plus `extra`) through the proxy, off the runtime's workers so the
/// in-process proxy keeps serving.
fn migrate_via(s: &Setup, proxy: &FaultProxy, extra: &[&str]) -> Run {
    let mut a = s.args();
    a.push("--yes".into());
    a.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let uri = atlas_uri();
    tokio::task::block_in_place(|| {
        s.acct.run_env(
            &a,
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("AWS_ENDPOINT_URL", &proxy.url),
            ],
        )
    })
}

/// Generic XML error (STS, IAM, EC2 query protocols) with any status.
fn inject_xml(proxy: &FaultProxy, matches: &str, times: usize, status: u16, code: &str) {
    let body = format!(
        "<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>injected</Message></Error><RequestId>x</RequestId></ErrorResponse>"
    );
    proxy.inject(
        matches,
        times,
        status,
        &[("Content-Type", "text/xml")],
        &body,
    );
}

/// Injected faults: (what the proxy matches, how it fails). Each is hit twice, then passes.
const TRANSIENT: &[(&str, &str)] = &[
    ("GetCallerIdentity", "sts 503"),
    (
        "AmazonEC2ContainerServiceV20141113.DescribeServices",
        "ecs 500 ServerException",
    ),
    (
        "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition",
        "ecs throttling",
    ),
    ("GET /2015-02-01/file-systems", "efs 503"),
    ("Action=DescribeSecurityGroups", "ec2 RequestLimitExceeded"),
    (
        "AmazonEC2ContainerServiceV20141113.ListTasks",
        "stall past --aws-timeout",
    ),
    ("secretsmanager.CreateSecret", "secretsmanager 500"),
    ("Action=PutRolePolicy", "iam 503"),
    (
        "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition",
        "ecs throttling",
    ),
    (
        "AmazonEC2ContainerServiceV20141113.UpdateService",
        "ecs 503",
    ),
    ("DELETE /2015-02-01/access-points/", "efs 500"),
    ("DELETE /2015-02-01/mount-targets/", "efs throttling"),
    ("DELETE /2015-02-01/file-systems/", "efs FileSystemInUse"),
    ("Action=DeleteSecurityGroup", "ec2 DependencyViolation"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_aws_faults_at_every_step_are_retried_and_the_migration_completes() {
    let s = setup(0).await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    for (m, how) in TRANSIENT {
        match *how {
            "sts 503" | "iam 503" => inject_xml(&proxy, m, 2, 503, "ServiceUnavailable"),
            "ecs 500 ServerException" => proxy.inject_json_error(m, 2, 500, "ServerException"),
            "ecs throttling" => proxy.inject_json_error(m, 2, 400, "ThrottlingException"),
            "efs 503" => proxy.inject_efs_error(m, 2, 503, "ServiceUnavailable"),
            "efs 500" => proxy.inject_efs_error(m, 2, 500, "InternalServerError"),
            "efs throttling" => proxy.inject_efs_error(m, 2, 429, "ThrottlingException"),
            "efs FileSystemInUse" => proxy.inject_efs_error(m, 2, 409, "FileSystemInUse"),
            "ec2 RequestLimitExceeded" => proxy.inject_ec2_error(m, 2, "RequestLimitExceeded"),
            "ec2 DependencyViolation" => proxy.inject_ec2_error(m, 2, "DependencyViolation"),
            "secretsmanager 500" => proxy.inject_json_error(m, 2, 500, "InternalServiceError"),
            "ecs 503" => proxy.inject_json_error(m, 2, 503, "ServiceUnavailableException"),
            "stall past --aws-timeout" => proxy.inject_stall(m, 2, Duration::from_secs(4)),
            other => panic!("no injector for {other}"),
        }
    }
    let r = migrate_via(&s, &proxy, &["--aws-timeout", "1500ms", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.assert_no_secret(&secrets());
    for (m, how) in TRANSIENT {
        assert!(
            proxy.count(m) >= 3,
            "{m} ({how}) was failed twice and then went through: {} calls",
            proxy.count(m)
        );
    }
    assert_migrated(&s).await;
    let calls: Vec<String> = TRANSIENT
        .iter()
        .map(|(m, how)| format!("{how} on {m}: {} calls", proxy.count(m)))
        .collect();
    println!(
        "aws faults: {} injected ({} kinds x 2), migration completed; {}",
        TRANSIENT.len() * 2,
        TRANSIENT.len(),
        calls.join("; ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_aws_error_stops_the_run_naming_the_call_and_resume_finishes() {
    let s = setup(0).await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_json_error("RegisterTaskDefinition", 1000, 400, "AccessDeniedException");
    let r = migrate_via(&s, &proxy, &[]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("AccessDeniedException"),
        "the AWS error code is shown: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("goals"),
        "the task-definition family is named: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("efs2atlas resume --journal"),
        "says how to continue: {}",
        r.stderr
    );
    assert_eq!(
        proxy.count("RegisterTaskDefinition"),
        1,
        "not retried: access denied is not transient"
    );
    r.assert_no_secret(&secrets());
    let j = s.journal_json();
    assert_eq!(j["migrate"]["steps"]["register"]["status"], "failed");
    // The revision is registered before the freeze: a refused call leaves the app writing.
    assert!(
        j["migrate"]["freeze"].is_null(),
        "nothing was frozen: {}",
        j["migrate"]["freeze"]
    );
    assert!(j["migrate"]["steps"]["verify"].is_null());
    assert!(!r.stderr.contains("still write-locked"), "{}", r.stderr);
    let snap = snapshot(&s.acct.conf).await;
    assert_eq!(
        snap["file_systems"].as_array().unwrap().len(),
        1,
        "nothing deleted"
    );

    // The operator fixes the permission; resume (no proxy) continues from register.
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_in_cleanup_names_the_resource_and_keeps_the_rest() {
    let s = setup(0).await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_efs_error(
        "DELETE /2015-02-01/file-systems/",
        1000,
        403,
        "AccessDeniedException",
    );
    let r = migrate_via(&s, &proxy, &[]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&s.fx.file_system_id),
        "the file system is named: {}",
        r.stderr
    );
    assert!(r.stderr.contains("AccessDenied"), "{}", r.stderr);
    let j = s.journal_json();
    assert_eq!(j["migrate"]["steps"]["deploy"]["status"], "done");
    assert_eq!(j["migrate"]["steps"]["cleanup"]["status"], "failed");
    let snap = snapshot(&s.acct.conf).await;
    assert_eq!(
        snap["file_systems"].as_array().unwrap().len(),
        1,
        "the file system is still there"
    );
    assert!(
        snap["security_groups"].to_string().contains(&s.fx.nfs_sg),
        "the SG is only deleted after the file system"
    );
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}
