//! What the old emulator made impossible to test, on real mongods through the binary: every BSON
//! type byte-exact, `_id`s of mixed types, collection and index options replayed option by
//! option, the names MongoDB allows, and verify pinpointing a type change on integer `_id`s.

use std::collections::BTreeMap;

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use crate::common::Cmd;
use crate::common::Run;
use crate::data::raw_docs;
use crate::mongod::{Mongod, client};
use crate::rich;

fn copy_all(src: &Mongod, dst: &Mongod) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j.json").display().to_string();
    Cmd::copy(&src.uri(), &dst.uri()).journal(&j).json().run()
}

fn verify(src: &Mongod, dst: &Mongod) -> Run {
    Cmd::verify(&src.uri(), &dst.uri()).json().run()
}

async fn assert_byte_exact(src: &Mongod, dst: &Mongod, db: &str, coll: &str) {
    let (a, b) = (
        raw_docs(&src.uri(), db, coll).await,
        raw_docs(&dst.uri(), db, coll).await,
    );
    assert!(!a.is_empty(), "{db}.{coll} has documents");
    assert_eq!(a.len(), b.len(), "{db}.{coll}: counts differ");
    assert!(a == b, "{db}.{coll}: documents differ byte for byte");
}

#[tokio::test]
async fn every_bson_type_and_mixed_ids_round_trip_byte_exact() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let c = client(&src.uri()).await;
    let base = rich::every_type();
    // `_id`s of many types in one collection (MongoDB sorts them by type bracket, then value).
    let ids = rich::mixed_ids();
    let docs: Vec<Document> = ids
        .iter()
        .map(|id| {
            let mut d = doc! {"_id": id.clone()};
            d.extend(base.clone());
            d
        })
        .collect();
    c.database("types")
        .collection::<Document>("all")
        .insert_many(docs)
        .await
        .unwrap();
    let r = copy_all(&src, &dst);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_byte_exact(&src, &dst, "types", "all").await;
    let v = verify(&src, &dst);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert_eq!(v.json()["verify"]["ok"], true);
}

/// The options a collection was created with, without what the server makes up itself.
async fn options(uri: &str, db: &str) -> BTreeMap<String, Document> {
    let c = client(uri).await;
    let r = c
        .database(db)
        .run_command(doc! {"listCollections": 1})
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for e in r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
    {
        let e = e.as_document().unwrap();
        let name = e.get_str("name").unwrap().to_string();
        if name.starts_with("system.") {
            continue;
        }
        let mut o = e.get_document("options").cloned().unwrap_or_default();
        o.insert("type", e.get_str("type").unwrap_or(""));
        out.insert(name, o);
    }
    out
}

/// Index specs by name, without the server's bookkeeping (`v`).
async fn indexes(uri: &str, db: &str, coll: &str) -> BTreeMap<String, Document> {
    let c = client(uri).await;
    let r = c
        .database(db)
        .run_command(doc! {"listIndexes": coll})
        .await
        .unwrap();
    r.get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|i| {
            let mut i = i.as_document().unwrap().clone();
            i.remove("v");
            (i.get_str("name").unwrap().to_string(), i)
        })
        .collect()
}

/// Two option documents are the same option by option (each value compared as BSON).
fn assert_same_options(what: &str, a: &Document, b: &Document) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        assert_eq!(a.get(k), b.get(k), "{what}: option {k} differs");
    }
}

#[tokio::test]
async fn collection_and_index_options_are_replayed_option_by_option() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let c = client(&src.uri()).await;
    let db = c.database("opts");
    let cmds = [
        doc! {"create": "validated", "validator": {"$jsonSchema": {"bsonType": "object", "required": ["name"]}},
        "validationLevel": "moderate", "validationAction": "warn"},
        doc! {"create": "capped", "capped": true, "size": 1_048_576i64, "max": 500i64},
        doc! {"create": "french", "collation": {"locale": "fr", "strength": 2}},
        doc! {"create": "metrics", "timeseries": {"timeField": "ts", "metaField": "sensor", "granularity": "minutes"},
        "expireAfterSeconds": 86_400i64},
        doc! {"create": "clustered", "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
        doc! {"create": "plain"},
    ];
    for cmd in cmds {
        db.run_command(cmd).await.unwrap();
    }
    // A document the validator would now refuse: it is the source's, it must still go over.
    db.collection::<Document>("plain")
        .insert_one(doc! {"_id": 0, "note": "no name"})
        .await
        .unwrap();
    db.run_command(doc! {"collMod": "plain", "validator": {"name": {"$exists": true}}, "validationLevel": "strict"})
        .await
        .unwrap();
    for (coll, docs) in [
        ("validated", vec![doc! {"_id": 1, "name": "x"}]),
        ("capped", (0..20).map(|i| doc! {"_id": i, "n": i}).collect()),
        (
            "french",
            vec![doc! {"_id": "côte", "w": 1}, doc! {"_id": "Cote", "w": 2}],
        ),
        (
            "metrics",
            (0..10)
                .map(|i| doc! {"_id": ObjectId::new(), "ts": DateTime::from_millis(1_700_000_000_000 + i * 60_000), "sensor": {"id": i % 2}, "v": i as f64})
                .collect(),
        ),
        ("clustered", (0..10).map(|i| doc! {"_id": i, "x": i}).collect()),
    ] {
        db.collection::<Document>(coll).insert_many(docs).await.unwrap();
    }
    // Views after their sources, one with a collation, one on another view.
    db.run_command(doc! {"create": "named", "viewOn": "validated", "pipeline": [{"$match": {"name": {"$exists": true}}}],
                         "collation": {"locale": "de"}})
        .await
        .unwrap();
    db.run_command(doc! {"create": "named_again", "viewOn": "named", "pipeline": [{"$project": {"name": 1}}], "collation": {"locale": "de"}})
        .await
        .unwrap();
    db.collection::<Document>("geo")
        .insert_many((0..20).map(|i| doc! {
            "_id": i, "a": i, "b": format!("b{i}"), "email": format!("u{i}@x"), "maybe": if i % 2 == 0 { Bson::Int32(i) } else { Bson::Null },
            "at": DateTime::from_millis(1_700_000_000_000), "loc": {"type": "Point", "coordinates": [i as f64, 1.0]},
            "body": format!("quelques mots {i}"), "title": "titre", "attrs": {"k": i}, "status": if i % 3 == 0 { "active" } else { "old" },
            "name": format!("Name{i}"),
        }))
        .await
        .unwrap();
    db.run_command(doc! {"createIndexes": "geo", "indexes": [
        {"key": {"email": 1}, "name": "email_unique", "unique": true},
        {"key": {"maybe": 1}, "name": "maybe_sparse", "sparse": true},
        {"key": {"a": 1}, "name": "a_partial", "partialFilterExpression": {"status": "active"}},
        {"key": {"at": 1}, "name": "at_ttl", "expireAfterSeconds": 3600},
        {"key": {"body": "text", "title": "text"}, "name": "text_fr", "weights": {"title": 10, "body": 2}, "default_language": "french", "language_override": "lang"},
        {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"},
        {"key": {"b": "hashed"}, "name": "b_hashed"},
        {"key": {"attrs.$**": 1}, "name": "attrs_wildcard"},
        {"key": {"name": 1}, "name": "name_hidden_collated", "hidden": true, "collation": {"locale": "en", "strength": 1}},
        {"key": {"a": -1, "b": 1, "at": -1}, "name": "compound_desc"},
    ]})
    .await
    .unwrap();

    let r = copy_all(&src, &dst);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.json()["copy"]["index_errors"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{}",
        r.stdout
    );

    let (a, b) = (
        options(&src.uri(), "opts").await,
        options(&dst.uri(), "opts").await,
    );
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same collections and views"
    );
    for (name, o) in &a {
        assert_same_options(&format!("opts.{name}"), o, &b[name]);
    }
    for coll in ["validated", "capped", "french", "clustered", "geo", "plain"] {
        let (x, y) = (
            indexes(&src.uri(), "opts", coll).await,
            indexes(&dst.uri(), "opts", coll).await,
        );
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>(),
            "opts.{coll}: the same indexes"
        );
        for (name, spec) in &x {
            assert_same_options(&format!("opts.{coll} index {name}"), spec, &y[name]);
            // `Document ==` ignores field order: compare the key's field names in order.
            let order = |d: &Document| -> Vec<String> {
                d.get_document("key").unwrap().keys().cloned().collect()
            };
            assert_eq!(
                order(spec),
                order(&y[name]),
                "opts.{coll} index {name}: key order"
            );
        }
    }
    for coll in ["validated", "capped", "french", "clustered", "geo", "plain"] {
        assert_byte_exact(&src, &dst, "opts", coll).await;
    }
    // Time-series measurements come back from buckets with their top-level fields in an order
    // of MongoDB's own (it differs from run to run, even on the source): verify compares them
    // by name, value and type there, and must still say equal.
    let v = verify(&src, &dst);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
}

#[tokio::test]
async fn dotted_dashed_and_non_ascii_names_copy() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    let c = client(&src.uri()).await;
    let names = [
        ("app", "orders.2024.archive"),
        ("app", "user-events"),
        ("app", "주문"),
        ("app", "données"),
        ("데이터베이스", "목록"),
        ("base-de-données", "élèves.actifs"),
    ];
    for (db, coll) in names {
        c.database(db)
            .collection::<Document>(coll)
            .insert_many((0..25).map(|i| doc! {"_id": i, "v": format!("{db}/{coll}/{i}")}))
            .await
            .unwrap();
    }
    let r = copy_all(&src, &dst);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (db, coll) in names {
        assert_byte_exact(&src, &dst, db, coll).await;
    }
    let v = verify(&src, &dst);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert_eq!(
        v.json()["verify"]["collections"].as_array().unwrap().len(),
        names.len()
    );
}

#[tokio::test]
async fn verify_catches_int64_to_int32_and_pinpoints_integer_ids() {
    let (src, dst) = (Mongod::source(), Mongod::target());
    client(&src.uri())
        .await
        .database("bank")
        .collection::<Document>("accounts")
        .insert_many((0..1000).map(|i| doc! {"_id": i, "balance": 5i64}))
        .await
        .unwrap();
    let r = copy_all(&src, &dst);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(verify(&src, &dst).code, 0);
    // Same value, other type: only a byte-exact comparison sees it.
    client(&dst.uri())
        .await
        .database("bank")
        .collection::<Document>("accounts")
        .update_one(doc! {"_id": 737}, doc! {"$set": {"balance": 5i32}})
        .await
        .unwrap();
    let v = verify(&src, &dst);
    assert_eq!(v.code, 4, "{}\n{}", v.stdout, v.stderr);
    let c = &v.json()["verify"]["collections"][0];
    assert!(c["pinpoint_unavailable"].is_null(), "{c:#}");
    assert_eq!(c["different"], 1, "{c:#}");
    assert_eq!(c["missing"], 0, "{c:#}");
    assert_eq!(c["extra"], 0, "{c:#}");
    assert!(
        c["examples"].to_string().contains("737"),
        "names the _id: {c:#}"
    );
}
