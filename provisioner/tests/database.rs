//! Secrets and the database against the kit: converge creates what the spec says (checked
//! through the raw SDKs), a second round changes nothing, drift is planned and repaired,
//! and delete honours deletion protection, keeps a final snapshot and its key.

mod common;

use std::time::Duration;

use aws_sdk_ec2::types::ResourceType;
use provisioner::context::Ctx;
use provisioner::database::{self, Database};
use provisioner::network::{Network, Subnet};
use provisioner::plan::{Action, Change};
use provisioner::secrets;
use provisioner::security::SecurityGroups;
use provisioner::spec::{SecretStore, StackConfig, STACK_TAG};

const REGION: &str = "us-east-1";

fn config() -> StackConfig {
    StackConfig {
        db_instance_class: "db.t3.micro".into(),
        db_allocated_storage: 20,
        ..StackConfig::default()
    }
}

fn all_unchanged(changes: &[Change]) {
    for c in changes {
        assert_eq!(c.action, Action::Unchanged, "{c:?}");
    }
}

/// A VPC, two private subnets in two AZs and the DB security group, named as the network
/// and security steps name them.
async fn network(ctx: &Ctx) -> (Network, SecurityGroups) {
    let ec2 = &ctx.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .tag_specifications(ctx.ec2_tags(ResourceType::Vpc, &ctx.spec.name("vpc")))
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let mut private = Vec::new();
    for (az, cidr) in [
        ("us-east-1a", "10.77.128.0/20"),
        ("us-east-1b", "10.77.144.0/20"),
    ] {
        let name = ctx.spec.name(&format!("private-{az}"));
        let out = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .availability_zone(az)
            .cidr_block(cidr)
            .tag_specifications(ctx.ec2_tags(ResourceType::Subnet, &name))
            .send()
            .await
            .expect("CreateSubnet");
        let id = out.subnet().and_then(|s| s.subnet_id()).expect("subnet id");
        private.push(Subnet {
            id: id.into(),
            az: az.into(),
            cidr: cidr.into(),
        });
    }
    let db = ctx.spec.name("db");
    let sg = ec2
        .create_security_group()
        .group_name(&db)
        .description("test db group")
        .vpc_id(&vpc_id)
        .tag_specifications(ctx.ec2_tags(ResourceType::SecurityGroup, &db))
        .send()
        .await
        .expect("CreateSecurityGroup");
    let sg = sg.group_id().expect("group id").to_string();
    let net = Network {
        vpc_id,
        vpc_cidr: "10.77.0.0/16".into(),
        public: vec![],
        private,
    };
    let groups = SecurityGroups {
        nodes: sg.clone(),
        db: sg.clone(),
        elb: sg,
    };
    (net, groups)
}

/// Keys (not pending deletion) tagged with `stack`.
async fn stack_keys(kms: &aws_sdk_kms::Client, stack: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pages = kms.list_keys().into_paginator().send();
    while let Some(page) = pages.next().await {
        for key in page.expect("ListKeys").keys() {
            let id = key.key_id().expect("key id");
            let Ok(tags) = kms.list_resource_tags().key_id(id).send().await else {
                continue;
            };
            if tags
                .tags()
                .iter()
                .any(|t| t.tag_key() == STACK_TAG && t.tag_value() == stack)
            {
                let meta = kms
                    .describe_key()
                    .key_id(id)
                    .send()
                    .await
                    .expect("DescribeKey");
                if meta
                    .key_metadata()
                    .and_then(|m| m.key_state())
                    .map(|s| s.as_str())
                    != Some("PendingDeletion")
                {
                    found.push(id.to_string());
                }
            }
        }
    }
    found
}

async fn connect(db: &Database, password: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host(&db.address)
        .port(u16::try_from(db.port).expect("port"))
        .user(provisioner::spec::DB_USER)
        .password(password)
        .dbname(provisioner::spec::DB_NAME)
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())
        .expect("connect with the master user and the stored password");
    tokio::spawn(conn);
    client
}

async fn round_trip(ctx: &Ctx, net: &Network, groups: &SecurityGroups) {
    let conf = common::config(REGION).await;
    let (rds, kms, ssm) = (
        aws_sdk_rds::Client::new(&conf),
        aws_sdk_kms::Client::new(&conf),
        aws_sdk_ssm::Client::new(&conf),
    );
    let stack = &ctx.spec.stack;
    let id = ctx.spec.db_identifier();

    // Secrets: created once, as SecureStrings with the stack's tags.
    let cur = secrets::discover(ctx).await.expect("discover secrets");
    assert!(secrets::plan(ctx, &cur)
        .iter()
        .all(|c| c.action == Action::Create));
    let sec = secrets::converge(ctx, &cur)
        .await
        .expect("converge secrets");
    for name in [&sec.db_password, &sec.admin_token] {
        let p = ssm
            .get_parameter()
            .name(name)
            .send()
            .await
            .expect("GetParameter");
        let p = p.parameter().expect("parameter");
        assert_eq!(
            p.r#type().map(|t| t.as_str()),
            Some("SecureString"),
            "{name}"
        );
        assert!(
            sec.arns.iter().any(|a| Some(a.as_str()) == p.arn()),
            "{name}"
        );
        let tags = ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .expect("ListTagsForResource");
        assert!(tags
            .tag_list()
            .iter()
            .any(|t| t.key() == STACK_TAG && t.value() == stack));
    }
    let password = secrets::db_password(ctx, &sec)
        .await
        .expect("read the password");
    assert!(password.0.len() == 32 && password.0.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(format!("{password:?}"), "******");
    let cur = secrets::discover(ctx).await.expect("discover secrets");
    assert!(!format!("{cur:?}{:?}", secrets::status(&cur)).contains(&password.0));
    all_unchanged(&secrets::plan(ctx, &cur));
    assert_eq!(
        secrets::converge(ctx, &cur).await.expect("converge again"),
        sec
    );
    let again = secrets::db_password(ctx, &sec).await.expect("read again");
    assert!(
        again.0 == password.0,
        "a second converge must not replace the password"
    );

    // Database: key, subnet group and instance as the spec says.
    let cur = discover_db(ctx, net, groups).await;
    assert!(database::plan(ctx, &cur)
        .iter()
        .all(|c| c.action == Action::Create));
    database::start(
        ctx,
        &cur,
        net,
        groups,
        &sec,
        &database::restore::Source::Empty,
    )
    .await
    .expect("start");
    let db = database::wait_available(ctx).await.expect("available");
    let key = kms
        .describe_key()
        .key_id(format!("alias/{id}"))
        .send()
        .await
        .expect("DescribeKey");
    let key_arn = key
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("key arn")
        .to_string();
    assert_eq!(db.kms_key_arn, key_arn);
    let rotation = kms
        .get_key_rotation_status()
        .key_id(&key_arn)
        .send()
        .await
        .expect("rotation");
    assert!(rotation.key_rotation_enabled());
    let out = rds
        .describe_db_instances()
        .db_instance_identifier(&id)
        .send()
        .await
        .expect("describe");
    let inst = out.db_instances().first().expect("instance");
    assert_eq!(inst.engine(), Some("postgres"));
    assert_eq!(inst.multi_az(), Some(true));
    assert_eq!(inst.storage_encrypted(), Some(true));
    assert_eq!(inst.kms_key_id(), Some(key_arn.as_str()));
    assert_eq!(inst.backup_retention_period(), Some(7));
    assert_eq!(inst.copy_tags_to_snapshot(), Some(true));
    assert_eq!(inst.deletion_protection(), Some(true));
    assert_eq!(inst.publicly_accessible(), Some(false));
    assert_eq!(inst.storage_type(), Some("gp3"));
    assert_eq!(inst.master_username(), Some("kong"));
    let sgs: Vec<_> = inst
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    assert_eq!(sgs, [groups.db.as_str()]);
    let group = inst.db_subnet_group().expect("subnet group");
    assert_eq!(group.db_subnet_group_name(), Some(id.as_str()));
    let mut subnets: Vec<_> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier())
        .collect();
    subnets.sort();
    let mut want: Vec<_> = net.private.iter().map(|s| s.id.as_str()).collect();
    want.sort();
    assert_eq!(subnets, want);
    assert!(inst
        .tag_list()
        .iter()
        .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack)));

    // The master user logs in with the password kept in SSM.
    let stored = ssm
        .get_parameter()
        .name(&sec.db_password)
        .with_decryption(true)
        .send()
        .await
        .expect("read");
    let stored = stored.parameter().and_then(|p| p.value()).expect("value");
    let client = connect(&db, stored).await;
    let row = client
        .query_one("SELECT current_user, current_database()", &[])
        .await
        .expect("query");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("kong".into(), "kong".into())
    );
    drop(client);

    // Second round: nothing to do, nothing duplicated.
    let cur = discover_db(ctx, net, groups).await;
    all_unchanged(&database::plan(ctx, &cur));
    database::start(
        ctx,
        &cur,
        net,
        groups,
        &sec,
        &database::restore::Source::Empty,
    )
    .await
    .expect("start again");
    assert_eq!(stack_keys(&kms, stack).await.len(), 1, "one key");
    assert_eq!(database::wait_available(ctx).await.expect("available"), db);
    assert_eq!(database::status(&cur).len(), 3);

    // Drift: retention lowered, alias removed.
    rds.modify_db_instance()
        .db_instance_identifier(&id)
        .backup_retention_period(1)
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyDBInstance");
    kms.delete_alias()
        .alias_name(format!("alias/{id}"))
        .send()
        .await
        .expect("DeleteAlias");
    let cur = discover_db(ctx, net, groups).await;
    let plan = database::plan(ctx, &cur);
    let drift: Vec<_> = plan.iter().filter(|c| c.action == Action::Update).collect();
    assert_eq!(drift.len(), 2, "{plan:?}");
    assert_eq!(drift[0].fields[0].field, "alias");
    assert_eq!(drift[1].resource, format!("db-instance {id}"));
    assert_eq!(drift[1].fields.len(), 1, "{plan:?}");
    let f = &drift[1].fields[0];
    assert_eq!(
        (f.field.as_str(), f.current.as_deref(), f.desired.as_deref()),
        ("backup_retention_period", Some("1"), Some("7"))
    );
    database::start(
        ctx,
        &cur,
        net,
        groups,
        &sec,
        &database::restore::Source::Empty,
    )
    .await
    .expect("repair");
    let out = rds
        .describe_db_instances()
        .db_instance_identifier(&id)
        .send()
        .await
        .expect("describe");
    assert_eq!(out.db_instances()[0].backup_retention_period(), Some(7));
    let key = kms
        .describe_key()
        .key_id(format!("alias/{id}"))
        .send()
        .await
        .expect("alias is back");
    assert_eq!(
        key.key_metadata().and_then(|m| m.arn()),
        Some(key_arn.as_str())
    );
    all_unchanged(&database::plan(
        ctx,
        &database::discover(ctx).await.expect("discover"),
    ));
    assert_eq!(stack_keys(&kms, stack).await.len(), 1, "still one key");

    // Delete: protection holds without --force; with it, a final snapshot keeps the key.
    let cur = discover_db(ctx, net, groups).await;
    let err = database::delete(ctx, &cur, false, false)
        .await
        .expect_err("protected");
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(rds
        .describe_db_instances()
        .db_instance_identifier(&id)
        .send()
        .await
        .is_ok());
    let snapshot = database::delete(ctx, &cur, false, true)
        .await
        .expect("delete")
        .expect("a final snapshot");
    assert!(snapshot.starts_with(&format!("{id}-final-")), "{snapshot}");
    let gone = rds
        .describe_db_instances()
        .db_instance_identifier(&id)
        .send()
        .await;
    assert!(gone.is_err(), "instance still there");
    let snaps = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .expect("snapshot");
    assert_eq!(snaps.db_snapshots()[0].kms_key_id(), Some(key_arn.as_str()));
    assert!(rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&id)
        .send()
        .await
        .is_err());
    let key = kms
        .describe_key()
        .key_id(format!("alias/{id}"))
        .send()
        .await
        .expect("key kept");
    assert_eq!(
        key.key_metadata()
            .and_then(|m| m.key_state())
            .map(|s| s.as_str()),
        Some("Enabled")
    );

    // A second delete is a no-op and still keeps the key for the snapshot.
    let cur = discover_db(ctx, net, groups).await;
    assert_eq!(
        database::delete(ctx, &cur, false, true)
            .await
            .expect("delete again"),
        None
    );
    assert!(kms
        .describe_key()
        .key_id(format!("alias/{id}"))
        .send()
        .await
        .is_ok());

    // Once the snapshot is gone, delete schedules the key's deletion.
    rds.delete_db_snapshot()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .expect("DeleteDBSnapshot");
    let cur = discover_db(ctx, net, groups).await;
    database::delete(ctx, &cur, false, true)
        .await
        .expect("delete the key");
    assert!(stack_keys(&kms, stack).await.is_empty());
    let cur = discover_db(ctx, net, groups).await;
    assert!(
        cur.key.is_none() && cur.instance.is_none() && cur.subnet_group.is_none(),
        "{cur:?}"
    );

    let cur = secrets::discover(ctx).await.expect("discover secrets");
    secrets::delete(ctx, &cur).await.expect("delete secrets");
    assert!(ssm
        .get_parameter()
        .name(&sec.db_password)
        .send()
        .await
        .is_err());
    secrets::delete(ctx, &cur).await.expect("second delete");
    assert!(secrets::discover(ctx)
        .await
        .expect("discover")
        .secrets()
        .is_none());
}

/// Best effort: whatever the test got to create.
async fn cleanup(ctx: &Ctx, net: &Network, groups: &SecurityGroups) {
    let id = ctx.spec.db_identifier();
    let rds = &ctx.rds;
    let _ = rds
        .modify_db_instance()
        .db_instance_identifier(&id)
        .deletion_protection(false)
        .send()
        .await;
    let _ = rds
        .delete_db_instance()
        .db_instance_identifier(&id)
        .skip_final_snapshot(true)
        .send()
        .await;
    if let Ok(out) = rds
        .describe_db_snapshots()
        .db_instance_identifier(&id)
        .send()
        .await
    {
        for s in out
            .db_snapshots()
            .iter()
            .filter_map(|s| s.db_snapshot_identifier())
        {
            let _ = rds
                .delete_db_snapshot()
                .db_snapshot_identifier(s)
                .send()
                .await;
        }
    }
    if let Ok(cur) = database::discover(ctx).await {
        let _ = database::delete(ctx, &cur, true, true).await;
    }
    if let Ok(cur) = secrets::discover(ctx).await {
        let _ = secrets::delete(ctx, &cur).await;
    }
    let _ = ctx
        .ec2
        .delete_security_group()
        .group_id(&groups.db)
        .send()
        .await;
    for s in &net.private {
        let _ = ctx.ec2.delete_subnet().subnet_id(&s.id).send().await;
    }
    let _ = ctx.ec2.delete_vpc().vpc_id(&net.vpc_id).send().await;
}

/// What the orchestrator does: discover, with the placement from the network steps.
async fn discover_db(
    ctx: &provisioner::context::Ctx,
    net: &provisioner::network::Network,
    groups: &provisioner::security::SecurityGroups,
) -> database::Current {
    let mut cur = database::discover(ctx).await.expect("discover database");
    cur.placement = database::Placement::new(net, groups);
    cur
}

#[tokio::test]
async fn database_converges_repairs_drift_and_deletes() {
    let stack = common::stack_name("dbt");
    let ctx = std::sync::Arc::new(common::ctx(&stack, REGION, config()).await);
    let (net, groups) = network(&ctx).await;
    let outcome = tokio::spawn({
        let (ctx, net, groups) = (ctx.clone(), net.clone(), groups.clone());
        async move { round_trip(&ctx, &net, &groups).await }
    })
    .await;
    cleanup(&ctx, &net, &groups).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn secrets_in_secrets_manager() {
    let stack = common::stack_name("dbsm");
    let config = StackConfig {
        secret_store: SecretStore::SecretsManager,
        ..config()
    };
    let ctx = std::sync::Arc::new(common::ctx(&stack, REGION, config).await);
    let sm = aws_sdk_secretsmanager::Client::new(&common::config(REGION).await);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let cur = secrets::discover(&ctx).await.expect("discover");
            let plan = secrets::plan(&ctx, &cur);
            assert!(plan
                .iter()
                .all(|c| c.action == Action::Create && c.resource.starts_with("secret /")));
            let sec = secrets::converge(&ctx, &cur).await.expect("converge");
            for (name, len) in [(&sec.db_password, 32), (&sec.admin_token, 48)] {
                let d = sm
                    .describe_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .expect("DescribeSecret");
                assert!(sec.arns.iter().any(|a| Some(a.as_str()) == d.arn()));
                assert!(d
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack.as_str())));
                let v = sm
                    .get_secret_value()
                    .secret_id(name)
                    .send()
                    .await
                    .expect("GetSecretValue");
                let v = v.secret_string().unwrap_or_default();
                assert!(
                    v.len() == len && v.bytes().all(|b| b.is_ascii_alphanumeric()),
                    "{name} is malformed"
                );
            }
            let token = secrets::admin_token(&ctx, &sec).await.expect("token");
            let cur = secrets::discover(&ctx).await.expect("discover");
            all_unchanged(&secrets::plan(&ctx, &cur));
            assert_eq!(secrets::converge(&ctx, &cur).await.expect("again"), sec);
            assert!(secrets::admin_token(&ctx, &sec).await.expect("token").0 == token.0);
            secrets::delete(&ctx, &cur).await.expect("delete");
            assert!(sm
                .describe_secret()
                .secret_id(&sec.db_password)
                .send()
                .await
                .is_err());
            secrets::delete(&ctx, &cur).await.expect("second delete");
            // No recovery window: the names can be used again at once.
            let cur = secrets::discover(&ctx).await.expect("discover");
            let again = secrets::converge(&ctx, &cur)
                .await
                .expect("converge after delete");
            assert_eq!(
                (again.db_password, again.admin_token),
                (sec.db_password, sec.admin_token)
            );
            secrets::delete(&ctx, &secrets::discover(&ctx).await.expect("discover"))
                .await
                .expect("delete");
        }
    });
    let outcome = tokio::time::timeout(Duration::from_secs(60), task).await;
    if let Ok(cur) = secrets::discover(&ctx).await {
        let _ = secrets::delete(&ctx, &cur).await;
    }
    if let Err(e) = outcome.expect("within a minute") {
        std::panic::resume_unwind(e.into_panic());
    }
}
