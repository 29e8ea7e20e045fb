"""RDS operations: moto keeps the records, rds_data keeps the data behind them.

Every handler lets moto validate and record first, then mirrors the change in PostgreSQL,
then presents the instance as AWS would (status, real endpoint).

Automated backups (rds_backups) are the exception: moto has no store of base backups and
WAL, cannot restore in a region where the source instance does not exist, and knows no
replication, so RestoreDBInstanceToPointInTime from a retained or replicated backup,
Describe/DeleteDBInstanceAutomatedBackup(s) and Start/StopDBInstanceAutomatedBackups-
Replication are the kit's own; the instance records they make are still moto's.
"""

import copy
import json
from datetime import datetime

from localstack.aws.api import CommonServiceException, RequestContext
from localstack.aws.forwarder import create_aws_request_context
from localstack.services.moto import call_moto, call_moto_with_request

from .kms_keys import KeyNotFound, key_arn
from .rds_backups import DEFAULT_REPLICA_RETENTION, AutomatedBackup, Backups, Source, as_utc, shown
from .rds_data import DataError, RdsData
from .rds_fixes import filter_by_resource_id, fix_instance, split_resource_id_filter

# Engines whose instances get a real server; others stay records only.
POSTGRES_ENGINES = ("postgres",)


def _error(code: str, message: str, status: int = 400) -> CommonServiceException:
    return CommonServiceException(code, message, status_code=status, sender_fault=True)


def _backend(account: str, region: str):
    from moto.rds.models import rds_backends

    return rds_backends[account][region]


def _moto_call(ctx: RequestContext, operation: str, params: dict, region: str | None = None) -> dict:
    """Another RDS operation through moto (e.g. DescribeDBInstances, to answer with a record
    the kit made itself in moto's backend), as call_moto_with_request makes its request."""
    local = create_aws_request_context("rds", operation, parameters=params, region=region or ctx.region)
    headers = copy.deepcopy(ctx.request.headers)
    headers.update(local.request.headers)
    local.request.headers = headers
    return call_moto(local)


def _moto_errors(fn, *args):
    """Calls into moto's backend directly, its errors becoming AWS errors."""
    from moto.core.exceptions import ServiceException

    try:
        return fn(*args)
    except ServiceException as e:
        raise _error(e.code, e.message) from e


def _when(t: datetime) -> str:
    return as_utc(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_instance_arn(arn: str, parameter: str) -> tuple[str, str, str]:
    """(account, region, identifier) of arn:aws:rds:<region>:<account>:db:<identifier>."""
    parts = arn.split(":") if arn else []
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "rds" or parts[5] != "db" or not parts[6]:
        raise _error(
            "InvalidParameterValue",
            f"{parameter} {arn!r} is not a DB instance ARN (arn:aws:rds:<region>:<account>:db:<identifier>).",
        )
    return parts[4], parts[3], parts[6].lower()


def _from_instance(req: dict, db) -> dict:
    """A RestoreDBInstanceToPointInTime request for moto, which knows the source by its
    identifier only."""
    other_sources = ("SourceDbiResourceId", "SourceDBInstanceAutomatedBackupsArn")
    params = {k: v for k, v in req.items() if k not in other_sources}
    return {**params, "SourceDBInstanceIdentifier": db.db_instance_identifier}


def _not_inherited(new, inst: dict, req: dict) -> None:
    """What a restored instance takes from the request, never from its source: moto copies
    the source's settings and overrides only truthy request values, so an explicit
    DeletionProtection=false (AWS's default for a restore) would be lost."""
    new.deletion_protection = bool(req.get("DeletionProtection"))
    inst["DeletionProtection"] = new.deletion_protection


def _not_found_backup(what: str) -> CommonServiceException:
    return _error("DBInstanceAutomatedBackupNotFound", f"No automated backup found for {what}.", 404)


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
    def __init__(self, data: RdsData, backups: Backups):
        self.data = data
        self.backups = backups

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
            "RestoreDBInstanceToPointInTime": self.restore_db_instance_to_point_in_time,
            "DescribeDBInstanceAutomatedBackups": self.describe_db_instance_automated_backups,
            "DeleteDBInstanceAutomatedBackup": self.delete_db_instance_automated_backup,
            "StartDBInstanceAutomatedBackupsReplication": self.start_db_instance_automated_backups_replication,
            "StopDBInstanceAutomatedBackupsReplication": self.stop_db_instance_automated_backups_replication,
        }

    def present(self, ctx: RequestContext, inst: dict) -> dict:
        """The instance as AWS reports it: the kit's status, the real endpoint, the end of
        its restore window, the replicas of its automated backups."""
        fix_instance(ctx, inst)
        resource_id = inst.get("DbiResourceId")
        backup = self.backups.own(ctx.account_id, ctx.region, resource_id) if resource_id else None
        if backup is not None and inst.get("BackupRetentionPeriod"):
            window = backup.store.window()
            if window:
                inst["LatestRestorableTime"] = shown(window)[1]
            replications = self.backups.replications_of(ctx.account_id, resource_id)
            if replications:
                inst["DBInstanceAutomatedBackupsReplications"] = [
                    {"DBInstanceAutomatedBackupsArn": a} for a in replications
                ]
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
                store=self.backups.open(Source.of(db)).store,
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
        db = _moto_db(ctx, req["DBInstanceIdentifier"])
        backup = self.backups.own(ctx.account_id, ctx.region, db.dbi_resource_id) if db else None
        if backup is not None:
            self.backups.refresh(backup, Source.of(db))  # what a retained backup reports
        result = call_moto(ctx)
        try:
            if final and not req.get("SkipFinalSnapshot"):
                self.data.snapshot(key, _key(ctx, final))
        finally:
            self.data.delete(key)
            if backup is not None:
                # AWS's default removes them; DeleteAutomatedBackups=false keeps them.
                keep = req.get("DeleteAutomatedBackups") is False and backup.retention > 0
                self.backups.instance_deleted(ctx.account_id, ctx.region, db.dbi_resource_id, keep)
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
        """Within a region, or into this region from another one's snapshot ARN (the copy
        is then a manual snapshot that names its source; an encrypted source needs a key of
        this region, as the source's key stays in its region)."""
        source_id = req["SourceDBSnapshotIdentifier"]
        is_arn = source_id.startswith("arn:") and source_id.count(":") >= 6
        source_region = source_id.split(":")[3] if is_arn else ctx.region
        cross_region = source_region != ctx.region
        if cross_region:
            account, name = source_id.split(":")[4], source_id.split(":")[6]
            source = _backend(account, source_region).database_snapshots.get(name)
            if source is None:
                raise _error("DBSnapshotNotFound", f"DBSnapshot {source_id} not found.", 404)
            if source.encrypted and not req.get("KmsKeyId"):
                raise _error(
                    "InvalidParameterValue",
                    f"KmsKeyId is required for a cross-region copy of an encrypted snapshot: {source_id} is "
                    f"encrypted with a key of {source_region}; give a KMS key of {ctx.region}.",
                )
        result = call_moto(ctx)
        target = result["DBSnapshot"]["DBSnapshotIdentifier"]
        if cross_region:
            snap = _backend(ctx.account_id, ctx.region).database_snapshots[target]
            snap.snapshot_type = "manual"
            snap.source_region = source_region
            snap.source_db_snapshot_identifier = source_id
            result["DBSnapshot"].update(
                SnapshotType="manual", SourceRegion=source_region, SourceDBSnapshotIdentifier=source_id
            )
        self.data.copy_snapshot(_key(ctx, source_id), _key(ctx, target))
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
        _not_inherited(db, inst, req)
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
                store=self.backups.open(Source.of(db)).store,
            )
        self.present(ctx, inst)
        return result

    # --- automated backups: point-in-time restore, replication (rds_backups) -------------

    def _region_backups(self, ctx: RequestContext) -> list[AutomatedBackup]:
        """This region's automated backups: its instances' (kept up to date with moto's
        records; none while retention is 0), retained ones, and replicas held here."""
        live = {db.dbi_resource_id: db for db in _backend(ctx.account_id, ctx.region).databases.values()}
        found = []
        for backup in self.backups.in_region(ctx.account_id, ctx.region):
            if not backup.replica and backup.status == "active":
                db = live.get(backup.source.resource_id)
                if db is None:
                    continue
                self.backups.refresh(backup, Source.of(db))
                if backup.retention <= 0:
                    continue
            found.append(backup)
        return found

    def _describe_backup(self, backup: AutomatedBackup) -> dict:
        replications = None
        if not backup.replica and backup.status == "active":
            replications = self.backups.replications_of(backup.source.account, backup.source.resource_id)
        return backup.describe(replications)

    def describe_db_instance_automated_backups(self, ctx: RequestContext, req: dict):
        backups = self._region_backups(ctx)
        named = []
        if req.get("DbiResourceId"):
            named.append(f"DbiResourceId {req['DbiResourceId']}")
            backups = [b for b in backups if b.source.resource_id == req["DbiResourceId"]]
        if req.get("DBInstanceIdentifier"):
            wanted = req["DBInstanceIdentifier"].lower()
            named.append(f"DB instance {req['DBInstanceIdentifier']}")
            backups = [b for b in backups if wanted in (b.source.identifier, b.source.arn.lower())]
        if req.get("DBInstanceAutomatedBackupsArn"):
            named.append(req["DBInstanceAutomatedBackupsArn"])
            backups = [b for b in backups if b.arn == req["DBInstanceAutomatedBackupsArn"]]
        for f in req.get("Filters") or []:
            values = set(f.get("Values") or [])
            name = f.get("Name")
            if name == "db-instance-id":
                backups = [b for b in backups if values & {b.source.identifier, b.source.arn}]
            elif name == "dbi-resource-id":
                backups = [b for b in backups if b.source.resource_id in values]
            elif name == "status":
                backups = [b for b in backups if b.status in values]
            else:
                raise _error(
                    "InvalidParameterValue",
                    f"Unrecognized filter name: {name}. Use db-instance-id, dbi-resource-id or status.",
                )
        if named and not backups:
            raise _not_found_backup(" and ".join(named))
        return {"DBInstanceAutomatedBackups": [self._describe_backup(b) for b in backups]}

    def delete_db_instance_automated_backup(self, ctx: RequestContext, req: dict):
        resource_id, arn = req.get("DbiResourceId"), req.get("DBInstanceAutomatedBackupsArn")
        if not resource_id and not arn:
            raise _error("InvalidParameterCombination", "Specify DbiResourceId or DBInstanceAutomatedBackupsArn.")
        matches = [
            b for b in self._region_backups(ctx)
            if (not resource_id or b.source.resource_id == resource_id) and (not arn or b.arn == arn)
        ]
        if not matches:
            raise _not_found_backup(arn or f"DbiResourceId {resource_id}")
        backup = next((b for b in matches if b.status != "active"), matches[0])
        if backup.status == "active":
            raise _error(
                "InvalidDBInstanceAutomatedBackupState",
                f"The automated backups of DB instance {backup.source.identifier} belong to a running instance; "
                "they are deleted with it (DeleteDBInstance), or kept with DeleteAutomatedBackups=false.",
            )
        answer = self._describe_backup(backup)
        self.backups.delete(backup)
        answer["Status"] = "deleting"
        return {"DBInstanceAutomatedBackup": answer}

    def _pitr_source(self, ctx: RequestContext, req: dict):
        """(backup, live moto instance or None) for RestoreDBInstanceToPointInTime's source."""
        by_arn, by_id, by_resource = (
            req.get("SourceDBInstanceAutomatedBackupsArn"),
            req.get("SourceDBInstanceIdentifier"),
            req.get("SourceDbiResourceId"),
        )
        if sum(bool(x) for x in (by_arn, by_id, by_resource)) != 1:
            raise _error(
                "InvalidParameterCombination",
                "Specify exactly one of SourceDBInstanceIdentifier, SourceDbiResourceId and "
                "SourceDBInstanceAutomatedBackupsArn.",
            )
        backend = _backend(ctx.account_id, ctx.region)
        if by_id:
            account, region, name = _key(ctx, by_id)
            db = _backend(account, region).databases.get(name)
            if db is None or (account, region) != (ctx.account_id, ctx.region):
                raise _error("DBInstanceNotFound", f"DBInstance {by_id} not found.", 404)
            return self.backups.own(ctx.account_id, ctx.region, db.dbi_resource_id), db
        if by_resource:
            db = next((d for d in backend.databases.values() if d.dbi_resource_id == by_resource), None)
            if db is not None:
                return self.backups.own(ctx.account_id, ctx.region, by_resource), db
            backup = self.backups.own(ctx.account_id, ctx.region, by_resource)
            if backup is None:
                raise _not_found_backup(f"DbiResourceId {by_resource}")
            return backup, None
        backup = next((b for b in self.backups.in_region(ctx.account_id, ctx.region) if b.arn == by_arn), None)
        if backup is None:
            raise _not_found_backup(by_arn)
        db = None
        if not backup.replica and backup.status == "active":
            db = next((d for d in backend.databases.values() if d.dbi_resource_id == backup.source.resource_id), None)
        return backup, db

    def restore_db_instance_to_point_in_time(self, ctx: RequestContext, req: dict):
        """From the source's store (its own, retained, or a replica in this region): the
        newest base backup that ended before the target, and the archived WAL up to it."""
        restore_time, latest = req.get("RestoreTime"), bool(req.get("UseLatestRestorableTime"))
        if (restore_time is not None) == latest:
            raise _error(
                "InvalidParameterCombination",
                "Specify either RestoreTime or UseLatestRestorableTime=true, not both and not neither.",
            )
        target_id = req["TargetDBInstanceIdentifier"]
        if _moto_db(ctx, target_id) is not None:
            raise _error("DBInstanceAlreadyExists", f"DB instance {target_id} already exists.")
        backup, db = self._pitr_source(ctx, req)
        if db is not None and (db.engine or "").lower() not in POSTGRES_ENGINES:
            # Only postgres keeps data; other engines stay moto records, restored by moto.
            result = call_moto_with_request(ctx, _from_instance(req, db))
            self.present(ctx, result["DBInstance"])
            return result
        name = db.db_instance_identifier if db is not None else backup.source.identifier
        if db is not None and not db.backup_retention_period:
            raise _error(
                "PointInTimeRestoreNotEnabled",
                f"DB instance {name} keeps no automated backups (BackupRetentionPeriod is 0).",
            )
        window = backup.store.window() if backup is not None else None
        if window is None:
            raise _error(
                "InvalidRestoreFault",
                f"The automated backups of DB instance {name} have no restorable time yet: "
                "the first backup is not complete.",
            )
        target = None if latest else as_utc(restore_time)
        if target is not None and not window[0] <= target <= window[1]:
            raise _error(
                "InvalidRestoreFault",
                f"The restore time {_when(target)} is outside the restorable window of DB instance {name}: "
                f"from {_when(window[0])} to {_when(window[1])}.",
            )
        base = backup.store.base_for(target)
        if db is not None:
            result = call_moto_with_request(ctx, _from_instance(req, db))
            inst = result["DBInstance"]
            new = _moto_db(ctx, inst["DBInstanceIdentifier"])
            # AWS: a new single-AZ instance unless asked; moto copies the source's.
            new.multi_az = bool(req.get("MultiAZ"))
            new.source_db_instance_identifier = None  # moto copies it: not a read replica
            inst["MultiAZ"] = new.multi_az
            _not_inherited(new, inst, req)
            inst.pop("ReadReplicaSourceDBInstanceIdentifier", None)
        else:
            new = self._record_from_backup(ctx, req, backup)
            described = _moto_call(ctx, "DescribeDBInstances", {"DBInstanceIdentifier": target_id})
            result = {"DBInstance": described["DBInstances"][0]}
            inst = result["DBInstance"]
        self.data.recover(
            _key(ctx, inst["DBInstanceIdentifier"]),
            new.master_username,
            req.get("Port"),
            base["archive"],
            backup.store.wal,
            target,
            self.backups.open(Source.of(new)).store,
        )
        self.present(ctx, inst)
        return result

    def _record_from_backup(self, ctx: RequestContext, req: dict, backup: AutomatedBackup):
        """moto's record of an instance restored where its source is not (a replicated or a
        retained backup): the source's engine, class, user, storage and tags as captured,
        the request's settings over them, the backup's key; the default security group and
        no subnet group unless given, single-AZ unless asked, as AWS does."""
        s = backup.source
        kwargs = {
            "db_instance_identifier": req["TargetDBInstanceIdentifier"],
            "db_instance_class": req.get("DBInstanceClass") or s.instance_class,
            "engine": s.engine,
            "engine_version": s.engine_version,
            "port": req.get("Port") or s.port,
            "allocated_storage": req.get("AllocatedStorage") or s.allocated_storage,
            "storage_type": req.get("StorageType") or s.storage_type,
            "iops": req.get("Iops") or s.iops,
            "master_username": s.master_username,
            "db_name": s.db_name,
            "multi_az": bool(req.get("MultiAZ")),
            "publicly_accessible": req.get("PubliclyAccessible"),
            "db_subnet_group_name": req.get("DBSubnetGroupName"),
            "vpc_security_group_ids": list(req.get("VpcSecurityGroupIds") or []),
            "deletion_protection": bool(req.get("DeletionProtection")),
            "copy_tags_to_snapshot": bool(req.get("CopyTagsToSnapshot")),
            "tags": list(req.get("Tags") or s.tags),
            "backup_retention_period": s.retention or DEFAULT_REPLICA_RETENTION,
            "license_model": s.license_model or "postgresql-license",
            "availability_zone": req.get("AvailabilityZone") or f"{ctx.region}a",
            "enable_iam_database_authentication": bool(req.get("EnableIAMDatabaseAuthentication", s.iam_auth)),
            "auto_minor_version_upgrade": req.get("AutoMinorVersionUpgrade", True),
            "db_parameter_group_name": req.get("DBParameterGroupName"),
            "option_group_name": req.get("OptionGroupName"),
        }
        key = req.get("KmsKeyId") or backup.kms_key_id
        if backup.encrypted or req.get("KmsKeyId"):
            try:
                key = key_arn(ctx.account_id, ctx.region, key)
            except KeyNotFound as e:
                raise _error("KMSKeyNotAccessibleFault", f"The specified KMS key is not accessible: {e}") from e
            kwargs.update(storage_encrypted=True, kms_key_id=key)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        backend = _backend(ctx.account_id, ctx.region)
        return _moto_errors(backend.create_db_instance, kwargs)

    def start_db_instance_automated_backups_replication(self, ctx: RequestContext, req: dict):
        """Called in the DR region with the source instance's ARN."""
        source_arn = req.get("SourceDBInstanceArn") or ""
        account, region, name = _parse_instance_arn(source_arn, "SourceDBInstanceArn")
        if region == ctx.region:
            raise _error(
                "InvalidParameterValue",
                f"The source DB instance {source_arn} is in {region}, where this request was sent: "
                "send it to the region that should hold the replicated backups.",
            )
        db = _backend(account, region).databases.get(name)
        if db is None:
            raise _error("DBInstanceNotFound", f"DBInstance {source_arn} not found.", 404)
        if not db.backup_retention_period:
            raise _error(
                "InvalidDBInstanceState",
                f"DB instance {name} keeps no automated backups (BackupRetentionPeriod is 0): "
                "enable them before replicating them.",
            )
        source = self.backups.own(account, region, db.dbi_resource_id)
        if source is None:
            raise _error(
                "InvalidDBInstanceState",
                f"DB instance {name} has no automated backups the kit can replicate "
                "(only postgres instances keep data).",
            )
        key = req.get("KmsKeyId")
        if db.storage_encrypted and not key:
            raise _error(
                "KMSKeyNotAccessibleFault",
                f"DB instance {name} is encrypted: KmsKeyId must name a KMS key in {ctx.region} "
                "to encrypt its replicated backups.",
            )
        if key:
            if key.startswith("arn:") and key.split(":")[3] != ctx.region:
                raise _error(
                    "KMSKeyNotAccessibleFault",
                    f"The KMS key {key} is not in {ctx.region}, where the replicated backups are kept.",
                )
            try:
                key = key_arn(ctx.account_id, ctx.region, key)
            except KeyNotFound as e:
                raise _error(
                    "KMSKeyNotAccessibleFault",
                    f"The KMS key {req.get('KmsKeyId')} is not accessible in {ctx.region}: {e}",
                ) from e
        for other in self.backups.replicas_of(account, db.dbi_resource_id):
            if other.status in ("pending", "replicating"):
                raise _error(
                    "InvalidDBInstanceAutomatedBackupState",
                    f"The automated backups of DB instance {name} are already replicated to {other.region} "
                    f"({other.arn}); stop that replication first.",
                )
        self.backups.refresh(source, Source.of(db))
        retention = req.get("BackupRetentionPeriod") or DEFAULT_REPLICA_RETENTION
        replica = self.backups.replicate(source, ctx.region, key, retention)
        answer = self._describe_backup(replica)
        answer["Status"] = "pending"  # as AWS answers; Describe tells when it replicates
        return {"DBInstanceAutomatedBackup": answer}

    def stop_db_instance_automated_backups_replication(self, ctx: RequestContext, req: dict):
        """Called in the DR region (or in the source's); the replica stays, as retained."""
        source_arn = req.get("SourceDBInstanceArn") or ""
        account, region, name = _parse_instance_arn(source_arn, "SourceDBInstanceArn")
        db = _backend(account, region).databases.get(name)
        if db is None:
            raise _error("DBInstanceNotFound", f"DBInstance {source_arn} not found.", 404)
        replicas = [
            r for r in self.backups.replicas_of(account, db.dbi_resource_id)
            if r.status in ("pending", "replicating") and ctx.region in (r.region, region)
        ]
        if not replicas:
            raise _error(
                "InvalidDBInstanceState",
                f"The automated backups of DB instance {name} are not being replicated to {ctx.region}.",
            )
        answer = self._describe_backup(replicas[0])
        self.backups.stop_replication(replicas[0])
        return {"DBInstanceAutomatedBackup": answer}
