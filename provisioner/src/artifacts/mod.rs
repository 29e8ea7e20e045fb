//! Gateway artifact: an S3 bucket (`<stack>-artifacts-<account>-<region>`, private,
//! encrypted) holding the gateway binary under its sha256, so a new binary is a new
//! key (and a new launch template version) and an unchanged one uploads nothing.
//! Older binaries stay: older template versions still name them.

mod bucket;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Ctx;
use crate::plan::{Change, Diff, Status};
use crate::spec::{Spec, STACK_TAG};

pub use bucket::{converge, delete, discover};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub bucket: String,
    /// `gateway/<sha256>`.
    pub key: String,
    pub sha256: String,
}

/// Default encryption: SSE-S3.
const SSE_ALGORITHM: &str = "AES256";

/// `gateway_binary` from the spec, else `gateway` beside this executable, else on PATH.
pub fn locate_binary(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = configured {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("gateway_binary {} is not a file", path.display());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("gateway")));
    if let Some(path) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(path.clone());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("gateway"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(path) = on_path.into_iter().find(|p| p.is_file()) {
        return Ok(path);
    }
    bail!(
        "no gateway binary found: gateway_binary is not set in stack.toml, {} does not exist, \
         and there is no `gateway` on PATH; build it (cargo build --release -p gateway) and set \
         gateway_binary to target/release/gateway",
        beside.map_or("the directory of the provisioner".into(), |p| p
            .display()
            .to_string())
    )
}

/// Hex sha256 of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex(ctx.finish().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `<stack>-artifacts-<account>-<region>`: S3 names are global.
pub fn bucket_name(spec: &Spec, account: &str) -> Result<String> {
    let name = format!("{}-artifacts-{account}-{}", spec.owner(), spec.region);
    if name.len() > 63 {
        bail!("bucket name {name} is longer than S3's 63 characters; use a shorter stack name");
    }
    Ok(name)
}

pub fn object_key(sha256: &str) -> String {
    format!("gateway/{sha256}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketState {
    pub public_access_blocked: bool,
    /// Default encryption algorithm, if any.
    pub encryption: Option<String>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Current {
    pub bucket: String,
    pub key: String,
    /// None: the bucket does not exist.
    pub state: Option<BucketState>,
    pub object_exists: bool,
}

impl Current {
    /// The artifact, when the bucket holds the binary of the discovered sha256.
    pub fn artifact(&self) -> Option<Artifact> {
        let sha256 = self.key.strip_prefix("gateway/")?;
        (self.state.is_some() && self.object_exists && !sha256.is_empty()).then(|| Artifact {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            sha256: sha256.to_string(),
        })
    }

    /// The artifact `up` will ship: the one discovered, uploaded or not yet (a new
    /// binary), so that `plan` shows the new launch template version it makes.
    pub fn planned(&self) -> Option<Artifact> {
        let sha256 = self.key.strip_prefix("gateway/")?;
        (!sha256.is_empty()).then(|| Artifact {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            sha256: sha256.to_string(),
        })
    }
}

/// The bucket's tags: its owner's, also when a drill copy borrows it.
fn desired_tags(ctx: &Ctx, bucket: &str) -> Vec<(String, String)> {
    vec![
        ("Name".to_string(), bucket.to_string()),
        (STACK_TAG.to_string(), ctx.spec.owner().to_string()),
    ]
}

/// Tags as `key=value`.
fn tag_strings(tags: &[(String, String)]) -> Vec<String> {
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn bucket_diff(ctx: &Ctx, bucket: &str, state: &BucketState) -> Diff {
    let mut d = Diff::default();
    d.field(
        "public_access_block",
        Some(state.public_access_blocked),
        Some(true),
    )
    .field(
        "encryption",
        state.encryption.as_deref(),
        Some(SSE_ALGORITHM),
    );
    // Only our tag keys count; tags others added are left alone.
    let want = desired_tags(ctx, bucket);
    let have: Vec<(String, String)> = state
        .tags
        .iter()
        .filter(|(k, _)| want.iter().any(|(w, _)| w == k))
        .cloned()
        .collect();
    d.set("tags", &tag_strings(&have), &tag_strings(&want));
    d
}

pub fn plan(ctx: &Ctx, current: &Current) -> Vec<Change> {
    let bucket = format!("s3-bucket {}", current.bucket);
    let object = format!("s3-object {}", current.key);
    match &current.state {
        None => vec![Change::create(bucket), Change::create(object)],
        Some(state) => vec![
            bucket_diff(ctx, &current.bucket, state).into_change(bucket),
            if current.object_exists {
                Change::compare(object, Vec::new())
            } else {
                Change::create(object)
            },
        ],
    }
}

/// The bucket, and the object when discovered for a binary (`status` discovers
/// without one: the launch template's version says which binary runs).
pub fn status(current: &Current) -> Vec<Status> {
    let bucket = format!("s3-bucket {}", current.bucket);
    let Some(_) = &current.state else {
        return vec![Status::new(bucket, None, "missing")];
    };
    let mut rows = vec![Status::new(bucket, None, "available")];
    if current.key != object_key("") {
        let state = if current.object_exists {
            "uploaded"
        } else {
            "missing"
        };
        rows.push(Status::new(
            format!("s3-object {}", current.key),
            None,
            state,
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_s3() {
        let spec = Spec::new("a-twenty-char-stack1", "ap-southeast-3", Default::default()).unwrap();
        let name = bucket_name(&spec, "123456789012").unwrap();
        assert_eq!(
            name,
            "a-twenty-char-stack1-artifacts-123456789012-ap-southeast-3"
        );
        assert!(name.len() <= 63);
        assert_eq!(object_key("ab"), "gateway/ab");
    }

    #[test]
    fn a_borrowed_bucket_keeps_its_owners_tags() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let spec = Spec::new("gw", "us-east-1", Default::default()).unwrap();
        let drill = crate::context::Ctx::new(
            &sdk,
            spec.drill_copy("us-west-2"),
            crate::progress::Progress::new(true),
        );
        let tags = desired_tags(&drill, "gw-artifacts-1-us-west-2");
        assert!(
            tags.contains(&(STACK_TAG.to_string(), "gw".to_string())),
            "{tags:?}"
        );
    }

    #[test]
    fn sha256_streams_the_file() {
        let path = std::env::temp_dir().join(format!("artifacts-sha-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(locate_binary(Some(&path))
            .unwrap_err()
            .to_string()
            .contains("not a file"));
    }
}
