"""Fixes to moto's ELB, Auto Scaling and EC2 models that Terraform's AWS provider sees as
drift on every plan, or that break a flow AWS supports."""


def _draining_keeps_timeout() -> None:
    """ModifyLoadBalancerAttributes with ConnectionDraining {Enabled} only: AWS keeps the
    timeout, moto reset it to 300 (the provider sends Timeout, then Enabled alone)."""
    from moto.elb.models import ELBBackend

    original = ELBBackend.modify_load_balancer_attributes

    def timeout_of(draining: dict):
        return next((v for k, v in draining.items() if k.lower() == "timeout"), None)

    def modify(self, load_balancer_name, *args, connection_draining=None, **kwargs):
        if connection_draining and timeout_of(connection_draining) is None:
            current = self.get_load_balancer(load_balancer_name).attributes.get("connection_draining", {})
            connection_draining = {**connection_draining, "Timeout": timeout_of(current) or 300}
        return original(self, load_balancer_name, *args, connection_draining=connection_draining, **kwargs)

    ELBBackend.modify_load_balancer_attributes = modify


def _hooks_without_fake_targets() -> None:
    """moto gave every lifecycle hook a made-up SQS target and role; AWS has none unless set."""
    from moto.autoscaling.models import LifecycleHook

    original = LifecycleHook.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.role_arn = None
        self.notification_target_arn = None

    LifecycleHook.__init__ = init


def _template_tags_stay_off_the_data() -> None:
    """CreateLaunchTemplate's own tags (resource type launch-template) are not launch data;
    moto copied them into the version's TagSpecifications. And every version keeps its
    user data as moto's Base64EncodedString."""
    from moto.ec2.models.launch_templates import LaunchTemplateVersion

    original = LaunchTemplateVersion.__init__

    from moto.core.types import Base64EncodedString
    from moto.ec2.utils import parse_user_data

    def init(self, template, number, data, description):
        # CreateLaunchTemplateVersion hands moto the user data as a plain str, which
        # CreateLaunchTemplate wraps; a group launching from version 2 or later then
        # failed an assertion (InternalError) instead of booting the new user data.
        user_data = data.get("UserData")
        if user_data is not None and not isinstance(user_data, Base64EncodedString):
            data = {**data, "UserData": parse_user_data(user_data)}
        specs = data.get("TagSpecifications")
        if specs:
            data = {**data, "TagSpecifications": [s for s in specs if s.get("ResourceType") != "launch-template"]}
            if not data["TagSpecifications"]:
                del data["TagSpecifications"]
        original(self, template, number, data, description)

    LaunchTemplateVersion.__init__ = init


def _instances_keep_their_template_version() -> None:
    """An instance reports the launch template version it was launched from, as on AWS;
    moto reported the group's current default for every instance, so a group moved to a
    new version looked as if its running instances had moved too (and a rolling
    replacement saw nothing to replace)."""
    from moto.autoscaling.models import InstanceState

    original = InstanceState.__init__

    def launched_from(group) -> dict | None:
        template = getattr(group, "ec2_launch_template", None)
        if template is None:
            return None
        wanted = str(getattr(group, "launch_template_version", None) or "$Default")
        if wanted == "$Latest":
            version = template.latest_version_number
        elif wanted == "$Default":
            version = template.default_version_number
        else:
            version = wanted
        return {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name, "Version": str(version)}

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._kit_launch_template = launched_from(self.auto_scaling_group)

    InstanceState.__init__ = init
    InstanceState.launch_template = property(lambda self: self._kit_launch_template)


def apply() -> None:
    _draining_keeps_timeout()
    _hooks_without_fake_targets()
    _template_tags_stay_off_the_data()
    _instances_keep_their_template_version()
