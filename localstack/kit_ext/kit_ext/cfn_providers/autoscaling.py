"""AWS::AutoScaling::AutoScalingGroup and AWS::AutoScaling::LifecycleHook on the kit's
Auto Scaling, whose groups launch real nodes (kit_ext.dataplane)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from .base import (
    LOG,
    KitProvider,
    changed,
    failed,
    in_progress,
    plugin,
    schema,
    success,
    template_attribute,
    to_bool,
    to_int,
)

_GROUP_PROPS = ["AutoScalingGroupName", "MinSize", "MaxSize", "DesiredCapacity", "LaunchTemplate",
                "LaunchConfigurationName", "VPCZoneIdentifier", "AvailabilityZones", "LoadBalancerNames",
                "TargetGroupARNs", "HealthCheckType", "HealthCheckGracePeriod", "Cooldown", "TerminationPolicies",
                "Tags", "MetricsCollection", "NewInstancesProtectedFromScaleIn", "CapacityRebalance",
                "DefaultInstanceWarmup", "MaxInstanceLifetime", "LifecycleHookSpecificationList",
                "NotificationConfigurations", "ServiceLinkedRoleARN", "PlacementGroup"]


def _group_params(model: dict, names) -> dict:
    out = {}
    for name in names:
        value = model.get(name)
        if value is None:
            continue
        if name in ("MinSize", "MaxSize", "DesiredCapacity", "HealthCheckGracePeriod", "Cooldown",
                    "DefaultInstanceWarmup", "MaxInstanceLifetime"):
            value = to_int(value)
        elif name in ("NewInstancesProtectedFromScaleIn", "CapacityRebalance"):
            value = to_bool(value)
        elif name == "VPCZoneIdentifier":
            value = ",".join(value) if isinstance(value, list) else value
        elif name == "LaunchTemplate":
            value = {k: str(v) for k, v in value.items() if k in ("LaunchTemplateId", "LaunchTemplateName", "Version")}
        elif name == "Tags":
            value = [{"Key": t["Key"], "Value": t["Value"],
                      "PropagateAtLaunch": to_bool(t.get("PropagateAtLaunch"), False)} for t in value]
        elif name in ("MetricsCollection", "NotificationConfigurations", "ServiceLinkedRoleARN"):
            continue  # not passed on by the kit
        elif name == "LifecycleHookSpecificationList":
            value = [{**h, **({"HeartbeatTimeout": to_int(h["HeartbeatTimeout"])} if "HeartbeatTimeout" in h else {})}
                     for h in value]
        out[name] = value
    return out


class AutoScalingGroupProvider(KitProvider):
    """Ref is the group's name. Create waits until the group has its desired number of
    instances (launched by the kit's data plane); delete waits until they are gone."""

    TYPE = "AWS::AutoScaling::AutoScalingGroup"
    SCHEMA = schema(TYPE, "AutoScalingGroupName", _GROUP_PROPS, create_only=["AutoScalingGroupName"])

    def create(self, request):
        model = request.desired_state
        asg = request.aws_client_factory.autoscaling
        ctx = request.custom_context
        if not ctx.get("created"):
            name = model.get("AutoScalingGroupName") or f"{request.stack_name}-{request.logical_resource_id}"[:255]
            model["AutoScalingGroupName"] = name
            params = _group_params(model, _GROUP_PROPS)
            for tag in params.get("Tags", []):
                tag.update(ResourceId=name, ResourceType="auto-scaling-group")
            asg.create_auto_scaling_group(**params)
            ctx["created"] = True
            ctx["polls"] = 0
            return in_progress(model, ctx)
        return self._wait_capacity(request, model, ctx)

    def _wait_capacity(self, request, model, ctx):
        asg = request.aws_client_factory.autoscaling
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[model["AutoScalingGroupName"]])
        if not groups["AutoScalingGroups"]:
            return failed(model, f"Auto Scaling group {model['AutoScalingGroupName']} vanished")
        group = groups["AutoScalingGroups"][0]
        launched = [i for i in group.get("Instances", []) if i.get("LifecycleState") in ("Pending", "InService")]
        ctx["polls"] = ctx.get("polls", 0) + 1
        if len(launched) < group.get("DesiredCapacity", 0) and ctx["polls"] < 120:
            return in_progress(model, ctx)
        return success(model)

    def update(self, request):
        prev = request.previous_state or {}
        model = {**request.desired_state, "AutoScalingGroupName": prev.get("AutoScalingGroupName")}
        asg = request.aws_client_factory.autoscaling
        ctx = request.custom_context
        if ctx.get("rolling"):
            return self._roll(request, model, ctx)
        if ctx.get("updated"):
            return self._wait_capacity(request, model, ctx)
        name = model["AutoScalingGroupName"]
        names = changed(request, "MinSize", "MaxSize", "DesiredCapacity", "LaunchTemplate", "VPCZoneIdentifier",
                        "HealthCheckType", "HealthCheckGracePeriod", "Cooldown", "TerminationPolicies",
                        "NewInstancesProtectedFromScaleIn", "CapacityRebalance", "DefaultInstanceWarmup",
                        "MaxInstanceLifetime", "LaunchConfigurationName")
        if names:
            asg.update_auto_scaling_group(AutoScalingGroupName=name, **_group_params(model, names))
        if changed(request, "LoadBalancerNames"):
            before, after = set(prev.get("LoadBalancerNames") or []), set(model.get("LoadBalancerNames") or [])
            if before - after:
                asg.detach_load_balancers(AutoScalingGroupName=name, LoadBalancerNames=sorted(before - after))
            if after - before:
                asg.attach_load_balancers(AutoScalingGroupName=name, LoadBalancerNames=sorted(after - before))
        if changed(request, "Tags"):
            old = {t["Key"] for t in prev.get("Tags") or []} - {t["Key"] for t in model.get("Tags") or []}
            if old:
                asg.delete_tags(Tags=[{"Key": k, "ResourceId": name, "ResourceType": "auto-scaling-group"} for k in old])
            tags = _group_params(model, ["Tags"]).get("Tags", [])
            if tags:
                asg.create_or_update_tags(Tags=[{**t, "ResourceId": name, "ResourceType": "auto-scaling-group"}
                                                for t in tags])
        ctx["updated"] = True
        ctx["polls"] = 0
        if "LaunchTemplate" in names or "LaunchConfigurationName" in names:
            policy = self._rolling_policy(request)
            if policy is not None:
                # The instances to replace: those the group has now. (moto reports every
                # instance with the group's current template version, so versions cannot tell.)
                [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
                policy["old"] = sorted(i["InstanceId"] for i in group.get("Instances", []))
                ctx["rolling"] = policy
        return in_progress(model, ctx)

    @staticmethod
    def _rolling_policy(request) -> dict | None:
        """UpdatePolicy.AutoScalingRollingUpdate from the stack's template (the engine does
        not pass update policies to providers)."""
        try:
            policy = (template_attribute(request, "UpdatePolicy") or {}).get("AutoScalingRollingUpdate")
        except Exception as e:  # noqa: BLE001
            LOG.warning("cloudformation: cannot read the UpdatePolicy of %s: %s", request.logical_resource_id, e)
            return None
        if policy is None:
            return None
        params = {p["ParameterKey"]: p["ParameterValue"] for p in request.aws_client_factory.cloudformation.describe_stacks(
            StackName=request.stack_id or request.stack_name)["Stacks"][0].get("Parameters", [])}

        def value(key, default):
            v = policy.get(key, default)
            if isinstance(v, dict) and "Ref" in v:
                v = params.get(v["Ref"], default)
            return to_int(v, default)

        return {"MaxBatchSize": max(1, value("MaxBatchSize", 1)), "MinInstancesInService": value("MinInstancesInService", 0)}

    def _roll(self, request, model, ctx):
        """A rolling update as CloudFormation's AutoScalingRollingUpdate does it: old
        instances go MaxBatchSize at a time (through the group's termination lifecycle
        hook, so they drain), while at least MinInstancesInService stay InService, and the
        group replaces them from the new launch template version."""
        asg = request.aws_client_factory.autoscaling
        name = model["AutoScalingGroupName"]
        [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        current = [i for i in group.get("Instances", []) if i.get("LifecycleState") not in ("Terminated",)]
        healthy = self._healthy(request, group)
        old = [i for i in current if i["InstanceId"] in ctx["rolling"]["old"]]
        ctx["polls"] = ctx.get("polls", 0) + 1
        if not old:
            new_ok = [i for i in current if i["InstanceId"] in healthy]
            if len(new_ok) >= group["DesiredCapacity"] or ctx["polls"] > 280:
                LOG.info("cloudformation: rolling update of %s done", name)
                return success(model)
            return in_progress(model, ctx)
        leaving = [i for i in current if i.get("LifecycleState", "").startswith("Terminating")]
        in_service = [i for i in current if i["InstanceId"] in healthy and not i.get("LifecycleState", "").startswith("Terminating")]
        policy = ctx["rolling"]
        batch_size = min(policy["MaxBatchSize"], len(old))
        if not ctx.get("surged"):
            if leaving or len(in_service) < group["DesiredCapacity"]:
                return in_progress(model, ctx)  # the previous batch is still being replaced
            # New instances first (up to MaxSize), so MinInstancesInService always holds.
            surge = min(batch_size, group["MaxSize"] - group["DesiredCapacity"])
            if surge > 0:
                asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=group["DesiredCapacity"] + surge,
                                         HonorCooldown=False)
            ctx["surged"] = max(surge, 0) or -1
            return in_progress(model, ctx)
        if len(in_service) < group["DesiredCapacity"] and ctx["polls"] < 280:
            return in_progress(model, ctx)  # the surge is still booting
        surged = ctx["surged"]
        room = max(1, len(in_service) - policy["MinInstancesInService"]) if surged < 0 else surged
        for inst in old[: min(batch_size, room)]:
            LOG.info("cloudformation: rolling update of %s replaces %s", name, inst["InstanceId"])
            asg.terminate_instance_in_auto_scaling_group(InstanceId=inst["InstanceId"],
                                                         ShouldDecrementDesiredCapacity=surged > 0)
        ctx["surged"] = 0
        return in_progress(model, ctx)

    @staticmethod
    def _healthy(request, group) -> set[str]:
        """Instances InService in the group and, with ELB health checks, on every ELB."""
        ids = {i["InstanceId"] for i in group.get("Instances", []) if i.get("LifecycleState") == "InService"}
        if group.get("HealthCheckType") == "ELB":
            elb = request.aws_client_factory.elb
            for lb in group.get("LoadBalancerNames", []):
                states = elb.describe_instance_health(LoadBalancerName=lb)["InstanceStates"]
                ids &= {s["InstanceId"] for s in states if s["State"] == "InService"}
        return ids

    def delete(self, request):
        model = request.previous_state or request.desired_state
        asg = request.aws_client_factory.autoscaling
        ctx = request.custom_context
        name = model.get("AutoScalingGroupName")
        if not name:
            return success({})
        if not ctx.get("deleting"):
            try:
                asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
            except ClientError as e:
                if "not found" in str(e).lower() or "ValidationError" in str(e):
                    return success({})
                raise
            ctx["deleting"] = True
            ctx["polls"] = 0
            return in_progress(model, ctx)
        ctx["polls"] = ctx.get("polls", 0) + 1
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if groups and ctx["polls"] < 240:
            return in_progress(model, ctx)
        ec2 = request.aws_client_factory.ec2
        ids = [r["InstanceId"] for res in ec2.describe_instances(Filters=[
            {"Name": "tag:aws:autoscaling:groupName", "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "shutting-down"]}],
        )["Reservations"] for r in res["Instances"]]
        if ids and ctx["polls"] < 240:
            return in_progress(model, ctx)
        return success({})


class LifecycleHookProvider(KitProvider):
    TYPE = "AWS::AutoScaling::LifecycleHook"
    SCHEMA = schema(TYPE, "LifecycleHookName",
                    ["LifecycleHookName", "AutoScalingGroupName", "LifecycleTransition", "HeartbeatTimeout",
                     "DefaultResult", "NotificationMetadata", "NotificationTargetARN", "RoleARN"],
                    create_only=["LifecycleHookName", "AutoScalingGroupName"])

    def _put(self, request, model):
        params = {k: model[k] for k in ("LifecycleHookName", "AutoScalingGroupName", "LifecycleTransition",
                                        "DefaultResult", "NotificationMetadata", "NotificationTargetARN", "RoleARN")
                  if model.get(k) is not None}
        if model.get("HeartbeatTimeout") is not None:
            params["HeartbeatTimeout"] = to_int(model["HeartbeatTimeout"])
        request.aws_client_factory.autoscaling.put_lifecycle_hook(**params)

    def create(self, request):
        model = request.desired_state
        model["LifecycleHookName"] = model.get("LifecycleHookName") or f"{request.stack_name}-{request.logical_resource_id}"[:255]
        self._put(request, model)
        return success(model)

    def update(self, request):
        model = {**request.desired_state, "LifecycleHookName": request.previous_state["LifecycleHookName"]}
        self._put(request, model)
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        try:
            request.aws_client_factory.autoscaling.delete_lifecycle_hook(
                LifecycleHookName=model["LifecycleHookName"], AutoScalingGroupName=model["AutoScalingGroupName"])
        except ClientError as e:
            if "not found" not in str(e).lower() and "ValidationError" not in str(e):
                raise
        return success({})


AutoScalingGroupProviderPlugin = plugin(AutoScalingGroupProvider)
LifecycleHookProviderPlugin = plugin(LifecycleHookProvider)
