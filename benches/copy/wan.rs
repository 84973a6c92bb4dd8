//! The same copy through a shaped WAN in front of the target (what a remote Atlas is): one-way
//! latency and a bandwidth every connection shares, the bytes it carries each way counted. The
//! field's tools as users run them, tuned, and tuned with `compressors=zstd,snappy` in their
//! URIs, then efs2atlas's copy; each against the link's floor (bytes carried ÷ link rate).

use std::time::Duration;

use crate::peers::{self, quote};
use crate::shaper::{Link, Shaper};
use crate::{Set, timed};

/// The links to measure: `BENCH_WAN_LINKS`, `delay_ms:mbit` pairs (default 10:200,40:50).
fn links() -> Vec<(u64, u64)> {
    std::env::var("BENCH_WAN_LINKS")
        .unwrap_or_else(|_| "10:200,40:50".into())
        .split(',')
        .filter_map(|l| {
            let (d, m) = l.trim().split_once(':')?;
            Some((d.parse().ok()?, m.parse().ok()?))
        })
        .collect()
}

/// True when the set is measured through the WAN (`BENCH_WAN_SETS`, default `app,peer`).
pub fn wanted(set: &str) -> bool {
    std::env::var("BENCH_WAN_SETS")
        .unwrap_or_else(|_| "app,peer".into())
        .split(',')
        .any(|s| s.trim() == set)
        && !links().is_empty()
}

/// `uri` with its hosts replaced by the shaper's port: one host, `directConnection` (a
/// replica-set client would go around the proxy to the members it discovers), plus `extra`.
fn via(uri: &str, port: u16, extra: &str) -> String {
    let (scheme, rest) = uri.split_once("://").expect("a mongodb:// URI");
    let (creds, rest) = rest.split_once('@').expect("a URI with credentials");
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| {
            !p.is_empty() && !p.starts_with("replicaSet=") && !p.starts_with("directConnection=")
        })
        .chain(["directConnection=true"])
        .chain((!extra.is_empty()).then_some(extra))
        .collect();
    format!("{scheme}://{creds}@127.0.0.1:{port}/?{}", params.join("&"))
}

/// The first host's port of `uri`.
fn port_of(uri: &str) -> u16 {
    let hosts = uri.split_once('@').map_or(uri, |(_, r)| r);
    let host = hosts.split(['/', ',', '?']).next().unwrap_or("");
    host.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("a URI with a port")
}

/// One run through the link: what ran, its time and the bytes the link carried each way.
struct Run {
    name: String,
    seconds: f64,
    up: u64,
    down: u64,
    rss_mib: f64,
}

/// Measures `set` (whose documents hold `data_bytes`) through each link.
pub fn measure((src_uri, dst_uri): (&str, &str), set: &Set, data_bytes: u64, settle: &dyn Fn()) {
    let tools = peers::tools_dir();
    let work = std::env::temp_dir().join("efs2atlas-bench-wan");
    std::fs::create_dir_all(&work).unwrap();
    for (delay_ms, mbit) in links() {
        let rate = mbit * 1_000_000 / 8;
        let link = Link {
            delay: Duration::from_millis(delay_ms),
            bytes_per_sec: rate,
        };
        let shaper = Shaper::start(port_of(dst_uri), link);
        let plain = via(dst_uri, shaper.port, "");
        let compressed = via(dst_uri, shaper.port, "compressors=zstd,snappy");
        eprintln!("bench: {} through {delay_ms} ms / {mbit} Mbit/s", set.name);
        let mut runs: Vec<Run> = Vec::new();
        let mut measured = |name: String, f: &mut dyn FnMut() -> (f64, f64)| {
            settle();
            let before = shaper.carried();
            let (seconds, rss_mib) = f();
            let after = shaper.carried();
            runs.push(Run {
                name,
                seconds,
                up: after.0 - before.0,
                down: after.1 - before.1,
                rss_mib,
            });
        };
        if let Some(tools) = &tools {
            let dump = tools.join("mongodump").display().to_string();
            let restore = tools.join("mongorestore").display().to_string();
            let ns = quote(&format!("{}.*", set.db));
            let db = set.db;
            let pipes = [
                ("mongodump | mongorestore", "", "", &plain),
                (
                    "tuned (-j4, -w4)",
                    "-j 4",
                    "-j 4 --numInsertionWorkersPerCollection 4",
                    &plain,
                ),
                (
                    "tuned + compressors=zstd,snappy",
                    "-j 4",
                    "-j 4 --numInsertionWorkersPerCollection 4",
                    &compressed,
                ),
            ];
            for (name, dj, rj, target) in pipes {
                let src = if target.contains("compressors") {
                    format!("{src_uri}&compressors=zstd,snappy")
                } else {
                    src_uri.to_string()
                };
                let stages = [
                    format!(
                        "{dump} --quiet --uri {} --db {db} {dj} --archive",
                        quote(&src)
                    ),
                    format!(
                        "{restore} --quiet --uri {} --nsInclude {ns} --drop {rj} --archive",
                        quote(target)
                    ),
                ];
                measured(name.to_string(), &mut || {
                    let r = peers::run("peer", &stages, &work);
                    let rss = r.rss_kib.iter().max().copied().unwrap_or(0);
                    (r.seconds, rss as f64 / 1024.0)
                });
            }
        }
        let journal = work.join("copy.json");
        let j = journal.display().to_string();
        let ns = format!("{}.*", set.db);
        measured("efs2atlas copy".into(), &mut || {
            let _ = std::fs::remove_file(&journal);
            let args = [
                "copy",
                "--source-uri",
                src_uri,
                "--target-uri",
                &plain,
                "--drop",
                "--yes",
                "--journal",
                &j,
                "--ns-include",
                &ns,
                "--json",
                "--no-progress",
            ];
            let (secs, rss, _) = timed(&args);
            (secs, rss as f64 / 1024.0)
        });
        let _ = std::fs::remove_file(&journal);
        drop(shaper);
        println!(
            "\n{} through a WAN, {delay_ms} ms one way, {mbit} Mbit/s shared ({:.1} MB of documents):",
            set.name,
            data_bytes as f64 / 1e6
        );
        println!(
            "  {:<34} {:>7} {:>14} {:>12} {:>13} {:>9}",
            "", "time", "to Atlas/data", "from Atlas", "time/floor", "peak RSS"
        );
        for r in &runs {
            // The floor: what the link needs to carry those bytes, one way at a time (the
            // larger direction), plus one round trip.
            let floor = r.up.max(r.down) as f64 / rate as f64 + 2.0 * delay_ms as f64 / 1000.0;
            println!(
                "  {:<34} {:>6.1}s {:>13.2}× {:>9.1} MB {:>12.2}× {:>6.0} MiB",
                r.name,
                r.seconds,
                r.up as f64 / data_bytes as f64,
                r.down as f64 / 1e6,
                r.seconds / floor,
                r.rss_mib
            );
        }
        let ours = runs.iter().find(|r| r.name.starts_with("efs2atlas"));
        let best = runs
            .iter()
            .filter(|r| !r.name.starts_with("efs2atlas"))
            .map(|r| r.seconds)
            .reduce(f64::min);
        if let (Some(o), Some(b)) = (ours, best) {
            println!(
                "  speedup over the best peer = {:.2} (goal >= 2.0); bytes to Atlas {:.2}× the data (goal <= 0.5)",
                b / o.seconds,
                o.up as f64 / data_bytes as f64
            );
        }
    }
}
