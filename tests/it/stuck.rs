//! A step stuck on purpose — the link to Atlas stalls (connections open, nothing delivered:
//! a NAT idle timeout, a network blip) — must never hold the run: the watchdog says what it
//! waits on (on the screen and in `status`), one Ctrl-C ends the run within its grace period,
//! a second ends it at once, and a frozen source is unlocked on the way out.

use std::time::{Duration, Instant};

use crate::common::{Cmd, journal_at};
use crate::migrate::{Setup, assert_migrated, setup};
use crate::pty::Pty;
use crate::tcpfault::Faults;

/// Stalls the link to the target (every chunk held) until lifted.
fn stall(s: &Setup) {
    s.link.set(Faults {
        stall_until: Some(Instant::now() + Duration::from_secs(3600)),
        ..Default::default()
    });
}

fn lift(s: &Setup) {
    s.link.set(Faults::default());
}

/// The link back, `resume` to the end, and the "after" world checked.
async fn lift_then_resume(s: &Setup) {
    lift(s);
    let r = tokio::task::block_in_place(|| s.resume());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_migrated(s).await;
}

/// Presses Ctrl-C and waits for the program to end with exit 5; how long it took, and what it
/// printed.
async fn ctrl_c_until_exit_5(pty: &mut Pty) -> (Duration, String) {
    let pressed = Instant::now();
    pty.ctrl_c();
    let code = pty.exit_code().await;
    let took = pressed.elapsed();
    let out = pty.all();
    assert_eq!(code, Some(5), "{out}");
    (took, out)
}

/// Waits until the journal says `cond`.
async fn until_journal(s: &Setup, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond(&journal_at(s.journal())) {
        assert!(Instant::now() < deadline, "no {what} in the journal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn copied(j: &serde_json::Value) -> bool {
    j["copy"]["collections"]["goals.history"]["docs"]
        .as_u64()
        .unwrap_or(0)
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ctrl_c_ends_a_copy_stuck_on_a_stalled_link_and_resume_finishes() {
    let s = setup(40_000).await;
    s.slow_link();
    let mut pty = Pty::start(&s);
    pty.expect("with the plan above?").await;
    pty.send("y");
    until_journal(&s, "copy progress", copied).await;
    stall(&s);
    // Let the copy get stuck on a reply that never comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (took, out) = ctrl_c_until_exit_5(&mut pty).await;
    assert!(
        took < efs2atlas::cancel::GRACE + Duration::from_secs(8),
        "ended {took:?} after one Ctrl-C: {out}"
    );
    assert!(out.contains("efs2atlas resume --journal"), "{out}");
    assert!(
        out.contains("no safe point was reached within 10s")
            && out.contains("waiting on target: inserting into goals.history"),
        "the stop was forced, and says on what the step was stuck: {out}"
    );
    assert_eq!(
        s.journal_json()["migrate"]["steps"]["copy"]["status"],
        "interrupted"
    );
    lift_then_resume(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_ends_a_frozen_step_stuck_on_atlas_at_once_and_unlocks_the_source() {
    let s = setup(2_000).await;
    let mut pty = Pty::start(&s);
    pty.expect("with the plan above?").await;
    pty.send("y");
    // Atlas falls silent just before the freeze (which only talks to the source): the frozen
    // sync and verify then wait on it with the source locked.
    until_journal(&s, "the new revision", |j| {
        j["migrate"]["steps"]["register"]["status"] == "done"
    })
    .await;
    stall(&s);
    until_journal(&s, "the freeze", |j| {
        j["migrate"]["freeze"]["confirmed"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pty.ctrl_c();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, out) = ctrl_c_until_exit_5(&mut pty).await;
    assert!(
        took < Duration::from_secs(6),
        "a second Ctrl-C ends the run at once, not {took:?}: {out}"
    );
    println!(
        "second Ctrl-C after {took:?}:\n{}",
        out.lines().rev().take(8).collect::<Vec<_>>().join("\n")
    );
    assert!(out.contains("second Ctrl-C"), "{out}");
    assert!(out.contains("source unlocked"), "{out}");
    assert!(!out.contains("still write-locked"), "{out}");
    assert!(out.contains("efs2atlas resume --journal"), "{out}");
    let m = &s.journal_json()["migrate"];
    assert_eq!(m["freeze"]["released"], true, "{m:#}");
    // The app can write again.
    let c = crate::mongod::client(&s.src.uri()).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        c.database("goals")
            .collection::<mongodb::bson::Document>("after")
            .insert_one(mongodb::bson::doc! {"x": 1}),
    )
    .await
    .expect("the source takes writes again")
    .unwrap();
    lift_then_resume(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_names_what_a_stuck_step_waits_on_and_status_shows_it() {
    let s = setup(40_000).await;
    s.slow_link();
    let log = s.dir.path().join("child.log");
    let mut child = s
        .cmd(&s.args())
        .yes()
        .env("EFS2ATLAS_STALL_SECS", "2")
        .log_to(&log)
        .spawn();
    until_journal(&s, "copy progress", copied).await;
    stall(&s);
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // (Earlier steps may have had a quiet 2 s of their own on a loaded machine.)
        if let Some(l) = text
            .lines()
            .find(|l| l.starts_with("copy: no progress for"))
        {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no watchdog line: {text}");
        assert!(child.try_wait().unwrap().is_none(), "ended: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("watchdog: {line}");
    assert!(line.starts_with("copy: no progress for"), "{line}");
    assert!(
        line.contains("target: inserting into goals.history (") || line.contains("memory: "),
        "names the side, the operation and the collection: {line}"
    );
    let st = Cmd::new(&["status", "--journal", &s.journal()]).run();
    assert!(st.stdout.contains("in progress"), "{}", st.stdout);
    assert!(
        st.stdout.contains("no progress for"),
        "status shows the watchdog's line: {}",
        st.stdout
    );
    lift(&s);
    let status = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("no end after the stall was lifted");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("moving again"), "{text}");
    let st = Cmd::new(&["status", "--journal", &s.journal()]).run();
    assert!(!st.stdout.contains("no progress for"), "{}", st.stdout);
}
