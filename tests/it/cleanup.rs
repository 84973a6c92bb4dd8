//! Cleanup on moto: only exclusively-owned storage goes, in order, with retries.

use std::time::Duration;

use efs2atlas::aws::Aws;
use efs2atlas::cancel::Cancel;
use efs2atlas::cleanup::{self, CleanupOptions, CleanupTarget};
use efs2atlas::deploy;
use efs2atlas::discover::{self, Target};
use efs2atlas::engine::options::{CredentialMode, PlanOptions};
use efs2atlas::engine::plan;
use efs2atlas::uri::MongoUri;

use crate::common::{Account, account, atlas_uri, snapshot};
use crate::proxy::FaultProxy;
use crate::world::{self, Fixture};

fn fast() -> CleanupOptions {
    CleanupOptions {
        timeout: Duration::from_secs(20),
        first_backoff: Duration::from_millis(100),
    }
}

/// The fixture after a successful cutover: the service steady on a revision without Mongo.
async fn cut_over(acct: &Account) -> (Aws, Fixture, CleanupTarget) {
    let fx = world::steady(&acct.conf, "goals").await;
    let a = Aws::from_conf(&acct.conf, "us-east-1".into());
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
    let opts = PlanOptions {
        strategy: Default::default(),
        atlas: MongoUri::parse("--atlas-uri", &atlas_uri()).unwrap(),
        mongo_container: None,
        env: vec![],
        images: vec![],
        credentials: CredentialMode::Env,
        keep_efs: false,
        drop: false,
        runner: None,
        atlas_api: None,
    };
    let p = plan::plan(&w, &opts).unwrap();
    let arn = deploy::register(&a, &p.new_task_definition(&w, None).unwrap())
        .await
        .unwrap();
    deploy::update_service(&a, &fx.cluster, &fx.service, &arn)
        .await
        .unwrap();
    let t = p.cleanup_target(&w);
    assert_eq!(t.file_systems, std::slice::from_ref(&fx.file_system_id));
    assert_eq!(t.security_groups, std::slice::from_ref(&fx.nfs_sg));
    (a, fx, t)
}

fn without(v: &serde_json::Value, needle: &str) -> Vec<serde_json::Value> {
    v.as_array()
        .unwrap()
        .iter()
        .filter(|x| !x.to_string().contains(needle))
        .cloned()
        .collect()
}

#[tokio::test]
async fn happy_path_deletes_exactly_the_efs_and_its_group() {
    let acct = account().await;
    let (a, fx, t) = cut_over(&acct).await;
    let before = snapshot(&acct.conf).await;
    let r = cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap();
    assert!(r.backups[0].contains(&fx.file_system_id), "{r:?}");
    let after = snapshot(&acct.conf).await;
    assert_eq!(after["file_systems"], serde_json::json!([]), "no EFS left");
    assert!(
        !after["security_groups"].to_string().contains(&fx.nfs_sg),
        "NFS group gone"
    );
    // The task group and every other group are untouched, rules included.
    assert_eq!(
        without(&before["security_groups"], &fx.nfs_sg),
        after["security_groups"].as_array().unwrap().clone()
    );
    assert_eq!(before["services"], after["services"]);
    // The old revision with the mongo container is deregistered; nothing else changed.
    let old = format!("{} ACTIVE", fx.task_definition_arn);
    assert!(before["task_definitions"].to_string().contains(&old));
    assert!(
        after["task_definitions"]
            .to_string()
            .contains(&format!("{} INACTIVE", fx.task_definition_arn))
    );
    assert!(
        r.deleted.iter().any(|d| d.starts_with("access-point"))
            && r.deleted
                .iter()
                .filter(|d| d.starts_with("mount-target"))
                .count()
                == 2
    );
    // Running it again is a no-op.
    let again = cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap();
    assert!(
        again.deleted.iter().all(|d| d.contains("already gone")),
        "{again:?}"
    );
}

#[tokio::test]
async fn refuses_unverified_unsteady_or_shared() {
    let acct = account().await;
    let (a, fx, t) = cut_over(&acct).await;
    let e = cleanup::run(&a, &t, false, &fast(), &Cancel::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not been verified"), "{e}");

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
    let before = snapshot(&acct.conf).await;
    let e = cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string().contains("reports") && e.to_string().contains(&fx.file_system_id),
        "{e}"
    );
    assert_eq!(before, snapshot(&acct.conf).await, "nothing was deleted");
}

#[tokio::test]
async fn refuses_a_group_referenced_by_an_unrelated_rule_and_revokes_nfs_only_ones() {
    let acct = account().await;
    let (a, fx, t) = cut_over(&acct).await;
    let ec2 = aws_sdk_ec2::Client::new(&acct.conf);
    let pair = aws_sdk_ec2::types::UserIdGroupPair::builder()
        .group_id(&fx.nfs_sg)
        .build();
    let perm = |port: i32| {
        aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .user_id_group_pairs(pair.clone())
            .build()
    };
    ec2.authorize_security_group_egress()
        .group_id(&fx.task_sg)
        .ip_permissions(perm(2049))
        .send()
        .await
        .unwrap();
    let bastion = ec2
        .create_security_group()
        .group_name("bastion")
        .description("b")
        .vpc_id(&fx.vpc_id)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    ec2.authorize_security_group_ingress()
        .group_id(&bastion)
        .ip_permissions(perm(22))
        .send()
        .await
        .unwrap();
    let before = snapshot(&acct.conf).await;
    let e = cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&bastion), "{e}");
    assert_eq!(
        before,
        snapshot(&acct.conf).await,
        "the guard runs before any deletion"
    );

    ec2.revoke_security_group_ingress()
        .group_id(&bastion)
        .ip_permissions(perm(22))
        .send()
        .await
        .unwrap();
    let r = cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap();
    assert!(
        r.deleted
            .iter()
            .any(|d| d.starts_with(&format!("rule {}", fx.task_sg))),
        "{r:?}"
    );
    let after = snapshot(&acct.conf).await;
    assert!(!after["security_groups"].to_string().contains(&fx.nfs_sg));
    assert!(after["security_groups"].to_string().contains(&bastion));
}

#[tokio::test]
async fn retries_file_system_in_use_and_dependency_violation() {
    let acct = account().await;
    let (_, fx, t) = cut_over(&acct).await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_efs_error(
        &format!("DELETE /2015-02-01/file-systems/{}", fx.file_system_id),
        2,
        409,
        "FileSystemInUse",
    );
    proxy.inject_ec2_error("Action=DeleteSecurityGroup", 3, "DependencyViolation");
    let conf = acct.conf.to_builder().endpoint_url(&proxy.url).build();
    let a = Aws::from_conf(&conf, "us-east-1".into());
    let r = cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap();
    assert_eq!(
        proxy.count(&format!(
            "DELETE /2015-02-01/file-systems/{}",
            fx.file_system_id
        )),
        3
    );
    assert_eq!(proxy.count("Action=DeleteSecurityGroup"), 4);
    assert!(
        r.retries.iter().any(|x| x.contains("retried 3 time")),
        "{r:?}"
    );
    assert_eq!(
        snapshot(&acct.conf).await["file_systems"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn gives_up_with_a_clear_error_when_aws_never_lets_go() {
    let acct = account().await;
    let (_, fx, t) = cut_over(&acct).await;
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_ec2_error("Action=DeleteSecurityGroup", 1000, "DependencyViolation");
    let conf = acct.conf.to_builder().endpoint_url(&proxy.url).build();
    let a = Aws::from_conf(&conf, "us-east-1".into());
    let opts = CleanupOptions {
        timeout: Duration::from_secs(2),
        first_backoff: Duration::from_millis(100),
    };
    let e = cleanup::run(&a, &t, true, &opts, &Cancel::new())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&fx.nfs_sg) && msg.contains("DependencyViolation") && msg.contains("resume"),
        "{msg}"
    );
    // The EFS part finished; the group is still there for the next run.
    let s = snapshot(&acct.conf).await;
    assert_eq!(s["file_systems"], serde_json::json!([]));
    assert!(s["security_groups"].to_string().contains(&fx.nfs_sg));
    let direct = Aws::from_conf(&acct.conf, "us-east-1".into());
    cleanup::run(&direct, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap();
    assert!(
        !snapshot(&acct.conf).await["security_groups"]
            .to_string()
            .contains(&fx.nfs_sg)
    );
}

#[tokio::test]
async fn a_rerun_after_a_crash_mid_cleanup_finishes_the_job() {
    let acct = account().await;
    let (a, fx, t) = cut_over(&acct).await;
    // As if a previous run died after the access point and one mount target.
    let efs = aws_sdk_efs::Client::new(&acct.conf);
    efs.delete_access_point()
        .access_point_id(&fx.access_point_id)
        .send()
        .await
        .unwrap();
    efs.delete_mount_target()
        .mount_target_id(&fx.mount_targets[0])
        .send()
        .await
        .unwrap();
    cleanup::run(&a, &t, true, &fast(), &Cancel::new())
        .await
        .unwrap();
    let s = snapshot(&acct.conf).await;
    assert_eq!(s["file_systems"], serde_json::json!([]));
    assert!(!s["security_groups"].to_string().contains(&fx.nfs_sg));
}
