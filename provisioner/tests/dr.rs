//! Backups and the DR region's pilot light, end to end on the kit: `up` with a DR
//! region converges the key, the secret copies, the artifact and the backup
//! replication there; drift in them is shown and repaired; `backup create` copies a
//! snapshot to the DR region, and a restore of the copy holds exactly the rows written
//! before it; `backup status`, `list`, `prune`; and `down` removes the DR side too.

mod common;

use std::time::Duration;

use common::cli::{gateway_binary, plan_changes, run, run_ok};
use common::{config, instance_available, ssm_value, stack_name, wait_for};
use serde_json::Value;

const PRIMARY: &str = "eu-west-1";
const DR: &str = "us-west-2";
const WAIT: Duration = Duration::from_secs(240);

/// A small stack: one node, two AZs, one NAT; the DR region with a tight RPO target.
fn stack_toml(dir: &std::path::Path) -> String {
    let path = dir.join("stack.toml");
    std::fs::write(
        &path,
        format!(
            "az_count = 2\nnat = \"single\"\nmin_size = 1\ndesired_capacity = 1\n\
             gateway_binary = {:?}\n\n[dr]\nregion = \"{DR}\"\nrpo_target = \"2m\"\nrto_target = \"10m\"\n",
            gateway_binary()
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

async fn connect(region: &str, stack: &str, db_id: &str) -> tokio_postgres::Client {
    let rds = aws_sdk_rds::Client::new(&config(region).await);
    let inst = instance_available(&rds, db_id, WAIT).await;
    let endpoint = inst.endpoint().expect("endpoint");
    let password = ssm_value(PRIMARY, &format!("/{stack}/db/master-password"))
        .await
        .expect("the primary's password");
    let (client, conn) = tokio_postgres::Config::new()
        .host(endpoint.address().expect("address"))
        .port(u16::try_from(endpoint.port().expect("port")).unwrap())
        .user("kong")
        .password(password)
        .dbname("kong")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect with the master user");
    tokio::spawn(conn);
    client
}

fn resources(status: &Value) -> Vec<(String, String)> {
    status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dr_region_prerequisites_and_backups() {
    let dir = tempfile_dir();
    let toml = stack_toml(&dir);
    let stack = stack_name("bk");
    let config_args = ["--config", toml.as_str()];
    let ok = |args: &[&str]| run_ok(PRIMARY, &stack, &[args, &config_args].concat()).0;
    let raw = |args: &[&str]| run(PRIMARY, &stack, &[args, &config_args].concat());
    let changes = || plan_changes(PRIMARY, &stack, &config_args);

    // up converges the DR region too, and a second up (plan) changes nothing.
    ok(&["up", "--output", "json"]);
    assert_eq!(changes(), Vec::<Value>::new());
    let dr = config(DR).await;
    let kms = aws_sdk_kms::Client::new(&dr);
    let key = kms
        .describe_key()
        .key_id(format!("alias/{stack}-db"))
        .send()
        .await
        .expect("the DR key");
    let key_meta = key.key_metadata().unwrap();
    assert_eq!(key_meta.key_state().map(|s| s.as_str()), Some("Enabled"));
    let key_id = key_meta.key_id().to_string();
    for name in [
        format!("/{stack}/db/master-password"),
        format!("/{stack}/gateway/admin-token"),
    ] {
        let (here, there) = (ssm_value(PRIMARY, &name).await, ssm_value(DR, &name).await);
        assert!(here.is_some() && here == there, "{name} is copied to {DR}");
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&dr)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("{stack}-artifacts-000000000000-{DR}");
    let objects = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(
        objects.contents().len(),
        1,
        "the gateway binary is in {bucket}"
    );
    let rds_dr = aws_sdk_rds::Client::new(&dr);
    let rds = aws_sdk_rds::Client::new(&config(PRIMARY).await);
    let primary_db = instance_available(&rds, &format!("{stack}-db"), WAIT).await;
    let replicas = rds_dr
        .describe_db_instance_automated_backups()
        .dbi_resource_id(primary_db.dbi_resource_id().unwrap())
        .send()
        .await
        .unwrap();
    let replica = replicas
        .db_instance_automated_backups()
        .first()
        .expect("a replica");
    assert_eq!(replica.status(), Some("replicating"));
    assert_eq!(replica.kms_key_id(), key_meta.arn());
    let status = ok(&["status", "--output", "json"]);
    let rows = resources(&status);
    assert!(
        rows.iter()
            .any(|(r, s)| r.starts_with("backup-replication") && s == "replicating"),
        "{rows:?}"
    );

    // Drift in the DR region: a copy's value changed, the key disabled. plan shows
    // both (never a value); up repairs them.
    let ssm_dr = aws_sdk_ssm::Client::new(&dr);
    ssm_dr
        .put_parameter()
        .name(format!("/{stack}/gateway/admin-token"))
        .value("drifted-token-value")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let text = serde_json::to_string(&changes()).unwrap();
    assert!(
        text.contains(&format!("/{stack}/gateway/admin-token in {DR}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("kms-key alias/{stack}-db in {DR}")),
        "{text}"
    );
    assert!(
        !text.contains("drifted-token-value"),
        "a value in the plan: {text}"
    );
    ok(&["up", "--output", "json"]);
    assert_eq!(changes(), Vec::<Value>::new());

    // A backup copied to the DR region holds the rows written before it, and none after.
    let db = connect(PRIMARY, &stack, &format!("{stack}-db")).await;
    db.batch_execute("CREATE TABLE dr_marks (n int); INSERT INTO dr_marks VALUES (1)")
        .await
        .unwrap();
    let created = ok(&["backup", "create", "--output", "json"]);
    db.batch_execute("INSERT INTO dr_marks VALUES (2)")
        .await
        .unwrap();
    let snapshot = created["snapshot"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["copies"][0]["region"], DR, "{created}");
    assert_eq!(created["copies"][0]["status"], "available", "{created}");
    assert_eq!(created["copies"][0]["kms_key_id"].as_str(), key_meta.arn());
    let tags = serde_json::to_string(&created["snapshot"]["tags"]).unwrap();
    for tag in [
        "gateway-kit:backup",
        "gateway-kit:created-at",
        "gateway-kit:gateway-version",
        "gateway-kit:migrations",
    ] {
        assert!(tags.contains(tag), "{tag} in {tags}");
    }
    let listing = ok(&["backup", "list", "--output", "json"]);
    let listed: Vec<(String, String)> = listing["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["region"].as_str().unwrap().into(),
                s["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        listed.contains(&(PRIMARY.into(), snapshot.clone())),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(DR.into(), snapshot.clone())),
        "{listed:?}"
    );
    let restored = format!("{stack}-check");
    // The restore goes into the DR region's default VPC, through a subnet group of its own.
    let ec2_dr = aws_sdk_ec2::Client::new(&dr);
    let subnets = ec2_dr
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("default-for-az")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let check_group = format!("{stack}-check");
    rds_dr
        .create_db_subnet_group()
        .db_subnet_group_name(&check_group)
        .db_subnet_group_description("dr test restore")
        .set_subnet_ids(Some(
            subnets
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect(),
        ))
        .send()
        .await
        .expect("a subnet group in the DR region's default VPC");
    rds_dr
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&restored)
        .db_snapshot_identifier(&snapshot)
        .db_subnet_group_name(&check_group)
        .deletion_protection(false)
        .send()
        .await
        .expect("restore the copy in the DR region");
    let copy = connect(DR, &stack, &restored).await;
    let marks: Vec<i32> = copy
        .query("SELECT n FROM dr_marks ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        marks,
        [1],
        "the copy holds the rows written before the backup only"
    );
    rds_dr
        .delete_db_instance()
        .db_instance_identifier(&restored)
        .skip_final_snapshot(true)
        .send()
        .await
        .unwrap();
    rds_dr
        .delete_db_subnet_group()
        .db_subnet_group_name(&check_group)
        .send()
        .await
        .ok();

    // backup status: both regions within the target (the kit archives every 5 s).
    let (bstatus, _) = wait_for("both regions within the RPO target", WAIT, || async {
        let out = raw(&["backup", "status", "--output", "json"]);
        let json: Value = serde_json::from_slice(&out.stdout).ok()?;
        out.status.success().then_some((json, ()))
    })
    .await;
    let regions = bstatus["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 2, "{bstatus}");
    assert!(
        regions
            .iter()
            .all(|r| r["rpo_seconds"].as_i64().unwrap() <= 120),
        "{bstatus}"
    );

    // A copy to a region without the stack's key fails before any snapshot, naming it.
    let out = raw(&["backup", "create", "--copy-to", "ap-south-1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("alias/{stack}-db")) && err.contains("ap-south-1"),
        "{err}"
    );

    // prune keeps N per region and asks first (no terminal: --yes needed).
    ok(&["backup", "create", "--no-copy", "--output", "json"]);
    let out = raw(&["backup", "prune", "--keep", "1"]);
    assert!(!out.status.success(), "prune without --yes off a terminal");
    let pruned = ok(&[
        "backup", "prune", "--keep", "1", "--yes", "--output", "json",
    ]);
    let gone: Vec<String> = pruned["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["region"].as_str().unwrap(),
                s["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        gone,
        [format!("{PRIMARY} {snapshot}")],
        "the older backup in {PRIMARY} only"
    );

    // down removes the DR side: replication stopped, copies and bucket gone; the DR key
    // stays while the copied backup needs it.
    ok(&[
        "down",
        "--yes",
        "--force",
        "--skip-final-snapshot",
        "--output",
        "json",
    ]);
    assert_eq!(
        ssm_value(DR, &format!("/{stack}/gateway/admin-token")).await,
        None
    );
    assert!(
        s3.head_bucket().bucket(&bucket).send().await.is_err(),
        "{bucket} is gone"
    );
    let replicas = rds_dr
        .describe_db_instance_automated_backups()
        .dbi_resource_id(primary_db.dbi_resource_id().unwrap())
        .send()
        .await
        .map(|o| {
            o.db_instance_automated_backups()
                .iter()
                .filter(|b| b.status() == Some("replicating"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(replicas, 0, "replication stopped");
    // Clean up what the test left on purpose: the copy, then the key.
    rds_dr
        .delete_db_snapshot()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    rds.delete_db_snapshot()
        .db_snapshot_identifier(
            listed
                .iter()
                .find(|(r, id)| r == PRIMARY && id != &snapshot)
                .map(|(_, id)| id.clone())
                .unwrap_or_default(),
        )
        .send()
        .await
        .ok();
    kms.schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .ok();
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(common::unique("dr-test"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
