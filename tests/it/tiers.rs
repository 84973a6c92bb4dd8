//! Atlas's shared tiers (M0, Flex) without the Admin API: the target is the real mongod behind
//! the shared-tier stand-in (`support/sharedtier.rs`), which refuses what those tiers refuse,
//! throttles, and refuses writes past a space quota, in Atlas's words.

use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};

use crate::migrate::{Setup, secrets, setup};
use crate::mongod::Mongod;
use crate::sharedtier::SharedTier;

/// Each migrate here has a deadline: a hang fails the test.
const DEADLINE: Duration = Duration::from_secs(180);

/// The stand-in itself: refuses what M0 refuses, in Atlas's shape, and throttles.
#[tokio::test]
async fn the_stand_in_refuses_what_m0_refuses_and_throttles() {
    let dst = crate::common::off_runtime(Mongod::target);
    let tier = SharedTier::start(dst.port(), 512, 100);
    let c = crate::mongod::client(&dst.uri_via(tier.port)).await;
    let admin = c.database("admin");
    for cmd in [
        doc! {"hostInfo": 1},
        doc! {"fsync": 1, "lock": true},
        doc! {"replSetGetStatus": 1},
        doc! {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "cursor": {}},
        doc! {"insert": "x", "documents": [{"a": 1}]},
    ] {
        let e = admin.run_command(cmd.clone()).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("AtlasError") && text.contains("8000"),
            "{cmd}: {text}"
        );
    }
    let shop = c.database("shop");
    shop.collection::<Document>("o")
        .insert_one(doc! {"a": 1})
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..50 {
        shop.run_command(doc! {"ping": 1}).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "100 operations/s: {:?}",
        started.elapsed()
    );
    assert_eq!(tier.seen(|s| s.refused.len()), 5);
}

/// The setup with `docs` small documents more, the target behind a shared tier of `quota`
/// MiB at 100 operations/s.
async fn on_a_shared_tier(docs: usize, quota: u64) -> Setup {
    let mut s = setup(docs).await;
    s.tier = Some(SharedTier::start(s.dst.port(), quota, 100));
    s
}

/// The app can write to the source (no freeze left behind): a write ends within seconds.
async fn source_writable(s: &Setup) {
    let c = crate::mongod::client(&s.src.uri()).await;
    let coll = c.database("goals").collection::<Document>("after");
    let r = tokio::time::timeout(Duration::from_secs(10), coll.insert_one(doc! {"ok": 1})).await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "the source takes writes again: {r:?}"
    );
}

/// A full Atlas stops the copy with the quota and the source's size, before the freeze; once
/// the cluster has room (a larger tier), `resume` finishes with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_atlas_stops_the_copy_before_the_freeze_then_resume_finishes_on_a_larger_tier() {
    let s = on_a_shared_tier(30_000, 1).await;
    let r = s
        .cmd(&[s.args(), vec!["--yes".into()]].concat())
        .run_within(DEADLINE);
    r.assert_no_secret(&secrets());
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("space quota is 1 MB")
            && r.stderr.contains("the source holds")
            && r.stderr.contains("nothing was frozen or deployed")
            && r.stderr.contains("Flex 5 GB")
            && r.stderr.contains("efs2atlas resume"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("freeze: "), "{}", r.stderr);
    s.assert_not_deployed().await;
    source_writable(&s).await;
    // The cluster moves to a tier with room: the same target, a larger quota.
    s.tier.as_ref().unwrap().set_quota(512);
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    crate::migrate::assert_migrated(&s).await;
}

/// Under freeze-first the quota is met after the freeze: the source is unlocked at once, and
/// the sentence says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_atlas_under_freeze_first_unlocks_the_source() {
    let s = on_a_shared_tier(30_000, 1).await;
    let args = [
        s.args(),
        vec!["--yes".into(), "--strategy".into(), "freeze-first".into()],
    ]
    .concat();
    let r = s.cmd(&args).run_within(DEADLINE);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("space quota is 1 MB")
            && r.stderr
                .contains("the source was unlocked and nothing was deployed"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("still write-locked"), "{}", r.stderr);
    s.assert_not_deployed().await;
    source_writable(&s).await;
}

/// What a stand-in of a shared tier saw: no refused command, and how many it passed.
pub(crate) fn assert_nothing_refused(tier: &SharedTier) -> usize {
    let refused = tier.seen(|s| s.refused.clone());
    assert!(refused.is_empty(), "the shared tier refused: {refused:?}");
    tier.seen(|s| s.commands.len())
}
