//! Where the Atlas credentials go: a Secrets Manager secret the execution role may read,
//! or plain env vars (warned about).

use crate::engine::options::{CredentialMode, PlanOptions};
use crate::engine::plan::model::{Finding, finding};
use crate::taskdef::EnvAssignment;
use crate::world::World;

/// The name of the Secrets Manager secret for a service.
pub fn secret_name(cluster: &str, service: &str) -> String {
    format!("efs2atlas/{cluster}/{service}")
}

/// The secret's name when the credentials go to Secrets Manager; findings on the way.
pub fn secret(
    world: &World,
    opts: &PlanOptions,
    assignments: &[EnvAssignment],
    blockers: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> Option<String> {
    let td = &world.task_definition;
    let svc = &world.service;
    let any_sensitive = assignments.iter().any(|a| a.sensitive);
    let use_secret = opts.credentials == CredentialMode::SecretsManager && any_sensitive;
    if use_secret && td.execution_role_arn.is_none() {
        blockers.push(finding(
            "no-execution-role",
            &td.arn,
            "the task definition has no execution role, so it cannot read a Secrets Manager secret: add an execution role to the task definition, or pass --credentials env (the password is then visible in the task definition)",
        ));
    }
    if opts.credentials == CredentialMode::Env && any_sensitive {
        warnings.push(finding(
            "credentials-in-env",
            &td.family,
            "--credentials env: the Atlas password will be stored in plain text in the task definition, visible to anyone who can describe it",
        ));
    }
    use_secret.then(|| secret_name(&svc.cluster, &svc.name))
}
