//! The frozen window against a remote Atlas, measured (not a pass/fail timing test): run by
//! `scripts/bench` with the release binary (`EFS2ATLAS_BIN`), or by hand:
//! `cargo test --test it wan -- --ignored --nocapture`.
//! BENCH_WAN_DOCS (default 300000), BENCH_WAN_DELAY_MS (one way, default 10),
//! BENCH_WAN_MBIT (default 200); BENCH_WAN_DELAY_MS=0 measures loopback.

use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};

use crate::common::Cmd;
use crate::migrate::{assert_migrated, setup};
use crate::mongod::client;
use crate::shaper::{Link, Shaper};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/bench runs it"]
async fn wan_frozen_window_against_a_full_copy() {
    let docs = env_num("BENCH_WAN_DOCS", 300_000) as usize;
    let delay = Duration::from_millis(env_num("BENCH_WAN_DELAY_MS", 10));
    let mbit = env_num("BENCH_WAN_MBIT", 200);
    let s = setup(docs).await;
    let wan = (delay > Duration::ZERO).then(|| {
        Shaper::start(
            s.dst.port(),
            Link {
                delay,
                bytes_per_sec: mbit * 1_000_000 / 8,
            },
        )
    });
    let target = match &wan {
        Some(w) => s.dst.uri_via(w.port),
        None => s.dst.uri(),
    };
    // A plain full copy of the same data through the same link, for the comparison.
    let plain = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let r = Cmd::copy(&s.src.uri(), &target)
        .journal(plain.path().join("j.json"))
        .args(&["--db", "goals", "--target-db", "plaincopy"])
        .run();
    let full_copy = started.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The app updates about 1 % of the documents while the bulk copy runs, until the freeze
    // holds its writes back.
    let history = client(&s.src.uri())
        .await
        .database("goals")
        .collection::<Document>("history");
    let writes = (docs / 100).max(1) as i32;
    let writer = tokio::spawn(async move {
        for n in 0.. {
            let w = history.update_one(
                doc! {"i": (n * 7919) % writes * 100},
                doc! {"$set": {"edited": n}},
            );
            if tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .is_err()
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        0
    });
    let mut args = s.args();
    let i = args.iter().position(|a| a == "--target-uri").unwrap();
    args[i + 1] = target.clone();
    let r = s.cmd(&args).yes().json().run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let written = writer.await.unwrap();
    let m = &r.json()["migration"];
    let frozen = m["freeze"]["seconds"].as_f64().unwrap();
    let copy = m["copy"]["seconds"].as_f64().unwrap();
    let sync = m["sync"]["seconds"].as_f64().unwrap_or(0.0);
    let verify = m["verify"]["seconds"].as_f64().unwrap_or(0.0);
    let rounds = &m["catch_up"]["rounds"];
    eprintln!(
        "\nWAN {} ms one way, {mbit} Mbit/s, {docs} documents, {written} app writes during the run:",
        delay.as_millis()
    );
    eprintln!("  plain full copy through the link   {full_copy:>7.1}s");
    eprintln!("  migrate bulk copy (writes live)    {copy:>7.1}s");
    eprintln!("  catch-up rounds (writes live)      {rounds}");
    eprintln!(
        "  writes frozen                      {frozen:>7.1}s  (sync {sync:.1}s + verify {verify:.1}s + cutover)"
    );
    eprintln!(
        "  frozen window / full copy          {:>7.2}  (goal <= 0.2 through a WAN, <= 0.3 on loopback)",
        frozen / full_copy
    );
    // Where the frozen sync's time went, per collection (they run side by side).
    let j = s.journal_json();
    if let Some(colls) = j["sync"].as_object() {
        let per: Vec<String> = colls
            .iter()
            .map(|(ns, c)| {
                format!(
                    "{ns} {:.2}s ({} compared, {} patched)",
                    c["seconds"].as_f64().unwrap_or(0.0),
                    c["documents_compared"],
                    c["inserted"].as_u64().unwrap_or(0)
                        + c["replaced"].as_u64().unwrap_or(0)
                        + c["deleted"].as_u64().unwrap_or(0)
                )
            })
            .collect();
        eprintln!("  frozen sync per collection         {}", per.join("; "));
    }
    assert_migrated(&s).await;
}
