//! efs2atlas: move an app's MongoDB from a container on ECS (data on EFS) to MongoDB Atlas.
//!
//! Data flows one way: [`cli`] → [`discover`] → [`plan`] → steps. Only [`ui`] talks to the
//! terminal.

pub mod app;
pub mod aws;
pub mod cancel;
pub mod cleanup;
pub mod cli;
pub mod deploy;
pub mod discover;
pub mod envmap;
pub mod error;
pub mod journal;
pub mod migrate;
pub mod mongo;
pub mod plan;
pub mod secret;
pub mod taskdef;
pub mod ui;
pub mod uri;
pub mod world;
