//! The demo's helper: builds the seed's "before" world in moto (from AWS_ENDPOINT_URL) and
//! seeds the source Mongo, or shows the world as it stands.
//!
//!   demo_world build PREFIX SOURCE_URI        prints `export` lines naming what it made
//!   demo_world show CLUSTER SERVICE VPC SOURCE_URI TARGET_URI

#[path = "../tests/support/world.rs"]
mod world;

use aws_sdk_ec2::types::Filter;
use mongodb::bson::Document;

async fn counts(uri: &str) -> Vec<String> {
    let Ok(c) = mongodb::Client::with_uri_str(uri).await else {
        return vec!["(unreachable)".into()];
    };
    let mut out = Vec::new();
    for db in c.list_database_names().await.unwrap_or_default() {
        if ["admin", "local", "config"].contains(&db.as_str()) {
            continue;
        }
        for coll in c
            .database(&db)
            .list_collection_names()
            .await
            .unwrap_or_default()
        {
            let n = c
                .database(&db)
                .collection::<Document>(&coll)
                .count_documents(Document::new())
                .await
                .unwrap_or(0);
            out.push(format!("{db}.{coll}={n}"));
        }
    }
    out.sort();
    if out.is_empty() {
        out.push("(empty)".into());
    }
    out
}

async fn show(
    conf: &aws_config::SdkConfig,
    cluster: &str,
    service: &str,
    vpc: &str,
    source: &str,
    target: &str,
) {
    let ecs = aws_sdk_ecs::Client::new(conf);
    let svc = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .expect("describe service");
    let td_arn = svc
        .services()
        .first()
        .and_then(|s| s.task_definition.clone())
        .unwrap_or_default();
    println!(
        "service {service}: task definition {}",
        td_arn.rsplit('/').next().unwrap_or("")
    );
    if let Ok(td) = ecs
        .describe_task_definition()
        .task_definition(&td_arn)
        .send()
        .await
        && let Some(td) = td.task_definition
    {
        for c in td.container_definitions() {
            let env: Vec<String> = c
                .environment()
                .iter()
                .filter(|e| e.name.as_deref().is_some_and(|n| n.contains("MONGO")))
                .map(|e| {
                    let n = e.name.clone().unwrap_or_default();
                    let v = if n.contains("PASSWORD") {
                        "****".to_string()
                    } else {
                        e.value.clone().unwrap_or_default()
                    };
                    format!("{n}={v}")
                })
                .collect();
            let secrets: Vec<String> = c
                .secrets()
                .iter()
                .map(|s| {
                    format!(
                        "{} <- {}",
                        s.name,
                        s.value_from.rsplit(':').nth(2).unwrap_or("")
                    )
                })
                .collect();
            println!(
                "  container {:<10} {:<36} env [{}] secrets [{}]",
                c.name.as_deref().unwrap_or(""),
                c.image.as_deref().unwrap_or(""),
                env.join(" "),
                secrets.join(" ")
            );
        }
        let vols: Vec<String> = td
            .volumes()
            .iter()
            .map(|v| v.name.clone().unwrap_or_default())
            .collect();
        println!("  volumes [{}]", vols.join(", "));
    }
    let efs = aws_sdk_efs::Client::new(conf);
    let fss = efs.describe_file_systems().send().await.expect("efs");
    let ids: Vec<String> = fss
        .file_systems()
        .iter()
        .map(|f| f.file_system_id.clone())
        .collect();
    println!("EFS file systems: [{}]", ids.join(", "));
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let sgs = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .expect("sgs");
    let names: Vec<String> = sgs
        .security_groups()
        .iter()
        .map(|g| {
            format!(
                "{} ({})",
                g.group_name.clone().unwrap_or_default(),
                g.group_id.clone().unwrap_or_default()
            )
        })
        .collect();
    println!("security groups: [{}]", names.join(", "));
    let sm = aws_sdk_secretsmanager::Client::new(conf);
    let secrets: Vec<String> = sm
        .list_secrets()
        .send()
        .await
        .map(|o| {
            o.secret_list()
                .iter()
                .filter_map(|s| s.name.clone())
                .collect()
        })
        .unwrap_or_default();
    println!("secrets: [{}]", secrets.join(", "));
    println!("source documents: {}", counts(source).await.join(" "));
    println!("target documents: {}", counts(target).await.join(" "));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    match args.first().map(String::as_str) {
        Some("build") if args.len() == 3 => {
            let fx = world::build(&conf, &args[1]).await;
            world::seed_mongo(&args[2]).await;
            // moto only reports running == desired once desiredCount has been set.
            aws_sdk_ecs::Client::new(&conf)
                .update_service()
                .cluster(&fx.cluster)
                .service(&fx.service)
                .desired_count(1)
                .send()
                .await
                .expect("service");
            println!("export DEMO_CLUSTER={}", fx.cluster);
            println!("export DEMO_SERVICE={}", fx.service);
            println!("export DEMO_FS={}", fx.file_system_id);
            println!("export DEMO_NFS_SG={}", fx.nfs_sg);
            println!("export DEMO_TASK_SG={}", fx.task_sg);
            println!("export DEMO_VPC={}", fx.vpc_id);
        }
        Some("show") if args.len() == 6 => {
            show(&conf, &args[1], &args[2], &args[3], &args[4], &args[5]).await
        }
        _ => {
            eprintln!(
                "usage: demo_world build PREFIX SOURCE_URI | show CLUSTER SERVICE VPC SOURCE_URI TARGET_URI"
            );
            std::process::exit(2);
        }
    }
}
