# Security groups: nodes and DB open to the VPC only, the ELB to allowed_cidrs.
# Rules are separate resources, one per port range and source.

locals {
  node_port_ranges = [[8000, 8003], [8443, 8446]]
  elb_ports        = [80, 443]
}

resource "aws_security_group" "nodes" {
  name        = "${local.name}-nodes"
  description = "${local.name} gateway nodes: proxy, admin, manager and portal ports from the VPC"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.name}-nodes" })
}

resource "aws_vpc_security_group_ingress_rule" "nodes" {
  count             = length(local.node_port_ranges)
  security_group_id = aws_security_group.nodes.id
  description       = "gateway ports ${local.node_port_ranges[count.index][0]}-${local.node_port_ranges[count.index][1]} from the VPC"
  ip_protocol       = "tcp"
  from_port         = local.node_port_ranges[count.index][0]
  to_port           = local.node_port_ranges[count.index][1]
  cidr_ipv4         = aws_vpc.this.cidr_block
  tags              = merge(local.tags, { Name = "${local.name}-nodes" })
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "${local.name} PostgreSQL (RDS) from the VPC"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.name}-db" })
}

resource "aws_vpc_security_group_ingress_rule" "db" {
  security_group_id = aws_security_group.db.id
  description       = "PostgreSQL from the VPC"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = aws_vpc.this.cidr_block
  tags              = merge(local.tags, { Name = "${local.name}-db" })
}

resource "aws_security_group" "elb" {
  name        = "${local.name}-elb"
  description = "${local.name} load balancer listeners from allowed_cidrs"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${local.name}-elb" })
}

resource "aws_vpc_security_group_ingress_rule" "elb" {
  for_each = {
    for pair in setproduct(local.elb_ports, var.allowed_cidrs) : "${pair[0]} ${pair[1]}" => pair
  }
  security_group_id = aws_security_group.elb.id
  description       = "ELB listener ${each.value[0]} from allowed_cidrs"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
  tags              = merge(local.tags, { Name = "${local.name}-elb" })
}

# AWS's default egress (all), which Terraform would otherwise remove.
resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = {
    nodes = aws_security_group.nodes.id
    db    = aws_security_group.db.id
    elb   = aws_security_group.elb.id
  }
  security_group_id = each.value
  description       = "all egress"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = merge(local.tags, { Name = "${local.name}-${each.key}" })
}
