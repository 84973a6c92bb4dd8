//! Integration tests against the real local services (moto, nx-27017), one binary.

mod common;
#[path = "../support/world.rs"]
mod world;

mod data;
mod plan;
