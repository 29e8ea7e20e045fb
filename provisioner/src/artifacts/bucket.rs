//! The S3 side of the artifact: find the bucket and object, create and repair the
//! bucket, upload the binary once, and empty and delete the bucket.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine as _;

use super::{
    bucket_diff, bucket_name, desired_tags, object_key, Artifact, BucketState, Current,
    SSE_ALGORITHM,
};
use crate::aws::AwsResultExt;
use crate::context::Ctx;

pub async fn discover(ctx: &Ctx, sha256: &str) -> Result<Current> {
    let me = ctx
        .sts
        .get_caller_identity()
        .send()
        .await
        .aws("get caller identity")?;
    let account = me
        .account()
        .context("get caller identity: no account in the answer")?;
    let bucket = bucket_name(&ctx.spec, account)?;
    let key = object_key(sha256);
    let mut current = Current {
        bucket: bucket.clone(),
        key: key.clone(),
        state: None,
        object_exists: false,
    };
    match ctx.s3.head_bucket().bucket(&bucket).send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(current),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => bail!(
            "s3 bucket {bucket} exists but this account cannot use it (another account owns the name?)"
        ),
        Err(e) => return Err(e).aws(format!("head bucket {bucket}")),
    }
    let public_access_blocked = match ctx
        .s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
    {
        Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => false,
        Err(e) => return Err(e).aws(format!("get public access block of {bucket}")),
    };
    let encryption = match ctx.s3.get_bucket_encryption().bucket(&bucket).send().await {
        Ok(out) => out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_string()),
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => None,
        Err(e) => return Err(e).aws(format!("get encryption of {bucket}")),
    };
    let tags = match ctx.s3.get_bucket_tagging().bucket(&bucket).send().await {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        Err(e) if e.code() == Some("NoSuchTagSet") => Vec::new(),
        Err(e) => return Err(e).aws(format!("get tags of {bucket}")),
    };
    current.state = Some(BucketState {
        public_access_blocked,
        encryption,
        tags,
    });
    current.object_exists = match ctx.s3.head_object().bucket(&bucket).key(&key).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => false,
        Err(e) => return Err(e).aws(format!("head object s3://{bucket}/{key}")),
    };
    Ok(current)
}

pub async fn converge(
    ctx: &Ctx,
    current: &Current,
    binary: &Path,
    sha256: &str,
) -> Result<Artifact> {
    let bucket = current.bucket.as_str();
    if current.key != object_key(sha256) {
        bail!(
            "artifacts: discovered for another binary ({}); discover again",
            current.key
        );
    }
    let state = match &current.state {
        Some(state) => state.clone(),
        None => {
            let mut create = ctx.s3.create_bucket().bucket(bucket);
            if ctx.spec.region != "us-east-1" {
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(
                            ctx.spec.region.as_str(),
                        ))
                        .build(),
                );
            }
            create
                .send()
                .await
                .aws(format!("create s3 bucket {bucket}"))?;
            ctx.progress.line(format!("created s3-bucket {bucket}"));
            BucketState {
                public_access_blocked: false,
                encryption: None,
                tags: Vec::new(),
            }
        }
    };
    let diff = bucket_diff(ctx, bucket, &state);
    let fields: Vec<&str> = diff.0.iter().map(|f| f.field.as_str()).collect();
    if fields.contains(&"public_access_block") {
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        ctx.s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(block)
            .send()
            .await
            .aws(format!("block public access to {bucket}"))?;
    }
    if fields.contains(&"encryption") {
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::from(SSE_ALGORITHM))
                    .build()
                    .context("encryption rule")?,
            )
            .build();
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .context("encryption configuration")?;
        ctx.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .aws(format!("set default encryption of {bucket}"))?;
    }
    if fields.contains(&"tags") {
        // PutBucketTagging replaces the set: keep tags that others added.
        let ours = desired_tags(ctx, bucket);
        let mut all: Vec<(String, String)> = state
            .tags
            .iter()
            .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
            .cloned()
            .collect();
        all.extend(ours);
        let mut tagging = Tagging::builder();
        for (k, v) in all {
            tagging = tagging.tag_set(Tag::builder().key(k).value(v).build().context("tag")?);
        }
        ctx.s3
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging.build().context("tagging")?)
            .send()
            .await
            .aws(format!("tag {bucket}"))?;
    }
    if current.state.is_some() && !fields.is_empty() {
        ctx.progress.line(format!(
            "updated s3-bucket {bucket} ({})",
            fields.join(", ")
        ));
    }
    if !current.object_exists {
        upload(ctx, bucket, &current.key, binary, sha256).await?;
    }
    Ok(Artifact {
        bucket: bucket.to_string(),
        key: current.key.clone(),
        sha256: sha256.to_string(),
    })
}

/// S3 checks the upload against the sha256 we computed.
async fn upload(ctx: &Ctx, bucket: &str, key: &str, binary: &Path, sha256: &str) -> Result<()> {
    let digest: Vec<u8> = (0..sha256.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(sha256.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{sha256} is not a hex sha256"))?;
    let body = ByteStream::from_path(binary)
        .await
        .with_context(|| format!("cannot read {}", binary.display()))?;
    ctx.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .content_type("application/octet-stream")
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
        .send()
        .await
        .aws(format!(
            "upload {} to s3://{bucket}/{key}",
            binary.display()
        ))?;
    ctx.progress
        .line(format!("uploaded s3-object s3://{bucket}/{key}"));
    Ok(())
}

/// Empties and deletes the bucket.
pub async fn delete(ctx: &Ctx, current: &Current) -> Result<()> {
    if current.state.is_none() {
        return Ok(());
    }
    let bucket = current.bucket.as_str();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = match ctx
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
        {
            Ok(page) => page,
            Err(e) if e.code() == Some("NoSuchBucket") => return Ok(()),
            Err(e) => return Err(e).aws(format!("list objects of {bucket}")),
        };
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let mut ids = Vec::new();
        for (key, version) in versions.chain(markers) {
            let key =
                key.with_context(|| format!("list objects of {bucket}: a version without key"))?;
            ids.push(
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.map(str::to_string))
                    .build()
                    .context("object identifier")?,
            );
        }
        let count = ids.len();
        if count > 0 {
            let out = ctx
                .s3
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()
                        .context("delete")?,
                )
                .send()
                .await
                .aws(format!("delete objects of {bucket}"))?;
            if let Some(err) = out.errors().first() {
                bail!(
                    "delete objects of {bucket}: {}: {}",
                    err.key().unwrap_or("?"),
                    err.message().unwrap_or("failed")
                );
            }
            ctx.progress
                .line(format!("deleted {count} object(s) of s3-bucket {bucket}"));
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    match ctx.s3.delete_bucket().bucket(bucket).send().await {
        Ok(_) => ctx.progress.line(format!("deleted s3-bucket {bucket}")),
        Err(e) if e.code() == Some("NoSuchBucket") => {}
        Err(e) => return Err(e).aws(format!("delete s3 bucket {bucket}")),
    }
    Ok(())
}
