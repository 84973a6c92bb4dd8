//! The runner task's protocol: one JSON event per line on its stdout, read back by the
//! controller from CloudWatch Logs. Every event line carries `"efs2atlas_event": SEQ` so
//! other lines in the stream (log warnings) are told apart and replays are skipped by `seq`.
//! Events never carry a secret: journals are redacted and messages are phrased for the user.

use serde::{Deserialize, Serialize};

use crate::engine::step::{StepId, StepStatus};

use crate::error::{Error, Kind};

/// The protocol's version; a controller refuses a runner that speaks another.
/// 2: the `wire` event (bytes a second to the target).
pub const VERSION: u32 = 2;

/// What the controller tells a runner to do (the temporary secret's value).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spec {
    /// The protocol the controller speaks.
    pub protocol: u32,
    /// How the runner reaches the source (with credentials).
    pub source: String,
    /// Where it writes (with credentials).
    pub target: String,
    /// The migration's journal as the controller has it.
    pub journal: serde_json::Value,
    /// The steps to run, in order.
    pub steps: Vec<StepId>,
    /// After the steps, hold the freeze and report the fence until stopped.
    pub hold: bool,
    /// Release the source's write lock, then end.
    pub unfreeze: bool,
    /// Answer yes to questions (`--yes` on the controller); otherwise a question refuses.
    pub yes: bool,
    /// Hold at most this long.
    pub hold_secs: u64,
    /// AWS account and region, for the notices.
    pub account: String,
    /// Region.
    pub region: String,
}

/// One thing the runner reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The runner started: its version and the protocol's.
    Hello {
        /// efs2atlas version.
        version: String,
        /// [`VERSION`].
        protocol: u32,
    },
    /// A line of information for the operator.
    Notice {
        /// The text.
        message: String,
    },
    /// A failure worth a line of its own.
    ErrorLine {
        /// The text.
        message: String,
    },
    /// A set of progress bars opens.
    Bars {
        /// Which set (the runner numbers them).
        id: u32,
        /// What they count (copy, sync, verify, ...).
        label: String,
        /// Documents expected.
        total: u64,
    },
    /// A collection starts in set `id`.
    Start {
        /// The set.
        id: u32,
        /// Namespace.
        ns: String,
        /// Documents expected.
        estimated: u64,
        /// Documents already done by an earlier run.
        done_docs: u64,
        /// Bytes already done by an earlier run.
        done_bytes: u64,
    },
    /// Documents acknowledged since the last progress event of `ns`.
    Progress {
        /// The set.
        id: u32,
        /// Namespace.
        ns: String,
        /// Documents.
        docs: u64,
        /// Bytes.
        bytes: u64,
    },
    /// Bytes a second reaching the target on the wire lately, in set `id`.
    Wire {
        /// The set.
        id: u32,
        /// Bytes a second, compressed as they crossed.
        to_target_per_sec: f64,
    },
    /// A collection is finished.
    Finish {
        /// The set.
        id: u32,
        /// Namespace.
        ns: String,
    },
    /// A set of bars is over.
    BarsDone {
        /// The set.
        id: u32,
    },
    /// The runner's whole journal (redacted like every journal), after a change.
    Journal {
        /// The journal as JSON.
        journal: serde_json::Value,
    },
    /// A step ended without an error.
    StepEnded {
        /// Which.
        step: StepId,
        /// Done, skipped or pending.
        status: StepStatus,
        /// Its one-line note.
        note: String,
    },
    /// While holding the freeze: whether it still holds.
    Fence {
        /// Same source process, still locked.
        held: bool,
        /// Why not, when it does not.
        why: String,
    },
    /// The source was unlocked.
    Unlocked,
    /// The last event: how the runner ends.
    End {
        /// Its exit code (0 done; the codes of the README otherwise).
        code: i32,
        /// The error's message, when it failed.
        message: String,
    },
}

/// An event as one line: `{"efs2atlas_event": SEQ, "event": ..., ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Sequence number, from 1.
    pub efs2atlas_event: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

impl Line {
    /// Parses one log line; `None` for a line that is not an event.
    pub fn parse(text: &str) -> Option<Line> {
        let t = text.trim();
        if !t.starts_with('{') || !t.contains("\"efs2atlas_event\"") {
            return None;
        }
        serde_json::from_str(t).ok()
    }

    /// The line as written.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The error an `End` event reports, with the kind its exit code stands for.
pub fn end_error(code: i32, message: &str) -> Error {
    use crate::error::exit;
    if code == exit::INTERRUPTED {
        // Its own message names its own journal; the controller says where to resume.
        return Error::interrupted("the runner task stopped at a batch boundary");
    }
    let kind = match code {
        exit::USAGE => Kind::Usage,
        exit::REFUSED => Kind::Refused,
        exit::MISMATCH => Kind::Mismatch,
        exit::INTERRUPTED => Kind::Interrupted,
        _ => Kind::Other,
    };
    Error::new(kind, format!("the runner task: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_other_lines_are_ignored() {
        let l = Line {
            efs2atlas_event: 7,
            event: Event::StepEnded {
                step: StepId::Copy,
                status: StepStatus::Done,
                note: "copied".into(),
            },
        };
        let text = l.to_text();
        assert!(
            text.starts_with("{\"efs2atlas_event\":7,\"event\":\"step-ended\""),
            "{text}"
        );
        assert_eq!(Line::parse(&text), Some(l));
        assert_eq!(Line::parse("WARN something"), None);
        assert_eq!(Line::parse("{\"other\": 1}"), None);
        let e = end_error(3, "target not empty");
        assert_eq!(e.kind, Kind::Refused);
        assert_eq!(end_error(5, "x").kind, Kind::Interrupted);
    }
}
