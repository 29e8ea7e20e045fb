"""Registers rds, autoscaling and elb (classic), which LocalStack community lacks.

Each is a provider in the `localstack.aws.provider` namespace whose dispatch table
sends every operation of the service's API to LocalStack's bundled moto, except the
operations the kit implements itself.
"""

from localstack.services.plugins import Service, aws_provider


def moto_service(name: str, overrides: dict | None = None) -> Service:
    from localstack.aws.skeleton import Skeleton
    from localstack.aws.spec import load_service
    from localstack.services.moto import call_moto

    from . import patches

    patches.apply()
    model = load_service(name)
    table = {op: (lambda ctx, _req: call_moto(ctx)) for op in model.operation_names}
    table.update(overrides or {})
    return Service(name=name, skeleton=Skeleton(model, table))


@aws_provider(api="rds")
def rds():
    from .rds_api import RdsApi
    from .runtime import rds_backups, rds_data

    return moto_service("rds", RdsApi(rds_data(), rds_backups()).table())


@aws_provider(api="autoscaling")
def autoscaling():
    from .autoscaling_api import table

    return moto_service("autoscaling", table())


@aws_provider(api="elb")
def elb():
    return moto_service("elb")
