//! Compute and artifacts against the kit: what converge creates is checked through the
//! raw AWS API; a second round changes nothing; drift is planned and repaired; delete
//! removes everything. The network, security group, ELB and secrets the nodes need
//! are made here with the raw SDK (their modules are tested on their own).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
use base64::Engine as _;
use provisioner::artifacts::{self, Artifact};
use provisioner::compute::{self, NodeInputs};
use provisioner::context::Ctx;
use provisioner::database::Database;
use provisioner::network::{Network, Subnet};
use provisioner::plan::{Action, Change};
use provisioner::secrets::Secrets;
use provisioner::security::SecurityGroups;
use provisioner::spec::{StackConfig, STACK_TAG};

const REGION: &str = "us-east-1";

fn config() -> StackConfig {
    StackConfig {
        instance_type: "t3.small".into(),
        min_size: 1,
        max_size: 2,
        desired_capacity: 1,
        health_check_grace_period: 120,
        termination_drain_seconds: 180,
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
struct Fixture {
    vpc_id: String,
    inputs: NodeInputs,
}

async fn fixture(ctx: &Ctx) -> Fixture {
    let ec2 = &ctx.ec2;
    let stack = &ctx.spec.stack;
    let tags = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .tags(Ec2Tag::builder().key("test-fixture").value(stack).build())
            .build()
    };
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.61.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc))
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut private = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let cidr = format!("10.61.{}.0/20", 128 + 16 * i);
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(&cidr)
            .availability_zone(*az)
            .tag_specifications(tags(ResourceType::Subnet))
            .send()
            .await
            .unwrap();
        private.push(Subnet {
            id: s.subnet().unwrap().subnet_id().unwrap().to_string(),
            az: az.to_string(),
            cidr,
        });
    }
    let sg = ec2
        .create_security_group()
        .group_name(format!("{stack}-nodes"))
        .description("test nodes")
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let elb_name = ctx.spec.elb_name();
    let mut lb = ctx
        .elb
        .create_load_balancer()
        .load_balancer_name(&elb_name)
        .security_groups(&sg);
    for s in &private {
        lb = lb.subnets(&s.id);
    }
    lb.listeners(
        aws_sdk_elasticloadbalancing::types::Listener::builder()
            .protocol("TCP")
            .load_balancer_port(80)
            .instance_protocol("TCP")
            .instance_port(8000)
            .build()
            .unwrap(),
    )
    .send()
    .await
    .unwrap();
    let mut arns = Vec::new();
    for name in [ctx.spec.db_password_secret(), ctx.spec.admin_token_secret()] {
        ctx.ssm
            .put_parameter()
            .name(&name)
            .value("not-a-real-secret")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
        let p = ctx.ssm.get_parameter().name(&name).send().await.unwrap();
        arns.push(p.parameter().unwrap().arn().unwrap().to_string());
    }
    let sha = "a".repeat(64);
    let inputs = NodeInputs {
        net: Network {
            vpc_id: vpc_id.clone(),
            vpc_cidr: "10.61.0.0/16".into(),
            public: Vec::new(),
            private,
        },
        groups: SecurityGroups {
            nodes: sg,
            db: "sg-unused".into(),
            elb: "sg-unused".into(),
        },
        db: Database {
            identifier: ctx.spec.db_identifier(),
            address: format!(
                "{}.c0ffee.us-east-1.rds.amazonaws.com",
                ctx.spec.db_identifier()
            ),
            port: 5432,
            kms_key_arn: "arn:aws:kms:us-east-1:000000000000:key/test".into(),
        },
        artifact: Artifact {
            bucket: format!("{stack}-artifacts-000000000000-{REGION}"),
            key: format!("gateway/{sha}"),
            sha256: sha,
        },
        secrets: Secrets {
            db_password: ctx.spec.db_password_secret(),
            admin_token: ctx.spec.admin_token_secret(),
            arns,
        },
        elb_name,
        instance_profile_arn: String::new(),
    };
    Fixture { vpc_id, inputs }
}

async fn remove_fixture(ctx: &Ctx, f: &Fixture) {
    let _ = ctx
        .elb
        .delete_load_balancer()
        .load_balancer_name(&f.inputs.elb_name)
        .send()
        .await;
    for name in [ctx.spec.db_password_secret(), ctx.spec.admin_token_secret()] {
        let _ = ctx.ssm.delete_parameter().name(name).send().await;
    }
    // Instances of a force-deleted group may hold the subnets for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = ctx
            .ec2
            .delete_security_group()
            .group_id(&f.inputs.groups.nodes)
            .send()
            .await;
        for s in &f.inputs.net.private {
            let _ = ctx.ec2.delete_subnet().subnet_id(&s.id).send().await;
        }
        if ctx.ec2.delete_vpc().vpc_id(&f.vpc_id).send().await.is_ok() || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn compute_converges_repairs_and_deletes() {
    let started = Instant::now();
    let stack = common::stack_name("cmp");
    let ctx = common::ctx(&stack, REGION, config()).await;
    let f = fixture(&ctx).await;
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
    remove_fixture(&ctx, &f).await;
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
    assert_eq!(data.security_group_ids(), [inputs.groups.nodes.clone()]);
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
    assert_eq!(g.load_balancer_names(), [inputs.elb_name.clone()]);
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
    assert_eq!(h.heartbeat_timeout(), Some(180));
    assert_eq!(h.default_result(), Some("CONTINUE"));

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

    // Drift: max size, the hook, the policy.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .max_size(5)
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
    assert_eq!(group.fields.len(), 1, "{group:?}");
    assert_eq!(group.fields[0].field, "max_size");
    assert_eq!(group.fields[0].current.as_deref(), Some("5"));
    assert_eq!(group.fields[0].desired.as_deref(), Some("2"));
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
    assert_eq!(g.auto_scaling_groups()[0].max_size(), Some(2));
    let status = compute::status(&cur, &Default::default());
    assert!(
        status
            .iter()
            .any(|s| s.resource == format!("autoscaling-group {name}") && s.details["max"] == "2"),
        "{status:?}"
    );

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

#[tokio::test]
async fn artifact_uploads_once_and_deletes() {
    let stack = common::stack_name("art");
    let ctx = common::ctx(&stack, REGION, config()).await;
    let dir = std::env::temp_dir().join(format!("compute-art-{stack}"));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("gateway");
    std::fs::write(&binary, format!("#!/bin/sh\necho {stack}\n")).unwrap();
    let sha = artifacts::sha256_file(&binary).unwrap();
    assert_eq!(artifacts::locate_binary(Some(&binary)).unwrap(), binary);

    let cur = artifacts::discover(&ctx, &sha).await.unwrap();
    assert_eq!(
        actions(&artifacts::plan(&ctx, &cur))
            .iter()
            .map(|a| a.1)
            .collect::<Vec<_>>(),
        [Action::Create, Action::Create]
    );
    let art = artifacts::converge(&ctx, &cur, &binary, &sha)
        .await
        .unwrap();
    assert_eq!(
        art.bucket,
        format!("{stack}-artifacts-000000000000-{REGION}")
    );
    assert_eq!(art.key, format!("gateway/{sha}"));

    let s3 = &ctx.s3;
    let pab = s3
        .get_public_access_block()
        .bucket(&art.bucket)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = s3
        .get_bucket_encryption()
        .bucket(&art.bucket)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let tags = s3
        .get_bucket_tagging()
        .bucket(&art.bucket)
        .send()
        .await
        .unwrap();
    assert!(tags
        .tag_set()
        .iter()
        .any(|t| t.key() == STACK_TAG && t.value() == stack));
    let obj = s3
        .get_object()
        .bucket(&art.bucket)
        .key(&art.key)
        .send()
        .await
        .unwrap();
    let body = obj.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], std::fs::read(&binary).unwrap().as_slice());

    // Unchanged: no upload (the file is gone, so an upload would fail).
    std::fs::remove_dir_all(&dir).unwrap();
    let cur = artifacts::discover(&ctx, &sha).await.unwrap();
    assert_unchanged(&artifacts::plan(&ctx, &cur));
    assert_eq!(
        artifacts::converge(&ctx, &cur, &binary, &sha)
            .await
            .unwrap(),
        art
    );
    let listed = s3
        .list_objects_v2()
        .bucket(&art.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(1));

    artifacts::delete(&ctx, &cur).await.unwrap();
    assert!(s3.head_bucket().bucket(&art.bucket).send().await.is_err());
    let cur = artifacts::discover(&ctx, &sha).await.unwrap();
    assert!(cur.state.is_none());
    artifacts::delete(&ctx, &cur).await.unwrap();
}
