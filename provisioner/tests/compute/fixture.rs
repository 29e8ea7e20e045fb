//! The VPC, subnets, security group, ELB and secrets the nodes need, made with the
//! raw SDK (their own modules are tested on their own).

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
use provisioner::artifacts::Artifact;
use provisioner::compute::NodeInputs;
use provisioner::context::Ctx;
use provisioner::database::Database;
use provisioner::network::{Network, Subnet};
use provisioner::secrets::Secrets;
use provisioner::security::SecurityGroups;

use super::REGION;

pub struct Fixture {
    pub vpc_id: String,
    pub inputs: NodeInputs,
}

pub async fn fixture(ctx: &Ctx) -> Fixture {
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

pub async fn remove_fixture(ctx: &Ctx, f: &Fixture) {
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
