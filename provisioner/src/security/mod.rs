//! Security groups: gateway nodes (8000-8003, 8443-8446 from the VPC CIDR), RDS (5432
//! from the VPC CIDR) and the ELB (its listener ports from `allowed_cidrs`). Nothing
//! else is open: extra ingress rules are drift and are revoked.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_ec2::types::{Filter, IpPermission, ResourceType};

use crate::aws::{AwsError, AwsResultExt};
use crate::context::{ec2_name, Ctx};
use crate::network::{retry_on, Network};
use crate::plan::{Change, Diff, Status};
use crate::progress::Poll;
use crate::spec::Spec;

mod rules;

use rules::{split_permission, wanted, Wanted, WantedRule};
pub use rules::{INGRESS_PROTOCOL, ROLES};

/// One ingress rule the spec wants: TCP `from`-`to` from `cidr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub from: u16,
    pub to: u16,
    pub cidr: String,
}

/// The groups the spec wants, as `converge` creates them: (role, name, ingress).
pub fn wanted_groups(spec: &Spec) -> Vec<(&'static str, String, Vec<IngressRule>)> {
    ROLES
        .iter()
        .zip(wanted(spec))
        .map(|(role, w)| {
            let rules = w
                .rules
                .iter()
                .map(|r| IngressRule {
                    from: r.from,
                    to: r.to,
                    cidr: r.cidr.clone(),
                })
                .collect();
            (*role, w.name, rules)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroups {
    pub nodes: String,
    pub db: String,
    pub elb: String,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    /// Ingress, one entry per source: its text (`tcp 8000-8003 10.0.0.0/16`) and the
    /// permission that grants (or revokes) exactly it.
    pub ingress: Vec<(String, IpPermission)>,
}

impl Group {
    fn rules(&self) -> Vec<String> {
        self.ingress.iter().map(|(text, _)| text.clone()).collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The stack's VPC (`<stack>-vpc`), when it exists.
    pub vpc_id: Option<String>,
    /// Every group with the stack tag.
    pub groups: Vec<Group>,
    names: Vec<String>,
}

impl Current {
    /// The group `name` in the stack's VPC.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.name == name && self.vpc_id.as_deref() == Some(g.vpc_id.as_str()))
    }

    pub fn groups(&self) -> Option<SecurityGroups> {
        let [nodes, db, elb] = [0, 1, 2].map(|i| {
            self.names
                .get(i)
                .and_then(|n| self.group(n))
                .map(|g| g.id.clone())
        });
        Some(SecurityGroups {
            nodes: nodes?,
            db: db?,
            elb: elb?,
        })
    }
}

fn stack_vpc_filter(spec: &Spec) -> Filter {
    Filter::builder()
        .name("tag:Name")
        .values(spec.name("vpc"))
        .build()
}

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let vpcs = ctx
        .ec2
        .describe_vpcs()
        .filters(ctx.ec2_stack_filter())
        .filters(stack_vpc_filter(&ctx.spec))
        .send()
        .await
        .aws("describe vpcs")?;
    let mut vpc_ids: Vec<&str> = vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).collect();
    vpc_ids.sort();
    let groups = ctx
        .ec2
        .describe_security_groups()
        .filters(ctx.ec2_stack_filter())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("describe security groups")?;
    let mut current = Current {
        vpc_id: vpc_ids.first().map(|v| v.to_string()),
        groups: Vec::new(),
        names: wanted(&ctx.spec).map(|w| w.name).to_vec(),
    };
    for g in groups {
        let id = g
            .group_id()
            .context("a security group without an id")?
            .to_string();
        current.groups.push(Group {
            name: g
                .group_name()
                .or(ec2_name(g.tags()))
                .with_context(|| format!("security group {id} has no name"))?
                .to_string(),
            vpc_id: g
                .vpc_id()
                .with_context(|| format!("security group {id} has no VPC"))?
                .to_string(),
            ingress: g
                .ip_permissions()
                .iter()
                .flat_map(split_permission)
                .collect(),
            id,
        });
    }
    current
        .groups
        .sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(current)
}

pub fn plan(ctx: &Ctx, current: &Current) -> Vec<Change> {
    wanted(&ctx.spec)
        .iter()
        .map(|w| {
            let resource = format!("security-group {}", w.name);
            match current.group(&w.name) {
                None => Change::create(resource),
                Some(g) => ingress_diff(g, w).into_change(resource),
            }
        })
        .collect()
}

fn ingress_diff(group: &Group, wanted: &Wanted) -> Diff {
    let desired: Vec<String> = wanted.rules.iter().map(WantedRule::text).collect();
    let mut d = Diff::default();
    d.set("ingress", &group.rules(), &desired);
    d
}

pub async fn converge(ctx: &Ctx, current: &Current, net: &Network) -> Result<SecurityGroups> {
    let mut ids = Vec::new();
    for w in wanted(&ctx.spec) {
        let name = &w.name;
        let found = current
            .groups
            .iter()
            .find(|g| &g.name == name && g.vpc_id == net.vpc_id);
        let id = match found {
            Some(g) => g.id.clone(),
            None => {
                let out = ctx
                    .ec2
                    .create_security_group()
                    .group_name(name)
                    .description(&w.description)
                    .vpc_id(&net.vpc_id)
                    .tag_specifications(ctx.ec2_tags(ResourceType::SecurityGroup, name))
                    .send()
                    .await
                    .aws(format!("create security-group {name}"))?;
                let id = out
                    .group_id()
                    .with_context(|| format!("create security-group {name}: no id returned"))?
                    .to_string();
                ctx.progress
                    .line(format!("created security-group {name} ({id})"));
                id
            }
        };
        let have: Vec<String> = found.map(Group::rules).unwrap_or_default();
        let missing: Vec<&WantedRule> = w
            .rules
            .iter()
            .filter(|r| !have.contains(&r.text()))
            .collect();
        if !missing.is_empty() {
            let perms: Vec<IpPermission> = missing.iter().map(|r| r.permission()).collect();
            let label = format!("security-group {name}");
            retry_on(ctx, &label, &["InvalidGroup.NotFound"], || async {
                ctx.ec2
                    .authorize_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(perms.clone()))
                    .send()
                    .await
                    .aws(format!("authorize ingress on security-group {name}"))
            })
            .await?;
            let texts: Vec<String> = missing.iter().map(|r| format!("+{}", r.text())).collect();
            let verb = if found.is_some() {
                "updated"
            } else {
                "configured"
            };
            ctx.progress.line(format!(
                "{verb} security-group {name}: ingress {}",
                texts.join(", ")
            ));
        }
        let desired: Vec<String> = w.rules.iter().map(WantedRule::text).collect();
        let extra: Vec<&(String, IpPermission)> = found
            .map(|g| {
                g.ingress
                    .iter()
                    .filter(|(t, _)| !desired.contains(t))
                    .collect()
            })
            .unwrap_or_default();
        if !extra.is_empty() {
            let out = ctx
                .ec2
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(extra.iter().map(|(_, p)| p.clone()).collect()))
                .send()
                .await
                .aws(format!("revoke ingress on security-group {name}"))?;
            if !out.unknown_ip_permissions().is_empty() {
                bail!(
                    "revoke ingress on security-group {name} ({id}): AWS did not match {:?}; \
                     remove those rules in the console and run again",
                    out.unknown_ip_permissions()
                );
            }
            let texts: Vec<String> = extra.iter().map(|(t, _)| format!("-{t}")).collect();
            ctx.progress.line(format!(
                "updated security-group {name}: ingress {}",
                texts.join(", ")
            ));
        }
        ids.push(id);
    }
    let [nodes, db, elb]: [String; 3] = ids
        .try_into()
        .map_err(|_| anyhow::anyhow!("security: expected three groups"))?;
    Ok(SecurityGroups { nodes, db, elb })
}

/// Revokes rules between the stack's groups, then deletes the groups, retrying while
/// they are in use (network interfaces of a just-deleted ELB or RDS linger).
pub async fn delete(ctx: &Ctx, current: &Current) -> Result<()> {
    let ids: Vec<&str> = current.groups.iter().map(|g| g.id.as_str()).collect();
    for g in &current.groups {
        let refs: Vec<IpPermission> = g
            .ingress
            .iter()
            .filter(|(_, p)| {
                p.user_id_group_pairs()
                    .iter()
                    .any(|pair| pair.group_id().is_some_and(|id| ids.contains(&id)))
            })
            .map(|(_, p)| p.clone())
            .collect();
        if refs.is_empty() {
            continue;
        }
        let r = ctx
            .ec2
            .revoke_security_group_ingress()
            .group_id(&g.id)
            .set_ip_permissions(Some(refs))
            .send()
            .await
            .aws(format!(
                "revoke group references on security-group {}",
                g.name
            ));
        crate::network::absent_on(r, &["InvalidGroup.NotFound", "InvalidPermission.NotFound"])?;
    }
    for g in &current.groups {
        let label = format!("security-group {}", g.name);
        let deleted = ctx
            .progress
            .wait(&label, Duration::from_secs(150), || async {
                let r = ctx
                    .ec2
                    .delete_security_group()
                    .group_id(&g.id)
                    .send()
                    .await
                    .aws(format!("delete {label} ({})", g.id));
                match r {
                    Ok(_) => Ok(Poll::Ready(true)),
                    Err(e) if AwsError::code_of(&e) == Some("InvalidGroup.NotFound") => {
                        Ok(Poll::Ready(false))
                    }
                    Err(e) if AwsError::code_of(&e) == Some("DependencyViolation") => {
                        Ok(Poll::Pending(
                            "in use (network interfaces, or rules of other groups)".into(),
                        ))
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if deleted {
            ctx.progress.line(format!("deleted {label} ({})", g.id));
        }
    }
    Ok(())
}

pub fn status(current: &Current) -> Vec<Status> {
    current
        .groups
        .iter()
        .map(|g| {
            Status::new(
                format!("security-group {}", g.name),
                Some(g.id.clone()),
                "exists",
            )
            .detail("ingress", g.rules().join(", "))
        })
        .collect()
}
