//! The LocalStack kit for the integration tests: started on first use (localstack/start
//! is idempotent), reached through `provisioner::aws::sdk_config`.

#![allow(dead_code)]

pub mod cli;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use provisioner::aws::{sdk_config, AwsOptions};

/// The kit's endpoint, starting the kit when it does not run.
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let start = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../localstack/start");
        let out = Command::new(&start)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", start.display()));
        assert!(
            out.status.success(),
            "localstack/start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("endpoint is UTF-8");
        let endpoint = stdout.lines().last().unwrap_or_default().trim().to_string();
        assert!(
            endpoint.starts_with("http://"),
            "localstack/start printed {stdout:?}"
        );
        endpoint
    })
}

/// SDK config for `region` against the kit, with the test account's static keys (the
/// LocalStack account 000000000000) so a developer's own credentials never matter.
pub async fn config(region: &str) -> SdkConfig {
    let options = AwsOptions {
        region: Some(region.to_string()),
        profile: None,
        endpoint_url: Some(endpoint().to_string()),
    };
    sdk_config(&options)
        .await
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "kit-tests",
        )))
        .build()
}

/// A name no other run or test shares: `prefix` plus a time-based suffix.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// Polls `check` every 500 ms until it yields a value, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the DB instance is `available` (and fails fast on `failed`).
pub async fn instance_available(
    rds: &aws_sdk_rds::Client,
    id: &str,
    limit: Duration,
) -> aws_sdk_rds::types::DbInstance {
    wait_for(&format!("{id} available"), limit, || async {
        let out = rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .ok()?;
        let inst = out.db_instances().first()?.clone();
        assert_ne!(inst.db_instance_status(), Some("failed"), "{id} failed");
        (inst.db_instance_status() == Some("available")).then_some(inst)
    })
    .await
}

/// A provisioner context for stack `stack` in `region` on the kit, quiet.
pub async fn ctx(
    stack: &str,
    region: &str,
    config: provisioner::spec::StackConfig,
) -> provisioner::context::Ctx {
    let spec = provisioner::spec::Spec::new(stack, region, config).expect("valid spec");
    provisioner::context::Ctx::new(
        &self::config(region).await,
        spec,
        provisioner::progress::Progress::new(true),
    )
}

/// A stack name no other run or test shares (letters and digits, at most 20).
pub fn stack_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = (nanos as u64 ^ (std::process::id() as u64) << 32) % 0xff_ffff;
    format!("{prefix}-{n:06x}")
}

/// A (decrypted) SSM parameter's value in `region`, None when it is not there.
pub async fn ssm_value(region: &str, name: &str) -> Option<String> {
    let ssm = aws_sdk_ssm::Client::new(&config(region).await);
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?;
    out.parameter()?.value().map(str::to_string)
}
