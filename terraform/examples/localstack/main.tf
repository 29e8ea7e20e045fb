# The stack on the repo's LocalStack kit (localstack/start). Test credentials only;
# deletion protection and the final snapshot off so destroy works.

terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

provider "aws" {
  region                      = var.region
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    autoscaling    = var.endpoint
    ec2            = var.endpoint
    elb            = var.endpoint
    iam            = var.endpoint
    kms            = var.endpoint
    rds            = var.endpoint
    route53        = var.endpoint
    s3             = var.endpoint
    secretsmanager = var.endpoint
    ssm            = var.endpoint
    sts            = var.endpoint
  }
}

module "gateway" {
  source = "../.."

  stack_name                  = var.stack_name
  az_count                    = var.az_count
  nat                         = var.nat
  db_instance_class           = "db.t3.micro"
  db_allocated_storage        = 20
  instance_type               = "t3.micro"
  min_size                    = 1
  desired_capacity            = 1
  max_size                    = 2
  deletion_protection         = var.deletion_protection
  skip_final_snapshot         = true
  apply_immediately           = true
  artifacts_force_destroy     = true
  secret_recovery_window_days = 0
  wait_for_capacity_timeout   = "2m"
}
