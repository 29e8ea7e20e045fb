//! Route tables: the default route and the subnet associations.

use anyhow::{Context as _, Result};
use aws_sdk_ec2::types::ResourceType;

use crate::aws::AwsResultExt;
use crate::context::Ctx;

use super::{retry_on, Current};

/// A default route's target: id and name.
pub(super) enum Target<'a> {
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

/// The table `name` with 0.0.0.0/0 -> `target`, associated with exactly `subnets`
/// (id, name).
pub(super) async fn converge_route_table(
    ctx: &Ctx,
    current: &Current,
    vpc_id: &str,
    name: &str,
    target: Target<'_>,
    subnets: &[(&str, String)],
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
            let codes = [
                "InvalidRouteTableID.NotFound",
                "InvalidGatewayID.NotFound",
                "InvalidNatGatewayID.NotFound",
            ];
            retry_on(ctx, &format!("route-table {name}"), &codes, || async {
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
                .aws(format!("create {op}"))
            })
            .await?;
        }
        ctx.progress.line(format!(
            "updated route-table {name}: 0.0.0.0/0 -> {}",
            target.label()
        ));
    }

    let associated: Vec<(String, String)> =
        existing.map(|t| t.associations.clone()).unwrap_or_default();
    for (subnet, subnet_name) in subnets {
        if associated.iter().any(|(_, s)| s == subnet) {
            continue;
        }
        // A subnet has at most one explicit association: move it if it has one.
        let elsewhere = current
            .route_tables
            .iter()
            .filter(|t| t.vpc_id == vpc_id && t.id != id)
            .find_map(|t| t.associations.iter().find(|(_, s)| s == subnet));
        let label = format!("{subnet_name} ({subnet})");
        match elsewhere {
            Some((association, _)) => {
                ctx.ec2
                    .replace_route_table_association()
                    .association_id(association)
                    .route_table_id(&id)
                    .send()
                    .await
                    .aws(format!("move subnet {label} to route-table {name}"))?;
            }
            None => {
                let codes = ["InvalidRouteTableID.NotFound", "InvalidSubnetID.NotFound"];
                retry_on(ctx, &format!("route-table {name}"), &codes, || async {
                    ctx.ec2
                        .associate_route_table()
                        .route_table_id(&id)
                        .subnet_id(*subnet)
                        .send()
                        .await
                        .aws(format!("associate subnet {label} with route-table {name}"))
                })
                .await?;
            }
        }
        ctx.progress
            .line(format!("updated route-table {name}: associated {label}"));
    }
    for (association, subnet) in &associated {
        if subnets.iter().any(|(s, _)| s == subnet) {
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
