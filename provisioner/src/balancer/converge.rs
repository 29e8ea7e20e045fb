//! Creates the ELB when missing and repairs each kind of drift with its own API call.

use std::collections::BTreeSet;

use anyhow::{bail, Context as _, Result};
use aws_sdk_elasticloadbalancing::types::{
    ConnectionDraining, ConnectionSettings, CrossZoneLoadBalancing, HealthCheck, Listener,
    LoadBalancerAttributes, PolicyAttribute, Tag,
};

use super::{
    describe, differences, Balancer, Current, Desired, Elb, ListenerRule, CROSS_ZONE, F_CROSS_ZONE,
    F_DRAINING, F_GROUPS, F_HEALTH, F_IDLE, F_LISTENERS, F_POLICY, F_PROXY_PORTS, F_SCHEME,
    F_SUBNETS, F_TAGS, IDLE_TIMEOUT, PROXY_POLICY_ATTRIBUTE, PROXY_POLICY_TYPE, SCHEME,
};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::network::Network;
use crate::security::SecurityGroups;

pub async fn converge(
    ctx: &Ctx,
    current: &Current,
    net: &Network,
    groups: &SecurityGroups,
) -> Result<Balancer> {
    let want = Desired::new(ctx, Some(net), Some(groups));
    let name = want.name.clone();
    let (elb, fresh) = match &current.elb {
        Some(elb) => (elb.clone(), false),
        None => {
            create(ctx, &want).await?;
            let elb = describe(ctx, &name, &want.policy_name)
                .await?
                .with_context(|| format!("elb {name}: not found right after its creation"))?;
            (elb, true)
        }
    };
    let repaired = repair(ctx, &elb, &want).await?;
    if fresh {
        ctx.progress
            .line(format!("created elb {name} ({})", elb.dns_name));
    } else if !repaired.is_empty() {
        ctx.progress
            .line(format!("updated elb {name}: {}", repaired.join(", ")));
    }
    Ok(Balancer {
        name,
        dns_name: elb.dns_name,
        canonical_hosted_zone_id: elb.canonical_hosted_zone_id,
    })
}

fn listener(rule: &ListenerRule) -> Result<Listener> {
    Ok(Listener::builder()
        .protocol(&rule.protocol)
        .load_balancer_port(rule.port)
        .instance_protocol(&rule.instance_protocol)
        .instance_port(rule.instance_port)
        .build()?)
}

async fn create(ctx: &Ctx, want: &Desired) -> Result<()> {
    let subnets = want.subnets.clone().unwrap_or_default();
    if subnets.is_empty() {
        bail!("elb {}: no public subnets to place it in", want.name);
    }
    let mut req = ctx
        .elb
        .create_load_balancer()
        .load_balancer_name(&want.name)
        .scheme(SCHEME)
        .set_subnets(Some(subnets))
        .set_security_groups(want.security_groups.clone());
    for rule in &want.listeners {
        req = req.listeners(listener(rule)?);
    }
    for (key, value) in &want.tags {
        req = req.tags(Tag::builder().key(key).value(value).build()?);
    }
    req.send().await.aws(format!("create elb {}", want.name))?;
    Ok(())
}

/// Repairs every field `differences` reports; returns the repaired field names.
async fn repair(ctx: &Ctx, elb: &Elb, want: &Desired) -> Result<Vec<String>> {
    let drift: BTreeSet<String> = differences(elb, want)
        .into_iter()
        .map(|f| f.field)
        .collect();
    let name = want.name.as_str();
    let elb_api = &ctx.elb;
    if drift.contains(F_SCHEME) {
        bail!(
            "elb {name} is {}, the stack needs {SCHEME}; the scheme cannot be changed: \
             delete the ELB (e.g. `aws elb delete-load-balancer --load-balancer-name {name}`) \
             and run again to recreate it",
            elb.scheme
        );
    }
    if drift.contains(F_TAGS) {
        let mut req = elb_api.add_tags().load_balancer_names(name);
        for (key, value) in &want.tags {
            req = req.tags(Tag::builder().key(key).value(value).build()?);
        }
        req.send().await.aws(format!("tag elb {name}"))?;
    }
    if let (true, Some(groups)) = (drift.contains(F_GROUPS), &want.security_groups) {
        elb_api
            .apply_security_groups_to_load_balancer()
            .load_balancer_name(name)
            .set_security_groups(Some(groups.clone()))
            .send()
            .await
            .aws(format!("apply security groups to elb {name}"))?;
    }
    if let (true, Some(subnets)) = (drift.contains(F_SUBNETS), &want.subnets) {
        repair_subnets(ctx, elb, subnets).await?;
    }
    if drift.contains(F_LISTENERS) {
        repair_listeners(ctx, elb, want).await?;
    }
    if drift.contains(F_HEALTH) {
        let h = &want.health_check;
        let check = HealthCheck::builder()
            .target(&h.target)
            .interval(h.interval)
            .timeout(h.timeout)
            .healthy_threshold(h.healthy)
            .unhealthy_threshold(h.unhealthy)
            .build()?;
        elb_api
            .configure_health_check()
            .load_balancer_name(name)
            .health_check(check)
            .send()
            .await
            .aws(format!("configure health check of elb {name}"))?;
    }
    if [F_CROSS_ZONE, F_DRAINING, F_IDLE]
        .iter()
        .any(|f| drift.contains(*f))
    {
        let draining = ConnectionDraining::builder().enabled(want.draining.is_some());
        let draining = match want.draining {
            Some(timeout) => draining.timeout(timeout),
            None => draining,
        };
        let attrs = LoadBalancerAttributes::builder()
            .cross_zone_load_balancing(
                CrossZoneLoadBalancing::builder()
                    .enabled(CROSS_ZONE)
                    .build(),
            )
            .connection_draining(draining.build())
            .connection_settings(
                ConnectionSettings::builder()
                    .idle_timeout(IDLE_TIMEOUT)
                    .build()?,
            )
            .build();
        elb_api
            .modify_load_balancer_attributes()
            .load_balancer_name(name)
            .load_balancer_attributes(attrs)
            .send()
            .await
            .aws(format!("modify attributes of elb {name}"))?;
    }
    if drift.contains(F_POLICY) || drift.contains(F_PROXY_PORTS) {
        repair_proxy_protocol(ctx, elb, want, drift.contains(F_POLICY)).await?;
    }
    Ok(drift.into_iter().collect())
}

/// Detaches extra subnets and attaches missing ones; never leaves the ELB without one.
async fn repair_subnets(ctx: &Ctx, elb: &Elb, subnets: &[String]) -> Result<()> {
    let name = &elb.name;
    let missing: Vec<String> = subnets
        .iter()
        .filter(|s| !elb.subnets.contains(s))
        .cloned()
        .collect();
    let extra: Vec<String> = elb
        .subnets
        .iter()
        .filter(|s| !subnets.contains(s))
        .cloned()
        .collect();
    let attach = || async {
        if missing.is_empty() {
            return Ok(());
        }
        ctx.elb
            .attach_load_balancer_to_subnets()
            .load_balancer_name(name)
            .set_subnets(Some(missing.clone()))
            .send()
            .await
            .aws(format!("attach elb {name} to subnets"))
            .map(|_| ())
    };
    let detach = || async {
        if extra.is_empty() {
            return Ok(());
        }
        ctx.elb
            .detach_load_balancer_from_subnets()
            .load_balancer_name(name)
            .set_subnets(Some(extra.clone()))
            .send()
            .await
            .aws(format!("detach elb {name} from subnets"))
            .map(|_| ())
    };
    // One subnet per AZ: detach first, unless that would leave none.
    if extra.len() < elb.subnets.len() {
        detach().await?;
        attach().await
    } else {
        attach().await?;
        detach().await
    }
}

/// Deletes listeners the spec lacks (or that map a port differently), adds missing ones.
async fn repair_listeners(ctx: &Ctx, elb: &Elb, want: &Desired) -> Result<()> {
    let name = &elb.name;
    let extra: Vec<i32> = elb
        .listeners
        .iter()
        .filter(|l| !want.listeners.contains(l))
        .map(|l| l.port)
        .collect();
    if !extra.is_empty() {
        ctx.elb
            .delete_load_balancer_listeners()
            .load_balancer_name(name)
            .set_load_balancer_ports(Some(extra.clone()))
            .send()
            .await
            .aws(format!("delete listeners of elb {name}"))?;
    }
    let kept: Vec<&ListenerRule> = elb
        .listeners
        .iter()
        .filter(|l| !extra.contains(&l.port))
        .collect();
    let mut req = ctx
        .elb
        .create_load_balancer_listeners()
        .load_balancer_name(name);
    let mut any = false;
    for rule in want.listeners.iter().filter(|l| !kept.contains(l)) {
        req = req.listeners(listener(rule)?);
        any = true;
    }
    if any {
        req.send()
            .await
            .aws(format!("create listeners of elb {name}"))?;
    }
    Ok(())
}

/// Creates (or, when wrong, recreates) the policy and sets it on exactly the proxy ports,
/// keeping any other policy a backend port has.
async fn repair_proxy_protocol(
    ctx: &Ctx,
    elb: &Elb,
    want: &Desired,
    bad_policy: bool,
) -> Result<()> {
    let name = &elb.name;
    let policy = &want.policy_name;
    let mut backends = elb.backend_policies.clone();
    let set = |port: i32, names: Vec<String>| async move {
        ctx.elb
            .set_load_balancer_policies_for_backend_server()
            .load_balancer_name(name)
            .instance_port(port)
            .set_policy_names(Some(names))
            .send()
            .await
            .aws(format!("set policies of backend port {port} of elb {name}"))
            .map(|_| ())
    };
    if bad_policy {
        if elb.policy.is_some() {
            // A policy cannot be modified: take it off the ports, delete, recreate.
            for (port, names) in backends.iter_mut() {
                if names.contains(policy) {
                    names.retain(|n| n != policy);
                    set(*port, names.clone()).await?;
                }
            }
            ctx.elb
                .delete_load_balancer_policy()
                .load_balancer_name(name)
                .policy_name(policy)
                .send()
                .await
                .aws(format!("delete policy {policy} of elb {name}"))?;
        }
        ctx.elb
            .create_load_balancer_policy()
            .load_balancer_name(name)
            .policy_name(policy)
            .policy_type_name(PROXY_POLICY_TYPE)
            .policy_attributes(
                PolicyAttribute::builder()
                    .attribute_name(PROXY_POLICY_ATTRIBUTE.0)
                    .attribute_value(PROXY_POLICY_ATTRIBUTE.1)
                    .build(),
            )
            .send()
            .await
            .aws(format!("create policy {policy} of elb {name}"))?;
    }
    for port in &want.proxy_ports {
        let names = backends.entry(*port).or_default();
        if !names.contains(policy) {
            names.push(policy.clone());
            set(*port, names.clone()).await?;
        }
    }
    for (port, names) in backends.iter_mut() {
        if !want.proxy_ports.contains(port) && names.contains(policy) {
            names.retain(|n| n != policy);
            set(*port, names.clone()).await?;
        }
    }
    Ok(())
}
