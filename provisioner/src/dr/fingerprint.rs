//! What a database holds, read by the gateway itself: `gateway config db_fingerprint`
//! prints the configuration hash the nodes would report, the entity counts and ids,
//! the newest change and the newest node heartbeat, and never a secret. Running the
//! shipped binary keeps the hash in one place (the gateway's code).
//!
//! It connects like a node does (TLS, the master user, the password from the stack's
//! secret), so the machine running the provisioner must reach the database: on the kit
//! it does; on AWS run it from inside the VPC (or through a tunnel).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::database::Database;
use crate::secrets::SecretValue;
use crate::spec::{DB_NAME, DB_USER};

/// How long the gateway may take to connect and read.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    #[serde(default)]
    pub newest_heartbeat_at: Option<i64>,
    #[serde(default)]
    pub nodes: i64,
}

/// All fields but `migrations` are null when the database is not bootstrapped (an
/// empty or failed restore), so such a database never matches a real configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub configuration_hash: Option<String>,
    #[serde(default)]
    pub counts: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    pub entities: Option<BTreeMap<String, Vec<EntityRef>>>,
    #[serde(default)]
    pub newest_change_at: Option<i64>,
    #[serde(default)]
    pub cluster: Option<ClusterInfo>,
    #[serde(default)]
    pub migrations: serde_json::Value,
}

impl Fingerprint {
    pub fn bootstrapped(&self) -> bool {
        self.configuration_hash.is_some()
    }

    /// The newest data in the database: a change or a node's heartbeat.
    pub fn newest_data_at(&self) -> Option<i64> {
        let heartbeat = self.cluster.as_ref().and_then(|c| c.newest_heartbeat_at);
        self.newest_change_at.max(heartbeat)
    }

    pub fn total(&self) -> i64 {
        self.counts.iter().flat_map(|c| c.values()).sum()
    }

    /// Entities of one kind (routes, services, ...).
    pub fn of(&self, kind: &str) -> &[EntityRef] {
        self.entities
            .as_ref()
            .and_then(|e| e.get(kind))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// `up to date (7 executed)` or `pending: a, b`, for a tag.
    pub fn migration_state(&self) -> String {
        let list = |k: &str| -> Vec<String> {
            self.migrations
                .get(k)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (executed, pending) = (list("executed"), list("pending"));
        if self.migrations.get("bootstrapped") == Some(&serde_json::Value::Bool(false)) {
            return "not bootstrapped".into();
        }
        if pending.is_empty() {
            format!("up to date ({} executed)", executed.len())
        } else {
            format!("pending: {}", pending.join(", "))
        }
    }
}

/// `gateway --version` of the binary the stack ships, e.g. `gateway 0.1.0`.
pub async fn gateway_version(gateway: &Path) -> Result<String> {
    let out = tokio::process::Command::new(gateway)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", gateway.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() {
        bail!("{} --version printed nothing", gateway.display());
    }
    Ok(text)
}

/// Runs `gateway config db_fingerprint` against `db`.
pub async fn read(gateway: &Path, db: &Database, password: &SecretValue) -> Result<Fingerprint> {
    let mut cmd = tokio::process::Command::new(gateway);
    cmd.args(["config", "db_fingerprint"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GATEWAY_DATABASE", "postgres")
        .env("GATEWAY_PG_HOST", &db.address)
        .env("GATEWAY_PG_PORT", db.port.to_string())
        .env("GATEWAY_PG_USER", DB_USER)
        .env("GATEWAY_PG_DATABASE", DB_NAME)
        .env("GATEWAY_PG_SSL", "on")
        // The environment, not the command line: no other user can read it.
        .env("GATEWAY_PG_PASSWORD", &password.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .with_context(|| {
            format!(
                "reading db-instance {}: no answer in {}s",
                db.identifier,
                LIMIT.as_secs()
            )
        })?
        .with_context(|| format!("cannot run {}", gateway.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).replace(&password.0, "******");
        bail!(
            "reading db-instance {} ({}:{}) with {} failed: {}",
            db.identifier,
            db.address,
            db.port,
            gateway.display(),
            err.trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{} config db_fingerprint printed something that is not a fingerprint; is it an older gateway?",
            gateway.display()
        )
    })
}
