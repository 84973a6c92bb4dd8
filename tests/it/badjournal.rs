//! A journal that is missing, truncated, hand-edited, from a newer build or from another
//! service/account: `resume` and `migrate` refuse with a clear error and change nothing.

use crate::common::{Run, account, atlas_uri, snapshot};
use crate::migrate::setup;
use crate::proxy::FaultProxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_journals_are_refused_and_nothing_changes() {
    let s = setup(0).await;
    // A real unfinished journal: the run stops at register (permission denied).
    let proxy = FaultProxy::start(&crate::common::moto()).await;
    proxy.inject_json_error("RegisterTaskDefinition", 1000, 400, "AccessDeniedException");
    let mut a = s.args();
    a.push("--yes".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let uri = atlas_uri();
    let r = tokio::task::block_in_place(|| {
        s.acct.run_env(
            &a,
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("AWS_ENDPOINT_URL", &proxy.url),
            ],
        )
    });
    assert_eq!(r.code, 1, "{}", r.stderr);
    let good = std::fs::read_to_string(s.journal()).unwrap();
    let before = snapshot(&s.acct.conf).await;
    let resume = |path: &str| -> Run {
        tokio::task::block_in_place(|| {
            s.acct.run_env(
                &["resume", "--journal", path, "--yes"],
                &[
                    ("EFS2ATLAS_ATLAS_URI", &uri),
                    ("EFS2ATLAS_SOURCE_URI", &s.src.uri()),
                    ("EFS2ATLAS_TARGET_URI", &s.target_uri()),
                ],
            )
        })
    };
    let bad = s.journal() + ".bad";

    // Missing.
    let r = resume(&(s.journal() + ".nope"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no journal at"), "{}", r.stderr);

    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_string(), "truncated"),
        ("empty", String::new(), "not valid JSON"),
        (
            "hand-edited step",
            good.replace("\"status\": \"failed\"", "\"status\": \"done\""),
            "changed outside efs2atlas",
        ),
        (
            "hand-edited service",
            good.replace(&s.fx.service, "other-service"),
            "changed outside efs2atlas",
        ),
        (
            "newer format",
            good.replacen("\"format\": 2", "\"format\": 3", 1),
            "newer efs2atlas",
        ),
        (
            "not a journal",
            "{\"steps\": []}".into(),
            "not an efs2atlas journal",
        ),
    ];
    for (what, text, says) in &cases {
        std::fs::write(&bad, text).unwrap();
        let r = resume(&bad);
        assert_ne!(r.code, 0, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains(says),
            "{what}: wants '{says}': {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(&bad).unwrap(),
            *text,
            "{what}: the journal is left as it was"
        );
    }

    // From another account (copied to another machine with other credentials).
    let other = account().await;
    let r = tokio::task::block_in_place(|| {
        other.run_env(
            &["resume", "--journal", &s.journal(), "--yes"],
            &[
                ("EFS2ATLAS_ATLAS_URI", &uri),
                ("EFS2ATLAS_SOURCE_URI", &s.src.uri()),
                ("EFS2ATLAS_TARGET_URI", &s.target_uri()),
            ],
        )
    });
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("account") && r.stderr.contains(&s.acct.id),
        "{}",
        r.stderr
    );

    // A migrate of another service pointed at this journal.
    let mut a = s.args();
    let i = a.iter().position(|x| *x == s.fx.service).unwrap();
    a[i] = "other-service".into();
    a.push("--yes".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = tokio::task::block_in_place(|| s.acct.run_env(&a, &[("EFS2ATLAS_ATLAS_URI", &uri)]));
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("of service {}", s.fx.service)),
        "names whose journal it is: {}",
        r.stderr
    );

    assert_eq!(
        before,
        snapshot(&s.acct.conf).await,
        "no bad journal changed anything in AWS"
    );
    assert_eq!(std::fs::read_to_string(s.journal()).unwrap(), good);

    // The good journal still resumes.
    let r = resume(&s.journal());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    crate::migrate::assert_migrated(&s).await;
}
