//! The guided migration: discover → plan → confirm → preflight → freeze → copy → verify →
//! secret → register → deploy → cleanup → report. Every step is journaled; `resume` re-plans
//! from the journaled revision and continues at the first unfinished step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{MONGO_CONNECT_TIMEOUT, discover_and_plan};
use crate::aws::Aws;
use crate::cancel::Cancel;
use crate::cleanup::{self, CleanupOptions, CleanupTarget};
use crate::cli::{GlobalArgs, TargetArgs};
use crate::deploy;
use crate::envmap::mask_uri_password;
use crate::error::{Error, Result, exit};
use crate::journal::{Journal, SharedJournal, now};
use crate::mongo::Mongo;
use crate::mongo::copy::{self, CopyOptions};
use crate::mongo::freeze::{self, Fence};
use crate::mongo::ns::Selection;
use crate::mongo::sync::{self, SyncOptions};
use crate::mongo::verify::{self, VerifyOptions};
use crate::plan::{CredentialMode, Plan, Strategy};
use crate::ui;
use crate::uri::MongoUri;
use crate::world::World;

/// Where `migrate`, `resume` and `status` keep their journal unless told otherwise.
pub const DEFAULT_JOURNAL: &str = "efs2atlas.journal.json";

/// Copy speed assumed for the preflight estimate (documents and bytes per second).
const ASSUMED_DOCS_PER_SEC: f64 = 3000.0;
const ASSUMED_BYTES_PER_SEC: f64 = 5.0 * 1024.0 * 1024.0;

/// The steps of the default (two-pass) strategy, in the order they run.
pub const STEPS: &[&str] = &[
    "preflight",
    "copy",
    "freeze",
    "sync",
    "verify",
    "secret",
    "register",
    "deploy",
    "cleanup",
];

/// The steps of `--strategy freeze-first`; `sync` only runs there when a resume has to
/// catch up with writes made after the source was unlocked.
pub const FREEZE_FIRST_STEPS: &[&str] = &[
    "preflight",
    "freeze",
    "copy",
    "sync",
    "verify",
    "secret",
    "register",
    "deploy",
    "cleanup",
];

/// The steps a strategy runs, in order.
pub fn steps(strategy: Strategy) -> &'static [&'static str] {
    match strategy {
        Strategy::TwoPass => STEPS,
        Strategy::FreezeFirst => FREEZE_FIRST_STEPS,
    }
}

/// How writes to the source are stopped during the copy.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FreezeMode {
    /// `fsync` with `lock: true` on the source; released on abort or rollback.
    #[default]
    FsyncLock,
    /// No freeze: writes made during the copy can be lost.
    None,
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
}

/// One step's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// `running`, `done`, `skipped` or `failed`.
    pub status: String,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Seconds it took (last attempt).
    pub seconds: f64,
    /// What it did, in a sentence.
    pub note: String,
}

/// The write freeze.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FreezeRecord {
    /// The mode used.
    pub mode: FreezeMode,
    /// True when the server confirmed the lock.
    pub confirmed: bool,
    /// What the server said.
    pub detail: String,
    /// Unix time the freeze began.
    pub started_unix: f64,
    /// Unix time it ended (released, or the cutover finished).
    pub ended_unix: Option<f64>,
    /// True once the lock was released.
    pub released: bool,
    /// The source's `hello.topologyVersion.processId` when it was locked: the cutover fence
    /// checks that the same process still holds the lock.
    #[serde(default)]
    pub process_id: Option<String>,
    /// True once the fence found this lock still held right before the deploy.
    #[serde(default)]
    pub fence_held: bool,
}

impl FreezeRecord {
    /// How long writes were frozen (so far).
    pub fn seconds(&self) -> f64 {
        self.ended_unix.unwrap_or_else(unix_now) - self.started_unix
    }
}

/// The migration's state in the journal.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MigrateState {
    /// Cluster.
    pub cluster: String,
    /// Service.
    pub service: String,
    /// Service ARN.
    pub service_arn: String,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Atlas URI, redacted.
    pub atlas: String,
    /// Source URI, redacted.
    pub source: String,
    /// Copy target URI, redacted.
    pub target: String,
    /// The flags.
    pub settings: Settings,
    /// The revision with the mongo container.
    pub old_task_definition: String,
    /// The revision efs2atlas registered.
    pub new_task_definition: Option<String>,
    /// The Secrets Manager secret.
    pub secret_arn: Option<String>,
    /// The execution role's inline policy.
    pub policy_name: Option<String>,
    /// What cleanup deletes.
    pub cleanup: Option<CleanupTarget>,
    /// Per step.
    pub steps: BTreeMap<String, StepRecord>,
    /// The freeze.
    pub freeze: Option<FreezeRecord>,
    /// Step results (copy, verify, deploy, cleanup summaries).
    pub results: BTreeMap<String, serde_json::Value>,
    /// True once every step is done.
    pub finished: bool,
    /// The source was unlocked before the cutover and written to since: the freeze, sync
    /// and verify run again (also under freeze-first) before anything is deployed.
    #[serde(default)]
    pub resync: bool,
    /// How many times the cutover fence found the freeze gone (the source restarted or was
    /// unlocked) and froze, synced and verified again before deploying.
    #[serde(default)]
    pub refreezes: u32,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The flags of `migrate` that `plan` does not have.
#[derive(Clone, Debug)]
pub struct RunFlags {
    /// `--yes`.
    pub yes: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--journal`.
    pub journal: PathBuf,
    /// `--freeze`.
    pub freeze: FreezeMode,
    /// `--deploy-timeout`.
    pub deploy_timeout: Duration,
    /// `--drop`.
    pub drop: bool,
    /// `--json`.
    pub json: bool,
    /// `--target-uri` (default: the Atlas URI).
    pub target_uri: Option<String>,
}

/// Refuses `--env` templates that carry a literal credential (it would land in the journal).
fn check_env_templates(env: &[String], atlas: &MongoUri) -> Result<()> {
    for e in env {
        let literal_pw = mask_uri_password(e).is_some_and(|m| m != *e);
        let has_atlas_pw = atlas
            .password
            .as_ref()
            .is_some_and(|p| p.expose().len() >= 3 && e.contains(p.expose()));
        if literal_pw || has_atlas_pw {
            let name = e.split('=').next().unwrap_or("");
            return Err(Error::Usage(format!(
                "--env {name}=...: the template contains a literal password; put the credentials in --atlas-uri and write {{password}} (or {{uri}}) in the template"
            )));
        }
    }
    Ok(())
}

fn fingerprint(cluster: &str, service: &str, account: &str, region: &str) -> String {
    format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(
            format!("migrate|{account}|{region}|{cluster}|{service}").as_bytes()
        )
    )
}

/// Everything a running migration needs.
struct Ctx {
    global: GlobalArgs,
    aws: Aws,
    world: World,
    plan: Plan,
    source: MongoUri,
    target: MongoUri,
    yes: bool,
    journal: SharedJournal,
    cancel: Cancel,
    deploy_timeout: Duration,
    drop: bool,
    freeze: FreezeMode,
    mongo: Option<(Mongo, Mongo)>,
    /// Fence failures in this run (a source that keeps restarting stops the run).
    refreezes: u32,
}

/// What a step returns to be run again later: the runner forgets its record, so the first
/// unfinished step (which the step made earlier, e.g. freeze) runs next.
const PENDING: &str = "pending";

/// Fence failures one run rides out before it stops (nothing deployed).
const MAX_REFREEZES: u32 = 3;

impl Ctx {
    fn state(&self) -> Result<MigrateState> {
        Ok(self.journal.snapshot()?.migrate.unwrap_or_default())
    }

    fn update(&self, f: impl FnOnce(&mut MigrateState)) -> Result<()> {
        self.journal.update(true, |j| {
            f(j.migrate.get_or_insert_with(MigrateState::default))
        })
    }

    async fn mongo(&mut self) -> Result<(Mongo, Mongo)> {
        if self.mongo.is_none() {
            let (s, t) = tokio::join!(
                Mongo::connect(&self.source, "source", MONGO_CONNECT_TIMEOUT),
                Mongo::connect(&self.target, "target", MONGO_CONNECT_TIMEOUT)
            );
            self.mongo = Some((s?, t?));
        }
        self.mongo
            .clone()
            .ok_or_else(|| Error::Other("no Mongo connection".into()))
    }

    fn progress(&self) -> bool {
        ui::progress_enabled(self.global.no_progress, self.global.quiet)
    }

    /// True while the source holds the write lock this migration took.
    fn source_locked(&self) -> bool {
        self.state()
            .ok()
            .and_then(|s| s.freeze)
            .is_some_and(|f| !f.released && f.mode == FreezeMode::FsyncLock)
    }

    /// Checks that the freeze this migration took still holds: same source process, still
    /// fsync-locked. `Holds` when there is nothing to check (no lock, or one the server never
    /// confirmed: the user was warned and chose to go on).
    async fn fence(&mut self) -> Result<Fence> {
        let Some(f) = self.state()?.freeze else {
            return Ok(Fence::Holds);
        };
        if f.mode != FreezeMode::FsyncLock || !f.confirmed {
            return Ok(Fence::Holds);
        }
        if f.released {
            return Ok(Fence::Broken(
                "the source was unlocked before the cutover".into(),
            ));
        }
        let (src, _) = self.mongo().await?;
        let cancel = self.cancel.clone();
        crate::mongo::with_retries("checking the source's write freeze", &cancel, || {
            freeze::check(&src, f.process_id.as_deref())
        })
        .await
    }

    /// The freeze no longer holds: forget freeze, sync and verify so the runner does them
    /// again (a crash from here on resumes there too) before anything is deployed.
    fn refreeze(&mut self, why: &str) -> Result<()> {
        self.refreezes += 1;
        if self.refreezes > MAX_REFREEZES {
            return Err(Error::Other(format!(
                "{why}; the freeze was lost {MAX_REFREEZES} times in this run, so efs2atlas stopped without deploying. Find out why the source keeps restarting, then run `efs2atlas resume`"
            )));
        }
        ui::notice(&format!(
            "WARNING: {why}. Not deploying: freezing the source again, syncing what changed and verifying before the cutover."
        ));
        self.journal.update(true, |j| {
            j.sync.clear();
            let m = j.migrate.get_or_insert_with(MigrateState::default);
            for step in ["freeze", "sync", "verify"] {
                m.steps.remove(step);
            }
            m.freeze = None;
            m.resync = true;
            m.refreezes += 1;
        })
    }

    /// Releases the source's write lock so the old app can write again (abort paths).
    async fn unfreeze(&mut self, why: &str) {
        let st = match self.state() {
            Ok(s) => s,
            Err(_) => return,
        };
        let Some(f) = st.freeze else { return };
        if f.released || f.mode == FreezeMode::None {
            return;
        }
        let result = match self.mongo().await {
            Ok((src, _)) => freeze::unlock(&src).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                ui::notice(&format!(
                    "source unlocked ({why}); the old app can write again"
                ));
                let _ = self.update(|s| {
                    if let Some(f) = &mut s.freeze {
                        f.released = true;
                        f.ended_unix = Some(unix_now());
                    }
                });
            }
            Err(e) => ui::error_line(&format!(
                "could not unlock the source after {why}: {e}; run db.fsyncUnlock() on it by hand"
            )),
        }
    }
}

/// `efs2atlas migrate`.
pub async fn migrate(global: &GlobalArgs, t: &TargetArgs, flags: &RunFlags) -> Result<i32> {
    let opts = crate::app::plan_options(t)?;
    check_env_templates(&t.env, &opts.atlas)?;
    let _lock = if flags.dry_run {
        None
    } else {
        Some(crate::journal::JournalLock::acquire(
            &flags.journal,
            "migrate",
        )?)
    };
    if !flags.dry_run {
        match Journal::load(&flags.journal)? {
            Some(j) if j.migrate.as_ref().is_some_and(|m| m.finished) => {
                return Err(Error::Refused(format!(
                    "journal {} records a finished migration; move it aside (or pass --journal) to start another",
                    flags.journal.display()
                )));
            }
            Some(j) => {
                let of = j
                    .migrate
                    .as_ref()
                    .map(|m| format!(" of service {} in cluster {}", m.service, m.cluster))
                    .unwrap_or_else(|| format!(" ({} journal)", j.kind));
                return Err(Error::Refused(format!(
                    "journal {} records an unfinished migration{of}; continue it with `efs2atlas resume --journal {}`, or pass another --journal to start a different one",
                    flags.journal.display(),
                    flags.journal.display()
                )));
            }
            None => {}
        }
    }

    let aws = crate::app::aws(global).await?;
    let (world, plan) = discover_and_plan(&aws, t, None).await?;
    if !flags.json {
        print!("{}", ui::plan_text(&plan, &world));
    }
    if flags.dry_run {
        if flags.json {
            ui::print_json(&json!({"plan": plan, "world": world, "dry_run": true}));
        }
        ui::notice("--dry-run: nothing was changed");
        return Ok(if plan.ready { exit::OK } else { exit::REFUSED });
    }
    if !plan.ready {
        let why: Vec<String> = plan.blockers.iter().map(|b| b.message.clone()).collect();
        return Err(Error::Refused(format!(
            "migration refused: {}",
            why.join("; ")
        )));
    }
    let source_text = t.source_uri.clone().ok_or_else(|| {
        Error::Usage(
            "--source-uri is required: efs2atlas must reach the mongo container's database, usually through a tunnel (see docs/guide.md), e.g. --source-uri mongodb://127.0.0.1:27017"
                .into(),
        )
    })?;
    let source = MongoUri::parse("--source-uri", &source_text)?;
    let target = match &flags.target_uri {
        Some(u) => MongoUri::parse("--target-uri", u)?,
        None => opts.atlas.clone(),
    };
    if !ui::confirm(
        &format!(
            "Migrate service {} to {} with the plan above?",
            plan.service,
            opts.atlas.redacted()
        ),
        flags.yes,
    )? {
        return Err(Error::Refused("not confirmed; nothing was changed".into()));
    }
    let mut journal = Journal::new(
        "migrate",
        &fingerprint(&plan.cluster, &plan.service, &world.account, &world.region),
    );
    journal.copy.source = source.redacted();
    journal.copy.target = target.redacted();
    journal.migrate = Some(MigrateState {
        cluster: plan.cluster.clone(),
        service: plan.service.clone(),
        service_arn: world.service.arn.clone(),
        account: world.account.clone(),
        region: world.region.clone(),
        atlas: opts.atlas.redacted(),
        source: source.redacted(),
        target: target.redacted(),
        settings: Settings {
            mongo_container: t.mongo_container.clone(),
            env: t.env.clone(),
            images: t.image.clone(),
            credentials: Some(t.credentials),
            keep_efs: t.keep_efs,
            freeze: flags.freeze,
            deploy_timeout_secs: flags.deploy_timeout.as_secs(),
            drop: flags.drop,
            strategy: t.strategy,
        },
        old_task_definition: world.task_definition.arn.clone(),
        cleanup: Some(cleanup_target(&world, &plan)),
        ..Default::default()
    });
    journal.save(&flags.journal)?;
    let ctx = Ctx {
        global: global.clone(),
        aws,
        world,
        plan,
        source,
        target,
        yes: flags.yes,
        journal: SharedJournal::new(flags.journal.clone(), journal, copy::JOURNAL_INTERVAL),
        cancel: Cancel::new(),
        deploy_timeout: flags.deploy_timeout,
        drop: flags.drop,
        freeze: flags.freeze,
        mongo: None,
        refreezes: 0,
    };
    execute(ctx, flags.json).await
}

fn cleanup_target(world: &World, plan: &Plan) -> CleanupTarget {
    CleanupTarget {
        cluster: plan.cluster.clone(),
        service: plan.service.clone(),
        service_arn: world.service.arn.clone(),
        file_systems: plan
            .file_systems
            .iter()
            .filter(|f| f.delete)
            .map(|f| f.id.clone())
            .collect(),
        security_groups: plan
            .security_groups
            .iter()
            .filter(|g| g.delete)
            .map(|g| g.id.clone())
            .collect(),
    }
}

/// `efs2atlas resume`.
pub async fn resume(
    global: &GlobalArgs,
    journal_path: &Path,
    atlas: Option<String>,
    source: Option<String>,
    target: Option<String>,
    yes: bool,
    json: bool,
) -> Result<i32> {
    let _lock = crate::journal::JournalLock::acquire(journal_path, "resume")?;
    let journal = Journal::load(journal_path)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no journal at {}; pass --journal PATH (migrate writes {DEFAULT_JOURNAL} by default)",
            journal_path.display()
        ))
    })?;
    let bad = |m: String| Error::Journal {
        path: journal_path.display().to_string(),
        message: m,
    };
    let st = match (&journal.kind[..], &journal.migrate) {
        ("migrate", Some(st)) => st.clone(),
        (kind, _) => {
            return Err(bad(format!(
                "is a {kind} journal, not a migration; re-run that command instead"
            )));
        }
    };
    if journal.fingerprint != fingerprint(&st.cluster, &st.service, &st.account, &st.region) {
        return Err(bad(
            "was edited: its fingerprint does not match its service; refusing to act on it".into(),
        ));
    }
    if st.finished {
        ui::notice(&format!(
            "the migration of {} recorded in {} is already finished",
            st.service,
            journal_path.display()
        ));
        return status(journal_path, json);
    }
    let mut journal = journal;
    if let Some(m) = journal.migrate.as_mut()
        && catch_up_after_unlock(m)
    {
        // What the earlier sync finished is stale now.
        journal.sync.clear();
    }
    let st = journal.migrate.clone().unwrap_or(st);
    let atlas_text = atlas.ok_or_else(|| {
        Error::Usage("the Atlas URI is needed to resume (the journal never stores credentials): set EFS2ATLAS_ATLAS_URI or pass --atlas-uri".into())
    })?;
    let atlas = MongoUri::parse("--atlas-uri", &atlas_text)?;
    if atlas.redacted() != st.atlas {
        return Err(Error::Usage(format!(
            "the Atlas URI {} is not the one this migration uses ({})",
            atlas.redacted(),
            st.atlas
        )));
    }
    let source = match source {
        Some(s) => MongoUri::parse("--source-uri", &s)?,
        None if !st.source.contains("****") => MongoUri::parse("journal source", &st.source)?,
        None => return Err(Error::Usage("the source URI has credentials: set EFS2ATLAS_SOURCE_URI or pass --source-uri to resume".into())),
    };
    if source.redacted() != st.source {
        return Err(Error::Usage(format!(
            "the source URI {} is not the one this migration uses ({})",
            source.redacted(),
            st.source
        )));
    }
    let target = match target {
        Some(t) => MongoUri::parse("--target-uri", &t)?,
        None if st.target == st.atlas => atlas.clone(),
        None if !st.target.contains("****") => MongoUri::parse("journal target", &st.target)?,
        None => {
            return Err(Error::Usage(format!(
                "the migration writes to {} (its --target-uri), which has credentials: set EFS2ATLAS_TARGET_URI or pass --target-uri to resume",
                st.target
            )));
        }
    };
    if target.redacted() != st.target {
        return Err(Error::Usage(format!(
            "the target URI {} is not the one this migration uses ({})",
            target.redacted(),
            st.target
        )));
    }
    let s = &st.settings;
    let t = TargetArgs {
        cluster: st.cluster.clone(),
        service: st.service.clone(),
        atlas_uri: atlas_text,
        source_uri: None,
        mongo_container: s.mongo_container.clone(),
        env: s.env.clone(),
        image: s.images.clone(),
        credentials: s.credentials.unwrap_or(CredentialMode::SecretsManager),
        keep_efs: s.keep_efs,
        strategy: s.strategy,
    };
    let mut g = global.clone();
    if g.region.is_none() {
        g.region = Some(st.region.clone());
    }
    let aws = crate::app::aws(&g).await?;
    // Before anything is read or changed: the journal must belong to this account.
    let (account, _) = crate::discover::identity(&aws).await?;
    if account != st.account {
        return Err(Error::Usage(format!(
            "these AWS credentials are for account {account}, but the migration in {} runs in {}; use the same profile",
            journal_path.display(),
            st.account
        )));
    }
    let (world, plan) = discover_and_plan(&aws, &t, Some(&st.old_task_definition)).await?;
    let next = steps(s.strategy)
        .iter()
        .find(|s| {
            st.steps
                .get(**s)
                .is_none_or(|r| r.status != "done" && r.status != "skipped")
        })
        .unwrap_or(&"report");
    ui::notice(&format!(
        "resuming the migration of {} at step {next}",
        st.service
    ));
    let ctx = Ctx {
        global: g,
        aws,
        world,
        plan,
        source,
        target,
        yes,
        journal: SharedJournal::new(journal_path.to_path_buf(), journal, copy::JOURNAL_INTERVAL),
        cancel: Cancel::new(),
        deploy_timeout: Duration::from_secs(s.deploy_timeout_secs.max(1)),
        drop: s.drop,
        freeze: s.freeze,
        mongo: None,
        refreezes: 0,
    };
    execute(ctx, json).await
}

/// Runs every unfinished step, then reports.
async fn execute(mut ctx: Ctx, json: bool) -> Result<i32> {
    ctx.cancel.on_signals();
    let journal_path = ctx.journal.path().display().to_string();
    let strategy = ctx.state()?.settings.strategy;
    // Each round runs the first unfinished step: a step may send the run back (the cutover
    // fence forgets freeze, sync and verify when the freeze no longer holds).
    loop {
        let st = ctx.state()?;
        let Some(step) = steps(strategy).iter().find(|s| {
            st.steps
                .get(**s)
                .is_none_or(|r| r.status != "done" && r.status != "skipped")
        }) else {
            break;
        };
        if ctx.cancel.is_cancelled() {
            return Err(interrupted(step, &journal_path, &ctx));
        }
        let started = Instant::now();
        let started_at = now();
        ctx.update(|s| {
            s.steps.insert(
                step.to_string(),
                StepRecord {
                    status: "running".into(),
                    started_at: started_at.clone(),
                    ..Default::default()
                },
            );
        })?;
        tracing::info!("step {step}");
        let result = run_step(&mut ctx, step).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok((PENDING, _)) => {
                ctx.update(|s| {
                    s.steps.remove(*step);
                })?;
            }
            Ok((status, note)) => {
                if !note.is_empty() {
                    ui::notice(&format!("{step}: {note}"));
                }
                if *step == "deploy" {
                    // The app writes to Atlas from here: the write freeze is over for it.
                    ctx.update(|s| {
                        if let Some(f) = &mut s.freeze
                            && f.ended_unix.is_none()
                        {
                            f.ended_unix = Some(unix_now());
                        }
                    })?;
                }
                ctx.update(|s| {
                    s.steps.insert(
                        step.to_string(),
                        StepRecord {
                            status: status.into(),
                            started_at: started_at.clone(),
                            finished_at: Some(now()),
                            seconds,
                            note,
                        },
                    );
                })?;
            }
            Err(Error::Interrupted(_)) => {
                ctx.journal.flush()?;
                return Err(interrupted(step, &journal_path, &ctx));
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = ctx.update(|s| {
                    s.steps.insert(
                        step.to_string(),
                        StepRecord {
                            status: "failed".into(),
                            started_at: started_at.clone(),
                            finished_at: Some(now()),
                            seconds,
                            note: msg,
                        },
                    );
                });
                if matches!(e, Error::Mismatch(_)) {
                    return Err(e.with_hint(&format!(
                        "`efs2atlas resume --journal {journal_path}` freezes the source again, syncs the differences and verifies again"
                    )));
                }
                return Err(e.with_hint(&format!(
                    "step {step} stopped; the journal is saved. Once the cause is fixed, continue with `efs2atlas resume --journal {journal_path}`{}",
                    if ctx.source_locked() {
                        " (the source is still write-locked, so nothing written since the copy can be lost)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    ctx.update(|s| {
        s.finished = true;
        if let Some(f) = &mut s.freeze
            && f.ended_unix.is_none()
        {
            f.ended_unix = Some(unix_now());
        }
    })?;
    let st = ctx.state()?;
    let report = report(&st, &journal_path);
    if json {
        ui::print_json(&json!({"plan": ctx.plan, "migration": report}));
    } else {
        print!("{}", ui::migrate_report_text(&report));
    }
    Ok(exit::OK)
}

fn interrupted(step: &str, journal: &str, ctx: &Ctx) -> Error {
    let frozen = ctx.source_locked();
    Error::Interrupted(format!(
        "interrupted during step {step}; progress is saved. Continue with `efs2atlas resume --journal {journal}`{}",
        if frozen {
            " (the source is still write-locked)"
        } else {
            ""
        }
    ))
}

/// Runs one step; returns its final status (`done`/`skipped`) and a note.
async fn run_step(ctx: &mut Ctx, step: &str) -> Result<(&'static str, String)> {
    match step {
        "preflight" => preflight(ctx).await,
        "freeze" => freeze_step(ctx).await,
        "copy" => copy_step(ctx).await,
        "sync" => sync_step(ctx).await,
        "verify" => verify_step(ctx).await,
        "secret" => secret_step(ctx).await,
        "register" => register_step(ctx).await,
        "deploy" => deploy_step(ctx).await,
        "cleanup" => cleanup_step(ctx).await,
        other => Err(Error::Other(format!("unknown step {other}"))),
    }
}

async fn preflight(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    ui::notice(&format!(
        "AWS account {} region {} as {}",
        ctx.world.account, ctx.world.region, ctx.world.caller_arn
    ));
    let (src, dst) = ctx.mongo().await?;
    let (sv, tv) = tokio::join!(src.version(), dst.version());
    let items = copy::select(&src, &Selection::default()).await?;
    if items.is_empty() {
        return Err(Error::Refused(format!(
            "the source {} has no user databases to copy",
            src.uri.redacted()
        )));
    }
    if ctx.freeze == FreezeMode::FsyncLock {
        crate::mongo::access::check_source_can_freeze(&src).await?;
    }
    copy::check_targets(&dst, &items, &ctx.journal, ctx.drop).await?;
    let docs: u64 = items.iter().map(|i| i.estimated_docs).sum();
    let size: i64 = src.list_databases().await?.iter().filter_map(|d| d.1).sum();
    // A rough guide only: the real rate depends on the link to Atlas (scripts/bench measures it).
    let eta_secs = (docs as f64 / ASSUMED_DOCS_PER_SEC).max(size as f64 / ASSUMED_BYTES_PER_SEC);
    Ok((
        "done",
        format!(
            "source {} (MongoDB {}) reachable, {} collections, ~{} documents, {} on disk; target {} (MongoDB {}) ready; copy estimated at ~{} (assuming {:.0} docs/s or {} /s)",
            src.uri.redacted(),
            sv.as_deref().unwrap_or("?"),
            items.len(),
            docs,
            ui::bytes(size),
            dst.uri.redacted(),
            tv.as_deref().unwrap_or("?"),
            humantime::format_duration(Duration::from_secs(eta_secs.ceil() as u64)),
            ASSUMED_DOCS_PER_SEC,
            ui::bytes(ASSUMED_BYTES_PER_SEC as i64)
        ),
    ))
}

async fn freeze_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    if ctx.freeze == FreezeMode::None {
        ui::notice(
            "WARNING: --freeze none: the source stays writable; writes the app makes during the copy will NOT reach Atlas",
        );
        ctx.update(|s| {
            s.freeze = Some(FreezeRecord {
                mode: FreezeMode::None,
                confirmed: false,
                detail: "no freeze (--freeze none)".into(),
                started_unix: unix_now(),
                ..Default::default()
            })
        })?;
        return Ok(("skipped", "no write freeze (--freeze none)".into()));
    }
    if let Some(f) = ctx
        .state()?
        .freeze
        .filter(|f| f.mode == FreezeMode::FsyncLock && !f.released)
    {
        // A run that died after locking: the lock is still held on the server (fsync locks
        // survive their connection; locking again would need two unlocks), unless the source
        // restarted or was unlocked meanwhile.
        match ctx.fence().await? {
            Fence::Holds => {
                return Ok((
                    "done",
                    format!("already frozen by the interrupted run ({})", f.detail),
                ));
            }
            Fence::Broken(why) => ui::notice(&format!("{why}: freezing it again")),
        }
    }
    let (src, _) = ctx.mongo().await?;
    let process_id = freeze::process_id(&src).await?;
    let out = freeze::lock(&src).await?;
    let rec = FreezeRecord {
        mode: FreezeMode::FsyncLock,
        confirmed: out.confirmed,
        detail: out.detail.clone(),
        started_unix: unix_now(),
        process_id,
        ..Default::default()
    };
    ctx.update(|s| s.freeze = Some(rec))?;
    if !out.confirmed {
        ui::notice(&format!(
            "WARNING: the write freeze is NOT confirmed: {}",
            out.detail
        ));
        if !ui::confirm(
            "Continue without a confirmed write freeze (writes made from now on may be lost)?",
            ctx.yes,
        )? {
            ctx.unfreeze("the freeze was not confirmed").await;
            return Err(Error::Refused(
                "stopped: the write freeze could not be confirmed".into(),
            ));
        }
        return Ok((
            "done",
            "lock requested, but NOT confirmed by the server (see the warning)".into(),
        ));
    }
    Ok(("done", out.detail))
}

/// A resumed migration whose source was unlocked before the cutover (verify failed, the
/// cutover was declined or rolled back), or whose last verify failed, must not deploy the
/// copy as it is: the old app may have written since. Freeze, sync and verify again.
fn catch_up_after_unlock(m: &mut MigrateState) -> bool {
    let unlocked = m
        .freeze
        .as_ref()
        .is_some_and(|f| f.released && f.mode == FreezeMode::FsyncLock);
    let mismatch = m.steps.get("verify").is_some_and(|r| r.status == "failed");
    let deployed = m.steps.get("deploy").is_some_and(|r| r.status == "done");
    if (unlocked || mismatch) && !deployed {
        ui::notice(if unlocked {
            "the source was unlocked before the cutover: freezing it again and syncing what changed since"
        } else {
            "the last verify found differences: syncing them and verifying again"
        });
        for step in ["freeze", "sync", "verify"] {
            m.steps.remove(step);
        }
        m.freeze = None;
        m.resync = true;
        return true;
    }
    false
}

async fn sync_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let st = ctx.state()?;
    if st.settings.strategy == Strategy::FreezeFirst && !st.resync {
        return Ok((
            "skipped",
            "freeze-first: the copy ran with writes frozen".into(),
        ));
    }
    let (src, dst) = ctx.mongo().await?;
    let items = copy::select(&src, &Selection::default()).await?;
    let bars = ui::Bars::new(
        items.iter().map(|i| i.estimated_docs).sum(),
        ctx.progress(),
        "sync",
    );
    // What efs2atlas created on the target may be dropped when the source dropped it.
    let owned = ctx.journal.snapshot()?.created_targets();
    let opts = SyncOptions {
        owned,
        ..SyncOptions::default()
    };
    let r = sync::run(
        &src,
        &dst,
        &items,
        &opts,
        Some(&ctx.journal),
        &bars,
        &ctx.cancel,
    )
    .await;
    bars.finish();
    let r = r?;
    ctx.update(|s| {
        s.results.insert(
            "sync".into(),
            json!({"inserted": r.counts.inserted, "replaced": r.counts.replaced, "deleted": r.counts.deleted,
                   "conflicts_resolved": r.counts.conflicts_resolved, "documents_compared": r.documents_compared,
                   "dropped_collections": r.dropped_collections, "seconds": r.seconds}),
        );
    })?;
    if !r.kept_extra_collections.is_empty() {
        return Err(Error::Refused(format!(
            "the target has collection(s) the source does not, which efs2atlas did not create: {}; drop them or move them elsewhere, then resume",
            r.kept_extra_collections.join(", ")
        )));
    }
    Ok((
        "done",
        format!(
            "patched {} inserted, {} replaced, {} deleted ({} documents compared) in {:.1}s",
            r.counts.inserted, r.counts.replaced, r.counts.deleted, r.documents_compared, r.seconds
        ),
    ))
}

async fn copy_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let (src, dst) = ctx.mongo().await?;
    let items = copy::select(&src, &Selection::default()).await?;
    let bars = ui::Bars::new(
        items.iter().map(|i| i.estimated_docs).sum(),
        ctx.progress(),
        "copy",
    );
    let live = ctx.state()?.settings.strategy == Strategy::TwoPass;
    let opts = CopyOptions {
        drop: ctx.drop,
        live,
        ..CopyOptions::default()
    };
    let r = copy::run(&src, &dst, &items, &opts, &ctx.journal, &bars, &ctx.cancel).await;
    bars.finish();
    let r = r?;
    // Under freeze-first nothing wrote during the copy, so a duplicate key is a real failure;
    // two-pass leaves those unique indexes to the sync that follows.
    let mut failed = r.index_errors.clone();
    if !live {
        failed.extend(r.index_deferred.iter().cloned());
    }
    if !failed.is_empty() {
        return Err(Error::Other(format!(
            "{} index build(s) failed on the target: {}",
            failed.len(),
            failed.join("; ")
        )));
    }
    let note = format!(
        "copied {} documents ({}) in {:.1}s",
        r.docs,
        ui::bytes(r.bytes as i64),
        r.seconds
    );
    ctx.update(|s| {
        s.results.insert("copy".into(), json!({"docs": r.docs, "bytes": r.bytes, "seconds": r.seconds, "collections": r.collections.len()}));
    })?;
    Ok(("done", note))
}

async fn verify_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let (src, dst) = ctx.mongo().await?;
    let sel = Selection::default();
    let items = copy::select(&src, &sel).await?;
    let bars = ui::Bars::new(
        items.iter().map(|i| i.estimated_docs).sum(),
        ctx.progress(),
        "verify",
    );
    let opts = VerifyOptions {
        selection: sel,
        parallel: 4,
        max_examples: 20,
    };
    let r = verify::run(&src, &dst, &items, &opts, &bars, &ctx.cancel).await;
    bars.finish();
    let r = r?;
    ctx.update(|s| {
        s.results.insert(
            "verify".into(),
            json!({"ok": r.ok, "documents_compared": r.documents_compared, "seconds": r.seconds}),
        );
    })?;
    if !r.ok {
        eprint!("{}", ui::verify_text(&r));
        // A source that restarted under the freeze explains a difference: freeze again.
        if let Fence::Broken(why) = ctx.fence().await? {
            ctx.refreeze(&format!("verify found differences and {why}"))?;
            return Ok((PENDING, String::new()));
        }
        ctx.unfreeze("verification failed").await;
        return Err(Error::Mismatch(format!(
            "{}; nothing was deployed",
            r.summary()
        )));
    }
    Ok((
        "done",
        format!(
            "target equals source: {} documents compared in {:.1}s",
            r.documents_compared, r.seconds
        ),
    ))
}

async fn secret_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let (Some(name), Some(value)) = (ctx.plan.secret_name.clone(), ctx.plan.secret_value()) else {
        return Ok(("skipped", "credentials go in plain env vars".into()));
    };
    let arn = deploy::ensure_secret(&ctx.aws, &name, &value, &ctx.world.service.arn).await?;
    let role = ctx.world.task_definition.execution_role_arn.clone().ok_or_else(|| {
        Error::Refused("the task definition has no execution role to read the secret; use --credentials env".into())
    })?;
    let policy = deploy::grant_secret_read(&ctx.aws, &role, &arn, &name).await?;
    let note = format!("secret {arn}; execution role may read it (inline policy {policy})");
    ctx.update(|s| {
        s.secret_arn = Some(arn);
        s.policy_name = Some(policy);
    })?;
    Ok(("done", note))
}

async fn register_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let secret = ctx.state()?.secret_arn;
    let spec = ctx
        .plan
        .new_task_definition(&ctx.world, secret.as_deref())?;
    let arn = deploy::register(&ctx.aws, &spec).await?;
    ctx.update(|s| s.new_task_definition = Some(arn.clone()))?;
    Ok(("done", format!("registered {arn}")))
}

async fn deploy_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let st = ctx.state()?;
    let new = st
        .new_task_definition
        .clone()
        .ok_or_else(|| Error::Other("no new task definition recorded".into()))?;
    // A resume after the service was already told to run the new revision: the cutover is
    // under way (the old task may be gone with its source), so there is nothing to fence.
    let under_way = ctx.world.service.task_definition_arn == new;
    if !under_way {
        let read_only = st
            .freeze
            .as_ref()
            .filter(|f| f.mode == FreezeMode::FsyncLock && !f.released)
            .map(|f| {
                format!(
                    " The app has been read-only for {} and stays so until you answer.",
                    ui::duration(f.seconds())
                )
            })
            .unwrap_or_default();
        if !ui::confirm(
            &format!(
                "Cut over: deploy {new} to service {} now?{read_only}",
                st.service
            ),
            ctx.yes,
        )? {
            ctx.unfreeze("the cutover was declined").await;
            return Err(Error::Refused(
                "cutover not confirmed; the service still runs the old revision".into(),
            ));
        }
        // The fence: never deploy on a copy the source may have moved past.
        if let Fence::Broken(why) = ctx.fence().await? {
            ctx.refreeze(&why)?;
            return Ok((PENDING, String::new()));
        }
        ctx.update(|s| {
            if let Some(f) = &mut s.freeze {
                f.fence_held = f.mode == FreezeMode::FsyncLock && f.confirmed;
            }
        })?;
    }
    let spinner = ui::Spinner::new(ctx.progress(), "deploy");
    let r = deploy::deploy(
        &ctx.aws,
        &st.cluster,
        &st.service,
        &new,
        &st.old_task_definition,
        ctx.deploy_timeout,
        &spinner,
        &ctx.cancel,
    )
    .await;
    spinner.finish();
    let r = r?;
    ctx.update(|s| {
        s.results.insert(
            "deploy".into(),
            serde_json::to_value(&r).unwrap_or_default(),
        );
    })?;
    if !r.ok {
        ctx.unfreeze("the deployment was rolled back").await;
        return Err(Error::Other(format!(
            "{}; the source was unlocked. Fix the cause and run `efs2atlas resume` to try the cutover again",
            ui::deploy_text(&r)
        )));
    }
    ctx.update(|s| {
        if let Some(f) = &mut s.freeze
            && f.ended_unix.is_none()
        {
            f.ended_unix = Some(unix_now());
        }
    })?;
    Ok(("done", ui::deploy_text(&r)))
}

async fn cleanup_step(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let st = ctx.state()?;
    let target = st.cleanup.clone().unwrap_or_default();
    if st.settings.keep_efs || (target.file_systems.is_empty() && target.security_groups.is_empty())
    {
        return Ok(("skipped", "EFS and security groups kept".into()));
    }
    for fs in &target.file_systems {
        ui::notice(&format!(
            "EFS {fs}: AWS Backup {}",
            cleanup::backup_status(&ctx.aws, fs).await?
        ));
    }
    if !ctx.yes {
        for fs in &target.file_systems {
            let typed = ui::ask(&format!(
                "Type the file system id {fs} to delete it (irreversible), anything else to keep it:"
            ))?;
            if typed.trim() != fs {
                return Ok((
                    "skipped",
                    format!("kept EFS {fs} (not confirmed); nothing was deleted"),
                ));
            }
        }
    }
    let verified = st.steps.get("verify").is_some_and(|r| r.status == "done");
    let r = cleanup::run(
        &ctx.aws,
        &target,
        verified,
        &CleanupOptions::default(),
        &ctx.cancel,
    )
    .await?;
    let note = format!("deleted {}", r.deleted.join(", "));
    ctx.update(|s| {
        s.results.insert(
            "cleanup".into(),
            serde_json::to_value(&r).unwrap_or_default(),
        );
    })?;
    Ok(("done", note))
}

/// The final report.
pub fn report(st: &MigrateState, journal: &str) -> serde_json::Value {
    let deleted = st
        .results
        .get("cleanup")
        .and_then(|c| c.get("deleted"))
        .cloned()
        .unwrap_or(json!([]));
    json!({
        "ok": st.finished,
        "cluster": st.cluster,
        "service": st.service,
        "old_task_definition": st.old_task_definition,
        "new_task_definition": st.new_task_definition,
        "secret_arn": st.secret_arn,
        "strategy": st.settings.strategy,
        "copy": st.results.get("copy"),
        "sync": st.results.get("sync"),
        "verify": st.results.get("verify"),
        "deploy": st.results.get("deploy"),
        "deleted": deleted,
        "freeze": st.freeze.as_ref().map(|f| json!({"mode": f.mode, "confirmed": f.confirmed, "seconds": f.seconds(), "detail": f.detail,
            "fence_held": f.fence_held, "refreezes": st.refreezes})),
        "steps": st.steps,
        "journal": journal,
    })
}

/// `efs2atlas status`.
pub fn status(journal_path: &Path, json: bool) -> Result<i32> {
    let j = Journal::load(journal_path)?
        .ok_or_else(|| Error::NotFound(format!("no journal at {}", journal_path.display())))?;
    if json {
        let body = match &j.migrate {
            Some(st) => {
                json!({"kind": j.kind, "updated_at": j.updated_at, "migration": report(st, &journal_path.display().to_string()), "copy": j.copy})
            }
            None => json!({"kind": j.kind, "updated_at": j.updated_at, "copy": j.copy}),
        };
        ui::print_json(&json!({"status": body}));
    } else {
        print!("{}", ui::status_text(&j));
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(status: &str) -> StepRecord {
        StepRecord {
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn resume_after_an_unlock_or_a_mismatch_syncs_again_but_never_after_the_cutover() {
        let mut m = MigrateState::default();
        for s in [
            "preflight",
            "copy",
            "freeze",
            "sync",
            "verify",
            "secret",
            "register",
        ] {
            m.steps.insert(s.into(), step("done"));
        }
        m.steps.insert("deploy".into(), step("failed"));
        m.freeze = Some(FreezeRecord {
            mode: FreezeMode::FsyncLock,
            released: true,
            ..Default::default()
        });
        let mut a = m.clone();
        assert!(catch_up_after_unlock(&mut a));
        assert!(a.resync && a.freeze.is_none());
        assert!(
            ["freeze", "sync", "verify"]
                .iter()
                .all(|s| !a.steps.contains_key(*s))
        );
        assert!(a.steps.contains_key("register"), "AWS steps stay done");

        // Still locked: nothing to catch up.
        let mut b = m.clone();
        b.freeze.as_mut().unwrap().released = false;
        assert!(!catch_up_after_unlock(&mut b));
        assert_eq!(b, {
            let mut x = m.clone();
            x.freeze.as_mut().unwrap().released = false;
            x
        });

        // A failed verify without any lock (--freeze none) syncs again too.
        let mut c = m.clone();
        c.freeze = None;
        c.steps.insert("verify".into(), step("failed"));
        assert!(catch_up_after_unlock(&mut c));

        // After the cutover the app writes to Atlas: never re-sync from the old database.
        let mut d = m.clone();
        d.steps.insert("deploy".into(), step("done"));
        assert!(!catch_up_after_unlock(&mut d));
    }
}
