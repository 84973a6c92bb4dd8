//! `migrate` making the Atlas side itself (`--atlas-project`, no `--atlas-uri`), against the
//! Admin API stand-in, which applies user changes to the real target mongod as Atlas applies
//! them to its cluster: the app's user with a generated password that only the Secrets
//! Manager secret holds, a temporary user efs2atlas writes as, the NAT address and this
//! machine's temporary entry; everything temporary gone at the end; kill -9 then resume; a
//! credential without the role; a failed cutover (ECS rolls back) undoes it.

use std::sync::Arc;

use mongodb::bson::{Document, doc};

use crate::atlasapi::{AtlasApi, CALLER_IP, PROJECT, UserChange, m0};
use crate::common::Cmd;
use crate::migrate::{Setup, secrets, setup, wait_for};

const SRV: &str = "mongodb+srv://c0.ab1cd.mongodb.net";

/// The stand-in with an M0 cluster `c0`, applying user changes to the setup's target.
async fn api_for(s: &Setup) -> AtlasApi {
    let api = AtlasApi::start().await;
    api.state(|st| drop(st.clusters.insert("c0".into(), m0("c0", SRV))));
    let admin = s.dst.admin_uri();
    api.on_users(Arc::new(move |c| {
        let admin = admin.clone();
        Box::pin(async move { apply(&admin, c).await })
    }));
    api
}

/// What Atlas does on its cluster when a user is made, changed or deleted.
async fn apply(admin: &str, c: UserChange) {
    let client = crate::mongod::client(admin).await;
    let db = client.database("admin");
    match c {
        UserChange::Put(name, password, roles) => {
            let _ = db.run_command(doc! {"dropUser": &name}).await;
            let roles: Vec<Document> = roles
                .iter()
                .map(|(r, d)| doc! {"role": r, "db": d})
                .collect();
            db.run_command(doc! {"createUser": &name, "pwd": &password, "roles": roles})
                .await
                .expect("createUser on the target");
        }
        UserChange::Delete(name) => {
            let _ = db.run_command(doc! {"dropUser": &name}).await;
        }
    }
}

/// The migrate arguments: no --atlas-uri, and a --target-uri with no user (efs2atlas signs
/// in as the temporary user it makes).
fn args(s: &Setup) -> Vec<String> {
    let target = format!(
        "mongodb://127.0.0.1:{}/?directConnection=true&tls=true&tlsCAFile={}",
        s.link.port,
        crate::mongod::ca_file()
    );
    [
        "migrate",
        "--cluster",
        &s.fx.cluster,
        "--service",
        &s.fx.service,
        "--source-uri",
        &s.src.uri(),
        "--target-uri",
        &target,
        "--journal",
        &s.journal(),
        "--deploy-timeout",
        "20s",
        "--atlas-project",
        PROJECT,
        "--atlas-cluster",
        "c0",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn cmd(s: &Setup, api: &AtlasApi, extra: &[&str]) -> Cmd {
    let mut a = args(s);
    a.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut c = Cmd::new(&a)
        .envs(&s.acct.env)
        .env("EFS2ATLAS_COMPRESSORS", s.wire());
    for (k, v) in api.env() {
        c = c.env(k, v);
    }
    c
}

/// The app signs in with what its secret holds (on the real cluster: the SRV name cannot
/// resolve here) and reads its data.
async fn app_can_read(s: &Setup, password: &str) -> u64 {
    let uri = format!(
        "mongodb://goals-service:{password}@127.0.0.1:{}/goals?authSource=admin&directConnection=true&tls=true&tlsCAFile={}",
        s.dst.port(),
        crate::mongod::ca_file()
    );
    let app = mongodb::Client::with_uri_str(&uri).await.unwrap();
    app.database("goals")
        .collection::<Document>("goals")
        .count_documents(doc! {})
        .await
        .expect("the app's user reads its database")
}

/// After a finished migration: the app's user, its NAT entry and its secret stay; the
/// temporary user and entry are gone.
async fn assert_atlas_after(s: &Setup, api: &AtlasApi, nat_ip: &str) -> String {
    let (users, access) = api.state(|st| (st.users.clone(), st.access.clone()));
    let names: Vec<&str> = users
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(
        names,
        ["goals-service"],
        "only the app's user stays: {users:?}"
    );
    let roles = users[0]["roles"].to_string();
    assert!(
        roles.contains("readWrite") && roles.contains("goals") && !roles.contains("Any"),
        "least privilege: {roles}"
    );
    assert_eq!(users[0]["scopes"][0]["name"], "c0");
    let cidrs: Vec<&str> = access
        .iter()
        .filter_map(|e| e["cidrBlock"].as_str())
        .collect();
    assert_eq!(cidrs, [format!("{nat_ip}/32")], "{access:?}");
    assert!(
        access[0]["comment"]
            .as_str()
            .unwrap()
            .contains("goals-service")
    );
    let secret = s.app_secret().await;
    let password = secret["MONGODB_PASSWORD"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 32);
    assert!(
        !password.contains("Placeholder"),
        "the real password: {secret}"
    );
    assert!(app_can_read(s, &password).await > 0);
    password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_makes_the_atlas_side_and_the_app_s_secret_works() {
    let s = setup(0).await;
    let nat_ip = crate::atlas::nat(&s.acct, &s.fx).await;
    let api = api_for(&s).await;
    let r = cmd(&s, &api, &["--yes", "--json"]).run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.assert_no_secret(&secrets());
    // While it ran: the temporary user signed in, and this machine's address was admitted.
    let log = api.state(|st| st.log.join("\n"));
    assert!(log.contains("DELETE /api/atlas/v2/groups/"), "{log}");
    assert!(
        log.contains(&format!("accessList/{CALLER_IP}%2F32")),
        "the temporary entry was removed: {log}"
    );
    let password = assert_atlas_after(&s, &api, &nat_ip).await;
    r.assert_no_secret(&[&password]);
    let journal = std::fs::read_to_string(s.journal()).unwrap();
    assert!(!journal.contains(&password), "the journal never holds it");
    assert!(
        r.stderr.contains("atlas-access:") && r.stderr.contains("atlas-release:"),
        "{}",
        r.stderr
    );
    crate::migrate::assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_copy_then_resume_finishes_through_the_api() {
    let s = setup(40_000).await;
    s.slow_link();
    let nat_ip = crate::atlas::nat(&s.acct, &s.fx).await;
    let api = api_for(&s).await;
    let mut child = cmd(&s, &api, &["--yes"])
        .log_to(s.dir.path().join("child.log"))
        .spawn();
    wait_for(
        &s,
        "the copy to be part-way",
        |j| {
            j["copy"]["collections"]["goals.history"]["docs"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
        &mut child,
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    s.link.set(Default::default());
    let mut env: Vec<(&str, String)> = api.env();
    env.push(("EFS2ATLAS_SOURCE_URI", s.src.uri()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = s.acct.run_env(
        &["resume", "--journal", &s.journal(), "--yes", "--json"],
        &env,
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.assert_no_secret(&secrets());
    assert_atlas_after(&s, &api, &nat_ip).await;
    crate::migrate::assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_without_the_role_is_one_sentence_and_a_failed_cutover_undoes_it_all() {
    let s = setup(0).await;
    crate::atlas::nat(&s.acct, &s.fx).await;
    let api = api_for(&s).await;
    api.state(|st| st.may_write = false);
    let r = cmd(&s, &api, &["--yes"]).run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("lacks a role on project")
            && r.stderr.contains("Project Database Access Admin")
            && r.stderr.contains("USER_UNAUTHORIZED"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("preflight:"),
        "nothing reached Atlas: {}",
        r.stderr
    );

    // With the role, a cutover that fails (the service never gets steady, ECS rolls back)
    // removes from Atlas everything the run made.
    api.state(|st| st.may_write = true);
    let proxy = crate::migrate::never_steady(&s).await;
    let mut env: Vec<(&str, String)> = api.env();
    env.push(("EFS2ATLAS_SOURCE_URI", s.src.uri()));
    env.push(("AWS_ENDPOINT_URL", proxy.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = s
        .acct
        .run_env(&["resume", "--journal", &s.journal(), "--yes"], &env);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("removed from Atlas what this migration made"),
        "{}",
        r.stderr
    );
    let left = api.state(|st| (st.users.clone(), st.access.clone()));
    assert!(
        left.0.is_empty() && left.1.is_empty(),
        "{left:?}\n{}",
        r.stderr
    );
}
