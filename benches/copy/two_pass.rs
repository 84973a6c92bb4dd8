//! Two-pass on the small set: a bulk copy while a writer changes 1 % of the documents, then
//! `sync`; sync / full copy is the share of a freeze-first copy the app spends read-only.

use mongodb::bson::{Document, doc, oid::ObjectId};
use mongodb::{Client, Collection};

use crate::{Set, make_doc, timed};

/// Two-pass on the same data: a bulk copy while a writer changes 1% of the documents
/// (a third each updated, inserted, deleted), then `sync`; the ratio sync / full copy is
/// the write-freeze window's share of what a freeze-first copy would take.
pub async fn two_pass(src: &Client, src_uri: &str, dst_uri: &str, set: &Set, full_copy_secs: f64) {
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
