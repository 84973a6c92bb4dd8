//! Integration tests against the real local services (moto, real mongod 6.0.5), one binary.

mod atlas;
#[path = "../support/atlasapi.rs"]
mod atlasapi;
mod atlasmigrate;
mod common;
mod credentials;
#[path = "../support/world.rs"]
mod world;

mod awsfaults;
mod badjournal;
mod chaos;
mod cleanup;
mod cli;
mod data;
mod deadends;
mod ecs;
mod errors;
mod failover;
mod fakefargate;
mod fence;
mod fidelity;
mod ledger;
mod matrix;
mod migrate;
#[path = "../support/mongod.rs"]
mod mongod;
mod parts;
mod plan;
mod prompts;
mod props;
#[path = "../support/proxy.rs"]
mod proxy;
mod pty;
#[path = "../support/rich.rs"]
mod rich;
mod runner;
mod shape;
#[path = "../support/shaper.rs"]
mod shaper;
#[path = "../support/sharedtier.rs"]
mod sharedtier;
mod stuck;
mod sync;
#[path = "../support/tcpfault.rs"]
mod tcpfault;
mod tiers;
mod wan;
mod wire;

/// The migrate steps, in order (as the journal names them): the engine's one list.
pub fn migrate_steps() -> &'static [&'static str] {
    let order = efs2atlas::engine::steps::order(efs2atlas::engine::options::Strategy::TwoPass);
    order.iter().map(|s| s.name()).collect::<Vec<_>>().leak()
}
