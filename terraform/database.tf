# RDS PostgreSQL: Multi-AZ, encrypted with the stack's own KMS key, in the private subnets.

resource "aws_kms_key" "db" {
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
  identifier     = "${local.name}-db"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class
  db_name        = "kong"
  username       = "kong"

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
