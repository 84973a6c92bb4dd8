//! Everything the user sees: plan rendering, JSON output, error reports. Library code never
//! prints; commands hand their results here.

use std::fmt::Write as _;

use crate::plan::Plan;
use crate::world::World;

/// Bytes as a short human string.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The plan as text for a terminal.
pub fn plan_text(plan: &Plan, world: &World) -> String {
    let mut o = String::new();
    let svc = &world.service;
    let td = &world.task_definition;
    let _ = writeln!(o, "efs2atlas plan (nothing has been changed)");
    let _ = writeln!(
        o,
        "  account {}  region {}  as {}",
        world.account, world.region, world.caller_arn
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Service {} in cluster {}", svc.name, svc.cluster);
    let _ = writeln!(
        o,
        "  status {}, desired {}, running {}, launch {}",
        svc.status,
        svc.desired_count,
        svc.running_count,
        svc.launch_type
            .clone()
            .unwrap_or_else(|| format!("capacity providers {}", svc.capacity_providers.join(",")))
    );
    if let Some(n) = &svc.network {
        let _ = writeln!(
            o,
            "  awsvpc subnets {}  security groups {}  public IP {}",
            n.subnets.join(","),
            n.security_groups.join(","),
            n.assign_public_ip
        );
    }
    if let Some(cb) = &svc.circuit_breaker {
        let _ = writeln!(
            o,
            "  deployment circuit breaker: enable={} rollback={}",
            cb.enable, cb.rollback
        );
    }
    let _ = writeln!(
        o,
        "  task definition {}:{} ({})",
        td.family,
        td.revision,
        td.network_mode.as_deref().unwrap_or("default")
    );
    for c in &td.containers {
        let _ = writeln!(o, "    container {:<16} {}", c.name, c.image);
    }
    let _ = writeln!(o);
    let m = &plan.mongo_container;
    let _ = writeln!(
        o,
        "MongoDB container: {} ({}), chosen by {}, port {}",
        m.name, m.image, m.chosen_by, m.port
    );
    for mp in &m.mount_points {
        let _ = writeln!(o, "  mount {mp}");
    }
    if !m.volumes_removed.is_empty() {
        let _ = writeln!(
            o,
            "  volumes removed with it: {}",
            m.volumes_removed.join(", ")
        );
    }
    for f in &world.file_systems {
        let _ = writeln!(
            o,
            "  EFS {} {} ({}, {}, {} mount target(s), {} access point(s))",
            f.id,
            f.name.as_deref().unwrap_or(""),
            f.lifecycle_state,
            bytes(f.size_bytes),
            f.mount_targets.len(),
            f.access_points.len()
        );
        for mt in &f.mount_targets {
            let _ = writeln!(
                o,
                "    mount target {} subnet {} {} sg {}",
                mt.id,
                mt.subnet_id,
                mt.availability_zone.as_deref().unwrap_or(""),
                mt.security_groups.join(",")
            );
        }
        for ap in &f.access_points {
            let _ = writeln!(
                o,
                "    access point {} {}",
                ap.id,
                ap.root_directory.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "App env vars to write ({}):",
        match plan.credentials {
            crate::plan::CredentialMode::SecretsManager => "credentials in Secrets Manager",
            crate::plan::CredentialMode::Env => "credentials as plain env",
        }
    );
    if plan.env_mapping.is_empty() {
        let _ = writeln!(o, "  (none found)");
    }
    for e in &plan.env_mapping {
        let _ = writeln!(
            o,
            "  {}/{} = {}  [{} {}] {} -> {}{}",
            e.container,
            e.name,
            e.template,
            e.origin,
            e.current_in,
            e.current.as_deref().unwrap_or("-"),
            e.new,
            if e.new_in == "secrets" {
                "  (as secret)"
            } else {
                ""
            }
        );
    }
    if let Some(s) = &plan.secret_name {
        let _ = writeln!(o, "  secret: {s}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Storage cleanup:");
    for f in &plan.file_systems {
        if f.delete {
            let _ = writeln!(o, "  EFS {}: DELETE after verified cutover", f.id);
        } else {
            let _ = writeln!(o, "  EFS {}: keep ({})", f.id, f.keep_reasons.join("; "));
        }
    }
    for g in &plan.security_groups {
        let state = if g.delete {
            "DELETE (exists only for this EFS)".to_string()
        } else {
            format!(
                "keep{} ({})",
                if g.shared { ", shared" } else { "" },
                g.keep_reasons.join("; ")
            )
        };
        let _ = writeln!(o, "  security group {} ({}): {}", g.id, g.name, state);
        for r in &g.rules_to_revoke {
            let _ = writeln!(o, "    revoke rule {r}");
        }
    }
    if let Some(src) = &world.source {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Source {} (MongoDB {}):",
            src.uri,
            src.version.as_deref().unwrap_or("?")
        );
        if src.databases.is_empty() {
            let _ = writeln!(o, "  (no user databases)");
        }
        for d in &src.databases {
            let _ = writeln!(
                o,
                "  {} ({} collections, {})",
                d.name,
                d.collections.len(),
                d.size_on_disk.map(bytes).unwrap_or_else(|| "size ?".into())
            );
            for c in &d.collections {
                let _ = writeln!(
                    o,
                    "    {:<24} {:>10} docs  {} indexes{}",
                    c.name,
                    c.documents
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into()),
                    c.indexes
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into()),
                    if c.kind == "collection" {
                        String::new()
                    } else {
                        format!("  ({})", c.kind)
                    }
                );
            }
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Steps `efs2atlas migrate` would run:");
    for (i, s) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {:>2}. {}{}",
            i + 1,
            if s.destructive { "[destructive] " } else { "" },
            s.description
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Task definition change:");
    if plan.task_definition_diff.is_empty() {
        let _ = writeln!(o, "  (none)");
    } else {
        for line in plan.task_definition_diff.lines() {
            let _ = writeln!(o, "  {line}");
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Warnings:");
        for w in &plan.warnings {
            let _ = writeln!(o, "  - [{}] {}", w.code, w.message);
        }
    }
    let _ = writeln!(o);
    if plan.blockers.is_empty() {
        let _ = writeln!(
            o,
            "Ready: `efs2atlas migrate` with the same flags would run these steps."
        );
    } else {
        let _ = writeln!(o, "BLOCKED: migrate would refuse until these are fixed:");
        for b in &plan.blockers {
            let _ = writeln!(o, "  - [{}] {}", b.code, b.message);
        }
    }
    o
}

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

/// Whether progress bars may be drawn (stderr is a terminal and the user did not opt out).
pub fn progress_enabled(no_progress: bool, quiet: bool) -> bool {
    use std::io::IsTerminal;
    !no_progress && !quiet && std::io::stderr().is_terminal()
}

/// Asks a yes/no question on the terminal. `--yes` answers yes; without a terminal the
/// question cannot be asked, so the command refuses and names `--yes`.
pub fn confirm(question: &str, yes: bool) -> crate::error::Result<bool> {
    if yes {
        return Ok(true);
    }
    let answer = read_answer(question, "[y/N]", "a confirmation")?;
    Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Asks for a line of text on the terminal (refuses without one, naming --yes).
pub fn ask(question: &str) -> crate::error::Result<String> {
    read_answer(question, "", "an answer")
}

/// Prompts on stderr and reads one line from a terminal; without a terminal, refuses.
fn read_answer(question: &str, hint: &str, what: &str) -> crate::error::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(crate::error::Error::Refused(format!(
            "{question} — this needs {what}, but there is no terminal to ask on; re-run with --yes to accept"
        )));
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} {hint} ");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| crate::error::Error::io("reading the answer", e))?;
    Ok(line.trim().to_string())
}

/// Progress bars for copy and verify: one per collection in flight plus an overall bar.
pub struct Bars {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    bars: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    /// Bars for `total_docs` documents; drawn only when `enabled`.
    pub fn new(total_docs: u64, enabled: bool, label: &str) -> Bars {
        use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let overall = multi.add(ProgressBar::new(total_docs.max(1)));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {human_pos}/{human_len} docs {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix(label.to_string());
        Bars {
            multi,
            overall,
            bars: std::sync::Mutex::new(Default::default()),
        }
    }

    /// Clears the bars from the terminal.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl crate::mongo::copy::Observer for Bars {
    fn start(&self, ns: &str, estimated_docs: u64, done_docs: u64, _done_bytes: u64) {
        use indicatif::{ProgressBar, ProgressStyle};
        let b = self.multi.insert_before(
            &self.overall,
            ProgressBar::new(estimated_docs.max(done_docs).max(1)),
        );
        b.set_style(
            ProgressStyle::with_template(
                "{prefix:>24.dim} [{bar:20}] {human_pos}/{human_len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(ns.to_string());
        b.set_position(done_docs);
        self.overall.inc(done_docs);
        if let Ok(mut m) = self.bars.lock() {
            m.insert(ns.to_string(), b);
        }
    }

    fn progress(&self, ns: &str, docs: u64, _bytes: u64) {
        self.overall.inc(docs);
        if let Ok(m) = self.bars.lock()
            && let Some(b) = m.get(ns)
        {
            b.inc(docs);
        }
    }

    fn finish(&self, ns: &str) {
        if let Ok(mut m) = self.bars.lock()
            && let Some(b) = m.remove(ns)
        {
            b.finish_and_clear();
        }
    }
}

/// The copy report as a table.
pub fn copy_text(r: &crate::mongo::copy::CopyReport) -> String {
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
            "{:<40} {:>10} {:>10} {:>8.1} {:>10.0}{note}",
            name,
            c.docs,
            bytes(c.bytes as i64),
            c.seconds,
            rate
        );
    }
    let secs = r.seconds.max(1e-9);
    let _ = writeln!(
        o,
        "copied {} documents, {} in {:.1}s ({:.0} docs/s, {:.1} MB/s)",
        r.docs,
        bytes(r.bytes as i64),
        r.seconds,
        r.docs as f64 / secs,
        r.bytes as f64 / secs / 1e6
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
pub fn sync_text(r: &crate::mongo::sync::SyncReport) -> String {
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
            "{:<40} {:>9} {:>9} {:>9} {:>8.1}{note}",
            pair_name(&c.source, &c.target),
            c.counts.inserted,
            c.counts.replaced,
            c.counts.deleted,
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
        "synced: {} inserted, {} replaced, {} deleted; {} documents compared in {:.1}s",
        r.counts.inserted, r.counts.replaced, r.counts.deleted, r.documents_compared, r.seconds
    );
    o
}

/// The verification report as text.
pub fn verify_text(r: &crate::mongo::verify::VerifyReport) -> String {
    let mut o = String::new();
    for c in &r.collections {
        let status = if c.ok { "ok" } else { "DIFFERENT" };
        let _ = writeln!(
            o,
            "{:<40} {:<9} source {} docs / target {} docs",
            c.source, status, c.source_digest.count, c.target_digest.count
        );
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

/// A line of information on stderr (never secrets).
pub fn notice(msg: &str) {
    eprintln!("{msg}");
}

/// A spinner for deployment waits.
pub struct Spinner(indicatif::ProgressBar);

impl Spinner {
    /// A spinner labelled `label`, drawn only when `enabled`.
    pub fn new(enabled: bool, label: &str) -> Spinner {
        let b = if enabled {
            indicatif::ProgressBar::new_spinner()
        } else {
            indicatif::ProgressBar::hidden()
        };
        b.set_prefix(label.to_string());
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Spinner(b)
    }

    /// Removes it.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl crate::deploy::DeployObserver for Spinner {
    fn status(&self, line: &str) {
        self.0.set_message(line.to_string());
    }
}

/// A deployment's outcome as text.
pub fn deploy_text(r: &crate::deploy::DeployReport) -> String {
    if r.ok {
        format!(
            "service steady on {} after {:.0}s ({}/{} running)",
            r.task_definition, r.seconds, r.final_state.running, r.final_state.desired
        )
    } else {
        format!(
            "{} did not become steady ({:?}); rolled back to {} ({:?}) after {:.0}s",
            r.task_definition,
            r.wait,
            r.previous,
            r.rollback
                .clone()
                .unwrap_or(crate::deploy::WaitEnd::Timeout),
            r.seconds
        )
    }
}

/// The migration's final report as text.
pub fn migrate_report_text(r: &serde_json::Value) -> String {
    let mut o = String::new();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let _ = writeln!(
        o,
        "\nMigration of {} ({}) finished.",
        s(&r["service"]),
        s(&r["cluster"])
    );
    let _ = writeln!(
        o,
        "  old task definition   {}",
        s(&r["old_task_definition"])
    );
    let _ = writeln!(
        o,
        "  new task definition   {}",
        s(&r["new_task_definition"])
    );
    if let Some(a) = r["secret_arn"].as_str() {
        let _ = writeln!(o, "  credentials secret    {a}");
    }
    if let Some(c) = r.get("copy").filter(|c| !c.is_null()) {
        let _ = writeln!(
            o,
            "  copied                {} documents, {} in {:.1}s",
            c["docs"],
            bytes(c["bytes"].as_i64().unwrap_or(0)),
            c["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(c) = r.get("sync").filter(|c| !c.is_null()) {
        let _ = writeln!(
            o,
            "  synced                {} inserted, {} replaced, {} deleted in {:.1}s",
            c["inserted"],
            c["replaced"],
            c["deleted"],
            c["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(v) = r.get("verify").filter(|c| !c.is_null()) {
        let _ = writeln!(
            o,
            "  verified              {} documents compared, ok={}",
            v["documents_compared"], v["ok"]
        );
    }
    if let Some(f) = r.get("freeze").filter(|c| !c.is_null()) {
        let copy_secs = r["copy"]["seconds"].as_f64().unwrap_or(0.0);
        let frozen = f["seconds"].as_f64().unwrap_or(0.0);
        let versus = if r["strategy"] == "two-pass" && copy_secs > 0.0 {
            format!(
                " vs {copy_secs:.1}s bulk copy with writes live ({:.2}x)",
                frozen / copy_secs
            )
        } else {
            String::new()
        };
        let refrozen = match f["refreezes"].as_u64().unwrap_or(0) {
            0 => String::new(),
            n => format!(", frozen again {n}x after the source lost the lock"),
        };
        let _ = writeln!(
            o,
            "  writes frozen         {:.1}s{versus} ({}{}{}{refrozen})",
            frozen,
            s(&f["mode"]),
            if f["confirmed"] == true {
                ", confirmed"
            } else {
                ", NOT confirmed by the server"
            },
            if f["fence_held"] == true {
                ", still held at the cutover"
            } else {
                ""
            }
        );
    }
    if let Some(d) = r["deleted"].as_array() {
        for x in d {
            let _ = writeln!(o, "  deleted               {}", s(x));
        }
    }
    if let Some(steps) = r["steps"].as_object() {
        let parts: Vec<String> = steps
            .iter()
            .map(|(k, v)| format!("{k} {:.1}s", v["seconds"].as_f64().unwrap_or(0.0)))
            .collect();
        let _ = writeln!(o, "  step times            {}", parts.join(", "));
    }
    if r["journal"].as_str().is_some_and(|j| !j.is_empty()) {
        let _ = writeln!(o, "  journal               {}", s(&r["journal"]));
    }
    o
}

/// A duration for people: `45.2s`, `3m 05s`, `1h 02m`.
pub fn duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h {:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// A journal's state as text.
pub fn status_text(j: &crate::journal::Journal) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} journal, started {}, last written {}",
        j.kind, j.created_at, j.updated_at
    );
    if let Some(m) = &j.migrate {
        let _ = writeln!(
            o,
            "service {} in cluster {} ({} {})",
            m.service, m.cluster, m.account, m.region
        );
        for step in crate::migrate::steps(m.settings.strategy) {
            let (st, note) = m
                .steps
                .get(*step)
                .map(|r| (r.status.as_str(), r.note.as_str()))
                .unwrap_or(("pending", ""));
            let _ = writeln!(o, "  {step:<10} {st:<8} {note}");
        }
        if m.finished {
            o.push_str(&migrate_report_text(&crate::migrate::report(m, "")));
        } else {
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
        let _ = writeln!(o, "  {ns:<40} {state:<8} {} docs", c.docs);
    }
    o
}
