//! The artifact bucket: made private and encrypted, the binary uploaded once, all deleted.

use provisioner::artifacts;
use provisioner::plan::Action;
use provisioner::spec::STACK_TAG;

use super::{actions, assert_unchanged, common, config, REGION};

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
