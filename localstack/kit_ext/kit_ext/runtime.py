"""Kit lifecycle inside LocalStack: the data registries, an identity route, shutdown."""

import os
import threading

from localstack.runtime import hooks

from .rds_backups import Backups
from .rds_data import RdsData

_data: RdsData | None = None
_backups: Backups | None = None
_lock = threading.Lock()


def kit_home() -> str:
    return os.environ.get("LOCALSTACK_KIT_HOME") or os.path.expanduser("~/.cache/gateway-kit/localstack")


def rds_data() -> RdsData:
    global _data
    with _lock:
        if _data is None:
            _data = RdsData(kit_home())
        return _data


def rds_backups() -> Backups:
    """Automated backups and their replication shippers, in <kit home>/rds/backups."""
    global _backups
    with _lock:
        if _backups is None:
            _backups = Backups(os.path.join(kit_home(), "rds", "backups"))
        return _backups


@hooks.on_infra_start()
def python311_compat():
    from . import py311_compat

    py311_compat.apply()


@hooks.on_infra_start()
def cfn_provider_fixes():
    """Route targets, VPC DNS attributes and NAT gateway tags that LocalStack's own
    CloudFormation providers drop (kit_ext.cfn_providers.fixes)."""
    from .cfn_providers import fixes

    fixes.apply()


@hooks.on_infra_start()
def register_kit_route():
    """GET /_kit/info tells the kit's scripts that this LocalStack is theirs."""
    from localstack.http import Response
    from localstack.services.edge import ROUTER

    def info(_request):
        return Response.for_json({"kit": "gateway-kit", "home": kit_home(), "pid": os.getpid()})

    ROUTER.add("/_kit/info", info, methods=["GET"])


@hooks.on_infra_start()
def preload_moto():
    """Import moto's backends once, up front: the first concurrent calls to ec2, elb,
    rds and autoscaling would otherwise import the same moto modules from several
    threads, and Python's import lock can then fail with "deadlock detected"."""
    import importlib

    for module in (
        "moto.ec2.exceptions",
        "moto.ec2.models",
        "moto.elb.models",
        "moto.autoscaling.models",
        "moto.rds.models",
    ):
        importlib.import_module(module)


@hooks.on_infra_start(priority=-10)
def start_dataplane():
    """Instances boot, ELBs balance, Route53 names resolve (dataplane.py); after
    preload_moto, whose imports it relies on."""
    from localstack.http import Response
    from localstack.services.edge import ROUTER

    from . import dataplane

    plane = dataplane.start(kit_home())
    ROUTER.add("/_kit/dataplane", lambda _request: Response.for_json(plane.report()), methods=["GET"])


@hooks.on_infra_shutdown(priority=10)
def stop_dataplane():
    """Nodes first: they would otherwise log every lost database connection."""
    from . import dataplane

    dataplane.stop()


@hooks.on_infra_shutdown()
def stop_databases():
    """Backup shippers first (they read the stores), then every PostgreSQL; shutdown()
    removes <kit home>/rds, backups included."""
    if _backups is not None:
        _backups.shutdown()
    if _data is not None:
        _data.shutdown()
