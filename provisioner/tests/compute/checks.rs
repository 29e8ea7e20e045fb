//! What the first converge made, read back through the raw AWS API.

use base64::Engine as _;
use provisioner::compute::{self, Compute, NodeInputs};
use provisioner::context::Ctx;
use provisioner::spec::STACK_TAG;

pub async fn created(ctx: &Ctx, inputs: &NodeInputs, done: &Compute) {
    let name = ctx.spec.asg_name();
    let role = compute::role_name(&ctx.spec);
    let hook = compute::lifecycle_hook_name(&ctx.spec);
    let (iam, asg) = (&ctx.iam, &ctx.autoscaling);

    // IAM, as AWS has it.
    let r = iam.get_role().role_name(&role).send().await.unwrap();
    let r = r.role().unwrap();
    assert!(r
        .tags()
        .iter()
        .any(|t| t.key() == STACK_TAG && t.value() == ctx.spec.stack));
    let trust = compute::policy::decode_policy(r.assume_role_policy_document().unwrap()).unwrap();
    assert!(trust.to_string().contains("ec2.amazonaws.com"), "{trust}");
    let p = iam
        .get_role_policy()
        .role_name(&role)
        .policy_name(compute::profile::POLICY_NAME)
        .send()
        .await
        .unwrap();
    let doc = compute::policy::decode_policy(p.policy_document())
        .unwrap()
        .to_string();
    for arn in &inputs.secrets.arns {
        assert!(doc.contains(arn.as_str()), "{doc}");
    }
    assert!(
        doc.contains(&format!(
            "arn:aws:s3:::{}/gateway/*",
            inputs.artifact.bucket
        )),
        "{doc}"
    );
    assert!(
        doc.contains(&format!("autoScalingGroupName/{name}")),
        "{doc}"
    );
    let ip = iam
        .get_instance_profile()
        .instance_profile_name(&role)
        .send()
        .await
        .unwrap();
    let ip = ip.instance_profile().unwrap();
    assert_eq!(ip.arn(), inputs.instance_profile_arn);
    let roles: Vec<&str> = ip.roles().iter().map(|r| r.role_name()).collect();
    assert_eq!(roles, [role.as_str()]);

    // The launch template.
    let versions = ctx
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&done.launch_template_id)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.launch_template_versions().len(), 1);
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    let meta = data.metadata_options().unwrap();
    assert_eq!(meta.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(meta.http_put_response_hop_limit(), Some(1));
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t3.small"));
    assert_eq!(
        data.security_group_ids(),
        std::slice::from_ref(&inputs.groups.nodes)
    );
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.arn()),
        Some(inputs.instance_profile_arn.as_str())
    );
    let ebs = data.block_device_mappings()[0].ebs().unwrap();
    assert_eq!(ebs.volume_type().map(|t| t.as_str()), Some("gp3"));
    assert_eq!(ebs.encrypted(), Some(true));
    let ami = ctx
        .ssm
        .get_parameter()
        .name(provisioner::spec::AL2023_AMI_PARAMETER)
        .send()
        .await
        .unwrap();
    assert_eq!(data.image_id(), ami.parameter().unwrap().value());
    let kinds: Vec<&str> = data
        .tag_specifications()
        .iter()
        .filter_map(|s| s.resource_type())
        .map(|k| k.as_str())
        .collect();
    // (moto also lists the template's own tags here; AWS does not)
    assert!(
        kinds.contains(&"instance") && kinds.contains(&"volume"),
        "{kinds:?}"
    );
    for spec in data.tag_specifications() {
        assert!(spec
            .tags()
            .iter()
            .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(&ctx.spec.stack)));
    }
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().unwrap())
        .unwrap();
    let user_data = String::from_utf8(user_data).unwrap();
    assert!(user_data.starts_with("#cloud-config\n"));
    assert!(
        user_data.contains(&format!("pg_host = \"{}\"", inputs.db.address)),
        "{user_data}"
    );
    assert!(!user_data.contains("not-a-real-secret"));

    // The group and its hook.
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .unwrap();
    let g = &g.auto_scaling_groups()[0];
    let mut subnets: Vec<&str> = g.vpc_zone_identifier().unwrap().split(',').collect();
    subnets.sort();
    let mut want: Vec<&str> = inputs.net.private.iter().map(|s| s.id.as_str()).collect();
    want.sort();
    assert_eq!(subnets, want);
    assert_eq!(
        g.load_balancer_names(),
        std::slice::from_ref(&inputs.elb_name)
    );
    assert_eq!(g.health_check_type(), Some("ELB"));
    assert_eq!(g.health_check_grace_period(), Some(120));
    assert_eq!(
        (g.min_size(), g.max_size(), g.desired_capacity()),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(g.launch_template().and_then(|t| t.version()), Some("1"));
    for t in g.tags() {
        assert_eq!(t.propagate_at_launch(), Some(true), "{t:?}");
    }
    assert!(g
        .tags()
        .iter()
        .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(&ctx.spec.stack)));
    let hooks = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&name)
        .send()
        .await
        .unwrap();
    let h = &hooks.lifecycle_hooks()[0];
    assert_eq!(h.lifecycle_hook_name(), Some(hook.as_str()));
    assert_eq!(
        h.lifecycle_transition(),
        Some("autoscaling:EC2_INSTANCE_TERMINATING")
    );
    assert_eq!(h.heartbeat_timeout(), Some(30));
    assert_eq!(h.default_result(), Some("CONTINUE"));
}
