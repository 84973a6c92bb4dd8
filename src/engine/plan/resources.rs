//! Everything a run creates, changes or deletes in the user's AWS account and Atlas project,
//! by name: the plan names all of it, so nothing surprises them in the console afterwards.

use crate::engine::plan::model::{Plan, Resource};
use crate::world::World;

fn res(
    action: &'static str,
    kind: &'static str,
    name: impl Into<String>,
    note: impl Into<String>,
) -> Resource {
    Resource {
        action,
        kind,
        name: name.into(),
        note: note.into(),
    }
}

/// The last segment of an ARN, as the console names the thing: a role's name
/// (`arn:aws:iam::1:role/path/name` → `name`), a task definition's `family:revision`.
fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// What the plan's run touches, in the order it happens.
pub fn resources(plan: &Plan, world: &World) -> Vec<Resource> {
    let mut out = Vec::new();
    runner(plan, &mut out);
    atlas(plan, &mut out);
    app(plan, world, &mut out);
    cleanup(plan, &mut out);
    out
}

/// The runner task and what it needs (`--runner ecs`).
fn runner(plan: &Plan, out: &mut Vec<Resource>) {
    if let Some(run) = &plan.runner {
        out.push(res(
            "temporary",
            "ecs-task-definition",
            crate::fargate::FAMILY,
            match run.image.image.as_str() {
                "" => "the runner task (its image is not given yet)".to_string(),
                image => format!("the runner task, image {image}"),
            },
        ));
        out.push(res(
            "create",
            "logs-log-group",
            &run.log_group,
            "the runner's logs (made once, then kept)",
        ));
        out.push(res(
            "temporary",
            "secretsmanager-secret",
            &run.secret_name,
            "the runner's instructions",
        ));
        out.push(res(
            "temporary",
            "iam-inline-policy",
            format!(
                "{} on {}",
                crate::deploy::policy_name(&run.secret_name),
                short(&run.image.execution_role)
            ),
            "lets the runner read its instructions",
        ));
        if let Some(rule) = &run.temporary_rule {
            out.push(res(
                "temporary",
                "ec2-security-group-rule",
                format!(
                    "{} tcp/{} from {}",
                    rule.group_id, rule.port, rule.from_group
                ),
                "lets the runner reach the mongo task",
            ));
        }
    }
}

/// The users and access-list entries made through the Atlas Admin API.
fn atlas(plan: &Plan, out: &mut Vec<Resource>) {
    if let Some(a) = &plan.atlas {
        out.push(res(
            if a.app_user_exists {
                "change"
            } else {
                "create"
            },
            "atlas-database-user",
            &a.app_user,
            format!(
                "the app's user ({}), a new password straight into the secret",
                a.app_roles.join(", ")
            ),
        ));
        out.push(res(
            "temporary",
            "atlas-database-user",
            &a.migration_user,
            "what efs2atlas writes as (Atlas deletes it a day later in any case)",
        ));
        for e in &a.entries {
            out.push(res(
                "create",
                "atlas-access-list-entry",
                e,
                "the app's NAT gateway",
            ));
        }
        if a.temporary_entry {
            out.push(res(
                "temporary",
                "atlas-access-list-entry",
                "this machine's public address",
                "found when the run starts",
            ));
        }
    }
}

/// The app's secret, its revision and its service.
fn app(plan: &Plan, world: &World, out: &mut Vec<Resource>) {
    if let Some(secret) = &plan.secret_name {
        out.push(res(
            "create",
            "secretsmanager-secret",
            secret,
            "the app's MongoDB credentials (or its value replaced)",
        ));
        let role = world
            .task_definition
            .execution_role_arn
            .as_deref()
            .unwrap_or("the execution role");
        out.push(res(
            "create",
            "iam-inline-policy",
            format!("{} on {}", crate::deploy::policy_name(secret), short(role)),
            "lets the app's tasks read that secret",
        ));
    }
    out.push(res(
        "create",
        "ecs-task-definition",
        &plan.family,
        format!(
            "the app's next revision after {}: no mongo container, no EFS volume, MongoDB settings for Atlas",
            short(&plan.current_task_definition)
        ),
    ));
    out.push(res(
        "change",
        "ecs-service",
        format!("{}/{}", plan.cluster, plan.service),
        "moved to the new revision (back to the current one if it does not settle)",
    ));
}

/// What the clean-up deletes once the cutover is verified and steady.
fn cleanup(plan: &Plan, out: &mut Vec<Resource>) {
    if plan.file_systems.iter().any(|f| f.delete) {
        out.push(res(
            "delete",
            "ecs-task-definition",
            short(&plan.current_task_definition),
            "deregistered with any other revision that mounts the deleted EFS",
        ));
    }
    for fs in plan.file_systems.iter().filter(|f| f.delete) {
        out.push(res(
            "delete",
            "efs-file-system",
            &fs.id,
            "after a verified, steady cutover, with its mount targets and access points",
        ));
    }
    for sg in plan.security_groups.iter().filter(|s| s.delete) {
        out.push(res(
            "delete",
            "ec2-security-group",
            format!("{} ({})", sg.id, sg.name),
            "used only by the deleted EFS's mount targets",
        ));
    }
}
