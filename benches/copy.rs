//! Copy and verify throughput and memory against the local servers, next to the raw read speed
//! of both sides and the raw write speed of the target on the same run, and next to the
//! field's standard tools (`mongodump | mongorestore`) on the same data.
//!
//! Run through `scripts/bench` (it starts the servers, builds the release binary and the peers).
//! Env: EFS2ATLAS_TEST_SOURCE_URI, EFS2ATLAS_TEST_TARGET_URI, EFS2ATLAS_BIN, MONGO_TOOLS,
//! BENCH_PEER (default 700000 docs, ~640 MB with 200 KiB binaries), BENCH_SMALL (default
//! 1000000 docs), BENCH_BIG (default 1: four collections of 25 documents up to 16 MiB, ~340 MB;
//! 0: off), BENCH_APP (default 150000 orders of ~900 B in one collection, 1 in 400 with a 30 KB
//! photo: what apps hold), BENCH_ONLY (a comma-separated list of sets), and for the runs through
//! a shaped WAN BENCH_WAN_SETS (default `app,peer`) and BENCH_WAN_LINKS (default `10:200,40:50`:
//! one-way milliseconds and Mbit/s; empty: none). BENCH_TASKSET=0 runs efs2atlas on one CPU.

#[path = "copy/peers.rs"]
mod peers;
#[path = "../tests/support/shaper.rs"]
mod shaper;
#[path = "../tests/support/tcpfault.rs"]
mod tcpfault;
#[path = "copy/two_pass.rs"]
mod two_pass;
#[path = "copy/wan.rs"]
mod wan;

use std::process::Command;
use std::time::Instant;

use futures_util::StreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, DateTime, Document, RawDocumentBuf, doc, oid::ObjectId};
use mongodb::{Client, Collection, IndexModel};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic bytes that do not compress to nothing.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Words of an order's free text (compressible as real text is, never a repeated letter).
const WORDS: &[&str] = &[
    "please", "leave", "the", "parcel", "at", "front", "door", "call", "before", "delivery",
    "gift", "wrap", "fragile", "handle", "with", "care", "second", "floor", "office", "hours",
    "ring", "bell", "twice", "no", "plastic", "bag", "thank", "you", "weekend", "only",
];
const PRODUCTS: &[&str] = &[
    "Americano 355 ml",
    "Cafe Latte 473 ml",
    "Cold Brew 1 L",
    "Green Tea Latte",
    "Earl Grey",
    "Butter Croissant",
    "Bagel with Cream Cheese",
    "Cheesecake Slice",
    "Tumbler 500 ml",
    "Drip Bag Set (10)",
    "Whole Beans Colombia 200 g",
    "Whole Beans Ethiopia 200 g",
];
const STATUS: &[&str] = &["paid", "packed", "shipped", "delivered", "refunded"];

/// A deterministic pseudo-random number for field `k` of document `i`.
fn pick(i: usize, k: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k as u64 + 1);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x ^ (x >> 29)) as usize
}

/// An order as shops keep them (~900 B: text, numbers, dates, an array of lines), and in one
/// of 400 a 30 KB photo that does not compress.
fn order(i: usize) -> Document {
    let lines: Vec<Document> = (0..1 + pick(i, 1) % 4)
        .map(|k| {
            doc! {
                "sku": format!("SKU-{:06}", pick(i, 10 + k) % 50_000),
                "name": PRODUCTS[pick(i, 20 + k) % PRODUCTS.len()],
                "qty": (1 + pick(i, 30 + k) % 5) as i32,
                "unitPrice": (pick(i, 40 + k) % 900_000) as f64 / 100.0,
            }
        })
        .collect();
    let words = 25 + pick(i, 2) % 30;
    let note: Vec<&str> = (0..words)
        .map(|k| WORDS[pick(i, 100 + k) % WORDS.len()])
        .collect();
    let created = 1_700_000_000_000 + i as i64 * 37_000;
    let mut d = doc! {
        "_id": ObjectId::new(),
        "orderNo": format!("ORD-{:09}", i),
        "customer": {
            "id": (pick(i, 3) % 200_000) as i64,
            "name": format!("Customer {}", pick(i, 4) % 200_000),
            "email": format!("user{}@example.com", pick(i, 5) % 200_000),
            "phone": format!("+82-10-{:04}-{:04}", pick(i, 6) % 10_000, pick(i, 7) % 10_000),
            "address": {
                "line1": format!("{} Teheran-ro", 1 + pick(i, 8) % 900),
                "city": "Seoul",
                "zip": format!("{:05}", pick(i, 9) % 100_000),
            },
        },
        "lines": lines,
        "total": (pick(i, 11) % 2_000_000) as f64 / 100.0,
        "currency": "KRW",
        "status": STATUS[pick(i, 12) % STATUS.len()],
        "tags": ["web", if i.is_multiple_of(3) { "coupon" } else { "regular" }],
        "created": DateTime::from_millis(created),
        "updated": DateTime::from_millis(created + (pick(i, 13) % 86_400_000) as i64),
        "note": note.join(" "),
    };
    if i.is_multiple_of(400) {
        d.insert("photo", file(30 * 1024, i));
    }
    d
}

/// An attached file of `len` bytes that does not compress.
fn file(len: usize, i: usize) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: noise(len, i as u64),
    }
}

/// Deterministic documents of a set's kind.
pub fn make_doc(kind: &str, i: usize) -> Document {
    match kind {
        "app" => order(i),
        "small" => {
            doc! {"_id": ObjectId::new(), "i": i as i32, "k": format!("k{}", i % 1000), "f": (i % 7) as f64 * 0.5}
        }
        "big" => {
            // Per 5: one of 16 MiB (just under the limit), one of 1 MiB, three of 10 KiB.
            let size = match i % 5 {
                0 => 16 * 1024 * 1024 - 4096,
                1 => 1024 * 1024,
                _ => 10 * 1024,
            };
            doc! {"_id": i as i64, "data": file(size, i)}
        }
        _ => {
            // The set: ~350 B records and one 200 KiB file in 350 (~640 MB per 700k).
            let mut d = doc! {
                "_id": ObjectId::new(),
                "i": i as i32,
                "name": format!("customer {}", i % 5000),
                "email": format!("user{}@example.com", i % 90_000),
                "tags": ["a", "b", "c"],
                "address": {"city": format!("city {}", i % 300), "zip": format!("{:05}", i % 99_999)},
                "score": (i % 1000) as f64 / 7.0,
                "created": DateTime::from_millis(1_600_000_000_000 + i as i64 * 1000),
                "note": "n".repeat(120 + i % 80),
            };
            if i.is_multiple_of(350) {
                d.insert("file", file(200 * 1024, i));
            }
            d
        }
    }
}

/// A data set: collections of one kind of document in one database.
pub struct Set {
    /// `app`, `peer`, `small` or `big`.
    pub name: &'static str,
    /// Its database on both sides.
    pub db: &'static str,
    /// Collections and their sizes.
    pub colls: Vec<(String, usize)>,
}

async fn generate(client: &Client, set: &Set) {
    let per_batch = if set.name == "big" { 1 } else { 5_000 };
    for (coll, n) in &set.colls {
        let c: Collection<Document> = client.database(set.db).collection(coll);
        if c.estimated_document_count().await.unwrap_or(0) as usize == *n {
            continue;
        }
        c.drop().await.unwrap();
        let mut i = 0;
        while i < *n {
            let end = (i + per_batch).min(*n);
            c.insert_many((i..end).map(|j| make_doc(set.name, j)))
                .await
                .unwrap();
            i = end;
        }
        if set.name == "peer" {
            c.create_index(IndexModel::builder().keys(doc! {"email": 1}).build())
                .await
                .unwrap();
        }
    }
}

/// Streams every document of the set from one side in raw server batches, doing nothing else.
async fn raw_scan(client: &Client, set: &Set) -> (u64, u64, f64) {
    let t = Instant::now();
    let (mut docs, mut bytes) = (0u64, 0u64);
    for (coll, _) in &set.colls {
        let c: Collection<RawDocumentBuf> = client.database(set.db).collection(coll);
        let mut cur = c.find(doc! {}).batch().await.unwrap();
        while let Some(batch) = cur.next().await {
            for d in batch.unwrap().doc_slices().unwrap() {
                docs += 1;
                bytes += d.unwrap().as_document().unwrap().as_bytes().len() as u64;
            }
        }
    }
    (docs, bytes, t.elapsed().as_secs_f64())
}

/// Inserts the same shape of documents into a scratch database of the target.
async fn raw_insert(client: &Client, set: &Set) -> (u64, u64, f64) {
    let db = client.database("bench_raw_insert");
    db.drop().await.unwrap();
    let per_batch = if set.name == "big" { 1 } else { 10_000 };
    let (mut docs, mut bytes, mut secs) = (0u64, 0u64, 0f64);
    for (coll, n) in &set.colls {
        let c: Collection<RawDocumentBuf> = db.collection(coll);
        let mut i = 0;
        while i < *n {
            let end = (i + per_batch).min(*n);
            let batch: Vec<RawDocumentBuf> = (i..end)
                .map(|j| RawDocumentBuf::from_document(&make_doc(set.name, j)).unwrap())
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

/// Lets the target finish what the last run left (a checkpoint, dropped collections) before
/// the next measurement starts, so no run pays for the one before it.
fn settle(dst: &Client) {
    tokio::runtime::Handle::current().block_on(async {
        let _ = dst.database("admin").run_command(doc! {"fsync": 1}).await;
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
}

/// Runs the tool under /usr/bin/time -v; returns (seconds, peak RSS in KiB, JSON output).
pub fn timed(args: &[&str]) -> (f64, u64, serde_json::Value) {
    let bin = std::env::var("EFS2ATLAS_BIN").unwrap_or_else(|_| "target/release/efs2atlas".into());
    // BENCH_TASKSET=0 pins efs2atlas to one CPU, as the runner's 1 vCPU would.
    let mut cmd = match std::env::var("BENCH_TASKSET") {
        Ok(cpus) if !cpus.is_empty() => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpus, "/usr/bin/time"]);
            c
        }
        _ => Command::new("/usr/bin/time"),
    };
    let t = Instant::now();
    let out = cmd
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
        "{:>9.0} docs/s {:>7.1} MB/s",
        docs as f64 / secs,
        bytes as f64 / secs / 1e6
    )
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// `copy` then `verify` of the set with the tool; (copy seconds, copy RSS, verify seconds,
/// verify RSS, docs, bytes).
fn tool_runs(src_uri: &str, dst_uri: &str, set: &Set) -> (f64, u64, f64, u64, u64, u64) {
    let journal = std::env::temp_dir().join(format!("efs2atlas-bench-{}.json", set.name));
    let _ = std::fs::remove_file(&journal);
    let ns = format!("{}.*", set.db);
    let j = journal.display().to_string();
    let common = ["--ns-include", &ns, "--json", "--no-progress"];
    let mut copy = vec![
        "copy",
        "--source-uri",
        src_uri,
        "--target-uri",
        dst_uri,
        "--drop",
        "--yes",
        "--journal",
        &j,
    ];
    copy.extend(common);
    let (cs, crss, cjson) = timed(&copy);
    let mut verify = vec!["verify", "--source-uri", src_uri, "--target-uri", dst_uri];
    verify.extend(common);
    let (vs, vrss, vjson) = timed(&verify);
    assert_eq!(
        vjson["verify"]["ok"], true,
        "verify after copy must be clean"
    );
    let _ = std::fs::remove_file(&journal);
    let cd = cjson["copy"]["docs"].as_u64().unwrap_or(0);
    let cb = cjson["copy"]["bytes"].as_u64().unwrap_or(0);
    (cs, crss, vs, vrss, cd, cb)
}

async fn measure(src: &Client, dst: &Client, uris: (&str, &str), set: &Set) {
    let (src_uri, dst_uri) = uris;
    let total: usize = set.colls.iter().map(|c| c.1).sum();
    eprintln!("bench: preparing {} ({total} docs)", set.name);
    generate(src, set).await;
    let (sd, sb, ss) = raw_scan(src, set).await;
    let (id, ib, is) = raw_insert(dst, set).await;
    let peer_runs = match (set.name, peers::tools_dir()) {
        ("peer" | "app", Some(tools)) => {
            let work = std::env::temp_dir().join("efs2atlas-bench-peers");
            std::fs::create_dir_all(&work).unwrap();
            eprintln!("bench: mongodump / mongorestore on {}", set.name);
            let settle = || tokio::task::block_in_place(|| settle(dst));
            peers::measure(&tools, (src_uri, dst_uri), set.db, &work, &settle)
        }
        _ => vec![],
    };
    tokio::task::block_in_place(|| settle(dst));
    let (cs, crss, vs, vrss, cd, cb) = tool_runs(src_uri, dst_uri, set);
    let (td, tb, ts) = raw_scan(dst, set).await;
    println!(
        "\n{} dataset: {sd} docs, {:.1} MB",
        set.name,
        sb as f64 / 1e6
    );
    println!("  raw scan (source)    {}", rate(sd, sb, ss));
    println!("  raw scan (target)    {}", rate(td, tb, ts));
    println!("  raw insert (target)  {}", rate(id, ib, is));
    for p in &peer_runs {
        let rss: Vec<String> = p.rss_kib.iter().map(|k| mib(*k)).collect();
        println!(
            "  {:<38} {:>6.1}s {}  peak RSS {}",
            p.name,
            p.seconds,
            rate(sd, sb, p.seconds),
            rss.join(" + ")
        );
    }
    println!(
        "  efs2atlas copy       {:>6.1}s {}  peak RSS {}",
        cs,
        rate(cd, cb, cs),
        mib(crss)
    );
    println!(
        "  efs2atlas verify     {:>6.1}s {}  peak RSS {} (both sides read)",
        vs,
        rate(sd, sb, vs),
        mib(vrss)
    );
    let (scan_rate, insert_rate) = (sd as f64 / ss, id as f64 / is);
    println!(
        "  copy / min(scan, insert)     = {:.2}",
        (cd as f64 / cs) / scan_rate.min(insert_rate)
    );
    println!(
        "  verify / slower raw scan     = {:.2} (goal >= 0.9)",
        (sd as f64 / vs) / scan_rate.min(td as f64 / ts)
    );
    if let Some(best) = peer_runs
        .iter()
        .filter(|p| p.name.contains('|'))
        .map(|p| p.seconds)
        .reduce(f64::min)
    {
        println!(
            "  speedup over the best peer pipe = {:.2} (goal >= 2.0)",
            best / cs
        );
    }
    if set.name == "big" {
        println!(
            "  peak RSS copy {}, verify {} (goal <= 128 MiB)",
            mib(crss),
            mib(vrss)
        );
    }
    if set.name == "small" {
        two_pass::two_pass(src, src_uri, dst_uri, set, cs).await;
    }
    if wan::wanted(set.name) {
        let settle = || tokio::task::block_in_place(|| settle(dst));
        wan::measure((src_uri, dst_uri), set, sb, &settle);
    }
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
    let peer = env_num("BENCH_PEER", 700_000);
    let small = env_num("BENCH_SMALL", 1_000_000);
    let big = env_num("BENCH_BIG", 1) * 100;
    let app = env_num("BENCH_APP", 150_000);
    let sets = [
        Set {
            name: "app",
            db: "bench_app",
            colls: vec![("orders".into(), app)],
        },
        Set {
            name: "peer",
            db: "bench_peer",
            colls: (0..4).map(|i| (format!("c{i}"), peer / 4)).collect(),
        },
        Set {
            name: "small",
            db: "bench_small",
            colls: vec![("docs".into(), small)],
        },
        Set {
            name: "big",
            db: "bench_big",
            colls: (0..4).map(|i| (format!("c{i}"), big / 4)).collect(),
        },
    ];
    println!(
        "machine: {} cores; servers: mongod 6.0.5 (source standalone + auth, target replica set + auth + TLS, loopback); peers: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if peers::tools_dir().is_some() {
            "mongodump/mongorestore 100.8.0"
        } else {
            "none (MONGO_TOOLS unset)"
        }
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for set in sets
        .iter()
        .filter(|s| s.colls.iter().any(|c| c.1 > 0))
        .filter(|s| only.is_empty() || only.split(',').any(|o| o == s.name))
    {
        measure(&src, &dst, (&src_uri, &dst_uri), set).await;
    }
}
