# Classic ELB: TCP pass-through (TLS too), PROXY protocol to the nodes, health check on
# the admin listener's /status (which takes no PROXY header).

locals {
  listeners = { 80 = 8000, 443 = 8443 }
}

resource "aws_elb" "this" {
  name            = "${local.name}-elb"
  subnets         = aws_subnet.public[*].id
  security_groups = [aws_security_group.elb.id]
  internal        = false

  dynamic "listener" {
    for_each = local.listeners
    content {
      lb_port           = listener.key
      lb_protocol       = "tcp"
      instance_port     = listener.value
      instance_protocol = "tcp"
    }
  }

  health_check {
    target              = "HTTP:8001/status"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  cross_zone_load_balancing   = true
  idle_timeout                = 60
  connection_draining         = true
  connection_draining_timeout = var.connection_draining_timeout

  tags = merge(local.tags, { Name = "${local.name}-elb" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_proxy_protocol_policy" "this" {
  load_balancer  = aws_elb.this.name
  instance_ports = [for port in values(local.listeners) : tostring(port)]
}
