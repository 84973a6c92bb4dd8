//! The Atlas side, through the Admin API (`--atlas-project` without `--atlas-uri`):
//! `atlas-access` first makes the app's database user (its password generated here and put
//! straight into the app's rendered credentials, so into the Secrets Manager secret, never
//! shown or journaled), a temporary user efs2atlas writes as, and the access-list entries;
//! `atlas-release` last removes what was only for the migration. A declined or failed
//! cutover undoes all of it ([`undo`]); `resume` makes it again.
//!
//! Passwords live only in this process: `atlas-access` runs again in every run that has work
//! left (the runner forgets it), setting the migration user's password anew; the app's is set
//! anew only while the secret has not been stored, so the app and its secret always agree.

use std::time::{Duration, Instant};

use crate::atlas::model::{AccessEntry, NewUser};
use crate::atlas::{Atlas, Credentials};
use crate::engine::context::{Check, Ctx, Outcome, Step};
use crate::engine::plan::atlas::PLACEHOLDER;
use crate::engine::plan::model::{AtlasPlan, Plan, PlannedStep};
use crate::engine::state::AtlasMade;
use crate::engine::step::StepId;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::uri::MongoUri;
use crate::world::World;

/// How long a new user may take to work on the cluster (Atlas applies user changes to the
/// cluster in the background, usually within seconds).
const USER_READY: Duration = Duration::from_secs(180);

/// Where this machine's public address is asked (`EFS2ATLAS_CHECKIP_URL` overrides it).
const CHECKIP: &str = "https://checkip.amazonaws.com";

/// The variable that overrides [`CHECKIP`].
pub const CHECKIP_VAR: &str = "EFS2ATLAS_CHECKIP_URL";

/// `deleteAfterDate` one day out, as Atlas takes it (ISO 8601, UTC).
fn a_day_out() -> String {
    let t = std::time::SystemTime::now() + Duration::from_secs(24 * 3600);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn api(ctx: &Ctx<'_>) -> Result<(Atlas, AtlasPlan)> {
    let plan = ctx
        .plan
        .atlas
        .clone()
        .ok_or_else(|| Error::other("the plan makes nothing on the Atlas side"))?;
    let creds = Credentials::from_env(|k| std::env::var(k).ok())?;
    Ok((Atlas::new(None, &plan.project, creds)?, plan))
}

/// Makes the users and entries.
pub struct AtlasAccess;

impl Step for AtlasAccess {
    const ID: StepId = StepId::AtlasAccess;

    fn describe(&self, plan: &Plan, _world: &World) -> PlannedStep {
        let Some(a) = &plan.atlas else {
            return PlannedStep::new(Self::ID, "nothing to make on the Atlas side");
        };
        let mut what = format!(
            "Atlas project {}: {} database user {} ({}, cluster {} only; a generated password goes straight into the secret), temporary user {} for efs2atlas (deleted at the end)",
            a.project,
            if a.app_user_exists { "reset" } else { "create" },
            a.app_user,
            a.app_roles.join(", "),
            a.cluster,
            a.migration_user,
        );
        if !a.entries.is_empty() {
            what.push_str(&format!(
                "; access list: add {} (the service's NAT gateways)",
                a.entries.join(", ")
            ));
        }
        if a.temporary_entry {
            what.push_str("; this machine's public address as a temporary entry");
        }
        PlannedStep::new(Self::ID, what)
    }

    async fn check(&self, _ctx: &mut Ctx<'_>) -> Result<Check> {
        Ok(Check::Run)
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let (api, plan) = api(ctx)?;
        let st = ctx.state()?;
        let mut made = st.atlas_made.clone().unwrap_or_else(|| AtlasMade {
            app_user: plan.app_user.clone(),
            app_user_created: !plan.app_user_exists,
            migration_user: plan.migration_user.clone(),
            ..AtlasMade::default()
        });
        if made.app_roles.is_empty() {
            made.app_roles = plan.app_roles.clone();
        }
        if made.app_roles.is_empty() && ctx.remote.is_none() {
            // A resume does not read the source for its plan: ask it here.
            made.app_roles = source_databases(ctx)
                .await?
                .iter()
                .map(|d| format!("readWrite@{d}"))
                .collect();
        }
        if made.app_roles.is_empty() {
            return Err(Error::usage(format!(
                "the app's databases are not known, so its Atlas user {} cannot be given readWrite on them: pass --source-uri",
                plan.app_user
            )));
        }
        let mut notes = Vec::new();
        entries(ctx, &api, &plan, &mut made, &mut notes).await?;
        ctx.update(|s| s.atlas_made = Some(made.clone()))?;
        // The app's user: its password is set only until the secret holds it.
        if st.secret_arn.is_none() {
            let password = crate::atlas::auth::generate_password(32)?;
            api.put_user(&NewUser {
                name: plan.app_user.clone(),
                roles: roles(&made.app_roles),
                cluster: plan.cluster.clone(),
                delete_after: None,
                password: password.clone(),
            })
            .await?;
            for a in &mut ctx.plan.env_assignments {
                let v = a.value.expose().replace(PLACEHOLDER, password.expose());
                a.value = Secret::new(v);
            }
            notes.push(format!(
                "user {} ({})",
                plan.app_user,
                made.app_roles.join(", ")
            ));
        }
        let password = crate::atlas::auth::generate_password(32)?;
        api.put_user(&NewUser {
            name: plan.migration_user.clone(),
            roles: [
                "readWriteAnyDatabase",
                "dbAdminAnyDatabase",
                "clusterMonitor",
            ]
            .iter()
            .map(|r| (r.to_string(), "admin".to_string()))
            .collect(),
            cluster: plan.cluster.clone(),
            delete_after: Some(a_day_out()),
            password: password.clone(),
        })
        .await?;
        notes.push(format!("temporary user {}", plan.migration_user));
        let target = with_user(&ctx.target, &plan.migration_user, &password)?;
        ctx.set_target(target);
        wait_until_usable(ctx).await?;
        Ok(Outcome::Done(notes.join("; ")))
    }
}

/// The source's user databases: the app's, which its Atlas user may read and write.
async fn source_databases(ctx: &Ctx<'_>) -> Result<Vec<String>> {
    let src = crate::mongo::Mongo::connect(
        &ctx.source,
        "source",
        crate::engine::context::MONGO_CONNECT_TIMEOUT,
    )
    .await?;
    Ok(src
        .list_databases()
        .await?
        .into_iter()
        .map(|d| d.0)
        .collect())
}

fn roles(app_roles: &[String]) -> Vec<(String, String)> {
    app_roles
        .iter()
        .filter_map(|r| r.split_once('@'))
        .map(|(r, d)| (r.to_string(), d.to_string()))
        .collect()
}

/// The target efs2atlas writes to, signed in as `user`: a `--target-uri` that names its own
/// user keeps it (the operator chose it).
fn with_user(target: &MongoUri, user: &str, password: &Secret) -> Result<MongoUri> {
    if target.user.is_some() {
        return Ok(target.clone());
    }
    target.with_login(user, password)
}

/// The access-list entries: the app's NAT addresses (kept), and where efs2atlas runs
/// (temporary, deleted a day out at the latest).
async fn entries(
    ctx: &Ctx<'_>,
    api: &Atlas,
    plan: &AtlasPlan,
    made: &mut AtlasMade,
    notes: &mut Vec<String>,
) -> Result<()> {
    let comment = format!(
        "efs2atlas: ECS service {}/{}",
        ctx.world.service.cluster, ctx.world.service.name
    );
    for cidr in &plan.entries {
        api.add_access(&AccessEntry {
            cidr: cidr.clone(),
            comment: comment.clone(),
            delete_after: None,
        })
        .await?;
        if !made.entries.contains(cidr) {
            made.entries.push(cidr.clone());
        }
        notes.push(format!("access list {cidr}"));
    }
    if !plan.temporary_entry {
        return Ok(());
    }
    let here = match public_address().await {
        Ok(ip) => ip,
        Err(e) => {
            ctx.operator.notice(&format!(
                "atlas-access: {e}; if this machine's address is not in the access list, the connection to Atlas will fail: add it in Atlas (Network Access)"
            ));
            return Ok(());
        }
    };
    let admitted = api.access_list().await?.iter().any(|e| e.admits(here));
    if admitted && !made.temporary.contains(&format!("{here}/32")) {
        return Ok(());
    }
    let cidr = format!("{here}/32");
    api.add_access(&AccessEntry {
        cidr: cidr.clone(),
        comment: "efs2atlas: this migration (temporary)".into(),
        delete_after: Some(a_day_out()),
    })
    .await?;
    if !made.temporary.contains(&cidr) {
        made.temporary.push(cidr.clone());
    }
    notes.push(format!("temporary access list {cidr}"));
    Ok(())
}

/// This machine's public IPv4 address, as the internet sees it.
async fn public_address() -> Result<std::net::Ipv4Addr> {
    let url = std::env::var(CHECKIP_VAR).unwrap_or_else(|_| CHECKIP.to_string());
    let fail = |why: String| {
        Error::other(format!(
            "could not learn this machine's public address from {url} ({why})"
        ))
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let text = client
        .get(&url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?
        .text()
        .await
        .map_err(|e| fail(e.to_string()))?;
    text.trim().parse().map_err(|_| {
        fail(format!(
            "it answered '{}'",
            text.trim().chars().take(40).collect::<String>()
        ))
    })
}

/// Waits (bounded, with a voice) until the cluster takes the new user: Atlas applies user
/// changes in the background. With `--runner ecs` the runner signs in from the VPC (this
/// machine may not be admitted), and its preflight is the check.
async fn wait_until_usable(ctx: &mut Ctx<'_>) -> Result<()> {
    if ctx.remote.is_some() {
        return Ok(());
    }
    let started = Instant::now();
    let mut said = false;
    loop {
        let tried = crate::mongo::Mongo::connect(
            &ctx.target,
            "target",
            crate::engine::context::MONGO_CONNECT_TIMEOUT,
        )
        .await;
        let e = match tried {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let login = e.message.contains("rejected the login");
        if !login || started.elapsed() > USER_READY {
            return Err(e);
        }
        if !said {
            ctx.operator.notice(&format!(
                "atlas-access: waiting for Atlas to apply the new users to the cluster (at most {}s)",
                USER_READY.as_secs()
            ));
            said = true;
        }
        if ctx.cancel.is_cancelled() {
            return Err(Error::interrupted(
                "interrupted while Atlas applied the new users",
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Removes what was only for the migration: the temporary user and entries.
pub struct AtlasRelease;

impl Step for AtlasRelease {
    const ID: StepId = StepId::AtlasRelease;

    fn describe(&self, plan: &Plan, _world: &World) -> PlannedStep {
        let what = match &plan.atlas {
            Some(a) => format!(
                "Atlas: delete the temporary user {}{} (the app's user and entries stay)",
                a.migration_user,
                if a.temporary_entry {
                    " and this machine's temporary access-list entry"
                } else {
                    ""
                }
            ),
            None => "nothing to remove on the Atlas side".into(),
        };
        PlannedStep::new(Self::ID, what)
    }

    async fn check(&self, ctx: &mut Ctx<'_>) -> Result<Check> {
        Ok(match ctx.state()?.atlas_made {
            Some(_) => Check::Run,
            None => Check::Skip("nothing was made on the Atlas side".into()),
        })
    }

    async fn apply(&self, ctx: &mut Ctx<'_>) -> Result<Outcome> {
        let (api, _) = api(ctx)?;
        let made = ctx.state()?.atlas_made.unwrap_or_default();
        api.delete_user(&made.migration_user).await?;
        for cidr in &made.temporary {
            api.remove_access(cidr).await?;
        }
        let mut note = format!("deleted temporary user {}", made.migration_user);
        if !made.temporary.is_empty() {
            note.push_str(&format!("; removed {}", made.temporary.join(", ")));
        }
        ctx.update(|s| {
            if let Some(m) = &mut s.atlas_made {
                m.temporary.clear();
            }
        })?;
        Ok(Outcome::Done(note))
    }
}

/// A declined or failed cutover: the service runs its old revision, so nothing made on the
/// Atlas side is in use. Deletes it (best effort, each failure said), so nothing is left
/// behind if the migration is abandoned; `resume` makes it again.
pub async fn undo(ctx: &mut Ctx<'_>, why: &str) {
    let Some(made) = ctx.state().ok().and_then(|s| s.atlas_made) else {
        return;
    };
    let Ok((api, _)) = api(ctx) else { return };
    let mut undone = Vec::new();
    let mut users = vec![made.migration_user.clone()];
    if made.app_user_created {
        users.push(made.app_user.clone());
    }
    for u in &users {
        match api.delete_user(u).await {
            Ok(()) => undone.push(format!("user {u}")),
            Err(e) => ctx.operator.error_line(&e.to_string()),
        }
    }
    for cidr in made.entries.iter().chain(&made.temporary) {
        match api.remove_access(cidr).await {
            Ok(()) => undone.push(cidr.clone()),
            Err(e) => ctx.operator.error_line(&e.to_string()),
        }
    }
    let _ = ctx.update(|s| {
        s.atlas_made = None;
        // The app's password in the secret belongs to a user that is gone: the next run
        // makes both again.
        s.secret_arn = None;
        drop(s.steps.remove(&StepId::Secret));
    });
    ctx.operator.notice(&format!(
        "{why}: removed from Atlas what this migration made ({}); `efs2atlas resume` makes it again",
        undone.join(", ")
    ));
}
