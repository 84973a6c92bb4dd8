//! AWS SDK clients from the standard credential chain, and AWS errors turned into sentences.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::{Error, Result};

/// One set of clients sharing a configuration.
#[derive(Clone, Debug)]
pub struct Aws {
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// EFS.
    pub efs: aws_sdk_efs::Client,
    /// EC2 (security groups, network interfaces).
    pub ec2: aws_sdk_ec2::Client,
    /// STS (who am I).
    pub sts: aws_sdk_sts::Client,
    /// Secrets Manager (Atlas credentials).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// IAM (execution role policy).
    pub iam: aws_sdk_iam::Client,
    /// CloudWatch Logs (the runner task's output).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// ECR (is the runner image there?).
    pub ecr: aws_sdk_ecr::Client,
    /// The region every call goes to.
    pub region: String,
}

/// Where the AWS settings come from: flags first, then the standard chain.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--aws-timeout`: one attempt of one call (None: 60 s).
    pub attempt_timeout: Option<Duration>,
}

impl Aws {
    /// Loads configuration the way every AWS tool does (env, profile, SSO, instance role);
    /// `AWS_ENDPOINT_URL` is honoured by the SDK itself.
    pub async fn load(opts: &AwsOptions) -> Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(6))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(
                        opts.attempt_timeout.unwrap_or(Duration::from_secs(60)),
                    )
                    .build(),
            );
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let conf = loader.load().await;
        let region = conf.region().map(|r| r.to_string()).filter(|r| !r.trim().is_empty()).ok_or_else(|| {
            Error::usage("no AWS region is configured: pass --region REGION or set AWS_REGION (or region= in your AWS profile)")
        })?;
        Ok(Aws::from_conf(&conf, region))
    }

    /// Clients for an already-loaded configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig, region: String) -> Aws {
        Aws {
            ecs: aws_sdk_ecs::Client::new(conf),
            efs: aws_sdk_efs::Client::new(conf),
            ec2: aws_sdk_ec2::Client::new(conf),
            sts: aws_sdk_sts::Client::new(conf),
            secrets: aws_sdk_secretsmanager::Client::new(conf),
            iam: aws_sdk_iam::Client::new(conf),
            logs: aws_sdk_cloudwatchlogs::Client::new(conf),
            ecr: aws_sdk_ecr::Client::new(conf),
            region,
        }
    }
}

/// The endpoint the SDK talks to, for messages.
fn endpoint_hint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) if !e.is_empty() => format!("the AWS endpoint {e} (from AWS_ENDPOINT_URL)"),
        _ => "the AWS API endpoint".into(),
    }
}

/// Turns an SDK error into a one-sentence [`Error`], naming the operation and resource.
pub fn aws_error<E, R>(op: &str, resource: Option<&str>, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => "the service returned an error without a code".into(),
            }
        }
        SdkError::TimeoutError(_) => format!("timed out waiting for {}", endpoint_hint()),
        _ => {
            let chain = format!("{}", DisplayErrorContext(&err));
            let cause = first_cause(&err)
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches([':', '.'])
                .to_string();
            let lower = chain.to_ascii_lowercase();
            if lower.contains("credential") {
                return Error::usage(format!(
                    "no usable AWS credentials for {op} (tried env, profile, SSO, web identity, container and instance roles): set AWS_PROFILE or pass --profile, export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
                ));
            }
            if lower.contains("connection refused")
                || lower.contains("dns error")
                || lower.contains("tcp connect")
                || lower.contains("connect error")
                || lower.contains("io error")
            {
                format!(
                    "could not reach {}: {}; check AWS_ENDPOINT_URL, --region and the network",
                    endpoint_hint(),
                    cause
                )
            } else if lower.contains("timeout") || lower.contains("timed out") {
                format!("timed out waiting for {}", endpoint_hint())
            } else {
                cause
            }
        }
    };
    Error::aws(op.to_string(), resource.map(str::to_string), message)
}

/// The innermost, most specific message of an error's source chain (never Debug output).
fn first_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.trim().is_empty() {
            last = text;
        }
        cur = e.source();
    }
    last
}

/// The error code of an SDK error, if the service sent one.
pub fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}
