//! The command line: clap structs (flag names are a public interface: never rename them),
//! turned into the engine's plain options here. This layer is the only one that reads the
//! terminal ([`term`]) and prints ([`render`]).

mod examples;
pub mod render;
pub mod run;
pub mod stage;
pub mod style;
pub mod term;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::engine::options::{Choice, CredentialMode, FreezeMode, Strategy};
use crate::secret::Secret;

/// Wraps a flag's value as a secret the moment clap reads it (it is parsed, with errors
/// that never quote it, right after).
fn secret_arg(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}

/// A parser for a kebab-case choice whose names and meanings come from the engine.
fn choice<T>(choices: &'static [Choice<T>]) -> impl TypedValueParser<Value = T>
where
    T: Copy + Send + Sync + 'static + std::str::FromStr<Err = crate::error::Error>,
{
    let values = choices
        .iter()
        .map(|(n, _, help)| PossibleValue::new(n).help(help));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}

/// Move an app's MongoDB from a container on ECS (data on EFS) to MongoDB Atlas, safely.
#[derive(Debug, Parser)]
#[command(
    name = "efs2atlas",
    version,
    about,
    propagate_version = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  export EFS2ATLAS_ATLAS_URI='mongodb+srv://app:PASSWORD@cluster0.xxxxx.mongodb.net/goals'
  export EFS2ATLAS_SOURCE_URI='mongodb://root:PASSWORD@127.0.0.1:27017/?authSource=admin'
  efs2atlas plan    --cluster goals-cluster --service goals-service --target-uri \"$EFS2ATLAS_ATLAS_URI\"
  efs2atlas migrate --cluster goals-cluster --service goals-service
  efs2atlas status
  efs2atlas resume
  efs2atlas completions bash > /etc/bash_completion.d/efs2atlas

Exit codes: 0 done, 1 failed, 2 usage error, 3 refused by a safety guard, 4 verification found
differences, 5 interrupted (`efs2atlas resume` continues).";

/// The AWS flags' help heading; they are listed only on the commands that call AWS.
pub const AWS_HEADING: &str = "AWS";

/// The heading of the flags every command takes (output, colour), apart from each command's
/// own options.
pub const GLOBAL_HEADING: &str = "Global options";

/// Commands that never call AWS: the AWS flags are accepted (they are global) but not listed.
pub const NO_AWS: &[&str] = &[
    "copy",
    "verify",
    "sync",
    "status",
    "completions",
    "man",
    "runner",
];

/// The AWS flags' ids.
pub const AWS_FLAGS: &[&str] = &["region", "profile", "aws_timeout"];

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// AWS region (default: the standard chain: AWS_REGION, profile, ...).
    #[arg(long, global = true, value_name = "R", help_heading = AWS_HEADING)]
    pub region: Option<String>,
    /// AWS named profile (default: AWS_PROFILE or "default").
    #[arg(long, global = true, value_name = "P", help_heading = AWS_HEADING)]
    pub profile: Option<String>,
    /// Give up on one attempt of an AWS call after this long (it is then retried, up to 6
    /// attempts in all).
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, help_heading = AWS_HEADING)]
    pub aws_timeout: std::time::Duration,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL_HEADING)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, help_heading = GLOBAL_HEADING)]
    pub quiet: bool,
    /// Never draw progress bars.
    #[arg(long, global = true, help_heading = GLOBAL_HEADING)]
    pub no_progress: bool,
    /// Colour on stderr: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"], help_heading = GLOBAL_HEADING)]
    pub color: String,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a migration would do; changes nothing.
    #[command(after_help = examples::PLAN)]
    Plan(PlanArgs),
    /// Run the whole migration: copy, verify, cut over, clean up.
    #[command(after_help = examples::MIGRATE)]
    Migrate(MigrateArgs),
    /// Continue an interrupted migration from its journal.
    #[command(after_help = examples::RESUME)]
    Resume(ResumeArgs),
    /// Show where a migration (or copy) stands, from its journal.
    #[command(after_help = examples::STATUS)]
    Status(StatusArgs),
    /// Copy databases from one MongoDB to another: exact, streamed, parallel, resumable.
    #[command(after_help = examples::COPY)]
    Copy(CopyArgs),
    /// Compare source and target: counts, document hashes, indexes, options.
    #[command(after_help = examples::VERIFY)]
    Verify(VerifyArgs),
    /// Make the target equal to the source, writing only what differs (run it with writes frozen).
    #[command(after_help = examples::SYNC)]
    Sync(SyncArgs),
    /// Return the service to the revision that still had the mongo container (while its EFS exists).
    #[command(after_help = examples::ROLLBACK)]
    Rollback(RollbackArgs),
    /// Print a shell completion script (e.g. `efs2atlas completions bash > /etc/bash_completion.d/efs2atlas`).
    #[command(after_help = examples::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `efs2atlas man > efs2atlas.1 && man ./efs2atlas.1`.
    #[command(after_help = examples::MAN)]
    Man,
    /// The data steps inside a runner task (started by `--runner ecs`, not by hand).
    #[command(hide = true)]
    Runner,
}

/// `efs2atlas completions`.
#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The command line as clap sees it, with the AWS flags unlisted on the commands that never
/// call AWS: those get hidden copies of them (clap then does not propagate the listed global
/// ones there), so the flags stay accepted everywhere, as global flags.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let aws: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| AWS_FLAGS.contains(&a.get_id().as_str()))
        .cloned()
        .collect();
    for sub in NO_AWS {
        cmd = cmd.mut_subcommand(sub, |mut sc| {
            for a in &aws {
                sc = sc.arg(a.clone().hide(true));
            }
            sc
        });
    }
    cmd
}

/// Parses the process's arguments, with the flags a `--stage` supplies (exits with a usage
/// error naming the problem when the command line or the stage file is wrong).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let cmd = command();
    let (args, applied) = match stage::apply(&cmd, std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(crate::error::exit::USAGE);
        }
    };
    let matches = cmd.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(a) = applied
        && !cli.global.quiet
    {
        let from = if a.keys.is_empty() {
            "nothing (the command line gave it all)".to_string()
        } else {
            a.keys.join(", ")
        };
        eprintln!(
            "Stage {} from {}: {from}; flags on the command line override it.",
            a.name,
            a.file.display()
        );
    }
    cli
}

/// `--stage` and the file it is read from (plan, migrate, resume, status).
#[derive(Debug, Args, Clone)]
pub struct StageArgs {
    /// Take the flags not given here from [stage.NAME] of the stage file (cluster, service,
    /// atlas_uri_env, ...; see the README, "Stages").
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// The stage file.
    #[arg(long, value_name = "PATH", env = "EFS2ATLAS_CONFIG", default_value = stage::DEFAULT_FILE)]
    pub config: std::path::PathBuf,
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
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub atlas_uri: Option<Secret>,
    /// The Atlas project id (24 hex digits): read the cluster, its tier, the IP access list and
    /// the database users through the Atlas Admin API (credentials in
    /// EFS2ATLAS_ATLAS_CLIENT_ID/_SECRET, or EFS2ATLAS_ATLAS_PUBLIC_KEY/_PRIVATE_KEY).
    #[arg(long, value_name = "ID", requires = "atlas_cluster")]
    pub atlas_project: Option<String>,
    /// The Atlas cluster's name in --atlas-project.
    #[arg(long, value_name = "NAME", requires = "atlas_project")]
    pub atlas_cluster: Option<String>,
    /// The app's database user on Atlas (default: the ECS service's name).
    #[arg(long, value_name = "NAME", requires = "atlas_project")]
    pub atlas_app_user: Option<String>,
    /// How efs2atlas reaches the source Mongo (e.g. through a tunnel: mongodb://127.0.0.1:27017).
    /// Required by `migrate`; `plan` without it does not check the source (and says so).
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_SOURCE_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub source_uri: Option<Secret>,
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
    #[arg(long, value_name = "MODE", default_value = "secrets-manager", value_parser = choice(CredentialMode::CHOICES))]
    pub credentials: CredentialMode,
    /// Keep the EFS file system and its security group (skip cleanup).
    #[arg(long)]
    pub keep_efs: bool,
    /// two-pass: bulk copy with writes live, then freeze and sync the changes (short freeze);
    /// freeze-first: freeze, then copy and verify.
    #[arg(long, value_name = "STRATEGY", default_value = "two-pass", value_parser = choice(Strategy::CHOICES))]
    pub strategy: Strategy,
    /// Where the data steps run: local (here, through --source-uri) or ecs (a one-off
    /// Fargate task next to the mongo task: no tunnel, no instance; --source-uri's credentials
    /// are used, and a loopback host means the mongo task).
    #[arg(long, value_name = "WHERE", default_value = "local", value_parser = ["local", "ecs"])]
    pub runner: String,
    /// The runner task's image (--runner ecs; no default): `scripts/image` builds it, push it
    /// to your ECR. `plan` says whether it is there.
    #[arg(long, value_name = "IMAGE", env = "EFS2ATLAS_RUNNER_IMAGE")]
    pub runner_image: Option<String>,
    /// The runner task's execution role (default: the service's).
    #[arg(long, value_name = "ARN")]
    pub runner_execution_role: Option<String>,
    /// The runner task's CPU units.
    #[arg(long, value_name = "UNITS", default_value_t = 1024)]
    pub runner_cpu: u32,
    /// The runner task's memory (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub runner_memory: u32,
    /// Compression on the wire to both servers: none, or a list of zstd, snappy, zlib (the
    /// server picks). Default: a URI's own compressors=, else zstd,snappy,zlib.
    #[arg(long, value_name = "LIST|none", env = "EFS2ATLAS_COMPRESSORS")]
    pub compressors: Option<String>,
    /// A named stage of the stage file.
    #[command(flatten)]
    pub stage: StageArgs,
}

/// `efs2atlas plan`.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// What to migrate.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where efs2atlas would write (the Atlas URI, or how you reach it): checked reachable and,
    /// with --source-uri, empty where the copy writes. Read only; without it the target is not
    /// checked.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_TARGET_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub target_uri: Option<Secret>,
    /// Plan as `migrate --drop` would: target collections that hold data are replaced.
    #[arg(long)]
    pub drop: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Source, target and which namespaces (shared by copy, verify and sync).
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// The MongoDB to read from.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_SOURCE_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub source_uri: Secret,
    /// The target MongoDB (e.g. Atlas): copied into, synced, or compared with the source.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_TARGET_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub target_uri: Secret,
    /// Only this database (repeatable; default: every database but admin/local/config).
    #[arg(long = "db", value_name = "NAME")]
    pub db: Vec<String>,
    /// Only namespaces matching DB.COLLECTION (`*` wildcards; repeatable).
    #[arg(long = "ns-include", value_name = "PAT")]
    pub ns_include: Vec<String>,
    /// Skip namespaces matching DB.COLLECTION (`*` wildcards; repeatable).
    #[arg(long = "ns-exclude", value_name = "PAT")]
    pub ns_exclude: Vec<String>,
    /// Write the one selected database under this name on the target.
    #[arg(long, value_name = "NAME")]
    pub target_db: Option<String>,
    /// Collections in flight at once.
    #[arg(short = 'j', long = "parallel", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Compression on the wire to both servers: none, or a list of zstd, snappy, zlib (the
    /// server picks). Default: a URI's own compressors=, else zstd,snappy,zlib.
    #[arg(long, value_name = "LIST|none", env = "EFS2ATLAS_COMPRESSORS")]
    pub compressors: Option<String>,
}

/// `efs2atlas copy`.
#[derive(Debug, Args, Clone)]
pub struct CopyArgs {
    /// Source, target, selection.
    #[command(flatten)]
    pub data: DataArgs,
    /// Drop target collections before copying into them (asks first unless --yes).
    #[arg(long)]
    pub drop: bool,
    /// Progress file; the same command with the same journal continues an interrupted copy.
    #[arg(
        long,
        value_name = "PATH",
        default_value = crate::commands::data::COPY_JOURNAL
    )]
    pub journal: std::path::PathBuf,
    /// Answer yes to every question (required without a terminal when a question is asked).
    #[arg(long)]
    pub yes: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `efs2atlas verify`.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// Source, target, selection.
    #[command(flatten)]
    pub data: DataArgs,
    /// How many differing _ids to list per collection.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_examples: usize,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `efs2atlas sync`.
#[derive(Debug, Args, Clone)]
pub struct SyncArgs {
    /// Source, target, selection.
    #[command(flatten)]
    pub data: DataArgs,
    /// Progress file: a sync stopped part-way skips the collections it finished when run again
    /// (removed when a sync completes). A copy journal at the default copy path, for the same
    /// source, target and selection, tells sync which target collections efs2atlas created.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "efs2atlas-sync.journal.json"
    )]
    pub journal: std::path::PathBuf,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How long to wait for a deployment, e.g. `15m`, `90s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 15m or 90s ({e})"))
}

/// `efs2atlas rollback`.
#[derive(Debug, Args, Clone)]
pub struct RollbackArgs {
    /// ECS cluster name or ARN.
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// ECS service name or ARN.
    #[arg(long, value_name = "S")]
    pub service: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// How long to wait for the service to become steady.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub deploy_timeout: std::time::Duration,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `efs2atlas migrate`.
#[derive(Debug, Args, Clone)]
pub struct MigrateArgs {
    /// What to migrate.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Answer yes to every question (scripts); without a terminal and without it, migrate refuses.
    #[arg(long)]
    pub yes: bool,
    /// Show the plan and stop; changes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress file for `resume` and `status`.
    #[arg(long, value_name = "PATH", default_value = crate::commands::migrate::DEFAULT_JOURNAL)]
    pub journal: std::path::PathBuf,
    /// How writes to the source are stopped while the data moves.
    #[arg(long, value_name = "MODE", default_value = "fsync-lock", value_parser = choice(FreezeMode::CHOICES))]
    pub freeze: FreezeMode,
    /// How long to wait for the new revision to become steady before rolling back.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub deploy_timeout: std::time::Duration,
    /// Drop target collections that already hold data (otherwise migrate refuses).
    #[arg(long)]
    pub drop: bool,
    /// Where efs2atlas itself writes the data, when it reaches Atlas differently than the app
    /// (e.g. through a tunnel); default: --atlas-uri.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_TARGET_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub target_uri: Option<Secret>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `efs2atlas resume`.
#[derive(Debug, Args, Clone)]
pub struct ResumeArgs {
    /// The migration's journal.
    #[arg(long, value_name = "PATH", default_value = crate::commands::migrate::DEFAULT_JOURNAL)]
    pub journal: std::path::PathBuf,
    /// A named stage of the stage file (its URI variables and journal).
    #[command(flatten)]
    pub stage: StageArgs,
    /// The Atlas URI (the journal never stores credentials).
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_ATLAS_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub atlas_uri: Option<Secret>,
    /// The source URI, when it carries credentials.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_SOURCE_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub source_uri: Option<Secret>,
    /// Where efs2atlas writes, when migrate was given a --target-uri with credentials.
    #[arg(
        long,
        value_name = "URI",
        env = "EFS2ATLAS_TARGET_URI",
        hide_env_values = true,
        value_parser = secret_arg
    )]
    pub target_uri: Option<Secret>,
    /// Answer yes to every question.
    #[arg(long)]
    pub yes: bool,
    /// Drop target collections that already hold data (when preflight refused them); the
    /// collections this migration already copied are kept.
    #[arg(long)]
    pub drop: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `efs2atlas status`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The journal to read.
    #[arg(long, value_name = "PATH", default_value = crate::commands::migrate::DEFAULT_JOURNAL)]
    pub journal: std::path::PathBuf,
    /// A named stage of the stage file (its journal).
    #[command(flatten)]
    pub stage: StageArgs,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}
