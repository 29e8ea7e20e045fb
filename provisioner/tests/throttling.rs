//! The provisioner retries AWS throttling with backoff: the kit's fault injection
//! (`/_kit/faults`, see localstack/README.md) throttles a call the provisioner makes
//! three times, and `provisioner status` still gets through. Each rule matches only
//! this test's own access key, so tests running beside it on the kit are not throttled.

mod common;

use std::process::{Command, Output, Stdio};

use common::{endpoint, stack_name};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";

/// Calls `/_kit/faults{path}` with curl; returns the JSON answer.
fn faults(method: &str, path: &str, body: Option<&Value>) -> Value {
    let url = format!("{}/_kit/faults{path}", endpoint());
    let mut curl = Command::new("curl");
    curl.args(["-fsS", "--max-time", "10", "-X", method, &url]);
    if let Some(body) = body {
        curl.args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    let out = curl.output().expect("curl runs");
    assert!(
        out.status.success(),
        "{method} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

/// Adds a rule failing `count` calls of `service` `operation` in us-east-1 signed with
/// `access_key`; returns its id.
fn add_rule(service: &str, operation: &str, error: &str, access_key: &str) -> u64 {
    let rule = faults(
        "POST",
        "",
        Some(&json!({
            "service": service, "operation": operation, "region": REGION,
            "access_key": access_key, "error": error, "count": 3,
        })),
    );
    rule["id"].as_u64().expect("rule id")
}

/// The rule's `hits`, and removes it.
fn hits_and_remove(id: u64) -> u64 {
    let rules = faults("GET", "", None);
    let rule = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("rule {id} listed: {rules}"))
        .clone();
    faults("DELETE", &format!("/{id}"), None);
    assert_eq!(rule["remaining"], 0, "every fault consumed: {rule}");
    rule["hits"].as_u64().expect("hits")
}

/// `provisioner status --region us-east-1 --stack <stack>` on the kit as `access_key`.
fn status(stack: &str, access_key: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["status", "--region", REGION, "--stack", stack])
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .stdin(Stdio::null())
        .output()
        .expect("provisioner runs")
}

fn assert_not_throttled(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Throttling") && !stderr.contains("Rate exceeded"),
        "status gave up on throttling:\n{stderr}"
    );
    assert!(out.status.success(), "status failed:\n{stderr}");
}

/// A key shorter than 20 characters: LocalStack maps it to account 000000000000, as `test`.
fn access_key(stack: &str, case: &str) -> String {
    let key = format!("{stack}-{case}");
    assert!(key.len() < 20, "{key} is too long");
    key
}

#[test]
fn status_retries_throttled_sts_get_caller_identity() {
    let stack = stack_name("thr");
    let key = access_key(&stack, "sts");
    let id = add_rule("sts", "GetCallerIdentity", "Throttling", &key);
    // The preflight call comes first.
    let out = status(&stack, &key);
    assert_not_throttled(&out);
    assert_eq!(hits_and_remove(id), 3);
}

#[test]
fn status_retries_throttled_ec2_describe_availability_zones() {
    let stack = stack_name("thr");
    let key = access_key(&stack, "ec2");
    let id = add_rule(
        "ec2",
        "DescribeAvailabilityZones",
        "ThrottlingException",
        &key,
    );
    let out = status(&stack, &key);
    assert_not_throttled(&out);
    assert_eq!(hits_and_remove(id), 3);
}
