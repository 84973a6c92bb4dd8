//! The path users run, over every data shape: `migrate --yes` end to end (moto for AWS, real
//! mongods) with each strategy, locally and with `--runner ecs`, over the rich data set
//! (`support/rich.rs`: every BSON type, mixed `_id`s, documents up to 16 MiB, empty, capped,
//! time-series, clustered, collation and validated collections, views, every index option, odd
//! names), with and without an app writing during the copy, from each MongoDB version users run.
//! Each cell ends byte-exact as the test support compares it (not the tool's own verify) and
//! with the AWS end state checked. Plus `resume` after kill -9 inside catch-up and inside the
//! frozen sync. Every run has a deadline: a hang fails the cell.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::migrate::{assert_migrated, secrets, setup_on};
use crate::rich;

/// App documents (~1 KB) in the main collection of every cell.
const ORDERS: usize = 12_000;

/// How long one cell's migrate may take before it counts as a hang.
const CELL_DEADLINE: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Local,
    Runner,
}

struct Cell {
    strategy: &'static str,
    at: Where,
    writer: bool,
    version: Option<&'static str>,
    /// The target behind the shared-tier (M0) stand-in: refusals, 100 operations/s.
    shared_tier: bool,
}

fn runner_args() -> Vec<String> {
    ["--runner", "ecs", "--runner-image", "efs2atlas:test"]
        .iter()
        .map(|x| x.to_string())
        .collect()
}

/// Seeds, runs the cell's migrate (with an app writing during it when asked), and checks the
/// end state: the AWS "after" world and both servers equal as the test support sees them.
async fn run(cell: Cell) {
    let started = Instant::now();
    let mut s = setup_on(cell.version, 0).await;
    if cell.shared_tier {
        s.tier = Some(crate::sharedtier::SharedTier::start(s.dst.port(), 512, 100));
    }
    let seeded = rich::seed(&s.src.uri(), ORDERS).await;
    if let Some(v) = cell.version {
        assert!(
            seeded.version.starts_with(v),
            "the source runs {v}: {}",
            seeded.version
        );
    }
    let _fake = match cell.at {
        Where::Runner => {
            crate::fakefargate::service_task(&s.acct.conf, &s.fx).await;
            Some(crate::fakefargate::FakeFargate::start(
                &s.acct.conf,
                &s.fx.cluster,
                &format!("127.0.0.1:{}", s.src.port()),
            ))
        }
        Where::Local => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writer = cell
        .writer
        .then(|| rich::app_writer(s.src.uri(), stop.clone(), seeded.timeseries));
    // The app is under way before the migration starts.
    if writer.is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut args = s.args();
    args.extend(["--strategy", cell.strategy, "--yes", "--json"].map(String::from));
    if cell.at == Where::Runner {
        args.extend(runner_args());
    }
    let r = s.cmd(&args).run_within(CELL_DEADLINE);
    stop.store(true, Ordering::Relaxed);
    let writes = match writer {
        Some(w) => w.await.unwrap(),
        None => 0,
    };
    assert_eq!(
        r.code, 0,
        "{} {:?} writer={} from {:?}: {}\n{}",
        cell.strategy, cell.at, cell.writer, cell.version, r.stdout, r.stderr
    );
    r.assert_no_secret(&secrets());
    assert_eq!(r.json()["migration"]["ok"], true, "{}", r.stdout);
    // The estimate comes from rates measured on these servers (the probe collection it wrote
    // on the target is gone: the comparison below would name it).
    assert!(
        r.stderr.contains("estimated at ~") && r.stderr.contains("measured here"),
        "{}",
        r.stderr
    );
    if cell.writer && cell.strategy == "two-pass" {
        assert!(
            writes > 20,
            "the app wrote during the copy: {writes} writes"
        );
    }
    assert_migrated(&s).await;
    let through_tier = s.tier.as_ref().map(crate::tiers::assert_nothing_refused);
    let compared = rich::assert_same(&s.src.uri(), &s.dst.uri()).await;
    assert!(compared >= seeded.docs, "{compared} < {}", seeded.docs);
    let took = |step: &str| {
        r.stderr
            .lines()
            .find(|l| l.starts_with(&format!("{step}: ")))
            .map(|l| l.rsplit_once(" in ").map_or("", |x| x.1).to_string())
            .unwrap_or_default()
    };
    let estimate = r
        .stderr
        .lines()
        .find_map(|l| l.split_once("; copy of ").map(|x| x.1.to_string()))
        .unwrap_or_default();
    println!(
        "matrix cell {} {:?}: copy {}, sync {} (estimate: copy of {estimate})",
        cell.strategy,
        cell.at,
        took("copy"),
        took("sync")
    );
    println!(
        "matrix cell {} {:?} writer={} source {}{}: {compared} documents byte-exact, {writes} app writes, {:.1}s",
        cell.strategy,
        cell.at,
        cell.writer,
        seeded.version,
        through_tier
            .map(|n| format!(" into the M0 stand-in ({n} operations, none refused)"))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_local_with_an_app_writing() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Local,
        writer: true,
        version: None,
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_local_quiet() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Local,
        writer: false,
        version: None,
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_first_local_with_an_app_writing() {
    run(Cell {
        strategy: "freeze-first",
        at: Where::Local,
        writer: true,
        version: None,
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_first_local_quiet() {
    run(Cell {
        strategy: "freeze-first",
        at: Where::Local,
        writer: false,
        version: None,
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_runner_with_an_app_writing() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Runner,
        writer: true,
        version: None,
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_first_runner_quiet() {
    run(Cell {
        strategy: "freeze-first",
        at: Where::Runner,
        writer: false,
        version: None,
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_from_mongo_4_4_with_an_app_writing() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Local,
        writer: true,
        version: Some("4.4"),
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_from_mongo_5_0_with_an_app_writing() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Local,
        writer: true,
        version: Some("5.0"),
        shared_tier: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_from_mongo_6_0_27_with_an_app_writing() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Local,
        writer: true,
        version: Some("6.0.27"),
        shared_tier: false,
    })
    .await;
}

/// Into an M0 (the shared-tier stand-in) without the Admin API: nothing it refuses is sent,
/// and its throttle slows the run without failing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pass_into_a_shared_tier_with_an_app_writing() {
    run(Cell {
        strategy: "two-pass",
        at: Where::Local,
        writer: true,
        version: None,
        shared_tier: true,
    })
    .await;
}

/// The standalone commands over the same data: `copy` while the app writes, then `sync` (the
/// two-sided merge that keeps source documents for patches: it hung on 4–16 MiB documents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_then_sync_over_the_rich_data_ends_byte_exact() {
    let (src, dst) = tokio::task::block_in_place(|| {
        (
            crate::mongod::Mongod::source(),
            crate::mongod::Mongod::target(),
        )
    });
    let seeded = rich::seed(&src.uri(), ORDERS).await;
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = rich::app_writer(src.uri(), stop.clone(), seeded.timeseries);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = crate::common::Cmd::copy(&src.uri(), &dst.uri())
        .dir(dir.path())
        .yes()
        .run_within(CELL_DEADLINE);
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    stop.store(true, Ordering::Relaxed);
    let writes = w.await.unwrap();
    assert!(writes > 20, "the app wrote during the copy: {writes}");
    let sync = crate::common::Cmd::sync(&src.uri(), &dst.uri())
        .dir(dir.path())
        .json()
        .run_within(CELL_DEADLINE);
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    rich::assert_same(&src.uri(), &dst.uri()).await;
}

/// kill -9 of `migrate` while the journal says `step` runs (the link to Atlas slowed from
/// `slow_from` on, so the step lasts), then `resume` to the end: the same end state.
async fn killed_in_then_resumed(step: &str, slow_from: &str) {
    let s = setup_on(None, 0).await;
    let seeded = rich::seed(&s.src.uri(), ORDERS).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = rich::app_writer(s.src.uri(), stop.clone(), seeded.timeseries);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut child = crate::migrate::spawn(&s, None);
    let running = |j: &serde_json::Value, id: &str| {
        j["migrate"]["steps"][id].is_object() && j["migrate"]["steps"][id]["finished_at"].is_null()
    };
    crate::migrate::wait_for(
        &s,
        slow_from,
        |j| running(j, slow_from) || running(j, step),
        &mut child,
    )
    .await;
    s.link.set(crate::tcpfault::Faults {
        bytes_per_sec: Some(500_000),
        ..Default::default()
    });
    crate::migrate::wait_for(&s, step, |j| running(j, step), &mut child).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let j = s.journal_json();
    assert!(
        running(&j, step),
        "killed inside {step}: {:#}",
        j["migrate"]["steps"]
    );
    s.link.set(crate::tcpfault::Faults::default());
    let r = tokio::task::block_in_place(|| s.resume());
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert_eq!(
        r.code, 0,
        "resume after kill -9 in {step}: {}\n{}",
        r.stdout, r.stderr
    );
    assert_migrated(&s).await;
    let compared = rich::assert_same(&s.src.uri(), &s.dst.uri()).await;
    println!(
        "matrix: kill -9 in {step}, resume: {compared} documents byte-exact, {writes} app writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_inside_catch_up_then_resume() {
    killed_in_then_resumed("catch-up", "catch-up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_inside_the_frozen_sync_then_resume() {
    killed_in_then_resumed("sync", "freeze").await;
}
