//! Writes the group: creates it on the template version, or updates what drifted
//! (sizes, subnets, load balancers, health check, tags) and puts the lifecycle hook;
//! scales it to zero so its nodes drain through the hook, then deletes it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::group::{
    desired, desired_hook, hook_diff, settings_diff, Current, Settings, HEALTH_CHECK_TYPE,
};
use super::{lifecycle_hook_name, NodeInputs};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::{elapsed_text, Poll};

fn template_spec(template_id: &str, version: i64) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(template_id)
        .version(version.to_string())
        .build()
}

fn asg_tags(ctx: &Ctx) -> Vec<Tag> {
    let name = ctx.spec.asg_name();
    ctx.tags(&name)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

/// A new instance profile takes a few seconds to be usable by EC2.
fn profile_not_ready(e: &dyn ProvideErrorMetadata) -> bool {
    let m = e.message().unwrap_or("").to_ascii_lowercase();
    e.code() == Some("ValidationError")
        && (m.contains("instance profile") || m.contains("iaminstanceprofile"))
}

pub async fn converge(
    ctx: &Ctx,
    current: &super::Current,
    inputs: &NodeInputs,
    template_id: &str,
    version: i64,
) -> Result<()> {
    let name = ctx.spec.asg_name();
    let want = desired(ctx, Some(inputs), version);
    let c = &ctx.spec.config;
    let subnets = want.subnets.clone().unwrap_or_default().join(",");
    let hook = match &current.group {
        None => {
            let create = || async {
                let result = ctx
                    .autoscaling
                    .create_auto_scaling_group()
                    .auto_scaling_group_name(&name)
                    .launch_template(template_spec(template_id, version))
                    .min_size(c.min_size)
                    .max_size(c.max_size)
                    .desired_capacity(c.desired_capacity)
                    .vpc_zone_identifier(&subnets)
                    .load_balancer_names(&inputs.elb_name)
                    .health_check_type(HEALTH_CHECK_TYPE)
                    .health_check_grace_period(c.health_check_grace_period)
                    .set_tags(Some(asg_tags(ctx)))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(Poll::Ready(())),
                    Err(e) if profile_not_ready(&e) => {
                        Ok(Poll::Pending("instance profile not usable yet".into()))
                    }
                    Err(e) => Err(e).aws(format!("create auto scaling group {name}")),
                }
            };
            ctx.progress
                .wait(
                    &format!("autoscaling-group {name}"),
                    Duration::from_secs(120),
                    create,
                )
                .await?;
            ctx.progress.line(format!(
                "created autoscaling-group {name} (template version {version})"
            ));
            None
        }
        Some(g) => {
            if g.status.is_some() {
                bail!("autoscaling group {name} is being deleted; wait until it is gone and run again");
            }
            update(ctx, g, &want, template_id, version).await?;
            g.hook.clone()
        }
    };
    let want_hook = desired_hook(ctx);
    if hook
        .as_ref()
        .is_none_or(|h| !hook_diff(h, &want_hook).0.is_empty())
    {
        let hook_name = lifecycle_hook_name(&ctx.spec);
        ctx.autoscaling
            .put_lifecycle_hook()
            .auto_scaling_group_name(&name)
            .lifecycle_hook_name(&hook_name)
            .lifecycle_transition(&want_hook.transition)
            .heartbeat_timeout(want_hook.heartbeat)
            .default_result(&want_hook.default_result)
            .send()
            .await
            .aws(format!("put lifecycle hook {hook_name}"))?;
        let verb = if hook.is_some() { "updated" } else { "created" };
        ctx.progress
            .line(format!("{verb} lifecycle-hook {hook_name}"));
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    g: &Current,
    want: &Settings,
    template_id: &str,
    version: i64,
) -> Result<()> {
    let name = &g.name;
    let diff = settings_diff(ctx, &g.settings, want);
    let fields: Vec<&str> = diff.0.iter().map(|f| f.field.as_str()).collect();
    if fields.is_empty() {
        return Ok(());
    }
    let has = |f: &str| fields.contains(&f);
    let scalar = [
        "launch_template",
        "min_size",
        "max_size",
        "desired_capacity",
        "subnets",
    ];
    if scalar.iter().any(|f| has(f)) || has("health_check_type") || has("health_check_grace_period")
    {
        let mut u = ctx
            .autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(name);
        if has("launch_template") {
            u = u.launch_template(template_spec(template_id, version));
        }
        if has("min_size") || has("max_size") || has("desired_capacity") {
            // Sent together so min <= desired <= max holds at every step.
            u = u
                .set_min_size(want.min_size)
                .set_max_size(want.max_size)
                .set_desired_capacity(want.desired_capacity);
        }
        if has("subnets") {
            u = u.vpc_zone_identifier(want.subnets.clone().unwrap_or_default().join(","));
        }
        if has("health_check_type") || has("health_check_grace_period") {
            u = u
                .set_health_check_type(want.health_check_type.clone())
                .set_health_check_grace_period(want.health_check_grace_period);
        }
        u.send()
            .await
            .aws(format!("update auto scaling group {name}"))?;
    }
    if has("load_balancers") {
        let cur = g.settings.load_balancers.clone().unwrap_or_default();
        let wanted = want.load_balancers.clone().unwrap_or_default();
        let extra: Vec<String> = cur
            .iter()
            .filter(|l| !wanted.contains(l))
            .cloned()
            .collect();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|l| !cur.contains(l))
            .cloned()
            .collect();
        if !extra.is_empty() {
            ctx.autoscaling
                .detach_load_balancers()
                .auto_scaling_group_name(name)
                .set_load_balancer_names(Some(extra))
                .send()
                .await
                .aws(format!("detach load balancers from {name}"))?;
        }
        if !missing.is_empty() {
            ctx.autoscaling
                .attach_load_balancers()
                .auto_scaling_group_name(name)
                .set_load_balancer_names(Some(missing))
                .send()
                .await
                .aws(format!("attach load balancers to {name}"))?;
        }
    }
    if has("tags") {
        ctx.autoscaling
            .create_or_update_tags()
            .set_tags(Some(asg_tags(ctx)))
            .send()
            .await
            .aws(format!("tag auto scaling group {name}"))?;
    }
    ctx.progress.line(format!(
        "updated autoscaling-group {name} ({})",
        fields.join(", ")
    ));
    Ok(())
}

/// Room beyond the lifecycle hook's heartbeat and the ELB's connection draining for
/// EC2 to shut a drained node down and the group to let it go.
const DRAIN_MARGIN: Duration = Duration::from_secs(300);

pub async fn delete(ctx: &Ctx, current: &super::Current) -> Result<()> {
    let Some(group) = &current.group else {
        return Ok(());
    };
    let name = ctx.spec.asg_name();
    // A group AWS is already deleting takes no update; an empty one has none to drain.
    if group.status.is_none() && !group.instances.is_empty() {
        drain(ctx, &name).await?;
    }
    // Deleting the group with force_delete skips the termination lifecycle hook. After
    // the drain the group is empty, so nothing skips its drain; a node still there
    // after the drain's time (stuck, or protected from scale-in) is terminated here.
    let deleted = ctx
        .autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .force_delete(true)
        .send()
        .await;
    if !group_call(deleted, format!("delete auto scaling group {name}"))? {
        return Ok(());
    }
    ctx.progress
        .wait(
            &format!("autoscaling-group {name}"),
            Duration::from_secs(900),
            || async {
                let out = ctx
                    .autoscaling
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&name)
                    .send()
                    .await
                    .aws(format!("describe auto scaling group {name}"))?;
                Ok(match out.auto_scaling_groups().first() {
                    None => Poll::Ready(()),
                    Some(g) => Poll::Pending(format!(
                        "deleting, {} instance(s) left",
                        g.instances().len()
                    )),
                })
            },
        )
        .await?;
    ctx.progress
        .line(format!("deleted autoscaling-group {name}"));
    Ok(())
}

/// Scales the group to zero so that every node goes through the termination lifecycle
/// hook, as a scale-in does: the ELB deregisters it (and drains its connections), the
/// node drains and completes the action, EC2 terminates it. Waits until the group is
/// empty or the longest such drain is over.
async fn drain(ctx: &Ctx, name: &str) -> Result<()> {
    let scaled = ctx
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await;
    // Gone already: the deletion finds so too.
    if !group_call(scaled, format!("scale auto scaling group {name} to zero"))? {
        return Ok(());
    }
    let c = &ctx.spec.config;
    let hook_and_elb = c.termination_drain_seconds + c.connection_draining_timeout;
    let limit = Duration::from_secs(hook_and_elb.max(0) as u64) + DRAIN_MARGIN;
    let started = Instant::now();
    // At the limit the check itself reports how many nodes are left, so that the group
    // is deleted rather than the command failing; the wait's own limit, later by more
    // than its longest poll interval, only backs that up.
    let left = ctx
        .progress
        .wait(
            &format!("autoscaling-group {name}"),
            limit + Duration::from_secs(60),
            || async {
                let out = ctx
                    .autoscaling
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(name)
                    .send()
                    .await
                    .aws(format!("describe auto scaling group {name}"))?;
                let left = out
                    .auto_scaling_groups()
                    .first()
                    .map_or(0, |g| g.instances().len());
                Ok(if left == 0 || started.elapsed() >= limit {
                    Poll::Ready(left)
                } else {
                    Poll::Pending(format!("{left} instance(s) draining"))
                })
            },
        )
        .await?;
    if left > 0 {
        ctx.progress.line(format!(
            "autoscaling-group {name}: {left} instance(s) still there after {}; \
             deleting the group terminates them",
            elapsed_text(limit)
        ));
    }
    Ok(())
}

/// Fences the nodes: the group goes to zero, so each node leaves the ELB and drains
/// through the hook, and no node is started again. Does not wait for the drain. Returns
/// whether the group existed.
pub async fn fence(ctx: &Ctx) -> Result<bool> {
    let name = ctx.spec.asg_name();
    let scaled = ctx
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await;
    let found = group_call(scaled, format!("scale auto scaling group {name} to zero"))?;
    if found {
        ctx.progress.line(format!(
            "fenced autoscaling-group {name} in {}: scaled to zero, its nodes drain and stop",
            ctx.spec.region
        ));
    }
    Ok(found)
}

/// The outcome of a call on the group: Ok(true) when it was made, Ok(false) when the
/// group is gone; a busy group's error says to try again.
fn group_call<T, E, R>(result: Result<T, SdkError<E, R>>, operation: String) -> Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) if busy(&e) => Err(e)
            .aws(operation)
            .context("run the command again in a minute"),
        Err(e) => Err(e).aws(operation),
    }
}

fn not_found(e: &dyn ProvideErrorMetadata) -> bool {
    e.message().is_some_and(|m| m.contains("not found"))
}

/// A scaling activity or another change holds the group; it passes.
fn busy(e: &dyn ProvideErrorMetadata) -> bool {
    matches!(
        e.code(),
        Some("ScalingActivityInProgress" | "ResourceInUse" | "ResourceContention")
    )
}
