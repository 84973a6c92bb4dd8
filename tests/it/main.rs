//! Integration tests against the real local services (moto, nx-27017), one binary.

mod common;
#[path = "../support/world.rs"]
mod world;

mod awsfaults;
mod badjournal;
mod chaos;
mod cleanup;
mod data;
mod ecs;
mod migrate;
mod plan;
mod props;
#[path = "../support/proxy.rs"]
mod proxy;
mod sync;
#[path = "../support/tcpfault.rs"]
mod tcpfault;

/// The migrate steps, in order (as the journal names them).
pub fn migrate_steps() -> &'static [&'static str] {
    efs2atlas::migrate::STEPS
}
