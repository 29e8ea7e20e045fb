//! Disaster recovery end to end on the kit, with real data and real traffic: routes made
//! through a node's Admin API, then a drill (data check, canary through the drill's ELB,
//! RTO by phase, RPO, nothing left), a drill from a backup older than the routes (fails,
//! saying what is missing), the refusals, a failover while every call to the primary
//! region fails (served by name from the DR region, within the RPO target, converged on a
//! re-run), and a failback that brings home what changed in the DR region.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::cli::{self, gateway_binary, run, run_ok};
use common::{config, endpoint, ssm_value, stack_name, wait_for};
use provisioner::probe::{self, Resolver};
use serde_json::Value;

const PRIMARY: &str = "eu-west-1";
const DR: &str = "us-west-2";
const WAIT: Duration = Duration::from_secs(300);

fn kit_dns() -> SocketAddr {
    let port = std::env::var("LOCALSTACK_KIT_DNS_PORT").unwrap_or_else(|_| "4553".into());
    format!("127.0.0.1:{port}").parse().unwrap()
}

struct Stack {
    name: String,
    toml: String,
}

impl Stack {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--config", self.toml.as_str()]);
        all
    }
    fn ok(&self, args: &[&str]) -> Value {
        run_ok(PRIMARY, &self.name, &self.args(args)).0
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        run(PRIMARY, &self.name, &self.args(args))
    }
}

fn write_toml(dir: &std::path::Path, file: &str, zone: &str, domain: &str, rpo: &str) -> String {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "az_count = 2\nnat = \"single\"\nmin_size = 1\ndesired_capacity = 1\n\
             domain = \"{domain}\"\nhosted_zone_id = \"{zone}\"\ngateway_binary = {:?}\n\n\
             [dr]\nregion = \"{DR}\"\nrpo_target = \"{rpo}\"\nrto_target = \"10m\"\n",
            gateway_binary()
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

/// A node's Admin API from inside the stack's VPC (as an operator's bastion would),
/// the token in a 0600 header file, never on a command line.
async fn admin(region: &str, stack: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let sdk = config(region).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let token = ssm_value(region, &format!("/{stack}/gateway/admin-token"))
        .await
        .expect("the admin token");
    let node = wait_for("a running node", WAIT, || async {
        let out = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:gateway-kit:stack")
                    .values(stack)
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .ok()?;
        let i = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()?;
        Some((i.private_ip_address()?.to_string(), i.vpc_id()?.to_string()))
    })
    .await;
    let (ip, vpc) = node;
    let ns = format!("kit-vpc-{}", vpc.trim_start_matches("vpc-"));
    let header = std::env::temp_dir().join(common::unique("admin-token"));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&header)
            .unwrap();
        writeln!(f, "Kong-Admin-Token: {token}").unwrap();
    }
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns,
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--retry",
        "5",
        "--retry-connrefused",
        "-X",
        method,
    ])
    .arg("-H")
    .arg(format!("@{}", header.display()))
    .arg(format!("http://{ip}:8001{path}"));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let out = cmd.output().expect("ip netns exec curl");
    std::fs::remove_file(&header).ok();
    assert!(
        out.status.success(),
        "admin {method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A regional outage through the kit's fault injection: every call to `region` fails
/// until the guard is dropped (also when the test fails), and only this rule goes.
struct Outage(i64);

impl Outage {
    fn of(region: &str) -> Outage {
        let rule = format!(
            r#"{{"region":"{region}","error":"ServiceUnavailable","message":"{region} is down (kit fault)","status":503,"count":1000000}}"#
        );
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
            ])
            .args(["--data", &rule, &format!("{}/_kit/faults", endpoint())])
            .output()
            .expect("curl POST /_kit/faults");
        let json: Value = serde_json::from_slice(&out.stdout).expect("a fault rule");
        Outage(json["id"].as_i64().expect("the rule's id"))
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let _ = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-X", "DELETE"])
            .arg(format!("{}/_kit/faults/{}", endpoint(), self.0))
            .output();
    }
}

/// GET path by name through whatever the name resolves to now, until a 200 (a node
/// picks up an Admin API change within its db_update_frequency).
async fn served(host: &str, path: &str) -> probe::Answer {
    probe::wait_served(
        &Resolver::Server(kit_dns()),
        host,
        80,
        path,
        WAIT,
        |a| a.status == 200,
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{host}{path} is not served: {e:#}"))
}

async fn record_target(zone: &str, domain: &str) -> String {
    let r53 = aws_sdk_route53::Client::new(&config(DR).await);
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    let r = out
        .resource_record_sets()
        .iter()
        .find(|r| r.name().trim_end_matches('.') == domain)
        .expect("the stack's record");
    match r.alias_target() {
        Some(a) => a.dns_name().trim_end_matches('.').to_lowercase(),
        None => r.resource_records()[0]
            .value()
            .trim_end_matches('.')
            .to_lowercase(),
    }
}

/// Nothing of `stack` is left in the DR region (`status` lists only what is missing).
fn assert_gone(stack: &str) {
    let status = run_ok(DR, stack, &["status", "--output", "json"]).0;
    let left: Vec<&Value> = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] != "missing")
        .collect();
    assert!(left.is_empty(), "{stack} is left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drill_failover_and_failback() {
    let name = stack_name("dr");
    let dir = std::env::temp_dir().join(common::unique("dr-recovery"));
    std::fs::create_dir_all(&dir).unwrap();
    let r53 = aws_sdk_route53::Client::new(&config(PRIMARY).await);
    let zone_name = format!("{name}.kit.example");
    let zone = r53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(common::unique("zone"))
        .send()
        .await
        .unwrap();
    let zone_id = zone
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let domain = format!("api.{zone_name}");
    let stack = Stack {
        toml: write_toml(&dir, "stack.toml", &zone_id, &domain, "2m"),
        name: name.clone(),
    };
    let dns = kit_dns().to_string();

    // The primary, with its pilot light in the DR region; a backup before any route.
    let up = stack.ok(&["up", "--output", "json"]);
    let primary_elb = up["elb_dns_name"].as_str().unwrap().to_lowercase();
    let old = stack.ok(&["backup", "create", "--output", "json"]);
    let old_backup = old["snapshot"]["id"].as_str().unwrap().to_string();

    // Routes through a node's Admin API: the canary, and one more.
    admin(
        PRIMARY,
        &name,
        "PUT",
        "/services/dr-canary",
        Some(r#"{"url":"http://127.0.0.1:8001/status"}"#),
    )
    .await;
    admin(
        PRIMARY,
        &name,
        "PUT",
        "/services/dr-canary/routes/dr-canary",
        Some(r#"{"paths":["/dr-canary"]}"#),
    )
    .await;
    admin(
        PRIMARY,
        &name,
        "PUT",
        "/services/extra",
        Some(r#"{"url":"http://127.0.0.1:8001/status"}"#),
    )
    .await;
    admin(
        PRIMARY,
        &name,
        "PUT",
        "/services/extra/routes/extra",
        Some(r#"{"paths":["/extra"]}"#),
    )
    .await;
    assert_eq!(served(&domain, "/dr-canary").await.status, 200);
    // The replica has caught up with the routes (the kit ships WAL every few seconds).
    tokio::time::sleep(Duration::from_secs(12)).await;

    // A drill: data match, canary through the drill ELB, RTO by phase, RPO; nothing left.
    let report_path = dir.join("drill.md");
    let out = stack.run(&[
        "dr",
        "drill",
        "--dns-server",
        &dns,
        "--output",
        "json",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    let drill: Value = serde_json::from_slice(&out.stdout).expect("a drill report");
    assert!(out.status.success(), "the drill failed: {drill:#}");
    assert_eq!(drill["passed"], true);
    assert_eq!(drill["data"]["matched"], true, "{drill:#}");
    assert_eq!(drill["data"]["restored_counts"]["routes"], 2, "{drill:#}");
    assert_eq!(drill["canary"]["served"], true, "{drill:#}");
    assert_eq!(drill["canary"]["status"], 200, "{drill:#}");
    let phases: Vec<&str> = drill["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["network", "restore", "nodes", "first request"]);
    let rpo = drill["rpo_seconds"].as_i64().unwrap();
    assert!((0..=120).contains(&rpo), "RPO {rpo}");
    eprintln!(
        "figure: drill RTO {:.1}s phases {} RPO {rpo}s",
        drill["rto_seconds"].as_f64().unwrap(),
        drill["phases"]
    );
    let md = std::fs::read_to_string(&report_path).unwrap();
    assert!(md.contains("RTO by phase") && md.contains("passed"), "{md}");
    assert_gone(&format!("{name}-drill"));
    // The drill borrowed the pilot light and left it as it was: nothing to converge.
    let after = cli::plan_changes(PRIMARY, &name, &["--config", stack.toml.as_str()]);
    assert_eq!(
        after,
        Vec::<Value>::new(),
        "the drill changed the primary or its pilot light"
    );

    // A drill from the backup made before the routes fails and names what is missing.
    let out = stack.run(&[
        "dr",
        "drill",
        "--snapshot",
        &old_backup,
        "--dns-server",
        &dns,
        "--output",
        "json",
        "--report",
        dir.join("old.md").to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "a drill from an old backup must fail"
    );
    let old_drill: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = old_drill["failures"].to_string();
    assert!(failures.contains("/dr-canary"), "{old_drill:#}");
    assert_gone(&format!("{name}-drill"));

    // Refusals: a missing snapshot; a DR region without the key.
    let out = stack.run(&["dr", "drill", "--snapshot", "no-such-snapshot"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-snapshot is not in us-west-2"));
    let out = stack.run(&["dr", "drill", "--dr-region", "ap-south-1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("alias/{name}-db"))
            && err.contains("ap-south-1"),
        "{err}"
    );
    // The primary region fails: every call to it is refused.
    let outage = Outage::of(PRIMARY);

    // An RPO target that cannot be met is refused, and nothing changes. The outage stops
    // the shipping of backups, so after a few seconds the replica is surely older than 1 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let strict = Stack {
        toml: write_toml(&dir, "strict.toml", &zone_id, &domain, "1s"),
        name: name.clone(),
    };
    let out = strict.run(&["dr", "failover", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("over the RPO target")
            && err.contains("--accept-data-loss"),
        "{err}"
    );
    let none = run_ok(DR, &name, &["status", "--output", "json"]).0;
    assert!(
        !none.to_string().contains("vpc "),
        "a refused failover built nothing: {none}"
    );

    let out = stack.run(&[
        "dr",
        "failover",
        "--yes",
        "--dns-server",
        &dns,
        "--output",
        "json",
    ]);
    let failover: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(out.status.success(), "failover: {failover:#}");
    assert!(
        failover["fenced"].as_str().unwrap().starts_with("no"),
        "{failover:#}"
    );
    let dr_elb = failover["elb_dns_name"].as_str().unwrap().to_lowercase();
    assert_ne!(dr_elb, primary_elb);
    assert_eq!(record_target(&zone_id, &domain).await, dr_elb);
    let resolver = Resolver::Server(kit_dns());
    assert_eq!(
        probe::resolve(&resolver, &domain).await.unwrap(),
        probe::resolve(&resolver, &dr_elb).await.unwrap(),
        "{domain} resolves to the DR ELB"
    );
    let answer = served(&domain, "/extra").await;
    assert_eq!(
        answer.status, 200,
        "a route made before the outage is served from {DR}"
    );
    let rpo = failover["rpo_seconds"].as_i64().unwrap();
    assert!((0..=120).contains(&rpo), "RPO {rpo} within the 2m target");
    eprintln!(
        "figure: failover RTO {:.1}s phases {} RPO {rpo}s",
        failover["rto_seconds"].as_f64().unwrap_or(-1.0),
        failover["phases"]
    );
    let rds_dr = aws_sdk_rds::Client::new(&config(DR).await);
    let db_before = rds_dr
        .describe_db_instances()
        .db_instance_identifier(format!("{name}-db"))
        .send()
        .await
        .unwrap();
    let again = stack.ok(&[
        "dr",
        "failover",
        "--yes",
        "--dns-server",
        &dns,
        "--output",
        "json",
    ]);
    assert_eq!(again["changed"], false, "{again:#}");
    let db_after = rds_dr
        .describe_db_instances()
        .db_instance_identifier(format!("{name}-db"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        db_before.db_instances()[0].dbi_resource_id(),
        db_after.db_instances()[0].dbi_resource_id()
    );

    // A change while in the DR region, then the primary comes back and the stack goes home.
    drop(outage);
    admin(
        DR,
        &name,
        "PUT",
        "/services/extra/routes/while-away",
        Some(r#"{"paths":["/while-away"]}"#),
    )
    .await;
    assert_eq!(served(&domain, "/while-away").await.status, 200);
    let back = stack.ok(&[
        "dr",
        "failback",
        "--yes",
        "--dns-server",
        &dns,
        "--output",
        "json",
    ]);
    eprintln!(
        "figure: failback RTO {:.1}s phases {}",
        back["rto_seconds"].as_f64().unwrap_or(-1.0),
        back["phases"]
    );
    let home_elb = back["elb_dns_name"].as_str().unwrap().to_lowercase();
    assert_eq!(record_target(&zone_id, &domain).await, home_elb);
    let answer = served(&domain, "/while-away").await;
    assert_eq!(
        answer.status, 200,
        "the change made in {DR} is served at home"
    );
    let status = stack.ok(&["status", "--output", "json"]);
    let active = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "dr active-region")
        .expect("status shows the active region");
    assert_eq!(active["state"], PRIMARY, "{active}");
    let dr_left = run_ok(DR, &name, &["status", "--output", "json"]).0;
    assert!(
        !dr_left.to_string().contains("autoscaling-group"),
        "the DR stack is removed: {dr_left}"
    );

    // Clean up: the stack, its snapshots and keys, the zone.
    stack.ok(&[
        "down",
        "--yes",
        "--force",
        "--skip-final-snapshot",
        "--output",
        "json",
    ]);
    for region in [PRIMARY, DR] {
        let rds = aws_sdk_rds::Client::new(&config(region).await);
        let snaps = rds.describe_db_snapshots().send().await.unwrap();
        for s in snaps.db_snapshots() {
            if s.db_snapshot_identifier()
                .is_some_and(|i| i.starts_with(&name))
            {
                rds.delete_db_snapshot()
                    .db_snapshot_identifier(s.db_snapshot_identifier().unwrap())
                    .send()
                    .await
                    .ok();
            }
        }
        let kms = aws_sdk_kms::Client::new(&config(region).await);
        if let Ok(k) = kms
            .describe_key()
            .key_id(format!("alias/{name}-db"))
            .send()
            .await
        {
            let id = k.key_metadata().unwrap().key_id().to_string();
            kms.delete_alias()
                .alias_name(format!("alias/{name}-db"))
                .send()
                .await
                .ok();
            kms.schedule_key_deletion()
                .key_id(id)
                .pending_window_in_days(7)
                .send()
                .await
                .ok();
        }
    }
    r53.delete_hosted_zone().id(&zone_id).send().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}
