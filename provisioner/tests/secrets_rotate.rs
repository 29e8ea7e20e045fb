//! `secrets rotate` against the kit: an RDS instance backed by real PostgreSQL, SSM
//! SecureStrings in the primary and the DR region. An interrupted rotation (a pending
//! value left behind) is resumed with its value, the database accepts the new password
//! and refuses the old one, the DR copies follow, the pending value is gone, and
//! neither the report nor the progress carries a value.

mod common;

use std::time::Duration;

use common::{ctx, instance_available, ssm_value, stack_name};
use provisioner::secrets::{self, rotate};
use provisioner::spec::{DrConfig, SecretStore, StackConfig};

const PRIMARY: &str = "us-east-1";
const DR: &str = "us-west-2";
const WAIT: Duration = Duration::from_secs(180);

async fn login(address: &str, port: i32, password: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::Config::new()
        .host(address)
        .port(port as u16)
        .user("kong")
        .password(password)
        .dbname("kong")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_resumes_a_pending_password_and_updates_the_database_and_dr_copies() {
    let stack = stack_name("rot");
    let config = StackConfig {
        secret_store: SecretStore::Ssm,
        dr: Some(DrConfig::new(DR)),
        ..StackConfig::default()
    };
    let ctx = ctx(&stack, PRIMARY, config).await;
    let dr = ctx.dr().unwrap();
    let db_name = ctx.spec.db_password_secret();
    let token_name = ctx.spec.admin_token_secret();

    // The stack's secrets and their DR copies, as `up` leaves them.
    let current = secrets::discover(&ctx).await.unwrap();
    let stored = secrets::converge(&ctx, &current).await.unwrap();
    let current = secrets::discover(&ctx).await.unwrap();
    let copies = secrets::copy::discover_copies(&ctx, &current, &dr)
        .await
        .unwrap();
    secrets::copy::converge(&ctx, &dr, &copies).await.unwrap();
    let old_password = secrets::db_password(&ctx, &stored).await.unwrap().0;
    let old_token = secrets::admin_token(&ctx, &stored).await.unwrap().0;

    let id = ctx.spec.db_identifier();
    ctx.rds
        .create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .engine_version("15.4")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .db_name("kong")
        .master_username("kong")
        .master_user_password(&old_password)
        .send()
        .await
        .expect("CreateDBInstance");
    let inst = instance_available(&ctx.rds, &id, WAIT).await;
    let endpoint = inst.endpoint().unwrap();
    let (address, port) = (endpoint.address().unwrap(), endpoint.port().unwrap());
    login(address, port, &old_password).await.unwrap();

    let (ctx2, address2) = (ctx.for_region(PRIMARY), address.to_string());
    let (db_name2, token_name2, old_password2) =
        (db_name.clone(), token_name.clone(), old_password.clone());
    let result = async move {
        let (ctx, address, db_name, token_name, old_password) = (
            &ctx2,
            address2.as_str(),
            db_name2,
            token_name2,
            old_password2,
        );
        // A run stopped after storing its pending value: the next run finishes with it.
        let pending_value = "Resumed0Pending0Password0abc";
        ctx.ssm
            .put_parameter()
            .name(rotate::pending_name(&db_name))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .value(pending_value)
            .send()
            .await
            .unwrap();
        let options = rotate::Options::from_flags(false, false);
        let report = rotate::rotate(ctx, options).await.unwrap();
        assert_eq!(report.rotated.len(), 2);
        assert!(report.rotated[0].resumed, "{report:?}");
        assert_eq!(report.rotated[0].copied_to, [DR]);
        assert_eq!(report.nodes_refresh_within_seconds, 30);
        let shown = format!(
            "{}{}",
            report.render_text(),
            serde_json::to_string(&report).unwrap()
        );
        assert_eq!(
            ssm_value(PRIMARY, &db_name).await.as_deref(),
            Some(pending_value)
        );
        assert_eq!(
            ssm_value(DR, &db_name).await.as_deref(),
            Some(pending_value)
        );
        assert_eq!(
            ssm_value(PRIMARY, &rotate::pending_name(&db_name)).await,
            None
        );
        login(address, port, pending_value).await.unwrap();
        assert!(login(address, port, &old_password).await.is_err());
        let new_token = ssm_value(PRIMARY, &token_name).await.unwrap();
        assert_ne!(new_token, old_token);
        assert_eq!(
            ssm_value(DR, &token_name).await.as_deref(),
            Some(&*new_token)
        );
        for v in [pending_value, &new_token, &old_password, &old_token] {
            assert!(!shown.contains(v), "a value in the report: {shown}");
        }

        // A fresh rotation of the password only: a new value, the token untouched.
        let report = rotate::rotate(ctx, rotate::Options::from_flags(true, false))
            .await
            .unwrap();
        assert_eq!(report.rotated.len(), 1);
        assert!(!report.rotated[0].resumed);
        let newest = ssm_value(PRIMARY, &db_name).await.unwrap();
        assert_ne!(newest, pending_value);
        assert_eq!(ssm_value(DR, &db_name).await.as_deref(), Some(&*newest));
        login(address, port, &newest).await.unwrap();
        assert!(login(address, port, pending_value).await.is_err());
        assert_eq!(
            ssm_value(PRIMARY, &token_name).await.as_deref(),
            Some(&*new_token)
        );
    };
    let outcome = tokio::spawn(result).await;

    // Clean up whatever happened.
    let _ = ctx
        .rds
        .delete_db_instance()
        .db_instance_identifier(&id)
        .skip_final_snapshot(true)
        .send()
        .await;
    for c in [&ctx, &dr] {
        for name in [
            db_name.clone(),
            token_name.clone(),
            rotate::pending_name(&db_name),
        ] {
            let _ = c.ssm.delete_parameter().name(&name).send().await;
        }
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The command line: without --yes off a terminal it refuses; a stack without secrets
/// is named; `--admin-token --output json` reports the rotation without the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_asks_first_and_reports_in_json() {
    let stack = stack_name("rotcli");
    let out = common::cli::run(PRIMARY, &stack, &["secrets", "rotate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`secrets rotate` changes stack") && err.contains("pass --yes"),
        "{err}"
    );
    let out = common::cli::run(PRIMARY, &stack, &["secrets", "rotate", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not exist") && err.contains("provisioner up"),
        "{err}"
    );

    let ctx = ctx(&stack, PRIMARY, StackConfig::default()).await;
    let current = secrets::discover(&ctx).await.unwrap();
    let stored = secrets::converge(&ctx, &current).await.unwrap();
    let old_token = secrets::admin_token(&ctx, &stored).await.unwrap().0;
    let old_password = secrets::db_password(&ctx, &stored).await.unwrap().0;
    // No database: a password rotation refuses before storing anything.
    let out = common::cli::run(
        PRIMARY,
        &stack,
        &["secrets", "rotate", "--db-password", "--yes"],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let pending = ssm_value(
        PRIMARY,
        &rotate::pending_name(&ctx.spec.db_password_secret()),
    )
    .await;
    let result = std::panic::catch_unwind(|| {
        assert!(!out.status.success());
        assert!(
            err.contains("db-instance") && err.contains("does not exist"),
            "{err}"
        );
        assert_eq!(pending, None, "a pending value was stored");
        common::cli::run_ok(
            PRIMARY,
            &stack,
            &[
                "secrets",
                "rotate",
                "--admin-token",
                "--yes",
                "--output",
                "json",
            ],
        )
    });
    let new_token = ssm_value(PRIMARY, &ctx.spec.admin_token_secret()).await;
    let password = ssm_value(PRIMARY, &ctx.spec.db_password_secret()).await;
    let current = secrets::discover(&ctx).await.unwrap();
    let _ = secrets::delete(&ctx, &current).await;
    let (json, stderr) = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(json["rotated"][0]["secret"], "admin_token", "{json}");
    assert_eq!(json["rotated"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["nodes_refresh_within_seconds"], 30);
    let new_token = new_token.unwrap();
    assert_ne!(new_token, old_token);
    assert_eq!(password.as_deref(), Some(old_password.as_str()));
    assert!(stderr.contains("updated ssm-parameter"), "{stderr}");
    let all = format!("{json}{stderr}");
    assert!(
        !all.contains(&new_token) && !all.contains(&old_token),
        "{all}"
    );
}
