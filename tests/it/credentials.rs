//! The app's credentials must be usable by the app (issue 23, item 5): a password holding
//! characters URIs reserve reaches the app percent-encoded inside a connection string it is
//! given, as it is where the app gets it bare, and the plan warns where the app may not cope.
//! Checked the only way that counts: connecting to the real target with what the app gets.

use mongodb::bson::{Document, doc};

use crate::common::Cmd;
use crate::migrate::setup;
use crate::mongod::ca_file;

/// An Atlas user's password with every character a URI reserves, and `%`.
const RESERVED_PASSWORD: &str = "p@ss:w/rd?#[x]%41";

/// The target's URI for `app_user` as Atlas would show it (password percent-encoded).
fn atlas_uri_for(port: u16) -> String {
    format!(
        "mongodb://app_user:{}@127.0.0.1:{port}/goals?authSource=admin&directConnection=true&tls=true&tlsCAFile={}",
        efs2atlas::uri::percent_encode(RESERVED_PASSWORD),
        ca_file()
    )
}

fn findings<'a>(plan: &'a serde_json::Value, code: &str) -> Vec<&'a serde_json::Value> {
    plan["plan"]["warnings"]
        .as_array()
        .or_else(|| plan["warnings"].as_array())
        .map(|w| w.iter().filter(|f| f["code"] == code).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_with_reserved_characters_reaches_the_app_in_a_uri_that_connects() {
    let s = setup(100).await;
    tokio::task::block_in_place(|| {
        s.dst
            .add_user("app_user", RESERVED_PASSWORD, &["readWriteAnyDatabase"])
    });
    let atlas = atlas_uri_for(s.dst.port());
    // The app also reads one whole connection string, built from a template.
    let template = format!(
        "MONGO_URI=mongodb://{{user}}:{{password}}@{{host}}/{{db}}?authSource=admin&directConnection=true&tls=true&tlsCAFile={}",
        ca_file()
    );
    let secrets = [
        RESERVED_PASSWORD.to_string(),
        efs2atlas::uri::percent_encode(RESERVED_PASSWORD),
    ];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    let plan = Cmd::new(&[
        "plan",
        "--cluster",
        &s.fx.cluster,
        "--service",
        &s.fx.service,
        "--env",
        &template,
        "--json",
    ])
    .envs(&s.acct.env)
    .env("EFS2ATLAS_ATLAS_URI", &atlas)
    .run();
    plan.assert_no_secret(&secrets);
    let p = plan.json();
    let warned = findings(&p, "password-reserved-characters");
    assert_eq!(warned.len(), 1, "the bare password var is named: {p:#}");
    assert!(
        warned[0]["resource"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/MONGODB_PASSWORD"),
        "{p:#}"
    );

    let mut args = s.args();
    args.extend(["--env", &template, "--yes", "--json"].map(String::from));
    let r = s.cmd(&args).env("EFS2ATLAS_ATLAS_URI", &atlas).run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.assert_no_secret(&secrets);
    let v = Cmd::verify(&s.src.uri(), &s.dst.uri()).run();
    assert_eq!(v.code, 0, "{}", v.stdout);
    // Both credential-bearing vars come from the secret, none from plain env.
    let ecs = aws_sdk_ecs::Client::new(&s.acct.conf);
    let svc = ecs
        .describe_services()
        .cluster(&s.fx.cluster)
        .services(&s.fx.service)
        .send()
        .await
        .unwrap();
    let td = ecs
        .describe_task_definition()
        .task_definition(svc.services()[0].task_definition().unwrap())
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let backend = &td.container_definitions()[0];
    let mut from_secret: Vec<&str> = backend.secrets().iter().map(|x| x.name()).collect();
    from_secret.sort();
    assert_eq!(from_secret, ["MONGODB_PASSWORD", "MONGO_URI"]);

    // What the app is given: read from Secrets Manager as ECS would, then used as the app would.
    let stored = s.app_secret().await;
    assert_eq!(
        stored["MONGODB_PASSWORD"], RESERVED_PASSWORD,
        "a bare password var gets the password itself"
    );
    let uri = stored["MONGO_URI"].as_str().unwrap();
    assert!(!uri.contains(RESERVED_PASSWORD), "encoded inside the URI");
    let app = mongodb::Client::with_uri_str(uri).await.unwrap();
    let goals = app
        .database("goals")
        .collection::<Document>("goals")
        .count_documents(doc! {})
        .await
        .expect("the app connects with the URI it is given");
    assert_eq!(goals, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srv_name_in_a_host_only_var_is_a_plan_warning() {
    let s = setup(0).await;
    let plan = Cmd::new(&[
        "plan",
        "--cluster",
        &s.fx.cluster,
        "--service",
        &s.fx.service,
        "--json",
    ])
    .envs(&s.acct.env)
    .env("EFS2ATLAS_ATLAS_URI", crate::common::atlas_uri())
    .run();
    let p = plan.json();
    let warned = findings(&p, "srv-host");
    assert_eq!(warned.len(), 1, "{p:#}");
    let msg = warned[0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("MONGODB_URL") && msg.contains("mongodb+srv://") && msg.contains("{uri}"),
        "{msg}"
    );
    assert!(
        findings(&p, "password-reserved-characters").is_empty(),
        "a plain password is no warning: {p:#}"
    );
}
