//! What the user reads: each command's output as text or as one JSON document on stdout.

pub mod data;
pub mod migrate;
pub mod plan;

use serde_json::json;

use crate::commands::Output;
use crate::engine::report::MigrationReport;

/// Reports a failure on stderr after the command's own output was printed.
pub fn error_line(msg: &str) {
    eprintln!("error: {msg}");
}

/// Prints a JSON document on stdout (the only thing `--json` prints there).
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
    );
}

/// Prints a command's output.
pub fn output(out: &Output, json: bool) {
    if json {
        print_json(&json_of(out));
        return;
    }
    match out {
        Output::Plan {
            plan,
            world,
            dry_run,
        } => {
            // migrate --dry-run already showed the plan before saying so.
            if !dry_run {
                print!("{}", plan::plan_text(plan, world, plan::Shown::Plan));
            }
        }
        Output::Migration { report, .. } => print!("{}", migrate::report_text(report)),
        Output::Status {
            journal, active, ..
        } => print!("{}", migrate::status_text(journal, active.as_ref())),
        Output::Copy { report, .. } => print!("{}", data::copy_text(report)),
        Output::Verify(r) => print!("{}", data::verify_text(r)),
        Output::Sync(r) => print!("{}", data::sync_text(r)),
        Output::Rollback(r) => println!("{}", r.summary()),
    }
}

/// The JSON document of an output (field names in docs/json.md).
fn json_of(out: &Output) -> serde_json::Value {
    match out {
        Output::Plan {
            plan,
            world,
            dry_run: true,
        } => json!({"plan": plan, "world": world, "dry_run": true}),
        Output::Plan { plan, world, .. } => json!({"plan": plan, "world": world}),
        Output::Migration { plan, report } => json!({"plan": plan, "migration": report}),
        Output::Status {
            journal: j,
            path,
            active,
        } => {
            let mut body = json!({"kind": j.kind, "updated_at": j.updated_at, "copy": j.copy, "active": active});
            if let Some(st) = &j.migrate {
                body["migration"] = json!(MigrationReport::new(st, path));
            }
            json!({ "status": body })
        }
        Output::Copy { report, journal } => json!({"copy": report, "journal": journal}),
        Output::Verify(r) => json!({ "verify": r }),
        Output::Sync(r) => json!({ "sync": r }),
        Output::Rollback(r) => json!({ "rollback": r }),
    }
}
