//! Rolling replacement of the nodes. When the group moves to a new launch template
//! version (a new gateway binary, user data, instance type...), the group itself only
//! launches new nodes on it; the running ones stay on the old version. `up` therefore
//! replaces them, one at a time, launch before terminate:
//!
//! 1. one node more than the group's desired capacity is launched on the new version;
//! 2. once it is InService behind the ELB (its health check passed), one old node is
//!    terminated through the group, which lowers the desired capacity again and runs the
//!    termination lifecycle hook: the ELB deregisters the node and drains its
//!    connections, the node's drain helper waits for its requests to end, then
//!    completes the action;
//! 3. once the old node is gone, the next one.
//!
//! So the ELB never has fewer healthy nodes than the desired capacity. Each step is
//! decided from what AWS reports at that moment, never from memory: an `up` killed
//! halfway (with one node too many, or an old node draining) continues where it was
//! when run again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::{elapsed_text, Poll};

/// One node as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// The group's lifecycle state: `Pending`, `InService`, `Terminating:Wait`, ...
    pub lifecycle_state: String,
    pub template_version: Option<String>,
    /// The ELB's health check says InService.
    pub elb_in_service: bool,
}

impl Node {
    /// Counts towards the group's capacity (not on its way out).
    fn live(&self) -> bool {
        !self.lifecycle_state.starts_with("Terminating")
            && !matches!(
                self.lifecycle_state.as_str(),
                "Terminated" | "Detaching" | "Detached"
            )
    }

    /// Serves traffic: InService in the group and behind the ELB.
    fn serving(&self) -> bool {
        self.lifecycle_state == "InService" && self.elb_in_service
    }
}

/// What the group looks like now.
#[derive(Debug, Clone)]
pub struct Group {
    pub desired: i32,
    pub max: i32,
    pub nodes: Vec<Node>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every live node is on the version.
    Done,
    /// Terminate this old node (through the group, lowering the desired capacity).
    Retire(String),
    /// Raise the desired capacity to this, so that a node on the new version starts.
    Surge(i32),
    /// A node is starting or draining: look again later.
    Wait(String),
}

/// Decides the next step towards every live node on `version`, keeping at least
/// `capacity` nodes serving whenever that many served before.
pub fn next_step(group: &Group, version: &str, capacity: i32) -> Step {
    let live: Vec<&Node> = group.nodes.iter().filter(|n| n.live()).collect();
    let outdated: Vec<&Node> = live
        .iter()
        .copied()
        .filter(|n| n.template_version.as_deref() != Some(version))
        .collect();
    if outdated.is_empty() {
        return Step::Done;
    }
    let serving = live.iter().filter(|n| n.serving()).count() as i32;
    // An old node that does not serve costs nothing to retire: first those.
    if let Some(idle) = outdated.iter().find(|n| !n.serving()) {
        return Step::Retire(idle.id.clone());
    }
    // Retiring a serving old node leaves serving - 1.
    if serving > capacity {
        return Step::Retire(outdated[0].id.clone());
    }
    if (live.len() as i32) <= capacity {
        return Step::Surge(live.len() as i32 + 1);
    }
    let starting = n_starting(&live, version);
    if starting > 0 {
        return Step::Wait(format!(
            "{starting} node(s) on version {version} starting, {} old to replace",
            outdated.len()
        ));
    }
    // More live nodes than capacity, none starting, yet not enough serving: a node
    // failing its health checks. The group replaces it (ELB health checks).
    Step::Wait(format!(
        "{serving} of {} node(s) serving, waiting for the rest to pass the ELB's health check",
        live.len()
    ))
}

/// Live nodes on `version` that do not serve yet.
fn n_starting(live: &[&Node], version: &str) -> usize {
    live.iter()
        .filter(|n| n.template_version.as_deref() == Some(version) && !n.serving())
        .count()
}

async fn describe(ctx: &Ctx, asg: &str, elb: &str) -> Result<Option<Group>> {
    let (groups, health) = tokio::try_join!(
        async {
            ctx.autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(asg)
                .send()
                .await
                .aws(format!("describe auto scaling group {asg}"))
        },
        async {
            ctx.elb
                .describe_instance_health()
                .load_balancer_name(elb)
                .send()
                .await
                .aws(format!("describe instance health of elb {elb}"))
        },
    )?;
    let Some(g) = groups.auto_scaling_groups().first() else {
        return Ok(None);
    };
    let in_service: BTreeSet<&str> = health
        .instance_states()
        .iter()
        .filter(|s| s.state() == Some("InService"))
        .filter_map(|s| s.instance_id())
        .collect();
    let nodes = g
        .instances()
        .iter()
        .map(|i| {
            let id = i.instance_id().unwrap_or("?").to_string();
            Node {
                elb_in_service: in_service.contains(id.as_str()),
                id,
                lifecycle_state: i.lifecycle_state().map_or("?", |s| s.as_str()).to_string(),
                template_version: i
                    .launch_template()
                    .and_then(|t| t.version())
                    .map(str::to_string),
            }
        })
        .collect();
    Ok(Some(Group {
        desired: g.desired_capacity().unwrap_or(0),
        max: g.max_size().unwrap_or(0),
        nodes,
    }))
}

/// Extra time, beyond the group's grace period, for a new node to boot and pass the
/// ELB's health check.
const LAUNCH_MARGIN: Duration = Duration::from_secs(600);
/// Beyond the hook's heartbeat and the ELB's draining, for EC2 to stop the node.
const RETIRE_MARGIN: Duration = Duration::from_secs(300);

/// Replaces every live node not on `version`, one at a time (see the module's
/// comment). Returns how many were replaced.
pub async fn replace_outdated(ctx: &Ctx, elb: &str, version: i64) -> Result<usize> {
    let asg = ctx.spec.asg_name();
    let version = version.to_string();
    let c = &ctx.spec.config;
    let capacity = c.desired_capacity;
    let launch_limit =
        Duration::from_secs(c.health_check_grace_period.max(0) as u64) + LAUNCH_MARGIN;
    let retire_limit = Duration::from_secs(
        (c.termination_drain_seconds + c.connection_draining_timeout).max(0) as u64,
    ) + RETIRE_MARGIN;
    let started = Instant::now();
    let mut replaced = 0;
    let mut announced = false;
    let mut raised_max = false;
    loop {
        let Some(group) = describe(ctx, &asg, elb).await? else {
            return Ok(replaced);
        };
        let step = next_step(&group, &version, capacity);
        if !announced && step != Step::Done {
            let old = outdated_versions(&group, &version);
            ctx.progress.line(format!(
                "autoscaling-group {asg}: replacing {} node(s) on {old} with template version {version}, one at a time",
                old_count(&group, &version)
            ));
            announced = true;
        }
        match step {
            Step::Done => break,
            Step::Surge(desired) => {
                let mut update = ctx
                    .autoscaling
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&asg)
                    .desired_capacity(desired);
                if desired > group.max {
                    update = update.max_size(desired);
                    raised_max = true;
                }
                update
                    .send()
                    .await
                    .aws(format!("raise the desired capacity of {asg} to {desired}"))?;
                wait_for_new_node(ctx, &asg, elb, &version, capacity, launch_limit).await?;
            }
            Step::Retire(id) => retire(ctx, &asg, elb, &id, retire_limit)
                .await
                .map(|()| replaced += 1)?,
            Step::Wait(_) => {
                wait_for_new_node(ctx, &asg, elb, &version, capacity, launch_limit).await?
            }
        }
    }
    if raised_max || capacity_drifted(ctx, &asg).await? {
        // Back to the spec's sizes: the surge may have raised the maximum.
        ctx.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(&asg)
            .min_size(c.min_size)
            .max_size(c.max_size)
            .desired_capacity(c.desired_capacity)
            .send()
            .await
            .aws(format!("restore the sizes of {asg}"))?;
    }
    if replaced > 0 {
        ctx.progress.line(format!(
            "autoscaling-group {asg}: {replaced} node(s) replaced, every node on template version {version} ({})",
            elapsed_text(started.elapsed())
        ));
    }
    Ok(replaced)
}

async fn capacity_drifted(ctx: &Ctx, asg: &str) -> Result<bool> {
    let out = ctx
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .aws(format!("describe auto scaling group {asg}"))?;
    let c = &ctx.spec.config;
    Ok(out.auto_scaling_groups().first().is_some_and(|g| {
        (g.min_size(), g.max_size(), g.desired_capacity())
            != (Some(c.min_size), Some(c.max_size), Some(c.desired_capacity))
    }))
}

/// Waits until the roll can take its next step: a node on `version` serves (or the
/// step changed for another reason).
async fn wait_for_new_node(
    ctx: &Ctx,
    asg: &str,
    elb: &str,
    version: &str,
    capacity: i32,
    limit: Duration,
) -> Result<()> {
    ctx.progress
        .wait(
            &format!("autoscaling-group {asg}: new node on version {version}"),
            limit,
            || async {
                let Some(group) = describe(ctx, asg, elb).await? else {
                    return Ok(Poll::Ready(()));
                };
                Ok(match next_step(&group, version, capacity) {
                    Step::Wait(why) => Poll::Pending(why),
                    // Surging again would launch a second extra node: the one launched
                    // is not listed yet.
                    Step::Surge(_) if group.desired > capacity => {
                        Poll::Pending("the new node is being launched".into())
                    }
                    _ => Poll::Ready(()),
                })
            },
        )
        .await?;
    Ok(())
}

/// Terminates `id` through the group (its lifecycle hook drains it) and waits until it
/// has left the group.
async fn retire(ctx: &Ctx, asg: &str, elb: &str, id: &str, limit: Duration) -> Result<()> {
    let started = Instant::now();
    ctx.autoscaling
        .terminate_instance_in_auto_scaling_group()
        .instance_id(id)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .aws(format!("terminate {id} in {asg}"))?;
    ctx.progress
        .wait(
            &format!("autoscaling-group {asg}: old node {id} draining"),
            limit,
            || async {
                let Some(group) = describe(ctx, asg, elb).await? else {
                    return Ok(Poll::Ready(()));
                };
                Ok(match group.nodes.iter().find(|n| n.id == id) {
                    None => Poll::Ready(()),
                    Some(n) if n.lifecycle_state == "Terminated" => Poll::Ready(()),
                    Some(n) => Poll::Pending(n.lifecycle_state.clone()),
                })
            },
        )
        .await?;
    ctx.progress.line(format!(
        "autoscaling-group {asg}: old node {id} drained and terminated ({})",
        elapsed_text(started.elapsed())
    ));
    Ok(())
}

fn old_count(group: &Group, version: &str) -> usize {
    group
        .nodes
        .iter()
        .filter(|n| n.live() && n.template_version.as_deref() != Some(version))
        .count()
}

/// `version 1` or `versions 1, 2`, of the live nodes not on `version`.
fn outdated_versions(group: &Group, version: &str) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in group.nodes.iter().filter(|n| n.live()) {
        let v = n.template_version.as_deref().unwrap_or("?");
        if v != version {
            *counts.entry(v).or_default() += 1;
        }
    }
    let versions: Vec<&str> = counts.keys().copied().collect();
    match versions.len() {
        1 => format!("version {}", versions[0]),
        _ => format!("versions {}", versions.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, state: &str, version: &str, elb: bool) -> Node {
        Node {
            id: id.into(),
            lifecycle_state: state.into(),
            template_version: Some(version.into()),
            elb_in_service: elb,
        }
    }

    fn group(desired: i32, nodes: Vec<Node>) -> Group {
        Group {
            desired,
            max: 4,
            nodes,
        }
    }

    #[test]
    fn a_whole_roll_of_two_nodes_keeps_two_serving() {
        let a = node("i-a", "InService", "1", true);
        let b = node("i-b", "InService", "1", true);
        // Both old and serving: launch a third first.
        let g = group(2, vec![a.clone(), b.clone()]);
        assert_eq!(next_step(&g, "2", 2), Step::Surge(3));
        // The new one boots: wait, retire nothing.
        let c = node("i-c", "Pending", "2", false);
        let g = group(3, vec![a.clone(), b.clone(), c]);
        assert!(matches!(next_step(&g, "2", 2), Step::Wait(_)));
        // InService in the group but not yet behind the ELB: still wait.
        let c = node("i-c", "InService", "2", false);
        let g = group(3, vec![a.clone(), b.clone(), c]);
        assert!(matches!(next_step(&g, "2", 2), Step::Wait(_)));
        // Serving: retire an old one.
        let c = node("i-c", "InService", "2", true);
        let g = group(3, vec![a.clone(), b.clone(), c.clone()]);
        assert_eq!(next_step(&g, "2", 2), Step::Retire("i-a".into()));
        // i-a draining does not count; one old left, serving two: surge again.
        let draining = node("i-a", "Terminating:Wait", "1", false);
        let g = group(2, vec![draining, b.clone(), c.clone()]);
        assert_eq!(next_step(&g, "2", 2), Step::Surge(3));
        let d = node("i-d", "InService", "2", true);
        let g = group(3, vec![b, c.clone(), d.clone()]);
        assert_eq!(next_step(&g, "2", 2), Step::Retire("i-b".into()));
        let g = group(2, vec![c, d]);
        assert_eq!(next_step(&g, "2", 2), Step::Done);
    }

    #[test]
    fn a_resumed_roll_does_not_launch_a_second_extra_node() {
        // Killed after the surge: three live nodes, the new one still booting.
        let g = group(
            3,
            vec![
                node("i-a", "InService", "1", true),
                node("i-b", "InService", "1", true),
                node("i-c", "Pending", "2", false),
            ],
        );
        assert!(matches!(next_step(&g, "2", 2), Step::Wait(_)));
    }

    #[test]
    fn an_old_node_that_does_not_serve_goes_first() {
        let g = group(
            2,
            vec![
                node("i-a", "InService", "1", true),
                node("i-b", "InService", "1", false),
            ],
        );
        assert_eq!(next_step(&g, "2", 2), Step::Retire("i-b".into()));
    }

    #[test]
    fn nodes_already_on_the_version_need_nothing() {
        let g = group(
            2,
            vec![
                node("i-a", "InService", "2", true),
                node("i-b", "Terminating:Wait", "1", false),
            ],
        );
        assert_eq!(next_step(&g, "2", 2), Step::Done);
    }

    #[test]
    fn the_surge_may_go_beyond_the_maximum() {
        let g = Group {
            desired: 2,
            max: 2,
            nodes: vec![
                node("i-a", "InService", "1", true),
                node("i-b", "InService", "1", true),
            ],
        };
        assert_eq!(next_step(&g, "2", 2), Step::Surge(3));
    }

    #[test]
    fn what_the_progress_line_says() {
        let g = group(
            2,
            vec![
                node("i-a", "InService", "1", true),
                node("i-b", "InService", "3", true),
                node("i-c", "InService", "4", true),
            ],
        );
        assert_eq!(outdated_versions(&g, "4"), "versions 1, 3");
        assert_eq!(old_count(&g, "4"), 2);
    }
}
