//! Calls through the AWS SDK for Rust reach every service the stack uses on the
//! LocalStack kit: each test creates something, reads it back, and removes it.

mod common;

use std::time::Duration;

use common::{config, instance_available, unique};

const REGION: &str = "us-east-1";

#[tokio::test]
async fn sts_reports_the_kit_account() {
    let sts = aws_sdk_sts::Client::new(&config(REGION).await);
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(me.account(), Some("000000000000"));
}

#[tokio::test]
async fn s3_stores_and_returns_an_object() {
    let conf = config(REGION).await;
    // LocalStack on an IP address: buckets go in the path, not the host name.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("kit-s3");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    s3.put_object()
        .bucket(&bucket)
        .key("hello.txt")
        .body(b"hello kit".to_vec().into())
        .send()
        .await
        .expect("PutObject");
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("hello.txt")
        .send()
        .await
        .expect("GetObject");
    let body = got.body.collect().await.expect("object body").into_bytes();
    assert_eq!(&body[..], b"hello kit");
    s3.delete_object()
        .bucket(&bucket)
        .key("hello.txt")
        .send()
        .await
        .expect("DeleteObject");
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("DeleteBucket");
}

#[tokio::test]
async fn ec2_creates_a_network() {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    let ec2 = aws_sdk_ec2::Client::new(&config(REGION).await);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.42.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("CreateSubnet");
    let subnet_id = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_string();
    let sg = ec2
        .create_security_group()
        .group_name(unique("kit-sg"))
        .description("kit test")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("CreateSecurityGroup");
    let sg_id = sg.group_id().expect("group id").to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&sg_id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(8000)
                .to_port(8000)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .expect("AuthorizeSecurityGroupIngress");
    let groups = ec2
        .describe_security_groups()
        .group_ids(&sg_id)
        .send()
        .await
        .expect("DescribeSecurityGroups");
    let perms = groups.security_groups()[0].ip_permissions();
    assert!(
        perms.iter().any(|p| p.from_port() == Some(8000)),
        "ingress rule missing: {perms:?}"
    );
    ec2.delete_security_group()
        .group_id(&sg_id)
        .send()
        .await
        .expect("DeleteSecurityGroup");
    ec2.delete_subnet()
        .subnet_id(&subnet_id)
        .send()
        .await
        .expect("DeleteSubnet");
    ec2.delete_vpc()
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("DeleteVpc");
}

/// Who the instance's endpoint says we are, logged in as `user`.
async fn current_user(inst: &aws_sdk_rds::types::DbInstance, user: &str, password: &str) -> String {
    let endpoint = inst.endpoint().expect("Endpoint");
    let (client, conn) = tokio_postgres::Config::new()
        .host(endpoint.address().expect("address"))
        .port(u16::try_from(endpoint.port().expect("port")).expect("port fits u16"))
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the instance's endpoint");
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    row.get(0)
}

#[tokio::test]
async fn rds_serves_postgres_instances_found_by_resource_id() {
    use aws_sdk_rds::types::Filter;
    let rds = aws_sdk_rds::Client::new(&config(REGION).await);
    // Two instances, each with its own server, user and password.
    let ids = [unique("kit-rds-a"), unique("kit-rds-b")];
    let users = ["kit_a", "kit_b"];
    for (id, user) in ids.iter().zip(users) {
        rds.create_db_instance()
            .db_instance_identifier(id)
            .engine("postgres")
            .engine_version("15.4")
            .db_instance_class("db.t3.micro")
            .allocated_storage(20)
            .master_username(user)
            .master_user_password(format!("{user}-secret-1"))
            .send()
            .await
            .expect("CreateDBInstance");
    }
    let a = instance_available(&rds, &ids[0], Duration::from_secs(120)).await;
    let b = instance_available(&rds, &ids[1], Duration::from_secs(120)).await;
    assert_ne!(
        a.endpoint().and_then(|e| e.port()),
        b.endpoint().and_then(|e| e.port())
    );

    // Terraform's AWS provider 5.x reads an instance back by its resource id.
    assert_ne!(
        a.dbi_resource_id(),
        b.dbi_resource_id(),
        "resource ids must differ"
    );
    for (inst, id) in [(&a, &ids[0]), (&b, &ids[1])] {
        let resource_id = inst.dbi_resource_id().expect("DbiResourceId");
        let found = rds
            .describe_db_instances()
            .filters(
                Filter::builder()
                    .name("dbi-resource-id")
                    .values(resource_id)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeDBInstances by dbi-resource-id");
        let found: Vec<_> = found
            .db_instances()
            .iter()
            .filter_map(|i| i.db_instance_identifier())
            .collect();
        assert_eq!(found, [id.as_str()]);
    }

    assert_eq!(current_user(&a, "kit_a", "kit_a-secret-1").await, "kit_a");
    assert_eq!(current_user(&b, "kit_b", "kit_b-secret-1").await, "kit_b");

    for id in &ids {
        rds.delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .expect("DeleteDBInstance");
        let err = rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .expect_err("deleted");
        assert!(err.into_service_error().is_db_instance_not_found_fault());
    }
}

#[tokio::test]
async fn autoscaling_runs_a_group_from_a_launch_template() {
    use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    let conf = config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let template = unique("kit-lt");
    ec2.create_launch_template()
        .launch_template_name(&template)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type("t3.micro".into())
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let group = unique("kit-asg");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name(&template)
                .version("$Latest")
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let described = &groups.auto_scaling_groups()[0];
    assert_eq!(described.desired_capacity(), Some(1));
    assert_eq!(described.instances().len(), 1, "one instance launched");
    asg.delete_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .force_delete(true)
        .send()
        .await
        .expect("DeleteAutoScalingGroup");
    ec2.delete_launch_template()
        .launch_template_name(&template)
        .send()
        .await
        .expect("DeleteLaunchTemplate");
}

#[tokio::test]
async fn elb_classic_sends_proxy_protocol_to_backends() {
    use aws_sdk_elasticloadbalancing::types::{Listener, PolicyAttribute};
    let elb = aws_sdk_elasticloadbalancing::Client::new(&config(REGION).await);
    let name = unique("kit-elb");
    elb.create_load_balancer()
        .load_balancer_name(&name)
        .listeners(
            Listener::builder()
                .protocol("TCP")
                .load_balancer_port(80)
                .instance_protocol("TCP")
                .instance_port(8000)
                .build()
                .expect("listener"),
        )
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("CreateLoadBalancer");
    elb.create_load_balancer_policy()
        .load_balancer_name(&name)
        .policy_name("kit-proxy-protocol")
        .policy_type_name("ProxyProtocolPolicyType")
        .policy_attributes(
            PolicyAttribute::builder()
                .attribute_name("ProxyProtocol")
                .attribute_value("true")
                .build(),
        )
        .send()
        .await
        .expect("CreateLoadBalancerPolicy");
    elb.set_load_balancer_policies_for_backend_server()
        .load_balancer_name(&name)
        .instance_port(8000)
        .policy_names("kit-proxy-protocol")
        .send()
        .await
        .expect("SetLoadBalancerPoliciesForBackendServer");
    let lbs = elb
        .describe_load_balancers()
        .load_balancer_names(&name)
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let backends = lbs.load_balancer_descriptions()[0].backend_server_descriptions();
    assert!(
        backends.iter().any(|b| b.instance_port() == Some(8000)
            && b.policy_names().iter().any(|p| p == "kit-proxy-protocol")),
        "backend policy missing: {backends:?}"
    );
    elb.delete_load_balancer()
        .load_balancer_name(&name)
        .send()
        .await
        .expect("DeleteLoadBalancer");
}

#[tokio::test]
async fn route53_serves_a_record() {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let r53 = aws_sdk_route53::Client::new(&config(REGION).await);
    let zone_name = format!("{}.example.", unique("kit"));
    let zone = r53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(unique("ref"))
        .send()
        .await
        .expect("CreateHostedZone");
    let zone_id = zone.hosted_zone().expect("zone").id().to_string();
    let record = |action| {
        Change::builder()
            .action(action)
            .resource_record_set(
                ResourceRecordSet::builder()
                    .name(format!("api.{zone_name}"))
                    .r#type(RrType::A)
                    .ttl(60)
                    .resource_records(
                        ResourceRecord::builder()
                            .value("192.0.2.10")
                            .build()
                            .expect("record"),
                    )
                    .build()
                    .expect("record set"),
            )
            .build()
            .expect("change")
    };
    let batch = |action| {
        ChangeBatch::builder()
            .changes(record(action))
            .build()
            .expect("batch")
    };
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch(ChangeAction::Create))
        .send()
        .await
        .expect("ChangeResourceRecordSets create");
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .send()
        .await
        .expect("ListResourceRecordSets");
    assert!(
        sets.resource_record_sets()
            .iter()
            .any(|s| s.name() == format!("api.{zone_name}") && s.r#type() == &RrType::A),
        "A record missing"
    );
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch(ChangeAction::Delete))
        .send()
        .await
        .expect("ChangeResourceRecordSets delete");
    r53.delete_hosted_zone()
        .id(&zone_id)
        .send()
        .await
        .expect("DeleteHostedZone");
}

#[tokio::test]
async fn kms_encrypts_and_decrypts() {
    use aws_sdk_kms::primitives::Blob;
    let kms = aws_sdk_kms::Client::new(&config(REGION).await);
    let key = kms
        .create_key()
        .description("kit test")
        .send()
        .await
        .expect("CreateKey");
    let key_id = key.key_metadata().expect("metadata").key_id().to_string();
    let sealed = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"db password".to_vec()))
        .send()
        .await
        .expect("Encrypt");
    let opened = kms
        .decrypt()
        .ciphertext_blob(sealed.ciphertext_blob().expect("ciphertext").clone())
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(
        opened.plaintext().expect("plaintext").as_ref(),
        b"db password"
    );
    kms.schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion");
}

#[tokio::test]
async fn ssm_and_secretsmanager_keep_secrets() {
    use aws_sdk_ssm::types::ParameterType;
    let conf = config(REGION).await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let name = format!("/kit/{}", unique("param"));
    ssm.put_parameter()
        .name(&name)
        .value("s3cret")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter");
    let got = ssm
        .get_parameter()
        .name(&name)
        .with_decryption(true)
        .send()
        .await
        .expect("GetParameter");
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("s3cret"));
    ssm.delete_parameter()
        .name(&name)
        .send()
        .await
        .expect("DeleteParameter");

    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let secret = unique("kit-secret");
    sm.create_secret()
        .name(&secret)
        .secret_string("{\"password\":\"p\"}")
        .send()
        .await
        .expect("CreateSecret");
    let value = sm
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .expect("GetSecretValue");
    assert_eq!(value.secret_string(), Some("{\"password\":\"p\"}"));
    sm.delete_secret()
        .secret_id(&secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("DeleteSecret");
}
