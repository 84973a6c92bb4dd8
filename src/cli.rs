//! The command line (clap derive). Flag names are a public interface: never rename them.

use clap::{Args, Parser, Subcommand};

use crate::plan::CredentialMode;

/// Move an app's MongoDB from a container on ECS (data on EFS) to MongoDB Atlas, safely.
#[derive(Debug, Parser)]
#[command(name = "efs2atlas", version, about, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// AWS region (default: the standard chain: AWS_REGION, profile, ...).
    #[arg(long, global = true, value_name = "R")]
    pub region: Option<String>,
    /// AWS named profile (default: AWS_PROFILE or "default").
    #[arg(long, global = true, value_name = "P")]
    pub profile: Option<String>,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never draw progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a migration would do; changes nothing.
    Plan(PlanArgs),
}

/// Which service to migrate and where to.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// ECS cluster name or ARN.
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// ECS service name or ARN.
    #[arg(long, value_name = "S")]
    pub service: String,
    /// Atlas connection string (mongodb+srv://user:password@host/db). Prefer the env var so the
    /// password stays out of shell history.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_ATLAS_URI",
        hide_env_values = true
    )]
    pub atlas_uri: String,
    /// How efs2atlas reaches the source Mongo (e.g. through a tunnel: mongodb://127.0.0.1:27017).
    #[arg(long, value_name = "URI")]
    pub source_uri: Option<String>,
    /// The container that runs MongoDB (default: the one whose image is mongo/mongodb).
    #[arg(long, value_name = "NAME")]
    pub mongo_container: Option<String>,
    /// Set an app env var from the Atlas URI: NAME=TEMPLATE with {uri} {user} {password} {host} {db}.
    #[arg(long = "env", value_name = "NAME=TEMPLATE")]
    pub env: Vec<String>,
    /// Swap a container's image in the new revision (CONTAINER=IMAGE).
    #[arg(long = "image", value_name = "CONTAINER=IMAGE")]
    pub image: Vec<String>,
    /// Where the Atlas credentials go.
    #[arg(long, value_enum, default_value_t = CredentialMode::SecretsManager)]
    pub credentials: CredentialMode,
    /// Keep the EFS file system and its security group (skip cleanup).
    #[arg(long)]
    pub keep_efs: bool,
}

/// `efs2atlas plan`.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// What to migrate.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}
