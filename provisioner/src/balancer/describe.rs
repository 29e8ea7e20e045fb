//! Reads the ELB with its attributes, policy, tags and instance health.

use anyhow::{Context as _, Result};

use super::{Current, Elb, HealthCheckRule, ListenerRule, SCHEME};
use crate::aws::{AwsError, AwsResultExt};
use crate::context::Ctx;

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let name = ctx.spec.elb_name();
    let policy_name = ctx.spec.name("proxy-protocol");
    let elb = describe(ctx, &name, &policy_name).await?;
    Ok(Current { name, elb })
}

/// Reads the ELB, its attributes, policy, tags and instance health; None if absent.
pub(crate) async fn describe(ctx: &Ctx, name: &str, policy_name: &str) -> Result<Option<Elb>> {
    let op = format!("describe elb {name}");
    let out = match ctx
        .elb
        .describe_load_balancers()
        .load_balancer_names(name)
        .send()
        .await
        .aws(&op)
    {
        Ok(out) => out,
        Err(e) if AwsError::code_of(&e) == Some("LoadBalancerNotFound") => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(lb) = out
        .load_balancer_descriptions()
        .iter()
        .find(|d| d.load_balancer_name() == Some(name))
    else {
        return Ok(None);
    };
    let (attrs, policies, tags, health) = tokio::try_join!(
        async {
            ctx.elb
                .describe_load_balancer_attributes()
                .load_balancer_name(name)
                .send()
                .await
                .aws(format!("describe attributes of elb {name}"))
        },
        async {
            ctx.elb
                .describe_load_balancer_policies()
                .load_balancer_name(name)
                .send()
                .await
                .aws(format!("describe policies of elb {name}"))
        },
        async {
            ctx.elb
                .describe_tags()
                .load_balancer_names(name)
                .send()
                .await
                .aws(format!("describe tags of elb {name}"))
        },
        async {
            ctx.elb
                .describe_instance_health()
                .load_balancer_name(name)
                .send()
                .await
                .aws(format!("describe instance health of elb {name}"))
        },
    )?;
    let attrs = attrs.load_balancer_attributes();
    let draining = attrs.and_then(|a| a.connection_draining());
    let policy = policies
        .policy_descriptions()
        .iter()
        .find(|p| p.policy_name() == Some(policy_name))
        .map(|p| {
            let mut text = p.policy_type_name().unwrap_or("(no type)").to_string();
            for a in p.policy_attribute_descriptions() {
                let (k, v) = (
                    a.attribute_name().unwrap_or(""),
                    a.attribute_value().unwrap_or(""),
                );
                text.push_str(&format!(" {k}={v}"));
            }
            text
        });
    let mut listeners: Vec<ListenerRule> = lb
        .listener_descriptions()
        .iter()
        .filter_map(|d| d.listener())
        .map(|l| ListenerRule {
            protocol: l.protocol().to_ascii_uppercase(),
            port: l.load_balancer_port(),
            instance_protocol: l
                .instance_protocol()
                .unwrap_or(l.protocol())
                .to_ascii_uppercase(),
            instance_port: l.instance_port(),
        })
        .collect();
    listeners.sort();
    let mut subnets = lb.subnets().to_vec();
    subnets.sort();
    Ok(Some(Elb {
        name: name.to_string(),
        dns_name: lb
            .dns_name()
            .with_context(|| format!("elb {name}: DescribeLoadBalancers gave no DNSName"))?
            .to_string(),
        canonical_hosted_zone_id: lb
            .canonical_hosted_zone_name_id()
            .filter(|z| !z.is_empty())
            .map(str::to_string),
        scheme: lb.scheme().unwrap_or(SCHEME).to_string(),
        listeners,
        subnets,
        security_groups: lb.security_groups().to_vec(),
        health_check: lb.health_check().map(|h| HealthCheckRule {
            target: h.target().to_string(),
            interval: h.interval(),
            timeout: h.timeout(),
            healthy: h.healthy_threshold(),
            unhealthy: h.unhealthy_threshold(),
        }),
        cross_zone: attrs
            .and_then(|a| a.cross_zone_load_balancing())
            .is_some_and(|c| c.enabled()),
        draining: draining
            .filter(|d| d.enabled())
            .map(|d| d.timeout().unwrap_or(300)),
        idle_timeout: attrs
            .and_then(|a| a.connection_settings())
            .map(|c| c.idle_timeout()),
        policy,
        backend_policies: lb
            .backend_server_descriptions()
            .iter()
            .filter_map(|b| Some((b.instance_port()?, b.policy_names().to_vec())))
            .collect(),
        tags: tags
            .tag_descriptions()
            .iter()
            .filter(|t| t.load_balancer_name() == Some(name))
            .flat_map(|t| t.tags())
            .map(|t| (t.key().to_string(), t.value().unwrap_or("").to_string()))
            .collect(),
        instance_health: health
            .instance_states()
            .iter()
            .filter_map(|s| {
                Some((
                    s.instance_id()?.to_string(),
                    s.state().unwrap_or("Unknown").to_string(),
                ))
            })
            .collect(),
    }))
}
