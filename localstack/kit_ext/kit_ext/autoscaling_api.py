"""The Auto Scaling operations moto lacks, which the stack's drain helper calls:
CompleteLifecycleAction and RecordLifecycleActionHeartbeat (see lifecycle.py)."""

from localstack.aws.api import CommonServiceException, RequestContext

from .lifecycle import LifecycleError


def _validation(e: LifecycleError) -> CommonServiceException:
    return CommonServiceException("ValidationError", str(e), status_code=400, sender_fault=True)


def _lifecycle():
    from . import dataplane

    plane = dataplane.current()
    if plane is None:
        raise CommonServiceException("ServiceUnavailable", "the kit's data plane is not running", status_code=503)
    return plane.lifecycle


def complete_lifecycle_action(ctx: RequestContext, req: dict) -> dict:
    try:
        _lifecycle().complete(
            ctx.account_id, ctx.region, req["AutoScalingGroupName"], req["LifecycleHookName"],
            req["LifecycleActionResult"], req.get("InstanceId"), req.get("LifecycleActionToken"),
        )
    except LifecycleError as e:
        raise _validation(e) from e
    return {}


def record_lifecycle_action_heartbeat(ctx: RequestContext, req: dict) -> dict:
    try:
        _lifecycle().heartbeat(
            ctx.account_id, ctx.region, req["AutoScalingGroupName"], req["LifecycleHookName"],
            req.get("InstanceId"), req.get("LifecycleActionToken"),
        )
    except LifecycleError as e:
        raise _validation(e) from e
    return {}


def table() -> dict:
    return {
        "CompleteLifecycleAction": complete_lifecycle_action,
        "RecordLifecycleActionHeartbeat": record_lifecycle_action_heartbeat,
    }
