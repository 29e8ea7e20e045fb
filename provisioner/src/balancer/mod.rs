//! Balancer: the classic ELB over the public subnets with TCP listeners 80->8000 and
//! 443->8443, a ProxyProtocolPolicyType policy on backend ports 8000 and 8443, the
//! health check HTTP:8001/status, cross-zone load balancing and connection draining.
//!
//! `mod.rs` discovers and compares; `converge.rs` creates and repairs.

mod converge;
mod describe;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::Result;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::network::Network;
use crate::plan::{Change, Diff, FieldDiff, Status};
use crate::progress::Poll;
use crate::security::SecurityGroups;
use crate::spec::{Spec, ELB_LISTENERS, HEALTH_CHECK_TARGET, PROXY_PROTOCOL_PORTS};

pub use converge::converge;
pub(crate) use describe::describe;
pub use describe::discover;

/// What DNS needs of the ELB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancer {
    pub name: String,
    pub dns_name: String,
    pub canonical_hosted_zone_id: Option<String>,
}

pub const SCHEME: &str = "internet-facing";
pub const PROXY_POLICY_TYPE: &str = "ProxyProtocolPolicyType";
/// The policy's one attribute: (name, value).
pub const PROXY_POLICY_ATTRIBUTE: (&str, &str) = ("ProxyProtocol", "true");
pub const HEALTH_INTERVAL: i32 = 10;
pub const HEALTH_TIMEOUT: i32 = 5;
pub const HEALTHY_THRESHOLD: i32 = 2;
pub const UNHEALTHY_THRESHOLD: i32 = 3;
pub const IDLE_TIMEOUT: i32 = 60;
pub const CROSS_ZONE: bool = true;
/// Listeners pass TCP through (TLS included) to the nodes.
pub const LISTENER_PROTOCOL: &str = "TCP";

// Plan field names; converge repairs by the same names.
const F_SCHEME: &str = "scheme";
const F_LISTENERS: &str = "listeners";
const F_SUBNETS: &str = "subnets";
const F_GROUPS: &str = "security_groups";
const F_HEALTH: &str = "health_check";
const F_CROSS_ZONE: &str = "cross_zone";
const F_DRAINING: &str = "connection_draining";
const F_IDLE: &str = "idle_timeout";
const F_POLICY: &str = "policy";
const F_PROXY_PORTS: &str = "proxy_protocol_ports";
const F_TAGS: &str = "tags";

/// One listener: `TCP 80 -> TCP 8000`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListenerRule {
    pub protocol: String,
    pub port: i32,
    pub instance_protocol: String,
    pub instance_port: i32,
}

impl fmt::Display for ListenerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} {}",
            self.protocol, self.port, self.instance_protocol, self.instance_port
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckRule {
    pub target: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy: i32,
    pub unhealthy: i32,
}

impl fmt::Display for HealthCheckRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} every {}s, timeout {}s, healthy {}, unhealthy {}",
            self.target, self.interval, self.timeout, self.healthy, self.unhealthy
        )
    }
}

/// The ELB as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elb {
    pub name: String,
    pub dns_name: String,
    pub canonical_hosted_zone_id: Option<String>,
    pub scheme: String,
    pub listeners: Vec<ListenerRule>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub health_check: Option<HealthCheckRule>,
    pub cross_zone: bool,
    /// Draining timeout in seconds; None when draining is off.
    pub draining: Option<i32>,
    pub idle_timeout: Option<i32>,
    /// The stack's proxy protocol policy (`type attr=value ...`), if it exists.
    pub policy: Option<String>,
    /// Policy names per backend (instance) port.
    pub backend_policies: BTreeMap<i32, Vec<String>>,
    pub tags: BTreeMap<String, String>,
    /// ELB health per instance id.
    pub instance_health: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The ELB's name (`<stack>-elb`).
    pub name: String,
    pub elb: Option<Elb>,
}

impl Current {
    pub fn balancer(&self) -> Option<Balancer> {
        self.elb.as_ref().map(|e| Balancer {
            name: e.name.clone(),
            dns_name: e.dns_name.clone(),
            canonical_hosted_zone_id: e.canonical_hosted_zone_id.clone(),
        })
    }
    /// ELB health per instance id (`InService`, `OutOfService`, ...).
    pub fn instance_health(&self) -> BTreeMap<String, String> {
        self.elb
            .as_ref()
            .map(|e| e.instance_health.clone())
            .unwrap_or_default()
    }
}

/// The ELB as the spec wants it. Subnets and groups are compared only when known.
#[derive(Debug, Clone)]
pub(crate) struct Desired {
    pub name: String,
    pub listeners: Vec<ListenerRule>,
    pub health_check: HealthCheckRule,
    pub draining: Option<i32>,
    pub policy_name: String,
    pub proxy_ports: Vec<i32>,
    pub tags: Vec<(String, String)>,
    pub subnets: Option<Vec<String>>,
    pub security_groups: Option<Vec<String>>,
}

impl Desired {
    pub fn new(ctx: &Ctx, net: Option<&Network>, groups: Option<&SecurityGroups>) -> Desired {
        Desired::for_spec(&ctx.spec, net, groups)
    }

    /// `new` from the spec alone (what `provisioner facts` prints).
    pub fn for_spec(
        spec: &Spec,
        net: Option<&Network>,
        groups: Option<&SecurityGroups>,
    ) -> Desired {
        let name = spec.elb_name();
        let timeout = spec.config.connection_draining_timeout;
        Desired {
            listeners: ELB_LISTENERS
                .iter()
                .map(|&(port, instance_port)| ListenerRule {
                    protocol: LISTENER_PROTOCOL.into(),
                    port: port.into(),
                    instance_protocol: LISTENER_PROTOCOL.into(),
                    instance_port: instance_port.into(),
                })
                .collect(),
            health_check: HealthCheckRule {
                target: HEALTH_CHECK_TARGET.into(),
                interval: HEALTH_INTERVAL,
                timeout: HEALTH_TIMEOUT,
                healthy: HEALTHY_THRESHOLD,
                unhealthy: UNHEALTHY_THRESHOLD,
            },
            draining: (timeout > 0).then_some(timeout),
            policy_name: spec.name("proxy-protocol"),
            proxy_ports: PROXY_PROTOCOL_PORTS.iter().map(|&p| p.into()).collect(),
            tags: spec
                .tags(&name)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            subnets: net.map(|n| n.public.iter().map(|s| s.id.clone()).collect()),
            security_groups: groups.map(|g| vec![g.elb.clone()]),
            name,
        }
    }

    /// How the policy reads in a plan: `ProxyProtocolPolicyType ProxyProtocol=true`.
    pub fn policy(&self) -> String {
        let (name, value) = PROXY_POLICY_ATTRIBUTE;
        format!("{PROXY_POLICY_TYPE} {name}={value}")
    }
}

fn draining_text(draining: Option<i32>) -> String {
    match draining {
        Some(s) => format!("on ({s}s)"),
        None => "off".into(),
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The fields where `elb` differs from `want`; plan shows them, converge repairs them.
pub(crate) fn differences(elb: &Elb, want: &Desired) -> Vec<FieldDiff> {
    let mut d = Diff::default();
    d.field(F_SCHEME, Some(elb.scheme.as_str()), Some(SCHEME));
    d.set(
        F_LISTENERS,
        &strings(&elb.listeners),
        &strings(&want.listeners),
    );
    if let Some(subnets) = &want.subnets {
        d.set(F_SUBNETS, &elb.subnets, subnets);
    }
    if let Some(groups) = &want.security_groups {
        d.set(F_GROUPS, &elb.security_groups, groups);
    }
    d.field(
        F_HEALTH,
        elb.health_check.as_ref(),
        Some(&want.health_check),
    );
    d.field(F_CROSS_ZONE, Some(elb.cross_zone), Some(CROSS_ZONE));
    d.field(
        F_DRAINING,
        Some(draining_text(elb.draining)),
        Some(draining_text(want.draining)),
    );
    d.field(F_IDLE, elb.idle_timeout, Some(IDLE_TIMEOUT));
    d.field(F_POLICY, elb.policy.clone(), Some(want.policy()));
    d.set(
        F_PROXY_PORTS,
        &strings(&proxy_ports(elb, &want.policy_name)),
        &strings(&want.proxy_ports),
    );
    let tag = |k: &str, v: &str| format!("{k}={v}");
    let have: Vec<String> = elb
        .tags
        .iter()
        .filter(|(k, _)| want.tags.iter().any(|(wk, _)| wk == *k))
        .map(|(k, v)| tag(k, v))
        .collect();
    let wanted: Vec<String> = want.tags.iter().map(|(k, v)| tag(k, v)).collect();
    d.set(F_TAGS, &have, &wanted);
    d.0
}

/// Backend ports carrying `policy`.
fn proxy_ports(elb: &Elb, policy: &str) -> Vec<i32> {
    elb.backend_policies
        .iter()
        .filter(|(_, names)| names.iter().any(|n| n == policy))
        .map(|(port, _)| *port)
        .collect()
}

/// Compares without knowing the subnets and the ELB security group: those are compared
/// by `plan_with` when the network and security groups are known.
pub fn plan(ctx: &Ctx, current: &Current) -> Vec<Change> {
    plan_with(ctx, current, None, None)
}

/// `plan`, also checking the ELB's subnets (`net.public`) and security group.
pub fn plan_with(
    ctx: &Ctx,
    current: &Current,
    net: Option<&Network>,
    groups: Option<&SecurityGroups>,
) -> Vec<Change> {
    let want = Desired::new(ctx, net, groups);
    let resource = format!("elb {}", want.name);
    let change = match &current.elb {
        None => Change::create(resource),
        Some(elb) => Diff(differences(elb, &want)).into_change(resource),
    };
    vec![change]
}

/// Deletes the ELB and waits until its network interfaces are gone, so that its
/// subnets and security group can go next.
pub async fn delete(ctx: &Ctx, current: &Current) -> Result<()> {
    let Some(elb) = &current.elb else {
        return Ok(());
    };
    let name = &elb.name;
    ctx.elb
        .delete_load_balancer()
        .load_balancer_name(name)
        .send()
        .await
        .aws(format!("delete elb {name}"))?;
    ctx.progress.line(format!("deleted elb {name}"));
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("description")
        .values(format!("ELB {name}"))
        .build();
    ctx.progress
        .wait(
            &format!("elb {name} interfaces"),
            Duration::from_secs(600),
            || {
                let filter = filter.clone();
                async move {
                    let out = ctx
                        .ec2
                        .describe_network_interfaces()
                        .filters(filter)
                        .send()
                        .await
                        .aws(format!("describe network interfaces of elb {name}"))?;
                    let left = out.network_interfaces().len();
                    Ok(if left == 0 {
                        Poll::Ready(())
                    } else {
                        Poll::Pending(format!("{left} network interfaces left"))
                    })
                }
            },
        )
        .await
}

pub fn status(current: &Current) -> Vec<Status> {
    let resource = format!("elb {}", current.name);
    let Some(elb) = &current.elb else {
        return vec![Status::new(resource, None, "missing")];
    };
    let in_service = elb
        .instance_health
        .values()
        .filter(|s| *s == "InService")
        .count();
    let mut status = Status::new(resource, Some(elb.dns_name.clone()), "active")
        .detail("dns_name", &elb.dns_name)
        .detail("scheme", &elb.scheme)
        .detail("listeners", strings(&elb.listeners).join(", "))
        .detail(
            "instances",
            format!("{in_service}/{} InService", elb.instance_health.len()),
        );
    for (id, state) in &elb.instance_health {
        status = status.detail(&format!("instance {id}"), state);
    }
    vec![status]
}

#[cfg(test)]
mod tests;

/// How many of the ELB's instances are InService now.
pub async fn in_service(ctx: &Ctx, name: &str) -> Result<usize> {
    let out = ctx
        .elb
        .describe_instance_health()
        .load_balancer_name(name)
        .send()
        .await
        .aws(format!("describe instance health of elb {name}"))?;
    Ok(out
        .instance_states()
        .iter()
        .filter(|s| s.state() == Some("InService"))
        .count())
}
