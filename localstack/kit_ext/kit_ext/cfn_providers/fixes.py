"""Properties LocalStack 4.13.1's own CloudFormation providers accept and then drop, made
real. They cannot be replaced through the plug-in namespace (two plug-ins with one type
name: whichever the entry-point scan meets last wins, which differs by file system), so
the kit wraps their `create` at startup, as patches.py does for moto. Each wrapper runs
the original, then applies what it dropped through the kit's EC2 API:

- AWS::EC2::Route: the target (GatewayId, NatGatewayId, ...) was never sent, so every
  route was a blackhole without a target;
- AWS::EC2::VPC: EnableDnsHostnames and EnableDnsSupport were ignored (DNS hostnames
  stayed off);
- AWS::EC2::NatGateway: Tags were built and never sent.

Security groups' inline SecurityGroupIngress/Egress are also dropped; the template keeps
clear of them with AWS::EC2::SecurityGroupIngress resources (kit_ext.cfn_providers.ec2).

One fix is in the engine itself: an update decides whether a resource is replaced from the
template's static change types, where a `!Ref` to a resource whose property holds an
`!If` counts as changed even when every value is the same. So an in-place update (the
database's backup replication region) replaced the DB instance: a second CreateDBInstance
with the same identifier failed and rolled the update back. The wrapper decides it from
the resolved values instead, as CloudFormation does: a resource is replaced only when a
create-only property's value changes.
"""

from __future__ import annotations

import logging

from localstack.services.cloudformation.resource_provider import OperationStatus

LOG = logging.getLogger("kit_ext.cfn")
_applied = False

_ROUTE_TARGETS = ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId", "NetworkInterfaceId",
                  "InstanceId", "EgressOnlyInternetGatewayId", "VpcEndpointId", "CarrierGatewayId",
                  "LocalGatewayId", "CoreNetworkArn")


def _route_create(original):
    def create(self, request):
        model = request.desired_state
        target = {k: model[k] for k in _ROUTE_TARGETS if model.get(k)}
        event = original(self, request)
        if event.status == OperationStatus.SUCCESS and target:
            params = {"RouteTableId": model["RouteTableId"], **target}
            if model.get("DestinationCidrBlock"):
                params["DestinationCidrBlock"] = model["DestinationCidrBlock"]
            else:
                params["DestinationIpv6CidrBlock"] = model["DestinationIpv6CidrBlock"]
            request.aws_client_factory.ec2.replace_route(**params)
        return event

    return create


def _vpc_create(original):
    def create(self, request):
        # The first call replaces the desired state with what it reads back (both off), so
        # the wanted values are kept in the callback context from that first call.
        if "kit_dns" not in request.custom_context:
            request.custom_context["kit_dns"] = {
                k: request.desired_state[k] for k in ("EnableDnsSupport", "EnableDnsHostnames")
                if request.desired_state.get(k) is not None}
        wanted = request.custom_context["kit_dns"]
        event = original(self, request)
        if event.status == OperationStatus.SUCCESS and wanted:
            ec2 = request.aws_client_factory.ec2
            vpc_id = event.resource_model["VpcId"]
            # DNS support first: hostnames need it.
            for key in ("EnableDnsSupport", "EnableDnsHostnames"):
                if key in wanted:
                    value = str(wanted[key]).lower() == "true"
                    ec2.modify_vpc_attribute(VpcId=vpc_id, **{key: {"Value": value}})
                    event.resource_model[key] = value
        return event

    return create


def _nat_create(original):
    def create(self, request):
        if "kit_tags" not in request.custom_context:
            request.custom_context["kit_tags"] = request.desired_state.get("Tags") or []
        tags = request.custom_context["kit_tags"]
        event = original(self, request)
        if event.status == OperationStatus.SUCCESS and tags and not request.custom_context.get("kit_tagged"):
            request.aws_client_factory.ec2.create_tags(
                Resources=[event.resource_model["NatGatewayId"]],
                Tags=[{"Key": t["Key"], "Value": t["Value"]} for t in tags])
            request.custom_context["kit_tagged"] = True
        return event

    return create


def _replacement_by_value(original):
    def execute(self, name, before, after):
        from localstack.services.cloudformation.engine.v2.change_set_model import is_nothing
        from localstack.services.cloudformation.resource_provider import ResourceProviderExecutor

        if (not is_nothing(before) and not is_nothing(after) and after.requires_replacement
                and before.resource_type == after.resource_type):
            provider = ResourceProviderExecutor.try_load_resource_provider(after.resource_type)
            create_only = [p.replace("/properties/", "", 1)
                           for p in (provider.SCHEMA.get("createOnlyProperties", []) if provider else [])]
            was, now = before.properties.properties or {}, after.properties.properties or {}
            if create_only and all(was.get(p) == now.get(p) for p in create_only):
                LOG.info("cloudformation: %s is updated in place (no create-only property changed)", name)
                after.requires_replacement = False
        return original(self, name, before, after)

    return execute


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from localstack.services.ec2.resource_providers.aws_ec2_natgateway import EC2NatGatewayProvider
    from localstack.services.ec2.resource_providers.aws_ec2_route import EC2RouteProvider
    from localstack.services.ec2.resource_providers.aws_ec2_vpc import EC2VPCProvider

    EC2RouteProvider.create = _route_create(EC2RouteProvider.create)
    EC2VPCProvider.create = _vpc_create(EC2VPCProvider.create)
    EC2NatGatewayProvider.create = _nat_create(EC2NatGatewayProvider.create)
    from localstack.services.cloudformation.engine.v2.change_set_model_executor import ChangeSetModelExecutor

    ChangeSetModelExecutor._execute_resource_change = _replacement_by_value(
        ChangeSetModelExecutor._execute_resource_change)
    LOG.info("kit: CloudFormation fixes for AWS::EC2::Route targets, VPC DNS attributes, NAT gateway tags, "
             "replacement decided by value")
