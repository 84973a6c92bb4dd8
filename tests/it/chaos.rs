//! Chaos: SIGKILL a full `migrate` on the fixture at seeded random moments, then `resume`;
//! every run must reach the same end state and nothing may be deleted before its time.
//!
//! EFS2ATLAS_CHAOS_RUNS (default 20) and EFS2ATLAS_CHAOS_SEED (default fixed) control it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::common::{Cmd, atlas_uri, snapshot};
use crate::migrate::setup;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Outcome {
    killed_in: String,
    docs_compared: u64,
}

/// When to kill: after a random time, or a moment after a given step starts.
#[derive(Clone, Debug)]
enum KillAt {
    After(Duration),
    InStep(&'static str, Duration),
}

async fn one_run(i: usize, at: KillAt) -> Outcome {
    let s = setup(0).await;
    let c = mongodb::Client::with_uri_str(s.src.uri()).await.unwrap();
    let docs: Vec<_> = (0..6000).map(|n| mongodb::bson::doc! {"_id": mongodb::bson::oid::ObjectId::new(), "n": n, "pad": "c".repeat(120)}).collect();
    c.database("goals")
        .collection::<mongodb::bson::Document>("log")
        .insert_many(docs)
        .await
        .unwrap();
    let (acct, fx, journal) = (&s.acct, &s.fx, s.journal());
    let args = s.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Real AWS answers in tens of milliseconds, not moto's one: without that latency the
    // steps after verify finish too fast for a kill to land inside them.
    let proxy = crate::proxy::FaultProxy::start(&crate::common::moto()).await;
    proxy.add_latency("", Duration::from_millis(40));
    let migrate = || {
        Cmd::new(&args)
            .yes()
            .envs(&acct.env)
            .env("EFS2ATLAS_ATLAS_URI", atlas_uri())
    };
    let mut child = migrate()
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .quiet()
        .spawn();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        match &at {
            KillAt::After(d) if started.elapsed() >= *d => break,
            KillAt::InStep(step, d) => {
                let j = crate::common::journal_at(&journal);
                if !j["migrate"]["steps"][*step].is_null() {
                    tokio::time::sleep(*d).await;
                    break;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delay = at.clone();
    let _ = child.kill();
    let _ = tokio::task::block_in_place(|| child.wait());
    let j = crate::common::journal_at(&journal);
    let killed_in = crate::migrate_steps()
        .iter()
        .find(|st| {
            j["migrate"]["steps"][**st]["status"] != "done"
                && j["migrate"]["steps"][**st]["status"] != "skipped"
        })
        .map(|s| s.to_string())
        .unwrap_or_else(|| {
            if j.is_null() {
                "before-journal".into()
            } else {
                "finished".into()
            }
        });

    // Nothing is deleted before the data is verified and the new revision is steady.
    let snap = snapshot(&acct.conf).await;
    if snap["file_systems"].as_array().unwrap().is_empty() {
        assert_eq!(
            j["migrate"]["steps"]["verify"]["status"], "done",
            "run {i}: EFS deleted before verify"
        );
        assert_eq!(
            j["migrate"]["steps"]["deploy"]["status"], "done",
            "run {i}: EFS deleted before the cutover"
        );
    }

    // Resume (or, when killed before the journal existed, migrate again) converges.
    // Blocking waits go off the runtime's workers so other runs' kill timers stay on time.
    let r = if j.is_null() {
        migrate().run()
    } else {
        s.resume()
    };
    assert_eq!(
        r.code, 0,
        "run {i} (killed in {killed_in}, {delay:?}): {}\n{}",
        r.stdout, r.stderr
    );
    let snap = snapshot(&acct.conf).await;
    assert_eq!(snap["file_systems"], serde_json::json!([]), "run {i}");
    assert!(
        !snap["security_groups"].to_string().contains(&fx.nfs_sg),
        "run {i}"
    );
    assert!(
        snap["security_groups"].to_string().contains(&fx.task_sg),
        "run {i}"
    );
    let ecs = aws_sdk_ecs::Client::new(&acct.conf);
    let svc = ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    let td = svc.services()[0].task_definition.clone().unwrap();
    let td = ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    assert_eq!(
        td.container_definitions().len(),
        1,
        "run {i}: only the backend is left"
    );
    assert!(td.volumes().is_empty(), "run {i}");
    let v = Cmd::verify(&s.src.uri(), &s.target_uri()).json().run();
    assert_eq!(v.code, 0, "run {i}: target verifies: {}", v.stdout);
    eprintln!("chaos run {i}: {delay:?} -> killed in {killed_in}");
    Outcome {
        killed_in,
        docs_compared: v.json()["verify"]["documents_compared"]
            .as_u64()
            .unwrap_or(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_then_resume_always_converges() {
    let runs: usize = std::env::var("EFS2ATLAS_CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("EFS2ATLAS_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00EF_52A7_1A5C);
    let mut rng = Rng(seed | 1);
    // Half the kills at a random time over a whole run (3-6 s here), half a few milliseconds
    // into a random step, so the short steps (secret, register, deploy, cleanup) get hit too.
    let steps = crate::migrate_steps();
    let plan: Vec<KillAt> = (0..runs)
        .map(|i| {
            if i % 2 == 0 {
                KillAt::After(Duration::from_millis(rng.next() % 6000))
            } else {
                KillAt::InStep(
                    steps[(rng.next() % steps.len() as u64) as usize],
                    Duration::from_millis(rng.next() % 4),
                )
            }
        })
        .collect();
    let outcomes: Vec<Outcome> = futures_util::stream::iter(plan.into_iter().enumerate())
        // Each run is its own task: a run blocked in a subprocess wait must not stall the
        // kill timers of the others (buffer_unordered alone polls them all in one task).
        .map(|(i, d)| tokio::spawn(one_run(i, d)))
        .buffer_unordered(3)
        .map(|r| r.expect("chaos run panicked"))
        .collect()
        .await;
    let mut by_step = std::collections::BTreeMap::new();
    for o in &outcomes {
        *by_step.entry(o.killed_in.clone()).or_insert(0) += 1;
    }
    let compared: u64 = outcomes.iter().map(|o| o.docs_compared).sum();
    println!(
        "chaos: seed {seed:#x}, {runs} runs, {runs} SIGKILLs, {runs} resumes, killed in {by_step:?}, {compared} documents compared, 0 mismatches"
    );
    assert!(
        by_step.len() >= 6,
        "kills should land in many steps: {by_step:?}"
    );
}
