//! A DR drill against the kit: rows written to a Multi-AZ instance come back, over a real
//! PostgreSQL connection, from an instance restored in another region from a copy of its
//! snapshot; rows written after the snapshot do not.

mod common;

use std::time::Duration;

use aws_sdk_rds::types::DbInstance;
use aws_sdk_rds::Client;
use common::{config, instance_available, unique, wait_for};

const PRIMARY: &str = "us-east-1";
const DR: &str = "us-west-2";
const USER: &str = "kong";
const PASSWORD: &str = "drill-Pa55word";
const DB: &str = "kong";
const WAIT: Duration = Duration::from_secs(180);

async fn snapshot_available(rds: &Client, id: &str) -> String {
    wait_for(&format!("snapshot {id} available"), WAIT, || async {
        let out = rds
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
            .ok()?;
        let snap = out.db_snapshots().first()?;
        (snap.status() == Some("available"))
            .then(|| snap.db_snapshot_arn().unwrap_or_default().to_string())
    })
    .await
}

async fn connect(inst: &DbInstance) -> tokio_postgres::Client {
    let endpoint = inst
        .endpoint()
        .expect("an available instance has an endpoint");
    let address = endpoint.address().expect("address");
    assert!(
        address == "127.0.0.1" || address == "localhost",
        "endpoint address {address}"
    );
    let (client, conn) = tokio_postgres::Config::new()
        .host(address)
        .port(u16::try_from(endpoint.port().expect("port")).expect("port fits u16"))
        .user(USER)
        .password(PASSWORD)
        .dbname(DB)
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect with the master user");
    tokio::spawn(conn);
    client
}

async fn rows(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query("SELECT id, name FROM services ORDER BY id", &[])
        .await
        .expect("read rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[derive(Clone)]
struct Names {
    source: String,
    snapshot: String,
    copy: String,
    restored: String,
}

async fn drill(primary: &Client, dr: &Client, dr_kms: &aws_sdk_kms::Client, n: &Names) {
    // (1) a Multi-AZ, encrypted instance
    primary
        .create_db_instance()
        .db_instance_identifier(&n.source)
        .engine("postgres")
        .engine_version("15.4")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .multi_az(true)
        .storage_encrypted(true)
        .db_name(DB)
        .master_username(USER)
        .master_user_password(PASSWORD)
        .send()
        .await
        .expect("CreateDBInstance");
    let source = instance_available(primary, &n.source, WAIT).await;
    assert_eq!(source.multi_az(), Some(true));
    assert_eq!(source.storage_encrypted(), Some(true));

    // (2) rows through its endpoint
    let db = connect(&source).await;
    db.batch_execute(
        "CREATE TABLE services (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO services VALUES (1, 'billing'), (2, 'orders'), (3, 'users');",
    )
    .await
    .expect("write rows");
    let written = rows(&db).await;

    // (3) a snapshot, then a row it must not hold
    primary
        .create_db_snapshot()
        .db_instance_identifier(&n.source)
        .db_snapshot_identifier(&n.snapshot)
        .send()
        .await
        .expect("CreateDBSnapshot");
    let snapshot_arn = snapshot_available(primary, &n.snapshot).await;
    db.execute("INSERT INTO services VALUES (4, 'after-snapshot')", &[])
        .await
        .expect("late row");
    drop(db);

    // (4) a copy in the DR region, encrypted there with a key of that region
    let dr_key = dr_kms
        .create_key()
        .description(format!("{} DR", n.source))
        .send()
        .await
        .expect("CreateKey in the DR region");
    let dr_key_arn = dr_key
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("key ARN")
        .to_string();
    dr_kms
        .create_alias()
        .alias_name(format!("alias/{}", n.source))
        .target_key_id(&dr_key_arn)
        .send()
        .await
        .expect("CreateAlias");
    dr.copy_db_snapshot()
        .source_db_snapshot_identifier(&snapshot_arn)
        .target_db_snapshot_identifier(&n.copy)
        .kms_key_id(&dr_key_arn)
        .send()
        .await
        .expect("CopyDBSnapshot");
    snapshot_available(dr, &n.copy).await;

    // (5) restored there, with an endpoint of its own
    dr.restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&n.restored)
        .db_snapshot_identifier(&n.copy)
        .db_instance_class("db.t3.micro")
        .send()
        .await
        .expect("RestoreDBInstanceFromDBSnapshot");
    let restored = instance_available(dr, &n.restored, WAIT).await;
    assert_eq!(restored.kms_key_id(), Some(dr_key_arn.as_str()));
    assert!(restored
        .availability_zone()
        .unwrap_or_default()
        .starts_with(DR));
    assert_ne!(
        restored.endpoint().and_then(|e| e.port()),
        source.endpoint().and_then(|e| e.port()),
        "the restored instance has its own endpoint"
    );

    // (6) the same rows, read through the new endpoint
    let db = connect(&restored).await;
    assert_eq!(rows(&db).await, written);
}

async fn cleanup(primary: &Client, dr: &Client, dr_kms: &aws_sdk_kms::Client, n: &Names) {
    // Best effort: whatever the drill got to create.
    for (rds, id) in [(dr, &n.restored), (primary, &n.source)] {
        let _ = rds
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await;
    }
    for (rds, id) in [(dr, &n.copy), (primary, &n.snapshot)] {
        let _ = rds
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await;
    }
    let alias = format!("alias/{}", n.source);
    if let Ok(key) = dr_kms.describe_key().key_id(&alias).send().await {
        let _ = dr_kms.delete_alias().alias_name(&alias).send().await;
        if let Some(id) = key.key_metadata().map(|m| m.key_id()) {
            let _ = dr_kms
                .schedule_key_deletion()
                .key_id(id)
                .pending_window_in_days(7)
                .send()
                .await;
        }
    }
}

#[tokio::test]
async fn snapshot_copy_restore_keeps_rows_across_regions() {
    let primary = Client::new(&config(PRIMARY).await);
    let dr_config = config(DR).await;
    let dr = Client::new(&dr_config);
    let dr_kms = aws_sdk_kms::Client::new(&dr_config);
    let base = unique("kit-drill");
    let names = Names {
        source: base.clone(),
        snapshot: format!("{base}-snap"),
        copy: format!("{base}-snap-dr"),
        restored: format!("{base}-dr"),
    };
    let outcome = tokio::spawn({
        let (primary, dr, dr_kms, names) =
            (primary.clone(), dr.clone(), dr_kms.clone(), names.clone());
        async move { drill(&primary, &dr, &dr_kms, &names).await }
    })
    .await;
    cleanup(&primary, &dr, &dr_kms, &names).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    for (rds, id) in [(&dr, &names.restored), (&primary, &names.source)] {
        let gone = rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await;
        assert!(gone.is_err(), "{id} still exists after cleanup");
    }
}
