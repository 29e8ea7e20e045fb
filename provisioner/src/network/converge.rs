//! Creates what is missing and repairs drift, with the comparisons of `desired.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_ec2::types::{AttributeBooleanValue, DomainType, ResourceType, VpcState};

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::Poll;

use super::delete::{delete_nats, release_eips};
use super::desired::*;
use super::{describe_nats, Current, Network, Subnet};

/// VPC, subnets, internet gateway and the public route table: what RDS and the ELB
/// need. Creates what is missing, repairs drift.
pub async fn converge_core(ctx: &Ctx, current: &Current, azs: &[String]) -> Result<Network> {
    let spec = &ctx.spec;
    let (vpc_id, vpc_cidr) = converge_vpc(ctx, current).await?;

    let (mut public, mut private) = (Vec::new(), Vec::new());
    for (i, az) in azs.iter().enumerate() {
        for is_public in [true, false] {
            let name = if is_public {
                public_subnet_name(spec, az)
            } else {
                private_subnet_name(spec, az)
            };
            let cidr = spec.subnet_cidr(i, is_public);
            let id = match current.subnet(&name).filter(|s| s.vpc_id == vpc_id) {
                Some(s) => {
                    let diff = subnet_diff(s, az, &cidr);
                    if let Some(f) = diff.0.first() {
                        bail!(
                            "subnet {name} ({}) has {} {}, the spec wants {}: a subnet cannot change \
                             in place; run `down` then `up` to rebuild the network (this deletes the \
                             database: take a snapshot first)",
                            s.id,
                            f.field,
                            f.current.as_deref().unwrap_or("(none)"),
                            f.desired.as_deref().unwrap_or("(none)")
                        );
                    }
                    s.id.clone()
                }
                None => {
                    let out = ctx
                        .ec2
                        .create_subnet()
                        .vpc_id(&vpc_id)
                        .availability_zone(az)
                        .cidr_block(&cidr)
                        .tag_specifications(ctx.ec2_tags(ResourceType::Subnet, &name))
                        .send()
                        .await
                        .aws(format!("create subnet {name}"))?;
                    let id = out
                        .subnet()
                        .and_then(|s| s.subnet_id())
                        .with_context(|| format!("create subnet {name}: no subnet id returned"))?
                        .to_string();
                    ctx.progress
                        .line(format!("created subnet {name} ({id}, {az}, {cidr})"));
                    id
                }
            };
            let subnet = Subnet {
                id,
                az: az.clone(),
                cidr,
            };
            if is_public {
                public.push(subnet);
            } else {
                private.push(subnet);
            }
        }
    }

    let igw_id = converge_igw(ctx, current, &vpc_id).await?;
    let public_ids: Vec<&str> = public.iter().map(|s| s.id.as_str()).collect();
    let target = Target::Gateway(&igw_id, igw_name(spec));
    converge_route_table(
        ctx,
        current,
        &vpc_id,
        &public_table_name(spec),
        target,
        &public_ids,
    )
    .await?;
    Ok(Network {
        vpc_id,
        vpc_cidr,
        public,
        private,
    })
}

async fn converge_vpc(ctx: &Ctx, current: &Current) -> Result<(String, String)> {
    let spec = &ctx.spec;
    let name = vpc_name(spec);
    let (id, cidr, diff) = match current.vpc() {
        Some(v) => {
            let diff = vpc_diff(spec, v);
            if let Some(f) = diff.0.iter().find(|f| f.field == "cidr") {
                bail!(
                    "vpc {name} ({}) has CIDR {}, stack.toml says vpc_cidr = {:?}: a VPC's CIDR \
                     cannot change in place. Either set vpc_cidr back to {:?}, or run `down` then \
                     `up` to rebuild the stack on the new CIDR (this deletes the database: take a \
                     snapshot first)",
                    v.id,
                    f.current.as_deref().unwrap_or("(none)"),
                    spec.config.vpc_cidr,
                    v.cidr
                );
            }
            (v.id.clone(), v.cidr.clone(), diff)
        }
        None => {
            let out = ctx
                .ec2
                .create_vpc()
                .cidr_block(&spec.config.vpc_cidr)
                .tag_specifications(ctx.ec2_tags(ResourceType::Vpc, &name))
                .send()
                .await
                .aws(format!("create vpc {name}"))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .with_context(|| format!("create vpc {name}: no VPC id returned"))?
                .to_string();
            ctx.progress.line(format!(
                "created vpc {name} ({id}, {})",
                spec.config.vpc_cidr
            ));
            wait_vpc_available(ctx, &name, &id).await?;
            // A new VPC has DNS support on and DNS hostnames off: set both to be sure.
            let mut diff = crate::plan::Diff::default();
            diff.field("enable_dns_support", Some(false), Some(true))
                .field("enable_dns_hostnames", Some(false), Some(true));
            (id, spec.config.vpc_cidr.clone(), diff)
        }
    };
    for f in &diff.0 {
        let on = AttributeBooleanValue::builder().value(true).build();
        let call = ctx.ec2.modify_vpc_attribute().vpc_id(&id);
        let call = match f.field.as_str() {
            "enable_dns_support" => call.enable_dns_support(on),
            "enable_dns_hostnames" => call.enable_dns_hostnames(on),
            _ => continue,
        };
        call.send()
            .await
            .aws(format!("set {} on vpc {name}", f.field))?;
        ctx.progress
            .line(format!("updated vpc {name}: {} = true", f.field));
    }
    Ok((id, cidr))
}

async fn wait_vpc_available(ctx: &Ctx, name: &str, id: &str) -> Result<()> {
    ctx.progress
        .wait(&format!("vpc {name}"), Duration::from_secs(300), || async {
            let out = ctx.ec2.describe_vpcs().vpc_ids(id).send().await;
            let out = super::absent_on(
                out.aws(format!("describe vpc {id}")),
                &["InvalidVpcID.NotFound"],
            )?;
            let state = out
                .as_ref()
                .and_then(|o| o.vpcs().first())
                .and_then(|v| v.state());
            Ok(match state {
                Some(VpcState::Available) => Poll::Ready(()),
                Some(s) => Poll::Pending(s.as_str().to_string()),
                None => Poll::Pending("not visible yet".into()),
            })
        })
        .await
}

async fn converge_igw(ctx: &Ctx, current: &Current, vpc_id: &str) -> Result<String> {
    let name = igw_name(&ctx.spec);
    let (id, attached) = match current.igw(&name) {
        Some(g) => (g.id.clone(), g.attached.clone()),
        None => {
            let out = ctx
                .ec2
                .create_internet_gateway()
                .tag_specifications(ctx.ec2_tags(ResourceType::InternetGateway, &name))
                .send()
                .await
                .aws(format!("create internet-gateway {name}"))?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .with_context(|| format!("create internet-gateway {name}: no id returned"))?
                .to_string();
            ctx.progress
                .line(format!("created internet-gateway {name} ({id})"));
            (id, Vec::new())
        }
    };
    if attached.iter().any(|v| v == vpc_id) {
        return Ok(id);
    }
    for other in &attached {
        ctx.ec2
            .detach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(other)
            .send()
            .await
            .aws(format!("detach internet-gateway {name} from {other}"))?;
        ctx.progress.line(format!(
            "updated internet-gateway {name}: detached from {other}"
        ));
    }
    ctx.ec2
        .attach_internet_gateway()
        .internet_gateway_id(&id)
        .vpc_id(vpc_id)
        .send()
        .await
        .aws(format!("attach internet-gateway {name} to {vpc_id}"))?;
    ctx.progress.line(format!(
        "updated internet-gateway {name}: attached to {vpc_id}"
    ));
    Ok(id)
}

/// A default route's target: id and name.
enum Target<'a> {
    Gateway(&'a str, String),
    Nat(&'a str, String),
}

impl Target<'_> {
    fn id(&self) -> &str {
        match self {
            Target::Gateway(id, _) | Target::Nat(id, _) => id,
        }
    }
    fn label(&self) -> String {
        match self {
            Target::Gateway(id, name) | Target::Nat(id, name) => format!("{name} ({id})"),
        }
    }
}

/// The table `name` with 0.0.0.0/0 -> `target`, associated with exactly `subnets`.
async fn converge_route_table(
    ctx: &Ctx,
    current: &Current,
    vpc_id: &str,
    name: &str,
    target: Target<'_>,
    subnets: &[&str],
) -> Result<()> {
    let existing = current.route_table(name, vpc_id);
    let id = match existing {
        Some(t) => t.id.clone(),
        None => {
            let out = ctx
                .ec2
                .create_route_table()
                .vpc_id(vpc_id)
                .tag_specifications(ctx.ec2_tags(ResourceType::RouteTable, name))
                .send()
                .await
                .aws(format!("create route-table {name}"))?;
            let id = out
                .route_table()
                .and_then(|t| t.route_table_id())
                .with_context(|| format!("create route-table {name}: no id returned"))?
                .to_string();
            ctx.progress
                .line(format!("created route-table {name} ({id})"));
            id
        }
    };

    let route = existing.and_then(|t| t.default_route.as_ref());
    let replace = match route {
        Some((tid, blackhole)) if tid == target.id() && !blackhole => None,
        Some(_) => Some(true),
        None => Some(false),
    };
    if let Some(replace) = replace {
        let op = format!(
            "route 0.0.0.0/0 of route-table {name} -> {}",
            target.label()
        );
        if replace {
            let call = ctx
                .ec2
                .replace_route()
                .route_table_id(&id)
                .destination_cidr_block("0.0.0.0/0");
            match &target {
                Target::Gateway(g, _) => call.gateway_id(*g),
                Target::Nat(n, _) => call.nat_gateway_id(*n),
            }
            .send()
            .await
            .aws(format!("replace {op}"))?;
        } else {
            let call = ctx
                .ec2
                .create_route()
                .route_table_id(&id)
                .destination_cidr_block("0.0.0.0/0");
            match &target {
                Target::Gateway(g, _) => call.gateway_id(*g),
                Target::Nat(n, _) => call.nat_gateway_id(*n),
            }
            .send()
            .await
            .aws(format!("create {op}"))?;
        }
        ctx.progress.line(format!(
            "updated route-table {name}: 0.0.0.0/0 -> {}",
            target.label()
        ));
    }

    let associated: Vec<(String, String)> =
        existing.map(|t| t.associations.clone()).unwrap_or_default();
    for subnet in subnets {
        if associated.iter().any(|(_, s)| s == subnet) {
            continue;
        }
        // A subnet has at most one explicit association: move it if it has one.
        let elsewhere = current
            .route_tables
            .iter()
            .filter(|t| t.vpc_id == vpc_id && t.id != id)
            .find_map(|t| t.associations.iter().find(|(_, s)| s == subnet));
        match elsewhere {
            Some((association, _)) => {
                ctx.ec2
                    .replace_route_table_association()
                    .association_id(association)
                    .route_table_id(&id)
                    .send()
                    .await
                    .aws(format!("move subnet {subnet} to route-table {name}"))?;
            }
            None => {
                ctx.ec2
                    .associate_route_table()
                    .route_table_id(&id)
                    .subnet_id(*subnet)
                    .send()
                    .await
                    .aws(format!("associate subnet {subnet} with route-table {name}"))?;
            }
        }
        ctx.progress.line(format!(
            "updated route-table {name}: associated {}",
            current.label(subnet)
        ));
    }
    for (association, subnet) in &associated {
        if subnets.contains(&subnet.as_str()) {
            continue;
        }
        ctx.ec2
            .disassociate_route_table()
            .association_id(association)
            .send()
            .await
            .aws(format!(
                "disassociate subnet {subnet} from route-table {name}"
            ))?;
        ctx.progress.line(format!(
            "updated route-table {name}: disassociated {}",
            current.label(subnet)
        ));
    }
    Ok(())
}

/// Elastic IPs, NAT gateways (waits until available) and private route tables.
pub async fn converge_nat(ctx: &Ctx, current: &Current, net: &Network) -> Result<()> {
    let spec = &ctx.spec;
    let vpc_id = net.vpc_id.as_str();
    let azs: Vec<String> = net.public.iter().map(|s| s.az.clone()).collect();
    let mut nat_ids: BTreeMap<String, String> = BTreeMap::new();
    for az in nat_azs(spec, &azs) {
        let name = nat_name(spec, az);
        if let Some(n) = current.nat(&name, vpc_id) {
            if n.state != "available" {
                wait_nat_available(ctx, &name, &n.id).await?;
            }
            nat_ids.insert(az.clone(), n.id.clone());
            continue;
        }
        let allocation = match current.eip(&name) {
            Some(e) => e.allocation_id.clone(),
            None => {
                let out = ctx
                    .ec2
                    .allocate_address()
                    .domain(DomainType::Vpc)
                    .tag_specifications(ctx.ec2_tags(ResourceType::ElasticIp, &name))
                    .send()
                    .await
                    .aws(format!("allocate elastic-ip {name}"))?;
                let id = out
                    .allocation_id()
                    .with_context(|| {
                        format!("allocate elastic-ip {name}: no allocation id returned")
                    })?
                    .to_string();
                let ip = out.public_ip().unwrap_or("?");
                ctx.progress
                    .line(format!("created elastic-ip {name} ({id}, {ip})"));
                id
            }
        };
        let subnet = net
            .public
            .iter()
            .find(|s| &s.az == az)
            .with_context(|| format!("no public subnet in {az} for nat-gateway {name}"))?;
        let out = ctx
            .ec2
            .create_nat_gateway()
            .subnet_id(&subnet.id)
            .allocation_id(&allocation)
            .tag_specifications(ctx.ec2_tags(ResourceType::Natgateway, &name))
            .send()
            .await
            .aws(format!("create nat-gateway {name}"))?;
        let id = out
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .with_context(|| format!("create nat-gateway {name}: no id returned"))?
            .to_string();
        ctx.progress
            .line(format!("created nat-gateway {name} ({id})"));
        nat_ids.insert(az.clone(), id);
    }
    for (az, id) in &nat_ids {
        if current.nat(&nat_name(spec, az), vpc_id).is_none() {
            wait_nat_available(ctx, &nat_name(spec, az), id).await?;
        }
    }

    for (i, (az, subnet)) in azs.iter().zip(&net.private).enumerate() {
        let nat_az = nat_az_for(spec, &azs, i);
        let nat = nat_ids
            .get(nat_az)
            .with_context(|| format!("no nat-gateway for {nat_az}"))?;
        let target = Target::Nat(nat, nat_name(spec, nat_az));
        let name = private_table_name(spec, az);
        converge_route_table(ctx, current, vpc_id, &name, target, &[subnet.id.as_str()]).await?;
    }

    // Routes point at the wanted NATs now: remove the ones no longer wanted.
    let (extra_nats, extra_eips) = extras(spec, current, Some(vpc_id), &azs);
    delete_nats(ctx, &extra_nats).await?;
    release_eips(ctx, &extra_eips).await?;
    Ok(())
}

async fn wait_nat_available(ctx: &Ctx, name: &str, id: &str) -> Result<()> {
    let ids = [id.to_string()];
    ctx.progress
        .wait(
            &format!("nat-gateway {name}"),
            Duration::from_secs(900),
            || async {
                let nats = describe_nats(ctx, Some(&ids)).await?;
                let Some(n) = nats.first() else {
                    return Ok(Poll::Pending("not visible yet".into()));
                };
                match n.state.as_str() {
                    "available" => Ok(Poll::Ready(())),
                    "failed" | "deleting" => bail!(
                        "nat-gateway {name} ({id}) is {}: {}; run the command again to replace it",
                        n.state,
                        n.failure.as_deref().unwrap_or("no reason given")
                    ),
                    s => Ok(Poll::Pending(s.to_string())),
                }
            },
        )
        .await
}
