//! Writes the launch template: creates it, or a new version set as default when the
//! desired data differs; deletes it.

use anyhow::{bail, Context as _, Result};
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, Tag,
    VolumeType,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::template::{data_diff, desired, tags_diff, Data};
use super::NodeInputs;
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::spec::{
    IMDS_HOP_LIMIT, IMDS_HTTP_ENDPOINT, IMDS_HTTP_TOKENS, ROOT_VOLUME_ENCRYPTED, ROOT_VOLUME_TYPE,
};

fn request(ctx: &Ctx, data: &Data) -> RequestLaunchTemplateData {
    let tag_spec = |kind: ResourceType| {
        let mut spec = LaunchTemplateTagSpecificationRequest::builder().resource_type(kind);
        for (k, v) in ctx.tags(&ctx.spec.asg_name()) {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
        spec.build()
    };
    let ebs = LaunchTemplateEbsBlockDeviceRequest::builder()
        .volume_type(VolumeType::from(ROOT_VOLUME_TYPE))
        .encrypted(ROOT_VOLUME_ENCRYPTED)
        .delete_on_termination(true)
        .set_volume_size(data.root_size)
        .build();
    RequestLaunchTemplateData::builder()
        .set_image_id(data.image_id.clone())
        .set_instance_type(data.instance_type.as_deref().map(InstanceType::from))
        .set_iam_instance_profile(data.instance_profile_arn.as_ref().map(|arn| {
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(arn)
                .build()
        }))
        .set_security_group_ids(data.security_group_ids.clone())
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(IMDS_HTTP_TOKENS))
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::from(
                    IMDS_HTTP_ENDPOINT,
                ))
                .http_put_response_hop_limit(IMDS_HOP_LIMIT)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .set_device_name(data.root_device.clone())
                .ebs(ebs)
                .build(),
        )
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
        .set_user_data(data.user_data.clone())
        .build()
}

/// Returns the template id and the version the group must run.
pub async fn converge(
    ctx: &Ctx,
    current: &super::Current,
    inputs: &NodeInputs,
) -> Result<(String, i64)> {
    let name = ctx.spec.launch_template_name();
    let want = desired(ctx, current, Some(inputs));
    let size = want.user_data.as_deref().map_or(0, |u| u.len() / 4 * 3);
    if size > crate::userdata::MAX_USER_DATA {
        bail!("launch template {name}: user data is {size} bytes, over EC2's 16 KiB");
    }
    let Some(t) = &current.template else {
        let out = ctx
            .ec2
            .create_launch_template()
            .launch_template_name(&name)
            .version_description("provisioner")
            .launch_template_data(request(ctx, &want))
            .tag_specifications(ctx.ec2_tags(ResourceType::LaunchTemplate, &name))
            .send()
            .await
            .aws(format!("create launch template {name}"))?;
        let created = out
            .launch_template()
            .with_context(|| format!("create launch template {name}: no template"))?;
        let id = created
            .launch_template_id()
            .with_context(|| format!("create launch template {name}: no id"))?;
        let version = created.default_version_number().unwrap_or(1);
        ctx.progress.line(format!(
            "created launch-template {name} ({id} version {version})"
        ));
        return Ok((id.to_string(), version));
    };
    if !tags_diff(ctx, t).0.is_empty() {
        let mut tags = ctx.ec2.create_tags().resources(&t.id);
        for (k, v) in ctx.tags(&name) {
            tags = tags.tags(Tag::builder().key(k).value(v).build());
        }
        tags.send()
            .await
            .aws(format!("tag launch template {name}"))?;
        ctx.progress
            .line(format!("updated launch-template {name} (tags)"));
    }
    let diff = data_diff(&t.data, &want);
    if diff.0.is_empty() {
        return Ok((t.id.clone(), t.default_version));
    }
    let out = ctx
        .ec2
        .create_launch_template_version()
        .launch_template_id(&t.id)
        .version_description("provisioner")
        .launch_template_data(request(ctx, &want))
        .send()
        .await
        .aws(format!("create launch template version of {name}"))?;
    let version = out
        .launch_template_version()
        .and_then(|v| v.version_number())
        .with_context(|| format!("create launch template version of {name}: no version number"))?;
    ctx.ec2
        .modify_launch_template()
        .launch_template_id(&t.id)
        .default_version(version.to_string())
        .send()
        .await
        .aws(format!(
            "set default version {version} of launch template {name}"
        ))?;
    let fields: Vec<&str> = diff.0.iter().map(|f| f.field.as_str()).collect();
    ctx.progress.line(format!(
        "updated launch-template {name} (version {version}: {})",
        fields.join(", ")
    ));
    Ok((t.id.clone(), version))
}

pub async fn delete(ctx: &Ctx, current: &super::Current) -> Result<()> {
    let Some(t) = &current.template else {
        return Ok(());
    };
    let name = ctx.spec.launch_template_name();
    match ctx
        .ec2
        .delete_launch_template()
        .launch_template_id(&t.id)
        .send()
        .await
    {
        Ok(_) => ctx
            .progress
            .line(format!("deleted launch-template {name} ({})", t.id)),
        Err(e)
            if e.code()
                .is_some_and(|c| c.starts_with("InvalidLaunchTemplateId.NotFound")) => {}
        Err(e) => return Err(e).aws(format!("delete launch template {name}")),
    }
    Ok(())
}
