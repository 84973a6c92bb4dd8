//! What a running migration holds, and the shape every step has.

use std::time::Duration;

use crate::aws::Aws;
use crate::cancel::Cancel;
use crate::engine::journal::SharedJournal;
use crate::engine::operator::Operator;
use crate::engine::options::{FreezeMode, Settings};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::state::{MigrateState, unix_now};
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::mongo::Mongo;
use crate::mongo::freeze::{self, Fence};
use crate::uri::MongoUri;
use crate::world::World;

/// How long to wait for a Mongo server to answer before saying it is unreachable.
pub const MONGO_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Fence failures one run rides out before it stops (nothing deployed).
pub const MAX_REFREEZES: u32 = 3;

/// What a step's `check` found before doing anything.
pub enum Check {
    /// Work to do: `apply` runs.
    Run,
    /// Already done (an earlier run got there): recorded done with this note.
    Done(String),
    /// Nothing to do: recorded skipped with this note.
    Skip(String),
}

/// How a step's `apply` ended.
pub enum Outcome {
    /// Finished, with a one-line note.
    Done(String),
    /// Nothing was needed after all.
    Skipped(String),
    /// The step sent the run back (it forgot earlier steps): the runner forgets this step's
    /// record and runs the first unfinished step next.
    Again,
    /// The operator kept it for later: the run ends here, `resume` offers it again.
    Pending(String),
}

/// One step of a migration: described in the plan, then checked and applied by the runner.
/// `apply` is idempotent: run twice, or after a crash part-way, it converges.
#[allow(async_fn_in_trait)] // dispatched statically by the runner, awaited in place
pub trait Step {
    /// Which step this is.
    const ID: StepId;
    /// What it will do, for the plan.
    fn describe(&self, plan: &Plan, world: &World) -> PlannedStep;
    /// Re-reads the live facts it depends on; changes nothing.
    async fn check(&self, _ctx: &mut Ctx<'_>) -> Result<Check> {
        Ok(Check::Run)
    }
    /// Does the work.
    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome>;
}

/// Everything a running migration needs.
pub struct Ctx<'a> {
    /// AWS clients.
    pub aws: Aws,
    /// What discovery found.
    pub world: World,
    /// The approved plan.
    pub plan: Plan,
    /// How efs2atlas reaches the source.
    pub source: MongoUri,
    /// Where efs2atlas writes the data.
    pub target: MongoUri,
    /// The one who answers questions and watches progress.
    pub operator: &'a dyn Operator,
    /// The journal.
    pub journal: SharedJournal,
    /// Ctrl-C / SIGTERM.
    pub cancel: Cancel,
    /// The journaled options.
    pub settings: Settings,
    /// Connections, opened on first use.
    mongo: Option<(Mongo, Mongo)>,
    /// Fence failures in this run (a source that keeps restarting stops the run).
    refreezes: u32,
    /// `--runner ecs`: the data steps run in a runner task this process follows.
    pub remote: Option<crate::engine::remote::link::Remote>,
}

impl<'a> Ctx<'a> {
    /// A context for one run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        aws: Aws,
        world: World,
        plan: Plan,
        (source, target): (MongoUri, MongoUri),
        operator: &'a dyn Operator,
        journal: SharedJournal,
        settings: Settings,
    ) -> Ctx<'a> {
        // With `--runner ecs` the data steps go to a runner task this process follows.
        let remote = settings.runner.as_ref().map(|_| {
            crate::engine::remote::link::Remote::new(
                source.clone(),
                target.clone(),
                operator.assumes_yes(),
            )
        });
        Ctx {
            aws,
            world,
            plan,
            source,
            target,
            operator,
            journal,
            cancel: Cancel::new(),
            settings,
            mongo: None,
            refreezes: 0,
            remote,
        }
    }

    /// The migration's journaled state.
    pub fn state(&self) -> Result<MigrateState> {
        Ok(self
            .journal
            .read(|j| j.migrate.clone())?
            .unwrap_or_default())
    }

    /// Changes the state and saves the journal now.
    pub fn update(&self, f: impl FnOnce(&mut MigrateState)) -> Result<()> {
        self.journal.update(true, |j| {
            f(j.migrate.get_or_insert_with(MigrateState::default))
        })
    }

    /// Writes to `target` from now on (the Atlas step's temporary user): connections are
    /// opened again, and a runner task started later is given the same.
    pub fn set_target(&mut self, target: MongoUri) {
        if let Some(r) = &mut self.remote {
            r.target = target.clone();
        }
        self.target = target;
        self.mongo = None;
    }

    /// Both servers, connected on first use.
    pub async fn mongo(&mut self) -> Result<(Mongo, Mongo)> {
        if self.mongo.is_none() {
            let (s, t) = tokio::join!(
                Mongo::connect(&self.source, "source", MONGO_CONNECT_TIMEOUT),
                Mongo::connect(&self.target, "target", MONGO_CONNECT_TIMEOUT)
            );
            self.mongo = Some((s?, t?));
        }
        self.mongo
            .clone()
            .ok_or_else(|| Error::other("no Mongo connection"))
    }

    /// True while the source holds the write lock this migration took.
    pub fn source_locked(&self) -> bool {
        self.state()
            .ok()
            .and_then(|s| s.freeze)
            .is_some_and(|f| f.holds_lock())
    }

    /// Checks that the freeze this migration took still holds: same source process, still
    /// fsync-locked. `Holds` when there is nothing to check (no lock, or one the server never
    /// confirmed: the user was warned and chose to go on).
    pub async fn fence(&mut self) -> Result<Fence> {
        if let Some(known) = self.fence_known()? {
            return Ok(known);
        }
        let Some(f) = self.state()?.freeze else {
            return Ok(Fence::Holds);
        };
        let (src, _) = self.mongo().await?;
        let cancel = self.cancel.clone();
        crate::mongo::with_retries("checking the source's write freeze", &cancel, || {
            freeze::check(&src, f.process_id.as_deref())
        })
        .await
    }

    /// The fence's answer when the journal alone gives it (no lock to check, or one released);
    /// `None` when the source must be asked.
    pub fn fence_known(&self) -> Result<Option<Fence>> {
        let Some(f) = self.state()?.freeze else {
            return Ok(Some(Fence::Holds));
        };
        if f.mode != FreezeMode::FsyncLock || !f.confirmed {
            return Ok(Some(Fence::Holds));
        }
        if f.released {
            return Ok(Some(Fence::Broken(
                "the source was unlocked before the cutover".into(),
            )));
        }
        Ok(None)
    }

    /// The freeze no longer holds: forget freeze, sync and verify so the runner does them
    /// again (a crash from here on resumes there too) before anything is deployed.
    pub fn refreeze(&mut self, why: &str) -> Result<Outcome> {
        self.refreezes += 1;
        if self.refreezes > MAX_REFREEZES {
            return Err(Error::other(format!(
                "{why}; the freeze was lost {MAX_REFREEZES} times in this run, so efs2atlas stopped without deploying. Find out why the source keeps restarting, then run `efs2atlas resume`"
            )));
        }
        self.operator.notice(&format!(
            "WARNING: {why}. Not deploying: freezing the source again, syncing what changed and verifying before the cutover."
        ));
        self.journal.update(true, |j| {
            j.sync.clear();
            let m = j.migrate.get_or_insert_with(MigrateState::default);
            m.forget_freeze();
            m.refreezes += 1;
        })?;
        Ok(Outcome::Again)
    }

    /// Releases the source's write lock so the old app can write again (abort paths).
    pub async fn unfreeze(&mut self, why: &str) {
        let Ok(st) = self.state() else { return };
        let Some(f) = st.freeze else { return };
        if !f.holds_lock() {
            return;
        }
        let result = match self.mongo().await {
            Ok((src, _)) => freeze::unlock(&src).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.operator.notice(&format!(
                    "source unlocked ({why}); the old app can write again"
                ));
                let _ = self.update(|s| {
                    if let Some(f) = &mut s.freeze {
                        f.released = true;
                        f.ended_unix = Some(unix_now());
                    }
                });
            }
            Err(e) => self.operator.error_line(&format!(
                "could not unlock the source after {why}: {e}; run db.fsyncUnlock() on it by hand"
            )),
        }
    }
}
