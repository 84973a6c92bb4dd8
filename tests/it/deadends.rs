//! No dead ends: what a refusal suggests is accepted by the command it names, and a run
//! refused before it changed anything does not block the next attempt.

use mongodb::bson::{Document, doc};

use crate::migrate::{Setup, assert_migrated, setup};
use crate::mongod::client;

/// Leaves a document in the target's `goals.goals`, as an earlier attempt or another app would.
async fn target_holds_data(s: &Setup) {
    client(&s.dst.uri())
        .await
        .database("goals")
        .collection::<Document>("goals")
        .insert_one(doc! {"_id": "left-over", "by": "an earlier attempt"})
        .await
        .unwrap();
}

/// Migrate refuses a target that holds data, naming flags it and resume accept.
fn refused(s: &Setup) {
    let r = s.migrate(&["--yes"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("goals.goals") && r.stderr.contains("Nothing was changed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--drop") && r.stderr.contains("efs2atlas resume --drop"),
        "names what migrate and resume accept: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("--ns-exclude") && !r.stderr.contains("--target-db"),
        "no flag migrate rejects: {}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_preflight_does_not_block_migrate_again_with_drop() {
    let s = setup(100).await;
    target_holds_data(&s).await;
    refused(&s);
    let r = s.migrate(&["--yes", "--drop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stopped at preflight, before changing anything"),
        "says why the journal is replaced: {}",
        r.stderr
    );
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_preflight_resumes_with_drop() {
    let s = setup(100).await;
    target_holds_data(&s).await;
    refused(&s);
    let uri = crate::common::atlas_uri();
    let (src, dst) = (s.src.uri(), s.target_uri());
    let r = s.acct.run_env(
        &["resume", "--journal", &s.journal(), "--yes", "--drop"],
        &[
            ("EFS2ATLAS_ATLAS_URI", &uri),
            ("EFS2ATLAS_SOURCE_URI", &src),
            ("EFS2ATLAS_TARGET_URI", &dst),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}
