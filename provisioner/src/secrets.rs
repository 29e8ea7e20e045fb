//! Secrets: the RDS master password and the Admin API token, generated once and kept
//! in SSM Parameter Store (SecureString) or Secrets Manager (`secret_store`). Their
//! values never reach user data, logs, tags or output; only their names and ARNs do.

use anyhow::{bail, Result};

use crate::context::Ctx;
use crate::plan::{Change, Status};

/// Where the secrets live. Nodes read them at boot with their instance role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// Parameter or secret name of the DB master password.
    pub db_password: String,
    /// Parameter or secret name of the admin token.
    pub admin_token: String,
    /// ARNs, for the instance role's policy.
    pub arns: Vec<String>,
}

/// A secret value; Debug prints `******`.
#[derive(Clone)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("******")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Current {}

impl Current {
    pub fn secrets(&self) -> Option<Secrets> {
        None
    }
}

pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("secrets: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current) -> Vec<Change> {
    Vec::new()
}

/// Creates the missing secrets (never overwrites an existing value).
pub async fn converge(_ctx: &Ctx, _current: &Current) -> Result<Secrets> {
    bail!("secrets: not implemented")
}

/// The DB master password, for creating the RDS instance.
pub async fn db_password(_ctx: &Ctx, _secrets: &Secrets) -> Result<SecretValue> {
    bail!("secrets: not implemented")
}

pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("secrets: not implemented")
}

/// Deletes only the admin token (the DB password stays with a final snapshot).
pub async fn delete_admin_token(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("secrets: not implemented")
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
