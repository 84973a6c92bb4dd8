//! The richest data the suite has, in one place: every BSON type, `_id`s of mixed types,
//! documents from 1 KB up to nearly 16 MiB, an empty collection, capped, time-series,
//! clustered, collation and validated collections, views on views, every index option, and
//! odd names (dotted, dashed, Korean, accented databases). An app that writes to most of it
//! while a migration runs, and a comparison of two servers made by the test support itself
//! (never by the tool's own verify): names, options, indexes and every document byte for byte.
//!
//! Written for MongoDB 4.4 and newer: what a 4.4 server lacks (time series and clustered
//! collections are 5.0 and 5.3) is left out there, and said so by [`seed`]'s answer.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{
    Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, RawDocumentBuf, Regex,
    Timestamp, doc, oid::ObjectId,
};

/// The large documents' sizes in bytes of payload: 1 KB, 4 MiB, 9 MiB (the issue's), and one
/// just under the 16 MiB limit.
pub const LARGE: [usize; 4] = [1024, 4 << 20, 9 << 20, (16 << 20) - 200 * 1024];

/// Databases and collections with names MongoDB allows and careless code breaks.
pub const ODD_NAMES: [(&str, &str); 5] = [
    ("rich", "orders.2024.archive"),
    ("rich", "user-events"),
    ("rich", "주문"),
    ("데이터베이스", "목록"),
    ("base-de-données", "élèves.actifs"),
];

fn dec(s: &str) -> Bson {
    Bson::Decimal128(s.parse::<Decimal128>().expect("decimal"))
}

fn bin_of(subtype: BinarySubtype, bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype,
        bytes: bytes.to_vec(),
    })
}

/// Bytes that do not compress (attachments are usually already compressed).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One value of every BSON type a server stores, with the edge values that change on a
/// careless round trip.
pub fn every_type() -> Document {
    let uuid: Vec<u8> = (0..16).collect();
    doc! {
        "int32": 5i32, "int64": 5i64, "int64_big": i64::MAX,
        "double": 5.0f64, "double_nan": f64::NAN, "double_neg_zero": -0.0f64,
        "double_inf": f64::NEG_INFINITY,
        "decimal": dec("1.10"), "decimal_nan": dec("NaN"), "decimal_neg_zero": dec("-0"),
        "decimal_big": dec("9.999999999999999999999999999999999E+6144"),
        "string": "héllo wörld 日本語 🙂", "bool": true, "null": Bson::Null,
        "date_before_1970": DateTime::from_millis(-1_234_567_890_123),
        "date": DateTime::from_millis(1_700_000_000_123),
        "timestamp": Timestamp { time: 1_700_000_000, increment: 7 },
        "oid": ObjectId::parse_str("650000000000000000000001").expect("oid"),
        "regex": Regex { pattern: "^a.*b$".into(), options: "imsx".into() },
        "code": Bson::JavaScriptCode("function () { return 1; }".into()),
        "code_with_scope": JavaScriptCodeWithScope { code: "x + y".into(), scope: doc! {"x": 1, "y": "z"} },
        "dbref": {"$ref": "users", "$id": ObjectId::parse_str("650000000000000000000002").expect("oid"), "$db": "other"},
        "minkey": Bson::MinKey, "maxkey": Bson::MaxKey,
        "bin_generic": bin_of(BinarySubtype::Generic, b"\x00\x01\xff"),
        "bin_uuid_old": bin_of(BinarySubtype::UuidOld, &uuid),
        "bin_uuid": bin_of(BinarySubtype::Uuid, &uuid),
        "bin_md5": bin_of(BinarySubtype::Md5, &uuid),
        "bin_user": bin_of(BinarySubtype::UserDefined(0x80), b"user defined"),
        "array": [1i32, 2i64, "three", {"four": 4.0}, [5i32], Bson::Null],
        "nested": {"z": 1i32, "a": {"deeper": [{"k": "v"}]}},
        "zeta": 1i32, "alpha": 2i32, "ключ": 3i32, "キー": 4i32, "clé": 5i32,
    }
}

/// `_id`s of many types in one collection (MongoDB sorts them by type bracket, then value).
pub fn mixed_ids() -> Vec<Bson> {
    vec![
        Bson::MinKey,
        Bson::Null,
        Bson::Int32(1),
        Bson::Int64(2),
        Bson::Double(2.5),
        dec("3.25"),
        Bson::Double(-1e300),
        Bson::String("a string".into()),
        Bson::String("ünïcødé".into()),
        Bson::Document(doc! {"tenant": "t1", "seq": 1}),
        bin_of(BinarySubtype::Uuid, &[7u8; 16]),
        Bson::ObjectId(ObjectId::parse_str("650000000000000000000003").expect("oid")),
        Bson::Boolean(false),
        Bson::DateTime(DateTime::from_millis(-5)),
        Bson::Timestamp(Timestamp {
            time: 5,
            increment: 1,
        }),
        Bson::MaxKey,
    ]
}

/// What [`seed`] made.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    /// The server's version (`buildInfo.version`).
    pub version: String,
    /// Time series and clustered collections exist (5.0 / 5.3 and newer).
    pub timeseries: bool,
    /// Clustered collections exist (5.3 and newer).
    pub clustered: bool,
    /// Documents in all.
    pub docs: u64,
}

async fn client(uri: &str) -> mongodb::Client {
    let c = mongodb::Client::with_uri_str(uri).await.expect("client");
    c.database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .expect("ping");
    c
}

fn major_minor(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Fills the server at `uri` with the rich data set, `orders` small app documents (~1 KB, the
/// shape of an app's main collection) among it.
pub async fn seed(uri: &str, orders: usize) -> Seeded {
    let c = client(uri).await;
    let info = c
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await
        .expect("buildInfo");
    let version = info.get_str("version").unwrap_or("0.0").to_string();
    let (maj, min) = major_minor(&version);
    let timeseries = maj >= 5;
    let clustered = (maj, min) >= (5, 3);
    let db = c.database("rich");
    let mut docs = 0u64;

    // Every type under `_id`s of every type.
    let base = every_type();
    let all: Vec<Document> = mixed_ids()
        .into_iter()
        .map(|id| {
            let mut d = doc! {"_id": id};
            d.extend(base.clone());
            d
        })
        .collect();
    docs += all.len() as u64;
    db.collection::<Document>("types")
        .insert_many(all)
        .await
        .expect("types");

    // Attachments: one at a time (a batch of them would pass the 48 MB message limit).
    let att = db.collection::<Document>("attachments");
    for (i, n) in LARGE.iter().enumerate() {
        att.insert_one(doc! {"_id": i as i32 + 1, "name": format!("file-{i}.bin"), "data": bin_of(BinarySubtype::Generic, &noise(*n, i as u64))})
            .await
            .expect("a large document");
        docs += 1;
    }

    // The app's main collection: ~1 KB orders with text, numbers, dates and arrays.
    let o = db.collection::<Document>("orders");
    for chunk in (0..orders).collect::<Vec<_>>().chunks(5_000) {
        let batch: Vec<Document> = chunk.iter().map(|&i| order(i as i64)).collect();
        o.insert_many(batch).await.expect("orders");
    }
    docs += orders as u64;
    db.run_command(doc! {"createIndexes": "orders", "indexes": [
        {"key": {"customer": 1, "at": -1}, "name": "customer_at"},
        {"key": {"ref": 1}, "name": "ref_unique", "unique": true},
    ]})
    .await
    .expect("orders indexes");

    db.run_command(doc! {"create": "empty"})
        .await
        .expect("empty");
    let mut cmds = vec![
        doc! {"create": "validated", "validator": {"$jsonSchema": {"bsonType": "object", "required": ["name"]}},
        "validationLevel": "moderate", "validationAction": "warn"},
        doc! {"create": "capped", "capped": true, "size": 1_048_576i64, "max": 500i64},
        doc! {"create": "french", "collation": {"locale": "fr", "strength": 2}},
    ];
    if timeseries {
        cmds.push(doc! {"create": "metrics", "timeseries": {"timeField": "ts", "metaField": "sensor", "granularity": "minutes"}, "expireAfterSeconds": 315_360_000i64});
    }
    if clustered {
        cmds.push(
            doc! {"create": "clustered", "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
        );
    }
    for cmd in cmds {
        db.run_command(cmd).await.expect("create");
    }
    let mut fill: Vec<(&str, Vec<Document>)> = vec![
        ("validated", vec![doc! {"_id": 1, "name": "x"}]),
        (
            "capped",
            (0..450).map(|i| doc! {"_id": i, "n": i}).collect(),
        ),
        (
            "french",
            vec![doc! {"_id": "côte", "w": 1}, doc! {"_id": "Cote", "w": 2}],
        ),
    ];
    if timeseries {
        fill.push(("metrics", (0..200).map(|i| doc! {"_id": ObjectId::new(), "ts": DateTime::from_millis(1_700_000_000_000 + i * 60_000), "sensor": {"id": i % 3}, "v": i as f64}).collect()));
    }
    if clustered {
        fill.push((
            "clustered",
            (0..100).map(|i| doc! {"_id": i, "x": i}).collect(),
        ));
    }
    for (coll, d) in fill {
        docs += d.len() as u64;
        db.collection::<Document>(coll)
            .insert_many(d)
            .await
            .expect("fill");
    }
    // A document the validator would now refuse: it is the source's, it must still go over.
    db.collection::<Document>("plain")
        .insert_one(doc! {"_id": 0, "note": "no name"})
        .await
        .expect("plain");
    docs += 1;
    db.run_command(doc! {"collMod": "plain", "validator": {"name": {"$exists": true}}, "validationLevel": "strict"})
        .await
        .expect("collMod");
    // Views after their sources, one with a collation, one on another view.
    db.run_command(doc! {"create": "named", "viewOn": "validated", "pipeline": [{"$match": {"name": {"$exists": true}}}], "collation": {"locale": "de"}})
        .await
        .expect("view");
    db.run_command(doc! {"create": "named_again", "viewOn": "named", "pipeline": [{"$project": {"name": 1}}], "collation": {"locale": "de"}})
        .await
        .expect("view on a view");
    // Every index option.
    let geo: Vec<Document> = (0..200).map(|i| doc! {
        "_id": i, "a": i, "b": format!("b{i}"), "email": format!("u{i}@x"), "maybe": if i % 2 == 0 { Bson::Int32(i) } else { Bson::Null },
        "at": DateTime::from_millis(1_700_000_000_000), "loc": {"type": "Point", "coordinates": [(i % 180) as f64, 1.0]},
        "body": format!("quelques mots {i}"), "title": "titre", "attrs": {"k": i}, "status": if i % 3 == 0 { "active" } else { "old" },
        "name": format!("Name{i}"),
    }).collect();
    docs += geo.len() as u64;
    db.collection::<Document>("geo")
        .insert_many(geo)
        .await
        .expect("geo");
    let mut indexes = vec![
        doc! {"key": {"email": 1}, "name": "email_unique", "unique": true},
        doc! {"key": {"maybe": 1}, "name": "maybe_sparse", "sparse": true},
        doc! {"key": {"a": 1}, "name": "a_partial", "partialFilterExpression": {"status": "active"}},
        doc! {"key": {"at": 1}, "name": "at_ttl", "expireAfterSeconds": 315_360_000i64},
        doc! {"key": {"body": "text", "title": "text"}, "name": "text_fr", "weights": {"title": 10, "body": 2}, "default_language": "french", "language_override": "lang"},
        doc! {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"},
        doc! {"key": {"b": "hashed"}, "name": "b_hashed"},
        doc! {"key": {"attrs.$**": 1}, "name": "attrs_wildcard"},
        doc! {"key": {"a": -1, "b": 1, "at": -1}, "name": "compound_desc"},
    ];
    if maj >= 5 {
        // Hidden indexes are 4.4+, but 4.4 refuses `hidden` with a collation on one index.
        indexes.push(doc! {"key": {"name": 1}, "name": "name_hidden_collated", "hidden": true, "collation": {"locale": "en", "strength": 1}});
    } else {
        indexes.push(doc! {"key": {"name": 1}, "name": "name_collated", "collation": {"locale": "en", "strength": 1}});
    }
    db.run_command(doc! {"createIndexes": "geo", "indexes": indexes})
        .await
        .expect("indexes");

    for (d, coll) in ODD_NAMES {
        let rows: Vec<Document> = (0..25)
            .map(|i| doc! {"_id": i, "v": format!("{d}/{coll}/{i}")})
            .collect();
        docs += rows.len() as u64;
        c.database(d)
            .collection::<Document>(coll)
            .insert_many(rows)
            .await
            .expect("odd names");
    }
    Seeded {
        version,
        timeseries,
        clustered,
        docs,
    }
}

/// One app document of ~1 KB.
pub fn order(i: i64) -> Document {
    doc! {
        "_id": ObjectId::from_bytes({
            let mut b = [0u8; 12];
            b[..4].copy_from_slice(&0x6500_0000u32.to_be_bytes());
            b[4..].copy_from_slice(&(i as u64).to_be_bytes());
            b
        }),
        "ref": format!("ORD-{i:08}"),
        "customer": format!("customer-{}", i % 997),
        "at": DateTime::from_millis(1_700_000_000_000 + i * 1_000),
        "total": format!("{}.{:02}", i % 10_000, i % 100).parse::<Decimal128>().expect("decimal"),
        "qty": (i % 7) as i32,
        "lines": (0..4).map(|k| doc! {"sku": format!("SKU-{}", (i * 31 + k) % 5000), "price": (k as f64) * 9.99, "n": k as i32}).collect::<Vec<_>>(),
        "note": format!("Please leave the parcel at the door, order {i}. 배송 메모 — merci. ").repeat(6),
        "tags": ["web", if i % 2 == 0 { "promo" } else { "regular" }],
    }
}

/// An app writing to the source until `stop`: inserts, updates and deletes in the main
/// collection, a large attachment replaced and another added, a type changed, measurements
/// and capped entries appended, odd-named collections touched. Every write is bounded (a frozen
/// source holds writes: the app's writes then wait, as a real app's would, and are counted
/// only once the server took them). Returns the writes the server acknowledged.
pub fn app_writer(
    uri: String,
    stop: Arc<AtomicBool>,
    timeseries: bool,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let c = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let db = c.database("rich");
        let orders = db.collection::<Document>("orders");
        let att = db.collection::<Document>("attachments");
        let done = AtomicU64::new(0);
        let mut i: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let op = async {
                match i % 10 {
                    0 => {
                        orders.insert_one(order(10_000_000 + i)).await?;
                    }
                    1 | 2 => {
                        orders
                            .update_one(
                                doc! {"ref": format!("ORD-{:08}", (i * 7919) % 2_000)},
                                doc! {"$set": {"qty": -1, "note": format!("changed {i}")}, "$push": {"tags": "edited"}},
                            )
                            .await?;
                    }
                    3 => {
                        orders
                            .delete_one(doc! {"ref": format!("ORD-{:08}", (i * 104_729) % 2_000)})
                            .await?;
                    }
                    4 if i % 40 == 4 => {
                        // A large attachment replaced by another size, and a new one.
                        let n = (5 << 20) + (i as usize % 7) * 100_000;
                        att.replace_one(
                            doc! {"_id": 2},
                            doc! {"name": "file-1-v2.bin", "data": bin_of(BinarySubtype::Generic, &noise(n, i as u64))},
                        )
                        .await?;
                        att.insert_one(doc! {"_id": format!("new-{i}"), "data": bin_of(BinarySubtype::Generic, &noise(3 << 20, i as u64))})
                            .await?;
                    }
                    5 => {
                        db.collection::<Document>("types")
                            .update_one(doc! {"_id": 1}, doc! {"$set": {"int32": i}})
                            .await?;
                    }
                    6 => {
                        db.collection::<Document>("capped")
                            .insert_one(doc! {"_id": 1_000 + i, "n": i})
                            .await?;
                    }
                    7 if timeseries => {
                        db.collection::<Document>("metrics")
                            .insert_one(doc! {"ts": DateTime::from_millis(1_700_100_000_000 + i * 1_000), "sensor": {"id": i % 3}, "v": i as f64})
                            .await?;
                    }
                    8 => {
                        db.collection::<Document>("주문")
                            .update_one(
                                doc! {"_id": (i % 25) as i32},
                                doc! {"$set": {"v": format!("변경 {i}")}},
                            )
                            .await?;
                    }
                    _ => {
                        db.collection::<Document>("geo")
                            .update_one(doc! {"_id": (i % 200) as i32}, doc! {"$inc": {"a": 1}})
                            .await?;
                    }
                }
                Ok::<(), mongodb::error::Error>(())
            };
            // A write the frozen source holds past the bound is not counted.
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), op).await {
                done.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        done.load(Ordering::Relaxed)
    })
}

/// Metadata with every integral number as Int64: servers store option numbers (a TTL's
/// seconds, a capped size) as Int32 or Int64 depending on their version, not on the data.
fn numbers_as_i64(d: &Document) -> Document {
    fn one(v: &Bson) -> Bson {
        match v {
            Bson::Int32(n) => Bson::Int64(*n as i64),
            Bson::Double(x) if x.fract() == 0.0 && x.abs() < 1e15 => Bson::Int64(*x as i64),
            Bson::Document(d) => Bson::Document(numbers_as_i64(d)),
            Bson::Array(a) => Bson::Array(a.iter().map(one).collect()),
            other => other.clone(),
        }
    }
    d.iter().map(|(k, v)| (k.clone(), one(v))).collect()
}

/// Databases of an app (not `admin`, `local`, `config`).
async fn databases(c: &mongodb::Client) -> Vec<String> {
    let mut v: Vec<String> = c
        .list_database_names()
        .await
        .expect("databases")
        .into_iter()
        .filter(|d| !["admin", "local", "config"].contains(&d.as_str()))
        .collect();
    v.sort();
    v
}

/// Collections and views of `db` with their options (without the server's own `uuid`), by name.
async fn collections(c: &mongodb::Client, db: &str) -> BTreeMap<String, (String, Document)> {
    let mut out = BTreeMap::new();
    let mut cur = c
        .database(db)
        .run_command(doc! {"listCollections": 1})
        .await
        .expect("listCollections");
    let batch = cur
        .get_document_mut("cursor")
        .expect("cursor")
        .get_array("firstBatch")
        .expect("firstBatch")
        .clone();
    for b in batch {
        let Bson::Document(d) = b else { continue };
        let name = d.get_str("name").unwrap_or_default().to_string();
        if name.starts_with("system.") {
            continue;
        }
        let kind = d.get_str("type").unwrap_or_default().to_string();
        let opts = d.get_document("options").cloned().unwrap_or_default();
        out.insert(name, (kind, numbers_as_i64(&opts)));
    }
    out
}

/// Indexes of a collection by name (without the `ns` and `v` that older servers add).
async fn indexes(c: &mongodb::Client, db: &str, coll: &str) -> BTreeMap<String, Document> {
    let r = c
        .database(db)
        .run_command(doc! {"listIndexes": coll})
        .await
        .expect("listIndexes");
    let mut out = BTreeMap::new();
    for b in r
        .get_document("cursor")
        .and_then(|x| x.get_array("firstBatch"))
        .cloned()
        .unwrap_or_default()
    {
        let Bson::Document(mut d) = b else { continue };
        d.remove("ns");
        d.remove("v");
        out.insert(
            d.get_str("name").unwrap_or_default().to_string(),
            numbers_as_i64(&d),
        );
    }
    out
}

/// Every document of a collection by `_id` (as BSON bytes), as raw bytes; with `canonical`, its
/// top-level fields sorted (a time series gives measurements back in an order of its own).
async fn documents(
    c: &mongodb::Client,
    db: &str,
    coll: &str,
    canonical: bool,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut cur = c
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .await
        .expect("find");
    let mut out = BTreeMap::new();
    while cur.advance().await.expect("read") {
        let d = cur.current();
        let id = d.get("_id").ok().flatten().map(|v| v.to_raw_bson());
        let id = id
            .and_then(|v| Bson::try_from(v).ok())
            .unwrap_or(Bson::Null);
        let key = mongodb::bson::to_vec(&doc! {"i": id}).expect("key");
        let bytes = if canonical {
            let mut fields: Vec<_> = d.iter().map(|x| x.expect("field")).collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let mut buf = RawDocumentBuf::new();
            for (k, v) in fields {
                buf.append(k, v.to_raw_bson());
            }
            buf.into_bytes()
        } else {
            d.as_bytes().to_vec()
        };
        out.insert(key, bytes);
    }
    out
}

/// Asserts the target at `dst` holds exactly what the source at `src` holds: the same
/// databases, collections and views with the same options, the same indexes, and every
/// document byte for byte. Returns the documents compared.
pub async fn assert_same(src: &str, dst: &str) -> u64 {
    let (a, b) = (client(src).await, client(dst).await);
    let dbs = databases(&a).await;
    assert_eq!(dbs, databases(&b).await, "the same databases");
    let mut compared = 0u64;
    for db in &dbs {
        let (ca, cb) = (collections(&a, db).await, collections(&b, db).await);
        assert_eq!(
            ca.keys().collect::<Vec<_>>(),
            cb.keys().collect::<Vec<_>>(),
            "{db}: the same collections and views"
        );
        for (name, (kind, opts)) in &ca {
            let (kb, ob) = &cb[name];
            let mut oa = opts.clone();
            let mut obb = ob.clone();
            // The server names the collection's own UUID differently on each side.
            oa.remove("uuid");
            obb.remove("uuid");
            assert_eq!((kind, &oa), (kb, &obb), "{db}.{name}: type and options");
            if kind == "view" {
                continue;
            }
            let (ia, ib) = (indexes(&a, db, name).await, indexes(&b, db, name).await);
            // `Document ==` ignores field order; an index's key order is meaning.
            assert_eq!(ia, ib, "{db}.{name}: indexes");
            for (ix, spec) in &ia {
                let order = |d: &Document| -> Vec<String> {
                    d.get_document("key")
                        .map(|k| k.keys().cloned().collect())
                        .unwrap_or_default()
                };
                assert_eq!(
                    order(spec),
                    order(&ib[ix]),
                    "{db}.{name} index {ix}: key order"
                );
            }
            let canonical = kind == "timeseries";
            let (da, dbb) = (
                documents(&a, db, name, canonical).await,
                documents(&b, db, name, canonical).await,
            );
            assert_eq!(da.len(), dbb.len(), "{db}.{name}: document counts");
            if da != dbb {
                let differ = da.iter().filter(|(k, v)| dbb.get(*k) != Some(*v)).count();
                panic!("{db}.{name}: {differ} documents differ byte for byte");
            }
            compared += da.len() as u64;
        }
    }
    compared
}
