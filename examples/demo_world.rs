//! Builds the seed's "before" world in moto (from AWS_ENDPOINT_URL) and seeds the source Mongo.
//!
//! Usage: demo_world PREFIX SOURCE_URI — prints `export` lines naming what it made.

#[path = "../tests/support/world.rs"]
mod world;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let prefix = args.next().unwrap_or_else(|| "goals".into());
    let source = args.next();
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let fx = world::build(&conf, &prefix).await;
    if let Some(uri) = source {
        world::seed_mongo(&uri).await;
    }
    println!("export DEMO_CLUSTER={}", fx.cluster);
    println!("export DEMO_SERVICE={}", fx.service);
    println!("export DEMO_FAMILY={}", fx.family);
    println!("export DEMO_FS={}", fx.file_system_id);
    println!("export DEMO_NFS_SG={}", fx.nfs_sg);
    println!("export DEMO_TASK_SG={}", fx.task_sg);
    println!("export DEMO_VPC={}", fx.vpc_id);
}
