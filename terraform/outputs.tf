output "elb_dns_name" {
  description = "DNS name of the classic ELB (TCP 80 and 443)."
  value       = aws_elb.this.dns_name
}

output "elb_name" {
  description = "Name of the classic ELB."
  value       = aws_elb.this.name
}

output "dns_name" {
  description = "The alias record for the ELB, when domain is set."
  value       = one(aws_route53_record.elb[*].fqdn)
}

output "db_identifier" {
  description = "RDS instance identifier."
  value       = aws_db_instance.this.identifier
}

output "db_endpoint" {
  description = "RDS endpoint, host:port."
  value       = aws_db_instance.this.endpoint
}

output "db_address" {
  description = "RDS host name."
  value       = aws_db_instance.this.address
}

output "db_port" {
  description = "RDS port."
  value       = aws_db_instance.this.port
}

output "db_kms_key_arn" {
  description = "The KMS key that encrypts the database (alias/<stack>-db)."
  value       = aws_kms_key.db.arn
}

output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets, one per AZ (the ELB's)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per AZ (the nodes' and the database's)."
  value       = aws_subnet.private[*].id
}

output "security_group_ids" {
  description = "Security groups: nodes, db, elb."
  value = {
    nodes = aws_security_group.nodes.id
    db    = aws_security_group.db.id
    elb   = aws_security_group.elb.id
  }
}

output "asg_name" {
  description = "The nodes' Auto Scaling group."
  value       = aws_autoscaling_group.nodes.name
}

output "launch_template_id" {
  description = "The nodes' launch template."
  value       = aws_launch_template.nodes.id
}

output "launch_template_version" {
  description = "The launch template version the group runs."
  value       = aws_launch_template.nodes.latest_version
}

output "artifact_bucket" {
  description = "The bucket for the gateway binary (upload it under gateway/)."
  value       = aws_s3_bucket.artifacts.id
}

output "secret_names" {
  description = "Names (not values) of the DB master password and the Admin API token."
  value = {
    db_password = local.db_password_name
    admin_token = local.admin_token_name
    store       = var.secret_store
  }
}
