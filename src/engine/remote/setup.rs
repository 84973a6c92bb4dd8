//! What a runner task needs around it, made once per migration and journaled as it is made
//! (so a crash leaves nothing unrecorded): the log group, the temporary secret holding its
//! instructions, the execution role's permission to read exactly that secret, the runner's
//! task definition, and a temporary ingress rule when the source's groups do not admit it.
//! [`teardown`] removes all of them (not the log group: it is the runner's record).

use crate::aws::Aws;
use crate::ecr::ImageCheck;
use crate::engine::context::Ctx;
use crate::engine::options::RunnerSettings;
use crate::engine::remote::event::{self, Spec};
use crate::engine::remote::link::{Purpose, is_remote};
use crate::engine::remote::resources::RunnerState;
use crate::error::{Error, Result};
use crate::fargate::{self, Placement, RunnerImage};
use crate::secret::Secret;
use crate::world::World;

/// The runner for a plan: where it would run, and whether it needs a temporary rule.
pub async fn plan_runner(
    aws: &Aws,
    world: &World,
    settings: &RunnerSettings,
) -> Result<RunnerState> {
    let net = world.service.network.as_ref().ok_or_else(|| {
        Error::refused(format!(
            "service {} has no awsvpc network configuration: --runner ecs runs next to awsvpc (Fargate) tasks only",
            world.service.name
        ))
    })?;
    let role = settings
        .execution_role
        .clone()
        .or_else(|| world.task_definition.execution_role_arn.clone())
        .ok_or_else(|| {
            Error::usage(format!(
                "the task definition {} has no execution role for the runner to use; pass --runner-execution-role ARN",
                world.task_definition.arn
            ))
        })?;
    let port = mongo_port(world);
    let placement = Placement {
        cluster: world.service.cluster_arn.clone(),
        subnets: net.subnets.clone(),
        security_groups: net.security_groups.clone(),
        assign_public_ip: net.assign_public_ip.clone(),
        platform_version: None,
    };
    let rule = fargate::needed_rule(
        aws,
        &net.security_groups,
        &net.security_groups,
        &net.subnets,
        port,
    )
    .await?;
    let image_check = match &settings.image {
        Some(image) => crate::ecr::check(aws, image, &world.account).await,
        None => ImageCheck::Missing,
    };
    Ok(RunnerState {
        image_check: Some(image_check),
        image: RunnerImage {
            image: settings.image.clone().unwrap_or_default(),
            cpu: settings.cpu,
            memory: settings.memory,
            execution_role: role,
        },
        placement,
        port,
        temporary_rule: rule,
        log_group: fargate::LOG_GROUP.into(),
        secret_name: format!("efs2atlas/runner/{}", world.service.name),
        ..RunnerState::default()
    })
}

/// The port the mongo container listens on (27017 unless it maps another).
fn mongo_port(world: &World) -> u16 {
    world
        .task_definition
        .containers
        .iter()
        .find(|c| crate::world::is_mongo_image(&c.image))
        .and_then(|c| c.ports.first().copied())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(27017)
}

/// The cluster the runner runs in.
pub fn cluster(ctx: &Ctx<'_>) -> Result<String> {
    Ok(ctx.state()?.cluster)
}

fn runner(ctx: &Ctx<'_>) -> Result<RunnerState> {
    ctx.state()?
        .runner
        .ok_or_else(|| Error::other("this migration has no runner settings (--runner ecs)"))
}

fn save(ctx: &Ctx<'_>, f: impl FnOnce(&mut RunnerState)) -> Result<()> {
    ctx.update(|s| {
        if let Some(r) = s.runner.as_mut() {
            f(r);
        }
    })
}

/// Makes what is missing around the runner, writes its instructions, starts it; returns the
/// task's ARN.
pub async fn launch(ctx: &mut Ctx<'_>, purpose: Purpose) -> Result<String> {
    let spec = spec(ctx, purpose).await?;
    let st = ctx.state()?;
    let r = runner(ctx)?;
    fargate::ensure_log_group(&ctx.aws).await?;
    let secret = fargate::put_spec(&ctx.aws, &r.secret_name, &spec, &st.service_arn).await?;
    if r.secret_arn.is_none() {
        let s = secret.clone();
        save(ctx, |r| r.secret_arn = Some(s))?;
    }
    if r.policy.is_none() {
        let p = crate::deploy::grant_secret_read(
            &ctx.aws,
            &r.image.execution_role,
            &secret,
            &r.secret_name,
        )
        .await?;
        save(ctx, |r| r.policy = Some(p))?;
    }
    let td = match &r.task_definition {
        Some(td) => td.clone(),
        None => {
            let td = fargate::register(&ctx.aws, &r.image, &secret).await?;
            let t = td.clone();
            save(ctx, |r| r.task_definition = Some(t))?;
            td
        }
    };
    if let Some(rule) = r.temporary_rule.as_ref().filter(|_| !r.rule_added) {
        fargate::authorize(&ctx.aws, rule).await?;
        save(ctx, |r| r.rule_added = true)?;
        ctx.operator.notice(&format!(
            "temporary rule: {} admits TCP {} from {} (removed at the end)",
            rule.group_id, rule.port, rule.from_group
        ));
    }
    fargate::run(&ctx.aws, &r.placement, &td, &st.service).await
}

/// The runner's instructions: the URIs (so they go into the secret), the journal and what to do.
async fn spec(ctx: &mut Ctx<'_>, purpose: Purpose) -> Result<Secret> {
    let st = ctx.state()?;
    let r = runner(ctx)?;
    let remote = ctx
        .remote
        .as_ref()
        .ok_or_else(|| Error::other("no runner configured"))?;
    let address = fargate::source_address(&ctx.aws, &st.cluster, &st.service).await?;
    let source = fargate::runner_source(remote.source.expose(), &address, r.port);
    let steps = match purpose {
        Purpose::Steps => st
            .plan
            .iter()
            .copied()
            .filter(|s| is_remote(*s))
            .filter(|s| st.steps.get(s).is_none_or(|rec| !rec.status.is_finished()))
            .collect(),
        Purpose::Hold | Purpose::Unfreeze => Vec::new(),
    };
    let journal = serde_json::to_value(ctx.journal.snapshot()?)
        .map_err(|e| Error::other(format!("encoding the journal for the runner: {e}")))?;
    let spec = Spec {
        protocol: event::VERSION,
        source,
        target: remote.target.expose().to_string(),
        journal,
        steps,
        hold: purpose != Purpose::Unfreeze,
        unfreeze: purpose == Purpose::Unfreeze,
        yes: remote.yes,
        hold_secs: st.settings.deploy_timeout_secs + 600,
        account: st.account.clone(),
        region: st.region.clone(),
    };
    let text = serde_json::to_string(&spec)
        .map_err(|e| Error::other(format!("encoding the runner's instructions: {e}")))?;
    Ok(Secret::new(text))
}

/// Removes the temporary resources (the runner is stopped already).
pub async fn remove(ctx: &mut Ctx<'_>) {
    let Ok(Some(r)) = ctx.state().map(|s| s.runner) else {
        return;
    };
    let aws = ctx.aws.clone();
    let mut failed: Vec<String> = Vec::new();
    if let Some(rule) = r.temporary_rule.as_ref().filter(|_| r.rule_added) {
        match fargate::revoke(&aws, rule).await {
            Ok(()) => {
                let _ = save(ctx, |r| r.rule_added = false);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if let Some(arn) = &r.secret_arn {
        match fargate::delete_secret(&aws, arn).await {
            Ok(()) => {
                let _ = save(ctx, |r| r.secret_arn = None);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if let Some(p) = &r.policy {
        match crate::deploy::remove_role_policy(&aws, &r.image.execution_role, p).await {
            Ok(()) => {
                let _ = save(ctx, |r| r.policy = None);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if let Some(td) = &r.task_definition {
        match fargate::deregister(&aws, td).await {
            Ok(()) => {
                let _ = save(ctx, |r| r.task_definition = None);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    for f in failed {
        ctx.operator.error_line(&format!(
            "could not remove a temporary runner resource: {f}; `efs2atlas resume` tries again"
        ));
    }
}
