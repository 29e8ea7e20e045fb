//! Network: the VPC, public and private subnets per AZ, the internet gateway, NAT
//! gateways (per AZ or single) with their Elastic IPs, and the route tables.

use anyhow::{bail, Result};

use crate::context::Ctx;
use crate::plan::{Change, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub az: String,
    pub cidr: String,
}

/// What later steps need of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub vpc_id: String,
    pub vpc_cidr: String,
    /// One per AZ, in AZ order (the ELB goes here).
    pub public: Vec<Subnet>,
    /// One per AZ, in AZ order (RDS and the nodes go here).
    pub private: Vec<Subnet>,
}

/// The stack's network resources as found by tag.
#[derive(Debug, Clone, Default)]
pub struct Current {
    // Filled by the implementation.
}

impl Current {
    /// The network, when the VPC and every subnet exist.
    pub fn network(&self) -> Option<Network> {
        None
    }
}

/// The AZs to use: the first `az_count` available AZs of the region, sorted.
/// Fails when the region has fewer than 2.
pub async fn availability_zones(_ctx: &Ctx) -> Result<Vec<String>> {
    bail!("network: not implemented")
}

pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("network: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current, _azs: &[String]) -> Vec<Change> {
    Vec::new()
}

/// VPC, subnets, internet gateway and the public route table: what RDS and the ELB
/// need. Creates what is missing, repairs drift.
pub async fn converge_core(_ctx: &Ctx, _current: &Current, _azs: &[String]) -> Result<Network> {
    bail!("network: not implemented")
}

/// Elastic IPs, NAT gateways (waits until available) and private route tables.
pub async fn converge_nat(_ctx: &Ctx, _current: &Current, _net: &Network) -> Result<()> {
    bail!("network: not implemented")
}

/// Deletes everything above, in reverse order (waits for NAT gateways to go).
pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("network: not implemented")
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
