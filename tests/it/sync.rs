//! `efs2atlas sync` on real mongods: a writer changes the source while the bulk copy runs; then
//! the writer stops (these tests exercise `sync` alone; `migrate` tests freeze for real) and
//! sync makes the target equal to the source byte for byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mongodb::IndexModel;
use mongodb::bson::{Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;

use crate::common::{Cmd, Run};
use crate::mongod::{Mongod, client};

/// Runs efs2atlas in `dir` (where the default journals live), off the runtime's workers.
async fn db(uri: &str) -> mongodb::Database {
    client(uri).await.database("shop")
}

/// Users with a unique email, orders with string ids, and a collection that will be dropped.
async fn seed(uri: &str, users: i32) {
    let d = db(uri).await;
    let u = d.collection::<Document>("users");
    u.create_index(
        IndexModel::builder()
            .keys(doc! {"email": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .unwrap();
    let docs: Vec<Document> =
        (0..users).map(|i| doc! {"_id": ObjectId::new(), "email": format!("u{i}@x"), "n": i, "pad": "p".repeat(100)}).collect();
    u.insert_many(docs).await.unwrap();
    let orders: Vec<Document> = (0..2000)
        .map(
            |i| doc! {"_id": format!("order-{i:06}"), "total": i as f64 * 1.5, "items": [i, i + 1]},
        )
        .collect();
    d.collection::<Document>("orders")
        .insert_many(orders)
        .await
        .unwrap();
    let old: Vec<Document> = (0..100)
        .map(|i| doc! {"_id": ObjectId::new(), "i": i})
        .collect();
    d.collection::<Document>("old")
        .insert_many(old)
        .await
        .unwrap();
}

/// Inserts, updates (including swapping unique emails between two users) and deletes until
/// told to stop; counts what it did.
fn writer(uri: String, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let d = db(&uri).await;
        let u = d.collection::<Document>("users");
        let o = d.collection::<Document>("orders");
        let mut i: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            match i % 5 {
                0 => {
                    u.insert_one(
                        doc! {"_id": ObjectId::new(), "email": format!("new{i}@x"), "n": -1},
                    )
                    .await
                    .unwrap();
                }
                1 => {
                    let k = (i * 7919) % 2000;
                    o.update_one(
                        doc! {"_id": format!("order-{k:06}")},
                        doc! {"$set": {"total": -1.0, "note": format!("changed {i}")}},
                    )
                    .await
                    .unwrap();
                }
                2 => {
                    let k = (i * 104_729) % 2000;
                    o.delete_one(doc! {"_id": format!("order-{k:06}")})
                        .await
                        .unwrap();
                }
                3 => {
                    // Swap the emails of two users through a temporary value (the unique index
                    // holds on the source at every moment, as in a real app).
                    let (a, b) = ((i * 31) % 3000, (i * 31 + 1500) % 3000);
                    let ea = u.find_one(doc! {"n": a}).await.unwrap();
                    let eb = u.find_one(doc! {"n": b}).await.unwrap();
                    if let (Some(ea), Some(eb)) = (ea, eb) {
                        let (ma, mb) = (
                            ea.get_str("email").unwrap().to_string(),
                            eb.get_str("email").unwrap().to_string(),
                        );
                        u.update_one(
                            doc! {"_id": ea.get("_id").unwrap()},
                            doc! {"$set": {"email": format!("tmp{i}")}},
                        )
                        .await
                        .unwrap();
                        u.update_one(
                            doc! {"_id": eb.get("_id").unwrap()},
                            doc! {"$set": {"email": &ma}},
                        )
                        .await
                        .unwrap();
                        u.update_one(
                            doc! {"_id": ea.get("_id").unwrap()},
                            doc! {"$set": {"email": &mb}},
                        )
                        .await
                        .unwrap();
                    }
                }
                _ => {
                    u.delete_one(doc! {"n": (i * 13) % 3000 + 3000})
                        .await
                        .unwrap();
                }
            }
            ops.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_a_live_copy_makes_the_target_equal_byte_for_byte() {
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target()));
    let dir = tempfile::tempdir().unwrap();
    seed(&src.uri(), 6000).await;
    let (s, t) = (src.uri(), dst.uri());
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let w = writer(s.clone(), stop.clone(), ops.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = Cmd::copy(&s, &t)
        .dir(dir.path())
        .yes()
        .args(&["-j", "2"])
        .run();
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    // The freeze: the writer stops; the source changes no more.
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let writes = ops.load(Ordering::Relaxed);
    assert!(
        writes > 50,
        "the writer ran during the copy: {writes} writes"
    );
    // Collections created and dropped on the source since the copy.
    let d = db(&s).await;
    d.collection::<Document>("fresh")
        .insert_many((0..50).map(|i| doc! {"_id": format!("f{i}"), "i": i}))
        .await
        .unwrap();
    d.collection::<Document>("old").drop().await.unwrap();
    let v = Cmd::verify(&s, &t).dir(dir.path()).run();
    assert_eq!(
        v.code, 4,
        "the live copy is behind the source: {}",
        v.stdout
    );

    let r = Cmd::sync(&s, &t).dir(dir.path()).json().run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = r.json()["sync"].clone();
    assert!(j["inserted"].as_u64().unwrap() >= 50, "{j:#}");
    assert!(j["replaced"].as_u64().unwrap() > 0, "{j:#}");
    assert!(j["deleted"].as_u64().unwrap() > 0, "{j:#}");
    assert_eq!(
        j["dropped_collections"],
        serde_json::json!(["shop.old"]),
        "copy created it, the source dropped it: {j:#}"
    );
    let fresh = j["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "shop.fresh")
        .unwrap();
    assert_eq!(fresh["created"], true);
    assert!(
        !dir.path().join("efs2atlas-sync.journal.json").exists(),
        "a finished sync leaves no journal"
    );

    let v = Cmd::verify(&s, &t).dir(dir.path()).json().run();
    assert_eq!(v.code, 0, "byte for byte after sync: {}", v.stdout);
    println!("sync: {writes} concurrent writes during the copy; {j}");

    // Sync on an equal pair changes nothing.
    let r = Cmd::sync(&s, &t).dir(dir.path()).json().run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json()["sync"].clone();
    assert_eq!(
        (
            j["inserted"].as_u64(),
            j["replaced"].as_u64(),
            j["deleted"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{j:#}"
    );
    assert_eq!(j["dropped_collections"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_unique_values_are_resolved_not_reported() {
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target()));
    let dir = tempfile::tempdir().unwrap();
    seed(&src.uri(), 3000).await;
    let (s, t) = (src.uri(), dst.uri());
    let copy = Cmd::copy(&s, &t).dir(dir.path()).yes().run();
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    // Rotate emails along a chain of users: every new value is held by another document
    // on the target until that one is patched too.
    let u = db(&s).await.collection::<Document>("users");
    let chain: Vec<i32> = (0..40).map(|k| k * 70).collect();
    let first = u
        .find_one(doc! {"n": chain[0]})
        .await
        .unwrap()
        .unwrap()
        .get_str("email")
        .unwrap()
        .to_string();
    u.update_one(doc! {"n": chain[0]}, doc! {"$set": {"email": "tmp"}})
        .await
        .unwrap();
    for w in chain.windows(2) {
        let next = u
            .find_one(doc! {"n": w[1]})
            .await
            .unwrap()
            .unwrap()
            .get_str("email")
            .unwrap()
            .to_string();
        u.update_one(doc! {"n": w[1]}, doc! {"$set": {"email": "tmp2"}})
            .await
            .unwrap();
        u.update_one(doc! {"n": w[0]}, doc! {"$set": {"email": &next}})
            .await
            .unwrap();
        u.update_one(doc! {"n": w[1]}, doc! {"$set": {"email": "tmp"}})
            .await
            .unwrap();
    }
    u.update_one(
        doc! {"n": *chain.last().unwrap()},
        doc! {"$set": {"email": &first}},
    )
    .await
    .unwrap();
    // Every user changes too, so the rotated ones land in different write batches.
    u.update_many(doc! {}, doc! {"$set": {"touched": true}})
        .await
        .unwrap();
    let r = Cmd::sync(&s, &t).dir(dir.path()).json().run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = r.json()["sync"].clone();
    assert_eq!(j["replaced"].as_u64(), Some(3000), "{j:#}");
    assert!(
        j["conflicts_resolved"].as_u64().unwrap() > 0,
        "the chain crossed batches: {j:#}"
    );
    let v = Cmd::verify(&s, &t).dir(dir.path()).run();
    assert_eq!(v.code, 0, "{}", v.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sync_then_rerun_converges() {
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target()));
    let dir = tempfile::tempdir().unwrap();
    seed(&src.uri(), 3000).await;
    let (s, t) = (src.uri(), dst.uri());
    let copy = Cmd::copy(&s, &t).dir(dir.path()).yes().run();
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    // Lots to patch: many new documents in several collections, some changed, some gone.
    let d = db(&s).await;
    for c in ["a", "b", "c"] {
        let docs: Vec<Document> = (0..15_000)
            .map(|i| doc! {"_id": ObjectId::new(), "i": i, "pad": "z".repeat(200)})
            .collect();
        d.collection::<Document>(c).insert_many(docs).await.unwrap();
    }
    d.collection::<Document>("orders")
        .update_many(doc! {}, doc! {"$set": {"total": 0.5}})
        .await
        .unwrap();
    d.collection::<Document>("users")
        .delete_many(doc! {"n": {"$lt": 1000}})
        .await
        .unwrap();
    let mut child = Cmd::sync(&s, &t)
        .dir(dir.path())
        .args(&["-j", "1"])
        .quiet()
        .spawn();
    let journal = dir.path().join("efs2atlas-sync.journal.json");
    // Kill once sync has finished at least one collection and is inside another.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let j = crate::common::journal_at(&journal);
        if j["sync"].as_object().is_some_and(|m| !m.is_empty()) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sync finished before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "sync never recorded a collection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    child.kill().unwrap();
    tokio::task::block_in_place(|| child.wait()).unwrap();
    let j = crate::common::journal_at(&journal);
    let finished_before = j["sync"].as_object().unwrap().len();
    let r = Cmd::sync(&s, &t).dir(dir.path()).json().run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.json()["sync"]["resumed"].as_u64(),
        Some(finished_before as u64),
        "finished collections are not compared again"
    );
    let v = Cmd::verify(&s, &t).dir(dir.path()).run();
    assert_eq!(v.code, 0, "{}", v.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_a_server_that_does_not_sort_ids_like_mongodb() {
    // A case-insensitive default collation makes the server sort string _ids by it ("k001",
    // "K002", "k003"), not in MongoDB's binary order ("K" < "k"): a merge cannot match them.
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target()));
    let dir = tempfile::tempdir().unwrap();
    let d = db(&src.uri()).await;
    d.run_command(doc! {"create": "ints", "collation": {"locale": "en", "strength": 2}})
        .await
        .unwrap();
    let c = d.collection::<Document>("ints");
    let id = |i: i32| format!("{}{i:03}", if i % 2 == 0 { "k" } else { "K" });
    c.insert_many((1..=30).map(|i| doc! {"_id": id(i), "v": i}))
        .await
        .unwrap();
    let (s, t) = (src.uri(), dst.uri());
    let copy = Cmd::copy(&s, &t).dir(dir.path()).yes().run();
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    c.update_one(doc! {"_id": id(5)}, doc! {"$set": {"v": -5}})
        .await
        .unwrap();
    let r = Cmd::sync(&s, &t).dir(dir.path()).run();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("not MongoDB's sort order") && r.stderr.contains("copy --drop"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_rides_out_dropped_connections_and_continues_where_it_was() {
    use crate::tcpfault::{Faults, TcpFault};
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target()));
    let dir = tempfile::tempdir().unwrap();
    seed(&src.uri(), 3000).await;
    let (s, t) = (src.uri(), dst.uri());
    let copy = Cmd::copy(&s, &t).dir(dir.path()).yes().run();
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    let d = db(&s).await;
    let docs: Vec<Document> = (0..20_000)
        .map(|i| doc! {"_id": ObjectId::new(), "i": i, "pad": "q".repeat(200)})
        .collect();
    d.collection::<Document>("bulk")
        .insert_many(docs)
        .await
        .unwrap();
    d.collection::<Document>("users")
        .update_many(doc! {}, doc! {"$set": {"seen": true}})
        .await
        .unwrap();
    // Every connection dies after a few MB: the sync needs several, and must not start over
    // each time (a restart from scratch would never get through 6 MB of source documents).
    let sp = TcpFault::start(src.port());
    sp.set(Faults {
        drop_after_bytes: Some(1_000_000),
        ..Default::default()
    });
    let dp = TcpFault::start(dst.port());
    dp.set(Faults {
        drop_after_bytes: Some(1_500_000),
        ..Default::default()
    });
    let r = Cmd::sync(&src.uri_via(sp.port), &dst.uri_via(dp.port))
        .env("EFS2ATLAS_COMPRESSORS", "none")
        .dir(dir.path())
        .json()
        .args(&["-v"])
        .run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        sp.cuts() + dp.cuts() >= 3,
        "faults: {} + {}",
        sp.cuts(),
        dp.cuts()
    );
    assert!(r.stderr.contains("retrying"), "{}", r.stderr);
    let j = r.json()["sync"].clone();
    // A batch cut between its deletes and its inserts comes back as missing documents.
    assert_eq!(
        j["replaced"].as_u64().unwrap() + j["inserted"].as_u64().unwrap(),
        23_000,
        "{j:#}"
    );
    println!(
        "sync under faults: {} connection cuts, {j}",
        sp.cuts() + dp.cuts()
    );
    let v = Cmd::verify(&s, &t).dir(dir.path()).run();
    assert_eq!(v.code, 0, "{}", v.stdout);
}

/// The app swaps two unique values while the copy runs, one document already copied and one
/// not yet: the copied data holds one value twice for now, so the unique index is left to
/// sync (not a failed copy), and sync patches the documents, then builds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_that_straddles_the_copy_leaves_the_unique_index_to_sync() {
    use crate::tcpfault::{Faults, TcpFault};
    let (src, dst) = tokio::task::block_in_place(|| (Mongod::source(), Mongod::target()));
    let dir = tempfile::tempdir().unwrap();
    seed(&src.uri(), 20_000).await;
    // The source is read through a slow link, so the last document is not read yet.
    let slow = TcpFault::start(src.port());
    slow.set(Faults {
        bytes_per_sec: Some(1_000_000),
        ..Default::default()
    });
    let (s, t) = (src.uri_via(slow.port), dst.uri());
    let journal = dir.path().join("copy.json").display().to_string();
    let child = Cmd::copy(&s, &t)
        .env("EFS2ATLAS_COMPRESSORS", "none")
        .dir(dir.path())
        .journal(&journal)
        .args(&["-j", "1"])
        .piped()
        .spawn();
    let users = db(&src.uri()).await.collection::<Document>("users");
    let first = users
        .find_one(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .unwrap();
    let last = users
        .find_one(doc! {})
        .sort(doc! {"_id": -1})
        .await
        .unwrap()
        .unwrap();
    loop {
        let v = crate::common::journal_at(&journal);
        let u = &v["copy"]["collections"]["shop.users"];
        if u["docs"].as_u64().unwrap_or(0) > 0 && u["data_done"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (a, b) = (
        first.get_str("email").unwrap(),
        last.get_str("email").unwrap(),
    );
    for (id, email) in [
        (first.get("_id"), "swapping"),
        (last.get("_id"), a),
        (first.get("_id"), b),
    ] {
        users
            .update_one(doc! {"_id": id.unwrap()}, doc! {"$set": {"email": email}})
            .await
            .unwrap();
    }
    let r: Run = tokio::task::block_in_place(|| child.wait_with_output())
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("INDEX LEFT TO SYNC") && r.stdout.contains("email_1"),
        "{}",
        r.stdout
    );
    slow.set(Faults::default());
    let r = Cmd::sync(&s, &t).dir(dir.path()).json().run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("email_1"),
        "sync built the index: {}",
        r.stdout
    );
    let v = Cmd::verify(&s, &t).dir(dir.path()).run();
    assert_eq!(v.code, 0, "{}", v.stdout);
}
