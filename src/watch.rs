//! What a run is waiting on, so no wait is silent. Code about to wait on something outside
//! the process (a server's reply, memory held by others, a runner's log, an AWS waiter) names it
//! with [`waiting_on`] for as long as it waits; code that moves data on calls [`progress`].
//! [`watched`] runs a step and, when it has made no progress for [`STALL`], reports once what
//! it has waited on longest (which side, which operation, which collection) — and again, with
//! a new line, if the stall goes on; it reports the end of the stall too.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// No progress for this long is worth a line (`EFS2ATLAS_STALL_SECS` changes it: a longer one
/// for a link known to pause, a short one in tests).
pub const STALL: Duration = Duration::from_secs(60);

static STALL_AFTER: LazyLock<Duration> = LazyLock::new(|| {
    std::env::var("EFS2ATLAS_STALL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(STALL, Duration::from_secs)
});

/// How often a watched step is looked at.
const TICK: Duration = Duration::from_secs(5);

static START: LazyLock<Instant> = LazyLock::new(Instant::now);
static LAST_PROGRESS_MS: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static WAITS: Names = Mutex::new(BTreeMap::new());
static DOING: Names = Mutex::new(BTreeMap::new());

fn now_ms() -> u64 {
    START.elapsed().as_millis() as u64
}

/// Something moved (a reply arrived, a batch was acknowledged, documents were compared).
pub fn progress() {
    LAST_PROGRESS_MS.store(now_ms(), Ordering::Relaxed);
}

/// How long since the last [`progress`].
pub fn since_progress() -> Duration {
    Duration::from_millis(now_ms().saturating_sub(LAST_PROGRESS_MS.load(Ordering::Relaxed)))
}

/// Names what the caller waits on until the guard is dropped, e.g.
/// `target: inserting into shop.orders (3 documents, 9.0 MiB)`.
pub fn waiting_on(what: impl Into<String>) -> Named {
    Named::new(&WAITS, what.into())
}

/// Names the work under way (e.g. `syncing shop.orders`) until the guard is dropped: what a
/// stall line says when no wait on a server is named.
pub fn doing(what: impl Into<String>) -> Named {
    Named::new(&DOING, what.into())
}

type Names = Mutex<BTreeMap<u64, (String, Instant)>>;

/// A wait or a piece of work being named; it ends when dropped.
#[derive(Debug)]
pub struct Named {
    id: u64,
    map: &'static Names,
}

impl Named {
    fn new(map: &'static Names, what: String) -> Named {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = map.lock() {
            w.insert(id, (what, Instant::now()));
        }
        Named { id, map }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        if let Ok(mut w) = self.map.lock() {
            w.remove(&self.id);
        }
    }
}

fn oldest(m: &Names) -> Option<(String, Duration)> {
    let w = m.lock().ok()?;
    w.values()
        .min_by_key(|(_, since)| *since)
        .map(|(what, since)| (what.clone(), since.elapsed()))
}

/// The wait under way the longest (or, when no wait is named, the oldest work under way), and
/// for how long.
pub fn longest_wait() -> Option<(String, Duration)> {
    oldest(&WAITS).or_else(|| oldest(&DOING).map(|(what, d)| (format!("a server while {what}"), d)))
}

/// What a watched step reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// No progress for this long; the line says what it waits on.
    Stalled(String),
    /// Progress again after a reported stall.
    Moving,
}

/// The line for a stall of `step`.
pub fn stall_line(step: &str) -> String {
    let idle = since_progress().as_secs();
    match longest_wait() {
        Some((what, for_)) => format!(
            "{step}: no progress for {idle}s; waiting on {what} (for {}s). Ctrl-C stops the run (resume continues)",
            for_.as_secs()
        ),
        None => format!(
            "{step}: no progress for {idle}s; not waiting on any server (busy here). Ctrl-C stops the run (resume continues)"
        ),
    }
}

/// What to report at a tick: `idle` since the last progress, the stall threshold, and the
/// idle time at the last stall report (if the stall was reported and has not ended). Returns
/// the report, if any, and the new last-report mark.
fn decide(
    idle: Duration,
    stall: Duration,
    reported_at: Option<Duration>,
) -> (Option<bool>, Option<Duration>) {
    match reported_at {
        // Progress since the report: the stall is over.
        Some(at) if idle < at => (Some(false), None),
        // Still stalled: again once per further threshold.
        Some(at) if idle >= at + stall => (Some(true), Some(idle)),
        Some(at) => (None, Some(at)),
        None if idle >= stall => (Some(true), Some(idle)),
        None => (None, None),
    }
}

/// Runs `fut` (one step of `step`'s work), calling `report` when it has made no progress for
/// the stall threshold (and again every further threshold the stall lasts), and once when it
/// moves again.
pub async fn watched<T>(
    step: &str,
    fut: impl Future<Output = T>,
    mut report: impl FnMut(Report),
) -> T {
    progress();
    tokio::pin!(fut);
    let stall = *STALL_AFTER;
    let mut tick = tokio::time::interval(TICK.min(stall));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_at: Option<Duration> = None;
    loop {
        tokio::select! {
            r = &mut fut => {
                if reported_at.is_some() {
                    report(Report::Moving);
                }
                return r;
            }
            _ = tick.tick() => {
                let (said, next) = decide(since_progress(), stall, reported_at);
                reported_at = next;
                match said {
                    Some(true) => report(Report::Stalled(stall_line(step))),
                    Some(false) => report(Report::Moving),
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_is_named_until_it_ends() {
        let a = waiting_on("target: inserting into shop.a");
        std::thread::sleep(Duration::from_millis(5));
        let b = waiting_on("source: reading shop.b");
        let (what, _) = longest_wait().unwrap();
        assert_eq!(what, "target: inserting into shop.a");
        drop(a);
        assert_eq!(longest_wait().unwrap().0, "source: reading shop.b");
        drop(b);
        assert!(stall_line("copy").starts_with("copy: no progress for"));
    }

    #[test]
    fn a_stall_is_reported_once_per_threshold_and_its_end_once() {
        let s = Duration::from_secs(60);
        let secs = Duration::from_secs;
        assert_eq!(decide(secs(30), s, None), (None, None));
        assert_eq!(decide(secs(61), s, None), (Some(true), Some(secs(61))));
        assert_eq!(decide(secs(70), s, Some(secs(61))), (None, Some(secs(61))));
        assert_eq!(
            decide(secs(125), s, Some(secs(61))),
            (Some(true), Some(secs(125))),
            "a long stall is said again, once a threshold"
        );
        assert_eq!(decide(secs(2), s, Some(secs(61))), (Some(false), None));
    }
}
