//! Real-server events ridden out without a rerun: the Atlas-like target's primary steps down
//! (a real election in a three-member set) during copy, sync and verify, and the source mongod
//! restarts during the bulk copy of a migration. Each step finishes and the copy is exact.
//!
//! The source sits behind a slow link (the target cannot: a replica-set client must reach
//! every member) so each step lasts long enough for the event to land inside it.

use std::process::Child;
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc, oid::ObjectId};

use crate::common::{Cmd, Run};
use crate::migrate::{assert_migrated, setup};
use crate::mongod::{Mongod, client};
use crate::tcpfault::{Faults, TcpFault};

const DOCS: i32 = 40_000;

async fn seed(uri: &str) {
    let c = client(uri).await;
    let docs: Vec<Document> = (0..DOCS)
        .map(|i| doc! {"_id": ObjectId::new(), "i": i, "pad": "e".repeat(100)})
        .collect();
    c.database("fo")
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
}

fn slow(src: &Mongod) -> TcpFault {
    let p = TcpFault::start(src.port());
    p.set(Faults {
        bytes_per_sec: Some(1_500_000),
        ..Default::default()
    });
    p
}

/// Starts a command over the slow link, its bytes sent as they are (the link's rate means the
/// data's bytes).
fn start(cmd: Cmd) -> Child {
    cmd.env("EFS2ATLAS_COMPRESSORS", "none").piped().spawn()
}

fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

/// Waits until `cond` holds on the journal at `path`.
fn wait_journal(path: &str, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = crate::common::journal_at(path);
        if cond(&j) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {j}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn assert_equal(src: &Mongod, dst: &Mongod) {
    let r = Cmd::verify(&src.uri(), &dst.uri()).json().run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["verify"]["ok"], true);
}

/// A seeded source and a three-member target holding a finished copy of it.
async fn copied(dir: &tempfile::TempDir) -> (Mongod, Mongod) {
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target_set(3)));
    seed(&src.uri()).await;
    let cj = dir.path().join("copy.json").display().to_string();
    let r = Cmd::copy(&src.uri(), &dst.uri()).journal(&cj).run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    (src, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_primary_steps_down_during_the_copy() {
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target_set(3)));
    seed(&src.uri()).await;
    let link = slow(&src);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j.json").display().to_string();
    let (s, t) = (src.uri_via(link.port), dst.uri());
    let child = start(Cmd::copy(&s, &t).journal(&j));
    tokio::task::block_in_place(|| {
        wait_journal(&j, "the copy to be part-way", |v| {
            let c = &v["copy"]["collections"]["fo.events"];
            c["docs"].as_u64().unwrap_or(0) > 0 && c["data_done"] == false
        });
        dst.step_down();
    });
    let r = tokio::task::block_in_place(|| finish(child));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = crate::common::journal_at(&j);
    assert_eq!(j["copy"]["collections"]["fo.events"]["docs"], DOCS);
    assert_equal(&src, &dst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_primary_steps_down_during_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = copied(&dir).await;
    // The app changes a fifth of the documents after the copy.
    let ev = client(&src.uri())
        .await
        .database("fo")
        .collection::<Document>("events");
    ev.update_many(
        doc! {"i": {"$mod": [5, 0]}},
        doc! {"$set": {"changed": true}},
    )
    .await
    .unwrap();
    ev.delete_many(doc! {"i": {"$mod": [50, 1]}}).await.unwrap();
    ev.insert_many((0..2000).map(|i| doc! {"_id": ObjectId::new(), "late": i}))
        .await
        .unwrap();
    let link = slow(&src);
    let sj = dir.path().join("sync.json").display().to_string();
    let (s, t) = (src.uri_via(link.port), dst.uri());
    let child = start(Cmd::sync(&s, &t).journal(&sj).json());
    tokio::task::block_in_place(|| {
        wait_journal(&sj, "the sync to start", |v| !v.is_null());
        std::thread::sleep(Duration::from_millis(500));
        dst.step_down();
    });
    let r = tokio::task::block_in_place(|| finish(child));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert!(
        v["sync"]["inserted"].as_u64().unwrap() > 0,
        "the sync had work to do: {v:#}"
    );
    assert_equal(&src, &dst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_primary_steps_down_during_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = copied(&dir).await;
    let link = slow(&src);
    let s = src.uri_via(link.port);
    let started = Instant::now();
    let child = start(Cmd::verify(&s, &dst.uri()).json().args(&["-v"]));
    tokio::task::block_in_place(|| {
        std::thread::sleep(Duration::from_millis(1200));
        dst.step_down();
    });
    let r = tokio::task::block_in_place(|| finish(child));
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "verify lasted past the step-down"
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["verify"]["ok"], true);
    assert_eq!(
        r.json()["verify"]["documents_compared"].as_u64(),
        Some(DOCS as u64),
        "documents, not sides"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_restarts_during_the_bulk_copy_of_a_migration() {
    let mut s = setup(40_000).await;
    // The source is read through a slow link, so the copy is still reading when it restarts.
    let link = slow(&s.src);
    s.uncompressed();
    let mut a = s.args();
    let i = a.iter().position(|x| x == "--source-uri").unwrap();
    a[i + 1] = s.src.uri_via(link.port);
    a.extend(["--yes".to_string(), "-v".to_string()]);
    let log_path = s.dir.path().join("child.log");
    let mut child = s.cmd(&a).log_to(&log_path).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = s.journal_json();
        let c = &j["copy"]["collections"]["goals.history"];
        if c["docs"].as_u64().unwrap_or(0) > 0 && c["data_done"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "copy never got part-way: {j}");
        assert!(child.try_wait().unwrap().is_none(), "migrate ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Before the freeze: ECS replaces the mongo task; it comes back on the same EFS.
    tokio::task::block_in_place(|| s.src.restart());
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "{log}");
    assert!(log.contains("retrying"), "the copy rode it out: {log}");
    let j = s.journal_json();
    assert_eq!(
        j["migrate"]["refreezes"], 0,
        "the restart was before the freeze"
    );
    assert_eq!(j["copy"]["collections"]["goals.history"]["docs"], 40_000);
    assert_migrated(&s).await;
}
