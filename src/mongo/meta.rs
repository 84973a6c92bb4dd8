//! Collection and index metadata: the `create` and `createIndexes` commands replayed on the
//! target from the source's raw `listCollections`/`listIndexes` entries, and the normalized
//! forms verify compares.

use mongodb::bson::{Bson, Document, doc};

/// What a `listCollections` entry describes.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionMeta {
    /// Collection or view name.
    pub name: String,
    /// `collection`, `view` or `timeseries`.
    pub kind: String,
    /// The entry's `options`, untouched.
    pub options: Document,
}

impl CollectionMeta {
    /// Reads one raw `listCollections` entry; `None` for entries without a name.
    pub fn from_entry(entry: &Document) -> Option<CollectionMeta> {
        Some(CollectionMeta {
            name: entry.get_str("name").ok()?.to_string(),
            kind: entry.get_str("type").unwrap_or("collection").to_string(),
            options: entry.get_document("options").cloned().unwrap_or_default(),
        })
    }

    /// True for views (created after their sources, hold no data of their own).
    pub fn is_view(&self) -> bool {
        self.kind == "view"
    }

    /// The `create` command that makes this collection or view on the target, with every option
    /// the source reported (validator, capped, collation, time series, clustered index, ...).
    pub fn create_command(&self, target_name: &str) -> Document {
        let mut cmd = doc! {"create": target_name};
        for (k, v) in &self.options {
            match k.as_str() {
                // Server-assigned or informational; `create` rejects or ignores them.
                "uuid" => {}
                "clusteredIndex" => {
                    let mut ci = v.as_document().cloned().unwrap_or_default();
                    ci.remove("v");
                    cmd.insert(k, ci);
                }
                _ => {
                    cmd.insert(k, v.clone());
                }
            }
        }
        cmd
    }

    /// The options verify compares (server-assigned fields left out).
    pub fn comparable_options(&self) -> Document {
        let mut o = self.create_command("x");
        o.remove("create");
        o
    }
}

/// Index fields that are server bookkeeping, not part of what the user asked for.
const INDEX_BOOKKEEPING: &[&str] = &["v", "ns", "background"];

/// One index from `listIndexes`.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexMeta {
    /// Index name.
    pub name: String,
    /// The full spec as listed.
    pub spec: Document,
}

impl IndexMeta {
    /// Reads one raw `listIndexes` entry.
    pub fn from_entry(entry: &Document) -> Option<IndexMeta> {
        Some(IndexMeta {
            name: entry.get_str("name").ok()?.to_string(),
            spec: entry.clone(),
        })
    }

    /// True for the `_id` index the server makes by itself.
    pub fn is_id_index(&self) -> bool {
        self.name == "_id_"
    }

    /// The spec to pass to `createIndexes`: name, key and every option (unique, partial,
    /// sparse, TTL, text weights, 2dsphere version, collation, wildcard projection, hidden...).
    pub fn create_spec(&self) -> Document {
        let mut s = self.spec.clone();
        for k in INDEX_BOOKKEEPING {
            s.remove(*k);
        }
        s
    }

    /// `createIndexes` for this one index (one per command so failures name the index).
    pub fn create_command(&self, coll: &str) -> Document {
        doc! {"createIndexes": coll, "indexes": [Bson::Document(self.create_spec())]}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_replays_every_collection_option() {
        let entry = doc! {
            "name": "orders",
            "type": "collection",
            "options": {
                "validator": {"$jsonSchema": {"required": ["total"]}},
                "validationLevel": "moderate",
                "validationAction": "warn",
                "collation": {"locale": "fr", "strength": 2},
                "changeStreamPreAndPostImages": {"enabled": true},
                "clusteredIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_", "unique": true},
                "expireAfterSeconds": 3600_i64,
            },
            "info": {"readOnly": false, "uuid": "x"},
            "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
        };
        let m = CollectionMeta::from_entry(&entry).unwrap();
        let c = m.create_command("orders2");
        assert_eq!(c.get_str("create").unwrap(), "orders2");
        assert_eq!(
            c.get_document("validator").unwrap(),
            &doc! {"$jsonSchema": {"required": ["total"]}}
        );
        assert_eq!(c.get_str("validationLevel").unwrap(), "moderate");
        assert_eq!(c.get_str("validationAction").unwrap(), "warn");
        assert_eq!(
            c.get_document("collation").unwrap(),
            &doc! {"locale": "fr", "strength": 2}
        );
        assert_eq!(
            c.get_document("clusteredIndex").unwrap(),
            &doc! {"key": {"_id": 1}, "name": "_id_", "unique": true}
        );
        assert_eq!(c.get_i64("expireAfterSeconds").unwrap(), 3600);
        assert!(c.get_document("changeStreamPreAndPostImages").is_ok());
        // Field order is kept: the command name first, options in the server's order.
        let keys: Vec<&str> = c.keys().map(String::as_str).collect();
        assert_eq!(keys[0], "create");
        assert_eq!(keys[1], "validator");
    }

    #[test]
    fn capped_timeseries_and_views() {
        let capped = CollectionMeta::from_entry(
            &doc! {"name": "log", "options": {"capped": true, "size": 1048576_i64, "max": 1000}},
        )
        .unwrap();
        assert_eq!(
            capped.create_command("log"),
            doc! {"create": "log", "capped": true, "size": 1048576_i64, "max": 1000}
        );
        let ts = CollectionMeta::from_entry(&doc! {"name": "m", "type": "timeseries", "options": {"timeseries": {"timeField": "t", "metaField": "s", "granularity": "hours", "bucketMaxSpanSeconds": 2592000}, "expireAfterSeconds": 86400_i64}}).unwrap();
        let c = ts.create_command("m");
        assert_eq!(
            c.get_document("timeseries")
                .unwrap()
                .get_str("timeField")
                .unwrap(),
            "t"
        );
        let view = CollectionMeta::from_entry(&doc! {"name": "v", "type": "view", "options": {"viewOn": "orders", "pipeline": [{"$match": {"x": 1}}], "collation": {"locale": "en"}}}).unwrap();
        assert!(view.is_view());
        assert_eq!(
            view.create_command("v"),
            doc! {"create": "v", "viewOn": "orders", "pipeline": [{"$match": {"x": 1}}], "collation": {"locale": "en"}}
        );
    }

    #[test]
    fn index_specs_keep_options_and_drop_bookkeeping() {
        let cases = [
            doc! {"v": 2, "key": {"email": 1}, "name": "email_1", "unique": true, "ns": "a.b", "background": true},
            doc! {"v": 2, "key": {"s": 1}, "name": "p", "partialFilterExpression": {"a": {"$gt": 5}}},
            doc! {"v": 2, "key": {"s": 1}, "name": "sp", "sparse": true},
            doc! {"v": 2, "key": {"at": 1}, "name": "ttl", "expireAfterSeconds": 30},
            doc! {"v": 2, "key": {"_fts": "text", "_ftsx": 1}, "name": "t", "weights": {"body": 2}, "default_language": "english", "language_override": "lang", "textIndexVersion": 3},
            doc! {"v": 2, "key": {"loc": "2dsphere"}, "name": "geo", "2dsphereIndexVersion": 3},
            doc! {"v": 2, "key": {"h": "hashed"}, "name": "h"},
            doc! {"v": 2, "key": {"n": 1}, "name": "c", "collation": {"locale": "de", "strength": 1}},
            doc! {"v": 2, "key": {"$**": 1}, "name": "w", "wildcardProjection": {"a": 1}},
            doc! {"v": 2, "key": {"x": -1}, "name": "hid", "hidden": true},
        ];
        for spec in cases {
            let m = IndexMeta::from_entry(&spec).unwrap();
            let s = m.create_spec();
            for k in ["v", "ns", "background"] {
                assert!(!s.contains_key(k), "{s}");
            }
            for (k, v) in &spec {
                if !["v", "ns", "background"].contains(&k.as_str()) {
                    assert_eq!(s.get(k), Some(v), "{k} in {s}");
                }
            }
            let cmd = m.create_command("coll");
            assert_eq!(cmd.get_str("createIndexes").unwrap(), "coll");
            assert_eq!(cmd.get_array("indexes").unwrap().len(), 1);
        }
        assert!(
            IndexMeta::from_entry(&doc! {"key": {"_id": 1}, "name": "_id_"})
                .unwrap()
                .is_id_index()
        );
    }
}
