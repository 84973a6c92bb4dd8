//! How the engine asks for decisions and reports progress without knowing who answers:
//! the CLI implements [`Operator`] on the terminal (`--yes`, no-TTY refusal, bars); tests or a
//! remote runner can implement it otherwise.

use crate::deploy::DeployObserver;
use crate::engine::plan::model::Plan;
use crate::engine::step::{StepId, StepStatus};
use crate::error::{Error, Result};
use crate::mongo::observe::Observer;
use crate::mongo::verify::VerifyReport;
use crate::world::World;

/// Progress of one data step (bars) or one wait (a spinner).
pub trait Progress: Observer + DeployObserver {
    /// The step is over: clear what was drawn.
    fn done(&self);
}

/// What the operator typed at a [`Operator::type_to_confirm`] question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed {
    /// The expected text (or `--yes`).
    Confirmed,
    /// Nothing: keep it for now.
    Nothing,
    /// Something else (a typo, another id).
    Other,
}

/// The one who runs the migration.
pub trait Operator: Send + Sync {
    /// A yes/no question; `Ok(false)` is "no". Refuses (an error) when it cannot be asked.
    fn confirm(&self, question: &str) -> Result<bool>;
    /// Asks the operator to type `expected` to go ahead with something irreversible.
    fn type_to_confirm(&self, question: &str, expected: &str) -> Result<Typed>;
    /// A line of information (never secrets).
    fn notice(&self, message: &str);
    /// A failure worth a line of its own after other output.
    fn error_line(&self, message: &str);
    /// What an irreversible action will destroy, shown right above its question.
    fn danger(&self, message: &str) {
        self.notice(message);
    }
    /// Shows the plan before the first question (the terminal prints it unless `--json`);
    /// `dry_run` when nothing follows it.
    fn show_plan(&self, plan: &Plan, world: &World, dry_run: bool);
    /// Shows a verification's differences.
    fn show_verify(&self, report: &VerifyReport);
    /// Progress for `label` over `total_docs` documents.
    fn bars(&self, label: &str, total_docs: u64) -> Box<dyn Progress>;
    /// Progress for a wait with no count (a deployment).
    fn spinner(&self, label: &str) -> Box<dyn Progress>;
    /// True when every question is answered yes (`--yes`): a runner task may then accept the
    /// questions it cannot ask.
    fn assumes_yes(&self) -> bool {
        false
    }
    /// A step ended without an error (journaled already); a runner task reports it.
    fn step_ended(&self, _step: StepId, _status: StepStatus, _note: &str) {}
}

/// A question asked before anything changed: Ctrl-C at it says so (and exits "interrupted").
pub fn ask_first(op: &dyn Operator, question: &str) -> Result<bool> {
    op.confirm(question).map_err(|e| {
        if e.is_interrupted() {
            Error::interrupted("interrupted at the question; nothing was changed")
        } else {
            e
        }
    })
}
