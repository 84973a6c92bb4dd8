//! The cutover fence, on real mongods: the source restarts (an fsync lock dies with its process)
//! and the old app writes, at the cutover question, during sync and during verify. Every time
//! the document written after the restart is in the target after the cutover: efs2atlas froze,
//! synced and verified again before deploying.

use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};

use crate::migrate::{Setup, assert_migrated, secrets, setup, spawn};
use crate::pty::Pty;

/// Writes one document to the source as the old app would; returns its `_id`.
async fn app_writes(s: &Setup, id: &str) {
    let c = crate::mongod::client(&s.src.uri()).await;
    tokio::time::timeout(
        Duration::from_secs(20),
        c.database("goals")
            .collection::<Document>("history")
            .insert_one(doc! {"_id": id, "written": "after the restart"}),
    )
    .await
    .expect("the restarted source takes writes (its lock is gone)")
    .unwrap();
}

async fn in_target(s: &Setup, id: &str) -> bool {
    crate::mongod::client(&s.dst.uri())
        .await
        .database("goals")
        .collection::<Document>("history")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .is_some()
}

/// Runs migrate with --yes, restarts the source and writes once `step` is running.
async fn restart_during(step: &str) {
    let mut s = setup(40_000).await;
    s.slow_link();
    let mut child = spawn(&s, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "{step} never ran: {}", log(&s));
        if s.journal_json()["migrate"]["steps"][step]["status"] == "running" {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "migrate ended before {step}: {}",
            log(&s)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = s.src.process_id();
    tokio::task::block_in_place(|| s.src.restart());
    assert_ne!(before, s.src.process_id());
    app_writes(&s, "written-after-restart").await;
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    let out = log(&s);
    assert!(status.success(), "{out}");
    for secret in secrets() {
        assert!(!out.contains(secret), "output leaks {secret}");
    }
    assert!(
        in_target(&s, "written-after-restart").await,
        "the write made after the restart reached the target: {out}"
    );
    let j = s.journal_json();
    let m = &j["migrate"];
    assert!(m["refreezes"].as_u64().unwrap() >= 1, "{m:#}\n{out}");
    assert_eq!(
        m["freeze"]["process_id"].as_str(),
        Some(s.src.process_id().as_str()),
        "the lock at the cutover is the restarted process's"
    );
    assert_eq!(m["freeze"]["fence_held"], true);
    assert!(
        out.contains("restarted since the freeze") && out.contains("Not deploying"),
        "one loud sentence: {out}"
    );
    assert_migrated(&s).await;
}

fn log(s: &Setup) -> String {
    std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_during_sync_is_caught_before_the_cutover() {
    restart_during("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_during_verify_is_caught_before_the_cutover() {
    restart_during("verify").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_at_the_cutover_question_freezes_syncs_and_asks_again() {
    let mut s = setup(2000).await;
    let mut pty = Pty::start(&s);
    pty.expect("with the plan above?").await;
    pty.send("y");
    let question = pty.expect("Cut over: deploy").await;
    let question = question + &pty.expect("until you answer").await;
    assert!(question.contains("read-only for"), "{question}");

    // While the question waits, ECS replaces the mongo task and the old app writes.
    tokio::task::block_in_place(|| s.src.restart());
    app_writes(&s, "written-at-the-question").await;
    pty.send("y");

    pty.expect("restarted since the freeze").await;
    pty.expect("Cut over: deploy").await;
    pty.send("y");
    pty.expect("Type the file system id").await;
    let fs = s.fx.file_system_id.clone();
    pty.send(&fs);
    let status = tokio::task::block_in_place(|| pty.child.wait().unwrap());
    let out = pty.all();
    assert!(status.success(), "{out}");
    for secret in secrets() {
        assert!(!out.contains(secret), "output leaks {secret}");
    }
    assert!(
        in_target(&s, "written-at-the-question").await,
        "the write made at the cutover question reached the target:\n{out}"
    );
    let m = &s.journal_json()["migrate"];
    assert_eq!(m["refreezes"], 1, "{m:#}");
    assert_eq!(m["freeze"]["fence_held"], true, "{m:#}");
    assert!(out.contains("still held at the cutover"), "{out}");
    assert_migrated(&s).await;
}
