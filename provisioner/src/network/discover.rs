//! Finds the stack's network resources by the stack tag.

use anyhow::{Context as _, Result};
use aws_sdk_ec2::types::VpcAttributeName;

use crate::aws::AwsResultExt;
use crate::context::{ec2_name, Ctx};

use super::*;

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
