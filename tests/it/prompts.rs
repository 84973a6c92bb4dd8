//! Questions in a real terminal: Ctrl-C at any of them stops cleanly (exit 5, what to run
//! next), and at the cutover question the source is unlocked before the program exits.

use crate::migrate::{assert_migrated, secrets, setup};
use crate::pty::Pty;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_first_question_changes_nothing_and_leaves_no_journal() {
    let s = setup(100).await;
    let mut pty = Pty::start(&s);
    pty.expect("with the plan above?").await;
    pty.ctrl_c();
    let code = pty.exit_code().await;
    let out = pty.all();
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(
        !std::path::Path::new(&s.journal()).exists(),
        "a run stopped before any change leaves no journal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_cutover_question_unlocks_the_source_then_resume_finishes() {
    let s = setup(2000).await;
    let mut pty = Pty::start(&s);
    pty.expect("with the plan above?").await;
    pty.send("y");
    pty.expect("Cut over: deploy").await;
    pty.expect("until you answer").await;
    pty.ctrl_c();
    let code = pty.exit_code().await;
    let out = pty.all();
    assert_eq!(code, Some(5), "interrupted, not declined: {out}");
    for secret in secrets() {
        assert!(!out.contains(secret), "output leaks {secret}");
    }
    assert!(
        out.contains("source unlocked (interrupted at the cutover question)"),
        "says the source was unlocked: {out}"
    );
    assert!(out.contains("nothing was deployed"), "{out}");
    assert!(out.contains("efs2atlas resume --journal"), "{out}");
    assert!(
        !out.contains("still write-locked"),
        "the source is not left locked: {out}"
    );
    let m = &s.journal_json()["migrate"];
    assert_eq!(m["freeze"]["released"], true, "{m:#}");
    assert!(m["steps"]["deploy"]["status"] != "done", "{m:#}");

    // resume freezes again, syncs what the app wrote meanwhile, and cuts over.
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_file_system_id_asks_again_and_a_kept_efs_stays_pending_until_resume() {
    let s = setup(200).await;
    let mut pty = Pty::start(&s);
    pty.expect("with the plan above?").await;
    pty.send("y");
    pty.expect("Cut over: deploy").await;
    pty.expect("until you answer").await;
    pty.send("y");
    pty.expect("Type the file system id").await;
    pty.send("fs-typo");
    pty.expect("2 more tries").await;
    pty.expect("Type the file system id").await;
    pty.send("");
    let code = pty.exit_code().await;
    let out = pty.all();
    assert_eq!(code, Some(0), "the app runs on Atlas: {out}");
    assert!(out.contains("PENDING  cleanup: kept EFS"), "{out}");
    assert!(out.contains("efs2atlas resume --journal"), "{out}");
    let j = s.journal_json();
    assert_eq!(
        j["migrate"]["steps"]["cleanup"]["status"], "pending",
        "{j:#}"
    );
    assert_eq!(j["migrate"]["finished"], false);

    let status = s.acct.run_env(&["status", "--journal", &s.journal()], &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("cleanup") && status.stdout.contains("pending"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("finished."), "{}", status.stdout);

    // Later, resume offers the clean-up again (--yes answers it) and finishes.
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = s.journal_json();
    assert_eq!(j["migrate"]["steps"]["cleanup"]["status"], "done", "{j:#}");
    assert_eq!(j["migrate"]["finished"], true);
    assert_migrated(&s).await;
}
