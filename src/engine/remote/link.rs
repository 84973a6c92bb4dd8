//! The runner a controller follows: plain state, kept in the context between steps.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::engine::operator::Progress;
use crate::engine::remote::event::Line;
use crate::engine::step::StepId;
use crate::fargate;
use crate::uri::MongoUri;

/// The controller's half: how to reach the data from inside the VPC, and the runner it follows.
pub struct Remote {
    /// The source as the operator gave it (a loopback host means the mongo task).
    pub source: MongoUri,
    /// Where the runner writes.
    pub target: MongoUri,
    /// `--yes`: the runner may accept its questions.
    pub yes: bool,
    pub(crate) live: Option<Live>,
}

impl Remote {
    /// A controller that has started nothing yet.
    pub fn new(source: MongoUri, target: MongoUri, yes: bool) -> Remote {
        Remote {
            source,
            target,
            yes,
            live: None,
        }
    }
}

/// How long a runner's last lines may land in CloudWatch Logs after ECS says it stopped
/// (awslogs ships them, CloudWatch ingests them).
pub(crate) const LOG_LAG: std::time::Duration = std::time::Duration::from_secs(15);

/// A runner task being followed.
pub(crate) struct Live {
    pub(crate) task: String,
    pub(crate) stream: String,
    pub(crate) token: Option<String>,
    pub(crate) queue: VecDeque<Line>,
    pub(crate) seq: u64,
    pub(crate) bars: HashMap<u32, Box<dyn Progress>>,
    pub(crate) fence: Option<(Instant, bool, String)>,
    pub(crate) unlocked: bool,
    pub(crate) ended: Option<(i32, String)>,
    pub(crate) checked: Instant,
    pub(crate) stopped: Option<fargate::TaskState>,
    /// When it was seen stopped, and how long its last log lines may still take to land.
    pub(crate) stopped_at: Option<Instant>,
    pub(crate) log_lag: std::time::Duration,
    /// True once any of its lines was read (a task that never ran has none to wait for).
    pub(crate) heard: bool,
    pub(crate) stop_sent: Option<Instant>,
    /// What it was started for (one re-attached after a crash is taken as running steps).
    pub(crate) purpose: Purpose,
}

impl Live {
    pub(crate) fn new(task: String, seq: u64) -> Live {
        Live {
            stream: fargate::log_stream(&task),
            task,
            token: None,
            queue: VecDeque::new(),
            seq,
            bars: HashMap::new(),
            fence: None,
            unlocked: false,
            ended: None,
            checked: Instant::now(),
            stopped: None,
            stopped_at: None,
            log_lag: LOG_LAG,
            heard: false,
            stop_sent: None,
            purpose: Purpose::Steps,
        }
    }
}

/// The steps a runner task carries out; everything else stays here.
pub const DATA_STEPS: [StepId; 6] = [
    StepId::Preflight,
    StepId::Copy,
    StepId::CatchUp,
    StepId::Freeze,
    StepId::Sync,
    StepId::Verify,
];

/// True for a step the runner task does.
pub fn is_remote(step: StepId) -> bool {
    DATA_STEPS.contains(&step)
}

/// What a runner is started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The unfinished data steps, then hold the freeze.
    Steps,
    /// Only hold the freeze (and report the fence).
    Hold,
    /// Release the source's lock.
    Unfreeze,
}
