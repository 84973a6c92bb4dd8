//! The Atlas side through the Admin API (`--atlas-project`/`--atlas-cluster`), against the
//! stand-in (`support/atlasapi.rs`): `plan` reads the cluster, its tier, the access list and
//! the users, and weighs them against the source and the service's egress (moto's NAT
//! gateways and route tables); sign-in by service account and by API key (digest); Atlas's
//! errors as one sentence; 429 waited out.

use serde_json::Value;

use crate::atlasapi::{AtlasApi, CLIENT_SECRET, PRIVATE_KEY, PROJECT, m0};
use crate::common::{ATLAS_PASSWORD, Account, Run, account, atlas_uri};
use crate::mongod::Mongod;
use crate::world::{self, Fixture, OLD_MONGO_PASSWORD};

const SRV: &str = "mongodb+srv://c0.ab1cd.mongodb.net";

fn plan(acct: &Account, fx: &Fixture, api: &[(&'static str, String)], extra: &[&str]) -> Run {
    plan_of("c0", acct, fx, api, extra)
}

/// `COMMAND --cluster C --service S --atlas-project P --atlas-cluster CLUSTER EXTRA...`.
fn run_on(
    acct: &Account,
    fx: &Fixture,
    (command, cluster): (&str, &str),
    api: &[(&'static str, String)],
    extra: &[&str],
) -> Run {
    let mut args = vec![
        command,
        "--cluster",
        &fx.cluster,
        "--service",
        &fx.service,
        "--atlas-project",
        PROJECT,
        "--atlas-cluster",
        cluster,
    ];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = api.iter().map(|(k, v)| (*k, v.as_str())).collect();
    acct.run_env(&args, &env)
}

fn plan_of(
    cluster: &str,
    acct: &Account,
    fx: &Fixture,
    api: &[(&'static str, String)],
    extra: &[&str],
) -> Run {
    let mut extra = extra.to_vec();
    extra.push("--json");
    let r = run_on(acct, fx, ("plan", cluster), api, &extra);
    r.assert_no_secret(&[
        ATLAS_PASSWORD,
        OLD_MONGO_PASSWORD,
        CLIENT_SECRET,
        PRIVATE_KEY,
    ]);
    r
}

fn codes(v: &Value, kind: &str) -> Vec<String> {
    v["plan"][kind]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|f| f["code"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Routes the fixture's subnets through a NAT gateway with an Elastic IP; returns its address.
pub(crate) async fn nat(acct: &Account, fx: &Fixture) -> String {
    let ec2 = aws_sdk_ec2::Client::new(&acct.conf);
    let eip = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .unwrap();
    let gw = ec2
        .create_nat_gateway()
        .subnet_id(&fx.subnets[0])
        .allocation_id(eip.allocation_id().unwrap())
        .send()
        .await
        .unwrap();
    let gw_id = gw
        .nat_gateway()
        .unwrap()
        .nat_gateway_id()
        .unwrap()
        .to_string();
    let rt = ec2
        .create_route_table()
        .vpc_id(&fx.vpc_id)
        .send()
        .await
        .unwrap();
    let rt_id = rt
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_string();
    ec2.create_route()
        .route_table_id(&rt_id)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&gw_id)
        .send()
        .await
        .unwrap();
    for s in &fx.subnets {
        ec2.associate_route_table()
            .route_table_id(&rt_id)
            .subnet_id(s)
            .send()
            .await
            .unwrap();
    }
    eip.public_ip().unwrap().to_string()
}

/// The plan reads the Atlas side and names what is missing, each with its fix; once Atlas
/// has it, the same plan is ready. Signed in by service account, then by API key (digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_the_atlas_side_and_names_what_is_missing() {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "atl").await;
    let src = crate::common::off_runtime(Mongod::source);
    world::seed_mongo(&src.uri()).await;
    let long_db = "a_database_name_longer_than_atlas_allows_x";
    let c = mongodb::Client::with_uri_str(src.uri()).await.unwrap();
    c.database(long_db)
        .collection::<mongodb::bson::Document>("c")
        .insert_one(mongodb::bson::doc! {"a": 1})
        .await
        .unwrap();
    let ip = nat(&acct, &fx).await;
    let api = AtlasApi::start().await;
    api.state(|s| {
        s.clusters.insert("c0".into(), m0("c0", SRV));
        s.throttle = 2;
    });
    let uri = atlas_uri();
    let with_uri = ["--atlas-uri", uri.as_str(), "--source-uri"];
    let mut extra: Vec<&str> = with_uri.to_vec();
    let src_uri = src.uri();
    extra.push(&src_uri);
    let r = plan(&acct, &fx, &api.env(), &extra);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    let blockers = codes(&v, "blockers");
    for want in [
        "atlas-access-list",
        "atlas-user-missing",
        "atlas-database-name-too-long",
    ] {
        assert!(blockers.contains(&want.to_string()), "{want}: {blockers:?}");
    }
    let text = v["plan"]["blockers"].to_string();
    assert!(
        text.contains(&format!("add {ip}/32")) && text.contains("app_user"),
        "{text}"
    );
    assert_eq!(v["world"]["atlas"]["cluster"]["tier"], "M0", "{v:#}");
    assert_eq!(v["world"]["egress"]["nat_ips"][0], ip.as_str());
    // Throttled twice (429, Retry-After: 1), then answered: the plan waited, it did not fail.
    let gets = api.state(|s| s.log.iter().filter(|l| l.contains("/clusters/c0")).count());
    assert!(gets >= 2, "{gets}");

    // Atlas gets the entry and the user; the long-named database goes: ready.
    api.state(|s| {
        s.access
            .push(serde_json::json!({"cidrBlock": format!("{ip}/32"), "comment": "nat"}));
        s.users.push(
            serde_json::json!({"username": "app_user", "databaseName": "admin",
            "roles": [{"roleName": "readWrite", "databaseName": "goals"}]}),
        );
    });
    c.database(long_db).drop().await.unwrap();
    let r = plan(&acct, &fx, &api.key_env(), &extra);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["plan"]["ready"], true);
    let digest = api.state(|s| s.log.len());
    assert!(digest > gets, "the API key signed in by digest");
}

/// Without --atlas-uri the app's connection string is the cluster's, for the app user; a
/// Flex cluster is read where Atlas serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_without_an_atlas_uri_takes_the_cluster_s_connection_string() {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "atf").await;
    let api = AtlasApi::start().await;
    let mut flex = m0("c0", SRV);
    flex.as_object_mut().unwrap().remove("replicationSpecs");
    api.state(|s| {
        s.flex.insert("c0".into(), flex);
        s.access.push(serde_json::json!({"cidrBlock": "0.0.0.0/0"}));
        s.users
            .push(serde_json::json!({"username": fx.service, "databaseName": "admin"}));
    });
    // Without the source the app's databases (its user's roles) cannot be named.
    let r = plan(&acct, &fx, &api.env(), &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(codes(&r.json(), "blockers"), ["atlas-app-database-unknown"]);
    let src = crate::common::off_runtime(Mongod::source);
    world::seed_mongo(&src.uri()).await;
    let r = plan(&acct, &fx, &api.env(), &["--source-uri", &src.uri()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["world"]["atlas"]["cluster"]["tier"], "FLEX");
    // What migrate would make, by name: the app's user and roles, the temporary user.
    let made = &v["plan"]["atlas"];
    assert_eq!(made["app_user"], fx.service.as_str(), "{made}");
    assert_eq!(made["app_user_exists"], true);
    assert!(
        made["app_roles"].to_string().contains("readWrite@goals"),
        "{made}"
    );
    assert_eq!(
        made["migration_user"],
        format!("efs2atlas-migration-{}", fx.service)
    );
    let steps = v["plan"]["steps"].to_string();
    assert!(
        steps.contains("atlas-access") && steps.contains("atlas-release"),
        "{steps}"
    );
    // The text plan says the same to a person.
    let t = run_on(
        &acct,
        &fx,
        ("plan", "c0"),
        &api.env(),
        &["--source-uri", &src.uri()],
    );
    assert_eq!(t.code, 0, "{}", t.stderr);
    let makes = format!(
        "migrate makes: user {} (readWrite@analytics, readWrite@goals)",
        fx.service
    );
    for want in [
        "cluster c0: FLEX (MongoDB 8.0.4), IDLE",
        "tier limits: 5.0 GiB of data and indexes, 500 operations/s",
        "access list: 0.0.0.0/0",
        "public IPs of their own",
        makes.as_str(),
    ] {
        assert!(t.stdout.contains(want), "{want}: {}", t.stdout);
    }
    let text = v["plan"]["env_mapping"].to_string();
    assert!(
        text.contains("c0.ab1cd.mongodb.net") && text.contains(&fx.service),
        "{text}"
    );
    // The fixture's tasks have public IPs: the open access list is a warning, not a blocker.
    assert!(codes(&v, "warnings").contains(&"atlas-access-list-open".to_string()));
}

/// Atlas's refusals are one sentence naming the call, what Atlas said and the fix; migrate
/// without credentials says which to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atlas_errors_are_one_sentence_with_the_fix() {
    let acct = account().await;
    let fx = world::steady(&acct.conf, "ate").await;
    let api = AtlasApi::start().await;
    api.state(|s| drop(s.clusters.insert("c0".into(), m0("c0", SRV))));
    let mut wrong = api.env();
    wrong[2].1 = "not-the-secret".into();
    let r = plan(&acct, &fx, &wrong, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Atlas did not accept the service account")
            && r.stderr.contains("EFS2ATLAS_ATLAS_CLIENT_SECRET")
            && !r.stderr.contains("not-the-secret"),
        "{}",
        r.stderr
    );
    let r = plan_of("nope", &acct, &fx, &api.env(), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no cluster named 'nope'"), "{}", r.stderr);
    let r = plan(&acct, &fx, &[], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("EFS2ATLAS_ATLAS_CLIENT_ID") && r.stderr.contains("Project Owner"),
        "{}",
        r.stderr
    );
    let r = run_on(
        &acct,
        &fx,
        ("migrate", "c0"),
        &[("EFS2ATLAS_ATLAS_API_URL", api.url.clone())],
        &["--source-uri", "mongodb://127.0.0.1:1", "--yes"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("EFS2ATLAS_ATLAS_CLIENT_ID") && r.stderr.contains("--atlas-project"),
        "{}",
        r.stderr
    );
}
