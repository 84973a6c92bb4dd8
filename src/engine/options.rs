//! The user's choices as the engine sees them: plain serde types, no command-line types.
//! The CLI turns flags into these; `resume` rebuilds them from the journal.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::envmap::EnvOverride;
use crate::error::{Error, Result};
use crate::uri::MongoUri;

/// One choice of a flag: its name on the command line, its value, what it means.
pub type Choice<T> = (&'static str, T, &'static str);

/// Parses a kebab-case choice (`--strategy two-pass`) against the flag's choices.
fn choose<T: Copy>(flag: &str, s: &str, all: &[Choice<T>]) -> Result<T> {
    all.iter()
        .find(|(n, ..)| *n == s)
        .map(|(_, v, _)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|(n, ..)| *n).collect();
            Error::usage(format!("{flag} '{s}' is not one of: {}", names.join(", ")))
        })
}

/// How the Atlas credentials reach the app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// One Secrets Manager secret, referenced from the task definition's `secrets`.
    #[default]
    SecretsManager,
    /// Plain environment variables (the password is visible in the task definition).
    Env,
}

impl CredentialMode {
    /// Every choice, as the command line spells it.
    pub const CHOICES: &[Choice<CredentialMode>] = &[
        (
            "secrets-manager",
            CredentialMode::SecretsManager,
            "one Secrets Manager secret, referenced from the task definition",
        ),
        (
            "env",
            CredentialMode::Env,
            "plain env vars (the password is visible in the task definition)",
        ),
    ];
}

impl std::str::FromStr for CredentialMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose("--credentials", s, Self::CHOICES)
    }
}

/// How the data moves relative to the write freeze.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Bulk copy while the app still writes, then freeze and `sync` only what changed: the
    /// app is read-only only for the sync, verify and cutover.
    #[default]
    TwoPass,
    /// Freeze first, then copy and verify: simplest, read-only for the whole copy.
    FreezeFirst,
}

impl Strategy {
    /// Every choice, as the command line spells it.
    pub const CHOICES: &[Choice<Strategy>] = &[
        (
            "two-pass",
            Strategy::TwoPass,
            "bulk copy with writes live, then freeze and sync only what changed (short freeze)",
        ),
        (
            "freeze-first",
            Strategy::FreezeFirst,
            "freeze, then copy and verify (read-only for the whole copy)",
        ),
    ];
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose("--strategy", s, Self::CHOICES)
    }
}

/// How writes to the source are stopped during the copy.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FreezeMode {
    /// `fsync` with `lock: true` on the source; released on abort or rollback.
    #[default]
    FsyncLock,
    /// No freeze: writes made during the copy can be lost.
    None,
}

impl FreezeMode {
    /// Every choice, as the command line spells it.
    pub const CHOICES: &[Choice<FreezeMode>] = &[
        (
            "fsync-lock",
            FreezeMode::FsyncLock,
            "fsync with lock: true on the source; released on abort or rollback",
        ),
        (
            "none",
            FreezeMode::None,
            "no freeze: writes made during the copy can be lost",
        ),
    ];
}

impl std::str::FromStr for FreezeMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose("--freeze", s, Self::CHOICES)
    }
}

/// The user's choices that shape the plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The Atlas URI.
    pub atlas: MongoUri,
    /// `--mongo-container`.
    pub mongo_container: Option<String>,
    /// `--env NAME=TEMPLATE` flags.
    pub env: Vec<EnvOverride>,
    /// `--image CONTAINER=IMAGE` flags.
    pub images: Vec<(String, String)>,
    /// `--credentials`.
    pub credentials: CredentialMode,
    /// `--keep-efs`.
    pub keep_efs: bool,
    /// `--strategy`.
    pub strategy: Strategy,
    /// `--drop`: target collections that hold data are replaced (not a blocker).
    pub drop: bool,
    /// `--runner ecs`: the runner as discovered (where it runs, the rule it needs).
    pub runner: Option<crate::engine::remote::resources::RunnerState>,
    /// `--atlas-project`: the Atlas side through the Admin API.
    pub atlas_api: Option<AtlasSettings>,
}

/// The Atlas project and cluster the Admin API is asked about.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AtlasSettings {
    /// The project (group) id.
    pub project: String,
    /// The cluster's name.
    pub cluster: String,
    /// The app's database user (default: the service's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_user: Option<String>,
    /// True when no `--atlas-uri` was given: efs2atlas makes the app's user (its password
    /// straight into Secrets Manager), a temporary user for itself and the access-list
    /// entries, through the Admin API.
    #[serde(default)]
    pub create_users: bool,
}

/// Which service to migrate and where to: what `plan`, `migrate` and `resume` share.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// ECS cluster name or ARN.
    pub cluster: String,
    /// ECS service name or ARN.
    pub service: String,
    /// How efs2atlas reaches the source Mongo, when given.
    pub source: Option<MongoUri>,
    /// Where efs2atlas writes, when the plan should check it (`plan`/`--dry-run` with
    /// `--target-uri`): reachable, and empty where the copy would write.
    pub check_target: Option<MongoUri>,
    /// The rest of the plan's inputs.
    pub plan: PlanOptions,
    /// False when `plan.atlas` is provisional: no `--atlas-uri` was given, and the cluster's
    /// connection string comes from the Admin API.
    pub atlas_uri_given: bool,
    /// The journaled form of the same choices.
    pub settings: Settings,
}

/// The user's choices, journaled so `resume` rebuilds the same plan (no secrets in here).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// `--mongo-container`.
    pub mongo_container: Option<String>,
    /// `--env NAME=TEMPLATE` as given (templates never hold literal credentials).
    pub env: Vec<String>,
    /// `--image CONTAINER=IMAGE`.
    pub images: Vec<String>,
    /// `--credentials`.
    pub credentials: Option<CredentialMode>,
    /// `--keep-efs`.
    pub keep_efs: bool,
    /// `--freeze`.
    pub freeze: FreezeMode,
    /// `--deploy-timeout` in seconds.
    pub deploy_timeout_secs: u64,
    /// `--drop`.
    pub drop: bool,
    /// `--strategy`.
    #[serde(default)]
    pub strategy: Strategy,
    /// `--runner ecs` and its image, size and role; `None` runs the data steps here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerSettings>,
    /// `--compressors` as given (None: the URIs' own, else zstd, snappy, zlib).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressors: Option<String>,
    /// `--atlas-project`/`--atlas-cluster`/`--atlas-app-user`: the Atlas side through the
    /// Admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atlas: Option<AtlasSettings>,
}

/// `--runner ecs`: the runner task's image, size and execution role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerSettings {
    /// `--runner-image` (None: the plan blocks, saying how to build and push one).
    #[serde(default)]
    pub image: Option<String>,
    /// `--runner-cpu`.
    pub cpu: u32,
    /// `--runner-memory` (MiB).
    pub memory: u32,
    /// `--runner-execution-role`; default: the service's execution role.
    pub execution_role: Option<String>,
}

impl Settings {
    /// The plan's options from the journaled settings and the Atlas URI.
    pub fn plan_options(&self, atlas: MongoUri) -> Result<PlanOptions> {
        Ok(PlanOptions {
            atlas,
            mongo_container: self.mongo_container.clone(),
            env: self
                .env
                .iter()
                .map(|e| EnvOverride::parse(e))
                .collect::<Result<Vec<_>>>()?,
            images: self
                .images
                .iter()
                .map(|i| parse_image(i))
                .collect::<Result<Vec<_>>>()?,
            credentials: self.credentials.unwrap_or_default(),
            keep_efs: self.keep_efs,
            runner: None,
            atlas_api: self.atlas.clone(),
            strategy: self.strategy,
            drop: self.drop,
        })
    }

    /// `--deploy-timeout`.
    pub fn deploy_timeout(&self) -> Duration {
        Duration::from_secs(self.deploy_timeout_secs.max(1))
    }
}

/// Parses `--image CONTAINER=IMAGE`.
pub fn parse_image(i: &str) -> Result<(String, String)> {
    i.split_once('=')
        .filter(|(c, img)| !c.is_empty() && !img.is_empty())
        .map(|(c, img)| (c.to_string(), img.to_string()))
        .ok_or_else(|| {
            Error::usage(format!(
                "--image '{i}' must be CONTAINER=IMAGE, e.g. --image backend=me/backend:atlas"
            ))
        })
}

/// The flags of `migrate` that `plan` does not have.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--journal`.
    pub journal: std::path::PathBuf,
    /// `--target-uri` (default: the Atlas URI).
    pub target: Option<MongoUri>,
}

/// Collections that catch-up, the frozen sync and verify work on at once. Most of a
/// collection's work against a remote Atlas is waiting on round trips (its metadata, the
/// indexes, the patches, the read-back), so all of them overlap rather than queue in waves
/// (at 80 ms a round trip, a second wave of small collections costs a quarter of a second of
/// frozen time). Scans share the process's memory budget, so more at once costs no memory.
pub const COLLECTIONS_AT_ONCE: usize = 16;
