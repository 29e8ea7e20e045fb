//! The nodes' IAM policy documents: trust (EC2) and the one inline policy (its own
//! secrets, its artifact prefix, its own group's lifecycle actions), and how IAM's
//! URL-encoded documents are read and compared.

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::Account;
use crate::artifacts::Artifact;
use crate::plan::Diff;
use crate::secrets::Secrets;
use crate::spec::{SecretStore, Spec};

pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// Read its own two secrets, get its own artifacts, complete its own group's
/// lifecycle actions; nothing else.
pub fn node_policy(
    spec: &Spec,
    account: &Account,
    secrets: &Secrets,
    artifact: &Artifact,
) -> Value {
    let p = &account.partition;
    let mut secret_arns = secrets.arns.clone();
    secret_arns.sort();
    let read = match spec.config.secret_store {
        SecretStore::Ssm => "ssm:GetParameter",
        SecretStore::SecretsManager => "secretsmanager:GetSecretValue",
    };
    let group = format!(
        "arn:{p}:autoscaling:{}:{}:autoScalingGroup:*:autoScalingGroupName/{}",
        spec.region,
        account.id,
        spec.asg_name()
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadOwnSecrets", "Effect": "Allow", "Action": [read], "Resource": secret_arns},
            {"Sid": "GetGatewayArtifact", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [format!("arn:{p}:s3:::{}/gateway/*", artifact.bucket)]},
            {"Sid": "CompleteOwnLifecycleActions", "Effect": "Allow",
             "Action": ["autoscaling:CompleteLifecycleAction"], "Resource": [group]}
        ]
    })
}

/// IAM returns documents URL-encoded.
pub fn decode_policy(text: &str) -> Result<Value> {
    let decoded = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        percent_decode(text)?
    };
    serde_json::from_str(&decoded).context("policy document is not JSON")
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .context("bad %-escape in policy document")?;
                out.push(u8::from_str_radix(hex, 16).context("bad %-escape in policy document")?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).context("policy document is not UTF-8")
}

/// Each statement as canonical JSON, sorted (keys sort: serde_json's map is ordered).
fn statements(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = match doc.get("Statement") {
        Some(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        Some(one) => vec![one.to_string()],
        None => Vec::new(),
    };
    out.sort();
    out
}

pub(super) fn document_diff(d: &mut Diff, field: &str, current: &Value, desired: &Value) {
    d.field(
        &format!("{field}.version"),
        current.get("Version").and_then(Value::as_str),
        desired.get("Version").and_then(Value::as_str),
    );
    d.set(
        &format!("{field}.statements"),
        &statements(current),
        &statements(desired),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_documents_decode() {
        let doc = trust_policy();
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_policy(encoded).unwrap(),
            json!({"Version": "2012-10-17", "Statement": []})
        );
        assert_eq!(decode_policy(&doc.to_string()).unwrap(), doc);
        let mut d = Diff::default();
        document_diff(&mut d, "document", &doc, &doc);
        assert!(d.0.is_empty());
        document_diff(
            &mut d,
            "document",
            &json!({"Version": "2012-10-17", "Statement": []}),
            &doc,
        );
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].field, "document.statements");
    }

    #[test]
    fn the_policy_reads_only_its_own() {
        let spec = Spec::new("gw", "eu-west-1", Default::default()).unwrap();
        let account = Account {
            id: "123456789012".into(),
            partition: "aws".into(),
        };
        let secrets = Secrets {
            db_password: "/gw/db/master-password".into(),
            admin_token: "/gw/gateway/admin-token".into(),
            arns: vec![
                "arn:aws:ssm:eu-west-1:123456789012:parameter/gw/gateway/admin-token".into(),
                "arn:aws:ssm:eu-west-1:123456789012:parameter/gw/db/master-password".into(),
            ],
        };
        let artifact = Artifact {
            bucket: "b".into(),
            key: "gateway/x".into(),
            sha256: "x".into(),
        };
        let doc = node_policy(&spec, &account, &secrets, &artifact);
        let text = doc.to_string();
        assert!(text.contains("\"ssm:GetParameter\""), "{text}");
        assert!(text.contains("arn:aws:s3:::b/gateway/*"), "{text}");
        assert!(text.contains("autoScalingGroupName/gw-nodes"), "{text}");
        assert!(
            !text.contains('*') || !text.contains("\"Resource\":\"*\""),
            "{text}"
        );
    }
}
