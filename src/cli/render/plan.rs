//! The plan as text, one function per section.

use std::fmt::Write as _;

use crate::cli::style::{self, Stream::Stdout};
use crate::ecr::ImageCheck;
use crate::engine::options::CredentialMode;
use crate::engine::plan::model::Plan;
use crate::units::bytes;
use crate::world::World;

/// Who shows the plan: the last line says what happens next accordingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// `efs2atlas plan`.
    Plan,
    /// `migrate --dry-run`.
    DryRun,
    /// `migrate`, before its first question.
    Migrate,
}

/// The plan as text for a terminal.
pub fn plan_text(plan: &Plan, world: &World, shown: Shown) -> String {
    let mut o = String::new();
    service(&mut o, world);
    mongo(&mut o, plan, world);
    env(&mut o, plan);
    storage(&mut o, plan);
    source(&mut o, world);
    target(&mut o, world);
    atlas(&mut o, plan, world);
    runner(&mut o, plan);
    resources(&mut o, plan);
    steps(&mut o, plan);
    diff(&mut o, plan);
    verdict(&mut o, plan, shown);
    o
}

fn service(o: &mut String, world: &World) {
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
}

fn mongo(o: &mut String, plan: &Plan, world: &World) {
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
            let root = ap.root_directory.as_deref().unwrap_or("");
            let _ = writeln!(o, "    access point {} {root}", ap.id);
        }
    }
    let _ = writeln!(o);
}

fn env(o: &mut String, plan: &Plan) {
    let _ = writeln!(
        o,
        "App env vars to write ({}):",
        match plan.credentials {
            CredentialMode::SecretsManager => "credentials in Secrets Manager",
            CredentialMode::Env => "credentials as plain env",
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
}

fn storage(o: &mut String, plan: &Plan) {
    let _ = writeln!(o, "Storage cleanup:");
    for f in &plan.file_systems {
        if f.delete {
            let _ = writeln!(
                o,
                "  EFS {}: {}",
                f.id,
                style::danger(Stdout, "DELETE after verified cutover")
            );
        } else {
            let _ = writeln!(o, "  EFS {}: keep ({})", f.id, f.keep_reasons.join("; "));
        }
    }
    for g in &plan.security_groups {
        let state = if g.delete {
            style::danger(Stdout, "DELETE (exists only for this EFS)")
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
}

fn target(o: &mut String, world: &World) {
    let Some(t) = &world.target else { return };
    let _ = writeln!(o);
    let what = match (&world.source, t.busy.is_empty()) {
        (None, _) => "reachable".to_string(),
        (Some(_), true) => "reachable, empty where the copy writes".to_string(),
        (Some(_), false) => format!("reachable, already holds data in {}", t.busy.join(", ")),
    };
    let _ = writeln!(
        o,
        "Target {} (MongoDB {}): {what}",
        t.uri,
        t.version.as_deref().unwrap_or("?")
    );
}

/// What the Admin API said of the Atlas side, and what `migrate` makes there.
fn atlas(o: &mut String, plan: &Plan, world: &World) {
    let Some(a) = &world.atlas else { return };
    let c = &a.cluster;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Atlas project {}, cluster {}: {} (MongoDB {}), {}{}",
        a.project,
        c.name,
        c.tier,
        c.version,
        c.state,
        if c.paused { ", PAUSED" } else { "" }
    );
    if let Some(l) = c.limits() {
        let _ = writeln!(
            o,
            "  tier limits: {} of data and indexes, {} operations/s",
            crate::units::bytes(l.storage as i64),
            l.ops_per_sec
        );
    }
    let listed = |v: Vec<&str>, none: &str| {
        if v.is_empty() {
            none.to_string()
        } else {
            v.join(", ")
        }
    };
    let cidrs = a.access_list.iter().map(|e| e.cidr.as_str()).collect();
    let _ = writeln!(o, "  access list: {}", listed(cidrs, "empty"));
    if let Some(e) = &world.egress {
        let from = if !e.nat_ips.is_empty() {
            format!("NAT {}", e.nat_ips.join(", "))
        } else if e.public_ip_tasks {
            "public IPs of their own (a new one on every deployment)".to_string()
        } else {
            "no route to the internet found".to_string()
        };
        let _ = writeln!(o, "  the service's tasks reach Atlas from: {from}");
    }
    let users = a.users.iter().map(|u| u.name.as_str()).collect();
    let _ = writeln!(o, "  database users: {}", listed(users, "none"));
    if let Some(p) = &plan.atlas {
        let _ = writeln!(
            o,
            "  migrate makes: user {} ({}), temporary user {}{}",
            p.app_user,
            p.app_roles.join(", "),
            p.migration_user,
            if p.entries.is_empty() {
                String::new()
            } else {
                format!(", access list {}", p.entries.join(", "))
            }
        );
    }
}

fn runner(o: &mut String, plan: &Plan) {
    let Some(r) = &plan.runner else { return };
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Runner task (--runner ecs): the data steps run inside the VPC, next to the mongo task"
    );
    let image = if r.image.image.is_empty() {
        "none given (see BLOCKED below)"
    } else {
        &r.image.image
    };
    let found = match &r.image_check {
        Some(ImageCheck::Exists) => ", found in this account's ECR",
        Some(ImageCheck::NotFound { .. }) => ", NOT in this account's ECR",
        Some(ImageCheck::NotChecked { .. }) => ", not checked",
        _ => "",
    };
    let _ = writeln!(
        o,
        "  image {image}{found}, {} CPU units, {} MiB, execution role {}",
        r.image.cpu, r.image.memory, r.image.execution_role
    );
    let p = &r.placement;
    let _ = writeln!(
        o,
        "  subnets {}, security groups {}, public IP {}",
        p.subnets.join(", "),
        p.security_groups.join(", "),
        p.assign_public_ip
    );
    match &r.temporary_rule {
        Some(rule) => {
            let _ = writeln!(
                o,
                "  temporary rule: {} admits TCP {} from {} (removed at the end)",
                rule.group_id, rule.port, rule.from_group
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  the service's groups admit the runner on port {}: no rule needed",
                r.port
            );
        }
    }
    let _ = writeln!(
        o,
        "  logs: CloudWatch Logs {}; URIs through the temporary secret {} (deleted at the end)",
        r.log_group, r.secret_name
    );
}

fn source(o: &mut String, world: &World) {
    let Some(src) = &world.source else { return };
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
            "  {} ({}, {})",
            d.name,
            crate::units::plural(d.collections.len() as u64, "collection", "collections"),
            d.size_on_disk.map(bytes).unwrap_or_else(|| "size ?".into())
        );
        for c in &d.collections {
            let kind = if c.kind == "collection" {
                String::new()
            } else {
                format!("  ({})", c.kind)
            };
            let _ = writeln!(
                o,
                "    {:<24} {:>10} docs  {} indexes{kind}",
                c.name,
                count(c.documents),
                count(c.indexes)
            );
        }
    }
}

fn count<T: ToString>(n: Option<T>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// Everything the run makes, changes or removes, by name: nothing in the console afterwards
/// should be a surprise.
fn resources(o: &mut String, plan: &Plan) {
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "What `efs2atlas migrate` would create, change and delete:"
    );
    for r in &plan.resources {
        let action = match r.action {
            "delete" => style::danger(Stdout, "delete   "),
            a => format!("{a:<9}"),
        };
        let _ = writeln!(o, "  {action} {:<24} {} — {}", r.kind, r.name, r.note);
    }
    if plan.resources.iter().any(|r| r.action == "temporary") {
        let _ = writeln!(
            o,
            "  (temporary: made for the run and removed at its end, or when a failed cutover is undone)"
        );
    }
}

fn steps(o: &mut String, plan: &Plan) {
    let mark = |destructive: bool| {
        if destructive {
            style::danger(Stdout, "[destructive] ")
        } else {
            String::new()
        }
    };
    let _ = writeln!(o);
    let _ = writeln!(o, "Steps `efs2atlas migrate` would run:");
    for (i, s) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {:>2}. {:<9} {}{}",
            i + 1,
            s.id,
            mark(s.destructive),
            s.description
        );
        for a in &s.actions {
            let _ = writeln!(o, "        - {}{}", mark(a.destructive), a.description);
        }
    }
}

fn diff(o: &mut String, plan: &Plan) {
    let _ = writeln!(o);
    let _ = writeln!(o, "Task definition change:");
    if plan.task_definition_diff.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for line in plan.task_definition_diff.lines() {
        let line = if line.starts_with('+') && !line.starts_with("+++") {
            style::added(Stdout, line)
        } else if line.starts_with('-') && !line.starts_with("---") {
            style::removed(Stdout, line)
        } else {
            line.to_string()
        };
        let _ = writeln!(o, "  {line}");
    }
}

fn verdict(o: &mut String, plan: &Plan, shown: Shown) {
    if !plan.warnings.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Warnings:");
        for w in &plan.warnings {
            let _ = writeln!(
                o,
                "  - {}",
                style::warn(Stdout, &format!("[{}] {}", w.code, w.message))
            );
        }
    }
    let _ = writeln!(o);
    if !plan.unchecked.is_empty() {
        let _ = writeln!(o, "Not checked by this plan:");
        for u in &plan.unchecked {
            let _ = writeln!(o, "  - {u}");
        }
    }
    if plan.blockers.is_empty() {
        let ready = if plan.unchecked.is_empty() {
            "Ready"
        } else {
            "Ready as far as checked"
        };
        let next = match shown {
            Shown::Plan => ": `efs2atlas migrate` with the same flags would run these steps.",
            Shown::DryRun => ": `efs2atlas migrate` without --dry-run would run these steps.",
            Shown::Migrate => ".",
        };
        let _ = writeln!(o, "{}{next}", style::good(Stdout, ready));
    } else {
        let _ = writeln!(
            o,
            "{}",
            style::danger(
                Stdout,
                "BLOCKED: migrate would refuse until these are fixed:"
            )
        );
        for b in &plan.blockers {
            // A finding's further lines are commands to run: indented under it.
            let message = b.message.replace('\n', "\n      ");
            let _ = writeln!(o, "  - [{}] {message}", b.code);
        }
    }
}
