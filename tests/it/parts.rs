//! A large collection is read and written in `_id` parts side by side (apps keep most of their
//! data in one collection): killed part-way, each part continues where it stopped; documents
//! under `_id`s of other types (before, during and between runs) land too; the parts' ledgers
//! are joined so the frozen sync still works off what Atlas acknowledged.

use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::migrate::{assert_migrated, setup, spawn, wait_for};
use crate::mongod::client;

/// `_id`s of brackets around ObjectId's, and one of its own.
fn odd_ids(tag: i32) -> Vec<Bson> {
    vec![
        Bson::Null,
        Bson::Int32(tag),
        Bson::String(format!("odd-{tag}")),
        Bson::Document(doc! {"k": tag}),
        Bson::DateTime(DateTime::from_millis(1_700_000_000_000 + tag as i64)),
        Bson::Boolean(tag % 2 == 0),
        Bson::MaxKey,
    ]
}

async fn insert_odd(uri: &str, tag: i32) {
    let c = client(uri).await;
    let coll = c.database("goals").collection::<Document>("history");
    for id in odd_ids(tag) {
        // One of each `_id` (null, true/false, MaxKey): a repeat is already there.
        let _ = coll.insert_one(doc! {"_id": id, "odd": tag}).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_collection_is_copied_in_parts_killed_and_resumed() {
    // ~10 MB in one collection: large enough to be copied in parts.
    let s = setup(85_000).await;
    insert_odd(&s.src.uri(), 1).await;
    // A slow link (per connection: each part has its own), the data's bytes as they are.
    s.uncompressed();
    s.link.set(crate::tcpfault::Faults {
        bytes_per_sec: Some(250_000),
        ..Default::default()
    });
    let mut child = spawn(&s, None);
    let parts_under_way = |j: &serde_json::Value| {
        let c = &j["copy"]["collections"]["goals.history"];
        let parts = c["parts"].as_array().cloned().unwrap_or_default();
        c["data_done"] == false
            && parts
                .iter()
                .filter(|p| p["progress"]["docs"].as_u64().unwrap_or(0) > 0)
                .count()
                >= 2
    };
    wait_for(&s, "two parts under way", parts_under_way, &mut child).await;
    // The app writes while the copy runs: more under `_id`s of other types.
    insert_odd(&s.src.uri(), 2).await;
    child.kill().unwrap();
    tokio::task::block_in_place(|| child.wait()).unwrap();
    let j = s.journal_json();
    let c = &j["copy"]["collections"]["goals.history"];
    let parts = c["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 4, "{c:#}");
    assert!(
        parts[0]["from"].is_null() && parts[3]["until"].is_null(),
        "{c:#}"
    );
    for w in parts.windows(2) {
        assert_eq!(
            w[0]["until"], w[1]["from"],
            "parts follow each other: {c:#}"
        );
    }
    let sum: u64 = parts
        .iter()
        .map(|p| p["progress"]["docs"].as_u64().unwrap())
        .sum();
    assert_eq!(c["docs"].as_u64().unwrap(), sum, "{c:#}");
    // More between the runs.
    insert_odd(&s.src.uri(), 3).await;
    s.link.set(Default::default());
    let r = s.resume();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = s.journal_json();
    let c = &j["copy"]["collections"]["goals.history"];
    assert_eq!(c["data_done"], true, "{c:#}");
    assert_eq!(
        c["ledger_off"], false,
        "the parts' ledgers were joined into the collection's: {c:#}"
    );
    assert!(
        c["ledger"]["count"].as_u64().unwrap_or(0) >= 85_000,
        "{c:#}"
    );
    assert_migrated(&s).await;
    let dst = client(&s.dst.uri()).await;
    let got = dst
        .database("goals")
        .collection::<Document>("history")
        .count_documents(doc! {"odd": {"$exists": true}})
        .await
        .unwrap();
    // null, MaxKey, true and false once each; the numbers, strings, documents and dates 3×.
    assert_eq!(got, 4 + 4 * 3, "every odd _id landed");
}
