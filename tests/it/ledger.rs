//! The ledger of what Atlas acknowledged: checked against Atlas before the freeze (so a third
//! party writing to Atlas is caught while nothing is frozen), used by the frozen sync instead
//! of reading Atlas back, and given up loudly — reading both sides — when it is damaged.

use std::time::Duration;

use mongodb::bson::{Document, doc};

use crate::migrate::{assert_migrated, setup, spawn, wait_for};
use crate::mongod::client;

fn child_log(s: &crate::migrate::Setup) -> String {
    std::fs::read_to_string(s.dir.path().join("child.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_write_to_atlas_during_the_copy_is_caught_before_the_freeze() {
    let s = setup(40_000).await;
    s.slow_link();
    let mut child = spawn(&s, None);
    let part_way = |j: &serde_json::Value| {
        let c = &j["copy"]["collections"]["goals.history"];
        c["docs"].as_u64().unwrap_or(0) > 0 && c["data_done"] == false
    };
    wait_for(&s, "the copy to be part-way", part_way, &mut child).await;
    // Someone else writes to Atlas while efs2atlas copies into it.
    let stranger = mongodb::bson::oid::ObjectId::new();
    client(&s.dst.uri())
        .await
        .database("goals")
        .collection::<Document>("history")
        .insert_one(doc! {"_id": stranger, "by": "someone else"})
        .await
        .unwrap();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    let log = child_log(&s);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("not what efs2atlas wrote") && log.contains(&stranger.to_hex()),
        "{log}"
    );
    let j = s.journal_json();
    assert_eq!(j["migrate"]["steps"]["catch-up"]["status"], "failed", "{j}");
    assert!(
        j["migrate"]["freeze"].is_null(),
        "nothing was frozen: {}",
        j["migrate"]["freeze"]
    );
    // Once the stranger's document is gone, resume finishes the migration.
    client(&s.dst.uri())
        .await
        .database("goals")
        .collection::<Document>("history")
        .delete_one(doc! {"_id": stranger})
        .await
        .unwrap();
    s.link.set(Default::default());
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_deleted_ledger_is_given_up_loudly_and_the_copy_is_still_exact() {
    let s = setup(40_000).await;
    s.slow_link();
    let mut child = spawn(&s, None);
    let copied = |j: &serde_json::Value| j["migrate"]["steps"]["copy"]["status"] == "done";
    wait_for(&s, "the copy to finish", copied, &mut child).await;
    child.kill().unwrap();
    tokio::task::block_in_place(|| child.wait()).unwrap();
    s.link.set(Default::default());
    let dir = std::path::PathBuf::from(format!("{}.ledger", s.journal()));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ledger"))
        .collect();
    // The two biggest (an empty collection's ledger is an empty file).
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    assert!(files.len() >= 2, "a ledger per collection: {files:?}");
    // One ledger changed on disk, another deleted.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    if let Some(b) = bytes.get_mut(10) {
        *b ^= 0xff;
    }
    std::fs::write(&files[0], bytes).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("damaged") && r.stderr.contains("both sides"),
        "the fallback is loud: {}",
        r.stderr
    );
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frozen_sync_and_verify_read_back_only_what_they_patched() {
    let s = setup(30_000).await;
    let admin = client(&s.dst.admin_uri()).await;
    let returned = || async {
        let st = admin
            .database("admin")
            .run_command(doc! {"serverStatus": 1})
            .await
            .unwrap();
        st.get_document("metrics")
            .and_then(|m| m.get_document("document"))
            .and_then(|d| d.get_i64("returned"))
            .unwrap()
    };
    // The app writes while the copy runs, so the frozen sync has something to patch.
    let src = client(&s.src.uri()).await;
    let history = src.database("goals").collection::<Document>("history");
    s.slow_link();
    let mut child = spawn(&s, None);
    let part_way = |j: &serde_json::Value| {
        j["copy"]["collections"]["goals.history"]["docs"]
            .as_u64()
            .unwrap_or(0)
            > 0
    };
    wait_for(&s, "the copy to start", part_way, &mut child).await;
    // The app keeps writing until the freeze holds its writes back, so the frozen sync has
    // the last ones to patch.
    let writer = tokio::spawn(async move {
        for n in 0.. {
            let w = history.insert_one(doc! {"_id": format!("late-{n}"), "n": n});
            if tokio::time::timeout(Duration::from_secs(3), w)
                .await
                .is_err()
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        0
    });
    let frozen = |j: &serde_json::Value| !j["migrate"]["steps"]["freeze"].is_null();
    wait_for(&s, "the freeze", frozen, &mut child).await;
    let before = returned().await;
    let verified = |j: &serde_json::Value| j["migrate"]["steps"]["verify"]["status"] == "done";
    wait_for(&s, "verify", verified, &mut child).await;
    let after = returned().await;
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "{}", child_log(&s));
    let written = writer.await.unwrap();
    let j = s.journal_json();
    let sync = &j["migrate"]["results"]["sync"];
    let patched = ["inserted", "replaced", "deleted"]
        .iter()
        .map(|k| sync[*k].as_u64().unwrap())
        .sum::<u64>();
    let read = (after - before) as u64;
    eprintln!(
        "frozen window: {read} documents read from Atlas, {patched} patched, {written} written"
    );
    assert!(patched > 0, "the frozen sync had writes to patch: {sync}");
    // Under the freeze Atlas is never read in full: only the patched documents come back.
    assert!(
        read <= patched,
        "the frozen window read {read} documents from Atlas for {patched} patched ({sync})"
    );
    assert!(
        j["migrate"]["results"]["catch_up"]["audited"]
            .as_u64()
            .unwrap()
            >= 30_000
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_the_ledger_is_written_then_resume_keeps_using_it() {
    let s = setup(40_000).await;
    s.slow_link();
    let mut child = spawn(&s, None);
    let part_way = |j: &serde_json::Value| {
        let c = &j["copy"]["collections"]["goals.history"];
        c["docs"].as_u64().unwrap_or(0) > 5_000 && c["data_done"] == false
    };
    wait_for(&s, "the copy to be part-way", part_way, &mut child).await;
    child.kill().unwrap();
    tokio::task::block_in_place(|| child.wait()).unwrap();
    s.link.set(Default::default());
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stderr.contains("damaged") && !r.stderr.contains("both sides"),
        "the ledger cut back to the journal's mark is used, not given up: {}",
        r.stderr
    );
    let audited = s.journal_json()["migrate"]["results"]["catch_up"]["audited"]
        .as_u64()
        .unwrap();
    assert!(
        audited >= 40_000,
        "Atlas was checked against the whole ledger: {audited}"
    );
    assert_migrated(&s).await;
}
