//! The engine: the plan, the steps and the runner that carries them out, the journal. It
//! never reads the terminal: decisions and progress go through [`operator::Operator`].

pub mod context;
pub mod journal;
pub mod lock;
pub mod operator;
pub mod options;
pub mod plan;
pub mod remote;
pub mod report;
pub mod runner;
pub mod state;
pub mod step;
pub mod steps;
