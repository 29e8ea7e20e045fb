//! The VPC, subnets and internet gateway: created when missing, drift repaired with
//! the comparisons of `desired.rs`.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcState};

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::Poll;

use super::desired::*;
use super::routes::{converge_route_table, Target};
use super::{retry_on, Current, Network, Subnet};

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
    let public_ids: Vec<(&str, String)> = public
        .iter()
        .map(|s| (s.id.as_str(), public_subnet_name(spec, &s.az)))
        .collect();
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
    let (id, cidr, diff, created) = match current.vpc() {
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
            (v.id.clone(), v.cidr.clone(), diff, false)
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
            wait_vpc_available(ctx, &name, &id).await?;
            // A new VPC has DNS support on and DNS hostnames off: set both to be sure.
            let mut diff = crate::plan::Diff::default();
            diff.field("enable_dns_support", Some(false), Some(true))
                .field("enable_dns_hostnames", Some(false), Some(true));
            (id, spec.config.vpc_cidr.clone(), diff, true)
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
        if !created {
            ctx.progress
                .line(format!("updated vpc {name}: {} = true", f.field));
        }
    }
    if created {
        ctx.progress.line(format!(
            "created vpc {name} ({id}, {cidr}, DNS support and hostnames on)"
        ));
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
    let codes = ["InvalidInternetGatewayID.NotFound", "InvalidVpcID.NotFound"];
    retry_on(ctx, &format!("internet-gateway {name}"), &codes, || async {
        ctx.ec2
            .attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc_id)
            .send()
            .await
            .aws(format!("attach internet-gateway {name} to {vpc_id}"))
    })
    .await?;
    ctx.progress.line(format!(
        "updated internet-gateway {name}: attached to {vpc_id}"
    ));
    Ok(id)
}
