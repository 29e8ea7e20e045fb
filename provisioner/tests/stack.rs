//! End to end: the `provisioner` binary against the kit, checked through the AWS API.
//! One stack goes through up (killed halfway, then resumed), a no-op up, plan, drift
//! and its repair, status, refused downs, and down.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use common::cli::{self, gateway_binary, provisioner};
use common::{config, stack_name};
use serde_json::Value;

const REGION: &str = "us-west-2";
const TAG: &str = "gateway-kit:stack";

fn run(stack: &str, args: &[&str]) -> Output {
    cli::run(REGION, stack, args)
}

fn run_ok(stack: &str, args: &[&str]) -> (Value, String) {
    cli::run_ok(REGION, stack, args)
}

fn plan_changes(stack: &str) -> Vec<Value> {
    cli::plan_changes(REGION, stack, &[])
}

/// Starts `up` and kills it (SIGKILL) once it has created the security groups.
fn up_killed_halfway(stack: &str) {
    let mut child = provisioner()
        .args(["up", "--region", REGION, "--stack", stack])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn provisioner up");
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let started = Instant::now();
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.expect("stderr line");
        seen.push(line.clone());
        if line.contains("security-group") && line.contains("created") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no security group after 5 min:\n{}",
            seen.join("\n")
        );
    }
    child.kill().expect("kill up");
    let status = child.wait().expect("reap up");
    assert!(
        !status.success(),
        "up ended before the kill:\n{}",
        seen.join("\n")
    );
}

async fn count_by_tag(ec2: &aws_sdk_ec2::Client, stack: &str) -> BTreeSet<(String, usize)> {
    let f = || {
        Filter::builder()
            .name(format!("tag:{TAG}"))
            .values(stack)
            .build()
    };
    let vpcs = ec2.describe_vpcs().filters(f()).send().await.unwrap();
    let subnets = ec2.describe_subnets().filters(f()).send().await.unwrap();
    let groups = ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .unwrap();
    let igws = ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .unwrap();
    let tables = ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .unwrap();
    let nats = ec2
        .describe_nat_gateways()
        .filter(f())
        .send()
        .await
        .unwrap();
    let live_nats = nats
        .nat_gateways()
        .iter()
        .filter(|n| !matches!(n.state().map(|s| s.as_str()), Some("deleted" | "deleting")))
        .count();
    [
        ("vpc", vpcs.vpcs().len()),
        ("subnet", subnets.subnets().len()),
        ("security-group", groups.security_groups().len()),
        ("internet-gateway", igws.internet_gateways().len()),
        ("route-table", tables.route_tables().len()),
        ("nat-gateway", live_nats),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect()
}

/// Ingress of a group as `tcp FROM-TO CIDR` strings.
fn ingress(group: &aws_sdk_ec2::types::SecurityGroup) -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    for p in group.ip_permissions() {
        for r in p.ip_ranges() {
            rules.insert(format!(
                "{} {}-{} {}",
                p.ip_protocol().unwrap_or("?"),
                p.from_port().unwrap_or(-1),
                p.to_port().unwrap_or(-1),
                r.cidr_ip().unwrap_or("?")
            ));
        }
    }
    rules
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_plan_drift_status_and_down() {
    gateway_binary();
    let stack = stack_name("e2e");
    let sdk = config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let rds = aws_sdk_rds::Client::new(&sdk);
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let elb = aws_sdk_elasticloadbalancing::Client::new(&sdk);

    // An up killed halfway, then a full one: it converges with nothing leaked.
    up_killed_halfway(&stack);
    let (out, _) = run_ok(&stack, &["up", "--output", "json"]);
    let first_counts = count_by_tag(&ec2, &stack).await;

    // Outputs name things, never secret values.
    let vpc_id = out["vpc_id"].as_str().expect("vpc_id").to_string();
    let elb_dns = out["elb_dns_name"].as_str().expect("elb_dns_name");
    assert!(!elb_dns.is_empty());
    assert_eq!(out["asg_name"], format!("{stack}-nodes"));
    assert_eq!(
        out["db_password_secret"],
        format!("/{stack}/db/master-password")
    );
    assert!(out["rds_endpoint"].as_str().unwrap().contains(':'));
    let private: Vec<String> = serde_json::from_value(out["private_subnet_ids"].clone()).unwrap();
    let public: Vec<String> = serde_json::from_value(out["public_subnet_ids"].clone()).unwrap();
    assert_eq!((private.len(), public.len()), (3, 3), "{out}");

    // The network: one VPC, 3 AZs, public and private subnets, a NAT per AZ.
    let expected_counts: BTreeSet<(String, usize)> = [
        ("vpc", 1),
        ("subnet", 6),
        ("security-group", 3),
        ("internet-gateway", 1),
        ("route-table", 4),
        ("nat-gateway", 3),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(first_counts, expected_counts);
    let subnets = ec2
        .describe_subnets()
        .subnet_ids(private[0].clone())
        .subnet_ids(private[1].clone())
        .subnet_ids(private[2].clone())
        .send()
        .await
        .unwrap();
    let azs: BTreeSet<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    assert_eq!(azs.len(), 3, "private subnets spread over 3 AZs");

    // Security groups: exactly the ports, from the VPC CIDR only.
    let groups = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG}"))
                .values(&stack)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let by_name = |n: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(n))
            .unwrap_or_else(|| panic!("group {n}"))
            .clone()
    };
    let nodes_sg = by_name(&format!("{stack}-nodes"));
    assert_eq!(
        ingress(&nodes_sg),
        set(&["tcp 8000-8003 10.0.0.0/16", "tcp 8443-8446 10.0.0.0/16"])
    );
    assert_eq!(
        ingress(&by_name(&format!("{stack}-db"))),
        set(&["tcp 5432-5432 10.0.0.0/16"])
    );
    assert_eq!(
        ingress(&by_name(&format!("{stack}-elb"))),
        set(&["tcp 80-80 0.0.0.0/0", "tcp 443-443 0.0.0.0/0"])
    );

    // RDS: MultiAZ, encrypted with a KMS key, backups, protection, tags.
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(format!("{stack}-db"))
        .send()
        .await
        .unwrap();
    let db = db.db_instances().first().expect("db instance").clone();
    assert_eq!(db.multi_az(), Some(true));
    assert_eq!(db.storage_encrypted(), Some(true));
    assert!(db.kms_key_id().is_some_and(|k| !k.is_empty()));
    assert_eq!(db.backup_retention_period(), Some(7));
    assert_eq!(db.deletion_protection(), Some(true));
    assert_eq!(db.copy_tags_to_snapshot(), Some(true));
    assert_eq!(db.engine(), Some("postgres"));
    assert!(db
        .tag_list()
        .iter()
        .any(|t| t.key() == Some(TAG) && t.value() == Some(&*stack)));
    let db_sgs: Vec<&str> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    assert_eq!(
        db_sgs,
        [by_name(&format!("{stack}-db")).group_id().unwrap()]
    );

    // The ELB: TCP 80->8000 and 443->8443, PROXY protocol on both, /status health check.
    let lb = elb
        .describe_load_balancers()
        .load_balancer_names(format!("{stack}-elb"))
        .send()
        .await
        .unwrap();
    let lb = lb
        .load_balancer_descriptions()
        .first()
        .expect("elb")
        .clone();
    let listeners: BTreeSet<String> = lb
        .listener_descriptions()
        .iter()
        .filter_map(|l| l.listener())
        .map(|l| {
            format!(
                "{} {}->{} {}",
                l.protocol(),
                l.load_balancer_port(),
                l.instance_port(),
                l.instance_protocol().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(listeners, set(&["TCP 80->8000 TCP", "TCP 443->8443 TCP"]));
    let proxied: BTreeSet<i32> = lb
        .backend_server_descriptions()
        .iter()
        .filter(|b| !b.policy_names().is_empty())
        .filter_map(|b| b.instance_port())
        .collect();
    assert_eq!(proxied, [8000, 8443].into_iter().collect());
    assert_eq!(
        lb.health_check().map(|h| h.target()),
        Some("HTTP:8001/status")
    );
    assert_eq!(
        lb.subnets().iter().collect::<BTreeSet<_>>(),
        public.iter().collect()
    );
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_name(format!("{stack}-elb"))
        .send()
        .await
        .unwrap();
    let attrs = attrs.load_balancer_attributes().expect("attributes");
    assert_eq!(
        attrs.cross_zone_load_balancing().map(|c| c.enabled()),
        Some(true)
    );
    assert_eq!(attrs.connection_draining().map(|c| c.enabled()), Some(true));

    // The ASG: private subnets of every AZ, on the ELB, ELB health checks, a drain hook.
    let group = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-nodes"))
        .send()
        .await
        .unwrap();
    let group = group.auto_scaling_groups().first().expect("asg").clone();
    assert_eq!(group.health_check_type(), Some("ELB"));
    assert_eq!(group.load_balancer_names(), [format!("{stack}-elb")]);
    assert_eq!(
        (group.min_size(), group.desired_capacity()),
        (Some(2), Some(2))
    );
    let zone_ids: BTreeSet<&str> = group
        .vpc_zone_identifier()
        .unwrap_or("")
        .split(',')
        .collect();
    assert_eq!(zone_ids, private.iter().map(String::as_str).collect());
    let hooks = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(format!("{stack}-nodes"))
        .send()
        .await
        .unwrap();
    assert!(hooks
        .lifecycle_hooks()
        .iter()
        .any(|h| h.lifecycle_transition() == Some("autoscaling:EC2_INSTANCE_TERMINATING")));

    // A second up changes nothing; plan agrees.
    let (_, log) = run_ok(&stack, &["up", "--output", "json"]);
    assert!(log.contains("nothing to change"), "{log}");
    assert!(
        !log.contains("created"),
        "a no-op up created something:\n{log}"
    );
    assert_eq!(count_by_tag(&ec2, &stack).await, expected_counts);
    assert_eq!(plan_changes(&stack), Vec::<Value>::new());

    // Drift: an SG rule removed and the ASG max changed. plan shows both; up repairs.
    ec2.revoke_security_group_ingress()
        .group_id(nodes_sg.group_id().unwrap())
        .ip_protocol("tcp")
        .from_port(8443)
        .to_port(8446)
        .cidr_ip("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(format!("{stack}-nodes"))
        .max_size(9)
        .send()
        .await
        .unwrap();
    let changes = plan_changes(&stack);
    let resources: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| c["resource"].as_str())
        .collect();
    assert_eq!(
        resources,
        [
            format!("security-group {stack}-nodes"),
            format!("autoscaling-group {stack}-nodes")
        ]
        .iter()
        .map(String::as_str)
        .collect(),
        "{changes:?}"
    );
    assert!(
        changes.iter().all(|c| c["action"] == "update"),
        "{changes:?}"
    );
    let out = run(&stack, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "plan --detailed-exitcode with changes"
    );
    run_ok(&stack, &["up", "--output", "json"]);
    assert_eq!(plan_changes(&stack), Vec::<Value>::new());
    let nodes_after = ec2
        .describe_security_groups()
        .group_ids(nodes_sg.group_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ingress(&nodes_after.security_groups()[0]),
        ingress(&nodes_sg)
    );

    // status: RDS state, instances with ELB health, the ELB DNS name.
    let (status, _) = run_ok(&stack, &["status", "--output", "json"]);
    let text = status.to_string();
    assert!(
        text.contains(&format!("{stack}-db")) && text.contains("available"),
        "{status}"
    );
    assert!(text.contains(elb_dns), "{status}");

    // down refuses without --yes off a terminal, and without --force on a protected DB.
    let out = run(&stack, &["down"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = run(&stack, &["down", "--yes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(
        count_by_tag(&ec2, &stack).await,
        expected_counts,
        "a refused down deleted something"
    );

    // down --yes --force: everything gone, the final snapshot kept.
    let (report, _) = run_ok(&stack, &["down", "--yes", "--force", "--output", "json"]);
    let snapshot = report["final_snapshot"]
        .as_str()
        .expect("final snapshot")
        .to_string();
    let zero: BTreeSet<(String, usize)> = expected_counts
        .iter()
        .map(|(k, _)| (k.clone(), 0))
        .collect();
    assert_eq!(count_by_tag(&ec2, &stack).await, zero);
    let gone = rds
        .describe_db_instances()
        .db_instance_identifier(format!("{stack}-db"))
        .send()
        .await;
    assert!(gone.is_err(), "the DB instance is still there");
    let snaps = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    assert_eq!(snaps.db_snapshots().len(), 1, "final snapshot {snapshot}");
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    assert!(!lbs
        .load_balancer_descriptions()
        .iter()
        .any(|l| l.load_balancer_name() == Some(&*format!("{stack}-elb"))));
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-nodes"))
        .send()
        .await
        .unwrap();
    assert!(groups.auto_scaling_groups().is_empty());

    // A second down finds nothing to do.
    run_ok(&stack, &["down", "--yes", "--force", "--output", "json"]);
    let _ = rds
        .delete_db_snapshot()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await;
}

#[test]
fn clear_errors_without_region_credentials_or_with_a_bad_config() {
    let out = provisioner()
        .args(["plan", "--stack", "gw"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --region"), "{err}");

    let dir = std::env::temp_dir().join(stack_name("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stack.toml");
    std::fs::write(&file, "vpc_cidr = \"10.0.0.0/16\"\nmax_nodes = 3\n").unwrap();
    let out = provisioner()
        .args(["plan", "--region", REGION, "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `max_nodes`") && err.contains("stack.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let out = provisioner()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["status", "--region", REGION, "--stack", "gw"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check the AWS credentials"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
