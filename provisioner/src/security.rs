//! Security groups: gateway nodes (8000-8003, 8443-8446 from the VPC CIDR), RDS (5432
//! from the VPC CIDR) and the ELB (its listener ports from `allowed_cidrs`). Nothing
//! else is open: extra ingress rules are drift and are revoked.

use anyhow::{bail, Result};

use crate::context::Ctx;
use crate::network::Network;
use crate::plan::{Change, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroups {
    pub nodes: String,
    pub db: String,
    pub elb: String,
}

#[derive(Debug, Clone, Default)]
pub struct Current {}

impl Current {
    pub fn groups(&self) -> Option<SecurityGroups> {
        None
    }
}

pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("security: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current) -> Vec<Change> {
    Vec::new()
}

pub async fn converge(_ctx: &Ctx, _current: &Current, _net: &Network) -> Result<SecurityGroups> {
    bail!("security: not implemented")
}

pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("security: not implemented")
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
