"""CloudFormation resource providers for the types LocalStack community's engine lacks.

Registered in LocalStack's own plug-in namespace `localstack.cloudformation.resource_providers`
(entry points in pyproject.toml), so its CloudFormation engine (v2) finds them as it finds
its own. Each provider calls the kit's service APIs through `request.aws_client_factory`
(LocalStack's internal clients), so the resources are the kit's real ones: an Auto Scaling
group launches nodes, a DB instance is a PostgreSQL server, a classic ELB is an HAProxy.

One module per service: `ec2` (EIP, SecurityGroupIngress/Egress, LaunchTemplate), `rds`
(DBSubnetGroup, DBParameterGroup, DBInstance), `autoscaling` (AutoScalingGroup,
LifecycleHook), `elb` (LoadBalancer with its Policies). Without them a missing type
"succeeds" with the physical id `unknown`.
"""
