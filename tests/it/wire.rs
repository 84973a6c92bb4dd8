//! Compression on the wire, read off the target mongod's own counters
//! (`serverStatus.network.compression`): zstd by default, a URI's `compressors=` honoured,
//! `--compressors none` sends nothing compressed, and a server that offers no compressor (the
//! shared-tier proxy strips the offer, as a server started without any would) is talked to
//! uncompressed, the copy exact either way.

use mongodb::bson::{Document, doc};

use crate::common::{Cmd, off_runtime};
use crate::mongod::Mongod;
use crate::sharedtier::SharedTier;

/// Bytes the target got from clients once decompressed, per compressor (what was sent
/// compressed, at its full size).
async fn decompressed(dst: &Mongod) -> [(String, i64); 3] {
    let c = crate::mongod::client(&dst.admin_uri()).await;
    let s = c
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .unwrap();
    let net = s.get_document("network").unwrap();
    let comp = net.get_document("compression").unwrap();
    ["zstd", "snappy", "zlib"].map(|name| {
        let n = comp
            .get_document(name)
            .and_then(|d| d.get_document("decompressor"))
            .map(|d| {
                d.get("bytesOut")
                    .and_then(|b| b.as_i64().or(b.as_i32().map(i64::from)))
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        (name.to_string(), n)
    })
}

/// What a copy made the target decompress, per compressor.
async fn copy_with(src: &Mongod, dst: &Mongod, target: &str, extra: &[&str]) -> Vec<(String, i64)> {
    let before = decompressed(dst).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), target)
        .args(&["--drop", "--yes"])
        .args(extra)
        .dir(dir.path())
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = Cmd::verify(&src.uri(), &dst.uri()).run();
    assert_eq!(v.code, 0, "the copy is exact: {}", v.stdout);
    let after = decompressed(dst).await;
    before
        .iter()
        .zip(after.iter())
        .map(|((n, b), (_, a))| (n.clone(), a - b))
        .collect()
}

fn of(d: &[(String, i64)], name: &str) -> i64 {
    d.iter().find(|(n, _)| n == name).map_or(0, |x| x.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_is_compressed_by_default_and_as_told() {
    let (src, dst) = off_runtime(|| (Mongod::source(), Mongod::target()));
    let c = crate::mongod::client(&src.uri()).await;
    let orders: Vec<Document> = (0..5000)
        .map(|i| doc! {"_id": i, "customer": format!("customer-{}", i % 97), "status": "shipped", "note": "a".repeat(400)})
        .collect();
    c.database("shop")
        .collection::<Document>("orders")
        .insert_many(orders)
        .await
        .unwrap();

    let d = copy_with(&src, &dst, &dst.uri(), &[]).await;
    assert!(of(&d, "zstd") > 1_000_000, "zstd by default: {d:?}");
    println!("wire: a copy of 5,000 orders sent zstd-compressed: {d:?} bytes decompressed");

    let d = copy_with(&src, &dst, &dst.uri(), &["--compressors", "none"]).await;
    assert!(
        d.iter().all(|(_, n)| *n < 100_000),
        "--compressors none: {d:?}"
    );

    let snappy = format!("{}&compressors=snappy", dst.uri());
    let d = copy_with(&src, &dst, &snappy, &[]).await;
    assert!(
        of(&d, "snappy") > 1_000_000 && of(&d, "zstd") < 100_000,
        "the URI's own: {d:?}"
    );
    let d = copy_with(&src, &dst, &snappy, &["--compressors", "zlib"]).await;
    assert!(
        of(&d, "zlib") > 1_000_000 && of(&d, "snappy") < 100_000,
        "the flag overrides the URI: {d:?}"
    );

    // A server that offers no compressor: plain messages, the same exact copy.
    let tier = SharedTier::start(dst.port(), 512, 100_000);
    let d = copy_with(&src, &dst, &dst.uri_via(tier.port), &[]).await;
    assert!(
        d.iter().all(|(_, n)| *n < 100_000),
        "nothing compressed: {d:?}"
    );
    let seen = tier.seen(|s| s.commands.clone());
    assert!(
        seen.iter().any(|c| c == "insert") && !seen.iter().any(|c| c == "OP_COMPRESSED"),
        "{seen:?}"
    );

    // The report says what crossed, as the servers counted it.
    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .args(&["--drop", "--yes", "--json"])
        .dir(dir.path())
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let w = &r.json()["copy"]["wire"];
    let ratio = w["compression_ratio"].as_f64().unwrap_or(0.0);
    let read = w["from_source"].as_u64().unwrap_or(0);
    assert!(
        ratio > 2.0 && read > 0 && read < 1_000_000,
        "both sides compress: {w}"
    );
    let dir = tempfile::tempdir().unwrap();
    let r = Cmd::copy(&src.uri(), &dst.uri())
        .args(&["--drop", "--yes"])
        .dir(dir.path())
        .run();
    assert!(
        r.stdout.contains("to the target on the wire"),
        "{}",
        r.stdout
    );
    println!("wire: {}", r.stdout.lines().last().unwrap_or(""));

    let r = Cmd::copy(&src.uri(), &dst.uri())
        .args(&["--compressors", "lz4"])
        .run();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("zstd, snappy, zlib"), "{}", r.stderr);
}

/// Through the terminal a person watches, the copy's progress line gives the rate at which
/// bytes reach the target on the wire (the target's own counters, compressed as they cross)
/// next to the documents a second; the run then stops cleanly on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_shows_the_rate_on_the_wire() {
    let s = crate::migrate::setup(30_000).await;
    // A slow link (100 KB/s per connection, the data's bytes as they are): the copy lasts
    // long enough for the rate to be read a few times.
    s.link.set(crate::tcpfault::Faults {
        bytes_per_sec: Some(100_000),
        ..Default::default()
    });
    let mut pty = crate::pty::Pty::start_with(&s, &[("EFS2ATLAS_COMPRESSORS", "none")]);
    pty.expect("with the plan above?").await;
    pty.send("y");
    let upto = pty.expect("/s to the target on the wire").await;
    let line = upto.rsplit(['\r', '\n']).next().unwrap_or("");
    assert!(
        line.contains("docs/s"),
        "next to the documents a second: {line:?}"
    );
    // "123.4 KiB/s": what crossed, never more than the link carries (eight inserts in flight
    // at 100 KB/s each).
    let figure = line
        .trim_end_matches("/s to the target on the wire")
        .rsplit("  ")
        .next()
        .unwrap_or("");
    let (n, unit) = figure.split_once(' ').unwrap_or((figure, ""));
    let n: f64 = n.parse().unwrap_or(-1.0);
    let bytes = n * match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        _ => f64::NAN,
    };
    assert!(
        bytes > 0.0 && bytes < 1_000_000.0,
        "a rate the link allows: {figure:?} in {line:?}"
    );
    println!("progress line: {line}");
    pty.ctrl_c();
    let code = pty.exit_code().await;
    assert_eq!(code, Some(5), "{}", pty.all());
}
