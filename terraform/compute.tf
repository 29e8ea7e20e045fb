# The nodes: IAM role and instance profile, launch template, Auto Scaling group on the
# ELB, and a termination lifecycle hook so a node drains before it goes.

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

# The AMI's root device name (any owner: ami_id may be a private or shared image).
data "aws_ami" "node" {
  filter {
    name   = "image-id"
    values = [local.ami_id]
  }
}

locals {
  ami_id     = var.ami_id != null ? var.ami_id : nonsensitive(data.aws_ssm_parameter.al2023[0].value)
  role_name  = "${local.name}-node-${data.aws_region.current.name}"
  asg_name   = "${local.name}-nodes"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Read its own two secrets, get its own artifacts, complete its own lifecycle actions.
data "aws_iam_policy_document" "node" {
  statement {
    sid       = "ReadOwnSecrets"
    actions   = [local.use_ssm ? "ssm:GetParameter" : "secretsmanager:GetSecretValue"]
    resources = sort(local.secret_arns)
  }
  statement {
    sid       = "GetGatewayArtifact"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/gateway/*"]
  }
  statement {
    sid     = "CompleteOwnLifecycleActions"
    actions = ["autoscaling:CompleteLifecycleAction"]
    resources = [
      "arn:${local.partition}:autoscaling:${data.aws_region.current.name}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"
    ]
  }
}

resource "aws_iam_role" "node" {
  name               = local.role_name
  description        = "gateway nodes of stack ${local.name}"
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = merge(local.tags, { Name = local.role_name })
}

resource "aws_iam_role_policy" "node" {
  name   = "gateway-node"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_instance_profile" "node" {
  name = local.role_name
  role = aws_iam_role.node.name
  tags = merge(local.tags, { Name = local.role_name })
}

resource "aws_launch_template" "nodes" {
  name                   = local.asg_name
  description            = "${local.name} gateway nodes"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.nodes.id]
  user_data              = base64encode(var.user_data)
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = data.aws_ami.node.root_device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      delete_on_termination = true
    }
  }

  dynamic "tag_specifications" {
    for_each = ["instance", "volume"]
    content {
      resource_type = tag_specifications.value
      tags          = merge(local.tags, { Name = local.asg_name })
    }
  }

  tags = merge(local.tags, { Name = local.asg_name })
}

resource "aws_autoscaling_group" "nodes" {
  name                      = local.asg_name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = aws_subnet.private[*].id
  load_balancers            = [aws_elb.this.name]
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period
  wait_for_capacity_timeout = var.wait_for_capacity_timeout

  launch_template {
    id      = aws_launch_template.nodes.id
    version = aws_launch_template.nodes.latest_version
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = local.asg_name })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # The database must be up before a node's user data bootstraps it.
  depends_on = [aws_db_instance.this, aws_iam_role_policy.node]
}

resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = "${local.name}-drain"
  autoscaling_group_name = aws_autoscaling_group.nodes.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.termination_drain_seconds
  default_result         = "CONTINUE"
}
