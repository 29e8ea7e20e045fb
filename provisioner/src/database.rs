//! Database: the KMS key for storage encryption, the DB subnet group over the private
//! subnets, and the RDS PostgreSQL instance (MultiAZ, encrypted, backups kept
//! `backup_retention_days`, tags copied to snapshots, deletion protection).

use anyhow::{bail, Result};

use crate::context::Ctx;
use crate::network::Network;
use crate::plan::{Change, Status};
use crate::secrets::Secrets;
use crate::security::SecurityGroups;

/// What the nodes need of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub identifier: String,
    pub address: String,
    pub port: i32,
    pub kms_key_arn: String,
}

#[derive(Debug, Clone, Default)]
pub struct Current {}

impl Current {
    /// The database, once the instance is available with an endpoint.
    pub fn database(&self) -> Option<Database> {
        None
    }
}

pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("database: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current) -> Vec<Change> {
    Vec::new()
}

/// Creates the key, subnet group and instance when missing, or modifies drifted
/// settings, without waiting: RDS is the long pole, so it starts first.
pub async fn start(
    _ctx: &Ctx,
    _current: &Current,
    _net: &Network,
    _groups: &SecurityGroups,
    _secrets: &Secrets,
) -> Result<()> {
    bail!("database: not implemented")
}

/// Waits (with progress) until the instance is available; returns its endpoint.
pub async fn wait_available(_ctx: &Ctx) -> Result<Database> {
    bail!("database: not implemented")
}

/// Deletes the instance (a final snapshot `<id>-final-<time>` unless
/// `skip_final_snapshot`; deletion protection is lifted only with `force`, else an
/// error says to pass --force), then the subnet group. The KMS key is kept when a
/// final snapshot was taken, since the snapshot needs it; otherwise it is scheduled
/// for deletion.
pub async fn delete(
    _ctx: &Ctx,
    _current: &Current,
    _skip_final_snapshot: bool,
    _force: bool,
) -> Result<Option<String>> {
    bail!("database: not implemented")
}

/// Refuses (before anything is deleted) when deletion protection is on without `force`.
pub fn check_deletable(_ctx: &Ctx, _current: &Current, _force: bool) -> Result<()> {
    Ok(())
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
