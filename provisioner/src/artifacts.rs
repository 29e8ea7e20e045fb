//! Gateway artifact: an S3 bucket (`<stack>-artifacts-<account>-<region>`, private,
//! encrypted) holding the gateway binary under its sha256, so a new binary is a new
//! key (and a new launch template version) and an unchanged one uploads nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::context::Ctx;
use crate::plan::{Change, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub bucket: String,
    /// `gateway/<sha256>`.
    pub key: String,
    pub sha256: String,
}

/// `gateway_binary` from the spec, else `gateway` beside this executable, else on PATH.
pub fn locate_binary(_configured: Option<&Path>) -> Result<PathBuf> {
    bail!("artifacts: not implemented")
}

/// Hex sha256 of a file.
pub fn sha256_file(_path: &Path) -> Result<String> {
    bail!("artifacts: not implemented")
}

#[derive(Debug, Clone, Default)]
pub struct Current {}

impl Current {
    /// The artifact, when the bucket holds the binary of the discovered sha256.
    pub fn artifact(&self) -> Option<Artifact> {
        None
    }
}

pub async fn discover(_ctx: &Ctx, _sha256: &str) -> Result<Current> {
    bail!("artifacts: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current) -> Vec<Change> {
    Vec::new()
}

pub async fn converge(
    _ctx: &Ctx,
    _current: &Current,
    _binary: &Path,
    _sha256: &str,
) -> Result<Artifact> {
    bail!("artifacts: not implemented")
}

/// Empties and deletes the bucket.
pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("artifacts: not implemented")
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
