"""gateway-kit LocalStack extension: rds, autoscaling and elb backed by moto, real PostgreSQL
behind RDS instances and snapshots, and fixes for gaps the AWS SDKs and Terraform hit."""
