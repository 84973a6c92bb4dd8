//! Copy and verify throughput against the local servers, next to the raw read speed of the
//! source and the raw write speed of the target on the same run.
//!
//! Run through `scripts/bench` (it starts the servers and builds the release binary).
//! Env: EFS2ATLAS_TEST_SOURCE_URI, EFS2ATLAS_TEST_TARGET_URI, EFS2ATLAS_BIN,
//! BENCH_MIXED (default 200000 docs), BENCH_SMALL (default 1000000 docs).

use std::process::Command;
use std::time::Instant;

use mongodb::bson::{Document, RawDocumentBuf, doc, oid::ObjectId};
use mongodb::{Client, Collection};

const BATCH: usize = 10_000;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic documents: `mixed` spans ~100 B to ~20 KiB, `small` are ~80 B.
fn make_doc(kind: &str, i: usize) -> Document {
    match kind {
        "small" => {
            doc! {"_id": ObjectId::new(), "i": i as i32, "k": format!("k{}", i % 1000), "f": (i % 7) as f64 * 0.5}
        }
        _ => {
            let size = match i % 100 {
                0 => 20_000,
                1..=9 => 2_000,
                _ => 100 + (i % 400),
            };
            doc! {
                "_id": ObjectId::new(),
                "i": i as i32,
                "name": format!("customer {}", i % 5000),
                "tags": ["a", "b", "c"],
                "nested": {"x": (i % 13) as i32, "y": "z".repeat(i % 20)},
                "blob": "x".repeat(size),
            }
        }
    }
}

struct Set {
    name: &'static str,
    db: &'static str,
    colls: Vec<(String, usize)>,
}

async fn generate(client: &Client, set: &Set) {
    for (coll, n) in &set.colls {
        let c: Collection<Document> = client.database(set.db).collection(coll);
        if c.estimated_document_count().await.unwrap_or(0) as usize == *n {
            continue;
        }
        c.drop().await.unwrap();
        let mut i = 0;
        while i < *n {
            let end = (i + BATCH).min(*n);
            c.insert_many((i..end).map(|j| {
                make_doc(
                    if set.name == "small" {
                        "small"
                    } else {
                        "mixed"
                    },
                    j,
                )
            }))
            .await
            .unwrap();
            i = end;
        }
    }
}

/// Streams every document of the set from the source without doing anything else.
async fn raw_scan(client: &Client, set: &Set) -> (u64, u64, f64) {
    let t = Instant::now();
    let (mut docs, mut bytes) = (0u64, 0u64);
    for (coll, _) in &set.colls {
        let c: Collection<RawDocumentBuf> = client.database(set.db).collection(coll);
        let mut cur = c.find(doc! {}).batch_size(2000).await.unwrap();
        while cur.advance().await.unwrap() {
            docs += 1;
            bytes += cur.current().as_bytes().len() as u64;
        }
    }
    (docs, bytes, t.elapsed().as_secs_f64())
}

/// Inserts the same shape of documents into a scratch database of the target.
async fn raw_insert(client: &Client, set: &Set) -> (u64, u64, f64) {
    let db = client.database("bench_raw_insert");
    db.drop().await.unwrap();
    let (mut docs, mut bytes, mut secs) = (0u64, 0u64, 0f64);
    for (coll, n) in &set.colls {
        let c: Collection<RawDocumentBuf> = db.collection(coll);
        let mut i = 0;
        while i < *n {
            let end = (i + BATCH).min(*n);
            let batch: Vec<RawDocumentBuf> = (i..end)
                .map(|j| {
                    RawDocumentBuf::from_document(&make_doc(
                        if set.name == "small" {
                            "small"
                        } else {
                            "mixed"
                        },
                        j,
                    ))
                    .unwrap()
                })
                .collect();
            bytes += batch.iter().map(|d| d.as_bytes().len() as u64).sum::<u64>();
            docs += batch.len() as u64;
            let t = Instant::now();
            c.insert_many(&batch).await.unwrap();
            secs += t.elapsed().as_secs_f64();
            i = end;
        }
    }
    db.drop().await.unwrap();
    (docs, bytes, secs)
}

/// Runs the tool under /usr/bin/time -v; returns (seconds, peak RSS in KiB, JSON output).
fn timed(args: &[&str]) -> (f64, u64, serde_json::Value) {
    let bin = std::env::var("EFS2ATLAS_BIN").unwrap_or_else(|_| "target/release/efs2atlas".into());
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&bin)
        .args(args)
        .output()
        .expect("run efs2atlas under /usr/bin/time");
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "efs2atlas {args:?} failed:\n{stderr}");
    let rss = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (secs, rss, json)
}

fn rate(docs: u64, bytes: u64, secs: f64) -> String {
    format!(
        "{:>9.0} docs/s {:>7.2} MB/s",
        docs as f64 / secs,
        bytes as f64 / secs / 1e6
    )
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (Ok(src_uri), Ok(dst_uri)) = (
        std::env::var("EFS2ATLAS_TEST_SOURCE_URI"),
        std::env::var("EFS2ATLAS_TEST_TARGET_URI"),
    ) else {
        eprintln!("copy bench: run it through scripts/bench (it needs the local Mongo servers)");
        return;
    };
    let src = Client::with_uri_str(&src_uri).await.unwrap();
    let dst = Client::with_uri_str(&dst_uri).await.unwrap();
    let mixed = env_num("BENCH_MIXED", 200_000);
    let small = env_num("BENCH_SMALL", 1_000_000);
    let per = mixed / 4;
    let sets = [
        Set {
            name: "mixed",
            db: "bench_mixed",
            colls: (0..4).map(|i| (format!("c{i}"), per)).collect(),
        },
        Set {
            name: "small",
            db: "bench_small",
            colls: vec![("docs".into(), small)],
        },
    ];
    println!(
        "machine: {} cores; servers: mongod 6.0.5 (source standalone + auth, target replica set + auth + TLS, loopback)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for set in sets.iter().filter(|s| s.colls.iter().any(|c| c.1 > 0)) {
        eprintln!(
            "bench: preparing {} ({} docs)",
            set.name,
            set.colls.iter().map(|c| c.1).sum::<usize>()
        );
        generate(&src, set).await;
        let (sd, sb, ss) = raw_scan(&src, set).await;
        let (id, ib, is) = raw_insert(&dst, set).await;
        let journal = std::env::temp_dir().join(format!("efs2atlas-bench-{}.json", set.name));
        let _ = std::fs::remove_file(&journal);
        let ns = format!("{}.*", set.db);
        let j = journal.display().to_string();
        let (cs, crss, cjson) = timed(&[
            "copy",
            "--source-uri",
            &src_uri,
            "--target-uri",
            &dst_uri,
            "--ns-include",
            &ns,
            "--drop",
            "--yes",
            "--journal",
            &j,
            "--json",
            "--no-progress",
        ]);
        let cd = cjson["copy"]["docs"].as_u64().unwrap_or(0);
        let cb = cjson["copy"]["bytes"].as_u64().unwrap_or(0);
        let (vs, vrss, vjson) = timed(&[
            "verify",
            "--source-uri",
            &src_uri,
            "--target-uri",
            &dst_uri,
            "--ns-include",
            &ns,
            "--json",
            "--no-progress",
        ]);
        assert_eq!(
            vjson["verify"]["ok"], true,
            "verify after copy must be clean"
        );
        let _ = std::fs::remove_file(&journal);
        let scan_rate = sd as f64 / ss;
        let insert_rate = id as f64 / is;
        let copy_rate = cd as f64 / cs;
        let verify_rate = sd as f64 / vs;
        println!(
            "\n{} dataset: {} docs, {:.1} MB",
            set.name,
            sd,
            sb as f64 / 1e6
        );
        println!("  raw scan (source)    {}", rate(sd, sb, ss));
        println!("  raw insert (target)  {}", rate(id, ib, is));
        println!(
            "  efs2atlas copy       {}  peak RSS {:.0} MiB",
            rate(cd, cb, cs),
            crss as f64 / 1024.0
        );
        println!(
            "  efs2atlas verify     {}  peak RSS {:.0} MiB (both sides read)",
            rate(sd, sb, vs),
            vrss as f64 / 1024.0
        );
        println!(
            "  copy / min(scan, insert) = {:.2}",
            copy_rate / scan_rate.min(insert_rate)
        );
        println!(
            "  verify / scan            = {:.2}",
            verify_rate / scan_rate
        );
        if set.name == "small" {
            two_pass(&src, &src_uri, &dst_uri, set, cs).await;
        }
    }
}

/// Two-pass on the same data: a bulk copy while a writer changes 1% of the documents
/// (a third each updated, inserted, deleted), then `sync`; the ratio sync / full copy is
/// the write-freeze window's share of what a freeze-first copy would take.
async fn two_pass(src: &Client, src_uri: &str, dst_uri: &str, set: &Set, full_copy_secs: f64) {
    let (coll, n) = &set.colls[0];
    let c: Collection<Document> = src.database(set.db).collection(coll);
    let changes = n / 100;
    // Pace the writes over ~80% of the expected copy time so they all land during it.
    let pause =
        std::time::Duration::from_secs_f64((full_copy_secs * 0.8 / changes as f64).min(0.05));
    let ids: Vec<ObjectId> = {
        let mut cur = c
            .find(doc! {})
            .projection(doc! {"_id": 1})
            .batch_size(10_000)
            .await
            .unwrap();
        let mut v = Vec::new();
        let mut i = 0usize;
        while cur.advance().await.unwrap() {
            if i % 100 == 7 {
                v.push(
                    cur.deserialize_current()
                        .unwrap()
                        .get_object_id("_id")
                        .unwrap(),
                );
            }
            i += 1;
        }
        v
    };
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut done = 0usize;
            for (k, id) in ids.iter().enumerate() {
                match k % 3 {
                    0 => {
                        c.update_one(doc! {"_id": id}, doc! {"$set": {"f": -1.0, "edited": true}})
                            .await
                            .unwrap();
                    }
                    1 => {
                        c.delete_one(doc! {"_id": id}).await.unwrap();
                    }
                    _ => {
                        // An insert for each delete keeps the count (and the next run's set) stable.
                        c.insert_one(make_doc("small", 9_000_000 + k))
                            .await
                            .unwrap();
                    }
                }
                done += 1;
                tokio::time::sleep(pause).await;
            }
            done
        })
    };
    let journal = std::env::temp_dir().join("efs2atlas-bench-two-pass.json");
    let _ = std::fs::remove_file(&journal);
    let ns = format!("{}.*", set.db);
    let j = journal.display().to_string();
    let (cs, crss, _) = timed(&[
        "copy",
        "--source-uri",
        src_uri,
        "--target-uri",
        dst_uri,
        "--ns-include",
        &ns,
        "--drop",
        "--yes",
        "--journal",
        &j,
        "--json",
        "--no-progress",
    ]);
    let done = writer.await.unwrap();
    let _ = std::fs::remove_file(&journal);
    let sj = std::env::temp_dir().join("efs2atlas-bench-sync.json");
    let _ = std::fs::remove_file(&sj);
    let sjs = sj.display().to_string();
    let (ss, srss, sjson) = timed(&[
        "sync",
        "--source-uri",
        src_uri,
        "--target-uri",
        dst_uri,
        "--ns-include",
        &ns,
        "--journal",
        &sjs,
        "--json",
        "--no-progress",
    ]);
    let (_, _, vjson) = timed(&[
        "verify",
        "--source-uri",
        src_uri,
        "--target-uri",
        dst_uri,
        "--ns-include",
        &ns,
        "--json",
        "--no-progress",
    ]);
    assert_eq!(
        vjson["verify"]["ok"], true,
        "verify after sync must be clean"
    );
    let s = &sjson["sync"];
    println!(
        "\ntwo-pass on the small dataset ({n} docs, {done} changes made during the bulk copy):"
    );
    println!(
        "  bulk copy (writes live) {cs:>7.1}s  peak RSS {:.0} MiB",
        crss as f64 / 1024.0
    );
    println!(
        "  sync (under the freeze) {ss:>7.1}s  peak RSS {:.0} MiB  ({} inserted, {} replaced, {} deleted)",
        srss as f64 / 1024.0,
        s["inserted"],
        s["replaced"],
        s["deleted"]
    );
    println!(
        "  sync / full copy        = {:.2} (goal <= 0.3)",
        ss / full_copy_secs
    );
}
