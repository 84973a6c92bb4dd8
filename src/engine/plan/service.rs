//! The service's own state: active, exactly one mongo task, no deployment under way.

use crate::engine::plan::model::{Finding, finding};
use crate::world::World;

/// Blockers about the service itself; `mongo` names the mongo container.
pub fn findings(world: &World, mongo: &str, blockers: &mut Vec<Finding>) {
    let svc = &world.service;
    if svc.status != "ACTIVE" {
        blockers.push(finding(
            "service-not-active",
            &svc.arn,
            format!("service {} is {}, not ACTIVE", svc.name, svc.status),
        ));
    }
    // One source, and only one: each task runs its own mongod on the same EFS.
    if svc.desired_count != 1 || svc.running_count != 1 {
        let scale = format!(
            "scale it to exactly one task (aws ecs update-service --cluster {} --service {} --desired-count 1), wait until it is steady (aws ecs wait services-stable), and run again",
            svc.cluster, svc.name
        );
        let message = if svc.running_count == 0 && svc.desired_count <= 1 {
            format!(
                "service {} runs no task (desired {}, running 0): there is no mongod to copy from; {scale}",
                svc.name, svc.desired_count
            )
        } else {
            format!(
                "service {} runs {} tasks with container {} (desired {}): several mongods on one EFS, so which one holds the data, and is it intact? {scale}",
                svc.name, svc.running_count, mongo, svc.desired_count
            )
        };
        blockers.push(finding("not-one-source", &svc.arn, message));
    }
    if svc.deployments.len() > 1 {
        blockers.push(finding(
            "deployment-in-progress",
            &svc.arn,
            format!(
                "service {} has {} deployments in progress; wait until it is steady (aws ecs wait services-stable) and run again",
                svc.name,
                svc.deployments.len()
            ),
        ));
    }
}
