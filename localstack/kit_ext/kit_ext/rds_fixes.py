"""Where moto's RDS answers differ from AWS in ways the Rust SDK or Terraform notice."""

from localstack.aws.api import RequestContext

RESOURCE_ID_FILTER = "dbi-resource-id"


def split_resource_id_filter(filters: list | None) -> tuple[list, list | None]:
    """Terraform 5.x reads instances back by DbiResourceId; applied here, not left to moto.
    Returns the other filters and the wanted resource ids (None when not filtered)."""
    rest, wanted = [], None
    for f in filters or []:
        if f.get("Name") == RESOURCE_ID_FILTER:
            wanted = (wanted or []) + list(f.get("Values") or [])
        else:
            rest.append(f)
    return rest, wanted


def filter_by_resource_id(instances: list, wanted: list) -> list:
    return [i for i in instances if i.get("DbiResourceId") in wanted]


def fix_instance(ctx: RequestContext, inst: dict) -> dict:
    """Multi-AZ instances name their standby's zone."""
    if inst.get("MultiAZ") and not inst.get("SecondaryAvailabilityZone"):
        primary = inst.get("AvailabilityZone") or f"{ctx.region}a"
        inst["SecondaryAvailabilityZone"] = primary[:-1] + ("b" if primary.endswith("a") else "a")
    return inst
