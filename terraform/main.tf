# The gateway stack that `provisioner up` builds: network, security groups, secrets,
# RDS PostgreSQL, artifact bucket, nodes (launch template + ASG), classic ELB, DNS.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the stack takes the first az_count AZs by name, as the provisioner does; subnets are pinned in the state, so a new AZ changes nothing until az_count does
  state = "available"
}

locals {
  name = var.stack_name

  # Every resource carries these (plus its own Name).
  tags = merge(var.tags, { "gateway-kit:stack" = var.stack_name })

  azs = slice(
    sort(data.aws_availability_zones.available.names), 0,
    min(var.az_count, length(data.aws_availability_zones.available.names))
  )

  # The VPC split into 16: public subnet i is block i, private subnet i is block 8 + i.
  public_cidrs  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  private_cidrs = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, 8 + i)]

  nat_azs = var.nat == "per_az" ? local.azs : [local.azs[0]]
}
