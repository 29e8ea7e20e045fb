//! Elastic IPs, NAT gateways and the private route tables.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_ec2::types::{DomainType, ResourceType};

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::Poll;

use super::delete::{delete_nats, release_eips};
use super::desired::*;
use super::routes::{converge_route_table, Target};
use super::{describe_nats, retry_on, Current, Network};

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
        let codes = ["InvalidSubnetID.NotFound", "InvalidAllocationID.NotFound"];
        let out = retry_on(ctx, &format!("nat-gateway {name}"), &codes, || async {
            ctx.ec2
                .create_nat_gateway()
                .subnet_id(&subnet.id)
                .allocation_id(&allocation)
                .tag_specifications(ctx.ec2_tags(ResourceType::Natgateway, &name))
                .send()
                .await
                .aws(format!("create nat-gateway {name}"))
        })
        .await?;
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
        let subnets = [(subnet.id.as_str(), private_subnet_name(spec, az))];
        converge_route_table(ctx, current, vpc_id, &name, target, &subnets).await?;
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
