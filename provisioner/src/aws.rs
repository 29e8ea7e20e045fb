//! AWS SDK configuration, resolved the way the AWS CLI users expect.
//!
//! Each option given explicitly wins; otherwise the SDK's standard chains apply:
//! region from `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile, endpoint from
//! `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`), profile from `AWS_PROFILE`,
//! credentials from the environment, the profile (SSO, `credential_process`), web
//! identity, ECS or IMDS.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

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
/// rustls with the ring crypto provider and the platform's trusted roots.
pub async fn sdk_config(options: &AwsOptions) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
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
}
