# Optional: an alias record for the ELB (domain + hosted_zone_id).

resource "aws_route53_record" "elb" {
  count   = var.domain == null ? 0 : 1
  zone_id = var.hosted_zone_id
  name    = var.domain
  type    = "A"

  alias {
    name                   = aws_elb.this.dns_name
    zone_id                = aws_elb.this.zone_id
    evaluate_target_health = true
  }
}
