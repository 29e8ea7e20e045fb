//! The network the spec wants (names, CIDRs, which NAT serves which AZ), the
//! comparisons `plan` and `converge` share, and `plan` itself.

use crate::context::Ctx;
use crate::plan::{Change, Diff};
use crate::spec::{NatMode, Spec};

use super::{Current, FoundEip, FoundIgw, FoundNat, FoundRouteTable, FoundSubnet, FoundVpc};

pub(crate) fn vpc_name(spec: &Spec) -> String {
    spec.name("vpc")
}
pub(crate) fn public_subnet_name(spec: &Spec, az: &str) -> String {
    spec.name(&format!("public-{az}"))
}
pub(crate) fn private_subnet_name(spec: &Spec, az: &str) -> String {
    spec.name(&format!("private-{az}"))
}
pub(crate) fn igw_name(spec: &Spec) -> String {
    spec.name("igw")
}
pub(crate) fn public_table_name(spec: &Spec) -> String {
    spec.name("public")
}
pub(crate) fn private_table_name(spec: &Spec, az: &str) -> String {
    spec.name(&format!("private-{az}"))
}
/// Name of both the NAT gateway and its Elastic IP in `az`.
pub(crate) fn nat_name(spec: &Spec, az: &str) -> String {
    spec.name(&format!("nat-{az}"))
}

/// The AZs that get a NAT gateway: all (`per_az`) or the first (`single`).
pub(crate) fn nat_azs<'a>(spec: &Spec, azs: &'a [String]) -> &'a [String] {
    match spec.config.nat {
        NatMode::PerAz => azs,
        NatMode::Single => &azs[..azs.len().min(1)],
    }
}

/// The AZ whose NAT gateway the private subnet of `azs[i]` routes through.
pub(crate) fn nat_az_for<'a>(spec: &Spec, azs: &'a [String], i: usize) -> &'a str {
    match spec.config.nat {
        NatMode::PerAz => &azs[i],
        NatMode::Single => &azs[0],
    }
}

pub(crate) fn vpc_diff(spec: &Spec, vpc: &FoundVpc) -> Diff {
    let mut d = Diff::default();
    d.field(
        "cidr",
        Some(vpc.cidr.as_str()),
        Some(spec.config.vpc_cidr.as_str()),
    )
    .field("enable_dns_support", Some(vpc.dns_support), Some(true))
    .field("enable_dns_hostnames", Some(vpc.dns_hostnames), Some(true));
    d
}

pub(crate) fn subnet_diff(subnet: &FoundSubnet, az: &str, cidr: &str) -> Diff {
    let mut d = Diff::default();
    d.field("cidr", Some(subnet.cidr.as_str()), Some(cidr))
        .field("availability_zone", Some(subnet.az.as_str()), Some(az));
    d
}

/// `vpc`: the stack's VPC label when it exists, else its name.
pub(crate) fn igw_diff(igw: &FoundIgw, vpc: &str) -> Diff {
    let attached = (!igw.attached.is_empty()).then(|| igw.attached.join(","));
    let mut d = Diff::default();
    d.field("attachment", attached.as_deref(), Some(vpc));
    d
}

/// The default route's target and the associated subnets, as labels (`name (id)`).
pub(crate) fn route_table_diff(
    current: &Current,
    table: &FoundRouteTable,
    target: &str,
    subnets: &[String],
) -> Diff {
    let route = table.default_route.as_ref().map(|(id, blackhole)| {
        let label = current.label(id);
        if *blackhole {
            format!("{label} (blackhole)")
        } else {
            label
        }
    });
    let associated: Vec<String> = table
        .associations
        .iter()
        .map(|(_, subnet)| current.label(subnet))
        .collect();
    let mut d = Diff::default();
    d.field("route 0.0.0.0/0", route.as_deref(), Some(target))
        .set("associations", &associated, subnets);
    d
}

/// The label of an existing resource `id`, or the name of one still to create.
fn label_or(current: &Current, id: Option<&str>, name: &str) -> String {
    id.map(|id| current.label(id))
        .unwrap_or_else(|| name.to_string())
}

/// NAT gateways and Elastic IPs of the stack's VPC that the spec no longer wants:
/// other AZs (after `per_az` -> `single`), duplicates, and the EIPs of those.
pub(crate) fn extras<'a>(
    spec: &Spec,
    current: &'a Current,
    vpc_id: Option<&str>,
    azs: &[String],
) -> (Vec<&'a FoundNat>, Vec<&'a FoundEip>) {
    let Some(vpc_id) = vpc_id else {
        return (Vec::new(), Vec::new());
    };
    let names: Vec<String> = nat_azs(spec, azs)
        .iter()
        .map(|az| nat_name(spec, az))
        .collect();
    let kept: Vec<&FoundNat> = names
        .iter()
        .filter_map(|n| current.nat(n, vpc_id))
        .collect();
    let extra_nats: Vec<&FoundNat> = current
        .nats
        .iter()
        .filter(|n| n.is_live() && n.vpc_id == vpc_id && !kept.iter().any(|k| k.id == n.id))
        .collect();
    let mut kept_eips: Vec<&str> = kept
        .iter()
        .flat_map(|n| n.allocation_ids.iter().map(String::as_str))
        .collect();
    for name in &names {
        if current.nat(name, vpc_id).is_none() {
            kept_eips.extend(current.eip(name).map(|e| e.allocation_id.as_str()));
        }
    }
    let extra_eips = current
        .eips
        .iter()
        .filter(|e| !kept_eips.contains(&e.allocation_id.as_str()))
        .filter(|e| {
            // In use by a NAT that stays (e.g. one of another VPC): not ours to release.
            !current.nats.iter().any(|n| {
                n.allocation_ids.contains(&e.allocation_id)
                    && !extra_nats.iter().any(|x| x.id == n.id)
                    && n.state != "failed"
            })
        })
        .collect();
    (extra_nats, extra_eips)
}

fn named(name: &Option<String>, id: &str) -> String {
    match name {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

pub fn plan(ctx: &Ctx, current: &Current, azs: &[String]) -> Vec<Change> {
    let spec = &ctx.spec;
    let mut out = Vec::new();
    let vpc = current.vpc();
    let vpc_id = vpc.map(|v| v.id.as_str());
    let name = vpc_name(spec);
    out.push(match vpc {
        None => Change::create(format!("vpc {name}")),
        Some(v) => vpc_diff(spec, v).into_change(format!("vpc {name}")),
    });

    let mut public_labels = Vec::new();
    let mut private_labels = Vec::new();
    for (i, az) in azs.iter().enumerate() {
        for public in [true, false] {
            let name = if public {
                public_subnet_name(spec, az)
            } else {
                private_subnet_name(spec, az)
            };
            let found = current.subnet(&name);
            out.push(match found {
                None => Change::create(format!("subnet {name}")),
                Some(s) => subnet_diff(s, az, &spec.subnet_cidr(i, public))
                    .into_change(format!("subnet {name}")),
            });
            let label = label_or(current, found.map(|s| s.id.as_str()), &name);
            if public {
                public_labels.push(label);
            } else {
                private_labels.push(label);
            }
        }
    }

    let igw_name = igw_name(spec);
    let igw = current.igw(&igw_name);
    out.push(match igw {
        None => Change::create(format!("internet-gateway {igw_name}")),
        Some(g) => igw_diff(g, vpc_id.unwrap_or(&vpc_name(spec)))
            .into_change(format!("internet-gateway {igw_name}")),
    });
    let public_name = public_table_name(spec);
    let igw_label = label_or(current, igw.map(|g| g.id.as_str()), &igw_name);
    out.push(
        match vpc_id.and_then(|v| current.route_table(&public_name, v)) {
            None => Change::create(format!("route-table {public_name}")),
            Some(t) => route_table_diff(current, t, &igw_label, &public_labels)
                .into_change(format!("route-table {public_name}")),
        },
    );

    for az in nat_azs(spec, azs) {
        let name = nat_name(spec, az);
        let nat = vpc_id.and_then(|v| current.nat(&name, v));
        out.push(if current.eip(&name).is_none() && nat.is_none() {
            Change::create(format!("elastic-ip {name}"))
        } else {
            Change::compare(format!("elastic-ip {name}"), Vec::new())
        });
        out.push(match nat {
            None => Change::create(format!("nat-gateway {name}")),
            Some(_) => Change::compare(format!("nat-gateway {name}"), Vec::new()),
        });
    }
    for (i, az) in azs.iter().enumerate() {
        let name = private_table_name(spec, az);
        let nat = nat_name(spec, nat_az_for(spec, azs, i));
        let nat_label = label_or(
            current,
            vpc_id
                .and_then(|v| current.nat(&nat, v))
                .map(|n| n.id.as_str()),
            &nat,
        );
        out.push(match vpc_id.and_then(|v| current.route_table(&name, v)) {
            None => Change::create(format!("route-table {name}")),
            Some(t) => route_table_diff(current, t, &nat_label, &private_labels[i..=i])
                .into_change(format!("route-table {name}")),
        });
    }

    let (extra_nats, extra_eips) = extras(spec, current, vpc_id, azs);
    for n in extra_nats {
        out.push(Change::delete(format!(
            "nat-gateway {}",
            named(&n.name, &n.id)
        )));
    }
    for e in extra_eips {
        out.push(Change::delete(format!(
            "elastic-ip {}",
            named(&e.name, &e.allocation_id)
        )));
    }
    out
}
