//! Compute and artifacts against the kit: what converge creates is checked through the
//! raw AWS API; a second round changes nothing; drift is planned and repaired; delete
//! removes everything. The network, security group, ELB and secrets the nodes need
//! are made here with the raw SDK (their modules are tested on their own).

mod artifacts;
mod checks;
#[path = "../common/mod.rs"]
mod common;
mod fixture;

use std::time::Instant;

use provisioner::compute::{self, NodeInputs};
use provisioner::context::Ctx;
use provisioner::plan::{Action, Change};
use provisioner::spec::StackConfig;

const REGION: &str = "us-east-1";

fn config() -> StackConfig {
    StackConfig {
        instance_type: "t3.small".into(),
        min_size: 1,
        max_size: 2,
        desired_capacity: 1,
        health_check_grace_period: 120,
        // The fixture's nodes never finish booting on the kit (no artifact, no database),
        // so no drain helper completes their lifecycle action: deleting the group waits
        // for this heartbeat.
        termination_drain_seconds: 30,
        ..StackConfig::default()
    }
}

fn actions(changes: &[Change]) -> Vec<(String, Action)> {
    changes
        .iter()
        .map(|c| (c.resource.clone(), c.action))
        .collect()
}

fn assert_unchanged(changes: &[Change]) {
    for c in changes {
        assert_eq!(c.action, Action::Unchanged, "{c:?}");
    }
}

fn change<'a>(changes: &'a [Change], prefix: &str) -> &'a Change {
    changes
        .iter()
        .find(|c| c.resource.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {changes:?}"))
}

/// The VPC, two private subnets, the nodes' group, the ELB and the two SSM secrets.
#[tokio::test]
async fn compute_converges_repairs_and_deletes() {
    let started = Instant::now();
    let stack = common::stack_name("cmp");
    let ctx = common::ctx(&stack, REGION, config()).await;
    let f = fixture::fixture(&ctx).await;
    let result = tokio::spawn({
        let (stack, inputs) = (stack.clone(), f.inputs.clone());
        async move {
            let ctx = common::ctx(&stack, REGION, config()).await;
            lifecycle(&ctx, inputs).await
        }
    })
    .await;
    // Whatever happened, leave nothing behind.
    if let Ok(cur) = compute::discover(&ctx).await {
        let _ = compute::delete(&ctx, &cur).await;
    }
    fixture::remove_fixture(&ctx, &f).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
    eprintln!("compute test took {:?}", started.elapsed());
}

async fn lifecycle(ctx: &Ctx, mut inputs: NodeInputs) {
    let name = ctx.spec.asg_name();
    let role = compute::role_name(&ctx.spec);
    let hook = compute::lifecycle_hook_name(&ctx.spec);
    let iam = &ctx.iam;
    let asg = &ctx.autoscaling;

    // Nothing yet: everything is to be created.
    let cur = compute::discover(ctx).await.unwrap();
    let plan = compute::plan(ctx, &cur, None);
    assert_eq!(plan.len(), 6, "{plan:?}");
    assert!(
        plan.iter().all(|c| c.action == Action::Create),
        "{:?}",
        actions(&plan)
    );

    inputs.instance_profile_arn =
        compute::converge_profile(ctx, &cur, &inputs.secrets, &inputs.artifact)
            .await
            .unwrap();
    let cur = compute::discover(ctx).await.unwrap();
    let done = compute::converge(ctx, &cur, &inputs).await.unwrap();
    assert_eq!(done.asg_name, name);
    assert_eq!(done.launch_template_version, 1);

    checks::created(ctx, &inputs, &done).await;

    // A second round: all unchanged, nothing new.
    let cur = compute::discover(ctx).await.unwrap();
    assert_unchanged(&compute::plan(ctx, &cur, Some(&inputs)));
    assert_eq!(
        compute::converge_profile(ctx, &cur, &inputs.secrets, &inputs.artifact)
            .await
            .unwrap(),
        inputs.instance_profile_arn
    );
    let again = compute::converge(ctx, &cur, &inputs).await.unwrap();
    assert_eq!(again, done);
    let t = ctx
        .ec2
        .describe_launch_templates()
        .launch_template_names(ctx.spec.launch_template_name())
        .send()
        .await
        .unwrap();
    assert_eq!(t.launch_templates()[0].latest_version_number(), Some(1));
    let all = asg.describe_auto_scaling_groups().send().await.unwrap();
    let ours = all
        .auto_scaling_groups()
        .iter()
        .filter(|g| g.auto_scaling_group_name() == Some(&name))
        .count();
    assert_eq!(ours, 1);

    // A new binary: a new template version, the group moves to it.
    inputs.artifact.sha256 = "b".repeat(64);
    inputs.artifact.key = format!("gateway/{}", inputs.artifact.sha256);
    let cur = compute::discover(ctx).await.unwrap();
    let plan = compute::plan(ctx, &cur, Some(&inputs));
    let lt = change(&plan, "launch-template");
    assert_eq!(lt.action, Action::Update);
    assert_eq!(
        lt.fields
            .iter()
            .map(|f| f.field.as_str())
            .collect::<Vec<_>>(),
        ["user_data"]
    );
    let group = change(&plan, "autoscaling-group");
    assert_eq!(group.fields[0].field, "launch_template");
    assert_eq!(
        group.fields[0].desired.as_deref(),
        Some(format!("{} version 2", ctx.spec.launch_template_name()).as_str())
    );
    assert_eq!(change(&plan, "iam-role-policy").action, Action::Unchanged);
    let moved = compute::converge(ctx, &cur, &inputs).await.unwrap();
    assert_eq!(moved.launch_template_version, 2);
    let t = ctx
        .ec2
        .describe_launch_templates()
        .launch_template_ids(&done.launch_template_id)
        .send()
        .await
        .unwrap();
    assert_eq!(t.launch_templates()[0].default_version_number(), Some(2));
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        g.auto_scaling_groups()[0]
            .launch_template()
            .and_then(|t| t.version()),
        Some("2")
    );
    assert_unchanged(&compute::plan(
        ctx,
        &compute::discover(ctx).await.unwrap(),
        Some(&inputs),
    ));

    // Drift: max size, grace period, the ELB, the hook, the policy.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .max_size(5)
        .health_check_grace_period(30)
        .send()
        .await
        .unwrap();
    asg.detach_load_balancers()
        .auto_scaling_group_name(&name)
        .load_balancer_names(&inputs.elb_name)
        .send()
        .await
        .unwrap();
    asg.delete_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name(&hook)
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(&role)
        .policy_name(compute::profile::POLICY_NAME)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let cur = compute::discover(ctx).await.unwrap();
    let plan = compute::plan(ctx, &cur, Some(&inputs));
    let group = change(&plan, "autoscaling-group");
    assert_eq!(group.action, Action::Update);
    let fields: Vec<&str> = group.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        ["max_size", "load_balancers", "health_check_grace_period"],
        "{group:?}"
    );
    assert_eq!(group.fields[0].current.as_deref(), Some("5"));
    assert_eq!(group.fields[0].desired.as_deref(), Some("2"));
    let elb = format!("+{}", inputs.elb_name);
    assert_eq!(group.fields[1].desired.as_deref(), Some(elb.as_str()));
    assert_eq!(change(&plan, "lifecycle-hook").action, Action::Create);
    let policy = change(&plan, "iam-role-policy");
    assert_eq!(policy.action, Action::Update);
    assert_eq!(policy.fields[0].field, "document.statements");
    compute::converge_profile(ctx, &cur, &inputs.secrets, &inputs.artifact)
        .await
        .unwrap();
    compute::converge(ctx, &cur, &inputs).await.unwrap();
    let cur = compute::discover(ctx).await.unwrap();
    assert_unchanged(&compute::plan(ctx, &cur, Some(&inputs)));
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .unwrap();
    let g = &g.auto_scaling_groups()[0];
    assert_eq!(g.max_size(), Some(2));
    assert_eq!(g.health_check_grace_period(), Some(120));
    assert_eq!(
        g.load_balancer_names(),
        std::slice::from_ref(&inputs.elb_name)
    );
    // Status: the group, and each instance with its ELB health from the map.
    let group = cur.group.as_ref().unwrap();
    assert!(!group.instances.is_empty(), "{group:?}");
    let first = group.instances[0].id.clone();
    let health = [(first.clone(), "InService".to_string())].into();
    let status = compute::status(&cur, &health);
    assert!(
        status
            .iter()
            .any(|s| s.resource == format!("autoscaling-group {name}") && s.details["max"] == "2"),
        "{status:?}"
    );
    let node = status
        .iter()
        .find(|s| s.resource == format!("instance {first}"))
        .unwrap();
    assert_eq!(node.details["elb_health"], "InService");
    assert_eq!(node.state, "InService");

    // Delete: all gone, and a second delete is a no-op.
    compute::delete(ctx, &cur).await.unwrap();
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .unwrap();
    assert!(g.auto_scaling_groups().is_empty());
    let t = ctx
        .ec2
        .describe_launch_templates()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("launch-template-name")
                .values(ctx.spec.launch_template_name())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(t.launch_templates().is_empty());
    assert!(iam.get_role().role_name(&role).send().await.is_err());
    assert!(iam
        .get_instance_profile()
        .instance_profile_name(&role)
        .send()
        .await
        .is_err());
    let cur = compute::discover(ctx).await.unwrap();
    assert!(cur.template.is_none() && cur.group.is_none() && cur.profile.role.is_none());
    compute::delete(ctx, &cur).await.unwrap();
    assert!(compute::plan(ctx, &cur, None)
        .iter()
        .all(|c| c.action == Action::Create));
}
