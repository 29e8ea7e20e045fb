//! Everything a step needs: the spec, one client per AWS service, and progress output.

use aws_config::SdkConfig;

use crate::progress::Progress;
use crate::spec::{Spec, STACK_TAG};

pub struct Ctx {
    pub spec: Spec,
    /// The SDK configuration the clients were made from, for clients in another region.
    pub sdk: SdkConfig,
    pub progress: Progress,
    pub ec2: aws_sdk_ec2::Client,
    pub rds: aws_sdk_rds::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub kms: aws_sdk_kms::Client,
    pub iam: aws_sdk_iam::Client,
    pub route53: aws_sdk_route53::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Ctx {
    pub fn new(sdk: &SdkConfig, spec: Spec, progress: Progress) -> Ctx {
        // An endpoint override (LocalStack) is an IP or localhost: S3 needs path style there.
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Ctx {
            sdk: sdk.clone(),
            spec,
            progress,
            ec2: aws_sdk_ec2::Client::new(sdk),
            rds: aws_sdk_rds::Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancing::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            ssm: aws_sdk_ssm::Client::new(sdk),
            secretsmanager: aws_sdk_secretsmanager::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            route53: aws_sdk_route53::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
        }
    }

    /// The same stack's view of `region`: same credentials, endpoint and config.
    pub fn for_region(&self, region: &str) -> Ctx {
        self.for_spec(Spec {
            region: region.to_string(),
            ..self.spec.clone()
        })
    }

    /// Another spec (a drill copy, the stack in the DR region) with the same credentials
    /// and endpoint, its clients in the spec's region.
    pub fn for_spec(&self, spec: Spec) -> Ctx {
        let sdk = self
            .sdk
            .to_builder()
            .region(aws_config::Region::new(spec.region.clone()))
            .build();
        Ctx::new(&sdk, spec, self.progress.clone())
    }

    /// `for_region`, for a region that may not answer (a regional outage): two attempts
    /// and `limit` per call, rather than ten attempts with backoff.
    pub fn for_failing_region(&self, region: &str, limit: std::time::Duration) -> Ctx {
        let sdk = self
            .sdk
            .to_builder()
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(limit)
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .build();
        let spec = Spec {
            region: region.to_string(),
            ..self.spec.clone()
        };
        Ctx::new(&sdk, spec, self.progress.clone())
    }

    /// The DR region's view of the stack, when `[dr]` names one.
    pub fn dr(&self) -> Option<Ctx> {
        let dr = self.spec.config.dr.as_ref()?;
        Some(self.for_region(&dr.region))
    }

    /// The tags every resource of the stack carries: `Name` and the stack tag.
    pub fn tags(&self, name: &str) -> [(&'static str, String); 2] {
        self.spec.tags(name)
    }

    /// EC2 tag specification for a resource created with `name`.
    pub fn ec2_tags(
        &self,
        resource_type: aws_sdk_ec2::types::ResourceType,
        name: &str,
    ) -> aws_sdk_ec2::types::TagSpecification {
        let mut spec = aws_sdk_ec2::types::TagSpecification::builder().resource_type(resource_type);
        for (key, value) in self.tags(name) {
            spec = spec.tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            );
        }
        spec.build()
    }

    /// EC2 filter on this stack's tag, for every Describe call.
    pub fn ec2_stack_filter(&self) -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{STACK_TAG}"))
            .values(&self.spec.stack)
            .build()
    }
}

/// The value of `Name` among EC2 tags.
pub fn ec2_name(tags: &[aws_sdk_ec2::types::Tag]) -> Option<&str> {
    tags.iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
}
