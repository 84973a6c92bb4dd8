//! The data commands' reports as text: copy, sync and verify tables.

use std::fmt::Write as _;

use crate::cli::style::{self, Stream::Stderr};
use crate::mongo::copy::CopyReport;
use crate::mongo::sync::SyncReport;
use crate::mongo::verify::VerifyReport;
use crate::units::{bytes, count, fit_left, plural, rate};

/// The copy report as a table.
pub fn copy_text(r: &CopyReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<40} {:>10} {:>10} {:>8} {:>10}",
        "collection", "docs", "size", "secs", "docs/s"
    );
    for c in &r.collections {
        let name = pair_name(&c.source, &c.target);
        let rate = if c.seconds > 0.0 {
            c.docs_this_run as f64 / c.seconds
        } else {
            0.0
        };
        let mut note = String::new();
        if c.kind != "collection" {
            note.push_str(&format!(" ({})", c.kind));
        }
        if c.resumed {
            note.push_str(" (resumed)");
        }
        let _ = writeln!(
            o,
            "{} {:>10} {:>10} {:>8.1} {:>10}{note}",
            fit_left(&name, 40),
            count(c.docs),
            bytes(c.bytes as i64),
            c.seconds,
            count(rate.round() as u64)
        );
    }
    let secs = r.seconds.max(1e-9);
    let _ = writeln!(
        o,
        "copied {}, {} in {:.1}s ({}, {:.1} MB/s){}",
        plural(r.docs, "document", "documents"),
        bytes(r.bytes as i64),
        r.seconds,
        rate(r.docs as f64 / secs, "docs"),
        r.bytes as f64 / secs / 1e6,
        r.wire.summary(r.bytes)
    );
    for e in &r.index_errors {
        let _ = writeln!(o, "INDEX FAILED: {e}");
    }
    for d in &r.index_deferred {
        let _ = writeln!(o, "INDEX LEFT TO SYNC: {d}");
    }
    o
}

/// Source and target of a collection line (one name when they are the same).
fn pair_name(source: &str, target: &str) -> String {
    if source == target {
        source.to_string()
    } else {
        format!("{source} -> {target}")
    }
}

/// The sync report as text.
pub fn sync_text(r: &SyncReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<40} {:>9} {:>9} {:>9} {:>8}",
        "collection", "inserted", "replaced", "deleted", "secs"
    );
    for c in &r.collections {
        let mut note = String::new();
        if c.created {
            note.push_str(" (created)");
        }
        if !c.indexes_created.is_empty() || !c.indexes_dropped.is_empty() {
            note.push_str(&format!(
                " (indexes: +{} -{})",
                c.indexes_created.len(),
                c.indexes_dropped.len()
            ));
        }
        if c.counts.conflicts_resolved > 0 {
            note.push_str(&format!(
                " ({} unique-index conflicts resolved)",
                c.counts.conflicts_resolved
            ));
        }
        let _ = writeln!(
            o,
            "{} {:>9} {:>9} {:>9} {:>8.1}{note}",
            fit_left(&pair_name(&c.source, &c.target), 40),
            count(c.counts.inserted),
            count(c.counts.replaced),
            count(c.counts.deleted),
            c.seconds
        );
        for d in &c.option_differences {
            let _ = writeln!(o, "  option not synced: {d}");
        }
    }
    for d in &r.dropped_collections {
        let _ = writeln!(o, "dropped {d} (no longer on the source)");
    }
    let _ = writeln!(
        o,
        "synced: {} inserted, {} replaced, {} deleted; {} compared in {:.1}s",
        count(r.counts.inserted),
        count(r.counts.replaced),
        count(r.counts.deleted),
        plural(r.documents_compared, "document", "documents"),
        r.seconds
    );
    o
}

/// The verification report as text.
pub fn verify_text(r: &VerifyReport) -> String {
    let mut o = String::new();
    for c in &r.collections {
        let status = if c.ok {
            "ok       ".to_string()
        } else {
            style::danger(Stderr, "DIFFERENT")
        };
        let counts = match c.read_back {
            Some(n) => format!(
                "target {} (ledger {}), {} read back",
                plural(c.target_digest.count, "doc", "docs"),
                count(c.source_digest.count),
                plural(n, "patched doc", "patched docs")
            ),
            None => format!(
                "source {} / target {}",
                plural(c.source_digest.count, "doc", "docs"),
                plural(c.target_digest.count, "doc", "docs")
            ),
        };
        let _ = writeln!(o, "{} {status} {counts}", fit_left(&c.source, 40));
        if c.missing + c.extra + c.different > 0 {
            let _ = writeln!(
                o,
                "    {} missing, {} extra, {} different",
                c.missing, c.extra, c.different
            );
        }
        for e in &c.examples {
            let _ = writeln!(o, "    {:?} _id {}", e.kind, e.id);
        }
        if let Some(p) = &c.pinpoint_unavailable
            && !c.ok
        {
            let _ = writeln!(o, "    note: {p}");
        }
        for d in c.index_differences.iter().chain(&c.option_differences) {
            let _ = writeln!(o, "    {d}");
        }
    }
    for e in &r.extra_collections {
        let _ = writeln!(o, "{e:<40} EXTRA     only on the target");
    }
    let _ = writeln!(
        o,
        "{}: compared {} documents ({}) in {:.1}s",
        if r.ok {
            "verified: target equals source"
        } else {
            "MISMATCH"
        },
        r.documents_compared,
        bytes(r.bytes_compared as i64),
        r.seconds
    );
    o
}
