//! The migration's report and a journal's status as text.

use std::fmt::Write as _;

use crate::engine::journal::Journal;
use crate::engine::lock::LockHolder;
use crate::engine::options::Strategy;
use crate::engine::report::{FreezeReport, MigrationReport};
use crate::engine::step::StepStatus;
use crate::engine::steps;
use crate::units::{bytes, count, plural};

/// The migration's final report as text.
pub fn report_text(r: &MigrationReport) -> String {
    let mut o = String::new();
    if r.pending.is_empty() {
        let _ = writeln!(o, "\nMigration of {} ({}) finished.", r.service, r.cluster);
    } else {
        let _ = writeln!(
            o,
            "\nMigration of {} ({}): the service runs the new revision; kept for later:",
            r.service, r.cluster
        );
        for p in &r.pending {
            let _ = writeln!(o, "  PENDING  {p}");
        }
    }
    let _ = writeln!(o, "  old task definition   {}", r.old_task_definition);
    let _ = writeln!(
        o,
        "  new task definition   {}",
        r.new_task_definition.as_deref().unwrap_or("-")
    );
    if let Some(a) = &r.secret_arn {
        let _ = writeln!(o, "  credentials secret    {a}");
    }
    if let Some(c) = &r.copy {
        let _ = writeln!(
            o,
            "  copied                {}, {} in {:.1}s",
            plural(c.docs, "document", "documents"),
            bytes(c.bytes as i64),
            c.seconds
        );
    }
    if let Some(c) = &r.catch_up {
        let patched: Vec<String> = c.rounds.iter().map(|r| r.patched.to_string()).collect();
        let _ = writeln!(
            o,
            "  caught up             Atlas matched the ledger ({} documents read back); {} round(s) with writes live patched {} in {:.1}s",
            c.audited,
            c.rounds.len(),
            patched.join(", "),
            c.seconds
        );
    }
    if let Some(c) = &r.sync {
        let _ = writeln!(
            o,
            "  synced                {} inserted, {} replaced, {} deleted in {:.1}s",
            count(c.inserted),
            count(c.replaced),
            count(c.deleted),
            c.seconds
        );
    }
    if let Some(v) = &r.verify {
        let _ = writeln!(
            o,
            "  verified              {} compared, {}",
            plural(v.documents_compared, "document", "documents"),
            if v.ok { "identical" } else { "DIFFERENT" }
        );
    }
    if let Some(f) = &r.freeze {
        let _ = writeln!(o, "  writes frozen         {}", freeze_line(r, f));
    }
    for x in &r.deleted {
        let _ = writeln!(o, "  deleted               {x}");
    }
    if !r.steps.is_empty() {
        let parts: Vec<String> = r
            .steps
            .iter()
            .map(|(k, v)| format!("{k} {:.1}s", v.seconds))
            .collect();
        let _ = writeln!(o, "  step times            {}", parts.join(", "));
    }
    if !r.journal.is_empty() {
        let _ = writeln!(o, "  journal               {}", r.journal);
    }
    o
}

/// How long writes were frozen, against the bulk copy they spared.
fn freeze_line(r: &MigrationReport, f: &FreezeReport) -> String {
    let copy_secs = r.copy.as_ref().map(|c| c.seconds).unwrap_or(0.0);
    let versus = if r.strategy == Strategy::TwoPass && copy_secs > 0.0 {
        format!(
            " vs {copy_secs:.1}s bulk copy with writes live ({:.2}x)",
            f.seconds / copy_secs
        )
    } else {
        String::new()
    };
    let refrozen = match f.refreezes {
        0 => String::new(),
        n => format!(", frozen again {n}x after the source lost the lock"),
    };
    let mode = serde_json::to_value(f.mode)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!(
        "{:.1}s{versus} ({mode}{}{}{refrozen})",
        f.seconds,
        if f.confirmed {
            ", confirmed"
        } else {
            ", NOT confirmed by the server"
        },
        if f.fence_held {
            ", still held at the cutover"
        } else {
            ""
        }
    )
}

/// A journal's state as text.
pub fn status_text(j: &Journal, active: Option<&LockHolder>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} journal, started {}, last written {}",
        j.kind, j.created_at, j.updated_at
    );
    if let Some(h) = active {
        let _ = writeln!(
            o,
            "in progress: `efs2atlas {}` (pid {} on host {}, since {})",
            h.command, h.pid, h.host, h.since
        );
        if let Some(w) = &h.waiting {
            let _ = writeln!(o, "  {w}");
        }
    }
    if let Some(m) = &j.migrate {
        let _ = writeln!(
            o,
            "service {} in cluster {} ({} {})",
            m.service, m.cluster, m.account, m.region
        );
        let order = if m.plan.is_empty() {
            steps::order(m.settings.strategy).to_vec()
        } else {
            m.plan.clone()
        };
        for step in order {
            let (st, note) = m
                .steps
                .get(&step)
                .map(|r| match r.status {
                    // Running with nobody running it: the process died in the step.
                    StepStatus::Running if active.is_none() => {
                        ("stopped", "the process ended in this step")
                    }
                    s => (s.name(), r.note.as_str()),
                })
                .unwrap_or(("pending", ""));
            let _ = writeln!(o, "  {:<10} {st:<8} {note}", step.name());
        }
        let report = MigrationReport::new(m, "");
        if m.finished || !report.pending.is_empty() {
            o.push_str(&report_text(&report));
        } else if active.is_none() {
            let _ = writeln!(o, "not finished: `efs2atlas resume` continues");
        }
    }
    for (ns, c) in &j.copy.collections {
        let state = if c.data_done && c.indexes_done {
            "done"
        } else if c.created {
            "copying"
        } else {
            "pending"
        };
        let _ = writeln!(
            o,
            "  {} {state:<8} {}",
            crate::units::fit_left(ns, 40),
            crate::units::plural(c.docs, "doc", "docs")
        );
    }
    o
}
