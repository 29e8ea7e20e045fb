//! Deletes the network in reverse order; missing things are fine.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::aws::{AwsError, AwsResultExt};
use crate::context::{ec2_name, Ctx};
use crate::progress::Poll;

use super::{absent_on, describe_nats, filter, Current, FoundEip, FoundNat};

/// Deletes everything of `current`, in reverse order (waits for NAT gateways to go).
/// The security groups, ELB, RDS and ASG must be gone already.
pub async fn delete(ctx: &Ctx, current: &Current) -> Result<()> {
    let nats: Vec<&FoundNat> = current.nats.iter().collect();
    delete_nats(ctx, &nats).await?;
    let eips: Vec<&FoundEip> = current.eips.iter().collect();
    release_eips(ctx, &eips).await?;

    for t in current.route_tables.iter().filter(|t| t.tagged && !t.main) {
        let name = t.name.clone().unwrap_or_else(|| t.id.clone());
        for (association, _) in &t.associations {
            let r = ctx
                .ec2
                .disassociate_route_table()
                .association_id(association)
                .send()
                .await
                .aws(format!(
                    "disassociate {association} from route-table {name}"
                ));
            absent_on(r, &["InvalidAssociationID.NotFound"])?;
        }
        let r = ctx
            .ec2
            .delete_route_table()
            .route_table_id(&t.id)
            .send()
            .await
            .aws(format!("delete route-table {name}"));
        if absent_on(r, &["InvalidRouteTableID.NotFound"])?.is_some() {
            ctx.progress
                .line(format!("deleted route-table {name} ({})", t.id));
        }
    }

    for g in &current.igws {
        let name = g.name.clone().unwrap_or_else(|| g.id.clone());
        for vpc in &g.attached {
            let r = ctx
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(&g.id)
                .vpc_id(vpc)
                .send()
                .await
                .aws(format!("detach internet-gateway {name} from {vpc}"));
            absent_on(
                r,
                &["Gateway.NotAttached", "InvalidInternetGatewayID.NotFound"],
            )?;
        }
        let r = ctx
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(&g.id)
            .send()
            .await
            .aws(format!("delete internet-gateway {name}"));
        if absent_on(r, &["InvalidInternetGatewayID.NotFound"])?.is_some() {
            ctx.progress
                .line(format!("deleted internet-gateway {name} ({})", g.id));
        }
    }

    for s in &current.subnets {
        let name = s.name.clone().unwrap_or_else(|| s.id.clone());
        let r = ctx.ec2.delete_subnet().subnet_id(&s.id).send().await;
        let r = r.aws(format!("delete subnet {name} ({})", s.id));
        match absent_on(r, &["InvalidSubnetID.NotFound"]) {
            Ok(Some(_)) => ctx
                .progress
                .line(format!("deleted subnet {name} ({})", s.id)),
            Ok(None) => {}
            Err(e) if AwsError::code_of(&e) == Some("DependencyViolation") => {
                let users = in_use(ctx, "subnet-id", &s.id).await;
                bail!("{e}\n  subnet {name} is still used by: {users}; delete those first");
            }
            Err(e) => return Err(e),
        }
    }

    for v in &current.vpcs {
        let name = v.name.clone().unwrap_or_else(|| v.id.clone());
        let r = ctx.ec2.delete_vpc().vpc_id(&v.id).send().await;
        let r = r.aws(format!("delete vpc {name} ({})", v.id));
        match absent_on(r, &["InvalidVpcID.NotFound"]) {
            Ok(Some(_)) => ctx.progress.line(format!("deleted vpc {name} ({})", v.id)),
            Ok(None) => {}
            Err(e) if AwsError::code_of(&e) == Some("DependencyViolation") => {
                let users = in_use(ctx, "vpc-id", &v.id).await;
                bail!("{e}\n  vpc {name} still contains: {users}; delete those first");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes `nats` and waits until they are gone.
pub(super) async fn delete_nats(ctx: &Ctx, nats: &[&FoundNat]) -> Result<()> {
    if nats.is_empty() {
        return Ok(());
    }
    for n in nats {
        if n.state == "deleting" {
            continue;
        }
        let name = n.name.clone().unwrap_or_else(|| n.id.clone());
        let r = ctx
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(&n.id)
            .send()
            .await
            .aws(format!("delete nat-gateway {name}"));
        if absent_on(r, &["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"])?.is_some() {
            ctx.progress
                .line(format!("deleted nat-gateway {name} ({})", n.id));
        }
    }
    let ids: Vec<String> = nats.iter().map(|n| n.id.clone()).collect();
    let label = if nats.len() == 1 {
        format!(
            "nat-gateway {}",
            nats[0].name.as_deref().unwrap_or(&nats[0].id)
        )
    } else {
        format!("{} nat-gateways", nats.len())
    };
    ctx.progress
        .wait(&label, Duration::from_secs(900), || async {
            let left = describe_nats(ctx, Some(&ids)).await?;
            Ok(match left.first() {
                None => Poll::Ready(()),
                Some(n) => Poll::Pending(format!("{} {}", n.id, n.state)),
            })
        })
        .await?;
    // AWS removes a NAT gateway's network interface with it; moto leaves it behind.
    for eni in nats.iter().flat_map(|n| &n.enis) {
        let _ = ctx
            .ec2
            .delete_network_interface()
            .network_interface_id(eni)
            .send()
            .await;
    }
    Ok(())
}

/// Releases `eips`, retrying while AWS still shows them attached to a deleted NAT.
pub(super) async fn release_eips(ctx: &Ctx, eips: &[&FoundEip]) -> Result<()> {
    for e in eips {
        let name = e.name.clone().unwrap_or_else(|| e.allocation_id.clone());
        let released = ctx
            .progress
            .wait(
                &format!("elastic-ip {name}"),
                Duration::from_secs(120),
                || async {
                    let r = ctx
                        .ec2
                        .release_address()
                        .allocation_id(&e.allocation_id)
                        .send()
                        .await
                        .aws(format!("release elastic-ip {name}"));
                    match absent_on(r, &["InvalidAllocationID.NotFound"]) {
                        Ok(found) => Ok(Poll::Ready(found.is_some())),
                        Err(err) if AwsError::code_of(&err) == Some("InvalidIPAddress.InUse") => {
                            Ok(Poll::Pending("still associated".into()))
                        }
                        Err(err) => Err(err),
                    }
                },
            )
            .await?;
        if released {
            ctx.progress
                .line(format!("deleted elastic-ip {name} ({})", e.allocation_id));
        }
    }
    Ok(())
}

/// What still uses a VPC or subnet (`key` is `vpc-id` or `subnet-id`), for errors.
async fn in_use(ctx: &Ctx, key: &str, id: &str) -> String {
    let mut found = Vec::new();
    if let Ok(out) = ctx
        .ec2
        .describe_network_interfaces()
        .filters(filter(key, id))
        .send()
        .await
    {
        for eni in out.network_interfaces() {
            let what = eni
                .description()
                .filter(|d| !d.is_empty())
                .or(eni.interface_type().map(|t| t.as_str()))
                .unwrap_or("unknown");
            found.push(format!(
                "network interface {} ({what})",
                eni.network_interface_id().unwrap_or("?")
            ));
        }
    }
    if key == "vpc-id" {
        if let Ok(out) = ctx
            .ec2
            .describe_security_groups()
            .filters(filter(key, id))
            .send()
            .await
        {
            for g in out.security_groups() {
                if g.group_name() != Some("default") {
                    found.push(format!(
                        "security group {} ({})",
                        g.group_name().unwrap_or("?"),
                        g.group_id().unwrap_or("?")
                    ));
                }
            }
        }
        if let Ok(out) = ctx
            .ec2
            .describe_subnets()
            .filters(filter(key, id))
            .send()
            .await
        {
            for s in out.subnets() {
                let name = ec2_name(s.tags()).or(s.subnet_id()).unwrap_or("?");
                found.push(format!("subnet {name}"));
            }
        }
        let igws = ctx
            .ec2
            .describe_internet_gateways()
            .filters(filter("attachment.vpc-id", id))
            .send()
            .await;
        if let Ok(out) = igws {
            for g in out.internet_gateways() {
                found.push(format!(
                    "internet gateway {}",
                    g.internet_gateway_id().unwrap_or("?")
                ));
            }
        }
        if let Ok(out) = ctx
            .ec2
            .describe_route_tables()
            .filters(filter(key, id))
            .send()
            .await
        {
            for t in out.route_tables() {
                if !t.associations().iter().any(|a| a.main() == Some(true)) {
                    found.push(format!("route table {}", t.route_table_id().unwrap_or("?")));
                }
            }
        }
    }
    if found.is_empty() {
        "nothing visible yet (AWS may still be releasing network interfaces; run again in a minute)"
            .to_string()
    } else {
        found.join(", ")
    }
}
