"""AWS::ElasticLoadBalancing::LoadBalancer (classic) on the kit's ELB, which is a real
HAProxy: listeners, health check, attributes, tags and `Policies`, including the
ProxyProtocolPolicyType policy on the backend ports (`InstancePorts`)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from .base import (
    KitProvider,
    changed,
    plugin,
    schema,
    success,
    tags_list,
    to_bool,
    to_int,
)

_PROPS = ["LoadBalancerName", "Listeners", "Subnets", "SecurityGroups", "Scheme", "AvailabilityZones", "Instances",
          "HealthCheck", "CrossZone", "ConnectionDrainingPolicy", "ConnectionSettings", "AccessLoggingPolicy",
          "Policies", "AppCookieStickinessPolicy", "LBCookieStickinessPolicy", "Tags"]


def _listeners(model: dict) -> list[dict]:
    out = []
    for listener in model.get("Listeners") or []:
        item = {"LoadBalancerPort": to_int(listener["LoadBalancerPort"]), "InstancePort": to_int(listener["InstancePort"]),
                "Protocol": listener["Protocol"]}
        if listener.get("InstanceProtocol"):
            item["InstanceProtocol"] = listener["InstanceProtocol"]
        if listener.get("SSLCertificateId"):
            item["SSLCertificateId"] = listener["SSLCertificateId"]
        out.append(item)
    return out


class LoadBalancerProvider(KitProvider):
    """Ref is the name; GetAtt DNSName, CanonicalHostedZoneName, CanonicalHostedZoneNameID,
    SourceSecurityGroup.GroupName, SourceSecurityGroup.OwnerAlias."""

    TYPE = "AWS::ElasticLoadBalancing::LoadBalancer"
    SCHEMA = schema(TYPE, "LoadBalancerName", _PROPS,
                    read_only=["DNSName", "CanonicalHostedZoneName", "CanonicalHostedZoneNameID", "SourceSecurityGroup"],
                    create_only=["LoadBalancerName", "Scheme"])

    def create(self, request):
        model = request.desired_state
        elb = request.aws_client_factory.elb
        name = model.get("LoadBalancerName") or f"{request.stack_name}-{request.logical_resource_id}"[:32].strip("-")
        model["LoadBalancerName"] = name
        params = {"LoadBalancerName": name, "Listeners": _listeners(model)}
        for key in ("Subnets", "SecurityGroups", "Scheme", "AvailabilityZones"):
            if model.get(key):
                params[key] = model[key]
        if tags := tags_list(model):
            params["Tags"] = tags
        elb.create_load_balancer(**params)
        self._configure(request, model, _PROPS, {})
        if model.get("Instances"):
            elb.register_instances_with_load_balancer(LoadBalancerName=name,
                                                      Instances=[{"InstanceId": i} for i in model["Instances"]])
        self._read_attributes(request, model)
        return success(model)

    def _configure(self, request, model: dict, names, prev: dict):
        elb = request.aws_client_factory.elb
        name = model["LoadBalancerName"]
        if "HealthCheck" in names and model.get("HealthCheck"):
            h = model["HealthCheck"]
            elb.configure_health_check(LoadBalancerName=name, HealthCheck={
                "Target": h["Target"], "Interval": to_int(h["Interval"]), "Timeout": to_int(h["Timeout"]),
                "HealthyThreshold": to_int(h["HealthyThreshold"]), "UnhealthyThreshold": to_int(h["UnhealthyThreshold"])})
        attrs = {}
        if "CrossZone" in names and model.get("CrossZone") is not None:
            attrs["CrossZoneLoadBalancing"] = {"Enabled": to_bool(model["CrossZone"])}
        if "ConnectionDrainingPolicy" in names and model.get("ConnectionDrainingPolicy"):
            d = model["ConnectionDrainingPolicy"]
            attrs["ConnectionDraining"] = {"Enabled": to_bool(d["Enabled"]), **(
                {"Timeout": to_int(d["Timeout"])} if d.get("Timeout") is not None else {})}
        if "ConnectionSettings" in names and model.get("ConnectionSettings"):
            attrs["ConnectionSettings"] = {"IdleTimeout": to_int(model["ConnectionSettings"]["IdleTimeout"])}
        if "AccessLoggingPolicy" in names and model.get("AccessLoggingPolicy"):
            a = model["AccessLoggingPolicy"]
            attrs["AccessLog"] = {"Enabled": to_bool(a["Enabled"]), "S3BucketName": a.get("S3BucketName", ""),
                                  **({"EmitInterval": to_int(a["EmitInterval"])} if a.get("EmitInterval") else {}),
                                  **({"S3BucketPrefix": a["S3BucketPrefix"]} if a.get("S3BucketPrefix") else {})}
        if attrs:
            elb.modify_load_balancer_attributes(LoadBalancerName=name, LoadBalancerAttributes=attrs)
        if "Policies" in names:
            self._policies(request, model, prev)

    def _policies(self, request, model: dict, prev: dict):
        """Each policy created, then set on its instance ports (backend) and load balancer
        ports (listeners); ports that lose every policy are cleared."""
        elb = request.aws_client_factory.elb
        name = model["LoadBalancerName"]
        old = {p["PolicyName"]: p for p in prev.get("Policies") or []}
        new = {p["PolicyName"]: p for p in model.get("Policies") or []}
        for pname, p in new.items():
            if old.get(pname) == p:
                continue
            if pname in old:
                self._clear_ports(elb, name, old[pname])
                elb.delete_load_balancer_policy(LoadBalancerName=name, PolicyName=pname)
            elb.create_load_balancer_policy(
                LoadBalancerName=name, PolicyName=pname, PolicyTypeName=p["PolicyType"],
                PolicyAttributes=[{"AttributeName": a["Name"], "AttributeValue": str(a["Value"])}
                                  for a in p.get("Attributes") or []])
        backend: dict[int, list[str]] = {}
        frontend: dict[int, list[str]] = {}
        for pname, p in new.items():
            for port in p.get("InstancePorts") or []:
                backend.setdefault(to_int(port), []).append(pname)
            for port in p.get("LoadBalancerPorts") or []:
                frontend.setdefault(to_int(port), []).append(pname)
        for pname, p in old.items():
            if pname not in new:
                self._clear_ports(elb, name, p)
                try:
                    elb.delete_load_balancer_policy(LoadBalancerName=name, PolicyName=pname)
                except ClientError:
                    pass
        for port, names in backend.items():
            elb.set_load_balancer_policies_for_backend_server(LoadBalancerName=name, InstancePort=port,
                                                              PolicyNames=sorted(names))
        for port, names in frontend.items():
            elb.set_load_balancer_policies_of_listener(LoadBalancerName=name, LoadBalancerPort=port,
                                                       PolicyNames=sorted(names))

    @staticmethod
    def _clear_ports(elb, name: str, policy: dict):
        for port in policy.get("InstancePorts") or []:
            elb.set_load_balancer_policies_for_backend_server(LoadBalancerName=name, InstancePort=to_int(port),
                                                              PolicyNames=[])
        for port in policy.get("LoadBalancerPorts") or []:
            elb.set_load_balancer_policies_of_listener(LoadBalancerName=name, LoadBalancerPort=to_int(port),
                                                       PolicyNames=[])

    def _read_attributes(self, request, model: dict):
        elb = request.aws_client_factory.elb
        [lb] = elb.describe_load_balancers(LoadBalancerNames=[model["LoadBalancerName"]])["LoadBalancerDescriptions"]
        model["DNSName"] = lb["DNSName"]
        model["CanonicalHostedZoneName"] = lb.get("CanonicalHostedZoneName") or lb["DNSName"]
        model["CanonicalHostedZoneNameID"] = lb.get("CanonicalHostedZoneNameID", "")
        sg = lb.get("SourceSecurityGroup") or {}
        model["SourceSecurityGroup"] = {"GroupName": sg.get("GroupName", ""), "OwnerAlias": sg.get("OwnerAlias", "")}

    def update(self, request):
        prev = request.previous_state or {}
        model = {**request.desired_state, "LoadBalancerName": prev["LoadBalancerName"]}
        elb = request.aws_client_factory.elb
        name = model["LoadBalancerName"]
        if changed(request, "Listeners"):
            before = {(listener["LoadBalancerPort"]) for listener in _listeners(prev)}
            if before:
                elb.delete_load_balancer_listeners(LoadBalancerName=name, LoadBalancerPorts=sorted(before))
            elb.create_load_balancer_listeners(LoadBalancerName=name, Listeners=_listeners(model))
        if changed(request, "Subnets"):
            b, a = set(prev.get("Subnets") or []), set(model.get("Subnets") or [])
            if a - b:
                elb.attach_load_balancer_to_subnets(LoadBalancerName=name, Subnets=sorted(a - b))
            if b - a:
                elb.detach_load_balancer_from_subnets(LoadBalancerName=name, Subnets=sorted(b - a))
        if changed(request, "SecurityGroups"):
            elb.apply_security_groups_to_load_balancer(LoadBalancerName=name, SecurityGroups=model.get("SecurityGroups") or [])
        if changed(request, "Tags"):
            old = {t["Key"] for t in tags_list(prev)} - {t["Key"] for t in tags_list(model)}
            if old:
                elb.remove_tags(LoadBalancerNames=[name], Tags=[{"Key": k} for k in old])
            if tags := tags_list(model):
                elb.add_tags(LoadBalancerNames=[name], Tags=tags)
        self._configure(request, model, changed(request, *_PROPS), prev)
        self._read_attributes(request, model)
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        try:
            request.aws_client_factory.elb.delete_load_balancer(LoadBalancerName=model["LoadBalancerName"])
        except ClientError as e:
            if "NotFound" not in str(e):
                raise
        return success({})


LoadBalancerProviderPlugin = plugin(LoadBalancerProvider)
