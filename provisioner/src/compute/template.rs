//! The launch template `<stack>-nodes`: AMI, type, instance profile, the nodes'
//! security group, IMDSv2 only (hop limit 1), an encrypted gp3 root volume, tags for
//! instances and volumes, and the cloud-config user data. Changed inputs make a new
//! version, set as default; unchanged inputs make none.

use anyhow::{Context as _, Result};
use aws_sdk_ec2::types::{Filter, ResourceType, ResponseLaunchTemplateData};
use base64::Engine as _;

use super::{our_tags, tag_strings, NodeInputs};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Action, Change, Diff, Status};
use crate::spec::{
    IMDS_HOP_LIMIT, IMDS_HTTP_ENDPOINT, IMDS_HTTP_TOKENS, ROOT_VOLUME_ENCRYPTED, ROOT_VOLUME_TYPE,
};

/// The comparable part of a template version. Input-dependent fields are None in a
/// desired state computed without inputs, and then not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Data {
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub instance_profile_arn: Option<String>,
    pub security_group_ids: Option<Vec<String>>,
    pub http_tokens: Option<String>,
    pub http_endpoint: Option<String>,
    pub hop_limit: Option<i32>,
    pub root_device: Option<String>,
    pub root_volume_type: Option<String>,
    pub root_encrypted: Option<bool>,
    pub root_size: Option<i32>,
    pub instance_tags: Vec<String>,
    pub volume_tags: Vec<String>,
    /// Base64, as EC2 holds it.
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub name: String,
    pub id: String,
    pub default_version: i64,
    pub latest_version: i64,
    pub tags: Vec<String>,
    /// The default version's data.
    pub data: Data,
}

fn normalize(data: &ResponseLaunchTemplateData) -> Data {
    let meta = data.metadata_options();
    let root = data.block_device_mappings().first();
    let ebs = root.and_then(|m| m.ebs());
    let tags_of = |kind: ResourceType| {
        tag_strings(
            data.tag_specifications()
                .iter()
                .filter(|s| s.resource_type() == Some(&kind))
                .flat_map(|s| s.tags())
                .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
        )
    };
    let mut groups = data.security_group_ids().to_vec();
    groups.sort();
    Data {
        image_id: data.image_id().map(str::to_string),
        instance_type: data.instance_type().map(|t| t.as_str().to_string()),
        instance_profile_arn: data
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_string),
        security_group_ids: Some(groups),
        http_tokens: meta
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_string()),
        http_endpoint: meta
            .and_then(|m| m.http_endpoint())
            .map(|t| t.as_str().to_string()),
        hop_limit: meta.and_then(|m| m.http_put_response_hop_limit()),
        root_device: root.and_then(|m| m.device_name()).map(str::to_string),
        root_volume_type: ebs
            .and_then(|e| e.volume_type())
            .map(|t| t.as_str().to_string()),
        root_encrypted: ebs.and_then(|e| e.encrypted()),
        root_size: ebs.and_then(|e| e.volume_size()),
        instance_tags: tags_of(ResourceType::Instance),
        volume_tags: tags_of(ResourceType::Volume),
        user_data: data.user_data().map(str::to_string),
    }
}

/// What the default version must hold.
pub fn desired(ctx: &Ctx, current: &super::Current, inputs: Option<&NodeInputs>) -> Data {
    let tags = tag_strings(
        ctx.tags(&ctx.spec.asg_name())
            .iter()
            .map(|(k, v)| (*k, v.as_str())),
    );
    Data {
        image_id: Some(current.ami.id.clone()),
        instance_type: Some(ctx.spec.config.instance_type.clone()),
        instance_profile_arn: inputs.map(|i| i.instance_profile_arn.clone()),
        security_group_ids: inputs.map(|i| vec![i.groups.nodes.clone()]),
        http_tokens: Some(IMDS_HTTP_TOKENS.into()),
        http_endpoint: Some(IMDS_HTTP_ENDPOINT.into()),
        hop_limit: Some(IMDS_HOP_LIMIT),
        root_device: Some(current.ami.root_device.clone()),
        root_volume_type: Some(ROOT_VOLUME_TYPE.into()),
        root_encrypted: Some(ROOT_VOLUME_ENCRYPTED),
        root_size: Some(current.ami.root_size),
        instance_tags: tags.clone(),
        volume_tags: tags,
        user_data: inputs.map(|i| {
            base64::engine::general_purpose::STANDARD.encode(crate::userdata::render(&ctx.spec, i))
        }),
    }
}

/// `sha256:<12 hex> (<n> bytes)`: user data is long; the digest shows that it differs.
fn digest(user_data: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, user_data.as_bytes());
    let hex: String = d
        .as_ref()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let len = base64::engine::general_purpose::STANDARD
        .decode(user_data)
        .map_or(user_data.len(), |b| b.len());
    format!("sha256:{hex} ({len} bytes)")
}

/// Fields of the version; a desired None (no inputs yet) is not compared.
pub fn data_diff(cur: &Data, want: &Data) -> Diff {
    let mut d = Diff::default();
    d.field(
        "image_id",
        cur.image_id.as_deref(),
        want.image_id.as_deref(),
    )
    .field(
        "instance_type",
        cur.instance_type.as_deref(),
        want.instance_type.as_deref(),
    )
    .field(
        "metadata.http_tokens",
        cur.http_tokens.as_deref(),
        want.http_tokens.as_deref(),
    )
    .field(
        "metadata.http_endpoint",
        cur.http_endpoint.as_deref(),
        want.http_endpoint.as_deref(),
    )
    .field("metadata.hop_limit", cur.hop_limit, want.hop_limit)
    .field(
        "root.device",
        cur.root_device.as_deref(),
        want.root_device.as_deref(),
    )
    .field(
        "root.volume_type",
        cur.root_volume_type.as_deref(),
        want.root_volume_type.as_deref(),
    )
    .field("root.encrypted", cur.root_encrypted, want.root_encrypted)
    .field("root.size_gib", cur.root_size, want.root_size)
    .set("instance_tags", &cur.instance_tags, &want.instance_tags)
    .set("volume_tags", &cur.volume_tags, &want.volume_tags);
    if want.instance_profile_arn.is_some() {
        d.field(
            "iam_instance_profile",
            cur.instance_profile_arn.as_deref(),
            want.instance_profile_arn.as_deref(),
        );
    }
    if let Some(groups) = &want.security_group_ids {
        d.set(
            "security_group_ids",
            cur.security_group_ids.as_deref().unwrap_or_default(),
            groups,
        );
    }
    if let Some(user_data) = &want.user_data {
        d.field(
            "user_data",
            cur.user_data.as_deref().map(digest),
            Some(digest(user_data)),
        );
    }
    d
}

pub(super) fn tags_diff(ctx: &Ctx, t: &Current) -> Diff {
    let (want, have) = our_tags(ctx, &ctx.spec.launch_template_name(), &t.tags);
    let mut d = Diff::default();
    d.set("tags", &have, &want);
    d
}

pub fn plan(ctx: &Ctx, current: &super::Current, inputs: Option<&NodeInputs>) -> Change {
    let resource = format!("launch-template {}", ctx.spec.launch_template_name());
    match &current.template {
        None => Change::create(resource),
        Some(t) => {
            let mut d = data_diff(&t.data, &desired(ctx, current, inputs));
            d.0.extend(tags_diff(ctx, t).0);
            d.into_change(resource)
        }
    }
}

/// The version the group must run once the template's `change` is applied: a new
/// version is the latest + 1 (EC2 numbers them so); a tag-only change makes none.
pub fn next_version(template: Option<&Current>, change: &Change) -> i64 {
    match template {
        None => 1,
        Some(t)
            if change.action == Action::Update
                && change.fields.iter().any(|f| f.field != "tags") =>
        {
            t.latest_version + 1
        }
        Some(t) => t.default_version,
    }
}

pub async fn discover(ctx: &Ctx) -> Result<Option<Current>> {
    let name = ctx.spec.launch_template_name();
    let out = ctx
        .ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("launch-template-name")
                .values(&name)
                .build(),
        )
        .send()
        .await
        .aws(format!("describe launch template {name}"))?;
    let Some(t) = out
        .launch_templates()
        .iter()
        .find(|t| t.launch_template_name() == Some(&name))
    else {
        return Ok(None);
    };
    let id = t
        .launch_template_id()
        .with_context(|| format!("launch template {name}: no id"))?;
    let default_version = t
        .default_version_number()
        .with_context(|| format!("launch template {name}: no default version"))?;
    let versions = ctx
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(default_version.to_string())
        .send()
        .await
        .aws(format!(
            "describe launch template {name} version {default_version}"
        ))?;
    let data = versions
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .with_context(|| {
            format!("launch template {name}: version {default_version} has no data")
        })?;
    Ok(Some(Current {
        name: name.clone(),
        id: id.to_string(),
        default_version,
        latest_version: t.latest_version_number().unwrap_or(default_version),
        tags: tag_strings(
            t.tags()
                .iter()
                .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
        ),
        data: normalize(data),
    }))
}

pub fn status(current: &super::Current) -> Vec<Status> {
    let Some(t) = &current.template else {
        return Vec::new();
    };
    vec![Status::new(
        format!("launch-template {}", t.name),
        Some(t.id.clone()),
        format!("version {}", t.default_version),
    )
    .detail("latest_version", t.latest_version.to_string())
    .detail("image_id", t.data.image_id.clone().unwrap_or_default())
    .detail(
        "instance_type",
        t.data.instance_type.clone().unwrap_or_default(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_desired_none_is_not_compared() {
        let cur = Data {
            image_id: Some("ami-1".into()),
            user_data: Some("eA==".into()),
            security_group_ids: Some(vec!["sg-1".into()]),
            ..Data::default()
        };
        let mut want = cur.clone();
        want.user_data = None;
        want.security_group_ids = None;
        assert!(data_diff(&cur, &want).0.is_empty());
        want.user_data = Some("eQ==".into());
        want.image_id = Some("ami-2".into());
        let d = data_diff(&cur, &want);
        let fields: Vec<&str> = d.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["image_id", "user_data"]);
        assert!(d.0[1].desired.as_deref().unwrap().ends_with("(1 bytes)"));
    }

    #[test]
    fn a_new_version_is_the_latest_plus_one() {
        let t = Current {
            name: "gw-nodes".into(),
            id: "lt-1".into(),
            default_version: 2,
            latest_version: 3,
            tags: Vec::new(),
            data: Data::default(),
        };
        let unchanged = Change::compare("x", Vec::new());
        assert_eq!(next_version(Some(&t), &unchanged), 2);
        let mut d = Diff::default();
        d.field("image_id", Some("a"), Some("b"));
        assert_eq!(next_version(Some(&t), &d.into_change("x")), 4);
        assert_eq!(next_version(None, &Change::create("x")), 1);
    }
}
