# RDS PostgreSQL: Multi-AZ, encrypted with the stack's own KMS key, in the private subnets.

resource "aws_kms_key" "db" {
  #checkov:skip=CKV2_AWS_64:the default key policy (the account's IAM decides), as the provisioner creates the key; RDS uses it through a grant
  description         = "${local.name}: RDS storage encryption"
  enable_key_rotation = true
  tags                = merge(local.tags, { Name = "${local.name}-db" })
}

resource "aws_kms_alias" "db" {
  name          = "alias/${local.name}-db"
  target_key_id = aws_kms_key.db.key_id
}

resource "aws_db_subnet_group" "this" {
  name        = "${local.name}-db"
  description = "${local.name}: the private subnets"
  subnet_ids  = aws_subnet.private[*].id
  tags        = merge(local.tags, { Name = "${local.name}-db" })
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_293:deletion protection is on by default (var.deletion_protection = true, as the provisioner sets it); only the kit example turns it off so destroy works
  #checkov:skip=CKV_AWS_161:the gateway authenticates to PostgreSQL with the generated master password read from SSM/Secrets Manager by the node role; IAM DB auth is not used by the stack (the provisioner's neither)
  #checkov:skip=CKV_AWS_129:log exports to CloudWatch are left to the operator (no log groups in the stack); the provisioner's database has the same settings
  #checkov:skip=CKV2_AWS_30:query logging needs a parameter group and log exports the stack does not manage (the provisioner's database has the same settings)
  #checkov:skip=CKV_AWS_118:enhanced monitoring needs a monitoring IAM role the stack does not create (the provisioner's neither)
  #checkov:skip=CKV_AWS_353:Performance Insights is an operator's choice (cost, and not on every class the kit example uses); held to the provisioner's settings
  identifier     = "${local.name}-db"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class
  db_name        = "kong"
  username       = "kong"

  # RDS's default, stated: a major version ("15") takes its minor versions as they come.
  auto_minor_version_upgrade = true

  password_wo = (local.use_ssm
    ? ephemeral.aws_ssm_parameter.db_password[0].value
    : ephemeral.aws_secretsmanager_secret_version.db_password[0].secret_string
  )
  password_wo_version = var.secrets_version

  allocated_storage = var.db_allocated_storage
  storage_type      = "gp3"
  storage_encrypted = true
  kms_key_id        = aws_kms_key.db.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false

  backup_retention_period   = var.backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.skip_final_snapshot
  final_snapshot_identifier = "${local.name}-db-final"
  apply_immediately         = var.apply_immediately

  tags = merge(local.tags, { Name = "${local.name}-db" })
}
