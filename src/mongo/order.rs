//! MongoDB's canonical BSON sort order (what a real server uses to sort `_id`), and the
//! resume filter built on it.
//!
//! Copy, sync and verify walk collections in `_id` order. They only trust that order when the
//! stream a server returns is strictly increasing under [`cmp`]; a collection that sorts
//! differently (a non-simple default collation orders string `_id`s by it) is detected, not
//! believed.

use std::cmp::Ordering;

use mongodb::bson::{Bson, RawBsonRef, RawDocument, doc};

/// MongoDB's type brackets, lowest first.
pub fn bracket(v: &RawBsonRef<'_>) -> u8 {
    match v {
        RawBsonRef::MinKey => 0,
        RawBsonRef::Null | RawBsonRef::Undefined => 1,
        RawBsonRef::Int32(_)
        | RawBsonRef::Int64(_)
        | RawBsonRef::Double(_)
        | RawBsonRef::Decimal128(_) => 2,
        RawBsonRef::String(_) | RawBsonRef::Symbol(_) => 3,
        RawBsonRef::Document(_) => 4,
        RawBsonRef::Array(_) => 5,
        RawBsonRef::Binary(_) => 6,
        RawBsonRef::ObjectId(_) => 7,
        RawBsonRef::Boolean(_) => 8,
        RawBsonRef::DateTime(_) => 9,
        RawBsonRef::Timestamp(_) => 10,
        RawBsonRef::RegularExpression(_) => 11,
        RawBsonRef::DbPointer(_) => 12,
        RawBsonRef::JavaScriptCode(_) => 13,
        RawBsonRef::JavaScriptCodeWithScope(_) => 14,
        RawBsonRef::MaxKey => 15,
    }
}

/// `$type` aliases for each bracket, used to select "everything in later brackets".
const BRACKET_TYPES: &[&[&str]] = &[
    &["minKey"],
    &["null", "undefined"],
    &["number"],
    &["string", "symbol"],
    &["object"],
    &["array"],
    &["binData"],
    &["objectId"],
    &["bool"],
    &["date"],
    &["timestamp"],
    &["regex"],
    &["dbPointer"],
    &["javascript"],
    &["javascriptWithScope"],
    &["maxKey"],
];

/// Compares two BSON values the way MongoDB sorts them (simple collation).
pub fn cmp(a: &RawBsonRef<'_>, b: &RawBsonRef<'_>) -> Ordering {
    let (ba, bb) = (bracket(a), bracket(b));
    if ba != bb {
        return ba.cmp(&bb);
    }
    use RawBsonRef as R;
    match (a, b) {
        (R::String(x) | R::Symbol(x), R::String(y) | R::Symbol(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (R::Document(x), R::Document(y)) => cmp_docs(x, y),
        (R::Array(x), R::Array(y)) => cmp_arrays(x, y),
        (R::Binary(x), R::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then(u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then(x.bytes.cmp(y.bytes)),
        (R::ObjectId(x), R::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (R::Boolean(x), R::Boolean(y)) => x.cmp(y),
        (R::DateTime(x), R::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (R::Timestamp(x), R::Timestamp(y)) => (x.time, x.increment).cmp(&(y.time, y.increment)),
        (R::RegularExpression(x), R::RegularExpression(y)) => {
            x.pattern.cmp(y.pattern).then(x.options.cmp(y.options))
        }
        (R::JavaScriptCode(x), R::JavaScriptCode(y)) => x.cmp(y),
        _ if ba == 2 => cmp_numbers(a, b),
        _ => Ordering::Equal,
    }
}

fn cmp_numbers(a: &RawBsonRef<'_>, b: &RawBsonRef<'_>) -> Ordering {
    enum N {
        I(i64),
        F(f64),
    }
    let n = |v: &RawBsonRef<'_>| match v {
        RawBsonRef::Int32(i) => N::I(*i as i64),
        RawBsonRef::Int64(i) => N::I(*i),
        RawBsonRef::Double(f) => N::F(*f),
        RawBsonRef::Decimal128(d) => N::F(d.to_string().parse::<f64>().unwrap_or(f64::NAN)),
        _ => N::F(f64::NAN),
    };
    // NaN sorts below every other number in MongoDB.
    let f_cmp = |x: f64, y: f64| match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    };
    match (n(a), n(b)) {
        (N::I(x), N::I(y)) => x.cmp(&y),
        (N::F(x), N::F(y)) => f_cmp(x, y),
        (N::I(x), N::F(y)) => cmp_int_float(x, y),
        (N::F(x), N::I(y)) => cmp_int_float(y, x).reverse(),
    }
}

/// Exact comparison of an i64 with an f64 (no precision loss for large integers).
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    if f >= 9.223_372_036_854_776e18 {
        return Ordering::Less;
    }
    if f < -9.223_372_036_854_776e18 {
        return Ordering::Greater;
    }
    let t = f.trunc() as i64;
    match i.cmp(&t) {
        Ordering::Equal => {
            let frac = f - f.trunc();
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// Documents compare pair by pair: value type, then field name, then value.
fn cmp_docs(x: &RawDocument, y: &RawDocument) -> Ordering {
    let mut xi = x.iter();
    let mut yi = y.iter();
    loop {
        match (xi.next(), yi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(Ok((kx, vx))), Some(Ok((ky, vy)))) => {
                let o = bracket(&vx)
                    .cmp(&bracket(&vy))
                    .then(kx.cmp(ky))
                    .then_with(|| cmp(&vx, &vy));
                if o != Ordering::Equal {
                    return o;
                }
            }
            // Malformed BSON cannot be ordered; fall back to bytes so the order is total.
            _ => return x.as_bytes().cmp(y.as_bytes()),
        }
    }
}

fn cmp_arrays(x: &mongodb::bson::RawArray, y: &mongodb::bson::RawArray) -> Ordering {
    let mut xi = x.into_iter();
    let mut yi = y.into_iter();
    loop {
        match (xi.next(), yi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(Ok(a)), Some(Ok(b))) => {
                let o = cmp(&a, &b);
                if o != Ordering::Equal {
                    return o;
                }
            }
            _ => return Ordering::Equal,
        }
    }
}

/// The filter that selects every document whose `_id` sorts after `last`: greater values of
/// the same bracket, plus every later bracket (`$gt` alone stays within one type).
pub fn after_filter(last: &RawBsonRef<'_>) -> mongodb::bson::Document {
    lower_filter(last, false)
}

/// Every document whose `_id` sorts after `v` (or is `v` when `inclusive`), whatever its type.
fn lower_filter(v: &RawBsonRef<'_>, inclusive: bool) -> mongodb::bson::Document {
    let op = if inclusive { "$gte" } else { "$gt" };
    let mut clauses = vec![Bson::Document(doc! {"_id": {op: raw_to_bson(v)}})];
    for types in &BRACKET_TYPES[(bracket(v) as usize + 1)..] {
        for t in *types {
            clauses.push(Bson::Document(doc! {"_id": {"$type": *t}}));
        }
    }
    doc! {"$or": clauses}
}

/// Every document whose `_id` sorts before `v`, whatever its type.
fn upper_filter(v: &RawBsonRef<'_>) -> mongodb::bson::Document {
    let mut clauses = vec![Bson::Document(doc! {"_id": {"$lt": raw_to_bson(v)}})];
    for types in &BRACKET_TYPES[..bracket(v) as usize] {
        for t in *types {
            clauses.push(Bson::Document(doc! {"_id": {"$type": *t}}));
        }
    }
    doc! {"$or": clauses}
}

/// The documents of one part of a collection read in parts: `_id` after `lower` (`.1`: or equal
/// to it) and before `upper`, in MongoDB's order across every type. Bounds of one bracket
/// make a plain range the `_id` index answers directly; the type clauses keep whatever
/// lies in other brackets in the first or last part, so the parts always cover everything.
pub fn range_filter(
    lower: Option<(&RawBsonRef<'_>, bool)>,
    upper: Option<&RawBsonRef<'_>>,
) -> mongodb::bson::Document {
    match (lower, upper) {
        (None, None) => doc! {},
        (Some((l, inclusive)), None) => lower_filter(l, inclusive),
        (None, Some(u)) => upper_filter(u),
        (Some((l, inclusive)), Some(u)) if bracket(l) == bracket(u) => {
            let op = if inclusive { "$gte" } else { "$gt" };
            doc! {"_id": {op: raw_to_bson(l), "$lt": raw_to_bson(u)}}
        }
        (Some((l, inclusive)), Some(u)) => {
            doc! {"$and": [lower_filter(l, inclusive), upper_filter(u)]}
        }
    }
}

/// A raw value as an owned `Bson` (for building filters).
pub fn raw_to_bson(v: &RawBsonRef<'_>) -> Bson {
    v.to_raw_bson().try_into().unwrap_or(Bson::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{DateTime, RawBson, rawdoc};

    fn sorted_ok(vals: &[RawBson]) {
        for w in vals.windows(2) {
            assert_eq!(
                cmp(&w[0].as_raw_bson_ref(), &w[1].as_raw_bson_ref()),
                Ordering::Less,
                "{:?} < {:?}",
                w[0],
                w[1]
            );
            assert_eq!(
                cmp(&w[1].as_raw_bson_ref(), &w[0].as_raw_bson_ref()),
                Ordering::Greater
            );
        }
    }

    #[test]
    fn follows_mongodb_type_and_value_order() {
        let oid1 = ObjectId::parse_str("000000000000000000000001").unwrap();
        let oid2 = ObjectId::parse_str("000000000000000000000002").unwrap();
        sorted_ok(&[
            RawBson::MinKey,
            RawBson::Null,
            RawBson::Double(f64::NAN),
            RawBson::Int64(-5),
            RawBson::Double(-4.5),
            RawBson::Int32(2),
            RawBson::Double(2.5),
            RawBson::Int32(9),
            RawBson::Int64(10),
            RawBson::Int64(i64::MAX),
            RawBson::Double(1e300),
            RawBson::String("B".into()),
            RawBson::String("a".into()),
            RawBson::String("aa".into()),
            RawBson::String("é".into()),
            RawBson::Document(rawdoc! {"a": 1}),
            RawBson::Document(rawdoc! {"a": 1, "b": 0}),
            // Field types compare before field names.
            RawBson::Document(rawdoc! {"b": 0}),
            RawBson::Document(rawdoc! {"a": "x"}),
            RawBson::Binary(mongodb::bson::Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![9, 9],
            }),
            RawBson::Binary(mongodb::bson::Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1, 2, 3],
            }),
            RawBson::ObjectId(oid1),
            RawBson::ObjectId(oid2),
            RawBson::Boolean(false),
            RawBson::Boolean(true),
            RawBson::DateTime(DateTime::from_millis(-1)),
            RawBson::DateTime(DateTime::from_millis(5)),
            RawBson::MaxKey,
        ]);
    }

    #[test]
    fn numbers_of_different_types_compare_by_value() {
        let c = |a: RawBson, b: RawBson| cmp(&a.as_raw_bson_ref(), &b.as_raw_bson_ref());
        assert_eq!(c(RawBson::Int32(3), RawBson::Int64(3)), Ordering::Equal);
        assert_eq!(c(RawBson::Int64(3), RawBson::Double(3.0)), Ordering::Equal);
        assert_eq!(
            c(
                RawBson::Int64(9_007_199_254_740_993),
                RawBson::Double(9_007_199_254_740_992.0)
            ),
            Ordering::Greater
        );
        assert_eq!(c(RawBson::Double(-0.5), RawBson::Int32(0)), Ordering::Less);
        assert_eq!(
            c(RawBson::Double(-0.5), RawBson::Int32(-1)),
            Ordering::Greater
        );
    }

    #[test]
    fn after_filter_covers_later_brackets() {
        let f = after_filter(&RawBsonRef::Int32(7));
        let s = f.to_string();
        assert!(s.contains("\"$gt\": 7"), "{s}");
        assert!(
            s.contains("\"string\"") && s.contains("\"objectId\"") && s.contains("\"maxKey\""),
            "{s}"
        );
        assert!(!s.contains("\"number\"") && !s.contains("\"null\""), "{s}");
        let f = after_filter(&RawBsonRef::MaxKey).to_string();
        assert_eq!(f.matches("$type").count(), 0, "{f}");
    }

    #[test]
    fn parts_cover_every_bracket_once() {
        let (a, b) = (
            ObjectId::parse_str("650000000000000000000001").unwrap(),
            ObjectId::parse_str("650000000000000000000009").unwrap(),
        );
        let (a, b) = (RawBsonRef::ObjectId(a), RawBsonRef::ObjectId(b));
        // A middle part is a plain range the `_id` index answers.
        let mid = range_filter(Some((&a, true)), Some(&b));
        assert_eq!(
            mid,
            doc! {"_id": {"$gte": raw_to_bson(&a), "$lt": raw_to_bson(&b)}}
        );
        // The first part takes every earlier bracket, the last every later one.
        let first = range_filter(None, Some(&a)).to_string();
        for t in [
            "minKey", "null", "number", "string", "object", "array", "binData",
        ] {
            assert!(first.contains(&format!("\"{t}\"")), "{t}: {first}");
        }
        assert!(
            !first.contains("\"date\"") && !first.contains("\"objectId\""),
            "{first}"
        );
        let last = range_filter(Some((&b, true)), None).to_string();
        assert!(last.contains("$gte") && last.contains("\"date\"") && last.contains("\"maxKey\""));
        assert!(!last.contains("\"number\""), "{last}");
        // Resuming a first part after a value of an earlier bracket: both sides bound it.
        let resumed = range_filter(Some((&RawBsonRef::Int32(5), false)), Some(&a)).to_string();
        assert!(resumed.contains("$and") && resumed.contains("$gt") && resumed.contains("$lt"));
        assert_eq!(range_filter(None, None), doc! {});
    }
}
