//! The Auto Scaling group `<stack>-nodes` over the private subnets, on an exact
//! launch template version (so `plan` shows a version change and a human changing the
//! template's default does not silently change the fleet), attached to the classic
//! ELB with ELB health checks, and its termination lifecycle hook `<stack>-drain`.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{lifecycle_hook_name, our_tags, NodeInputs};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Change, Diff, Status};
use crate::spec::Spec;

pub const TRANSITION: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
pub const HEALTH_CHECK_TYPE: &str = "ELB";
/// What the group does when a drain outlives the hook's heartbeat: terminate anyway.
pub const HOOK_DEFAULT_RESULT: &str = "CONTINUE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub az: String,
    pub lifecycle_state: String,
    pub health: String,
    pub launch_template_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub transition: String,
    pub heartbeat: i32,
    pub default_result: String,
}

/// The comparable settings of a group. Input-dependent fields are None in a desired
/// state computed without inputs, and then not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `<template name> version <n>`.
    pub launch_template: Option<String>,
    pub min_size: Option<i32>,
    pub max_size: Option<i32>,
    pub desired_capacity: Option<i32>,
    pub subnets: Option<Vec<String>>,
    pub load_balancers: Option<Vec<String>>,
    pub health_check_type: Option<String>,
    pub health_check_grace_period: Option<i32>,
    /// `key=value`; `key=value (not propagated)` when not propagated at launch.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub name: String,
    /// Set while AWS deletes the group (`Delete in progress`).
    pub status: Option<String>,
    pub settings: Settings,
    pub instances: Vec<Instance>,
    pub hook: Option<Hook>,
}

pub async fn discover(ctx: &Ctx) -> Result<Option<Current>> {
    let name = ctx.spec.asg_name();
    let out = ctx
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .aws(format!("describe auto scaling group {name}"))?;
    let Some(g) = out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(&name))
    else {
        return Ok(None);
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let subnets = g
        .vpc_zone_identifier()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let mut tags: Vec<String> = g
        .tags()
        .iter()
        .map(|t| {
            let tag = format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or(""));
            if t.propagate_at_launch() == Some(true) {
                tag
            } else {
                format!("{tag} (not propagated)")
            }
        })
        .collect();
    tags.sort();
    let settings = Settings {
        launch_template: g.launch_template().map(|t| {
            format!(
                "{} version {}",
                t.launch_template_name().unwrap_or("?"),
                t.version().unwrap_or("?")
            )
        }),
        min_size: g.min_size(),
        max_size: g.max_size(),
        desired_capacity: g.desired_capacity(),
        subnets: Some(sorted(subnets.map(str::to_string).collect())),
        load_balancers: Some(sorted(g.load_balancer_names().to_vec())),
        health_check_type: g.health_check_type().map(str::to_string),
        health_check_grace_period: g.health_check_grace_period(),
        tags,
    };
    let instances = g
        .instances()
        .iter()
        .map(|i| Instance {
            id: i.instance_id().unwrap_or("?").to_string(),
            az: i.availability_zone().unwrap_or("?").to_string(),
            lifecycle_state: i.lifecycle_state().map_or("?", |s| s.as_str()).to_string(),
            health: i.health_status().unwrap_or("?").to_string(),
            launch_template_version: i
                .launch_template()
                .and_then(|t| t.version())
                .map(str::to_string),
        })
        .collect();
    let hook_name = lifecycle_hook_name(&ctx.spec);
    let hooks = ctx
        .autoscaling
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_names(&hook_name)
        .send()
        .await
        .aws(format!("describe lifecycle hook {hook_name}"))?;
    let hook = hooks
        .lifecycle_hooks()
        .iter()
        .find(|h| h.lifecycle_hook_name() == Some(&hook_name))
        .map(|h| Hook {
            transition: h.lifecycle_transition().unwrap_or("").to_string(),
            heartbeat: h.heartbeat_timeout().unwrap_or(0),
            default_result: h.default_result().unwrap_or("").to_string(),
        });
    Ok(Some(Current {
        name,
        status: g.status().map(str::to_string),
        settings,
        instances,
        hook,
    }))
}

/// What the group must be, on template version `version`.
pub fn desired(ctx: &Ctx, inputs: Option<&NodeInputs>, version: i64) -> Settings {
    desired_for(&ctx.spec, inputs, version)
}

/// `desired` from the spec alone (what `provisioner facts` prints).
pub fn desired_for(spec: &Spec, inputs: Option<&NodeInputs>, version: i64) -> Settings {
    let c = &spec.config;
    let mut tags: Vec<String> = spec
        .tags(&spec.asg_name())
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tags.sort();
    Settings {
        launch_template: Some(format!("{} version {version}", spec.launch_template_name())),
        min_size: Some(c.min_size),
        max_size: Some(c.max_size),
        desired_capacity: Some(c.desired_capacity),
        subnets: inputs.map(|i| {
            let mut s: Vec<String> = i.net.private.iter().map(|s| s.id.clone()).collect();
            s.sort();
            s
        }),
        load_balancers: inputs.map(|i| vec![i.elb_name.clone()]),
        health_check_type: Some(HEALTH_CHECK_TYPE.into()),
        health_check_grace_period: Some(c.health_check_grace_period),
        tags,
    }
}

pub fn desired_hook(ctx: &Ctx) -> Hook {
    hook_for(&ctx.spec)
}

/// The termination lifecycle hook the spec wants.
pub fn hook_for(spec: &Spec) -> Hook {
    Hook {
        transition: TRANSITION.into(),
        heartbeat: spec.config.termination_drain_seconds,
        default_result: HOOK_DEFAULT_RESULT.into(),
    }
}

pub fn settings_diff(ctx: &Ctx, cur: &Settings, want: &Settings) -> Diff {
    let mut d = Diff::default();
    d.field(
        "launch_template",
        cur.launch_template.as_deref(),
        want.launch_template.as_deref(),
    )
    .field("min_size", cur.min_size, want.min_size)
    .field("max_size", cur.max_size, want.max_size)
    .field(
        "desired_capacity",
        cur.desired_capacity,
        want.desired_capacity,
    );
    if let Some(subnets) = &want.subnets {
        d.set(
            "subnets",
            cur.subnets.as_deref().unwrap_or_default(),
            subnets,
        );
    }
    if let Some(lbs) = &want.load_balancers {
        d.set(
            "load_balancers",
            cur.load_balancers.as_deref().unwrap_or_default(),
            lbs,
        );
    }
    d.field(
        "health_check_type",
        cur.health_check_type.as_deref(),
        want.health_check_type.as_deref(),
    )
    .field(
        "health_check_grace_period",
        cur.health_check_grace_period,
        want.health_check_grace_period,
    );
    let (want_tags, have_tags) = our_tags(ctx, &ctx.spec.asg_name(), &cur.tags);
    d.set("tags", &have_tags, &want_tags);
    d
}

pub(super) fn hook_diff(cur: &Hook, want: &Hook) -> Diff {
    let mut d = Diff::default();
    d.field("transition", Some(&cur.transition), Some(&want.transition))
        .field(
            "heartbeat_timeout",
            Some(cur.heartbeat),
            Some(want.heartbeat),
        )
        .field(
            "default_result",
            Some(&cur.default_result),
            Some(&want.default_result),
        );
    d
}

pub fn plan(
    ctx: &Ctx,
    current: &super::Current,
    inputs: Option<&NodeInputs>,
    version: i64,
) -> Vec<Change> {
    let group = format!("autoscaling-group {}", ctx.spec.asg_name());
    let hook = format!("lifecycle-hook {}", lifecycle_hook_name(&ctx.spec));
    match &current.group {
        None => vec![Change::create(group), Change::create(hook)],
        Some(g) => {
            let mut changes = vec![
                settings_diff(ctx, &g.settings, &desired(ctx, inputs, version))
                    .into_change(group.clone()),
                match &g.hook {
                    None => Change::create(hook),
                    Some(h) => hook_diff(h, &desired_hook(ctx)).into_change(hook),
                },
            ];
            changes.extend(roll_change(g, &group, version));
            changes
        }
    }
}

/// The nodes `up` will replace (see `roll`): those not on template `version`.
fn roll_change(g: &Current, group: &str, version: i64) -> Option<Change> {
    let version = version.to_string();
    let mut old: Vec<&Instance> = g
        .instances
        .iter()
        .filter(|i| {
            !i.lifecycle_state.starts_with("Terminat")
                && i.launch_template_version.as_deref() != Some(version.as_str())
        })
        .collect();
    if old.is_empty() {
        return None;
    }
    old.sort_by(|a, b| a.id.cmp(&b.id));
    let current = old
        .iter()
        .map(|i| {
            format!(
                "{} on version {}",
                i.id,
                i.launch_template_version.as_deref().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut d = Diff::default();
    d.field(
        "template_version",
        Some(current),
        Some(format!(
            "{version} (replaced one at a time, launch before terminate)"
        )),
    );
    Some(d.into_change(format!("nodes of {group}")))
}

pub fn status(current: &super::Current, elb_health: &BTreeMap<String, String>) -> Vec<Status> {
    let Some(g) = &current.group else {
        return Vec::new();
    };
    let s = &g.settings;
    let n = |v: Option<i32>| v.map_or("?".into(), |v| v.to_string());
    let mut out = vec![Status::new(
        format!("autoscaling-group {}", g.name),
        Some(g.name.clone()),
        g.status.clone().unwrap_or_else(|| "active".into()),
    )
    .detail("min", n(s.min_size))
    .detail("max", n(s.max_size))
    .detail("desired", n(s.desired_capacity))
    .detail(
        "launch_template",
        s.launch_template.clone().unwrap_or_default(),
    )
    .detail(
        "drain_hook",
        if g.hook.is_some() {
            "present"
        } else {
            "missing"
        },
    )];
    for i in &g.instances {
        out.push(
            Status::new(
                format!("instance {}", i.id),
                Some(i.id.clone()),
                i.lifecycle_state.clone(),
            )
            .detail("az", i.az.clone())
            .detail("health", i.health.clone())
            .detail(
                "elb_health",
                elb_health
                    .get(&i.id)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
            )
            .detail(
                "template_version",
                i.launch_template_version.clone().unwrap_or_default(),
            ),
        );
    }
    out
}
