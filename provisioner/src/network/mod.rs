//! Network: the VPC, public and private subnets per AZ, the internet gateway, NAT
//! gateways (per AZ or single) with their Elastic IPs, and the route tables.
//!
//! `discover.rs` finds them by tag; `desired.rs` has `plan` and the comparisons it
//! shares with `converge.rs` (VPC, subnets, IGW), `routes.rs` and `nat.rs`; then
//! `delete.rs`.

use anyhow::{bail, Result};
use aws_sdk_ec2::types::Filter;

use crate::aws::{AwsError, AwsResultExt};
use crate::context::Ctx;
use crate::plan::Status;

mod converge;
mod delete;
mod desired;
mod discover;
mod nat;
mod routes;
#[cfg(test)]
mod tests;

pub use converge::converge_core;
pub use delete::delete;
pub(crate) use desired::nat_azs;
pub use desired::plan;
pub(crate) use discover::describe_nats;
pub use discover::discover;
pub use nat::converge_nat;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVpc {
    pub id: String,
    pub name: Option<String>,
    pub cidr: String,
    pub dns_support: bool,
    pub dns_hostnames: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSubnet {
    pub id: String,
    pub name: Option<String>,
    pub vpc_id: String,
    pub az: String,
    pub cidr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundIgw {
    pub id: String,
    pub name: Option<String>,
    /// VPC ids it is attached to.
    pub attached: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRouteTable {
    pub id: String,
    pub name: Option<String>,
    pub vpc_id: String,
    /// Carries the stack tag (the VPC's main table does not).
    pub tagged: bool,
    pub main: bool,
    /// The 0.0.0.0/0 route: its target id (gateway or NAT) and whether it is a blackhole.
    pub default_route: Option<(String, bool)>,
    /// Subnet associations: (association id, subnet id).
    pub associations: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEip {
    pub allocation_id: String,
    pub name: Option<String>,
    pub public_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundNat {
    pub id: String,
    pub name: Option<String>,
    pub vpc_id: String,
    pub subnet_id: String,
    /// `pending`, `available`, `deleting`, `failed` (deleted ones are left out).
    pub state: String,
    pub failure: Option<String>,
    /// Elastic IP allocation ids it uses.
    pub allocation_ids: Vec<String>,
    /// Its network interfaces (moto leaves them behind on delete).
    pub enis: Vec<String>,
}

impl FoundNat {
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "available")
    }
}

/// The stack's network resources as found by tag.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The AZs the spec uses (first `az_count` of the region).
    pub azs: Vec<String>,
    /// Every VPC with the stack tag; `vpc()` is the one named `<stack>-vpc`.
    pub vpcs: Vec<FoundVpc>,
    pub subnets: Vec<FoundSubnet>,
    pub igws: Vec<FoundIgw>,
    /// Tagged tables, plus every table of the stack's VPC (for their associations).
    pub route_tables: Vec<FoundRouteTable>,
    pub eips: Vec<FoundEip>,
    pub nats: Vec<FoundNat>,
    vpc_name: String,
    subnet_names: Vec<(String, String)>,
}

impl Current {
    /// The network, when the VPC and every subnet exist.
    pub fn network(&self) -> Option<Network> {
        let vpc = self.vpc()?;
        if self.azs.is_empty() {
            return None;
        }
        let (mut public, mut private) = (Vec::new(), Vec::new());
        for (public_name, private_name) in &self.subnet_names {
            for (name, list) in [(public_name, &mut public), (private_name, &mut private)] {
                let s = self.subnet(name)?;
                list.push(Subnet {
                    id: s.id.clone(),
                    az: s.az.clone(),
                    cidr: s.cidr.clone(),
                });
            }
        }
        Some(Network {
            vpc_id: vpc.id.clone(),
            vpc_cidr: vpc.cidr.clone(),
            public,
            private,
        })
    }

    /// The stack's VPC: tagged and named `<stack>-vpc`.
    pub fn vpc(&self) -> Option<&FoundVpc> {
        self.vpcs
            .iter()
            .find(|v| v.name.as_deref() == Some(self.vpc_name.as_str()))
    }

    /// The subnet named `name` in the stack's VPC.
    pub fn subnet(&self, name: &str) -> Option<&FoundSubnet> {
        let vpc = self.vpc()?;
        self.subnets
            .iter()
            .find(|s| s.vpc_id == vpc.id && s.name.as_deref() == Some(name))
    }

    pub fn igw(&self, name: &str) -> Option<&FoundIgw> {
        self.igws.iter().find(|g| g.name.as_deref() == Some(name))
    }

    /// The tagged route table named `name` in VPC `vpc_id`.
    pub fn route_table(&self, name: &str, vpc_id: &str) -> Option<&FoundRouteTable> {
        self.route_tables
            .iter()
            .find(|t| t.tagged && !t.main && t.vpc_id == vpc_id && t.name.as_deref() == Some(name))
    }

    pub fn eip(&self, name: &str) -> Option<&FoundEip> {
        self.eips.iter().find(|e| e.name.as_deref() == Some(name))
    }

    /// The pending or available NAT gateway named `name` in `vpc_id` (available first).
    pub fn nat(&self, name: &str, vpc_id: &str) -> Option<&FoundNat> {
        let mut live: Vec<&FoundNat> = self
            .nats
            .iter()
            .filter(|n| n.is_live() && n.vpc_id == vpc_id && n.name.as_deref() == Some(name))
            .collect();
        live.sort_by_key(|n| (n.state != "available", n.id.clone()));
        live.first().copied()
    }

    /// `name (id)` for a known subnet, gateway or live NAT; the bare id otherwise.
    pub(crate) fn label(&self, id: &str) -> String {
        let name = self
            .subnets
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.name.clone())
            .or_else(|| {
                self.igws
                    .iter()
                    .find(|g| g.id == id)
                    .and_then(|g| g.name.clone())
            })
            .or_else(|| {
                self.nats
                    .iter()
                    .find(|n| n.id == id && n.is_live())
                    .and_then(|n| n.name.clone())
            });
        match name {
            Some(name) => format!("{name} ({id})"),
            None => id.to_string(),
        }
    }
}

/// The AZs to use: the first `az_count` available AZs of the region, sorted.
/// Fails when the region has fewer than 2.
pub async fn availability_zones(ctx: &Ctx) -> Result<Vec<String>> {
    let out = ctx
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .filters(filter("zone-type", "availability-zone"))
        .send()
        .await
        .aws(format!(
            "describe availability zones of {}",
            ctx.spec.region
        ))?;
    let mut zones: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    zones.sort();
    zones.dedup();
    if zones.len() < 2 {
        bail!(
            "region {} has {} available availability zone(s); the stack needs at least 2 \
             (MultiAZ RDS and the ELB): pick another region",
            ctx.spec.region,
            zones.len()
        );
    }
    zones.truncate(ctx.spec.config.az_count);
    Ok(zones)
}

pub(crate) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Runs `op` again while it fails with one of `codes`: right after a create, AWS may
/// not know the new id yet (eventual consistency). Gives up after a minute.
pub(crate) async fn retry_on<T, F, Fut>(
    ctx: &Ctx,
    label: &str,
    codes: &[&str],
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    ctx.progress
        .wait(label, std::time::Duration::from_secs(60), || {
            let attempt = op();
            async move {
                match absent_on(attempt.await, codes)? {
                    Some(v) => Ok(crate::progress::Poll::Ready(v)),
                    None => Ok(crate::progress::Poll::Pending("not visible yet".into())),
                }
            }
        })
        .await
}

/// Ok(None) when the call failed with one of `codes` (e.g. a NotFound).
pub(crate) fn absent_on<T>(result: Result<T>, codes: &[&str]) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if AwsError::code_of(&e).is_some_and(|c| codes.contains(&c)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn status(current: &Current) -> Vec<Status> {
    let mut out = Vec::new();
    if let Some(vpc) = current.vpc() {
        out.push(
            Status::new(
                format!("vpc {}", current.vpc_name),
                Some(vpc.id.clone()),
                "available",
            )
            .detail("cidr", &vpc.cidr),
        );
    }
    let mut subnets: Vec<&FoundSubnet> = current
        .subnets
        .iter()
        .filter(|s| current.vpc().is_some_and(|v| v.id == s.vpc_id))
        .collect();
    subnets.sort_by(|a, b| (&a.az, &a.cidr).cmp(&(&b.az, &b.cidr)));
    for s in subnets {
        let name = s.name.clone().unwrap_or_else(|| s.id.clone());
        out.push(
            Status::new(format!("subnet {name}"), Some(s.id.clone()), "available")
                .detail("az", &s.az)
                .detail("cidr", &s.cidr),
        );
    }
    for n in &current.nats {
        let name = n.name.clone().unwrap_or_else(|| n.id.clone());
        let mut st = Status::new(format!("nat-gateway {name}"), Some(n.id.clone()), &n.state);
        if let Some(failure) = &n.failure {
            st = st.detail("failure", failure);
        }
        out.push(st);
    }
    out
}
