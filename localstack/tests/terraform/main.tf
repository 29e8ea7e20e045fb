# A small slice of the stack, applied and destroyed against the kit by localstack/test:
# RDS PostgreSQL (Multi-AZ, encrypted), a classic ELB sending PROXY protocol to its
# backends, and an Auto Scaling group from a launch template behind that ELB.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "endpoint" {
  description = "The LocalStack kit's endpoint, e.g. http://127.0.0.1:4566."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "kit-tf"
}

variable "db_password" {
  description = "Master password of the DB instance."
  type        = string
  sensitive   = true
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true

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

resource "aws_vpc" "main" {
  cidr_block = "10.60.0.0/16"
  tags       = { Name = var.name }
}

resource "aws_subnet" "a" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = "10.60.1.0/24"
  availability_zone = "us-east-1a"
}

resource "aws_subnet" "b" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = "10.60.2.0/24"
  availability_zone = "us-east-1b"
}

resource "aws_security_group" "db" {
  name   = "${var.name}-db"
  vpc_id = aws_vpc.main.id
  ingress {
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = [aws_vpc.main.cidr_block]
  }
}

resource "aws_db_subnet_group" "db" {
  name       = "${var.name}-db"
  subnet_ids = [aws_subnet.a.id, aws_subnet.b.id]
}

resource "aws_db_instance" "db" {
  identifier             = "${var.name}-db"
  engine                 = "postgres"
  engine_version         = "15.4"
  instance_class         = "db.t3.micro"
  allocated_storage      = 20
  db_name                = "kong"
  username               = "kong"
  password               = var.db_password
  multi_az               = true
  storage_encrypted      = true
  db_subnet_group_name   = aws_db_subnet_group.db.name
  vpc_security_group_ids = [aws_security_group.db.id]
  skip_final_snapshot    = true
  apply_immediately      = true
  tags                   = { Name = var.name }
}

resource "aws_elb" "gateway" {
  name    = "${var.name}-elb"
  subnets = [aws_subnet.a.id, aws_subnet.b.id]

  listener {
    lb_port           = 80
    lb_protocol       = "tcp"
    instance_port     = 8000
    instance_protocol = "tcp"
  }

  health_check {
    target              = "HTTP:8001/status"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_proxy_protocol_policy" "gateway" {
  load_balancer  = aws_elb.gateway.name
  instance_ports = ["8000"]
}

resource "aws_launch_template" "gateway" {
  name          = "${var.name}-lt"
  image_id      = "ami-03cf127a"
  instance_type = "t3.micro"
}

resource "aws_autoscaling_group" "gateway" {
  name                = "${var.name}-asg"
  min_size            = 1
  max_size            = 2
  desired_capacity    = 1
  vpc_zone_identifier = [aws_subnet.a.id, aws_subnet.b.id]
  load_balancers      = [aws_elb.gateway.name]
  health_check_type   = "ELB"

  launch_template {
    id      = aws_launch_template.gateway.id
    version = "$Latest"
  }
}

output "db_identifier" {
  value = aws_db_instance.db.identifier
}

output "db_address" {
  value = aws_db_instance.db.address
}

output "db_port" {
  value = aws_db_instance.db.port
}

output "db_resource_id" {
  value = aws_db_instance.db.resource_id
}

output "elb_name" {
  value = aws_elb.gateway.name
}

output "asg_name" {
  value = aws_autoscaling_group.gateway.name
}
