//! The nodes' user data: `#cloud-config` that writes the gateway config (RDS endpoint,
//! PROXY protocol on 8000/8443, admin on 8001/8444 for the VPC), raises nofile to
//! 65535, fetches the binary and the secrets, runs `gateway migrations bootstrap` and
//! `up`, and runs the node under systemd with `Restart=always`. No secret values.
//!
//! Secrets live in two files the gateway watches (`pg_password_file`,
//! `admin_token_file`). `gateway-secrets.service` re-reads both from the secret store
//! every `secret_refresh_seconds` with the instance role and rewrites a file
//! (atomically, by rename) when its value changed, so `provisioner secrets rotate`
//! reaches every node without a restart.

use crate::compute::{lifecycle_hook_name, NodeInputs};
use crate::spec::{
    SecretStore, Spec, DB_NAME, DB_USER, ELB_LISTENERS, HEALTH_CHECK_TARGET, NODE_PORT_RANGES,
    PROXY_PROTOCOL_PORTS,
};

pub const CONFIG_PATH: &str = "/etc/gateway/gateway.conf";
pub const PG_PASSWORD_PATH: &str = "/etc/gateway/pg_password";
pub const ADMIN_TOKEN_PATH: &str = "/etc/gateway/admin_token";
/// Fetches the secrets into their files: once at boot, then every
/// `secret_refresh_seconds` as `gateway-secrets.service`.
pub const SECRETS_PATH: &str = "/usr/local/sbin/gateway-secrets";
/// The node's run directory (`-p`), a systemd StateDirectory.
pub const PREFIX: &str = "/var/lib/gateway";
pub const BOOTSTRAP_PATH: &str = "/usr/local/sbin/gateway-bootstrap";
pub const DRAIN_PATH: &str = "/usr/local/sbin/gateway-drain";
pub const BINARY_PATH: &str = "/usr/local/bin/gateway";
pub const NOFILE: u32 = 65535;
/// EC2's limit on user data (before base64).
pub const MAX_USER_DATA: usize = 16 * 1024;
/// The node's systemd `TimeoutStopSec`: how long its SIGTERM drain may take before
/// systemd kills it. It must outlast the gateway's `drain_delay` + `drain_timeout`
/// (the user data keeps the gateway's defaults), with room to leave the cluster (a
/// database write) and exit; the lifecycle hook's heartbeat must outlast it in
/// turn. The provisioner does not build on the gateway crate, so
/// tests/userdata.rs holds this against the gateway's own defaults.
pub const STOP_TIMEOUT_SECS: u32 = 90;

/// The whole `#cloud-config` document.
pub fn render(spec: &Spec, inputs: &NodeInputs) -> String {
    let files = [
        (CONFIG_PATH, "0644", gateway_conf(spec, inputs)),
        (
            "/etc/security/limits.d/90-gateway-nofile.conf",
            "0644",
            limits(),
        ),
        ("/etc/systemd/system/gateway.service", "0644", unit()),
        (
            "/etc/systemd/system/gateway-drain.service",
            "0644",
            drain_unit(),
        ),
        (
            "/etc/systemd/system/gateway-secrets.service",
            "0644",
            secrets_unit(),
        ),
        (BOOTSTRAP_PATH, "0755", bootstrap_script(spec, inputs)),
        (SECRETS_PATH, "0755", secrets_script(spec, inputs)),
        (DRAIN_PATH, "0755", drain_script(spec)),
    ];
    let mut out = String::from("#cloud-config\n");
    out.push_str(&format!(
        "# Gateway node of stack {}, written by the provisioner. It holds no secret values:\n\
         # the node reads them at boot with its instance role.\n",
        spec.stack
    ));
    out.push_str("write_files:\n");
    for (path, mode, content) in files {
        out.push_str(&format!(
            "  - path: {path}\n    owner: root:root\n    permissions: '{mode}'\n    content: |\n"
        ));
        for line in content.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    out.push_str(&format!("runcmd:\n  - [{BOOTSTRAP_PATH}]\n"));
    out
}

/// `gateway.conf` (TOML, kong.conf's keys). Secrets come from `pg_password_file` and
/// `admin_token_file`, which the gateway re-reads when they change.
pub fn gateway_conf(_spec: &Spec, inputs: &NodeInputs) -> String {
    let s = |v: &str| toml::Value::String(v.to_string()).to_string();
    let lines = [
        "# Written by the provisioner. Secrets: pg_password_file and admin_token_file.".to_string(),
        format!("database = {}", s("postgres")),
        format!("pg_host = {}", s(&inputs.db.address)),
        format!("pg_port = {}", inputs.db.port),
        format!("pg_user = {}", s(DB_USER)),
        format!("pg_database = {}", s(DB_NAME)),
        "pg_ssl = true".to_string(),
        format!("pg_password_file = {}", s(PG_PASSWORD_PATH)),
        format!("admin_token_file = {}", s(ADMIN_TOKEN_PATH)),
        format!("proxy_listen = {}", s(&proxy_listen())),
        format!("admin_listen = {}", s(&admin_listen())),
        format!("trusted_ips = [{}]", s(&inputs.net.vpc_cidr)),
        format!("real_ip_header = {}", s("proxy_protocol")),
    ];
    lines.join("\n") + "\n"
}

/// The ELB's instance ports; the one behind LB port 443 is TLS (passed through).
fn proxy_listen() -> String {
    ELB_LISTENERS
        .iter()
        .map(|(lb_port, port)| {
            let mut l = format!("0.0.0.0:{port}");
            if *lb_port == 443 {
                l.push_str(" http2 ssl");
            }
            if PROXY_PROTOCOL_PORTS.contains(port) {
                l.push_str(" proxy_protocol");
            }
            l + " reuseport backlog=16384"
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Admin ports: the second port of each node range (8001 plain, 8444 TLS), on every
/// address; the nodes' security group admits only the VPC.
fn admin_listen() -> String {
    NODE_PORT_RANGES
        .iter()
        .enumerate()
        .map(|(i, (first, _))| {
            let tls = if i == 0 { "" } else { " http2 ssl" };
            format!("0.0.0.0:{}{tls} reuseport backlog=16384", first + 1)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The port of the ELB health check (`HTTP:8001/status`).
pub fn health_check_port() -> Option<u16> {
    let rest = HEALTH_CHECK_TARGET.split_once(':')?.1;
    rest.split('/').next()?.parse().ok()
}

fn limits() -> String {
    format!("*  soft  nofile  {NOFILE}\n*  hard  nofile  {NOFILE}\n")
}

fn unit() -> String {
    format!(
        "[Unit]\n\
         Description=gateway node\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         User=gateway\n\
         Group=gateway\n\
         StateDirectory=gateway\n\
         ExecStart={BINARY_PATH} start -c {CONFIG_PATH} -p {PREFIX}\n\
         Restart=always\n\
         RestartSec=2\n\
         LimitNOFILE={NOFILE}\n\
         # SIGTERM drains for drain_delay + drain_timeout; this outlasts both.\n\
         TimeoutStopSec={STOP_TIMEOUT_SECS}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

fn drain_unit() -> String {
    format!(
        "[Unit]\n\
         Description=drain the gateway when the Auto Scaling group terminates this node\n\
         After=gateway.service\n\
         \n\
         [Service]\n\
         ExecStart={DRAIN_PATH}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

fn secrets_unit() -> String {
    format!(
        "[Unit]\n\
         Description=refresh the gateway's secret files from the secret store\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={SECRETS_PATH}\n\
         Restart=always\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// Single-quoted for the shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn read_secret_fn(store: SecretStore) -> &'static str {
    match store {
        SecretStore::Ssm => {
            "read_secret() {\n  aws ssm get-parameter --region \"$REGION\" --name \"$1\" \
             --with-decryption --query Parameter.Value --output text\n}"
        }
        SecretStore::SecretsManager => {
            "read_secret() {\n  aws secretsmanager get-secret-value --region \"$REGION\" \
             --secret-id \"$1\" --query SecretString --output text\n}"
        }
    }
}

fn bootstrap_script(spec: &Spec, inputs: &NodeInputs) -> String {
    let a = &inputs.artifact;
    let vars = [
        ("REGION", spec.region.as_str()),
        ("BUCKET", a.bucket.as_str()),
        ("KEY", a.key.as_str()),
        ("SHA256", a.sha256.as_str()),
        ("CONF", CONFIG_PATH),
    ];
    let mut out = String::from(
        "#!/bin/bash\n\
         # Installs the gateway binary, fetches its secrets, migrates the database and\n\
         # starts the node. Safe to run again. Secret values never reach the output.\n\
         set -euo pipefail\n\
         umask 077\n\n",
    );
    for (name, value) in vars {
        out.push_str(&format!("{name}={}\n", sh_quote(value)));
    }
    out.push_str(&format!(
        r#"
die() {{
  echo "gateway-bootstrap: $*" >&2
  exit 1
}}

if ! id -u gateway >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /sbin/nologin gateway
fi

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
aws s3 cp --only-show-errors --region "$REGION" "s3://$BUCKET/$KEY" "$work/gateway"
printf '%s  %s\n' "$SHA256" "$work/gateway" | sha256sum -c --quiet - \
  || die "s3://$BUCKET/$KEY does not match its sha256"
install -m 0755 -o root -g root "$work/gateway" {BINARY_PATH}

# The secret files, written by the same script that keeps them fresh.
{SECRETS_PATH} --once || die "cannot fetch the secrets"

# Nodes may race: an advisory lock serialises them; a done step exits 0.
migrate() {{
  local try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    if {BINARY_PATH} migrations "$1" -c "$CONF"; then
      return 0
    fi
    echo "gateway-bootstrap: migrations $1 failed (try $try of 10), retrying in 15s" >&2
    sleep 15
  done
  die "migrations $1 failed 10 times"
}}
migrate bootstrap
migrate up

systemctl daemon-reload
systemctl enable --now gateway.service
systemctl enable --now gateway-drain.service
systemctl enable --now gateway-secrets.service
"#,
    ));
    out
}

/// Holds no `${`: CloudFormation's copy is an `Fn::Sub`, whose `${!...}` escape the
/// kit's engine does not resolve.
///
/// Reads both secrets with the instance role and rewrites a secret file (0600, owner
/// gateway, by rename) when its value changed; the gateway re-reads the files. With
/// `--once` it runs once and fails if a secret cannot be read (the boot); without, it
/// loops every `secret_refresh_seconds` and keeps a file when its secret cannot be read.
fn secrets_script(spec: &Spec, inputs: &NodeInputs) -> String {
    let every = spec.config.secret_refresh_seconds.to_string();
    let vars = [
        ("REGION", spec.region.as_str()),
        ("DB_PASSWORD_SECRET", inputs.secrets.db_password.as_str()),
        ("ADMIN_TOKEN_SECRET", inputs.secrets.admin_token.as_str()),
        ("EVERY", every.as_str()),
    ];
    let mut out = String::from(
        "#!/bin/bash\n\
         # Keeps the gateway's secret files in step with the secret store (rotation).\n\
         # Secret values never reach the output.\n\
         set -euo pipefail\n\
         umask 077\n\n",
    );
    for (name, value) in vars {
        out.push_str(&format!("{name}={}\n", sh_quote(value)));
    }
    out.push_str(&format!(
        r#"
{read_secret}

# refresh SECRET FILE: rewrites FILE when the value of SECRET differs from it.
refresh() {{
  local value tmp
  value="$(read_secret "$1")" || {{ echo "gateway-secrets: cannot read $1" >&2; return 1; }}
  [ -n "$value" ] || {{ echo "gateway-secrets: $1 is empty" >&2; return 1; }}
  if [ -f "$2" ] && [ "$(cat -- "$2")" = "$value" ]; then
    return 0
  fi
  tmp="$(mktemp "$2.XXXXXX")"
  printf '%s\n' "$value" >"$tmp"
  chown gateway:gateway "$tmp"
  chmod 0600 "$tmp"
  mv -f -- "$tmp" "$2"
  echo "gateway-secrets: $2 updated from $1" >&2
}}

if [ "$*" = "--once" ]; then
  refresh "$DB_PASSWORD_SECRET" {PG_PASSWORD_PATH}
  refresh "$ADMIN_TOKEN_SECRET" {ADMIN_TOKEN_PATH}
  exit 0
fi
while true; do
  refresh "$DB_PASSWORD_SECRET" {PG_PASSWORD_PATH} || true
  refresh "$ADMIN_TOKEN_SECRET" {ADMIN_TOKEN_PATH} || true
  sleep "$EVERY"
done
"#,
        read_secret = read_secret_fn(spec.config.secret_store),
    ));
    out
}

/// Waits for the group's termination of this node (IMDSv2), drains the node, then
/// completes the lifecycle action. `systemctl stop` sends the SIGTERM that
/// `gateway quit` sends, without systemd's `Restart=always` starting it again.
fn drain_script(spec: &Spec) -> String {
    let vars = [
        ("REGION", spec.region.clone()),
        ("GROUP", spec.asg_name()),
        ("HOOK", lifecycle_hook_name(spec)),
    ];
    let mut out = String::from(
        "#!/bin/bash\n\
         # Drains the gateway when the Auto Scaling group terminates this node.\n\
         set -euo pipefail\n\n",
    );
    for (name, value) in vars {
        out.push_str(&format!("{name}={}\n", sh_quote(&value)));
    }
    out.push_str(
        r#"IMDS='http://169.254.169.254/latest'

imds() {
  local token
  token="$(curl -sSf -X PUT "$IMDS/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')"
  curl -sSf -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/$1"
}

instance_id="$(imds instance-id)"
until [ "$(imds autoscaling/target-lifecycle-state 2>/dev/null || true)" = "Terminated" ]; do
  sleep 5
done
echo "gateway-drain: $instance_id is terminating, draining the gateway" >&2
systemctl stop gateway.service || true
aws autoscaling complete-lifecycle-action --region "$REGION" \
  --auto-scaling-group-name "$GROUP" --lifecycle-hook-name "$HOOK" \
  --instance-id "$instance_id" --lifecycle-action-result CONTINUE
"#,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_spec() {
        assert_eq!(
            proxy_listen(),
            "0.0.0.0:8000 proxy_protocol reuseport backlog=16384, \
             0.0.0.0:8443 http2 ssl proxy_protocol reuseport backlog=16384"
        );
        assert_eq!(
            admin_listen(),
            "0.0.0.0:8001 reuseport backlog=16384, 0.0.0.0:8444 http2 ssl reuseport backlog=16384"
        );
        // The ELB health check goes to the plain admin listener.
        assert_eq!(health_check_port(), Some(NODE_PORT_RANGES[0].0 + 1));
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
