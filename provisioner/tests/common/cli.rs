//! The `provisioner` binary against the kit: a clean environment (the kit's endpoint,
//! the test account, no profile), runs that print their stderr, JSON out.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::endpoint;

pub fn provisioner() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    cmd.env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .stdin(Stdio::null());
    cmd
}

/// The gateway binary the workspace built, beside the provisioner (its default).
pub fn gateway_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_provisioner")).with_file_name("gateway");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace, as scripts/test does)",
        path.display()
    );
    path
}

/// `provisioner ARGS --region REGION --stack STACK`, its stderr echoed.
pub fn run(region: &str, stack: &str, args: &[&str]) -> Output {
    let out = provisioner()
        .args(args)
        .args(["--region", region, "--stack", stack])
        .output()
        .expect("run provisioner");
    eprintln!(
        "$ provisioner {} -> {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `run`, which must succeed and print JSON; returns it and the stderr.
pub fn run_ok(region: &str, stack: &str, args: &[&str]) -> (Value, String) {
    let out = run(region, stack, args);
    assert!(out.status.success(), "provisioner {args:?} failed");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of {args:?} is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The changes `plan` lists (unchanged resources are left out).
pub fn plan_changes(region: &str, stack: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["plan", "--output", "json"];
    args.extend_from_slice(extra);
    let (plan, _) = run_ok(region, stack, &args);
    plan["changes"]
        .as_array()
        .expect("changes is a list")
        .clone()
}
