//! The runner task's image in the plan: none given, or not in this account's ECR where its
//! name says it is, blocks (the task would get as far as starting and fail at the pull,
//! minutes in); an image elsewhere is not checked, and the plan says so.

use crate::ecr::ImageCheck;
use crate::engine::plan::model::{Finding, finding};
use crate::engine::remote::resources::RunnerState;
use crate::world::World;

/// The repository the commands create and push to.
const REPOSITORY: &str = "efs2atlas";

/// Blockers for a missing image, and what was not checked.
pub fn findings(
    world: &World,
    r: &RunnerState,
    blockers: &mut Vec<Finding>,
    unchecked: &mut Vec<String>,
) {
    let image = &r.image.image;
    match &r.image_check {
        None | Some(ImageCheck::Exists) => {}
        Some(ImageCheck::Missing) => {
            let ecr = suggested(world);
            blockers.push(finding(
                "runner-image-missing",
                "--runner-image",
                format!(
                    "--runner ecs needs the efs2atlas runner image in a registry its task can pull from, and none was given (--runner-image, the stage key runner_image or EFS2ATLAS_RUNNER_IMAGE): build it and push it to this account's ECR with the commands below, then pass --runner-image {ecr}{}",
                    commands(&ecr, REPOSITORY, &world.region, true)
                ),
            ));
        }
        Some(ImageCheck::NotFound {
            reason,
            no_repository,
        }) => {
            let (repo, region) = crate::ecr::parse(image)
                .map(|i| (i.repository, i.region))
                .unwrap_or_else(|| (REPOSITORY.into(), world.region.clone()));
            blockers.push(finding(
                "runner-image-not-found",
                image.clone(),
                format!(
                    "the runner image {image} is not there ({reason}): the runner task would fail at its pull; push it, then plan again{}",
                    commands(image, &repo, &region, *no_repository)
                ),
            ));
        }
        Some(ImageCheck::NotChecked { reason }) => unchecked.push(format!(
            "the runner image {image} ({reason}): the runner task's pull checks it when it starts"
        )),
    }
}

/// Where the image would be in this account's ECR: `ACCOUNT.dkr.ecr.REGION.amazonaws.com/
/// efs2atlas:VERSION` (`.com.cn` in the China regions).
pub fn suggested(world: &World) -> String {
    let cn = if world.region.starts_with("cn-") {
        ".cn"
    } else {
        ""
    };
    format!(
        "{}.dkr.ecr.{}.amazonaws.com{cn}/{REPOSITORY}:{}",
        world.account,
        world.region,
        env!("CARGO_PKG_VERSION")
    )
}

/// The commands that build `image`, make its repository (when it is missing) and push it,
/// one per line.
fn commands(image: &str, repository: &str, region: &str, create: bool) -> String {
    let mut lines = vec![format!("scripts/image {image}")];
    if create {
        lines.push(format!(
            "aws ecr create-repository --repository-name {repository} --region {region}"
        ));
    }
    lines.push(format!("docker push {image}"));
    lines.iter().map(|l| format!("\n{l}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fargate::RunnerImage;

    fn runner(image: &str, check: ImageCheck) -> RunnerState {
        RunnerState {
            image: RunnerImage {
                image: image.into(),
                ..RunnerImage::default()
            },
            image_check: Some(check),
            ..RunnerState::default()
        }
    }

    fn world() -> World {
        World {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            ..World::default()
        }
    }

    #[test]
    fn no_image_blocks_with_the_three_commands_for_this_account() {
        let (mut b, mut u) = (Vec::new(), Vec::new());
        findings(&world(), &runner("", ImageCheck::Missing), &mut b, &mut u);
        assert_eq!(b.len(), 1);
        let img = format!(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/efs2atlas:{}",
            env!("CARGO_PKG_VERSION")
        );
        let lines: Vec<&str> = b[0].message.lines().collect();
        assert_eq!(
            lines[1..],
            [
                format!("scripts/image {img}"),
                "aws ecr create-repository --repository-name efs2atlas --region eu-west-1".into(),
                format!("docker push {img}"),
            ]
        );
        assert!(lines[0].ends_with(&format!("pass --runner-image {img}")));
        assert!(u.is_empty());
    }

    #[test]
    fn an_image_missing_from_its_repository_needs_no_new_repository() {
        let image = "123456789012.dkr.ecr.us-east-2.amazonaws.com/team/runner:2";
        let check = ImageCheck::NotFound {
            reason: "no such tag".into(),
            no_repository: false,
        };
        let (mut b, mut u) = (Vec::new(), Vec::new());
        findings(&world(), &runner(image, check), &mut b, &mut u);
        assert_eq!(b[0].code, "runner-image-not-found");
        assert!(!b[0].message.contains("create-repository"));
        assert!(b[0].message.ends_with(&format!("docker push {image}")));
        let check = ImageCheck::NotFound {
            reason: "no such repository".into(),
            no_repository: true,
        };
        let mut b = Vec::new();
        findings(&world(), &runner(image, check), &mut b, &mut u);
        assert!(b[0].message.contains(
            "aws ecr create-repository --repository-name team/runner --region us-east-2"
        ));
        let elsewhere = ImageCheck::NotChecked {
            reason: "another registry".into(),
        };
        let mut b = Vec::new();
        findings(&world(), &runner("me/runner:1", elsewhere), &mut b, &mut u);
        assert!(b.is_empty());
        assert!(u[0].contains("me/runner:1") && u[0].contains("another registry"));
    }
}
