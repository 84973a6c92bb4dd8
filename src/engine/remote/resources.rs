//! The runner's part of the plan and the journal: where it runs, and the temporary resources
//! made for it so far (plain data; `setup` makes and removes them).

use serde::{Deserialize, Serialize};

use crate::ecr::ImageCheck;
use crate::fargate::{IngressRule, Placement, RunnerImage};

/// The runner as the plan shows it (and the journal keeps it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerState {
    /// Image, size and execution role.
    pub image: RunnerImage,
    /// Whether the plan found the image (in this account's ECR), and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_check: Option<ImageCheck>,
    /// Cluster, subnets, security groups.
    pub placement: Placement,
    /// The mongo container's port.
    pub port: u16,
    /// The rule efs2atlas adds for the runner, when the source's groups do not admit it.
    pub temporary_rule: Option<IngressRule>,
    /// The log group.
    pub log_group: String,
    /// The temporary secret's name.
    pub secret_name: String,
    /// The temporary secret, once made.
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// The execution role's inline policy for it, once made.
    #[serde(default)]
    pub policy: Option<String>,
    /// The runner's task definition, once registered.
    #[serde(default)]
    pub task_definition: Option<String>,
    /// True once the temporary rule was added.
    #[serde(default)]
    pub rule_added: bool,
    /// The runner task this migration follows.
    #[serde(default)]
    pub task: Option<String>,
    /// The last event read from it.
    #[serde(default)]
    pub seq: u64,
}
