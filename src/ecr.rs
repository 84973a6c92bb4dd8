//! The runner's image in the account's ECR, read only (`ecr:DescribeImages`): is it there?
//! A runner whose image is missing gets as far as starting a Fargate task and fails at the
//! pull, minutes in; the plan says it first. An image anywhere else (another registry, another
//! account's ECR) is not looked at: its pull is the check, and the plan says so.

use aws_sdk_ecr::types::ImageIdentifier;
use serde::{Deserialize, Serialize};

use crate::aws::{Aws, aws_error, error_code};

/// How long the plan waits for ECR's answer.
const CHECK_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// What the plan found of the runner image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ImageCheck {
    /// No image was given (flag, stage key or environment).
    Missing,
    /// Found in this account's ECR.
    Exists,
    /// This account's ECR has no such repository or image.
    NotFound {
        /// Which of them is missing.
        reason: String,
        /// True when the repository itself is missing (it has to be created first).
        no_repository: bool,
    },
    /// Not looked at (another registry or account), or the look failed.
    NotChecked {
        /// Why.
        reason: String,
    },
}

/// A private ECR image name, `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY[:TAG|@DIGEST]`.
#[derive(Debug, PartialEq, Eq)]
pub struct EcrImage {
    /// The registry's account.
    pub account: String,
    /// The registry's region.
    pub region: String,
    /// The repository (may hold slashes).
    pub repository: String,
    /// The tag (`latest` when none is given, as `docker pull` does) or the digest.
    pub reference: Reference,
}

/// How an image is named within its repository.
#[derive(Debug, PartialEq, Eq)]
pub enum Reference {
    /// `:TAG`.
    Tag(String),
    /// `@sha256:…`.
    Digest(String),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => write!(f, "tagged {t}"),
            Reference::Digest(d) => write!(f, "with digest {d}"),
        }
    }
}

/// The ECR parts of `image`, or `None` when it is not a private ECR name.
pub fn parse(image: &str) -> Option<EcrImage> {
    let (registry, rest) = image.split_once('/')?;
    let mut labels = registry.split('.');
    let account = labels.next()?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if labels.next()? != "dkr" || !matches!(labels.next()?, "ecr" | "ecr-fips") {
        return None;
    }
    let region = labels.next()?.to_string();
    let domain: Vec<&str> = labels.collect();
    if domain != ["amazonaws", "com"] && domain != ["amazonaws", "com", "cn"] {
        return None;
    }
    // The registry part is gone, so a colon can only start the tag.
    let (repository, reference) = match rest.split_once('@') {
        Some((repo, digest)) => (repo, Reference::Digest(digest.to_string())),
        None => match rest.rsplit_once(':') {
            Some((repo, tag)) => (repo, Reference::Tag(tag.to_string())),
            None => (rest, Reference::Tag("latest".into())),
        },
    };
    if repository.is_empty() || region.is_empty() {
        return None;
    }
    Some(EcrImage {
        account: account.to_string(),
        region,
        repository: repository.to_string(),
        reference,
    })
}

/// Looks for `image` in the ECR of `account` (the one the run works in). Never fails: what
/// could not be learned is `NotChecked` with the reason.
pub async fn check(aws: &Aws, image: &str, account: &str) -> ImageCheck {
    let Some(img) = parse(image) else {
        return ImageCheck::NotChecked {
            reason: "it is not in an ECR registry (efs2atlas looks only in this account's ECR)"
                .into(),
        };
    };
    if img.account != account {
        return ImageCheck::NotChecked {
            reason: format!(
                "it is in account {}'s ECR, not this account's ({account})",
                img.account
            ),
        };
    }
    // The image may live in another region than the service's: ask that region's ECR.
    let client = if img.region == aws.region {
        aws.ecr.clone()
    } else {
        let conf = aws
            .ecr
            .config()
            .to_builder()
            .region(aws_config::Region::new(img.region.clone()))
            .build();
        aws_sdk_ecr::Client::from_conf(conf)
    };
    let id = match &img.reference {
        Reference::Tag(t) => ImageIdentifier::builder().image_tag(t),
        Reference::Digest(d) => ImageIdentifier::builder().image_digest(d),
    }
    .build();
    let call = client
        .describe_images()
        .registry_id(&img.account)
        .repository_name(&img.repository)
        .image_ids(id)
        .send();
    // A look the plan can do without: bounded well below the SDK's own retries.
    let Ok(out) = tokio::time::timeout(CHECK_WITHIN, call).await else {
        return ImageCheck::NotChecked {
            reason: format!(
                "ECR in {} did not answer within {}s",
                img.region,
                CHECK_WITHIN.as_secs()
            ),
        };
    };
    let missing_image = || ImageCheck::NotFound {
        reason: format!(
            "repository {} in {} has no image {}",
            img.repository, img.region, img.reference
        ),
        no_repository: false,
    };
    match out {
        Ok(o) if !o.image_details().is_empty() => ImageCheck::Exists,
        Ok(_) => missing_image(),
        Err(e) => match error_code(&e) {
            Some("ImageNotFoundException") => missing_image(),
            Some("RepositoryNotFoundException") => ImageCheck::NotFound {
                reason: format!(
                    "this account's ECR in {} has no repository {}",
                    img.region, img.repository
                ),
                no_repository: true,
            },
            _ => ImageCheck::NotChecked {
                reason: aws_error("ecr:DescribeImages", Some(&img.repository), e).message,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_names_are_recognised_and_others_are_not() {
        let i = parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/efs2atlas:0.1.0").unwrap();
        assert_eq!(
            i,
            EcrImage {
                account: "123456789012".into(),
                region: "eu-west-1".into(),
                repository: "team/efs2atlas".into(),
                reference: Reference::Tag("0.1.0".into()),
            }
        );
        let i = parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/efs2atlas").unwrap();
        assert_eq!(i.reference, Reference::Tag("latest".into()));
        let i =
            parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/efs2atlas@sha256:ab12").unwrap();
        assert_eq!(i.reference, Reference::Digest("sha256:ab12".into()));
        for other in [
            "efs2atlas:test",
            "example/efs2atlas:1",
            "public.ecr.aws/efs2atlas/efs2atlas:0.1.0",
            "docker.io/library/mongo:7",
            "12345.dkr.ecr.us-east-1.amazonaws.com/x:1",
            "123456789012.dkr.ecr.us-east-1.example.com/x:1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
