//! `--runner ecs`: the data steps run in a one-off Fargate task next to the mongo task (the
//! source is reachable only inside the VPC), while this process keeps discovery, questions,
//! the ECS/EFS changes and the report. It starts the runner, follows its events through
//! CloudWatch Logs (progress bars, notices, journal snapshots, step ends), and journals what
//! they say, so `resume` re-attaches to a runner that still runs or starts a new one that
//! continues from the journal. The runner holds the freeze after the data steps and reports
//! the fence until the cutover; only an explicit unfreeze runner releases the lock.

pub mod event;
pub mod link;
pub mod resources;
pub mod setup;

use std::time::{Duration, Instant};

use crate::engine::context::{Ctx, Outcome};
use crate::engine::journal::Journal;
use crate::engine::state::StepRecord;
use crate::engine::step::{StepId, StepStatus};
use crate::error::{Error, Result};
use crate::fargate;
use crate::mongo::freeze::Fence;
use event::{Event, Line};
use link::Live;
pub use link::{DATA_STEPS, Purpose, Remote, is_remote};

/// How often the log stream is read.
const POLL: Duration = Duration::from_millis(700);
/// How often the task's status is checked while waiting.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How long a runner told to stop gets to say its last words.
const STOP_GRACE: Duration = Duration::from_secs(120);
/// How long a fence report may take to come (a runner started to hold included).
const FENCE_LIMIT: Duration = Duration::from_secs(600);
/// How long an unlock runner may take, its start included.
const UNLOCK_LIMIT: Duration = Duration::from_secs(600);

/// Runs data step `id` in the runner task: follows (or starts) the runner until it reports
/// the step's end.
pub async fn run_step(id: StepId, ctx: &mut Ctx<'_>) -> Result<Outcome> {
    // A runner started only to hold (or to unlock) never reports a step's end: asking it for
    // one would wait for ever. Such a runner is stopped and one that runs steps started.
    let other = ctx
        .remote
        .as_ref()
        .and_then(|r| r.live.as_ref())
        .is_some_and(|l| l.purpose != Purpose::Steps && l.ended.is_none() && l.stopped.is_none());
    if other {
        stop_live(ctx, "efs2atlas: a data step must run again").await?;
    }
    attach_or_start(ctx, Purpose::Steps).await?;
    loop {
        let Some(ev) = next_event(ctx).await? else {
            return Err(ended_without(ctx, &format!("finishing step {id}")));
        };
        if let Event::StepEnded { step, status, note } = ev {
            if step == id {
                return Ok(match status {
                    StepStatus::Skipped => Outcome::Skipped(note),
                    StepStatus::Pending => Outcome::Pending(note),
                    _ => Outcome::Done(note),
                });
            }
            // A step the runner ran on its own (the journal snapshot has its record too).
            ctx.update(|s| {
                s.steps.entry(step).or_insert(StepRecord {
                    status,
                    note,
                    ..Default::default()
                });
            })?;
        }
    }
}

/// The fence wherever the data steps run: the journal's answer, else the holding runner's
/// report (with `--runner ecs`), else the source's.
pub async fn fence_any(ctx: &mut Ctx<'_>) -> Result<Fence> {
    if let Some(known) = ctx.fence_known()? {
        return Ok(known);
    }
    if ctx.remote.is_some() {
        fence(ctx).await
    } else {
        ctx.fence().await
    }
}

/// Releases the source's lock wherever the data steps run (abort paths).
pub async fn unfreeze_any(ctx: &mut Ctx<'_>, why: &str) {
    if ctx.remote.is_none() {
        return ctx.unfreeze(why).await;
    }
    if !ctx.source_locked() {
        return;
    }
    // The runner's journal records the unlock (merged as it arrives).
    if unfreeze(ctx, why).await {
        ctx.operator.notice(&format!(
            "source unlocked ({why}); the old app can write again"
        ));
    } else {
        ctx.operator.error_line(&format!(
            "could not unlock the source after {why}; run db.fsyncUnlock() on it by hand (e.g. with `aws ecs execute-command` into the mongo container)"
        ));
    }
}

/// The fence, as the holding runner reports it (a runner is started to hold when none does).
pub async fn fence(ctx: &mut Ctx<'_>) -> Result<Fence> {
    let asked = Instant::now();
    attach_or_start(ctx, Purpose::Hold).await?;
    loop {
        if let Some((at, held, why)) = live(ctx)?.fence.clone()
            && at >= asked
        {
            return Ok(if held {
                Fence::Holds
            } else {
                Fence::Broken(why)
            });
        }
        if asked.elapsed() > FENCE_LIMIT {
            return Ok(Fence::Broken(format!(
                "the runner task did not confirm within {} minutes that the source is still write-locked",
                FENCE_LIMIT.as_secs() / 60
            )));
        }
        if next_event(ctx).await?.is_none() {
            return Ok(Fence::Broken(
                "the runner task ended without confirming the source is still write-locked".into(),
            ));
        }
    }
}

/// Releases the source's lock through a runner (the holding one is stopped first: it never
/// unlocks on its own). Returns false when it could not.
pub async fn unfreeze(ctx: &mut Ctx<'_>, why: &str) -> bool {
    ctx.operator.notice(&format!(
        "unlocking the source ({why}) through a runner task; this takes as long as a task start"
    ));
    let r: Result<bool> = async {
        stop_live(ctx, "efs2atlas: the freeze is being released").await?;
        start(ctx, Purpose::Unfreeze).await?;
        let started = Instant::now();
        while next_event(ctx).await?.is_some() {
            if started.elapsed() > UNLOCK_LIMIT || ctx.cancel.is_cancelled() {
                stop_live(ctx, "efs2atlas: the unlock runner took too long").await?;
                break;
            }
        }
        Ok(live(ctx)?.unlocked)
    }
    .await;
    match r {
        Ok(true) => true,
        Ok(false) => false,
        Err(e) => {
            ctx.operator
                .error_line(&format!("the unlock runner failed: {e}"));
            false
        }
    }
}

/// Removes everything temporary around the runner (the one being followed is stopped first;
/// a holding runner never unlocks on a stop). Failures are reported, not raised: the run's
/// own outcome matters more, and `resume` tries again.
pub async fn teardown(ctx: &mut Ctx<'_>) {
    if ctx.state().map(|s| s.runner.is_none()).unwrap_or(true) {
        return;
    }
    if let Err(e) = stop_live(ctx, "efs2atlas: the migration run is over").await {
        ctx.operator
            .error_line(&format!("could not stop the runner task: {e}"));
    }
    setup::remove(ctx).await;
}

/// Stops the runner being followed (if any) and waits for its last events.
pub async fn stop_live(ctx: &mut Ctx<'_>, reason: &str) -> Result<()> {
    let Some(l) = ctx.remote.as_ref().and_then(|r| r.live.as_ref()) else {
        return Ok(());
    };
    if l.ended.is_some() || l.stopped.is_some() {
        return Ok(());
    }
    let (task, cluster) = (l.task.clone(), setup::cluster(ctx)?);
    fargate::stop(&ctx.aws, &cluster, &task, reason).await?;
    live(ctx)?.stop_sent = Some(Instant::now());
    // A forced stop does not wait for the runner's last words: its log keeps them, and
    // `resume` reads them.
    if crate::cancel::forced() {
        return Ok(());
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if next_event(ctx).await?.is_none() {
            break;
        }
    }
    Ok(())
}

fn live<'c>(ctx: &'c mut Ctx<'_>) -> Result<&'c mut Live> {
    ctx.remote
        .as_mut()
        .and_then(|r| r.live.as_mut())
        .ok_or_else(|| Error::other("no runner task is being followed"))
}

/// Follows the runner this migration already has, when it still runs; otherwise starts one.
async fn attach_or_start(ctx: &mut Ctx<'_>, purpose: Purpose) -> Result<()> {
    let following = ctx
        .remote
        .as_ref()
        .and_then(|r| r.live.as_ref())
        .is_some_and(|l| l.ended.is_none() && l.stopped.is_none());
    if following {
        return Ok(());
    }
    let st = ctx.state()?;
    if let Some(task) = st.runner.as_ref().and_then(|r| r.task.clone())
        && ctx.remote.as_ref().is_some_and(|r| r.live.is_none())
    {
        let state = fargate::describe(&ctx.aws, &st.cluster, &task).await?;
        let seq = st.runner.as_ref().map_or(0, |r| r.seq);
        let mut live = Live::new(task, seq);
        if !state.stopped() {
            set_live(ctx, live);
            ctx.operator
                .notice("following the runner task the interrupted run started");
            return Ok(());
        }
        // Stopped before this run: its last words (the journal it reached) are read as they
        // are, without waiting for late lines (one missed only makes the next runner repeat
        // work from the journal's earlier position), before a new one continues from there.
        live.log_lag = std::time::Duration::ZERO;
        set_live(ctx, live);
        drain(ctx).await?;
    }
    start(ctx, purpose).await
}

/// Reads what a stopped runner wrote that this journal has not taken yet; how it ended is
/// history (a new runner continues).
async fn drain(ctx: &mut Ctx<'_>) -> Result<()> {
    loop {
        match next_event(ctx).await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(e) => {
                let l = live(ctx)?;
                if l.ended.is_some() || l.stopped.is_some() {
                    return Ok(());
                }
                return Err(e);
            }
        }
    }
}

fn set_live(ctx: &mut Ctx<'_>, live: Live) {
    if let Some(r) = ctx.remote.as_mut() {
        r.live = Some(live);
    }
}

/// Starts a runner for `purpose`.
async fn start(ctx: &mut Ctx<'_>, purpose: Purpose) -> Result<()> {
    let task = setup::launch(ctx, purpose).await?;
    ctx.operator.notice(&format!(
        "runner task {} started; its output: CloudWatch Logs {} {}",
        task.rsplit('/').next().unwrap_or(&task),
        fargate::LOG_GROUP,
        fargate::log_stream(&task)
    ));
    let mut live = Live::new(task.clone(), 0);
    live.purpose = purpose;
    set_live(ctx, live);
    ctx.update(|s| {
        if let Some(r) = s.runner.as_mut() {
            r.task = Some(task);
            r.seq = 0;
        }
    })
}

/// The next event that matters to the caller, after applying it; `None` once the runner has
/// ended (its `End` event, or the task stopped and its log is read to the end).
async fn next_event(ctx: &mut Ctx<'_>) -> Result<Option<Event>> {
    loop {
        if let Some(line) = live(ctx)?.queue.pop_front() {
            if line.efs2atlas_event <= live(ctx)?.seq {
                continue;
            }
            live(ctx)?.seq = line.efs2atlas_event;
            // The runner's notices are not progress (its own watchdog speaks through them).
            if !matches!(line.event, Event::Notice { .. } | Event::ErrorLine { .. }) {
                crate::watch::progress();
            }
            let ev = apply(ctx, line.event)?;
            return Ok(Some(ev));
        }
        if live(ctx)?.ended.is_some() {
            return Ok(None);
        }
        if let Some(state) = live(ctx)?.stopped.clone() {
            let l = live(ctx)?;
            // Read to the end and still no `End` after its last lines had time to land: it
            // died (or never started), or it was told to stop and did not say so.
            let lag = if l.heard {
                l.log_lag
            } else {
                std::time::Duration::ZERO
            };
            if l.stopped_at.is_some_and(|t| t.elapsed() >= lag) {
                return Err(match l.stop_sent {
                    Some(_) => Error::interrupted(
                        "interrupted; the runner task stopped without its last report (its progress up to its last report is journaled)",
                    ),
                    None => died(&state),
                });
            }
        }
        if ctx.cancel.is_cancelled() {
            interrupt(ctx).await?;
        }
        let _w = crate::watch::waiting_on(format!(
            "runner task {}: its next event (CloudWatch Logs {})",
            live(ctx)?.task.rsplit('/').next().unwrap_or_default(),
            fargate::LOG_GROUP
        ));
        fetch(ctx).await?;
    }
}

/// Reads more of the log, and checks the task now and then.
async fn fetch(ctx: &mut Ctx<'_>) -> Result<()> {
    if read_more(ctx).await? {
        return Ok(());
    }
    let l = live(ctx)?;
    if l.stopped.is_none() && l.checked.elapsed() >= STATUS_EVERY {
        l.checked = Instant::now();
        let (task, cluster) = (l.task.clone(), setup::cluster(ctx)?);
        let state = fargate::describe(&ctx.aws, &cluster, &task).await?;
        if state.stopped() {
            // One more read: what it wrote before it stopped may have just arrived.
            read_more(ctx).await?;
            let l = live(ctx)?;
            l.stopped = Some(state);
            l.stopped_at = Some(Instant::now());
            return Ok(());
        }
    }
    let l = live(ctx)?;
    if l.stop_sent.is_some() || l.stopped.is_some() {
        tokio::time::sleep(POLL).await;
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(POLL) => {}
        _ = ctx.cancel.cancelled() => {}
    }
    Ok(())
}

/// Reads the next part of the runner's log stream into the queue; true when it got lines.
async fn read_more(ctx: &mut Ctx<'_>) -> Result<bool> {
    let (stream, token) = {
        let l = live(ctx)?;
        (l.stream.clone(), l.token.clone())
    };
    let (lines, next) = fargate::read_logs(&ctx.aws, &stream, token).await?;
    let l = live(ctx)?;
    l.token = next;
    l.heard |= !lines.is_empty();
    l.queue.extend(lines.iter().filter_map(|t| Line::parse(t)));
    Ok(!lines.is_empty())
}

/// Ctrl-C here: the runner is told to stop once (it stops at a batch boundary, journals and
/// ends with exit 5); its last events are still read, within a grace period.
async fn interrupt(ctx: &mut Ctx<'_>) -> Result<()> {
    let cluster = setup::cluster(ctx)?;
    let l = live(ctx)?;
    if let Some(at) = l.stop_sent {
        if at.elapsed() > STOP_GRACE {
            return Err(Error::interrupted(
                "interrupted; the runner task did not confirm it stopped (its progress up to its last report is journaled)",
            ));
        }
        return Ok(());
    }
    l.stop_sent = Some(Instant::now());
    let task = l.task.clone();
    fargate::stop(
        &ctx.aws,
        &cluster,
        &task,
        "efs2atlas: interrupted by the operator",
    )
    .await
}

/// Applies an event: the screen, the journal, the runner's state.
fn apply(ctx: &mut Ctx<'_>, ev: Event) -> Result<Event> {
    let seq = live(ctx)?.seq;
    match &ev {
        Event::Hello { protocol, version } if *protocol != event::VERSION => {
            return Err(Error::other(format!(
                "the runner image runs efs2atlas {version} (protocol {protocol}); this efs2atlas speaks protocol {}: pass --runner-image with the image of this release",
                event::VERSION
            )));
        }
        Event::Notice { message } => ctx.operator.notice(message),
        Event::ErrorLine { message } => ctx.operator.error_line(message),
        Event::Bars { id, label, total } => {
            let b = ctx.operator.bars(label, *total);
            live(ctx)?.bars.insert(*id, b);
        }
        Event::Start {
            id,
            ns,
            estimated,
            done_docs,
            done_bytes,
        } => {
            if let Some(b) = live(ctx)?.bars.get(id) {
                b.start(ns, *estimated, *done_docs, *done_bytes);
            }
        }
        Event::Progress {
            id,
            ns,
            docs,
            bytes,
        } => {
            if let Some(b) = live(ctx)?.bars.get(id) {
                b.progress(ns, *docs, *bytes);
            }
        }
        Event::Wire {
            id,
            to_target_per_sec,
        } => {
            if let Some(b) = live(ctx)?.bars.get(id) {
                b.wire(*to_target_per_sec);
            }
        }
        Event::Finish { id, ns } => {
            if let Some(b) = live(ctx)?.bars.get(id) {
                b.finish(ns);
            }
        }
        Event::BarsDone { id } => {
            if let Some(b) = live(ctx)?.bars.remove(id) {
                b.done();
            }
        }
        Event::Journal { journal } => {
            let theirs: Journal = serde_json::from_value(journal.clone()).map_err(|e| {
                Error::other(format!(
                    "the runner sent a journal that does not parse: {e}"
                ))
            })?;
            ctx.journal.update(true, |mine| merge(mine, theirs, seq))?;
        }
        Event::Fence { held, why } => live(ctx)?.fence = Some((Instant::now(), *held, why.clone())),
        Event::Unlocked => live(ctx)?.unlocked = true,
        Event::End { code, message } => {
            let l = live(ctx)?;
            for (_, b) in l.bars.drain() {
                b.done();
            }
            l.ended = Some((*code, message.clone()));
            if *code != 0 {
                return Err(event::end_error(*code, message));
            }
        }
        Event::Hello { .. } | Event::StepEnded { .. } => {}
    }
    Ok(ev)
}

/// Takes what the runner owns from its journal: the data progress, the freeze, the data
/// steps' records and results. What this process owns (AWS steps, the runner's resources)
/// stays.
pub fn merge(mine: &mut Journal, theirs: Journal, seq: u64) {
    mine.copy = theirs.copy;
    mine.sync = theirs.sync;
    let (Some(m), Some(t)) = (mine.migrate.as_mut(), theirs.migrate) else {
        return;
    };
    m.freeze = t.freeze;
    m.resync = t.resync;
    let (deploy, cleanup) = (m.results.deploy.take(), m.results.cleanup.take());
    m.results = t.results;
    m.results.deploy = deploy;
    m.results.cleanup = cleanup;
    for id in DATA_STEPS {
        match t.steps.get(&id) {
            Some(r) => {
                m.steps.insert(id, r.clone());
            }
            None => {
                m.steps.remove(&id);
            }
        }
    }
    if let Some(r) = m.runner.as_mut() {
        r.seq = seq;
    }
}

/// The runner ended before saying what the caller waited for.
fn ended_without(ctx: &mut Ctx<'_>, what: &str) -> Error {
    let code = live(ctx).ok().and_then(|l| l.ended.clone());
    Error::other(format!(
        "the runner task ended before {what}{}",
        code.map(|(c, m)| format!(
            " (exit {c}{})",
            if m.is_empty() {
                String::new()
            } else {
                format!(": {m}")
            }
        ))
        .unwrap_or_default()
    ))
}

/// A runner that stopped without its last event: the reason ECS gives.
fn died(state: &fargate::TaskState) -> Error {
    Error::other(format!(
        "the runner task stopped without finishing: {}. Check the image (--runner-image), the execution role and the subnets' route to the image registry; the log is in CloudWatch Logs {}",
        state.why(),
        fargate::LOG_GROUP
    ))
}
