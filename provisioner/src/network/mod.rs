//! Network: the VPC, public and private subnets per AZ, the internet gateway, NAT
//! gateways (per AZ or single) with their Elastic IPs, and the route tables.
//!
//! `discover` here; `plan` (and the desired state it shares with `converge`) in
//! `desired.rs`; `converge_core`/`converge_nat` in `converge.rs`; `delete` in `delete.rs`.

use anyhow::{bail, Context as _, Result};
use aws_sdk_ec2::types::{Filter, VpcAttributeName};

use crate::aws::{AwsError, AwsResultExt};
use crate::context::{ec2_name, Ctx};
use crate::plan::Status;

mod converge;
mod delete;
mod desired;

pub use converge::{converge_core, converge_nat};
pub use delete::delete;
pub use desired::plan;

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

/// Ok(None) when the call failed with one of `codes` (e.g. a NotFound).
pub(crate) fn absent_on<T>(result: Result<T>, codes: &[&str]) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if AwsError::code_of(&e).is_some_and(|c| codes.contains(&c)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let spec = &ctx.spec;
    let azs = availability_zones(ctx).await?;
    let subnet_names = azs
        .iter()
        .map(|az| {
            (
                desired::public_subnet_name(spec, az),
                desired::private_subnet_name(spec, az),
            )
        })
        .collect();
    let mut current = Current {
        azs,
        vpc_name: desired::vpc_name(spec),
        subnet_names,
        ..Current::default()
    };
    let ec2 = &ctx.ec2;

    let vpcs = ec2
        .describe_vpcs()
        .filters(ctx.ec2_stack_filter())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("describe vpcs")?;
    for v in vpcs {
        let id = v.vpc_id().context("a VPC without an id")?.to_string();
        let cidr = v
            .cidr_block()
            .with_context(|| format!("vpc {id} has no CIDR"))?;
        let mut flags = [false; 2];
        for (i, attr) in [
            VpcAttributeName::EnableDnsSupport,
            VpcAttributeName::EnableDnsHostnames,
        ]
        .into_iter()
        .enumerate()
        {
            let a = ec2
                .describe_vpc_attribute()
                .vpc_id(&id)
                .attribute(attr.clone())
                .send()
                .await
                .aws(format!("describe vpc attribute {attr} of {id}"))?;
            let value = if i == 0 {
                a.enable_dns_support()
            } else {
                a.enable_dns_hostnames()
            };
            flags[i] = value.and_then(|b| b.value()).unwrap_or(false);
        }
        current.vpcs.push(FoundVpc {
            name: ec2_name(v.tags()).map(str::to_string),
            cidr: cidr.to_string(),
            dns_support: flags[0],
            dns_hostnames: flags[1],
            id,
        });
    }
    current.vpcs.sort_by(|a, b| a.id.cmp(&b.id));
    let vpc_id = current.vpc().map(|v| v.id.clone());

    let subnets = ec2
        .describe_subnets()
        .filters(ctx.ec2_stack_filter())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("describe subnets")?;
    for s in subnets {
        let id = s.subnet_id().context("a subnet without an id")?.to_string();
        let missing = |what: &str| format!("subnet {id} has no {what}");
        current.subnets.push(FoundSubnet {
            name: ec2_name(s.tags()).map(str::to_string),
            vpc_id: s.vpc_id().with_context(|| missing("VPC"))?.to_string(),
            az: s
                .availability_zone()
                .with_context(|| missing("AZ"))?
                .to_string(),
            cidr: s.cidr_block().with_context(|| missing("CIDR"))?.to_string(),
            id,
        });
    }

    let igws = ec2
        .describe_internet_gateways()
        .filters(ctx.ec2_stack_filter())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("describe internet gateways")?;
    for g in igws {
        current.igws.push(FoundIgw {
            id: g
                .internet_gateway_id()
                .context("an internet gateway without an id")?
                .to_string(),
            name: ec2_name(g.tags()).map(str::to_string),
            attached: g
                .attachments()
                .iter()
                .filter(|a| a.state().is_none_or(|s| s.as_str() != "detached"))
                .filter_map(|a| a.vpc_id().map(str::to_string))
                .collect(),
        });
    }

    let mut tables = ec2
        .describe_route_tables()
        .filters(ctx.ec2_stack_filter())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("describe route tables")?;
    if let Some(vpc_id) = &vpc_id {
        let in_vpc = ec2
            .describe_route_tables()
            .filters(filter("vpc-id", vpc_id))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws(format!("describe route tables of {vpc_id}"))?;
        tables.extend(in_vpc);
    }
    for t in tables {
        let id = t
            .route_table_id()
            .context("a route table without an id")?
            .to_string();
        if current.route_tables.iter().any(|r| r.id == id) {
            continue;
        }
        let default_route = t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .map(|r| {
                let target = r
                    .nat_gateway_id()
                    .or(r.gateway_id())
                    .or(r.network_interface_id())
                    .or(r.instance_id())
                    .or(r.transit_gateway_id())
                    .or(r.vpc_peering_connection_id())
                    .unwrap_or("(none)");
                let blackhole = r.state().is_some_and(|s| s.as_str() == "blackhole");
                (target.to_string(), blackhole)
            });
        current.route_tables.push(FoundRouteTable {
            name: ec2_name(t.tags()).map(str::to_string),
            vpc_id: t
                .vpc_id()
                .with_context(|| format!("route table {id} has no VPC"))?
                .to_string(),
            tagged: t
                .tags()
                .iter()
                .any(|tag| tag.key() == Some(crate::spec::STACK_TAG)),
            main: t.associations().iter().any(|a| a.main() == Some(true)),
            default_route,
            associations: t
                .associations()
                .iter()
                .filter(|a| a.main() != Some(true))
                .filter(|a| {
                    a.association_state()
                        .and_then(|s| s.state())
                        .is_none_or(|s| matches!(s.as_str(), "associated" | "associating"))
                })
                .filter_map(|a| {
                    Some((
                        a.route_table_association_id()?.to_string(),
                        a.subnet_id()?.to_string(),
                    ))
                })
                .collect(),
            id,
        });
    }

    let eips = ec2
        .describe_addresses()
        .filters(ctx.ec2_stack_filter())
        .send()
        .await
        .aws("describe addresses")?;
    for e in eips.addresses() {
        current.eips.push(FoundEip {
            allocation_id: e
                .allocation_id()
                .context("an Elastic IP without an allocation id")?
                .to_string(),
            name: ec2_name(e.tags()).map(str::to_string),
            public_ip: e.public_ip().map(str::to_string),
        });
    }
    current
        .eips
        .sort_by(|a, b| a.allocation_id.cmp(&b.allocation_id));

    current.nats = describe_nats(ctx, None).await?;
    Ok(current)
}

/// The stack's NAT gateways that are not `deleted` (or those with `ids`).
pub(crate) async fn describe_nats(ctx: &Ctx, ids: Option<&[String]>) -> Result<Vec<FoundNat>> {
    let mut call = ctx.ec2.describe_nat_gateways();
    call = match ids {
        Some(ids) => call.set_nat_gateway_ids(Some(ids.to_vec())),
        None => call.filter(ctx.ec2_stack_filter()),
    };
    let nats = call
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("describe nat gateways");
    let nats = match absent_on(
        nats,
        &["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"],
    )? {
        Some(nats) => nats,
        None => return Ok(Vec::new()),
    };
    let mut found = Vec::new();
    for n in nats {
        let id = n
            .nat_gateway_id()
            .context("a NAT gateway without an id")?
            .to_string();
        let state = n
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        // moto ignores tag filters on DescribeNatGateways: check the tag here too.
        let ours = n
            .tags()
            .iter()
            .any(|t| t.key() == Some(crate::spec::STACK_TAG) && t.value() == Some(&ctx.spec.stack));
        if state == "deleted" || !ours {
            continue;
        }
        let missing = |what: &str| format!("nat-gateway {id} has no {what}");
        found.push(FoundNat {
            name: ec2_name(n.tags()).map(str::to_string),
            vpc_id: n.vpc_id().with_context(|| missing("VPC"))?.to_string(),
            subnet_id: n
                .subnet_id()
                .with_context(|| missing("subnet"))?
                .to_string(),
            failure: n.failure_message().map(str::to_string),
            allocation_ids: n
                .nat_gateway_addresses()
                .iter()
                .filter_map(|a| a.allocation_id().map(str::to_string))
                .collect(),
            enis: n
                .nat_gateway_addresses()
                .iter()
                .filter_map(|a| a.network_interface_id().map(str::to_string))
                .collect(),
            state,
            id,
        });
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
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
