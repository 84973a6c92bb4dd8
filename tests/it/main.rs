//! Integration tests against the real local services (moto, nx-27017), one binary.

mod common;
#[path = "../support/world.rs"]
mod world;

mod cleanup;
mod data;
mod ecs;
mod migrate;
mod plan;
#[path = "../support/proxy.rs"]
mod proxy;
#[path = "../support/tcpfault.rs"]
mod tcpfault;
