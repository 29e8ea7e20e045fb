"""AWS::EC2::EIP, AWS::EC2::SecurityGroupIngress, AWS::EC2::SecurityGroupEgress and
AWS::EC2::LaunchTemplate on the kit's EC2."""

from __future__ import annotations

from botocore.exceptions import ClientError

from .base import (
    KitProvider,
    failed,
    is_not_found,
    plugin,
    schema,
    success,
    tags_list,
    to_int,
)


class EIPProvider(KitProvider):
    """Ref is the public address; GetAtt AllocationId and PublicIp."""

    TYPE = "AWS::EC2::EIP"
    SCHEMA = schema(TYPE, "PublicIp", ["Domain", "InstanceId", "NetworkBorderGroup", "Tags", "TransferAddress",
                                       "PublicIpv4Pool"],
                    read_only=["AllocationId", "PublicIp"],
                    create_only=["Domain", "NetworkBorderGroup", "TransferAddress", "PublicIpv4Pool"])

    def create(self, request):
        model = request.desired_state
        ec2 = request.aws_client_factory.ec2
        params = {"Domain": model.get("Domain") or "vpc"}
        if tags := tags_list(model):
            params["TagSpecifications"] = [{"ResourceType": "elastic-ip", "Tags": tags}]
        out = ec2.allocate_address(**params)
        model["AllocationId"], model["PublicIp"] = out["AllocationId"], out["PublicIp"]
        if tags:  # older moto ignores TagSpecifications on AllocateAddress
            ec2.create_tags(Resources=[out["AllocationId"]], Tags=tags)
        if model.get("InstanceId"):
            ec2.associate_address(AllocationId=out["AllocationId"], InstanceId=model["InstanceId"])
        return success(model)

    def update(self, request):
        model = {**(request.previous_state or {}), **request.desired_state}
        prev = request.previous_state or {}
        model["AllocationId"], model["PublicIp"] = prev.get("AllocationId"), prev.get("PublicIp")
        ec2 = request.aws_client_factory.ec2
        old = {t["Key"] for t in tags_list(prev)} - {t["Key"] for t in tags_list(model)}
        if old:
            ec2.delete_tags(Resources=[model["AllocationId"]], Tags=[{"Key": k} for k in old])
        if tags := tags_list(model):
            ec2.create_tags(Resources=[model["AllocationId"]], Tags=tags)
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        ec2 = request.aws_client_factory.ec2
        try:
            ec2.release_address(AllocationId=model["AllocationId"])
        except ClientError as e:
            if not is_not_found(e) and "InvalidAllocationID" not in str(e):
                raise
        return success({})


def _permission(model: dict) -> dict:
    """One IpPermissions entry from a rule's properties."""
    perm = {"IpProtocol": str(model["IpProtocol"])}
    if model.get("FromPort") is not None:
        perm["FromPort"] = to_int(model["FromPort"])
    if model.get("ToPort") is not None:
        perm["ToPort"] = to_int(model["ToPort"])
    desc = {"Description": model["Description"]} if model.get("Description") else {}
    if model.get("CidrIp"):
        perm["IpRanges"] = [{"CidrIp": model["CidrIp"], **desc}]
    if model.get("CidrIpv6"):
        perm["Ipv6Ranges"] = [{"CidrIpv6": model["CidrIpv6"], **desc}]
    peer = model.get("SourceSecurityGroupId") or model.get("DestinationSecurityGroupId")
    if peer:
        perm["UserIdGroupPairs"] = [{"GroupId": peer, **desc}]
    prefix = model.get("SourcePrefixListId") or model.get("DestinationPrefixListId")
    if prefix:
        perm["PrefixListIds"] = [{"PrefixListId": prefix, **desc}]
    return perm


class _RuleProvider(KitProvider):
    DIRECTION = ""

    def _call(self, ec2, verb: str, **kwargs):
        return getattr(ec2, f"{verb}_security_group_{self.DIRECTION}")(**kwargs)

    def create(self, request):
        model = request.desired_state
        ec2 = request.aws_client_factory.ec2
        group = model.get("GroupId")
        if not group:
            return failed(model, f"{self.TYPE}: GroupId is required (GroupName is for EC2-Classic)")
        out = self._call(ec2, "authorize", GroupId=group, IpPermissions=[_permission(model)])
        rules = out.get("SecurityGroupRules") or []
        if rules:
            model["Id"] = rules[0]["SecurityGroupRuleId"]
        else:  # a moto without rule ids: find the rule we made
            model["Id"] = self._find_rule_id(ec2, model) or f"{group}-{self.DIRECTION}-{request.logical_resource_id}"
        if tags := tags_list(model):
            try:
                ec2.create_tags(Resources=[model["Id"]], Tags=tags)
            except ClientError:
                pass
        return success(model)

    def _find_rule_id(self, ec2, model):
        try:
            rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [model["GroupId"]]}])
        except ClientError:
            return None
        for r in rules.get("SecurityGroupRules", []):
            if (r.get("IsEgress") == (self.DIRECTION == "egress") and r.get("IpProtocol") == str(model["IpProtocol"])
                    and r.get("FromPort") == to_int(model.get("FromPort"), -1)
                    and r.get("CidrIpv4") == model.get("CidrIp")):
                return r["SecurityGroupRuleId"]
        return None

    def update(self, request):
        # Every property is create-only (as on AWS, except Description): a change replaces.
        model = {**request.desired_state, "Id": (request.previous_state or {}).get("Id")}
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        ec2 = request.aws_client_factory.ec2
        try:
            if str(model.get("Id", "")).startswith("sgr-"):
                self._call(ec2, "revoke", GroupId=model["GroupId"], SecurityGroupRuleIds=[model["Id"]])
            else:
                self._call(ec2, "revoke", GroupId=model["GroupId"], IpPermissions=[_permission(model)])
        except ClientError as e:
            if not is_not_found(e) and "InvalidPermission.NotFound" not in str(e):
                raise
        return success({})


_RULE_PROPS = ["GroupId", "GroupName", "IpProtocol", "FromPort", "ToPort", "CidrIp", "CidrIpv6", "Description",
               "SourceSecurityGroupId", "SourceSecurityGroupName", "SourceSecurityGroupOwnerId",
               "SourcePrefixListId", "DestinationSecurityGroupId", "DestinationPrefixListId"]


class SecurityGroupIngressProvider(_RuleProvider):
    TYPE = "AWS::EC2::SecurityGroupIngress"
    DIRECTION = "ingress"
    SCHEMA = schema(TYPE, "Id", _RULE_PROPS, read_only=["Id"],
                    create_only=[p for p in _RULE_PROPS if p != "Description"])


class SecurityGroupEgressProvider(_RuleProvider):
    TYPE = "AWS::EC2::SecurityGroupEgress"
    DIRECTION = "egress"
    SCHEMA = schema(TYPE, "Id", _RULE_PROPS, read_only=["Id"],
                    create_only=[p for p in _RULE_PROPS if p != "Description"])


class LaunchTemplateProvider(KitProvider):
    """Ref is the template id; GetAtt LaunchTemplateId, LatestVersionNumber,
    DefaultVersionNumber. A changed LaunchTemplateData makes a new version, made the
    default, as CloudFormation does."""

    TYPE = "AWS::EC2::LaunchTemplate"
    SCHEMA = schema(TYPE, "LaunchTemplateId",
                    ["LaunchTemplateName", "LaunchTemplateData", "VersionDescription", "TagSpecifications"],
                    read_only=["LaunchTemplateId", "LatestVersionNumber", "DefaultVersionNumber"],
                    create_only=["LaunchTemplateName"])

    def create(self, request):
        model = request.desired_state
        ec2 = request.aws_client_factory.ec2
        name = model.get("LaunchTemplateName") or f"{request.stack_name}-{request.logical_resource_id}"[:120]
        params = {"LaunchTemplateName": name, "LaunchTemplateData": model.get("LaunchTemplateData") or {}}
        if model.get("VersionDescription"):
            params["VersionDescription"] = model["VersionDescription"]
        if model.get("TagSpecifications"):
            params["TagSpecifications"] = model["TagSpecifications"]
        out = ec2.create_launch_template(**params)["LaunchTemplate"]
        model["LaunchTemplateName"] = name
        model["LaunchTemplateId"] = out["LaunchTemplateId"]
        model["LatestVersionNumber"] = str(out["LatestVersionNumber"])
        model["DefaultVersionNumber"] = str(out["DefaultVersionNumber"])
        return success(model)

    def update(self, request):
        prev = request.previous_state or {}
        model = {**request.desired_state}
        for key in ("LaunchTemplateId", "LaunchTemplateName", "LatestVersionNumber", "DefaultVersionNumber"):
            model[key] = prev.get(key)
        ec2 = request.aws_client_factory.ec2
        if prev.get("LaunchTemplateData") != model.get("LaunchTemplateData"):
            params = {"LaunchTemplateId": model["LaunchTemplateId"], "LaunchTemplateData": model["LaunchTemplateData"]}
            if model.get("VersionDescription"):
                params["VersionDescription"] = model["VersionDescription"]
            version = ec2.create_launch_template_version(**params)["LaunchTemplateVersion"]["VersionNumber"]
            ec2.modify_launch_template(LaunchTemplateId=model["LaunchTemplateId"], DefaultVersion=str(version))
            model["LatestVersionNumber"] = model["DefaultVersionNumber"] = str(version)
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        ec2 = request.aws_client_factory.ec2
        try:
            ec2.delete_launch_template(LaunchTemplateId=model["LaunchTemplateId"])
        except ClientError as e:
            if not is_not_found(e) and "InvalidLaunchTemplateId" not in str(e):
                raise
        return success({})


EIPProviderPlugin = plugin(EIPProvider)
SecurityGroupIngressProviderPlugin = plugin(SecurityGroupIngressProvider)
SecurityGroupEgressProviderPlugin = plugin(SecurityGroupEgressProvider)
LaunchTemplateProviderPlugin = plugin(LaunchTemplateProvider)

