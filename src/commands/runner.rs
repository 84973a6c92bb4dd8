//! `efs2atlas runner` (hidden): the data steps inside a one-off Fargate task next to the mongo
//! task. It reads its instructions from one environment variable (injected by ECS from a
//! temporary secret: the URIs never appear in a command line or the task definition), runs
//! the steps it was given with the same engine as a local run, and reports everything as JSON
//! event lines on stdout (`engine::remote::event`). SIGTERM (StopTask) stops it at a batch
//! boundary, exit 5. After the steps it can hold the freeze: it reports every few seconds
//! that the fence still holds, until it is stopped; it never unlocks the source unless told to.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::Aws;
use crate::deploy::DeployObserver;
use crate::engine::context::Ctx;
use crate::engine::journal::Journal;
use crate::engine::operator::{Operator, Progress, Typed};
use crate::engine::plan::model::{Plan, PlannedStep};
use crate::engine::remote::event::{Event, Line, Spec, VERSION};
use crate::engine::step::{StepId, StepStatus};
use crate::error::{Error, Result, exit};
use crate::mongo::freeze::Fence;
use crate::mongo::observe::Observer;
use crate::mongo::verify::VerifyReport;
use crate::uri::MongoUri;
use crate::world::World;

/// Seconds between two fence reports while holding.
const FENCE_EVERY: Duration = Duration::from_secs(2);
/// A source that stays unreachable this long while holding is gone (the cutover stopped it).
const GONE_AFTER: Duration = Duration::from_secs(30);

/// Writes event lines on stdout, numbered.
pub struct Emitter {
    seq: AtomicU64,
    out: Mutex<()>,
}

impl Emitter {
    fn new() -> Emitter {
        Emitter {
            seq: AtomicU64::new(0),
            out: Mutex::new(()),
        }
    }

    /// Writes one event line (and flushes: awslogs ships what is written).
    pub fn emit(&self, event: Event) {
        let _guard = self.out.lock();
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let line = Line {
            efs2atlas_event: n,
            event,
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.to_text());
        let _ = out.flush();
    }
}

/// Runs the runner: reads its spec, runs, emits `End`; returns the exit code.
pub async fn runner() -> i32 {
    let em = Arc::new(Emitter::new());
    em.emit(Event::Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: VERSION,
    });
    let (code, message) = match run(&em).await {
        Ok(()) => (exit::OK, String::new()),
        Err(e) => (e.exit_code(), e.message.clone()),
    };
    em.emit(Event::End { code, message });
    code
}

async fn run(em: &Arc<Emitter>) -> Result<()> {
    let raw = std::env::var(crate::fargate::SPEC_ENV).map_err(|_| {
        Error::usage(format!(
            "{} is not set: the runner is started by `efs2atlas migrate --runner ecs`, not by hand",
            crate::fargate::SPEC_ENV
        ))
    })?;
    let spec: Spec = serde_json::from_str(&raw)
        .map_err(|e| Error::usage(format!("the runner's instructions do not parse: {e}")))?;
    if spec.protocol != VERSION {
        return Err(Error::usage(format!(
            "the controller speaks protocol {}, this runner {VERSION}: use the runner image of the same efs2atlas release (--runner-image)",
            spec.protocol
        )));
    }
    let source = MongoUri::parse("source", &spec.source)?;
    let target = MongoUri::parse("target", &spec.target)?;
    let journal: Journal = serde_json::from_value(spec.journal.clone())
        .map_err(|e| Error::usage(format!("the runner's journal does not parse: {e}")))?;
    let dir = std::env::temp_dir().join(format!("efs2atlas-runner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the runner's directory", e))?;
    let path = dir.join("journal.json");
    let mut journal = journal;
    journal.save(&path)?;
    let settings = journal
        .migrate
        .as_ref()
        .map(|m| m.settings.clone())
        .unwrap_or_default();
    // The runner runs the steps itself: no runner of its own.
    let settings = crate::engine::options::Settings {
        runner: None,
        ..settings
    };
    let strategy = settings.strategy;
    crate::mongo::wire::set_from(settings.compressors.as_deref())?;
    let shared = crate::commands::migrate::shared(&path, journal, strategy);
    let op = RemoteOperator {
        em: em.clone(),
        yes: spec.yes,
        bars: AtomicU32::new(0),
        journal: path.clone(),
    };
    // The runner calls no AWS API; the engine's context still holds clients.
    let conf = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let aws = Aws::from_conf(&conf, spec.region.clone());
    let world = World {
        account: spec.account.clone(),
        region: spec.region.clone(),
        caller_arn: "the runner task".into(),
        ..World::default()
    };
    let plan = Plan {
        strategy,
        steps: spec
            .steps
            .iter()
            .map(|s| PlannedStep::new(*s, ""))
            .collect(),
        ..Plan::default()
    };
    let mut ctx = Ctx::new(aws, world, plan, (source, target), &op, shared, settings);
    let snapshots = tokio::spawn(snapshot_loop(path.clone(), em.clone()));
    let result = steps_then_hold(&mut ctx, &spec, &op).await;
    snapshots.abort();
    op.snapshot();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The steps, then the hold (or the unlock).
async fn steps_then_hold(ctx: &mut Ctx<'_>, spec: &Spec, op: &RemoteOperator) -> Result<()> {
    ctx.cancel.on_signals();
    if spec.unfreeze {
        ctx.unfreeze("asked by efs2atlas").await;
        op.snapshot();
        if !ctx.source_locked() {
            op.em.emit(Event::Unlocked);
            return Ok(());
        }
        return Err(Error::other("the source could not be unlocked"));
    }
    // The engine's own runner: the same steps, journal and retries as a local run.
    crate::engine::runner::run_steps(ctx).await?;
    if spec.hold && ctx.source_locked() {
        hold(ctx, spec, op).await?;
    }
    Ok(())
}

/// Reports the fence until stopped, the source is gone, the fence breaks, or time is up.
async fn hold(ctx: &mut Ctx<'_>, spec: &Spec, op: &RemoteOperator) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(spec.hold_secs.max(60));
    let mut unreachable_since: Option<Instant> = None;
    op.notice("holding the write freeze until the cutover");
    while Instant::now() < deadline && !ctx.cancel.is_cancelled() {
        match ctx.fence().await {
            Ok(Fence::Holds) => {
                unreachable_since = None;
                op.em.emit(Event::Fence {
                    held: true,
                    why: String::new(),
                });
            }
            Ok(Fence::Broken(why)) => {
                op.em.emit(Event::Fence { held: false, why });
                return Ok(());
            }
            Err(e) if e.is_interrupted() => break,
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GONE_AFTER {
                    op.notice(&format!("the source is gone ({e}); the hold ends"));
                    return Ok(());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FENCE_EVERY) => {}
            _ = ctx.cancel.cancelled() => break,
        }
    }
    // Stopped or out of time: the lock stays (only an explicit unfreeze releases it).
    Ok(())
}

/// Emits the journal whenever its file changes.
async fn snapshot_loop(path: PathBuf, em: Arc<Emitter>) {
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(v) = read_journal(&path) {
            let text = v.to_string();
            if text != last {
                last = text;
                em.emit(Event::Journal { journal: v });
            }
        }
    }
}

fn read_journal(path: &std::path::Path) -> Option<serde_json::Value> {
    Journal::load(path)
        .ok()
        .flatten()
        .and_then(|j| serde_json::to_value(j).ok())
}

/// Answers and reports as events.
struct RemoteOperator {
    em: Arc<Emitter>,
    yes: bool,
    bars: AtomicU32,
    journal: PathBuf,
}

impl RemoteOperator {
    /// Sends the journal as it is on disk now.
    fn snapshot(&self) {
        if let Some(v) = read_journal(&self.journal) {
            self.em.emit(Event::Journal { journal: v });
        }
    }
}

impl Operator for RemoteOperator {
    fn confirm(&self, question: &str) -> Result<bool> {
        if self.yes {
            return Ok(true);
        }
        Err(Error::refused(format!(
            "the runner task cannot ask \"{question}\"; run again with --yes to accept it"
        )))
    }

    fn type_to_confirm(&self, question: &str, _expected: &str) -> Result<Typed> {
        Err(Error::refused(format!(
            "the runner task cannot ask \"{question}\""
        )))
    }

    fn notice(&self, message: &str) {
        self.em.emit(Event::Notice {
            message: message.to_string(),
        });
    }

    fn error_line(&self, message: &str) {
        self.em.emit(Event::ErrorLine {
            message: message.to_string(),
        });
    }

    fn show_plan(&self, _plan: &Plan, _world: &World, _dry_run: bool) {}

    fn show_verify(&self, report: &VerifyReport) {
        if !report.ok {
            self.notice(&format!(
                "verify found differences in {} collection(s)",
                report.collections.iter().filter(|c| !c.ok).count()
            ));
        }
    }

    fn bars(&self, label: &str, total_docs: u64) -> Box<dyn Progress> {
        let id = self.bars.fetch_add(1, Ordering::SeqCst) + 1;
        self.em.emit(Event::Bars {
            id,
            label: label.to_string(),
            total: total_docs,
        });
        Box::new(RemoteBars {
            em: self.em.clone(),
            id,
            pending: Mutex::new(BTreeMap::new()),
        })
    }

    fn spinner(&self, _label: &str) -> Box<dyn Progress> {
        Box::new(Silent)
    }

    fn step_ended(&self, step: StepId, status: StepStatus, note: &str) {
        self.snapshot();
        self.em.emit(Event::StepEnded {
            step,
            status,
            note: note.to_string(),
        });
    }
}

/// Progress as events, batched per collection to at most a few lines a second.
struct RemoteBars {
    em: Arc<Emitter>,
    id: u32,
    pending: Mutex<BTreeMap<String, (u64, u64, Instant)>>,
}

impl RemoteBars {
    fn flush(&self, ns: &str, force: bool) {
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        let Some((docs, bytes, since)) = p.get(ns).copied() else {
            return;
        };
        if docs == 0 && bytes == 0 || !force && since.elapsed() < Duration::from_millis(500) {
            return;
        }
        p.insert(ns.to_string(), (0, 0, Instant::now()));
        self.em.emit(Event::Progress {
            id: self.id,
            ns: ns.to_string(),
            docs,
            bytes,
        });
    }
}

impl Observer for RemoteBars {
    fn start(&self, ns: &str, estimated_docs: u64, done_docs: u64, done_bytes: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(ns.to_string(), (0, 0, Instant::now()));
        }
        self.em.emit(Event::Start {
            id: self.id,
            ns: ns.to_string(),
            estimated: estimated_docs,
            done_docs,
            done_bytes,
        });
    }

    fn progress(&self, ns: &str, docs: u64, bytes: u64) {
        if let Ok(mut p) = self.pending.lock() {
            let e = p.entry(ns.to_string()).or_insert((0, 0, Instant::now()));
            e.0 += docs;
            e.1 += bytes;
        }
        self.flush(ns, false);
    }

    fn wire(&self, to_target_per_sec: f64) {
        self.em.emit(Event::Wire {
            id: self.id,
            to_target_per_sec,
        });
    }

    fn finish(&self, ns: &str) {
        self.flush(ns, true);
        self.em.emit(Event::Finish {
            id: self.id,
            ns: ns.to_string(),
        });
    }
}

impl DeployObserver for RemoteBars {}

impl Progress for RemoteBars {
    fn done(&self) {
        self.em.emit(Event::BarsDone { id: self.id });
    }
}

/// Progress nobody sees (the runner has no deployment to watch).
struct Silent;
impl Observer for Silent {}
impl DeployObserver for Silent {}
impl Progress for Silent {
    fn done(&self) {}
}
