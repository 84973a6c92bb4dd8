//! `efs2atlas copy` and `verify` against real mongods: a source like the `mongo` image and an
//! Atlas-like target (replica set, auth, TLS).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mongodb::bson::{
    Binary, Bson, DateTime, Document, RawDocumentBuf, doc, oid::ObjectId, spec::BinarySubtype,
};

use crate::common::{Cmd, Run};
use crate::mongod::{Mongod, client};

/// Every document of a collection as raw bytes, keyed by the bytes of its `_id` value.
pub(crate) async fn raw_docs(uri: &str, db: &str, coll: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = client(uri).await;
    let mut cur = c
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    while cur.advance().await.unwrap() {
        let d = cur.current();
        let id = Bson::try_from(d.get("_id").unwrap().unwrap().to_raw_bson()).unwrap();
        out.insert(
            mongodb::bson::to_vec(&doc! {"i": id}).unwrap(),
            d.as_bytes().to_vec(),
        );
    }
    out
}

async fn assert_same(src: &Mongod, dst: &Mongod, db: &str, coll: &str, tdb: &str) {
    let a = raw_docs(&src.uri(), db, coll).await;
    let b = raw_docs(&dst.uri(), tdb, coll).await;
    assert_eq!(a.len(), b.len(), "{db}.{coll}: document counts differ");
    assert!(a == b, "{db}.{coll}: documents differ byte for byte");
}

/// Collections covering the cases the issue names; returns (db, coll) pairs.
async fn seed_varied(uri: &str) -> Vec<(&'static str, &'static str)> {
    let c = client(uri).await;
    let app = c.database("app");
    let oids: Vec<Document> = (0..3000)
        .map(|i: i32| doc! {"_id": ObjectId::new(), "n": i, "s": "x".repeat(i as usize % 50)})
        .collect();
    app.collection::<Document>("by_oid")
        .insert_many(oids)
        .await
        .unwrap();
    let strs: Vec<Document> = (0..500).map(|i| doc! {"_id": format!("key-{i:04}"), "ünïcødé fïeld": "välue", "日本": i, "nested": {"ключ": [1, 2, {"x": "y"}]}, "rank": i}).collect();
    app.collection::<Document>("by_string")
        .insert_many(strs)
        .await
        .unwrap();
    let ints: Vec<Document> = (0..700).map(|i| doc! {"_id": i, "v": i * 2}).collect();
    app.collection::<Document>("by_int")
        .insert_many(ints)
        .await
        .unwrap();
    let dates: Vec<Document> = (0..50)
        .map(|i| doc! {"_id": DateTime::from_millis(1_600_000_000_000 + i * 1000), "x": 1.5})
        .collect();
    app.collection::<Document>("by_date")
        .insert_many(dates)
        .await
        .unwrap();
    let bins: Vec<Document> = (0..50u8)
        .map(|i| doc! {"_id": Binary { subtype: BinarySubtype::Generic, bytes: vec![i, i, 7] }, "b": true, "nul": Bson::Null})
        .collect();
    app.collection::<Document>("by_binary")
        .insert_many(bins)
        .await
        .unwrap();
    let docs_ids: Vec<Document> = (0..40)
        .map(|i| doc! {"_id": {"tenant": "t1", "seq": i}, "v": "w"})
        .collect();
    app.collection::<Document>("by_doc")
        .insert_many(docs_ids)
        .await
        .unwrap();
    app.run_command(doc! {"create": "empty"}).await.unwrap();
    app.run_command(doc! {"createIndexes": "by_string", "indexes": [{"key": {"rank": 1}, "name": "rank_1", "unique": true}]}).await.unwrap();
    let logs = c.database("logs");
    for name in ["a", "b", "c", "d", "e", "f"] {
        let docs: Vec<Document> = (0..200)
            .map(|i| doc! {"_id": ObjectId::new(), "c": name, "i": i})
            .collect();
        logs.collection::<Document>(name)
            .insert_many(docs)
            .await
            .unwrap();
    }
    vec![
        ("app", "by_oid"),
        ("app", "by_string"),
        ("app", "by_int"),
        ("app", "by_date"),
        ("app", "by_binary"),
        ("app", "by_doc"),
        ("app", "empty"),
        ("logs", "a"),
        ("logs", "b"),
        ("logs", "c"),
        ("logs", "d"),
        ("logs", "e"),
        ("logs", "f"),
    ]
}

fn journal_in(dir: &tempfile::TempDir) -> String {
    dir.path().join("copy.journal.json").display().to_string()
}

#[tokio::test]
async fn copies_many_collections_exactly_and_verifies_clean() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let colls = seed_varied(&src.uri()).await;
    let dir = tempfile::tempdir().unwrap();
    let j = journal_in(&dir);
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(&j)
        .json()
        .args(&["-j", "4"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(
        v["copy"]["collections"].as_array().unwrap().len(),
        colls.len()
    );
    for (db, coll) in &colls {
        assert_same(&src, &dst, db, coll, db).await;
    }
    let idx = client(&dst.uri())
        .await
        .database("app")
        .run_command(doc! {"listIndexes": "by_string"})
        .await
        .unwrap();
    assert_eq!(
        idx.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .len(),
        2,
        "{idx}"
    );
    let names = client(&dst.uri())
        .await
        .database("app")
        .list_collection_names()
        .await
        .unwrap();
    assert!(names.contains(&"empty".to_string()));

    let r = Cmd::verify(&src.uri(), &dst.uri()).json().run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["verify"]["ok"], true);
    assert_eq!(
        v["verify"]["collections"].as_array().unwrap().len(),
        colls.len()
    );

    // Running the same copy again is a no-op: the journal says it is complete.
    let r = Cmd::copy(&src.uri(), &dst.uri()).journal(&j).json().run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["copy"]["docs"], 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&j).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test]
async fn a_15_mib_document_copies() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let c = client(&src.uri()).await;
    let big = "z".repeat(15 * 1024 * 1024);
    let coll = c.database("big").collection::<Document>("blobs");
    coll.insert_one(doc! {"_id": 1, "payload": &big})
        .await
        .unwrap();
    coll.insert_many((2..6).map(|i| doc! {"_id": i, "payload": "small"}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(journal_in(&dir))
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(&src, &dst, "big", "blobs", "big").await;
}

#[tokio::test]
async fn refuses_a_non_empty_target_unless_dropping() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    client(&src.uri())
        .await
        .database("app")
        .collection::<Document>("users")
        .insert_many((0..10).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    client(&dst.uri())
        .await
        .database("app")
        .collection::<Document>("users")
        .insert_one(doc! {"_id": 99, "old": true})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let j = journal_in(&dir);
    let r = Cmd::copy(&src.uri(), &dst.uri()).journal(&j).run();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("app.users") && r.stderr.contains("--drop"),
        "{}",
        r.stderr
    );
    assert_eq!(
        raw_docs(&dst.uri(), "app", "users").await.len(),
        1,
        "nothing was written"
    );

    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(&j)
        .args(&["--drop"])
        .run();
    assert_eq!(r.code, 3, "no terminal, no --yes: {}", r.stderr);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);

    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(&j)
        .yes()
        .args(&["--drop"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(&src, &dst, "app", "users", "app").await;
}

#[tokio::test]
async fn namespace_filters_and_target_db() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    seed_varied(&src.uri()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(journal_in(&dir))
        .json()
        .args(&[
            "--ns-include",
            "app.by_*",
            "--ns-include",
            "logs.a",
            "--ns-exclude",
            "app.by_d*",
        ])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got: Vec<String> = r.json()["copy"]["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        [
            "app.by_binary",
            "app.by_int",
            "app.by_oid",
            "app.by_string",
            "logs.a"
        ]
    );
    let r = Cmd::verify(&src.uri(), &dst.uri())
        .args(&[
            "--ns-include",
            "app.by_*",
            "--ns-include",
            "logs.a",
            "--ns-exclude",
            "app.by_d*",
        ])
        .run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(journal_in(&dir))
        .args(&["--db", "logs", "--target-db", "logs_2024"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(&src, &dst, "logs", "c", "logs_2024").await;
    let r = Cmd::verify(&src.uri(), &dst.uri())
        .args(&["--db", "logs", "--target-db", "logs_2024"])
        .run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let r = Cmd::copy(&src.uri(), &dst.uri())
        .args(&["--target-db", "x"])
        .run();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("pick one with --db"), "{}", r.stderr);
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .args(&["--ns-include", "nodot"])
        .run();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("DB.COLLECTION"), "{}", r.stderr);
}

#[tokio::test]
async fn verify_pinpoints_every_kind_of_tampering() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let s = client(&src.uri()).await;
    let docs: Vec<Document> = (0..200)
        .map(|i| doc! {"_id": format!("k{i:03}"), "n": i, "price": 5.0})
        .collect();
    s.database("shop")
        .collection::<Document>("items")
        .insert_many(docs)
        .await
        .unwrap();
    s.database("shop")
        .run_command(doc! {"createIndexes": "items", "indexes": [{"key": {"n": 1}, "name": "n_1"}]})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .journal(journal_in(&dir))
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);

    let t = client(&dst.uri()).await;
    let items = t.database("shop").collection::<Document>("items");
    items.delete_one(doc! {"_id": "k010"}).await.unwrap();
    items
        .insert_one(doc! {"_id": "k999", "n": 999})
        .await
        .unwrap();
    items
        .update_one(doc! {"_id": "k020"}, doc! {"$set": {"n": -1}})
        .await
        .unwrap();
    // Same value, other type: a Double 5.0 becomes an Int32 5. Only a byte-exact check sees it.
    items
        .update_one(doc! {"_id": "k030"}, doc! {"$set": {"price": 5}})
        .await
        .unwrap();
    let idx = t
        .database("shop")
        .run_command(doc! {"listIndexes": "items"})
        .await
        .unwrap();
    let name = idx
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .filter_map(|i| i.as_document())
        .map(|i| i.get_str("name").unwrap().to_string())
        .find(|n| n != "_id_")
        .unwrap();
    t.database("shop")
        .run_command(doc! {"dropIndexes": "items", "index": &name})
        .await
        .unwrap();

    let r = Cmd::verify(&src.uri(), &dst.uri()).json().run();
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let c = &r.json()["verify"]["collections"][0];
    assert_eq!(c["ok"], false);
    assert_eq!(
        (
            c["missing"].as_u64(),
            c["extra"].as_u64(),
            c["different"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "{c:#}"
    );
    let ex: Vec<(String, String)> = c["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        ("missing", "k010"),
        ("extra", "k999"),
        ("different", "k020"),
        ("different", "k030"),
    ] {
        assert!(
            ex.contains(&(want.0.to_string(), format!("\"{}\"", want.1)).to_owned())
                || ex.iter().any(|(k, i)| k == want.0 && i.contains(want.1)),
            "{want:?} not in {ex:?}"
        );
    }
    assert!(
        c["index_differences"]
            .to_string()
            .contains("missing on the target"),
        "{c:#}"
    );
    assert!(r.stderr.contains("shop.items"), "{}", r.stderr);

    // Text output names the same _ids.
    let r = Cmd::verify(&src.uri(), &dst.uri()).run();
    assert_eq!(r.code, 4);
    assert!(
        r.stdout.contains("k010") && r.stdout.contains("k999") && r.stdout.contains("MISMATCH"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn verify_without_pinpointing_still_catches_differences() {
    // A case-insensitive default collation makes the server sort string _ids by it, not by
    // MongoDB's binary order: per-document matching is impossible, the digest still catches it.
    let (src, dst) = (Mongod::source(), Mongod::target());
    let s = client(&src.uri()).await;
    s.database("d")
        .run_command(doc! {"create": "c", "collation": {"locale": "en", "strength": 2}})
        .await
        .unwrap();
    s.database("d")
        .collection::<Document>("c")
        .insert_many((0..300).map(|i| doc! {"_id": mixed_case_id(i), "x": 1.0}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        Cmd::copy(&src.uri(), &dst.uri())
            .journal(journal_in(&dir))
            .run()
            .code,
        0
    );
    assert_eq!(Cmd::verify(&src.uri(), &dst.uri()).run().code, 0);
    client(&dst.uri())
        .await
        .database("d")
        .collection::<Document>("c")
        .update_one(doc! {"_id": mixed_case_id(150)}, doc! {"$set": {"x": 1}})
        .await
        .unwrap();
    let r = Cmd::verify(&src.uri(), &dst.uri()).json().run();
    assert_eq!(r.code, 4, "{}", r.stdout);
    let c = &r.json()["verify"]["collections"][0];
    assert!(
        c["pinpoint_unavailable"]
            .as_str()
            .unwrap()
            .contains("not MongoDB's sort order"),
        "{c:#}"
    );
    assert_ne!(c["source_digest"], c["target_digest"]);
}

/// String `_id`s whose case alternates: `k00000`, `K00001`, `k00002`, ... A case-insensitive
/// collation sorts them by number, out of MongoDB's binary order ("K" < "k") from the start.
fn mixed_case_id(i: i32) -> String {
    format!("{}{i:05}", if i % 2 == 0 { "k" } else { "K" })
}

/// Starts a copy, waits until the journal shows `collection` part-way, then SIGKILLs it.
fn kill_mid_collection(src: &Mongod, target_uri: &str, journal: &str, collection: &str) -> u64 {
    let mut child = Cmd::copy(&src.uri(), target_uri)
        .env("EFS2ATLAS_COMPRESSORS", "none")
        .journal(journal)
        .args(&["-j", "1"])
        .quiet()
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "copy never got part-way");
        let v = crate::common::journal_at(journal);
        {
            let c = &v["copy"]["collections"][collection];
            let docs = c["docs"].as_u64().unwrap_or(0);
            if docs > 0 && c["data_done"] == false {
                child.kill().unwrap();
                child.wait().unwrap();
                return docs;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "copy finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn kill_9_mid_collection_then_rerun_converges() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let s = client(&src.uri()).await;
    // ObjectId _ids in MongoDB's order: the rerun resumes after the last _id.
    let docs: Vec<Document> = (0..40_000)
        .map(|i| doc! {"_id": ObjectId::new(), "i": i, "pad": "p".repeat(64)})
        .collect();
    s.database("big")
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
    // String _ids under a case-insensitive collation: the server's order is not MongoDB's
    // binary order, so the rerun rescans and skips what is there.
    s.database("big")
        .run_command(doc! {"create": "numbered", "collation": {"locale": "en", "strength": 2}})
        .await
        .unwrap();
    let docs: Vec<Document> = (0..25_000)
        .map(|i| doc! {"_id": mixed_case_id(i), "pad": "q".repeat(64)})
        .collect();
    s.database("big")
        .collection::<Document>("numbered")
        .insert_many(docs)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let j = journal_in(&dir);
    // A slow link to the target: on loopback a real mongod takes these in well under the
    // journal's interval, too fast to kill part-way.
    // (Per connection: a collection copying alone keeps up to eight inserts in flight.)
    let slow = crate::tcpfault::TcpFault::start(dst.port());
    slow.set(crate::tcpfault::Faults {
        bytes_per_sec: Some(250_000),
        ..Default::default()
    });
    let target = dst.uri_via(slow.port);
    for coll in ["big.events", "big.numbered"] {
        let at = kill_mid_collection(&src, &target, &j, coll);
        assert!(at > 0);
    }
    slow.set(crate::tcpfault::Faults::default());
    let v = crate::common::journal_at(&j);
    assert_eq!(
        v["copy"]["collections"]["big.events"]["order_trusted"], true,
        "{v:#}"
    );
    assert_eq!(
        v["copy"]["collections"]["big.numbered"]["order_trusted"], false,
        "{v:#}"
    );
    let r = Cmd::copy(&src.uri(), &target)
        .env("EFS2ATLAS_COMPRESSORS", "none")
        .journal(&j)
        .json()
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let copied: u64 = v["copy"]["docs"].as_u64().unwrap();
    assert!(
        copied < 65_000,
        "the rerun continued instead of starting over ({copied} docs)"
    );
    assert_same(&src, &dst, "big", "events", "big").await;
    assert_same(&src, &dst, "big", "numbered", "big").await;
    let r = Cmd::verify(&src.uri(), &dst.uri()).run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

#[tokio::test]
async fn a_journal_from_another_run_is_refused() {
    let (src, dst, other) = (Mongod::source(), Mongod::target(), Mongod::target());
    client(&src.uri())
        .await
        .database("a")
        .collection::<Document>("b")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let j = journal_in(&dir);
    assert_eq!(Cmd::copy(&src.uri(), &dst.uri()).journal(&j).run().code, 0);
    let r = Cmd::copy(&src.uri(), &other.uri()).journal(&j).run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("belongs to another run"), "{}", r.stderr);
    std::fs::write(&j, "{\"format\": 1, \"kind\": \"co").unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri()).journal(&j).run();
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
}

#[tokio::test]
async fn credentials_never_show_in_errors() {
    let r = Cmd::copy(
        "mongodb://admin:Sup3rS3cret@127.0.0.1:9/?serverSelectionTimeoutMS=500",
        "mongodb://u:An0therPw@127.0.0.1:9",
    )
    .run();
    assert_ne!(r.code, 0);
    r.assert_no_secret(&["Sup3rS3cret", "An0therPw"]);
    assert!(r.stderr.contains("admin:****@127.0.0.1:9"), "{}", r.stderr);
}

mod faults {
    use super::*;
    use crate::tcpfault::{Faults, TcpFault};

    async fn seed_big(uri: &str, n: i32) {
        let c = client(uri).await;
        let docs: Vec<Document> = (0..n)
            .map(|i| doc! {"_id": ObjectId::new(), "i": i, "pad": "f".repeat(200)})
            .collect();
        c.database("flaky")
            .collection::<Document>("events")
            .insert_many(docs)
            .await
            .unwrap();
        let docs: Vec<Document> = (0..2000)
            .map(|i| doc! {"_id": format!("s{i:05}"), "v": i})
            .collect();
        c.database("flaky")
            .collection::<Document>("small")
            .insert_many(docs)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn copy_and_verify_ride_out_dropped_connections() {
        let (src, dst) = (Mongod::source(), Mongod::target());
        seed_big(&src.uri(), 20_000).await;
        // Every connection to the source dies after ~1.5 MB: the copy needs several of them.
        let sp = TcpFault::start(src.port());
        sp.set(Faults {
            drop_after_bytes: Some(1_500_000),
            ..Default::default()
        });
        let dp = TcpFault::start(dst.port());
        dp.set(Faults {
            drop_after_bytes: Some(2_500_000),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let r = Cmd::copy(&src.uri_via(sp.port), &dst.uri_via(dp.port))
            .env("EFS2ATLAS_COMPRESSORS", "none")
            .journal(journal_in(&dir))
            .json()
            .args(&["-v"])
            .run();
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            sp.cuts() + dp.cuts() >= 3,
            "faults were injected: {} + {}",
            sp.cuts(),
            dp.cuts()
        );
        assert!(r.stderr.contains("retrying"), "{}", r.stderr);
        assert_same(&src, &dst, "flaky", "events", "flaky").await;
        assert_same(&src, &dst, "flaky", "small", "flaky").await;
        let r = Cmd::verify(&src.uri_via(sp.port), &dst.uri_via(dp.port))
            .env("EFS2ATLAS_COMPRESSORS", "none")
            .json()
            .run();
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.json()["verify"]["ok"], true);
    }

    #[tokio::test]
    async fn a_stall_is_waited_out() {
        let (src, dst) = (Mongod::source(), Mongod::target());
        seed_big(&src.uri(), 3000).await;
        let sp = TcpFault::start(src.port());
        sp.set(Faults {
            stall_until: Some(Instant::now() + Duration::from_secs(3)),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let r = Cmd::copy(&src.uri_via(sp.port), &dst.uri())
            .env("EFS2ATLAS_COMPRESSORS", "none")
            .journal(journal_in(&dir))
            .run();
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_same(&src, &dst, "flaky", "events", "flaky").await;
    }

    #[tokio::test]
    async fn an_outage_longer_than_the_retry_budget_stops_cleanly_and_the_rerun_finishes() {
        let (src, dst) = (Mongod::source(), Mongod::target());
        seed_big(&src.uri(), 20_000).await;
        let dp = TcpFault::start(dst.port());
        let dir = tempfile::tempdir().unwrap();
        let j = journal_in(&dir);
        let child = Cmd::copy(&src.uri(), &dst.uri_via(dp.port))
            .env("EFS2ATLAS_COMPRESSORS", "none")
            .journal(&j)
            .args(&["-j", "1"])
            .piped()
            .spawn();
        // Once part of the data is in, the target goes away for good (for this run).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "copy never got going");
            let docs = crate::common::journal_at(&j)["copy"]["collections"]["flaky.events"]["docs"]
                .as_u64()
                .unwrap_or(0);
            if docs > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        dp.set(Faults {
            drop_after_bytes: Some(0),
            refuse_until: Some(Instant::now() + Duration::from_secs(3600)),
            ..Default::default()
        });
        let out = child.wait_with_output().unwrap();
        let r: Run = out.into();
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("gave up after") && r.stderr.contains("journal"),
            "{}",
            r.stderr
        );
        let v = crate::common::journal_at(&j);
        assert!(
            v["copy"]["collections"]["flaky.events"]["docs"]
                .as_u64()
                .unwrap()
                > 0
        );
        dp.set(Faults::default());
        let r = Cmd::copy(&src.uri(), &dst.uri_via(dp.port))
            .env("EFS2ATLAS_COMPRESSORS", "none")
            .journal(&j)
            .run();
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_same(&src, &dst, "flaky", "events", "flaky").await;
    }
}
