//! Balancer: the classic ELB over the public subnets with TCP listeners 80->8000 and
//! 443->8443, a ProxyProtocolPolicyType policy on backend ports 8000 and 8443, the
//! health check HTTP:8001/status, cross-zone load balancing and connection draining.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::context::Ctx;
use crate::network::Network;
use crate::plan::{Change, Status};
use crate::security::SecurityGroups;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancer {
    pub name: String,
    pub dns_name: String,
    pub canonical_hosted_zone_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Current {}

impl Current {
    pub fn balancer(&self) -> Option<Balancer> {
        None
    }
    /// ELB health per instance id (`InService`, `OutOfService`, ...).
    pub fn instance_health(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("balancer: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current) -> Vec<Change> {
    Vec::new()
}

pub async fn converge(
    _ctx: &Ctx,
    _current: &Current,
    _net: &Network,
    _groups: &SecurityGroups,
) -> Result<Balancer> {
    bail!("balancer: not implemented")
}

pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("balancer: not implemented")
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
