//! Which region serves the stack. `dr failover` and `dr failback` write it to an SSM
//! parameter `/<stack>/dr/active-region` in both regions (in a region that does not
//! answer, as best they can); readers take the newest record they can read, so `status`
//! and a re-run know where the stack lives even while one region is down.

use anyhow::Result;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::Status;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub region: String,
    /// Epoch seconds.
    pub since: i64,
    /// `failover` or `failback`.
    pub operation: String,
    pub from: String,
}

pub fn parameter(ctx: &Ctx) -> String {
    format!("/{}/dr/active-region", ctx.spec.owner())
}

pub async fn read(ctx: &Ctx) -> Result<Option<Active>> {
    let name = parameter(ctx);
    let out = match ctx.ssm.get_parameter().name(&name).send().await {
        Err(e) if e.code() == Some("ParameterNotFound") => return Ok(None),
        other => other.aws(format!("get ssm-parameter {name} in {}", ctx.spec.region))?,
    };
    let value = out.parameter().and_then(|p| p.value()).unwrap_or_default();
    Ok(serde_json::from_str(value).ok())
}

/// The newest record any of `ctxs` holds; unreadable regions are skipped.
pub async fn newest(ctxs: &[&Ctx]) -> Option<Active> {
    let mut found = Vec::new();
    for ctx in ctxs {
        if let Ok(Some(a)) = read(ctx).await {
            found.push(a);
        }
    }
    found.into_iter().max_by_key(|a| a.since)
}

pub async fn write(ctx: &Ctx, active: &Active) -> Result<()> {
    let name = parameter(ctx);
    ctx.ssm
        .put_parameter()
        .name(&name)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .value(serde_json::to_string(active)?)
        .overwrite(true)
        .send()
        .await
        .aws(format!("put ssm-parameter {name} in {}", ctx.spec.region))?;
    Ok(())
}

pub async fn delete(ctx: &Ctx) -> Result<()> {
    let name = parameter(ctx);
    match ctx.ssm.delete_parameter().name(&name).send().await {
        Err(e) if e.code() == Some("ParameterNotFound") => Ok(()),
        other => other
            .aws(format!(
                "delete ssm-parameter {name} in {}",
                ctx.spec.region
            ))
            .map(|_| ()),
    }
}

pub fn status(active: &Active) -> Status {
    Status::new("dr active-region", None, active.region.clone())
        .detail("since", super::replication::rfc3339(active.since))
        .detail("by", format!("{} from {}", active.operation, active.from))
}
