"""What every kit resource provider shares: the plug-in class, progress events, and the
mapping from CloudFormation properties to API parameters."""

from __future__ import annotations

import logging

from localstack.services.cloudformation.resource_provider import (
    CloudFormationResourceProviderPlugin,
    OperationStatus,
    ProgressEvent,
    ResourceProvider,
    ResourceRequest,
)

LOG = logging.getLogger("kit_ext.cfn")

__all__ = [
    "LOG",
    "ProgressEvent",
    "OperationStatus",
    "ResourceProvider",
    "ResourceRequest",
    "KitProvider",
    "plugin",
    "success",
    "in_progress",
    "failed",
    "schema",
    "tags_list",
    "changed",
    "is_not_found",
    "to_bool",
    "to_int",
    "template_attribute",
]


class KitProvider(ResourceProvider):
    """A provider whose update is real: subclasses that cannot update in place list every
    property in createOnlyProperties, so the engine replaces instead of reporting a silent
    success with the old state."""

    TYPE = ""
    SCHEMA: dict = {}

    def read(self, request):  # pragma: no cover - the engine does not call it
        raise NotImplementedError

    def list(self, request):  # pragma: no cover
        raise NotImplementedError


def plugin(provider: type[ResourceProvider]) -> type[CloudFormationResourceProviderPlugin]:
    """The plug-in class LocalStack's PluginManager loads by the type's name."""

    def __init__(self):
        self.factory = None

    def load(self):
        self.factory = provider

    return type(
        provider.__name__ + "Plugin",
        (CloudFormationResourceProviderPlugin,),
        {"name": provider.TYPE, "__init__": __init__, "load": load, "__module__": provider.__module__},
    )


def schema(type_name: str, primary: str, properties: list[str], read_only: list[str] = (),
           create_only: list[str] = ()) -> dict:
    """The parts of a resource schema the engine reads: the primary identifier (the physical
    id), create-only properties (a change replaces the resource) and the attributes."""
    return {
        "typeName": type_name,
        "primaryIdentifier": [f"/properties/{primary}"],
        "properties": {p: {} for p in [*properties, *read_only]},
        "readOnlyProperties": [f"/properties/{p}" for p in read_only],
        "createOnlyProperties": [f"/properties/{p}" for p in create_only],
    }


def success(model: dict, message: str = "") -> ProgressEvent:
    return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model, message=message)


def in_progress(model: dict, context: dict) -> ProgressEvent:
    return ProgressEvent(status=OperationStatus.IN_PROGRESS, resource_model=model, custom_context=context)


def failed(model: dict, message: str) -> ProgressEvent:
    LOG.warning("cloudformation: %s", message)
    return ProgressEvent(status=OperationStatus.FAILED, resource_model=model or {}, message=message)


def tags_list(model: dict, key: str = "Tags") -> list[dict]:
    return [{"Key": t["Key"], "Value": t["Value"]} for t in model.get(key) or []]


def changed(request: ResourceRequest, *names: str) -> list[str]:
    """The properties among `names` whose value differs from the previous state."""
    before = request.previous_state or {}
    after = request.desired_state or {}
    return [n for n in names if before.get(n) != after.get(n)]


def is_not_found(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return "NotFound" in code


def to_bool(value, default: bool | None = None) -> bool | None:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def to_int(value, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    return int(value)


def template_attribute(request: ResourceRequest, key: str):
    """A resource attribute the engine does not pass to providers (DeletionPolicy,
    UpdatePolicy), read from the stack's template. None when absent or unreadable."""
    import json

    cfn = request.aws_client_factory.cloudformation
    body = cfn.get_template(StackName=request.stack_id or request.stack_name)["TemplateBody"]
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            from localstack.services.cloudformation.engine.yaml_parser import parse_yaml

            body = parse_yaml(body)
    return body.get("Resources", {}).get(request.logical_resource_id, {}).get(key)
