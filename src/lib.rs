//! efs2atlas: move an app's MongoDB from a container on ECS (data on EFS) to MongoDB Atlas.
//!
//! Layers point one way (checked by `tests/it/shape.rs`):
//! [`cli`] (flags, the terminal) → [`commands`] → [`engine`] (plan, steps, runner, journal)
//! → adapters ([`mongo`], [`atlas`], [`discover`], [`deploy`], [`cleanup`], [`fargate`], [`ecr`],
//! [`taskdef`], [`aws`]) →
//! shared core ([`world`], [`uri`], [`secret`], [`envmap`], [`units`], [`cancel`], [`watch`],
//! [`error`]).

pub mod atlas;
pub mod aws;
pub mod cancel;
pub mod cleanup;
pub mod cli;
pub mod commands;
pub mod deploy;
pub mod discover;
pub mod ecr;
pub mod engine;
pub mod envmap;
pub mod error;
pub mod fargate;
pub mod mongo;
pub mod secret;
pub mod taskdef;
pub mod units;
pub mod uri;
pub mod watch;
pub mod world;
