//! The AMI of the nodes: `ami` from stack.toml, else the newest Amazon Linux 2023
//! from its public SSM parameter; and its root device, for the template's root volume.

use anyhow::{bail, Context as _, Result};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::spec::AL2023_AMI_PARAMETER;

/// Root volume size, unless the AMI's own is larger.
pub const ROOT_VOLUME_GIB: i32 = 20;

/// The AMI to use and its root device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ami {
    pub id: String,
    pub root_device: String,
    pub root_size: i32,
}

pub async fn resolve_ami(ctx: &Ctx) -> Result<Ami> {
    let id = match &ctx.spec.config.ami {
        Some(id) => id.clone(),
        None => ctx
            .ssm
            .get_parameter()
            .name(AL2023_AMI_PARAMETER)
            .send()
            .await
            .aws(format!("get ssm parameter {AL2023_AMI_PARAMETER}"))?
            .parameter()
            .and_then(|p| p.value())
            .with_context(|| format!("ssm parameter {AL2023_AMI_PARAMETER} has no value"))?
            .to_string(),
    };
    let out = ctx.ec2.describe_images().image_ids(&id).send().await;
    let image = match out {
        Ok(out) => out.images().first().cloned(),
        Err(e) if e.code() == Some("InvalidAMIID.NotFound") => None,
        Err(e) => return Err(e).aws(format!("describe image {id}")),
    };
    let Some(image) = image else {
        bail!(
            "ami {id} does not exist in {}; set `ami` in stack.toml to an AMI of this region",
            ctx.spec.region
        );
    };
    let root_device = image
        .root_device_name()
        .with_context(|| format!("ami {id}: no root device name"))?
        .to_string();
    let image_size = image
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root_device.as_str()))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_size())
        .unwrap_or(0);
    Ok(Ami {
        id,
        root_device,
        root_size: image_size.max(ROOT_VOLUME_GIB),
    })
}
