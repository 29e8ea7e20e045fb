"""RDS operations: moto keeps the records, rds_data keeps the data behind them.

Every handler lets moto validate and record first, then mirrors the change in PostgreSQL,
then presents the instance as AWS would (status, real endpoint).
"""

import json

from localstack.aws.api import CommonServiceException, RequestContext
from localstack.services.moto import call_moto, call_moto_with_request

from .kms_keys import KeyNotFound, key_arn
from .rds_data import DataError, RdsData
from .rds_fixes import filter_by_resource_id, fix_instance, split_resource_id_filter

# Engines whose instances get a real server; others stay records only.
POSTGRES_ENGINES = ("postgres",)


def _error(code: str, message: str) -> CommonServiceException:
    return CommonServiceException(code, message, status_code=400, sender_fault=True)


def _key(ctx: RequestContext, identifier: str) -> tuple:
    """(account, region, id) for a name or an ARN (arn:aws:rds:region:account:type:id)."""
    if identifier.startswith("arn:"):
        parts = identifier.split(":")
        return parts[4], parts[3], parts[6].lower()
    return ctx.account_id, ctx.region, identifier.lower()


def _moto_db(ctx: RequestContext, identifier: str):
    from moto.rds.models import rds_backends

    return rds_backends[ctx.account_id][ctx.region].databases.get(identifier.lower())


def _password(db) -> str:
    """The master password moto holds (it will not hand it out through its property), or
    the one in the secret of a ManageMasterUserPassword instance."""
    password = getattr(db, "_master_user_password", None)
    secret = getattr(db, "master_user_secret", None)
    if not password and secret is not None:
        try:
            password = json.loads(secret.secret.secret_string)["password"]
        except (AttributeError, KeyError, TypeError, ValueError):
            password = None
    return password or ""


class RdsApi:
    def __init__(self, data: RdsData):
        self.data = data

    def table(self) -> dict:
        return {
            "CreateDBInstance": self.create_db_instance,
            "DescribeDBInstances": self.describe_db_instances,
            "ModifyDBInstance": self.modify_db_instance,
            "DeleteDBInstance": self.delete_db_instance,
            "RebootDBInstance": self.reboot_db_instance,
            "StopDBInstance": self.stop_db_instance,
            "StartDBInstance": self.start_db_instance,
            "CreateDBSnapshot": self.create_db_snapshot,
            "CopyDBSnapshot": self.copy_db_snapshot,
            "DeleteDBSnapshot": self.delete_db_snapshot,
            "RestoreDBInstanceFromDBSnapshot": self.restore_db_instance_from_db_snapshot,
        }

    def present(self, ctx: RequestContext, inst: dict) -> dict:
        """The instance as AWS reports it: the kit's status, the real endpoint."""
        fix_instance(ctx, inst)
        state = self.data.get(_key(ctx, inst["DBInstanceIdentifier"]))
        if state is None:
            return inst
        inst["DBInstanceStatus"] = state.status
        if state.status in ("creating", "failed"):
            inst.pop("Endpoint", None)
        else:
            endpoint = inst.setdefault("Endpoint", {})
            endpoint["Address"] = "127.0.0.1"
            endpoint["Port"] = state.cluster.port
            endpoint.setdefault("HostedZoneId", "Z2R2ITUGPM61AM")
        return inst

    def create_db_instance(self, ctx: RequestContext, req: dict):
        engine = (req.get("Engine") or "").lower()
        if engine in POSTGRES_ENGINES and not req.get("DBClusterIdentifier"):
            if not req.get("MasterUsername"):
                raise _error("InvalidParameterValue", "The parameter MasterUsername must be provided and must not be blank.")
            if not req.get("MasterUserPassword") and not req.get("ManageMasterUserPassword"):
                raise _error("InvalidParameterValue", "The parameter MasterUserPassword must be provided and must not be blank.")
        if req.get("StorageEncrypted") and not req.get("DBClusterIdentifier"):
            try:
                req = {**req, "KmsKeyId": key_arn(ctx.account_id, ctx.region, req.get("KmsKeyId"))}
            except KeyNotFound as e:
                raise _error("KMSKeyNotAccessibleFault", f"The specified KMS key is not accessible: {e}") from e
            result = call_moto_with_request(ctx, req)
        else:
            result = call_moto(ctx)
        inst = result["DBInstance"]
        if engine in POSTGRES_ENGINES and not req.get("DBClusterIdentifier"):
            db = _moto_db(ctx, inst["DBInstanceIdentifier"])
            self.data.create(
                _key(ctx, inst["DBInstanceIdentifier"]),
                db.master_username,
                _password(db),
                req.get("DBName") or "postgres",
                req.get("Port"),
            )
        self.present(ctx, inst)
        return result

    def describe_db_instances(self, ctx: RequestContext, req: dict):
        rest, resource_ids = split_resource_id_filter(req.get("Filters"))
        if resource_ids is None:
            result = call_moto(ctx)
        else:
            result = call_moto_with_request(ctx, {**req, "Filters": rest} if rest else {k: v for k, v in req.items() if k != "Filters"})
            result["DBInstances"] = filter_by_resource_id(result.get("DBInstances", []), resource_ids)
        for inst in result.get("DBInstances", []):
            self.present(ctx, inst)
        return result

    def modify_db_instance(self, ctx: RequestContext, req: dict):
        old = _key(ctx, req["DBInstanceIdentifier"])
        try:
            if req.get("MasterUserPassword"):
                self.data.set_password(old, req["MasterUserPassword"])
        except DataError as e:
            raise _error("InvalidDBInstanceState", str(e)) from e
        result = call_moto(ctx)
        if req.get("NewDBInstanceIdentifier"):
            self.data.rename(old, _key(ctx, req["NewDBInstanceIdentifier"]))
        self.present(ctx, result["DBInstance"])
        return result

    def delete_db_instance(self, ctx: RequestContext, req: dict):
        final = req.get("FinalDBSnapshotIdentifier")
        if not req.get("SkipFinalSnapshot") and not final:
            raise _error(
                "InvalidParameterCombination",
                "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
            )
        key = _key(ctx, req["DBInstanceIdentifier"])
        if final and not req.get("SkipFinalSnapshot"):
            self._require_available(key)
        result = call_moto(ctx)
        try:
            if final and not req.get("SkipFinalSnapshot"):
                self.data.snapshot(key, _key(ctx, final))
        finally:
            self.data.delete(key)
        fix_instance(ctx, result["DBInstance"])
        result["DBInstance"]["DBInstanceStatus"] = "deleting"
        return result

    def _require_available(self, key: tuple) -> None:
        try:
            self.data.require_available(key)
        except DataError as e:
            raise _error("InvalidDBInstanceState", str(e)) from e

    def reboot_db_instance(self, ctx: RequestContext, req: dict):
        key = _key(ctx, req["DBInstanceIdentifier"])
        self._require_available(key)
        result = call_moto(ctx)
        self.data.reboot(key)
        self.present(ctx, result["DBInstance"])
        return result

    def stop_db_instance(self, ctx: RequestContext, req: dict):
        key = _key(ctx, req["DBInstanceIdentifier"])
        self._require_available(key)
        result = call_moto(ctx)
        if req.get("DBSnapshotIdentifier"):
            self.data.snapshot(key, _key(ctx, req["DBSnapshotIdentifier"]))
        self.data.stop(key)
        self.present(ctx, result["DBInstance"])
        result["DBInstance"]["DBInstanceStatus"] = "stopping"
        return result

    def start_db_instance(self, ctx: RequestContext, req: dict):
        result = call_moto(ctx)
        self.data.start(_key(ctx, req["DBInstanceIdentifier"]))
        self.present(ctx, result["DBInstance"])
        return result

    def create_db_snapshot(self, ctx: RequestContext, req: dict):
        key = _key(ctx, req["DBInstanceIdentifier"])
        self._require_available(key)
        result = call_moto(ctx)
        snap = result["DBSnapshot"]
        try:
            self.data.snapshot(key, _key(ctx, snap["DBSnapshotIdentifier"]))
        except DataError as e:
            from moto.rds.models import rds_backends

            rds_backends[ctx.account_id][ctx.region].delete_db_snapshot(snap["DBSnapshotIdentifier"])
            raise _error("InvalidDBInstanceState", f"snapshot failed: {e}") from e
        snap["Status"] = "creating"
        return result

    def copy_db_snapshot(self, ctx: RequestContext, req: dict):
        result = call_moto(ctx)
        target = result["DBSnapshot"]["DBSnapshotIdentifier"]
        self.data.copy_snapshot(_key(ctx, req["SourceDBSnapshotIdentifier"]), _key(ctx, target))
        result["DBSnapshot"]["Status"] = "pending"
        return result

    def delete_db_snapshot(self, ctx: RequestContext, req: dict):
        result = call_moto(ctx)
        self.data.delete_snapshot(_key(ctx, req["DBSnapshotIdentifier"]))
        result["DBSnapshot"]["Status"] = "deleted"
        return result

    def restore_db_instance_from_db_snapshot(self, ctx: RequestContext, req: dict):
        result = call_moto(ctx)
        inst = result["DBInstance"]
        db = _moto_db(ctx, inst["DBInstanceIdentifier"])
        if not db.availability_zone.startswith(ctx.region):
            # moto keeps the source's zone, also from another region's snapshot.
            db.availability_zone = req.get("AvailabilityZone") or f"{ctx.region}a"
            inst["AvailabilityZone"] = db.availability_zone
        if (db.engine or "").lower() in POSTGRES_ENGINES:
            self.data.restore(
                _key(ctx, inst["DBInstanceIdentifier"]),
                _key(ctx, req["DBSnapshotIdentifier"]),
                db.master_username,
                _password(db),
                db.db_name or "postgres",
                req.get("Port"),
            )
        self.present(ctx, inst)
        return result
