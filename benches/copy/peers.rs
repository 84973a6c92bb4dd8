//! The field's standard tools on the same servers and data: `mongodump | mongorestore` as
//! users run it (default) and tuned, and each side alone, under `/usr/bin/time -v`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One measured run of a peer command line.
pub struct PeerRun {
    /// What ran.
    pub name: &'static str,
    /// Wall time.
    pub seconds: f64,
    /// Peak RSS of each process, in KiB (dump, restore).
    pub rss_kib: Vec<u64>,
}

/// Where the tools are: `MONGO_TOOLS` (built by `shared/tools/build-mongo-tools`).
pub fn tools_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var("MONGO_TOOLS").ok()?);
    (dir.join("mongodump").is_file() && dir.join("mongorestore").is_file()).then_some(dir)
}

/// Peak RSS (KiB) from a `/usr/bin/time -v -o FILE` report.
fn peak_rss(report: &Path) -> u64 {
    std::fs::read_to_string(report)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs a shell pipeline whose stages are each wrapped in `/usr/bin/time -v -o`.
pub fn run(name: &'static str, stages: &[String], work: &Path) -> PeerRun {
    let reports: Vec<PathBuf> = (0..stages.len())
        .map(|i| work.join(format!("time-{i}.txt")))
        .collect();
    let line = stages
        .iter()
        .zip(&reports)
        .map(|(s, r)| {
            format!(
                "/usr/bin/time -v -o {} {s}",
                quote(&r.display().to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &line])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run the peer pipeline");
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stderr}");
    PeerRun {
        name,
        seconds,
        rss_kib: reports.iter().map(|r| peak_rss(r)).collect(),
    }
}

/// Every peer measurement of database `db`: dump alone (to a file), restore alone (from it),
/// then the pipe as users run it and tuned. Each restore replaces `db` on the target; `settle`
/// runs before each measurement.
pub fn measure(
    tools: &Path,
    (src, dst): (&str, &str),
    db: &str,
    work: &Path,
    settle: &dyn Fn(),
) -> Vec<PeerRun> {
    let dump = tools.join("mongodump").display().to_string();
    let restore = tools.join("mongorestore").display().to_string();
    let archive = work.join("peer.archive").display().to_string();
    let (src, dst) = (quote(src), quote(dst));
    let ns = quote(&format!("{db}.*"));
    let dump_to_file = format!("{dump} --quiet --uri {src} --db {db} --archive={archive}");
    let restore_file =
        format!("{restore} --quiet --uri {dst} --nsInclude {ns} --drop --archive={archive}");
    let dump_default = format!("{dump} --quiet --uri {src} --db {db} --archive");
    let restore_default =
        format!("{restore} --quiet --uri {dst} --nsInclude {ns} --drop --archive");
    let dump_tuned = format!("{dump} --quiet --uri {src} --db {db} -j 4 --archive");
    let restore_tuned = format!(
        "{restore} --quiet --uri {dst} --nsInclude {ns} --drop -j 4 --numInsertionWorkersPerCollection 4 --archive"
    );
    let plan: [(&'static str, Vec<String>); 4] = [
        ("mongodump (to a file)", vec![dump_to_file]),
        ("mongorestore (from the file)", vec![restore_file]),
        (
            "mongodump | mongorestore",
            vec![dump_default, restore_default],
        ),
        (
            "mongodump -j4 | mongorestore -j4 -w4",
            vec![dump_tuned, restore_tuned],
        ),
    ];
    let runs = plan
        .into_iter()
        .map(|(name, stages)| {
            settle();
            run(name, &stages, work)
        })
        .collect();
    let _ = std::fs::remove_file(&archive);
    runs
}
