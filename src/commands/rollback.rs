//! `efs2atlas rollback`: back to the revision that still had the mongo container.

use std::time::Duration;

use crate::aws::{Aws, AwsOptions};
use crate::cancel::Cancel;
use crate::commands::{Done, Output};
use crate::engine::operator::{Operator, ask_first};
use crate::error::{Error, Result, exit};

/// Returns service `service` to the last revision with its mongo container.
pub async fn rollback(
    aws: &AwsOptions,
    cluster: &str,
    service: &str,
    timeout: Duration,
    op: &dyn Operator,
) -> Result<Done> {
    let aws = Aws::load(aws).await?;
    let t = crate::deploy::rollback_target(&aws, cluster, service).await?;
    op.notice(&format!(
        "rollback: service {service} from {} back to {} (MongoDB on EFS {}). Writes the app made to Atlas since the cutover are not in the old MongoDB; they stay only in Atlas.",
        t.current,
        t.target,
        t.file_systems.join(", ")
    ));
    if !ask_first(op, &format!("Roll service {service} back to {}?", t.target))? {
        return Err(Error::refused("not confirmed; nothing was changed"));
    }
    let cancel = Cancel::new();
    cancel.on_signals();
    let spinner = op.spinner("rollback");
    let r = crate::deploy::deploy(
        &aws, cluster, service, &t.target, &t.current, timeout, &*spinner, &cancel,
    )
    .await;
    spinner.done();
    let r = r?;
    let error = (!r.ok).then(|| {
        format!(
            "the rolled-back revision did not become steady ({:?}); the service was returned to {}",
            r.wait, t.current
        )
    });
    Ok(Done {
        code: if r.ok { exit::OK } else { exit::FAILED },
        output: Output::Rollback(r),
        error,
    })
}
