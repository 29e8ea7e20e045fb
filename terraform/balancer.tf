# Classic ELB: TCP pass-through (TLS too), PROXY protocol to the nodes, health check on
# the admin listener's /status (which takes no PROXY header).

locals {
  listeners = { 80 = 8000, 443 = 8443 }
}

resource "aws_elb" "this" {
  #checkov:skip=CKV_AWS_127:TLS passes through the TCP listeners to the gateway nodes, which terminate it (PROXY protocol needs TCP listeners); the ELB holds no certificate, as in the provisioner's stack
  #checkov:skip=CKV_AWS_376:443 is a TCP listener by design: TLS passes through to the nodes, which terminate it; 80 serves what the gateway's routes allow, as in the provisioner's stack
  #checkov:skip=CKV_AWS_92:TCP pass-through ELB: requests are logged by the gateway nodes with the client address from the PROXY protocol; the stack has no log bucket (the provisioner's neither)
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
