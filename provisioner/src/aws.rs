//! AWS SDK configuration, resolved the way the AWS CLI users expect.
//!
//! Each option given explicitly wins; otherwise the SDK's standard chains apply:
//! region from `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile, endpoint from
//! `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`), profile from `AWS_PROFILE`,
//! credentials from the environment, the profile (SSO, `credential_process`), web
//! identity, ECS or IMDS.

use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Where and as whom to call AWS. Usable as `#[command(flatten)]` in a clap command.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AwsOptions {
    /// AWS region (default: AWS_REGION, then the profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
    /// Send every AWS call to this URL, e.g. a LocalStack endpoint
    /// (default: AWS_ENDPOINT_URL, then the profile's endpoint_url).
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

/// Loads the shared SDK configuration for `options`. It uses an HTTPS client on
/// rustls with the ring crypto provider and the platform's trusted roots, and retries
/// throttled and transient failures with exponential backoff and jitter (up to 10
/// attempts). Not the adaptive mode: its client-side rate limiter holds every later
/// call to a throttled service for up to 20 s.
pub async fn sdk_config(options: &AwsOptions) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(10));
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// A failed AWS call: the operation, AWS's error code and message, and a hint on what
/// to do. Modules match on `code` (e.g. `InvalidGroup.NotFound`) by downcasting.
#[derive(Debug)]
pub struct AwsError {
    pub operation: String,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    /// The code of `err` when it is an `AwsError` (anywhere in its chain).
    pub fn code_of(err: &anyhow::Error) -> Option<&str> {
        err.chain()
            .find_map(|e| e.downcast_ref::<AwsError>())
            .and_then(|e| e.code.as_deref())
    }

    fn hint(&self) -> Option<&'static str> {
        let code = self.code.as_deref().unwrap_or("");
        let text = self.message.as_str();
        if text.contains("no providers in chain provided credentials")
            || text.contains("the credentials provider was not enabled")
            || matches!(
                code,
                "InvalidClientTokenId"
                    | "UnrecognizedClientException"
                    | "AuthFailure"
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
            )
        {
            Some("check the AWS credentials: set AWS_PROFILE or pass --profile, run `aws sso login` if the profile uses SSO, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        } else if text.contains("dns error") || text.contains("failed to lookup address") {
            Some("the endpoint does not resolve: is --region a real region (e.g. us-east-1)? With LocalStack, pass --endpoint-url or set AWS_ENDPOINT_URL")
        } else if text.contains("Connection refused") || text.contains("connection refused") {
            Some("nothing listens at the endpoint: with LocalStack, start it (localstack/start) or fix --endpoint-url")
        } else if matches!(
            code,
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "SlowDown"
        ) {
            Some("AWS kept throttling the calls after 10 attempts with backoff; run the command again in a minute (it resumes where it stopped)")
        } else if code.ends_with("LimitExceeded") || code.contains("QuotaExceeded") {
            Some("an AWS quota is reached: delete unused resources or request an increase in the Service Quotas console, then run the command again")
        } else if matches!(
            code,
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation"
        ) {
            Some("the credentials lack a permission this step needs; grant it to the role or user and run again")
        } else {
            None
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = self.hint() {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// `.aws("create vpc")?` on an SDK call: an `AwsError` that names the operation.
pub trait AwsResultExt<T> {
    fn aws(self, operation: impl fmt::Display) -> anyhow::Result<T>;
}

impl<T, E, R> AwsResultExt<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    fn aws(self, operation: impl fmt::Display) -> anyhow::Result<T> {
        self.map_err(|err| {
            let code = err.code().map(str::to_string);
            let message = match (&err, err.message()) {
                (SdkError::ServiceError(_), Some(m)) => m.to_string(),
                _ => DisplayErrorContext(&err).to_string(),
            };
            anyhow::Error::new(AwsError {
                operation: operation.to_string(),
                code,
                message,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        aws: AwsOptions,
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from([
            "x",
            "--region",
            "eu-west-1",
            "--profile",
            "dev",
            "--endpoint-url",
            "http://127.0.0.1:4566",
        ]);
        assert_eq!(cli.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(cli.aws.profile.as_deref(), Some("dev"));
        assert_eq!(
            cli.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(Cli::parse_from(["x"]).aws, AwsOptions::default());
    }

    #[tokio::test]
    async fn explicit_options_win() {
        let options = AwsOptions {
            region: Some("eu-central-1".into()),
            profile: None,
            endpoint_url: Some("http://127.0.0.1:4566".into()),
        };
        let config = sdk_config(&options).await;
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-central-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert!(config.http_client().is_some());
    }

    #[test]
    fn errors_carry_a_hint() {
        let e = AwsError {
            operation: "create vpc".into(),
            code: Some("VpcLimitExceeded".into()),
            message: "The maximum number of VPCs has been reached.".into(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("create vpc: VpcLimitExceeded: The maximum"),
            "{text}"
        );
        assert!(text.contains("Service Quotas"), "{text}");
        let e = AwsError {
            operation: "describe availability zones".into(),
            code: None,
            message: "dispatch failure: dns error: failed to lookup address information".into(),
        };
        assert!(e.to_string().contains("is --region a real region"));
        let e = AwsError {
            operation: "x".into(),
            code: Some("RequestLimitExceeded".into()),
            message: "Request limit exceeded.".into(),
        };
        assert!(e.to_string().contains("throttling"), "{e}");
        let any = anyhow::Error::new(e).context("converging");
        assert_eq!(AwsError::code_of(&any), Some("RequestLimitExceeded"));
    }
}
